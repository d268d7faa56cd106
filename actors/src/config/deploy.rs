//! `deploy.yaml` in the admin repository: applications, their deployment groups, and how
//! each group is deployed.
//!
//! ```yaml
//! applications:
//!   web:
//!     groups:
//!       prod:
//!         tags:                        # every set must match; within a set, any one filter
//!           - ["role=web", "role=api"]   # KEY=VALUE, KEY (key only) or =VALUE (value only)
//!           - ["env=prod"]
//!         config: half-at-a-time       # one-at-a-time (default) | half-at-a-time | all-at-once
//!                                      # | { min-healthy: { hosts: N } } | { min-healthy: { percent: P } }
//!         alarms:                      # up to 10, names unique in the group
//!           - { name: errors, prometheus: { url: "http://127.0.0.1:9090", query: "sum(rate(http_errors_total[1m]))", condition: "> 0.05" } }
//!           - { name: health, http: { url: "http://127.0.0.1:8080/healthz", expect: 200, timeout: 5s } }
//!           - { name: page, alertmanager: { alert: HighErrorRate } }
//!         ignore-alarm-poll-failure: false
//!         auto-rollback: [failure, alarm, stop]
//!         bake: 2m                     # after success, alarms still count for this long
//!         file-exists-behavior: DISALLOW
//! ```
//!
//! Every value is checked inside its own deserialization, so a problem is reported at the
//! value's line and column; a check that needs two values of a group (an `alarm` rollback
//! without alarms) is reported at the group. The planning rules that use these settings
//! live in `crate::deploy::plan`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use url::Url;

use super::{check_size, checked_str, parse_duration, truncate, ConfigError};

/// The file's name in the admin repository.
pub const DEPLOY_FILE: &str = "deploy.yaml";

/// At most this many tag sets per group (CodeDeploy's limit).
pub const MAX_TAG_SETS: usize = 3;
/// At most this many filters per tag set (CodeDeploy's limit).
pub const MAX_TAG_FILTERS: usize = 10;
/// At most this many alarms per group (CodeDeploy's limit).
pub const MAX_ALARMS: usize = 10;
/// The longest bake time.
pub const MAX_BAKE: Duration = Duration::from_secs(24 * 3600);

/// A validated `deploy.yaml` (empty when the file does not exist).
#[derive(Debug, Clone, Default)]
pub struct DeployConfig {
    /// Applications by name.
    pub applications: BTreeMap<String, Application>,
}

/// One application: a name deployments are filed under, and its deployment groups.
#[derive(Debug, Clone, Default)]
pub struct Application {
    /// Deployment groups by name.
    pub groups: BTreeMap<String, DeploymentGroup>,
}

/// One deployment group: which agents it reaches and how a deployment to them proceeds.
#[derive(Debug, Clone)]
pub struct DeploymentGroup {
    /// The agents in the group: an agent belongs when it matches every set (at least one,
    /// at most [`MAX_TAG_SETS`]).
    pub tags: Vec<TagSet>,
    /// How many hosts must stay healthy, and so how many are deployed at once.
    pub config: DeploymentConfig,
    /// Alarms watched while a deployment runs and bakes (at most [`MAX_ALARMS`], names
    /// unique). Any alarm in ALARM stops the deployment.
    pub alarms: Vec<Alarm>,
    /// When an alarm's state cannot be read: `false` (default) stops the deployment,
    /// `true` carries on as if the alarm were OK.
    pub ignore_alarm_poll_failure: bool,
    /// When a new deployment of the last successful revision starts by itself.
    pub auto_rollback: AutoRollback,
    /// After every host succeeded, the deployment stays Baking this long and alarms
    /// still count; `None` (or `0s`) ends it at once. At most [`MAX_BAKE`].
    pub bake: Option<Duration>,
    /// The group's default for files the install finds already present; an appspec's
    /// own `file_exists_behavior` beats it. `None`: DISALLOW.
    pub file_exists_behavior: Option<FileExistsBehavior>,
}

