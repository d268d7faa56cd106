//! When a push starts a pipeline execution: include/exclude globs on branches, tags and
//! the paths a push changed (excludes win), as CodePipeline's git triggers.
//!
//! Globs are path globs: `*` stays within one `/`-separated part, `**` crosses parts
//! (`release/*` matches `release/1.2`, not `release/1/hotfix`; `docs/**` matches all of
//! `docs`). A pipeline without triggers runs for pushes to the repository's default
//! branch.

use serde::{Deserialize, Deserializer};

use crate::config::checked_str;
use crate::pattern::Pattern;

/// One push trigger: branches (optionally narrowed by changed paths), or tags.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    /// Branch names (without `refs/heads/`).
    pub branches: Option<Filter>,
    /// Tag names (without `refs/tags/`).
    pub tags: Option<Filter>,
    /// Paths the push changed; at least one must pass.
    pub paths: Option<Filter>,
}

/// Include and exclude globs; an empty include list includes everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A name must match one of these (when there are any); path globs
    /// ([`Pattern::path`]).
    pub include: Vec<Pattern>,
    /// A name matching one of these is out, whatever the includes say.
    pub exclude: Vec<Pattern>,
}

impl Filter {
    /// Whether `name` passes.
    pub fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.is_match(name)))
            && !self.exclude.iter().any(|g| g.is_match(name))
    }
}

/// What a push changed, for the `paths` filter.
pub enum Changed<'a> {
    /// These paths.
    Paths(&'a [String]),
    /// Not known (e.g. the history could not be read): a `paths` filter lets it through.
    Unknown,
}

impl Trigger {
    /// Whether a push to `refname` that changed `changed` starts an execution.
    pub fn matches(&self, refname: &str, changed: &Changed<'_>) -> bool {
        if let Some(tag) = refname.strip_prefix("refs/tags/") {
            return self.tags.as_ref().is_some_and(|f| f.allows(tag));
        }
        let Some(branch) = refname.strip_prefix("refs/heads/") else {
            return false;
        };
        if !self.branches.as_ref().is_some_and(|f| f.allows(branch)) {
            return false;
        }
        match (&self.paths, changed) {
            (None, _) | (Some(_), Changed::Unknown) => true,
            (Some(filter), Changed::Paths(paths)) => paths.iter().any(|p| filter.allows(p)),
        }
    }
}

/// Whether any of `triggers` starts an execution for this push; no triggers means pushes
/// to `default_branch`.
pub fn any_matches(
    triggers: &[Trigger],
    default_branch: &str,
    refname: &str,
    changed: &Changed<'_>,
) -> bool {
    if triggers.is_empty() {
        return refname.strip_prefix("refs/heads/") == Some(default_branch);
    }
    triggers.iter().any(|t| t.matches(refname, changed))
}

/// A path glob as written in a filter (1 to 255 characters).
struct PathGlob(Pattern);

impl<'de> Deserialize<'de> for PathGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if s.is_empty() || s.len() > 255 {
                return Err(format!(
                    "`{s}` is not a usable pattern: write 1 to 255 characters"
                ));
            }
            Pattern::path(&s).map(PathGlob)
        })
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            include: Vec<PathGlob>,
            #[serde(default)]
            exclude: Vec<PathGlob>,
        }
        let raw = Raw::deserialize(d)?;
        if raw.include.is_empty() && raw.exclude.is_empty() {
            return Err(serde::de::Error::custom(
                "a filter needs `include:` or `exclude:` patterns",
            ));
        }
        if raw.include.len() > 8 || raw.exclude.len() > 8 {
            return Err(serde::de::Error::custom(
                "a filter takes at most 8 include and 8 exclude patterns",
            ));
        }
        Ok(Filter {
            include: raw.include.into_iter().map(|g| g.0).collect(),
            exclude: raw.exclude.into_iter().map(|g| g.0).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        Filter {
            include: include.iter().map(|g| Pattern::path(g).unwrap()).collect(),
            exclude: exclude.iter().map(|g| Pattern::path(g).unwrap()).collect(),
        }
    }

    #[test]
    fn excludes_win_and_star_stays_in_one_part() {
        let f = filter(&["main", "release/*"], &["release/old*"]);
        assert!(f.allows("main"));
        assert!(f.allows("release/1.2"));
        assert!(!f.allows("release/1/hotfix"));
        assert!(!f.allows("release/old-1"));
        assert!(!f.allows("feature/x"));
        assert!(filter(&[], &["wip/**"]).allows("feature/x"));
        assert!(!filter(&[], &["wip/**"]).allows("wip/a/b"));
    }

    #[test]
    fn branches_paths_and_tags() {
        let t = Trigger {
            branches: Some(filter(&["main"], &[])),
            paths: Some(filter(&[], &["docs/**", "**/*.md"])),
            tags: None,
        };
        let code = vec!["src/main.rs".to_string(), "docs/a.md".to_string()];
        let docs = vec!["docs/guide/a.txt".to_string(), "README.md".to_string()];
        assert!(t.matches("refs/heads/main", &Changed::Paths(&code)));
        assert!(!t.matches("refs/heads/main", &Changed::Paths(&docs)));
        assert!(t.matches("refs/heads/main", &Changed::Unknown));
        assert!(!t.matches("refs/heads/dev", &Changed::Paths(&code)));
        assert!(!t.matches("refs/tags/v1", &Changed::Paths(&code)));
        let tags = Trigger {
            tags: Some(filter(&["v*"], &[])),
            ..Default::default()
        };
        assert!(tags.matches("refs/tags/v1.0", &Changed::Unknown));
        assert!(!tags.matches("refs/heads/v1.0", &Changed::Unknown));
        assert!(any_matches(
            &[],
            "main",
            "refs/heads/main",
            &Changed::Unknown
        ));
        assert!(!any_matches(
            &[],
            "main",
            "refs/heads/dev",
            &Changed::Unknown
        ));
        assert!(!any_matches(
            &[],
            "main",
            "refs/tags/main",
            &Changed::Unknown
        ));
    }
}
