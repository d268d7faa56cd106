//! `access.yaml`: parsing and validation with file:line:column in every error.
//!
//! serde_yaml attaches the position of the node being read to errors raised while it
//! is read, so every check that can be done node by node happens inside `Deserialize`
//! impls. Cross references (a user naming a group) need the whole file: the file is
//! read twice, the first time to learn the names, the second time with those names in
//! a thread-local so that an unknown one fails at its own position.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Deserializer};

use super::pattern::{Effect, Pattern, ResourcePattern, Statement};
use super::{KNOWN_ACTIONS, RESERVED_FAMILIES};
pub use slipway_actors::config::ConfigError;
use slipway_actors::config::{check_size, checked_str, truncate};

/// A validated `access.yaml`.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Each group's policy names.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Each policy's statements, in file order.
    pub policies: BTreeMap<String, Vec<Statement>>,
}

/// A user.
#[derive(Debug, Clone, Default)]
pub struct User {
    /// The user's SSH keys.
    pub keys: Vec<UserKey>,
    /// Where mail for the user goes.
    pub email: Option<String>,
    /// Groups the user is in.
    pub groups: Vec<String>,
    /// Policies attached to the user directly.
    pub policies: Vec<String>,
}

/// A user's public key.
#[derive(Debug, Clone)]
pub struct UserKey {
    /// The parsed key.
    pub key: PublicKey,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

// ---- raw, serde-facing shapes -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    users: BTreeMap<Name, RawUser>,
    #[serde(default)]
    groups: BTreeMap<Name, RawGroup>,
    #[serde(default)]
    policies: BTreeMap<Name, Vec<RawStatement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[serde(default)]
    keys: Vec<KeyText>,
    #[serde(default)]
    email: Option<Email>,
    #[serde(default)]
    groups: Vec<GroupRef>,
    #[serde(default)]
    policies: Vec<PolicyRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    policies: Vec<PolicyRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    effect: RawEffect,
    actions: Vec<ActionPattern>,
    resources: Vec<ResourceText>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawEffect {
    Allow,
    Deny,
}

/// Names known from the first pass; `None` during the first pass itself.
struct Known {
    groups: BTreeSet<String>,
    policies: BTreeSet<String>,
    fingerprints: RefCell<BTreeSet<String>>,
}

thread_local! {
    static KNOWN: RefCell<Option<Known>> = const { RefCell::new(None) };
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| check_name(&s).map(|()| Name(s)))
    }
}

/// Checks a user, group or policy name.
pub fn check_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid name: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            truncate(s)
        ))
    }
}

struct GroupRef(String);
impl<'de> Deserialize<'de> for GroupRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            KNOWN.with(|k| match &*k.borrow() {
                Some(known) if !known.groups.contains(&s) => Err(format!(
                    "unknown group `{}`: define it under `groups:` or fix the name",
                    truncate(&s)
                )),
                _ => Ok(GroupRef(s)),
            })
        })
    }
}

struct PolicyRef(String);
impl<'de> Deserialize<'de> for PolicyRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            KNOWN.with(|k| match &*k.borrow() {
                Some(known) if !known.policies.contains(&s) => Err(format!(
                    "unknown policy `{}`: define it under `policies:` or fix the name",
                    truncate(&s)
                )),
                _ => Ok(PolicyRef(s)),
            })
        })
    }
}

struct KeyText(UserKey);
impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let key = PublicKey::from_openssh(s.trim()).map_err(|e| {
                format!(
                    "invalid SSH public key ({e}): paste one line of a `.pub` file, e.g. `ssh-ed25519 AAAA… you@host`"
                )
            })?;
            let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
            KNOWN.with(|k| match &*k.borrow() {
                Some(known) if !known.fingerprints.borrow_mut().insert(fingerprint.clone()) => {
                    Err(format!(
                        "key {fingerprint} is listed more than once; a key identifies exactly one user"
                    ))
                }
                _ => Ok(()),
            })?;
            Ok(KeyText(UserKey { key, fingerprint }))
        })
    }
}

struct Email(String);
impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let valid = s.len() <= 254
                && s.split_once('@')
                    .is_some_and(|(l, h)| !l.is_empty() && (h.contains('.') || h == "localhost"))
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
            if valid {
                Ok(Email(s))
            } else {
                Err(format!("`{}` is not an email address", truncate(&s)))
            }
        })
    }
}

struct ActionPattern(Pattern);
impl<'de> Deserialize<'de> for ActionPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            check_action(&s)?;
            Pattern::new(&s).map(ActionPattern)
        })
    }
}