/// A tag set: an agent matches it when it matches any one of its filters (at least one,
/// at most [`MAX_TAG_FILTERS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSet {
    /// The filters, in file order.
    pub filters: Vec<TagFilter>,
}

/// One tag filter (CodeDeploy's KEY_ONLY, VALUE_ONLY and KEY_AND_VALUE). Matching is
/// exact and case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// `KEY`: the agent has a tag with this key, whatever its value.
    KeyOnly(String),
    /// `=VALUE`: the agent has a tag with this value, whatever its key.
    ValueOnly(String),
    /// `KEY=VALUE`: the agent has this tag.
    KeyAndValue {
        /// The tag's key.
        key: String,
        /// The tag's value.
        value: String,
    },
}

/// How many hosts must stay healthy during a deployment (CodeDeploy's deployment
/// configurations; the arithmetic is in `crate::deploy::plan::Requirement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeploymentConfig {
    /// All hosts but one stay healthy: one host at a time. If only the last host fails
    /// the deployment still succeeds; a one-host group must succeed on its host.
    #[default]
    OneAtATime,
    /// At least half (rounded up) stay healthy: at most half (rounded down) at a time.
    HalfAtATime,
    /// No host need stay healthy: all at once; succeeds if any host succeeds.
    AllAtOnce,
    /// At least this many hosts stay healthy (`{ min-healthy: { hosts: N } }`).
    MinHealthyHosts(u32),
    /// At least this percentage of the hosts, rounded up to whole hosts, stay healthy
    /// (`{ min-healthy: { percent: P } }`, 1 to 100).
    MinHealthyPercent(u8),
}

impl fmt::Display for DeploymentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentConfig::OneAtATime => f.write_str("one-at-a-time"),
            DeploymentConfig::HalfAtATime => f.write_str("half-at-a-time"),
            DeploymentConfig::AllAtOnce => f.write_str("all-at-once"),
            DeploymentConfig::MinHealthyHosts(n) => write!(f, "min-healthy hosts {n}"),
            DeploymentConfig::MinHealthyPercent(p) => write!(f, "min-healthy percent {p}"),
        }
    }
}

/// One alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Unique in its group; shown when the alarm stops a deployment.
    pub name: String,
    /// What is watched.
    pub kind: AlarmKind,
}

/// What an alarm watches.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmKind {
    /// A PromQL query against a Prometheus server's HTTP API; in ALARM while the query's
    /// value satisfies `condition`.
    Prometheus {
        /// The server's base URL (the API lives under `api/v1/` below it).
        url: Url,
        /// The PromQL expression.
        query: String,
        /// When the value means ALARM.
        condition: Condition,
    },
    /// An HTTP GET; in ALARM when the answer's status is not `expect`, or when no answer
    /// comes within `timeout` (the service being checked is what fails to answer).
    Http {
        /// What is fetched.
        url: Url,
        /// The status that means OK (default 200).
        expect: u16,
        /// How long to wait for the answer (default 5s; 1s to 60s).
        timeout: Duration,
    },
    /// An alert posted to slipway by Alertmanager's webhook; in ALARM while an alert with
    /// this `alertname` is firing.
    Alertmanager {
        /// The alert's `alertname` label.
        alert: String,
    },
}

/// A threshold such as `> 0.05`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The comparison.
    pub op: Comparison,
    /// The number compared against (finite).
    pub threshold: f64,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

impl Condition {
    /// Whether `value` satisfies the condition. NaN (PromQL's answer to 0/0) satisfies
    /// none, `!=` included: a value that is not a number is not a reason to stop.
    pub fn holds(&self, value: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        let t = self.threshold;
        match self.op {
            Comparison::Gt => value > t,
            Comparison::Ge => value >= t,
            Comparison::Lt => value < t,
            Comparison::Le => value <= t,
            Comparison::Eq => value == t,
            Comparison::Ne => value != t,
        }
    }

