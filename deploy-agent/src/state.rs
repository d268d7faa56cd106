//! The agent's state directory: everything the agent keeps between lifecycle events and
//! across restarts, per deployment group.
//!
//! ```text
//! STATE/groups/GROUP_ID/
//!     deployments/DEPLOYMENT_ID/archive/           the revision bundle, as staged
//!     deployments/DEPLOYMENT_ID/logs/scripts.log   every hook script's output
//!     last-successful                              the last successful deployment's id
//!     cleanup                                      what the last Install created
//! ```
//!
//! Ids become directory names, so only [`Ident`]s (letters, digits, `.`, `_`, `-`) are
//! accepted. Small files are replaced atomically (write, then rename). Hook scripts run
//! from the archive, so a `runas` user must be able to reach it: the directories are
//! created world-readable (subject to the umask) and the state directory itself must be
//! too.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many deployment archives a group keeps (the current and the last successful one
/// are always kept).
pub const KEPT_ARCHIVES: usize = 5;

/// An id that is safe as a directory name: 1 to 128 of `A-Z a-z 0-9 . _ -`, not
/// starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Checks `value`; `what` names it in the error ("deployment id").
    pub fn parse(what: &'static str, value: &str) -> Result<Ident, StateError> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && !value.starts_with('.')
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Ident(value.to_string()))
        } else {
            Err(StateError::BadIdent {
                what,
                value: value.chars().take(130).collect(),
            })
        }
    }

    /// `value` itself if it is a valid id, otherwise an id made from it (for ids that come
    /// from the server): each character that may not appear becomes `_`, a leading `.`
    /// too, and `-` and the first 12 hex digits of the value's SHA-256 are added so that
    /// different values stay apart.
    pub fn derive(value: &str) -> Ident {
        if let Ok(id) = Ident::parse("id", value) {
            return id;
        }
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(value.as_bytes()));
        let mut safe: String = value
            .chars()
            .take(100)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if safe.starts_with('.') {
            safe.replace_range(..1, "_");
        }
        Ident(format!("{safe}-{}", &digest[..12]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A state directory problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An id that cannot be a directory name.
    #[error("{what} `{value}` cannot be used: use 1 to 128 letters, digits, `.`, `_` or `-`, not starting with `.`")]
    BadIdent {
        /// What the id is.
        what: &'static str,
        /// The id given.
        value: String,
    },
    /// A file the agent keeps cannot be read back.
    #[error("{path} in the agent's state directory is damaged ({message})")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The disk said no.
    #[error("cannot {action} {path} in the agent's state directory: {source}; check that the directory is writable by the agent")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let dir = dir.canonicalize().map_err(io("open", dir))?;
        Ok(StateDir { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state of deployment group `group_id`.
    pub fn group(&self, group_id: &Ident) -> GroupState {
        GroupState {
            dir: self.dir.join("groups").join(group_id.as_str()),
        }
    }
}

/// What the agent keeps for one deployment group.
#[derive(Debug, Clone)]
pub struct GroupState {
    dir: PathBuf,
}

impl GroupState {
    /// The directory of deployment `id`.
    pub fn deployment_dir(&self, id: &Ident) -> PathBuf {
        self.dir.join("deployments").join(id.as_str())
    }

    /// Where deployment `id`'s bundle is staged.
    pub fn archive(&self, id: &Ident) -> PathBuf {
        self.deployment_dir(id).join("archive")
    }

    /// Deployment `id`'s script log.
    pub fn script_log(&self, id: &Ident) -> PathBuf {
        self.deployment_dir(id).join("logs").join("scripts.log")
    }

    /// The list of what the last Install created (NUL-terminated paths).
    pub fn cleanup_file(&self) -> PathBuf {
        self.dir.join("cleanup")
    }

    /// Creates deployment `id`'s directories (`archive` is left for staging).
    pub fn create_deployment(&self, id: &Ident) -> Result<(), StateError> {
        let logs = self.deployment_dir(id).join("logs");
        std::fs::create_dir_all(&logs).map_err(io("create", &logs))
    }

    /// The last successful deployment of the group whose archive is still here, if any.
    pub fn last_successful(&self) -> Result<Option<Ident>, StateError> {
        let path = self.dir.join("last-successful");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let id = Ident::parse("recorded deployment id", text.trim())?;
        if self.archive(&id).is_dir() {
            Ok(Some(id))
        } else {
            tracing::warn!(deployment = %id, path = %self.archive(&id).display(),
                "the last successful deployment's archive is gone; its scripts cannot run");
            Ok(None)
        }
    }

    /// Records deployment `id` as the group's last successful one.
    pub fn record_last_successful(&self, id: &Ident) -> Result<(), StateError> {
        write_atomically(&self.dir.join("last-successful"), id.as_str().as_bytes())
    }

    /// Removes old deployment directories, keeping the [`KEPT_ARCHIVES`] newest, `current`
    /// and the last successful one. Failures are logged, not returned: pruning is
    /// housekeeping.
    pub fn prune(&self, current: &Ident) {
        let keep_too = self.last_successful().ok().flatten();
        let root = self.dir.join("deployments");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                name != current.as_str() && keep_too.as_ref().is_none_or(|k| name != k.as_str())
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        dirs.sort();
        let room = KEPT_ARCHIVES.saturating_sub(1 + usize::from(keep_too.is_some()));
        let excess = dirs.len().saturating_sub(room);
        for (_, dir) in dirs.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove an old deployment archive");
            }
        }
    }
}

/// Replaces `path` with `bytes` so that readers see the old or the new content, and
/// waits until the content is on disk (it survives a power loss).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_replacing(path, bytes, true)
}

