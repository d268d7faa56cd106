//! `builds.yaml` in the admin repository: per-repository build settings.
//!
//! ```yaml
//! repos:
//!   "app-*":
//!     executor: docker      # local (default) | docker
//!     image: slipway/build:local   # required with docker; never pulled, must exist
//!     timeout: 30m          # default 60m
//!     queued-timeout: 2h    # default 8h: a build waiting longer ends as TIMED_OUT
//!     params: ["/app/*"]    # parameters these builds may read (none by default)
//!     guard: [main]         # branches moved back when their pushed commit fails to build
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

/// Where a build's commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorKind {
    /// On the server's host, as an unprivileged user.
    Local,
    /// In a container of this (local) image, through the Docker engine.
    Docker {
        /// The image reference.
        image: String,
    },
}

/// One repository pattern's settings.
#[derive(Debug, Clone)]
pub struct RepoBuilds {
    /// Where commands run.
    pub executor: ExecutorKind,
    /// The build's time limit.
    pub timeout: Duration,
    /// How long a build may wait in the queue.
    pub queued_timeout: Duration,
    /// Parameter-name patterns the builds may read.
    pub params: Vec<Pattern>,
    /// Branch-name patterns moved back when their pushed commit fails to build.
    pub guard: Vec<Pattern>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_QUEUED_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

impl Default for RepoBuilds {
    fn default() -> Self {
        RepoBuilds {
            executor: ExecutorKind::Local,
            timeout: DEFAULT_TIMEOUT,
            queued_timeout: DEFAULT_QUEUED_TIMEOUT,
            params: Vec::new(),
            guard: Vec::new(),
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

    /// Whether branch `name` (without `refs/heads/`) is guarded.
    pub fn guards(&self, branch: &str) -> bool {
        self.guard.iter().any(|p| p.is_match(branch))
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
                    let executor = match (value.executor, value.image) {
                        (None | Some(Executor::Local), None) => ExecutorKind::Local,
                        (None | Some(Executor::Local), Some(_)) => {
                            return Err(serde::de::Error::custom(
                                "`image` is only used with `executor: docker`; add that or remove `image`",
                            ))
                        }
                        (Some(Executor::Docker), Some(image)) => {
                            ExecutorKind::Docker { image: image.0 }
                        }
                        (Some(Executor::Docker), None) => {
                            return Err(serde::de::Error::custom(
                                "`executor: docker` needs `image:` naming an image that exists on the server (it is never pulled)",
                            ))
                        }
                    };
                    out.push((
                        key.0,
                        RepoBuilds {
                            executor,
                            timeout: value.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
                            queued_timeout: value
                                .queued_timeout
                                .map(|t| t.0)
                                .unwrap_or(DEFAULT_QUEUED_TIMEOUT),
                            params: value.params.into_iter().map(|g| g.0).collect(),
                            guard: value.guard.into_iter().map(|g| g.0).collect(),
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
    #[serde(default)]
    executor: Option<Executor>,
    #[serde(default)]
    image: Option<Image>,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default, rename = "queued-timeout")]
    queued_timeout: Option<QueuedTimeout>,
    #[serde(default)]
    params: Vec<Glob>,
    #[serde(default)]
    guard: Vec<Glob>,
}

struct Glob(Pattern);
impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| Pattern::new(&s).map(Glob))
    }
}

enum Executor {
    Local,
    Docker,
}
impl<'de> Deserialize<'de> for Executor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "local" => Ok(Executor::Local),
            "docker" => Ok(Executor::Docker),
            other => Err(format!("executor `{other}` must be `local` or `docker`")),
        })
    }
}

/// A Docker image reference: `name[:tag][@digest]`, nothing a command line could take
/// for an option.
struct Image(String);
impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let ok = !s.is_empty()
                && s.len() <= 255
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'/' | b':' | b'_' | b'-' | b'@')
                });
            if ok {
                Ok(Image(s))
            } else {
                Err(format!(
                    "image `{s}` is not an image reference like `slipway/build:local`"
                ))
            }
        })
    }
}

struct QueuedTimeout(Duration);
impl<'de> Deserialize<'de> for QueuedTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let t = parse_duration(&s)?;
            if t < Duration::from_secs(5 * 60) || t > Duration::from_secs(8 * 3600) {
                return Err(format!("queued-timeout `{s}` must be between 5m and 8h"));
            }
            Ok(QueuedTimeout(t))
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
        assert_eq!(c.for_repo("other").executor, ExecutorKind::Local);
    }

    #[test]
    fn the_example_file_parses() {
        let c = parse_builds_yaml("builds.yaml", include_str!("../../../etc/builds.yaml"))
            .expect("etc/builds.yaml parses");
        assert!(matches!(
            c.for_repo("app-web").executor,
            ExecutorKind::Docker { .. }
        ));
        assert!(c.for_repo("app-api").guards("release/2"));
    }

    #[test]
    fn docker_guard_and_queue_settings() {
        let c = parse_builds_yaml(
            "builds.yaml",
            "repos:\n  \"*\":\n    executor: docker\n    image: slipway/build:local\n    queued-timeout: 10m\n    guard: [main, \"release/*\"]\n",
        )
        .unwrap();
        let r = c.for_repo("x");
        assert_eq!(
            r.executor,
            ExecutorKind::Docker {
                image: "slipway/build:local".into()
            }
        );
        assert_eq!(r.queued_timeout, Duration::from_secs(600));
        assert!(r.guards("main") && r.guards("release/1.2") && !r.guards("feature/x"));
    }

    #[test]
    fn mistakes_are_located() {
        let err = parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    executor: docker\n")
            .unwrap_err();
        assert!(err.message.contains("needs `image:`"), "{err}");
        let err = parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    executor: podman\n")
            .unwrap_err();
        assert_eq!((err.line, err.column), (3, 15), "{err}");
        assert!(err.message.contains("`local` or `docker`"), "{err}");
        let err = parse_builds_yaml(
            "builds.yaml",
            "repos:\n  \"a\":\n    executor: docker\n    image: \"--privileged\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.message.contains("not an image reference"), "{err}");
        let err =
            parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    timeout: 5s\n").unwrap_err();
        assert!(err.message.contains("between 1m and 36h"), "{err}");
        let err =
            parse_builds_yaml("builds.yaml", "repos:\n  \"a\":\n    tmeout: 5m\n").unwrap_err();
        assert!(err.message.contains("unknown field `tmeout`"), "{err}");
    }
}
