//! Repository names as clients send them, mapped to one canonical name.

use std::fmt;

/// A validated repository name: one to three `/`-separated segments of letters,
/// digits, `.`, `_` and `-`, no segment starting with `.` or `-`, no `.git` suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// Why a repository path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoNameError {
    /// Empty after stripping.
    #[error("no repository name given; use e.g. `team/app.git`")]
    Empty,
    /// Longer than the limit.
    #[error("repository name is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A character or segment that is not allowed.
    #[error("invalid repository name `{shown}`: {why}")]
    Invalid {
        /// The name, cut short and with odd characters escaped.
        shown: String,
        /// What is wrong.
        why: &'static str,
    },
}

const MAX_LEN: usize = 100;
const MAX_SEGMENTS: usize = 3;

impl RepoName {
    /// Parses a path as git clients send it: `'name.git'`, `'/name.git'`, `name`,
    /// `~/name`, `team/name.git/`. Quotes are already removed by the command parser.
    pub fn from_client_path(path: &str) -> Result<RepoName, RepoNameError> {
        let mut p = path;
        p = p.strip_prefix("~/").unwrap_or(p);
        p = p.trim_start_matches('/');
        p = p.trim_end_matches('/');
        p = p.strip_suffix(".git").unwrap_or(p);
        RepoName::parse(p)
    }

    /// Parses a canonical name (no `.git`, no leading `/`).
    pub fn parse(name: &str) -> Result<RepoName, RepoNameError> {
        let shown = || {
            name.chars()
                .take(60)
                .flat_map(char::escape_default)
                .collect::<String>()
        };
        if name.is_empty() {
            return Err(RepoNameError::Empty);
        }
        if name.len() > MAX_LEN {
            return Err(RepoNameError::TooLong { max: MAX_LEN });
        }
        let segments: Vec<&str> = name.split('/').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(RepoNameError::Invalid {
                shown: shown(),
                why: "at most three `/`-separated parts are allowed",
            });
        }
        for seg in &segments {
            if seg.is_empty() {
                return Err(RepoNameError::Invalid {
                    shown: shown(),
                    why: "empty path segment",
                });
            }
            if seg.starts_with('.') || seg.starts_with('-') {
                return Err(RepoNameError::Invalid {
                    shown: shown(),
                    why: "a part may not start with `.` or `-`",
                });
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(RepoNameError::Invalid {
                    shown: shown(),
                    why: "use only letters, digits, `.`, `_`, `-` and `/`",
                });
            }
            if seg.ends_with(".git") || seg.ends_with(".lock") {
                return Err(RepoNameError::Invalid {
                    shown: shown(),
                    why: "a part may not end in `.git` or `.lock`",
                });
            }
        }
        Ok(RepoName(name.to_string()))
    }

    /// The canonical name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_forms_map_to_one_name() {
        for form in [
            "app.git",
            "/app.git",
            "app",
            "~/app.git",
            "app/",
            "/app.git/",
        ] {
            assert_eq!(
                RepoName::from_client_path(form).unwrap().as_str(),
                "app",
                "{form}"
            );
        }
        assert_eq!(
            RepoName::from_client_path("/team/app.git")
                .unwrap()
                .as_str(),
            "team/app"
        );
    }

    #[test]
    fn hostile_forms_are_refused() {
        for bad in [
            "",
            "/",
            "..",
            "../etc",
            "a/../b",
            "/etc/passwd/..",
            "a//b",
            ".hidden",
            "-upload",
            "a b",
            "a;rm",
            "a\nb",
            "a\\b",
            "x.git.git",
            "a/b/c/d",
            "caf\u{e9}",
            "a/.git",
            "repo.lock",
        ] {
            assert!(
                RepoName::from_client_path(bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        let long = "a".repeat(101);
        assert!(matches!(
            RepoName::from_client_path(&long),
            Err(RepoNameError::TooLong { .. })
        ));
    }

    #[test]
    fn errors_escape_control_characters() {
        let err = RepoName::parse("a\u{1b}[31m").unwrap_err().to_string();
        assert!(!err.contains('\u{1b}'), "{err}");
    }
}