    /// Parses `OP NUMBER` (`> 0.05`, `<=10`).
    pub fn parse(s: &str) -> Result<Condition, String> {
        let t = s.trim();
        let (op, rest) = [
            (">=", Comparison::Ge),
            ("<=", Comparison::Le),
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            (">", Comparison::Gt),
            ("<", Comparison::Lt),
        ]
        .into_iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|rest| (op, rest)))
        .ok_or_else(|| {
            format!(
                "condition `{}` must start with >, >=, <, <=, == or != and then a number, e.g. `> 0.05`",
                truncate(s)
            )
        })?;
        let threshold: f64 = rest.trim().parse().map_err(|_| {
            format!(
                "condition `{}` must compare with a number, e.g. `> 0.05`",
                truncate(s)
            )
        })?;
        if !threshold.is_finite() {
            return Err(format!(
                "condition `{}` must compare with a finite number",
                truncate(s)
            ));
        }
        Ok(Condition { op, threshold })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}

/// When a failed or stopped deployment is rolled back by itself (CodeDeploy's
/// DEPLOYMENT_FAILURE, DEPLOYMENT_STOP_ON_ALARM, DEPLOYMENT_STOP_ON_REQUEST). None by
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoRollback {
    /// `failure`: the deployment failed.
    pub on_failure: bool,
    /// `alarm`: an alarm stopped the deployment (needs at least one alarm).
    pub on_alarm: bool,
    /// `stop`: someone stopped the deployment.
    pub on_stop: bool,
}

/// What the install does with a file that is already there and was not installed by the
/// group's previous deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileExistsBehavior {
    /// The deployment fails on that host.
    #[default]
    Disallow,
    /// The revision's file replaces it.
    Overwrite,
    /// The file is kept and the revision's copy skipped.
    Retain,
}

impl FileExistsBehavior {
    /// The spelling of appspec.yml and deploy.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            FileExistsBehavior::Disallow => "DISALLOW",
            FileExistsBehavior::Overwrite => "OVERWRITE",
            FileExistsBehavior::Retain => "RETAIN",
        }
    }

    /// Parses `DISALLOW`, `OVERWRITE` or `RETAIN`.
    pub fn parse(s: &str) -> Result<FileExistsBehavior, String> {
        match s {
            "DISALLOW" => Ok(FileExistsBehavior::Disallow),
            "OVERWRITE" => Ok(FileExistsBehavior::Overwrite),
            "RETAIN" => Ok(FileExistsBehavior::Retain),
            other => Err(format!(
                "file-exists-behavior `{}` must be DISALLOW, OVERWRITE or RETAIN",
                truncate(other)
            )),
        }
    }
}

impl DeployConfig {
    /// The deployment group `group` of application `app`.
    pub fn group(&self, app: &str, group: &str) -> Option<&DeploymentGroup> {
        self.applications.get(app)?.groups.get(group)
    }

    /// Every group as (application, group, settings), in name order.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &str, &DeploymentGroup)> {
        self.applications.iter().flat_map(|(app, a)| {
            a.groups
                .iter()
                .map(move |(name, g)| (app.as_str(), name.as_str(), g))
        })
    }
}

impl DeploymentGroup {
    /// The alarm named `name`.
    pub fn alarm(&self, name: &str) -> Option<&Alarm> {
        self.alarms.iter().find(|a| a.name == name)
    }
}

