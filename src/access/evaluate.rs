//! The decision: explicit deny wins, then any allow, else deny.

use super::config::AccessConfig;
use super::pattern::{Effect, Statement};
use super::PUSH_ACTIONS;

/// What a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `repo`, `audit`, `policy`, …
    pub kind: String,
    /// The repository (or other object) name.
    pub name: String,
    /// The ref, for ref-level repository requests.
    pub refname: Option<String>,
}

impl Resource {
    /// `repo:NAME`.
    pub fn repo(name: &str) -> Resource {
        Resource {
            kind: "repo".into(),
            name: name.into(),
            refname: None,
        }
    }

    /// `repo:NAME:REF`.
    pub fn repo_ref(name: &str, refname: &str) -> Resource {
        Resource {
            kind: "repo".into(),
            name: name.into(),
            refname: Some(refname.into()),
        }
    }

    /// Any other kind: `KIND:NAME`.
    pub fn other(kind: &str, name: &str) -> Resource {
        Resource {
            kind: kind.into(),
            name: name.into(),
            refname: None,
        }
    }

    /// Parses `repo:NAME[:REF]` or `KIND:NAME`, as typed in `policy simulate`.
    pub fn parse(text: &str) -> Result<Resource, String> {
        let (kind, rest) = text.split_once(':').ok_or_else(|| {
            format!("resource `{text}` must look like `repo:NAME` or `repo:NAME:REF`")
        })?;
        if rest.is_empty() {
            return Err(format!("resource `{text}` names nothing after `{kind}:`"));
        }
        Ok(match (kind, rest.split_once(':')) {
            ("repo", Some((name, refname))) => Resource::repo_ref(name, refname),
            ("repo", None) => Resource::repo(rest),
            _ => Resource::other(kind, rest),
        })
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)?;
        if let Some(r) = &self.refname {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this statement (its description).
    Allow(String),
    /// Denied by this explicit deny statement (its description).
    ExplicitDeny(String),
    /// No statement allowed it.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The deciding statement, or `no statement allows it`.
    pub fn reason(&self) -> String {
        match self {
            Decision::Allow(s) | Decision::ExplicitDeny(s) => s.clone(),
            Decision::ImplicitDeny => "no statement allows it (implicit deny)".into(),
        }
    }
}

/// How one statement fared, for `policy simulate`.
#[derive(Debug, Clone)]
pub struct StatementTrace {
    /// The statement's description.
    pub statement: String,
    /// Reached through which group (or `user`).
    pub via: String,
    /// `matched`, `action does not match`, `resource does not match`.
    pub outcome: &'static str,
}

/// The full explanation of a decision.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Every statement that applies to the user, in evaluation order.
    pub statements: Vec<StatementTrace>,
    /// The decision.
    pub decision: Decision,
}

impl AccessConfig {
    /// The statements that apply to `user`, with where they come from.
    fn statements_of<'a>(&'a self, user: &str) -> Vec<(&'a Statement, String)> {
        let Some(u) = self.users.get(user) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let direct = u.policies.iter().map(|p| (p, "user".to_string()));
        let grouped = u.groups.iter().flat_map(|g| {
            self.groups
                .get(g)
                .into_iter()
                .flatten()
                .map(move |p| (p, format!("group {g}")))
        });
        for (policy, via) in direct.chain(grouped) {
            if !seen.insert(policy.clone()) {
                continue;
            }
            for s in self.policies.get(policy).into_iter().flatten() {
                out.push((s, via.clone()));
            }
        }
        out
    }

    /// Decides `action` on `resource` for `user`.
    pub fn evaluate(&self, user: &str, action: &str, resource: &Resource) -> Decision {
        self.explain(user, action, resource).decision
    }

    /// Decides and explains, statement by statement.
    pub fn explain(&self, user: &str, action: &str, resource: &Resource) -> Trace {
        let mut statements = Vec::new();
        let mut allow = None;
        let mut deny = None;
        for (s, via) in self.statements_of(user) {
            let outcome = if !s.matches_action(action) {
                "action does not match"
            } else if !s
                .resources
                .iter()
                .any(|r| r.matches(&resource.kind, &resource.name, resource.refname.as_deref()))
            {
                "resource does not match"
            } else {
                match s.effect {
                    Effect::Deny if deny.is_none() => deny = Some(s.describe()),
                    Effect::Allow if allow.is_none() => allow = Some(s.describe()),
                    _ => {}
                }
                "matched"
            };
            statements.push(StatementTrace {
                statement: s.describe(),
                via,
                outcome,
            });
        }
        let decision = match (deny, allow) {
            (Some(d), _) => Decision::ExplicitDeny(d),
            (None, Some(a)) => Decision::Allow(a),
            (None, None) => Decision::ImplicitDeny,
        };
        Trace {
            statements,
            decision,
        }
    }

    /// Whether `user` may change at least one ref of `repo`: the check before a push
    /// starts. Each ref is then decided on its own by the hook.
    pub fn may_push_somewhere(&self, user: &str, repo: &str) -> bool {
        let statements = self.statements_of(user);
        PUSH_ACTIONS.iter().any(|action| {
            let applicable: Vec<&Statement> = statements
                .iter()
                .map(|(s, _)| *s)
                .filter(|s| {
                    s.matches_action(action)
                        && s.resources.iter().any(|r| r.matches_some_ref("repo", repo))
                })
                .collect();
            let denied_everywhere = applicable.iter().any(|s| {
                s.effect == Effect::Deny
                    && s.resources
                        .iter()
                        .any(|r| r.matches_some_ref("repo", repo) && r.covers_all_refs())
            });
            let allowed_somewhere = applicable.iter().any(|s| s.effect == Effect::Allow);
            allowed_somewhere && !denied_everywhere
        })
    }
}
