//! The Install event: replace what the group's previous deployment installed with the
//! new revision's `files`.
//!
//! 1. Everything listed in the group's cleanup list (what the previous Install created)
//!    is removed, newest first; a directory only if it is empty.
//! 2. The copies are planned: missing directories (with their missing ancestors), files
//!    and symlinks. A file already there (so not installed by the previous deployment)
//!    is handled by `file_exists_behavior`: DISALLOW fails before anything is copied,
//!    naming it; OVERWRITE replaces it; RETAIN keeps it.
//! 3. The plan runs. Each path is added to the new cleanup list *before* it is created,
//!    so after a crash the next Install still removes it.
//! 4. `permissions` are applied to what this Install created ([`crate::permissions`]).
//!
//! Symlinks in the bundle are copied as symlinks and never followed; one whose target
//! leads out of the bundle (absolute, or through `..`) is refused. Files that scripts
//! create are never cleaned up.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::appspec::{AppSpec, FileExistsBehavior};
use crate::fsutil::{self, Kind};
use crate::paths::{EscapeError, HostRoot};
use crate::permissions::{self, Created, PermissionError};

/// What Install needs.
#[derive(Debug, Clone, Copy)]
pub struct InstallRequest<'a> {
    /// The new revision's appspec.
    pub spec: &'a AppSpec,
    /// The new revision's staged bundle.
    pub archive: &'a Path,
    /// Where host paths go.
    pub root: &'a HostRoot,
    /// The group's cleanup list (read, then rewritten).
    pub cleanup_file: &'a Path,
    /// The deployment's setting, used when the appspec does not say.
    pub file_exists_behavior: Option<FileExistsBehavior>,
}

/// What Install did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// Paths of the previous deployment removed.
    pub removed: usize,
    /// Files and symlinks created.
    pub files: usize,
    /// Directories created.
    pub directories: usize,
    /// Existing files replaced (OVERWRITE).
    pub overwritten: Vec<PathBuf>,
    /// Existing files kept (RETAIN).
    pub retained: Vec<PathBuf>,
    /// Objects that got `permissions` settings.
    pub permissions_set: usize,
}

/// Why Install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A `files` source cannot be used.
    #[error("files source `{name}`: {reason}")]
    Source {
        /// The source as written.
        name: String,
        /// Why, and what to do.
        reason: String,
    },
    /// DISALLOW and a file is already there.
    #[error("the deployment failed because a file already exists at {0} that the previous deployment did not install; remove it, or set `file_exists_behavior: OVERWRITE` (replace it) or `RETAIN` (keep it) in the appspec")]
    Exists(PathBuf),
    /// Something of the wrong kind is where a file or directory goes.
    #[error("cannot install {path}: {what} is in the way; remove it from the host")]
    InTheWay {
        /// The destination.
        path: PathBuf,
        /// What is there.
        what: &'static str,
    },
    /// Two sources go to one destination.
    #[error("{path} is the destination of both {first} and {second} in files; remove one of them from the appspec")]
    Duplicate {
        /// The destination.
        path: PathBuf,
        /// One source.
        first: String,
        /// The other.
        second: String,
    },
    /// A symlink in the bundle leads out of it.
    #[error("the bundle's symlink {link} points to `{target}`, outside the bundle; make it point inside the bundle with a relative path, or remove it")]
    LinkEscapes {
        /// The link, in the bundle.
        link: String,
        /// Its target.
        target: String,
    },
    /// A fifo, socket or device in the bundle.
    #[error("the bundle's {0} is not a file, directory or symlink; remove it from the bundle")]
    Special(String),
    /// The disk said no.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A `permissions` entry could not be applied.
    #[error(transparent)]
    Permission(#[from] PermissionError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io {
        action,
        path,
        source,
    }
}

/// Runs Install.
pub fn install(request: InstallRequest<'_>) -> Result<InstallReport, InstallError> {
    let archive = request
        .archive
        .canonicalize()
        .map_err(io("open the deployment archive", request.archive))?;
    let removed = remove_previous(request.cleanup_file)?;
    let behavior = request
        .spec
        .file_exists_behavior
        .or(request.file_exists_behavior)
        .unwrap_or_default();
    let mut plan = Plan::new(request.root, behavior);
    for mapping in &request.spec.files {
        plan.add_mapping(&archive, mapping)?;
    }
    let mut cleanup = std::fs::File::create(request.cleanup_file)
        .map_err(io("write the cleanup list", request.cleanup_file))?;
    let mut created = Vec::new();
    let mut report = InstallReport {
        removed,
        retained: plan.retained.clone(),
        ..InstallReport::default()
    };
    for op in &plan.ops {
        let path = op.to();
        record(&mut cleanup, request.cleanup_file, path)?;
        match op {
            Op::Mkdir(to) => {
                std::fs::create_dir(to).map_err(io("create the directory", to))?;
                report.directories += 1;
                created.push(Created::dir(to));
            }
            Op::Copy { from, to, replace } | Op::Link { from, to, replace } => {
                if *replace {
                    std::fs::remove_file(to).map_err(io("replace", to))?;
                    report.overwritten.push(to.clone());
                }
                if matches!(op, Op::Copy { .. }) {
                    fsutil::copy_file(from, to).map_err(io("copy a file to", to))?;
                    created.push(Created::file(to));
                } else {
                    fsutil::copy_link(from, to).map_err(io("create the symlink", to))?;
                    created.push(Created::link(to));
                }
                report.files += 1;
            }
        }
    }
    report.permissions_set = permissions::apply(&request.spec.permissions, request.root, &created)?;
    Ok(report)
}