impl TagFilter {
    /// Parses `KEY=VALUE`, `KEY` or `=VALUE`.
    pub fn parse(s: &str) -> Result<TagFilter, String> {
        match s.split_once('=') {
            None => {
                check_tag_key(s)?;
                Ok(TagFilter::KeyOnly(s.to_string()))
            }
            Some(("", value)) => {
                check_tag_value(value)
                    .map_err(|e| format!("in tag filter `{}`: {e}", truncate(s)))?;
                Ok(TagFilter::ValueOnly(value.to_string()))
            }
            Some((key, value)) => {
                check_tag_key(key)?;
                if value.is_empty() {
                    return Err(format!(
                        "tag filter `{}` has no value: write `{}` to match the key alone",
                        truncate(s),
                        truncate(key)
                    ));
                }
                check_tag_value(value)
                    .map_err(|e| format!("in tag filter `{}`: {e}", truncate(s)))?;
                Ok(TagFilter::KeyAndValue {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            }
        }
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagFilter::KeyOnly(k) => f.write_str(k),
            TagFilter::ValueOnly(v) => write!(f, "={v}"),
            TagFilter::KeyAndValue { key, value } => write!(f, "{key}={value}"),
        }
    }
}

/// A tag key: 1 to 128 of letters, digits and `-_.:/@+`. Agents' tags are held to the
/// same rule, so every key a filter can name is one an agent can have.
pub fn check_tag_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag key `{}` must be 1 to 128 letters, digits, `-`, `_`, `.`, `:`, `/`, `@` or `+`",
            truncate(key)
        ))
    }
}

/// A tag value: 1 to 256 characters, no control characters, no space at either end.
pub fn check_tag_value(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && !value.chars().any(char::is_control)
        && value.trim() == value;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag value `{}` must be 1 to 256 characters without control characters or spaces at either end",
            truncate(value)
        ))
    }
}