fn check_action(s: &str) -> Result<(), String> {
    if s == "*" {
        return Ok(());
    }
    let Some((family, verb)) = s.split_once(':') else {
        return Err(format!(
            "action `{}` must be `*` or `family:verb`, e.g. `git:push`",
            truncate(s)
        ));
    };
    let has_glob = verb.contains(['*', '?', '[', '{']);
    let known_family = KNOWN_ACTIONS
        .iter()
        .any(|a| a.starts_with(&format!("{family}:")));
    if known_family && !has_glob && !KNOWN_ACTIONS.contains(&s) {
        return Err(format!(
            "unknown action `{}`; known actions: {}",
            truncate(s),
            KNOWN_ACTIONS.join(", ")
        ));
    }
    if !known_family && !RESERVED_FAMILIES.contains(&family) && family != "*" {
        return Err(format!(
            "unknown action family `{}`; known actions: {}",
            truncate(family),
            KNOWN_ACTIONS.join(", ")
        ));
    }
    Ok(())
}

struct ResourceText(ResourcePattern);
impl<'de> Deserialize<'de> for ResourceText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| ResourcePattern::parse(&s).map(ResourceText))
    }
}

// ---- parsing ------------------------------------------------------------------------

/// Parses and validates `access.yaml` (`file` names it in errors).
///
/// `admin_check` says which users count as administrators, i.e. may push the admin
/// repository; the file is refused when no user with a key would be one.
pub fn parse_access_yaml(file: &str, text: &str) -> Result<AccessConfig, ConfigError> {
    let at = |line, column, message: String| ConfigError::at(file, line, column, message);
    check_size(file, text)?;
    let to_err = |e| ConfigError::from_yaml(file, e);
    // Pass 1: shape and names.
    KNOWN.with(|k| *k.borrow_mut() = None);
    let first: RawAccess = serde_yaml::from_str(text).map_err(to_err)?;
    let known = Known {
        groups: first.groups.keys().map(|n| n.0.clone()).collect(),
        policies: first.policies.keys().map(|n| n.0.clone()).collect(),
        fingerprints: RefCell::new(BTreeSet::new()),
    };
    drop(first);
    // Pass 2: cross references, at their own positions.
    KNOWN.with(|k| *k.borrow_mut() = Some(known));
    let second: Result<RawAccess, _> = serde_yaml::from_str(text);
    KNOWN.with(|k| *k.borrow_mut() = None);
    let raw = second.map_err(to_err)?;

    let mut config = AccessConfig::default();
    for (name, group) in raw.groups {
        config
            .groups
            .insert(name.0, group.policies.into_iter().map(|p| p.0).collect());
    }
    for (name, statements) in raw.policies {
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| Statement {
                id: format!("{}[{}]", name.0, i),
                effect: match s.effect {
                    RawEffect::Allow => Effect::Allow,
                    RawEffect::Deny => Effect::Deny,
                },
                actions: s.actions.into_iter().map(|a| a.0).collect(),
                resources: s.resources.into_iter().map(|r| r.0).collect(),
            })
            .collect();
        config.policies.insert(name.0, statements);
    }
    for (name, user) in raw.users {
        config.users.insert(
            name.0,
            User {
                keys: user.keys.into_iter().map(|k| k.0).collect(),
                email: user.email.map(|e| e.0),
                groups: user.groups.into_iter().map(|g| g.0).collect(),
                policies: user.policies.into_iter().map(|p| p.0).collect(),
            },
        );
    }
    if config.administrators().next().is_none() {
        let line = text
            .lines()
            .position(|l| l.starts_with("users:"))
            .map(|i| i + 1)
            .unwrap_or(1);
        return Err(at(
            line,
            1,
            "no user with a key could administer slipway after this change (push to the `admin` repository's main branch); keep at least one such user".into(),
        ));
    }
    Ok(config)
}

impl AccessConfig {
    /// Users with at least one key who may pull and push the `admin` repository's main
    /// branch, i.e. who can still change this configuration.
    pub fn administrators(&self) -> impl Iterator<Item = &str> {
        self.users.iter().filter_map(|(name, user)| {
            let admin = !user.keys.is_empty()
                && self
                    .evaluate(name, "git:pull", &super::Resource::repo("admin"))
                    .allowed()
                && self
                    .evaluate(
                        name,
                        "git:push",
                        &super::Resource::repo_ref("admin", "refs/heads/main"),
                    )
                    .allowed();
            admin.then_some(name.as_str())
        })
    }

    /// Finds the user owning the key with this SHA256 fingerprint.
    pub fn user_by_fingerprint(&self, fingerprint: &str) -> Option<&str> {
        self.users.iter().find_map(|(name, user)| {
            user.keys
                .iter()
                .any(|k| k.fingerprint == fingerprint)
                .then_some(name.as_str())
        })
    }
}
