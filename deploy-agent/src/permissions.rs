//! Applying appspec `permissions` to what Install created, as CodeDeploy does.
//!
//! An entry whose `object` is a file Install copied sets that file (its `pattern` must
//! then be `**` and `except` empty). An entry whose object is a directory (created by
//! Install or already there) sets every object Install created *below* it whose path
//! relative to the object matches `pattern` and no `except`, filtered by `type`. Nothing
//! else is touched: what was there before Install, or what RETAIN kept, keeps its
//! settings. One object may be set by one entry only. Owner and group are set before
//! the mode (chown clears setuid bits); symlinks get owner and group only.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use crate::appspec::Permission;
use crate::paths::HostRoot;

/// Something Install created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Where.
    pub path: PathBuf,
    /// What.
    pub kind: CreatedKind,
}

/// What kind of object Install created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedKind {
    /// A regular file.
    File,
    /// A symlink.
    Link,
    /// A directory.
    Dir,
}

impl Created {
    pub(crate) fn file(path: &Path) -> Created {
        Created {
            path: path.to_path_buf(),
            kind: CreatedKind::File,
        }
    }
    pub(crate) fn link(path: &Path) -> Created {
        Created {
            path: path.to_path_buf(),
            kind: CreatedKind::Link,
        }
    }
    pub(crate) fn dir(path: &Path) -> Created {
        Created {
            path: path.to_path_buf(),
            kind: CreatedKind::Dir,
        }
    }
}

/// A `permissions` entry that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PermissionError {
    /// `pattern` or `except` on a file object.
    #[error("permissions for {object}: `pattern` and `except` apply to directories, and {object} is a file; remove them from this entry")]
    PatternOnFile {
        /// The object as written.
        object: String,
    },
    /// Two entries set one object.
    #[error("permissions for {0} are given by more than one entry in the appspec; keep one")]
    Twice(PathBuf),
    /// No such user or group.
    #[error(
        "{what} `{name}` in permissions does not exist on this host; create it or fix the appspec"
    )]
    NoSuchName {
        /// `owner` or `group`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The system refused.
    #[error("cannot set {what} of {path}: {source}{hint}")]
    Io {
        /// `the owner`, `the mode`.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
}

/// Applies `permissions` to `created`. Returns how many objects were set.
pub fn apply(
    permissions: &[Permission],
    root: &HostRoot,
    created: &[Created],
) -> Result<usize, PermissionError> {
    let mut done: HashSet<PathBuf> = HashSet::new();
    for permission in permissions {
        let object = root.place(&permission.object);
        let ids = Ids::resolve(permission)?;
        let as_file = created
            .iter()
            .find(|c| c.path == object && c.kind != CreatedKind::Dir);
        if let Some(file) = as_file {
            if !permission.files {
                continue;
            }
            if !permission.pattern.is_everything() || !permission.except.is_empty() {
                return Err(PermissionError::PatternOnFile {
                    object: permission.object.to_string(),
                });
            }
            set(file, permission, &ids, &mut done)?;
            continue;
        }
        let is_dir = created
            .iter()
            .any(|c| c.path == object && c.kind == CreatedKind::Dir)
            || object.is_dir();
        if !is_dir {
            tracing::debug!(object = %object.display(), "permissions object was not installed; skipped");
            continue;
        }
        for entry in created {
            let Ok(relative) = entry.path.strip_prefix(&object) else {
                continue;
            };
            let wanted = match entry.kind {
                CreatedKind::Dir => permission.directories,
                CreatedKind::File | CreatedKind::Link => permission.files,
            };
            if relative.as_os_str().is_empty() || !wanted {
                continue;
            }
            if permission.pattern.is_match(relative)
                && !permission.except.iter().any(|e| e.is_match(relative))
            {
                set(entry, permission, &ids, &mut done)?;
            }
        }
    }
    Ok(done.len())
}

/// The numeric owner and group of an entry.
struct Ids {
    uid: Option<Uid>,
    gid: Option<Gid>,
}

impl Ids {
    fn resolve(permission: &Permission) -> Result<Ids, PermissionError> {
        let no_such = |what: &'static str, name: &str| PermissionError::NoSuchName {
            what,
            name: name.to_string(),
        };
        let uid = match &permission.owner {
            Some(name) => Some(
                User::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| no_such("owner", name))?
                    .uid,
            ),
            None => None,
        };
        let gid = match &permission.group {
            Some(name) => Some(
                Group::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| no_such("group", name))?
                    .gid,
            ),
            None => None,
        };
        Ok(Ids { uid, gid })
    }
}

fn set(
    entry: &Created,
    permission: &Permission,
    ids: &Ids,
    done: &mut HashSet<PathBuf>,
) -> Result<(), PermissionError> {
    if !done.insert(entry.path.clone()) {
        return Err(PermissionError::Twice(entry.path.clone()));
    }
    if ids.uid.is_some() || ids.gid.is_some() {
        std::os::unix::fs::lchown(
            &entry.path,
            ids.uid.map(Uid::as_raw),
            ids.gid.map(Gid::as_raw),
        )
        .map_err(|source| PermissionError::Io {
            what: "the owner",
            path: entry.path.clone(),
            hint: if Uid::effective().is_root() {
                ""
            } else {
                "; changing owners needs the agent to run as root"
            },
            source,
        })?;
    }
    if let (Some(mode), false) = (permission.mode, entry.kind == CreatedKind::Link) {
        std::fs::set_permissions(&entry.path, std::fs::Permissions::from_mode(mode.0)).map_err(
            |source| PermissionError::Io {
                what: "the mode",
                path: entry.path.clone(),
                source,
                hint: "",
            },
        )?;
    }
    Ok(())
}