/// Parses and validates `deploy.yaml`.
pub fn parse_deploy_yaml(file: &str, text: &str) -> Result<DeployConfig, ConfigError> {
    check_size(file, text)?;
    // A file holding only comments is an empty configuration.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(DeployConfig::default());
    }
    let raw: RawDeploy = serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(file, e))?;
    Ok(DeployConfig {
        applications: raw.applications.0,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    #[serde(default)]
    applications: Applications,
}

/// A name as slipway writes them: letters, digits, `-`, `_`, `.`; at most 100.
fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` is not a valid name: use letters, digits, `-`, `_` and `.` (starting with a letter or digit, at most 100)",
            truncate(s)
        ))
    }
}

/// A name checked, and checked unique among `seen`, inside its own scalar.
struct NameSeed<'a> {
    what: &'static str,
    scope: &'static str,
    seen: &'a mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let NameSeed { what, scope, seen } = self;
        checked_str(d, |s| {
            check_name(what, &s)?;
            if !seen.insert(s.clone()) {
                return Err(format!(
                    "{what} `{s}` appears twice {scope}; give each a different name"
                ));
            }
            Ok(s)
        })
    }
}

/// Refuses whatever value is there, at that value (for "too many" errors).
struct Refuse(String);

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Refuse {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(serde::de::Error::custom(self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(serde::de::Error::custom(self.0))
    }
}

#[derive(Default)]
struct Applications(BTreeMap<String, Application>);

impl<'de> Deserialize<'de> for Applications {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Applications;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of application names to applications")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Applications, A::Error> {
                let mut seen = HashSet::new();
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key_seed(NameSeed {
                    what: "application",
                    scope: "in `applications`",
                    seen: &mut seen,
                })? {
                    let raw: RawApplication = map.next_value()?;
                    out.insert(
                        name,
                        Application {
                            groups: raw.groups.0,
                        },
                    );
                }
                Ok(Applications(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    #[serde(default)]
    groups: Groups,
}

#[derive(Default)]
struct Groups(BTreeMap<String, DeploymentGroup>);

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Groups;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of deployment group names to their settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Groups, A::Error> {
                let mut seen = HashSet::new();
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key_seed(NameSeed {
                    what: "deployment group",
                    scope: "in this application",
                    seen: &mut seen,
                })? {
                    let group: Group = map.next_value()?;
                    out.insert(name, group.0);
                }
                Ok(Groups(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "kebab-case")]
enum GroupField {
    Tags,
    Config,
    Alarms,
    IgnoreAlarmPollFailure,
    AutoRollback,
    Bake,
    FileExistsBehavior,
}

/// A group, read by hand so that checks across its fields are reported at the group.
struct Group(DeploymentGroup);

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Group;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a deployment group's settings (tags, config, alarms, …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Group, A::Error> {
                use serde::de::Error;
                let mut tags: Option<TagSets> = None;
                let mut config: Option<DeploymentConfig> = None;
                let mut alarms: Option<Alarms> = None;
                let mut ignore: Option<bool> = None;
                let mut rollback: Option<RollbackEvents> = None;
                let mut bake: Option<Bake> = None;
                let mut feb: Option<Feb> = None;
                fn twice<E: Error>(key: &str) -> E {
                    E::custom(format!("`{key}` is given twice in this group; keep one"))
                }
                while let Some(field) = map.next_key::<GroupField>()? {
                    match field {
                        GroupField::Tags if tags.is_some() => return Err(twice("tags")),
                        GroupField::Tags => tags = Some(map.next_value()?),
                        GroupField::Config if config.is_some() => return Err(twice("config")),
                        GroupField::Config => config = Some(map.next_value::<RawConfig>()?.0),
                        GroupField::Alarms if alarms.is_some() => return Err(twice("alarms")),
                        GroupField::Alarms => alarms = Some(map.next_value()?),
                        GroupField::IgnoreAlarmPollFailure if ignore.is_some() => {
                            return Err(twice("ignore-alarm-poll-failure"))
                        }
                        GroupField::IgnoreAlarmPollFailure => ignore = Some(map.next_value()?),
                        GroupField::AutoRollback if rollback.is_some() => {
                            return Err(twice("auto-rollback"))
                        }
                        GroupField::AutoRollback => rollback = Some(map.next_value()?),
                        GroupField::Bake if bake.is_some() => return Err(twice("bake")),
                        GroupField::Bake => bake = Some(map.next_value()?),
                        GroupField::FileExistsBehavior if feb.is_some() => {
                            return Err(twice("file-exists-behavior"))
                        }
                        GroupField::FileExistsBehavior => feb = Some(map.next_value()?),
                    }
                }
                let Some(tags) = tags else {
                    return Err(A::Error::custom(
                        "a deployment group needs `tags`: at least one tag set naming the agents it deploys to, e.g. `tags: [[\"role=web\"]]`",
                    ));
                };
                let alarms = alarms.map(|a| a.0).unwrap_or_default();
                let auto_rollback = rollback.map(|r| r.0).unwrap_or_default();
                if auto_rollback.on_alarm && alarms.is_empty() {
                    return Err(A::Error::custom(
                        "auto-rollback `alarm` needs at least one alarm in `alarms`; add one or remove `alarm`",
                    ));
                }
                Ok(Group(DeploymentGroup {
                    tags: tags.0,
                    config: config.unwrap_or_default(),
                    alarms,
                    ignore_alarm_poll_failure: ignore.unwrap_or(false),
                    auto_rollback,
                    bake: bake.and_then(|b| b.0),
                    file_exists_behavior: feb.map(|f| f.0),
                }))
            }
        }
        d.deserialize_map(V)
    }
}

struct TagSets(Vec<TagSet>);

impl<'de> Deserialize<'de> for TagSets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagSets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of tag sets, each a list of filters like [\"role=web\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TagSets, A::Error> {
                let mut out = Vec::new();
                loop {
                    if out.len() == MAX_TAG_SETS {
                        seq.next_element_seed(Refuse(format!(
                            "a group takes at most {MAX_TAG_SETS} tag sets; an agent must match every set, so merge or drop one"
                        )))?;
                        break;
                    }
                    match seq.next_element::<TagSetRaw>()? {
                        Some(set) => out.push(set.0),
                        None => break,
                    }
                }
                if out.is_empty() {
                    return Err(serde::de::Error::custom(
                        "`tags` needs at least one tag set, e.g. `tags: [[\"role=web\"]]`",
                    ));
                }
                Ok(TagSets(out))
            }
        }
        d.deserialize_seq(V)
    }
}

struct TagSetRaw(TagSet);

