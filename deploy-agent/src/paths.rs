//! The two kinds of path an appspec names, and where they end up on this host.
//!
//! A [`BundlePath`] is inside the revision (a `files` source, a hook `location`); a
//! [`HostPath`] is an absolute path on the host (a `files` destination, a `permissions`
//! object). Both are checked without I/O when the appspec is parsed (no `..`); whether a
//! bundle path escapes through a symlink can only be checked on disk
//! ([`BundlePath::resolve_within`]). A [`HostRoot`] places host paths under a directory,
//! so that several agents can share one machine in tests.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A path inside the revision bundle, relative to its root; empty for the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundlePath {
    parts: Vec<String>,
}

impl BundlePath {
    /// Parses an appspec path inside the bundle. A leading `/` means the bundle root
    /// (`/` alone is the whole bundle), as in CodeDeploy; `.` parts are dropped.
    pub fn parse(text: &str) -> Result<BundlePath, String> {
        if text.trim().is_empty() {
            return Err("the path is empty; name a path inside the bundle".into());
        }
        if text.contains('\0') {
            return Err("the path contains a NUL character".into());
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(format!(
                        "`{text}` leaves the bundle through `..`; name a path inside the bundle"
                    ))
                }
                other => parts.push(other.to_string()),
            }
        }
        Ok(BundlePath { parts })
    }

    /// Whether this is the bundle root (`/`).
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The last part (the name a copied file keeps), if this is not the root.
    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The path under `bundle_root`, without touching the disk.
    pub fn under(&self, bundle_root: &Path) -> PathBuf {
        let mut path = bundle_root.to_path_buf();
        path.extend(&self.parts);
        path
    }

    /// The path under `bundle_root`, checked on disk: the directories leading to it must
    /// not lead out of the bundle through symlinks. The last part itself is not followed
    /// (it may be a symlink, which callers treat as a link). Fails if a leading directory
    /// does not exist.
    pub fn resolve_within(&self, bundle_root: &Path) -> Result<PathBuf, EscapeError> {
        let root = bundle_root
            .canonicalize()
            .map_err(|e| EscapeError::Unreadable(bundle_root.display().to_string(), e))?;
        let Some((last, leading)) = self.parts.split_last() else {
            return Ok(root);
        };
        let mut parent = root.clone();
        parent.extend(leading);
        let real_parent = parent.canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EscapeError::Missing(self.to_string())
            } else {
                EscapeError::Unreadable(self.to_string(), e)
            }
        })?;
        if !real_parent.starts_with(&root) {
            return Err(EscapeError::Escapes(self.to_string()));
        }
        Ok(real_parent.join(last))
    }
}

impl fmt::Display for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.parts.join("/"))
        }
    }
}

/// A bundle path that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EscapeError {
    /// A directory on the way is a symlink leading out of the bundle.
    #[error("`{0}` leads out of the bundle through a symlink; keep sources and scripts inside the bundle")]
    Escapes(String),
    /// A directory on the way does not exist.
    #[error("`{0}` does not exist in the bundle")]
    Missing(String),
    /// The disk said no.
    #[error("cannot read `{0}` in the bundle: {1}")]
    Unreadable(String, #[source] std::io::Error),
}

/// An absolute, normalized path on the host (no `.` or `..` parts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPath {
    path: PathBuf,
}

impl HostPath {
    /// Parses an absolute host path from an appspec.
    pub fn parse(text: &str) -> Result<HostPath, String> {
        if text.contains('\0') {
            return Err("the path contains a NUL character".into());
        }
        let given = Path::new(text);
        if !given.is_absolute() {
            return Err(format!(
                "`{text}` is not an absolute path; write the full path, such as /srv/app"
            ));
        }
        let mut path = PathBuf::from("/");
        for component in given.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(part) => path.push(part),
                Component::ParentDir => {
                    return Err(format!("`{text}` contains `..`; write the path without it"))
                }
                Component::Prefix(_) => return Err(format!("`{text}` is not a Linux path")),
            }
        }
        Ok(HostPath { path })
    }

    /// The path as written (normalized), e.g. `/srv/app`.
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

/// Where host paths are placed: `/` on a real host; a directory in tests, so that
/// several agents can run on one machine without root and without clashing. This is a
/// convenience, not a jail: symlinks already under the root are followed like on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    dir: PathBuf,
}

impl HostRoot {
    /// The real root, `/`.
    pub fn system() -> HostRoot {
        HostRoot {
            dir: PathBuf::from("/"),
        }
    }

    /// Host paths go under `dir`, which must be an existing directory.
    pub fn new(dir: &Path) -> Result<HostRoot, RootError> {
        let dir = dir
            .canonicalize()
            .map_err(|e| RootError(dir.to_path_buf(), e.to_string()))?;
        if !dir.is_dir() {
            return Err(RootError(dir, "it is not a directory".into()));
        }
        Ok(HostRoot { dir })
    }

    /// The directory host paths go under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `path` is on this host.
    pub fn place(&self, path: &HostPath) -> PathBuf {
        match path.path.strip_prefix("/") {
            Ok(relative) => self.dir.join(relative),
            Err(_) => self.dir.join(&path.path),
        }
    }

    /// The prefix scripts put before absolute paths (`SLIPWAY_AGENT_ROOT`): empty for `/`.
    pub fn script_prefix(&self) -> String {
        if self.dir == Path::new("/") {
            String::new()
        } else {
            self.dir.display().to_string()
        }
    }
}

/// A `--root` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {0} as the root for installed files ({1}); pass an existing directory")]
pub struct RootError(PathBuf, String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_stay_inside() {
        assert!(BundlePath::parse("/")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_root());
        let p = BundlePath::parse("./scripts//start.sh").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.to_string(), "scripts/start.sh");
        assert_eq!(p.file_name(), Some("start.sh"));
        let err = BundlePath::parse("scripts/../../etc/passwd").unwrap_err();
        assert!(err.contains("leaves the bundle"), "{err}");
        assert!(BundlePath::parse("  ").is_err());
    }

    #[test]
    fn host_paths_are_absolute_and_normal() {
        let p = HostPath::parse("/srv/./app/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.to_string(), "/srv/app");
        assert!(HostPath::parse("srv/app").unwrap_err().contains("absolute"));
        assert!(HostPath::parse("/srv/../etc").unwrap_err().contains("`..`"));
    }

    #[test]
    fn root_places_host_paths_under_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = HostRoot::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let p = HostPath::parse("/srv/app").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(root.place(&p), root.dir().join("srv/app"));
        assert_eq!(HostRoot::system().place(&p), PathBuf::from("/srv/app"));
        assert_eq!(HostRoot::system().script_prefix(), "");
        let missing = HostRoot::new(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("pass an existing directory"));
    }

    #[test]
    fn a_symlinked_directory_cannot_lead_out() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("in")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("in", dir.path().join("alias"))
            .unwrap_or_else(|e| panic!("{e}"));
        let escape = BundlePath::parse("out/x.sh").unwrap_or_else(|e| panic!("{e}"));
        let err = escape.resolve_within(dir.path()).unwrap_err();
        assert!(err.to_string().contains("leads out of the bundle"), "{err}");
        let inside = BundlePath::parse("alias/x.sh").unwrap_or_else(|e| panic!("{e}"));
        let real = inside
            .resolve_within(dir.path())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(real.ends_with("in/x.sh"), "{}", real.display());
    }
}