/// Removes what the cleanup list names, newest first. Returns how many were removed.
fn remove_previous(cleanup_file: &Path) -> Result<usize, InstallError> {
    let bytes = match std::fs::read(cleanup_file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("read the cleanup list", cleanup_file)(e)),
    };
    // Every entry ends with NUL; a torn last entry (a crash mid-write) names a path
    // that was never created.
    let mut entries: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    entries.pop();
    let mut removed = 0;
    for entry in entries.into_iter().rev() {
        let path = Path::new(std::ffi::OsStr::from_bytes(entry));
        if remove_one(path) {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes one installed path, unless its directory is no longer the one it was
/// installed in (moved, or replaced by a symlink: removing would hit something else).
fn remove_one(path: &Path) -> bool {
    let (Some(parent), Some(_)) = (path.parent(), path.file_name()) else {
        return false;
    };
    match parent.canonicalize() {
        Ok(real) if real == parent => {}
        Ok(real) => {
            tracing::warn!(path = %path.display(), now = %real.display(),
                "not removing a previously installed path: its directory is now elsewhere");
            return false;
        }
        Err(_) => return false,
    }
    let result = match fsutil::kind(path) {
        Ok(Some(Kind::Dir)) => std::fs::remove_dir(path),
        Ok(Some(_)) => std::fs::remove_file(path),
        Ok(None) => return false,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            // A directory that scripts or RETAIN left files in stays.
            tracing::debug!(path = %path.display(), error = %e, "previously installed path kept");
            false
        }
    }
}

/// Adds `path` to the cleanup list, with its directory resolved so that removal can
/// check it is still the same directory.
fn record(cleanup: &mut std::fs::File, list: &Path, path: &Path) -> Result<(), InstallError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let real = parent
        .canonicalize()
        .map_err(io("resolve the directory of", path))?;
    let mut entry = real.join(name).into_os_string().into_vec();
    entry.push(0);
    cleanup
        .write_all(&entry)
        .map_err(io("write the cleanup list", list))
}

/// One step of Install.
#[derive(Debug)]
enum Op {
    Mkdir(PathBuf),
    Copy {
        from: PathBuf,
        to: PathBuf,
        replace: bool,
    },
    Link {
        from: PathBuf,
        to: PathBuf,
        replace: bool,
    },
}

impl Op {
    fn to(&self) -> &Path {
        match self {
            Op::Mkdir(to) | Op::Copy { to, .. } | Op::Link { to, .. } => to,
        }
    }
}

/// The steps, worked out before anything is copied.
struct Plan<'a> {
    root: &'a HostRoot,
    behavior: FileExistsBehavior,
    ops: Vec<Op>,
    /// Directories this Install creates.
    dirs: BTreeSet<PathBuf>,
    /// Files this Install copies, with the bundle path they come from.
    targets: HashMap<PathBuf, String>,
    retained: Vec<PathBuf>,
}