impl<'de> Deserialize<'de> for TagSetRaw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagSetRaw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tag set: a list of filters like [\"role=web\", \"role=api\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TagSetRaw, A::Error> {
                let mut filters = Vec::new();
                loop {
                    if filters.len() == MAX_TAG_FILTERS {
                        seq.next_element_seed(Refuse(format!(
                            "a tag set takes at most {MAX_TAG_FILTERS} filters"
                        )))?;
                        break;
                    }
                    match seq.next_element::<Filter>()? {
                        Some(f) => filters.push(f.0),
                        None => break,
                    }
                }
                if filters.is_empty() {
                    return Err(serde::de::Error::custom(
                        "a tag set needs at least one filter (`KEY=VALUE`, `KEY` or `=VALUE`)",
                    ));
                }
                Ok(TagSetRaw(TagSet { filters }))
            }
        }
        d.deserialize_seq(V)
    }
}

struct Filter(TagFilter);
impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| TagFilter::parse(&s).map(Filter))
    }
}

/// `config:` — a name or `{ min-healthy: { hosts: N } | { percent: P } }`.
struct RawConfig(DeploymentConfig);

const CONFIG_HELP: &str = "one-at-a-time, half-at-a-time, all-at-once, `{ min-healthy: { hosts: N } }` or `{ min-healthy: { percent: P } }`";

impl<'de> Deserialize<'de> for RawConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a deployment configuration: {CONFIG_HELP}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawConfig, E> {
                match v {
                    "one-at-a-time" => Ok(RawConfig(DeploymentConfig::OneAtATime)),
                    "half-at-a-time" => Ok(RawConfig(DeploymentConfig::HalfAtATime)),
                    "all-at-once" => Ok(RawConfig(DeploymentConfig::AllAtOnce)),
                    other => Err(E::custom(format!(
                        "config `{}` must be {CONFIG_HELP}",
                        truncate(other)
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawConfig, A::Error> {
                let Some(()) = map.next_key_seed(MinHealthyKey)? else {
                    return Err(serde::de::Error::custom(format!(
                        "config must be {CONFIG_HELP}"
                    )));
                };
                let value = match map.next_value::<RawMinHealthy>()? {
                    RawMinHealthy::Hosts(n) => DeploymentConfig::MinHealthyHosts(n),
                    RawMinHealthy::Percent(p) => DeploymentConfig::MinHealthyPercent(p.0),
                };
                if map.next_key_seed(MinHealthyKey)?.is_some() {
                    return Err(serde::de::Error::custom(
                        "`min-healthy` is given twice; keep one",
                    ));
                }
                Ok(RawConfig(value))
            }
        }
        d.deserialize_any(V)
    }
}

struct MinHealthyKey;
impl<'de> DeserializeSeed<'de> for MinHealthyKey {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        checked_str(d, |s| {
            if s == "min-healthy" {
                Ok(())
            } else {
                Err(format!(
                    "unknown key `{}` in config; it must be {CONFIG_HELP}",
                    truncate(&s)
                ))
            }
        })
    }
}

/// `{ hosts: N }` or `{ percent: P }`.
enum RawMinHealthy {
    Hosts(u32),
    Percent(Percent),
}

impl<'de> Deserialize<'de> for RawMinHealthy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMinHealthy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`{ hosts: N }` or `{ percent: P }`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMinHealthy, A::Error> {
                use serde::de::Error;
                let value = match map.next_key_seed(MinHealthyKind)? {
                    None => {
                        return Err(A::Error::custom(
                            "min-healthy needs `hosts: N` or `percent: P`",
                        ))
                    }
                    Some(true) => RawMinHealthy::Hosts(map.next_value()?),
                    Some(false) => RawMinHealthy::Percent(map.next_value()?),
                };
                if map.next_key_seed(MinHealthyKind)?.is_some() {
                    return Err(A::Error::custom(
                        "min-healthy takes one of `hosts` and `percent`, not both",
                    ));
                }
                Ok(value)
            }
        }
        d.deserialize_map(V)
    }
}

