//! Statements and the glob patterns in them.

pub use slipway_actors::pattern::Pattern;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement grants.
    Allow,
    /// The statement forbids; it wins over any allow.
    Deny,
}

impl Effect {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// A resource pattern: `*`, `KIND:NAME_GLOB` or `repo:NAME_GLOB:REF_GLOB`.
#[derive(Debug, Clone)]
pub struct ResourcePattern {
    text: String,
    /// `None` for `*` (everything).
    kind: Option<String>,
    name: Option<Pattern>,
    refname: Option<Pattern>,
}

impl ResourcePattern {
    /// Parses a resource pattern; the error says what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<ResourcePattern, String> {
        if text == "*" {
            return Ok(ResourcePattern {
                text: text.into(),
                kind: None,
                name: None,
                refname: None,
            });
        }
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(format!(
                "resource `{text}` must be `*`, `repo:NAME_GLOB` or `repo:NAME_GLOB:REF_GLOB`"
            ));
        };
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(format!("resource `{text}` has an invalid kind `{kind}`"));
        }
        let (name, refname) = match (kind, rest.split_once(':')) {
            ("repo", Some((name, refname))) => (name, Some(refname)),
            (_, _) => (rest, None),
        };
        if name.is_empty() || refname.is_some_and(str::is_empty) {
            return Err(format!("resource `{text}` has an empty part"));
        }
        Ok(ResourcePattern {
            text: text.into(),
            kind: Some(kind.to_string()),
            name: Some(Pattern::new(name)?),
            refname: refname.map(Pattern::new).transpose()?,
        })
    }

    /// Whether the pattern covers `kind:name[:refname]`. A pattern without a ref part
    /// covers every ref of the matching repositories.
    pub fn matches(&self, kind: &str, name: &str, refname: Option<&str>) -> bool {
        let Some(k) = &self.kind else { return true };
        if k != kind || !self.name.as_ref().is_some_and(|p| p.is_match(name)) {
            return false;
        }
        match (&self.refname, refname) {
            (None, _) => true,
            (Some(p), Some(r)) => p.is_match(r),
            (Some(_), None) => false,
        }
    }

    /// Whether the pattern covers some ref of repository `name` (ignoring the ref part).
    pub fn matches_some_ref(&self, kind: &str, name: &str) -> bool {
        let Some(k) = &self.kind else { return true };
        k == kind && self.name.as_ref().is_some_and(|p| p.is_match(name))
    }

    /// Whether the pattern covers the whole repository, every ref included.
    pub fn covers_all_refs(&self) -> bool {
        self.refname
            .as_ref()
            .is_none_or(|p| p.as_str() == "*" || p.as_str() == "**")
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// One allow/deny statement of a policy.
#[derive(Debug, Clone)]
pub struct Statement {
    /// `POLICY[N]`, N counting from 0 as in the YAML path (`policies.POLICY[N]`) that
    /// configuration errors name: how users and audit lines name it.
    pub id: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Action globs.
    pub actions: Vec<Pattern>,
    /// Resource patterns.
    pub resources: Vec<ResourcePattern>,
}

impl Statement {
    /// A one-line rendering: `developer[1]: deny git:force-push on repo:*:refs/heads/main`.
    pub fn describe(&self) -> String {
        let actions: Vec<&str> = self.actions.iter().map(Pattern::as_str).collect();
        let resources: Vec<&str> = self.resources.iter().map(ResourcePattern::as_str).collect();
        format!(
            "{}: {} {} on {}",
            self.id,
            self.effect.as_str(),
            actions.join(","),
            resources.join(",")
        )
    }

    pub(crate) fn matches_action(&self, action: &str) -> bool {
        self.actions.iter().any(|p| p.is_match(action))
    }
}
