//! `builds.yaml` in the admin repository: per-repository build settings.
//!
//! ```yaml
//! repos:
//!   "app-*":
//!     executor: local       # local (default); docker arrives with the Docker executor
//!     timeout: 30m          # default 60m
//!     params: ["/app/*"]    # parameters these builds may read (none by default)
//! ```
//! The first pattern (in file order) that matches a repository's name applies.

use std::time::Duration;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{check_size, checked_str, parse_duration, ConfigError};
use crate::pattern::Pattern;

/// The file's name in the admin repository.
pub const BUILDS_FILE: &str = "builds.yaml";

/// A validated `builds.yaml`.
#[derive(Debug, Clone, Default)]
pub struct BuildsConfig {
    /// Settings by repository pattern, in file order.
    pub repos: Vec<(Pattern, RepoBuilds)>,
}

/// One repository pattern's settings.
#[derive(Debug, Clone)]
pub struct RepoBuilds {
    /// The build's time limit.
    pub timeout: Duration,
    /// Parameter-name patterns the builds may read.
    pub params: Vec<Pattern>,
}

impl Default for RepoBuilds {
    fn default() -> Self {
        RepoBuilds {
            timeout: Duration::from_secs(3600),
            params: Vec::new(),
        }
    }
}

impl BuildsConfig {
    /// The settings for `repo` (defaults when no pattern matches).
    pub fn for_repo(&self, repo: &str) -> RepoBuilds {
        self.repos
            .iter()
            .find(|(p, _)| p.is_match(repo))
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

impl RepoBuilds {
    /// Whether builds may read parameter `name`.
    pub fn may_read(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.is_match(name))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilds {
    #[serde(default)]
    repos: Ordered,
}

#[derive(Default)]
struct Ordered(Vec<(Pattern, RepoBuilds)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of repository patterns to build settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Glob>()? {
                    let value: RawRepo = map.next_value()?;
                    out.push((
                        key.0,
                        RepoBuilds {
                            timeout: value
                                .timeout
                                .map(|t| t.0)
                                .unwrap_or(Duration::from_secs(3600)),
                            params: value.params.into_iter().map(|g| g.0).collect(),
                        },
                    ));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    #[serde(default, rename = "executor")]
    _executor: Option<Executor>,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default)]
    params: Vec<Glob>,
}

struct Glob(Pattern);
impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| Pattern::new(&s).map(Glob))
    }
}

struct Executor;
impl<'de> Deserialize<'de> for Executor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "local" => Ok(Executor),
            "docker" => Err(
                "the docker executor is not available in this version of slipway; use `local`"
                    .into(),
            ),
            other => Err(format!("executor `{other}` must be `local`")),
        })
    }
}

struct Timeout(Duration);
impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let t = parse_duration(&s)?;
            if t < Duration::from_secs(60) || t > Duration::from_secs(36 * 3600) {
                return Err(format!("timeout `{s}` must be between 1m and 36h"));
            }
            Ok(Timeout(t))
        })
    }
}

/// Parses and validates `builds.yaml`.
pub fn parse_builds_yaml(file: &str, text: &str) -> Result<BuildsConfig, ConfigError> {
    check_size(file, text)?;
    let raw: RawBuilds = serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(file, e))?;
    Ok(BuildsConfig { repos: raw.repos.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_pattern_wins_and_defaults_apply() {
        let c = parse_builds_yaml(
            "builds.yaml",
            "repos:\n  \"app-web\":\n    timeout: 10m\n  \"app-*\":\n    timeout: 30m\n    params: [\"/app/*\"]\n",
        )
        .unwrap();
        assert_eq!(c.for_repo("app-web").timeout, Duration::from_secs(600));
        assert!(!c.for_repo("app-web").may_read("/app/x"));
        assert!(c.for_repo("app-api").may_read("/app/token"));
        assert!(!c.for_repo("app-api").may_read("/ops/token"));
        assert_eq!(c.for_repo("other").timeout, Duration::from_secs(3600));
    }

    #[test]
    fn mistakes_are_located() {
        let err = parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    executor: docker\n")
            .unwrap_err();
        assert_eq!((err.line, err.column), (3, 15), "{err}");
        assert!(err.message.contains("not available"), "{err}");
        let err =
            parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    timeout: 5s\n").unwrap_err();
        assert!(err.message.contains("between 1m and 36h"), "{err}");
        let err =
            parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    tmeout: 5m\n").unwrap_err();
        assert!(err.message.contains("unknown field `tmeout`"), "{err}");
    }
}