/// `hosts` (true) or `percent` (false).
struct MinHealthyKind;
impl<'de> DeserializeSeed<'de> for MinHealthyKind {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "hosts" => Ok(true),
            "percent" => Ok(false),
            other => Err(format!(
                "unknown key `{}` in min-healthy; use `hosts: N` or `percent: P`",
                truncate(other)
            )),
        })
    }
}

struct Percent(u8);
impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole percentage from 1 to 100")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Percent, E> {
                match u8::try_from(v) {
                    Ok(p @ 1..=100) => Ok(Percent(p)),
                    _ => Err(E::custom(format!(
                        "percent {v} must be from 1 to 100 (for none at all, use `all-at-once`)"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Percent, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("percent {v} must be from 1 to 100"))),
                }
            }
        }
        d.deserialize_u64(V)
    }
}

struct Alarms(Vec<Alarm>);

impl<'de> Deserialize<'de> for Alarms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Alarms;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of alarms")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Alarms, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                loop {
                    if out.len() == MAX_ALARMS {
                        seq.next_element_seed(Refuse(format!(
                            "a group takes at most {MAX_ALARMS} alarms"
                        )))?;
                        break;
                    }
                    match seq.next_element_seed(AlarmSeed { seen: &mut seen })? {
                        Some(alarm) => out.push(alarm),
                        None => break,
                    }
                }
                Ok(Alarms(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "kebab-case")]
enum AlarmField {
    Name,
    Prometheus,
    Http,
    Alertmanager,
}

/// One alarm, with its name checked unique among `seen`.
struct AlarmSeed<'a> {
    seen: &'a mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for AlarmSeed<'_> {
    type Value = Alarm;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Alarm, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AlarmSeed<'_> {
    type Value = Alarm;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an alarm: `name` and one of `prometheus`, `http` or `alertmanager`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Alarm, A::Error> {
        use serde::de::Error;
        let mut name: Option<String> = None;
        let mut kinds: Vec<AlarmKind> = Vec::new();
        while let Some(field) = map.next_key::<AlarmField>()? {
            match field {
                AlarmField::Name if name.is_some() => {
                    return Err(A::Error::custom("`name` is given twice in this alarm"))
                }
                AlarmField::Name => {
                    name = Some(map.next_value_seed(NameSeed {
                        what: "alarm",
                        scope: "in this group",
                        seen: &mut *self.seen,
                    })?)
                }
                AlarmField::Prometheus => {
                    let p: RawPrometheus = map.next_value()?;
                    kinds.push(AlarmKind::Prometheus {
                        url: p.url.0,
                        query: p.query.0,
                        condition: p.condition.0,
                    });
                }
                AlarmField::Http => {
                    let h: RawHttp = map.next_value()?;
                    kinds.push(AlarmKind::Http {
                        url: h.url.0,
                        expect: h.expect.map(|e| e.0).unwrap_or(200),
                        timeout: h.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(5)),
                    });
                }
                AlarmField::Alertmanager => {
                    let a: RawAlertmanager = map.next_value()?;
                    kinds.push(AlarmKind::Alertmanager { alert: a.alert.0 });
                }
            }
        }
        let Some(name) = name else {
            return Err(A::Error::custom(
                "an alarm needs a `name` (unique in its group)",
            ));
        };
        let mut kinds = kinds.into_iter();
        match (kinds.next(), kinds.next()) {
            (Some(kind), None) => Ok(Alarm { name, kind }),
            (None, _) => Err(A::Error::custom(format!(
                "alarm `{name}` watches nothing: give it one of `prometheus:`, `http:` or `alertmanager:`"
            ))),
            (Some(_), Some(_)) => Err(A::Error::custom(format!(
                "alarm `{name}` has more than one type: keep one of `prometheus:`, `http:` or `alertmanager:` (or make two alarms)"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: HttpUrl,
    query: Query,
    condition: RawCondition,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: HttpUrl,
    #[serde(default)]
    expect: Option<Status>,
    #[serde(default)]
    timeout: Option<HttpTimeout>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    alert: AlertName,
}

/// An `http://` or `https://` URL with a host.
struct HttpUrl(Url);
impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let url =
                Url::parse(&s).map_err(|e| format!("`{}` is not a URL ({e})", truncate(&s)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "URL `{}` must start with http:// or https://",
                    truncate(&s)
                ));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("URL `{}` names no host", truncate(&s)));
            }
            Ok(HttpUrl(url))
        })
    }
}

