//! `rules.yaml`: which events go where, and which actions run on a schedule.
//!
//! ```yaml
//! rules:
//!   - name: tell-the-team
//!     match: { source: git, type: push, repo: "app-*", ref: "refs/heads/*" }
//!     targets:
//!       - email: [team@example.com, "user:alice"]
//!       - webhook: { url: "https://hooks.example.com/slipway", secret-param: /hooks/secret }
//!   - name: tidy-branches
//!     schedule: "every 6h"
//!     action:
//!       delete-stale-branches: { repo: "*", older-than: 30d, merged-only: true, keep: [main, "release/*"] }
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{check_size, checked_str, parse_duration, truncate, ConfigError};
use crate::pattern::Pattern;
use crate::store::Event;

/// The file's name in the admin repository.
pub const RULES_FILE: &str = "rules.yaml";

/// A validated `rules.yaml`.
#[derive(Debug, Clone, Default)]
pub struct RulesConfig {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Which events it reacts to (event rules).
    pub matcher: Option<Matcher>,
    /// Where matching events go.
    pub targets: Vec<Target>,
    /// How often it runs (scheduled rules).
    pub schedule: Option<Duration>,
    /// What it does.
    pub action: Option<Action>,
}

/// Glob patterns over an event's fields; a missing field matches anything.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// `git`, `build`, …
    pub source: Option<Pattern>,
    /// `push`, `ref-created`, …
    pub kind: Option<Pattern>,
    /// The repository.
    pub repo: Option<Pattern>,
    /// The ref.
    pub refname: Option<Pattern>,
    /// The state (builds, pipelines, deployments).
    pub state: Option<Pattern>,
    /// Who caused it.
    pub actor: Option<Pattern>,
}

/// A mail recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A plain address.
    Address(String),
    /// A user of `access.yaml`, mailed at their `email`.
    User(String),
}

/// Where an event goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Mail to these recipients.
    Email(Vec<Recipient>),
    /// A signed JSON POST.
    Webhook {
        /// The URL (http or https).
        url: String,
        /// The parameter holding the HMAC secret.
        secret_param: Option<String>,
    },
}

/// A built-in action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Delete branches whose tip is older than `older_than`.
    DeleteStaleBranches(StaleBranches),
}

/// The settings of `delete-stale-branches`.
#[derive(Debug, Clone)]
pub struct StaleBranches {
    /// Which repositories.
    pub repo: Pattern,
    /// A branch is stale when its tip commit is older than this.
    pub older_than: Duration,
    /// Only branches whose tip is reachable from the default branch.
    pub merged_only: bool,
    /// Branch names (without `refs/heads/`) never deleted.
    pub keep: Vec<Pattern>,
}

impl Matcher {
    /// Whether `event` matches every field given.
    pub fn matches(&self, event: &Event) -> bool {
        let e = &event.event;
        let field = |p: &Option<Pattern>, v: Option<&str>| match p {
            None => true,
            Some(p) => v.is_some_and(|v| p.is_match(v)),
        };
        field(&self.source, Some(&e.source))
            && field(&self.kind, Some(&e.kind))
            && field(&self.repo, e.repo.as_deref())
            && field(&self.refname, e.refname.as_deref())
            && field(&self.state, e.state.as_deref())
            && field(&self.actor, e.actor.as_deref())
    }
}

impl StaleBranches {
    /// Whether `branch` (short name) must be kept.
    pub fn keeps(&self, branch: &str) -> bool {
        self.keep.iter().any(|p| p.is_match(branch))
    }
}

// ---- raw shapes -----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: RuleName,
    #[serde(default, rename = "match")]
    matcher: Option<RawMatcher>,
    // Variants are written as one-key maps (`- email: [...]`), not YAML tags.
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    targets: Vec<RawTarget>,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    action: Option<RawAction>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatcher {
    source: Option<Glob>,
    #[serde(rename = "type")]
    kind: Option<Glob>,
    repo: Option<Glob>,
    #[serde(rename = "ref")]
    refname: Option<Glob>,
    state: Option<Glob>,
    actor: Option<Glob>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawTarget {
    Email(Vec<RecipientText>),
    Webhook(RawWebhook),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWebhook {
    url: WebhookUrl,
    #[serde(default)]
    secret_param: Option<ParamName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawAction {
    DeleteStaleBranches(RawStale),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStale {
    #[serde(default)]
    repo: Option<Glob>,
    older_than: DurationText,
    #[serde(default)]
    merged_only: bool,
    #[serde(default)]
    keep: Vec<Glob>,
}

/// What the rules file may refer to in other files, known before it is read.
#[derive(Debug, Clone, Default)]
pub struct RulesContext {
    /// Users of `access.yaml`, and whether each has an email address.
    pub users: BTreeMap<String, bool>,
}

thread_local! {
    static CONTEXT: RefCell<Option<RulesContext>> = const { RefCell::new(None) };
    static NAMES: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
}

struct RuleName(String);
impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(format!(
                    "rule name `{}` must be 1 to 64 letters, digits, `.`, `_` or `-`",
                    truncate(&s)
                ));
            }
            if !NAMES.with(|n| n.borrow_mut().insert(s.clone())) {
                return Err(format!(
                    "there is already a rule named `{s}`; names must be unique"
                ));
            }
            Ok(RuleName(s))
        })
    }
}

struct Glob(Pattern);
impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| Pattern::new(&s).map(Glob))
    }
}

struct DurationText(Duration);
impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| parse_duration(&s).map(DurationText))
    }
}