/// Like [`write_atomically`], without waiting for the disk: the file survives the
/// agent's crash but maybe not the machine's.
pub(crate) fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StateError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io("write", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    if durable {
        file.sync_all().map_err(io("write", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Ident {
        Ident::parse("test id", s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn idents_are_safe_directory_names() {
        for good in ["d-AB1CDEF23", "local-web.prod_1"] {
            assert!(Ident::parse("id", good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            let err = Ident::parse("deployment id", bad).unwrap_err();
            assert!(err.to_string().starts_with("deployment id `"), "{err}");
        }
    }

    #[test]
    fn server_ids_become_safe_directory_names() {
        assert_eq!(Ident::derive("d-5").as_str(), "d-5");
        assert_eq!(Ident::derive("web.prod").as_str(), "web.prod");
        let odd = Ident::derive("web prod/../x");
        assert!(odd.as_str().starts_with("web_prod_.._x-"), "{odd}");
        assert!(Ident::parse("id", odd.as_str()).is_ok(), "{odd}");
        assert_ne!(odd, Ident::derive("web prod/../y"));
        for weird in ["", "..", ".", "é"] {
            let id = Ident::derive(weird);
            assert!(Ident::parse("id", id.as_str()).is_ok(), "{weird:?} -> {id}");
        }
        assert_eq!(Ident::derive(&"x".repeat(300)).as_str().len(), 113);
    }

    #[test]
    fn last_successful_needs_its_archive() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::open(&dir.path().join("state")).unwrap_or_else(|e| panic!("{e}"));
        let group = state.group(&id("g"));
        assert_eq!(group.last_successful().ok().flatten(), None);
        group
            .record_last_successful(&id("d-1"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            group.last_successful().ok().flatten(),
            None,
            "no archive yet"
        );
        std::fs::create_dir_all(group.archive(&id("d-1"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(group.last_successful().ok().flatten(), Some(id("d-1")));
    }

    #[test]
    fn prune_keeps_the_newest_the_current_and_the_last_successful() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let group = state.group(&id("g"));
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for n in 0..8u64 {
            let d = id(&format!("d-{n}"));
            std::fs::create_dir_all(group.archive(&d)).unwrap_or_else(|e| panic!("{e}"));
            let f = std::fs::File::open(group.deployment_dir(&d)).unwrap_or_else(|e| panic!("{e}"));
            f.set_modified(t0 + std::time::Duration::from_secs(n))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        group
            .record_last_successful(&id("d-0"))
            .unwrap_or_else(|e| panic!("{e}"));
        group.prune(&id("d-1"));
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("groups/g/deployments"))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(left, ["d-0", "d-1", "d-5", "d-6", "d-7"]);
    }
}