struct Query(String);
impl<'de> Deserialize<'de> for Query {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if s.trim().is_empty() {
                Err("the PromQL `query` is empty".to_string())
            } else if s.len() > 4096 {
                Err("the PromQL `query` is longer than 4096 bytes".to_string())
            } else {
                Ok(Query(s))
            }
        })
    }
}

struct RawCondition(Condition);
impl<'de> Deserialize<'de> for RawCondition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| Condition::parse(&s).map(RawCondition))
    }
}

struct Status(u16);
impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Status;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status from 100 to 599")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Status, E> {
                match u16::try_from(v) {
                    Ok(s @ 100..=599) => Ok(Status(s)),
                    _ => Err(E::custom(format!(
                        "expect {v} is not an HTTP status (100 to 599)"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Status, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "expect {v} is not an HTTP status (100 to 599)"
                    ))),
                }
            }
        }
        d.deserialize_u64(V)
    }
}

struct HttpTimeout(Duration);
impl<'de> Deserialize<'de> for HttpTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let t = parse_duration(&s)?;
            if t < Duration::from_secs(1) || t > Duration::from_secs(60) {
                return Err(format!(
                    "timeout `{}` must be between 1s and 60s",
                    truncate(&s)
                ));
            }
            Ok(HttpTimeout(t))
        })
    }
}

struct AlertName(String);
impl<'de> Deserialize<'de> for AlertName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if s.is_empty() || s.len() > 200 || s.chars().any(char::is_control) || s.trim() != s {
                Err(format!(
                    "alert `{}` must be an alert name (1 to 200 characters, as in the alert's `alertname` label)",
                    truncate(&s)
                ))
            } else {
                Ok(AlertName(s))
            }
        })
    }
}

struct RollbackEvents(AutoRollback);
impl<'de> Deserialize<'de> for RollbackEvents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RollbackEvents;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of `failure`, `alarm` and `stop`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RollbackEvents, A::Error> {
                let mut out = AutoRollback::default();
                while seq.next_element_seed(RollbackEvent(&mut out))?.is_some() {}
                Ok(RollbackEvents(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One `auto-rollback` entry, set in (and checked unique against) the flags so far.
struct RollbackEvent<'a>(&'a mut AutoRollback);
impl<'de> DeserializeSeed<'de> for RollbackEvent<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let flags = self.0;
        checked_str(d, |s| {
            let flag = match s.as_str() {
                "failure" => &mut flags.on_failure,
                "alarm" => &mut flags.on_alarm,
                "stop" => &mut flags.on_stop,
                other => {
                    return Err(format!(
                        "auto-rollback `{}` must be `failure`, `alarm` or `stop`",
                        truncate(other)
                    ))
                }
            };
            if *flag {
                return Err(format!("auto-rollback lists `{s}` twice"));
            }
            *flag = true;
            Ok(())
        })
    }
}

struct Bake(Option<Duration>);
impl<'de> Deserialize<'de> for Bake {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let t = parse_duration(&s)?;
            if t > MAX_BAKE {
                return Err(format!("bake `{}` must be at most 24h", truncate(&s)));
            }
            Ok(Bake((!t.is_zero()).then_some(t)))
        })
    }
}

struct Feb(FileExistsBehavior);
impl<'de> Deserialize<'de> for Feb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| FileExistsBehavior::parse(&s).map(Feb))
    }
}

#[cfg(test)]
mod tests;