struct Schedule(Duration);
impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let every = s.trim().strip_prefix("every ").ok_or_else(|| {
                format!(
                    "schedule `{}` must read `every DURATION`, e.g. `every 6h`",
                    truncate(&s)
                )
            })?;
            let period = parse_duration(every)?;
            if period < Duration::from_secs(1) {
                return Err("a schedule must be at least `every 1s`".into());
            }
            Ok(Schedule(period))
        })
    }
}

struct RecipientText(Recipient);
impl<'de> Deserialize<'de> for RecipientText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if let Some(user) = s.strip_prefix("user:") {
                return CONTEXT.with(|c| match c.borrow().as_ref().map(|c| c.users.get(user)) {
                    Some(None) => Err(format!(
                        "unknown user `{}`: users are defined in access.yaml",
                        truncate(user)
                    )),
                    Some(Some(false)) => Err(format!(
                        "user `{user}` has no `email` in access.yaml; add one or name an address"
                    )),
                    _ => Ok(RecipientText(Recipient::User(user.to_string()))),
                });
            }
            if valid_email(&s) {
                Ok(RecipientText(Recipient::Address(s)))
            } else {
                Err(format!(
                    "`{}` is neither an email address nor `user:NAME`",
                    truncate(&s)
                ))
            }
        })
    }
}

/// A plausible mail address (something `local@domain` without spaces or brackets).
pub fn valid_email(s: &str) -> bool {
    s.len() <= 254
        && s.split_once('@').is_some_and(|(l, h)| {
            !l.is_empty() && !h.is_empty() && (h.contains('.') || h == "localhost")
        })
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

struct WebhookUrl(String);
impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let url = url::Url::parse(&s)
                .map_err(|e| format!("`{}` is not a URL ({e})", truncate(&s)))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "webhook URL `{}` must be http:// or https:// with a host",
                    truncate(&s)
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(
                    "put webhook credentials in a parameter (secret-param), not in the URL".into(),
                );
            }
            Ok(WebhookUrl(s))
        })
    }
}

struct ParamName(String);
impl<'de> Deserialize<'de> for ParamName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| check_param_name(&s).map(|()| ParamName(s)))
    }
}

/// Checks a parameter name: `/`-separated parts of letters, digits, `.`, `_`, `-`.
pub fn check_param_name(s: &str) -> Result<(), String> {
    let ok = s.starts_with('/')
        && s.len() <= 256
        && s[1..].split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "parameter name `{}` must look like `/team/name`: `/`-separated parts of letters, digits, `.`, `_`, `-`",
            truncate(s)
        ))
    }
}

/// Parses and validates `rules.yaml` against `context` (the users it may mail).
pub fn parse_rules_yaml(
    file: &str,
    text: &str,
    context: &RulesContext,
) -> Result<RulesConfig, ConfigError> {
    check_size(file, text)?;
    CONTEXT.with(|c| *c.borrow_mut() = Some(context.clone()));
    NAMES.with(|n| n.borrow_mut().clear());
    let raw: Result<RawRules, _> = serde_yaml::from_str(text);
    CONTEXT.with(|c| *c.borrow_mut() = None);
    NAMES.with(|n| n.borrow_mut().clear());
    let raw = raw.map_err(|e| ConfigError::from_yaml(file, e))?;
    let mut rules = Vec::new();
    for (index, r) in raw.rules.into_iter().enumerate() {
        let name = r.name.0;
        // Shape errors point at the rule's `name:` line.
        let at = |message: String| {
            let line = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains("name:") && l.contains(name.as_str()))
                .map(|(i, _)| i + 1)
                .next()
                .unwrap_or(1);
            ConfigError::at(file, line, 1, format!("rules[{index}] `{name}`: {message}"))
        };
        let rule = Rule {
            matcher: r.matcher.map(|m| Matcher {
                source: m.source.map(|g| g.0),
                kind: m.kind.map(|g| g.0),
                repo: m.repo.map(|g| g.0),
                refname: m.refname.map(|g| g.0),
                state: m.state.map(|g| g.0),
                actor: m.actor.map(|g| g.0),
            }),
            targets: r
                .targets
                .into_iter()
                .map(|t| match t {
                    RawTarget::Email(list) => {
                        Target::Email(list.into_iter().map(|r| r.0).collect())
                    }
                    RawTarget::Webhook(w) => Target::Webhook {
                        url: w.url.0,
                        secret_param: w.secret_param.map(|p| p.0),
                    },
                })
                .collect(),
            schedule: r.schedule.map(|s| s.0),
            action: r.action.map(|a| match a {
                RawAction::DeleteStaleBranches(s) => Action::DeleteStaleBranches(StaleBranches {
                    repo: s
                        .repo
                        .map(|g| g.0)
                        .unwrap_or_else(|| Pattern::new("*").expect("`*` is a valid pattern")),
                    older_than: s.older_than.0,
                    merged_only: s.merged_only,
                    keep: s.keep.into_iter().map(|g| g.0).collect(),
                }),
            }),
            name: name.clone(),
        };
        match (&rule.matcher, &rule.schedule) {
            (Some(_), Some(_)) => {
                return Err(at(
                    "give either `match` (react to events) or `schedule`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(at(
                    "needs `match` (to react to events) or `schedule` (to run an action)".into(),
                ))
            }
            (Some(_), None) if rule.targets.is_empty() && rule.action.is_none() => {
                return Err(at("a `match` rule needs `targets` or an `action`".into()))
            }
            (None, Some(_)) if rule.action.is_none() => {
                return Err(at("a scheduled rule needs an `action`".into()))
            }
            (None, Some(_)) if !rule.targets.is_empty() => {
                return Err(at(
                    "a scheduled rule has no event to send: remove `targets`".into(),
                ))
            }
            _ => {}
        }
        rules.push(rule);
    }
    Ok(RulesConfig { rules })
}

#[cfg(test)]
mod tests;