impl<'a> Plan<'a> {
    fn new(root: &'a HostRoot, behavior: FileExistsBehavior) -> Plan<'a> {
        Plan {
            root,
            behavior,
            ops: Vec::new(),
            dirs: BTreeSet::new(),
            targets: HashMap::new(),
            retained: Vec::new(),
        }
    }

    fn add_mapping(
        &mut self,
        archive: &Path,
        mapping: &crate::appspec::FileMapping,
    ) -> Result<(), InstallError> {
        let source = mapping.source.to_string();
        let bad_source = |reason: String| InstallError::Source {
            name: source.clone(),
            reason,
        };
        let from = mapping
            .source
            .resolve_within(archive)
            .map_err(|e| match e {
                EscapeError::Missing(_) => bad_source(
                    "it does not exist in the bundle; fix the appspec or add it to the bundle"
                        .into(),
                ),
                other => bad_source(other.to_string()),
            })?;
        let dest_dir = self.root.place(&mapping.destination);
        match fsutil::kind(&from).map_err(io("read", &from))? {
            None => Err(bad_source(
                "it does not exist in the bundle; fix the appspec or add it to the bundle".into(),
            )),
            Some(Kind::Dir) => {
                self.ensure_dir(&dest_dir)?;
                self.add_tree(archive, &from, &dest_dir)
            }
            Some(kind) => {
                let name = mapping.source.file_name().unwrap_or("");
                self.ensure_dir(&dest_dir)?;
                self.add_entry(archive, kind, &from, &dest_dir.join(name))
            }
        }
    }

    /// Plans the contents of the bundle directory `from` into `to`.
    fn add_tree(&mut self, archive: &Path, from: &Path, to: &Path) -> Result<(), InstallError> {
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .map_err(io("read", from))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io("read", from))?;
        entries.sort();
        for name in entries {
            let (from, to) = (from.join(&name), to.join(&name));
            match fsutil::kind(&from).map_err(io("read", &from))? {
                Some(Kind::Dir) => {
                    self.ensure_dir(&to)?;
                    self.add_tree(archive, &from, &to)?;
                }
                Some(kind) => self.add_entry(archive, kind, &from, &to)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Plans one file or symlink.
    fn add_entry(
        &mut self,
        archive: &Path,
        kind: Kind,
        from: &Path,
        to: &Path,
    ) -> Result<(), InstallError> {
        let inside = from
            .strip_prefix(archive)
            .unwrap_or(from)
            .display()
            .to_string();
        if kind == Kind::Special {
            return Err(InstallError::Special(inside));
        }
        if kind == Kind::Link {
            check_link(archive, from, &inside)?;
        }
        if let Some(first) = self.targets.get(to) {
            return Err(InstallError::Duplicate {
                path: to.to_path_buf(),
                first: first.clone(),
                second: inside,
            });
        }
        if self.dirs.contains(to) {
            return Err(InstallError::InTheWay {
                path: to.to_path_buf(),
                what: "a directory this install creates",
            });
        }
        let replace = match fsutil::kind(to).map_err(io("read", to))? {
            None => false,
            Some(Kind::Dir) => {
                return Err(InstallError::InTheWay {
                    path: to.to_path_buf(),
                    what: "a directory",
                })
            }
            Some(_) => match self.behavior {
                FileExistsBehavior::Disallow => return Err(InstallError::Exists(to.to_path_buf())),
                FileExistsBehavior::Overwrite => true,
                FileExistsBehavior::Retain => {
                    self.retained.push(to.to_path_buf());
                    return Ok(());
                }
            },
        };
        self.targets.insert(to.to_path_buf(), inside);
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        self.ops.push(if kind == Kind::Link {
            Op::Link { from, to, replace }
        } else {
            Op::Copy { from, to, replace }
        });
        Ok(())
    }

    /// Plans `dir` (and its missing ancestors) unless it exists. An existing symlink to a
    /// directory counts as the directory, as on any host.
    fn ensure_dir(&mut self, dir: &Path) -> Result<(), InstallError> {
        if self.dirs.contains(dir) || dir == self.root.dir() {
            return Ok(());
        }
        if self.targets.contains_key(dir) {
            return Err(InstallError::InTheWay {
                path: dir.to_path_buf(),
                what: "a file this install copies",
            });
        }
        match fsutil::kind(dir).map_err(io("read", dir))? {
            Some(Kind::Dir) => Ok(()),
            Some(Kind::Link) if dir.is_dir() => Ok(()),
            Some(_) => Err(InstallError::InTheWay {
                path: dir.to_path_buf(),
                what: "a file",
            }),
            None => {
                if let Some(parent) = dir.parent() {
                    self.ensure_dir(parent)?;
                }
                self.dirs.insert(dir.to_path_buf());
                self.ops.push(Op::Mkdir(dir.to_path_buf()));
                Ok(())
            }
        }
    }
}

/// Refuses a bundle symlink whose target leads out of the bundle.
fn check_link(archive: &Path, link: &Path, inside: &str) -> Result<(), InstallError> {
    let target = std::fs::read_link(link).map_err(io("read the symlink", link))?;
    let escapes = || InstallError::LinkEscapes {
        link: inside.to_string(),
        target: target.display().to_string(),
    };
    if target.is_absolute() {
        return Err(escapes());
    }
    // Depth below the archive root of the link's directory, then walk the target.
    let dir = link
        .parent()
        .and_then(|p| p.strip_prefix(archive).ok())
        .unwrap_or(Path::new(""));
    let mut depth = dir.components().count();
    for component in target.components() {
        match component {
            Component::ParentDir if depth == 0 => return Err(escapes()),
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
