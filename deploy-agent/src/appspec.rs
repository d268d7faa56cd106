//! `appspec.yml` version 0.0: which files a revision installs where, with what
//! permissions, and which scripts run at each lifecycle event.
//!
//! [`parse`] works on text and does no I/O, so every rule is unit-tested; [`load`] finds
//! the file at a bundle's root. Every problem is reported as `file:line:column: what is
//! wrong and what to write instead` ([`SpecError`]). Paths are checked for `..` here;
//! whether they escape the bundle through a symlink is checked on disk when they are
//! used (`install`, `script`).

mod fields;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::event::LifecycleEvent;
use crate::paths::{BundlePath, HostPath};

pub use fields::MAX_EVENT_SECONDS;

/// The names the appspec may have at the bundle root, in the order they are looked for.
pub const APPSPEC_FILE_NAMES: [&str; 2] = ["appspec.yml", "appspec.yaml"];

/// The largest appspec accepted, in bytes.
pub const MAX_APPSPEC_BYTES: u64 = 1 << 20;

/// A script's timeout when the appspec gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// A parsed, checked appspec.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// What Install copies, in order.
    pub files: Vec<FileMapping>,
    /// What Install does with a file that is already there (and was not installed by the
    /// previous deployment); `None` when the appspec does not say (the deployment's
    /// setting applies, then [`FileExistsBehavior::Disallow`]).
    pub file_exists_behavior: Option<FileExistsBehavior>,
    /// Owners and modes Install sets on what it created.
    pub permissions: Vec<Permission>,
    /// The scripts of each scriptable event, in the order they run.
    pub hooks: BTreeMap<LifecycleEvent, Vec<HookScript>>,
}

impl AppSpec {
    /// The scripts `event` runs (none for most events of most appspecs).
    pub fn scripts(&self, event: LifecycleEvent) -> &[HookScript] {
        self.hooks.get(&event).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// One `files` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMapping {
    /// A file or directory in the bundle; the root (`/`) is the whole bundle. A directory's
    /// contents are copied into the destination; a file keeps its name.
    #[serde(deserialize_with = "fields::bundle_path")]
    pub source: BundlePath,
    /// The directory on the host the source goes into.
    #[serde(deserialize_with = "fields::host_path")]
    pub destination: HostPath,
}

/// What Install does with a file already at a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileExistsBehavior {
    /// Fail the deployment, naming the file.
    #[default]
    Disallow,
    /// Replace the file with the revision's.
    Overwrite,
    /// Keep the file that is there.
    Retain,
}

/// One `permissions` entry: applied to the objects Install created.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, from = "RawPermission")]
pub struct Permission {
    /// A file Install copies, or a directory whose created contents get the settings.
    pub object: HostPath,
    /// Which paths below a directory object (relative to it) get the settings; `**`
    /// (every path) by default. `*` does not cross `/`: `*.sh` matches direct children.
    pub pattern: Pattern,
    /// Paths below the object (relative to it) that keep their settings.
    pub except: Vec<Pattern>,
    /// The owner to give.
    pub owner: Option<String>,
    /// The group to give.
    pub group: Option<String>,
    /// The mode to give.
    pub mode: Option<Mode>,
    /// Whether files get the settings.
    pub files: bool,
    /// Whether directories get the settings.
    pub directories: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermission {
    #[serde(deserialize_with = "fields::host_path")]
    object: HostPath,
    #[serde(default, deserialize_with = "fields::pattern")]
    pattern: Option<Pattern>,
    #[serde(default, deserialize_with = "fields::patterns")]
    except: Vec<Pattern>,
    #[serde(default, deserialize_with = "fields::name")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "fields::name")]
    group: Option<String>,
    #[serde(default, deserialize_with = "fields::mode")]
    mode: Option<Mode>,
    #[serde(default, rename = "type", deserialize_with = "fields::object_types")]
    types: Option<Vec<ObjectType>>,
    #[serde(default, deserialize_with = "fields::refuse_acls")]
    #[allow(dead_code)]
    acls: Option<()>,
    #[serde(default, deserialize_with = "fields::refuse_context")]
    #[allow(dead_code)]
    context: Option<()>,
}

impl From<RawPermission> for Permission {
    fn from(raw: RawPermission) -> Permission {
        let types = raw
            .types
            .unwrap_or_else(|| vec![ObjectType::File, ObjectType::Directory]);
        Permission {
            object: raw.object,
            pattern: raw.pattern.unwrap_or_else(Pattern::everything),
            except: raw.except,
            owner: raw.owner,
            group: raw.group,
            mode: raw.mode,
            files: types.contains(&ObjectType::File),
            directories: types.contains(&ObjectType::Directory),
        }
    }
}

/// A `permissions` `type` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// Files (and symlinks, which get only owner and group).
    File,
    /// Directories.
    Directory,
}

/// A glob over paths relative to a permission's object.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: globset::GlobMatcher,
}

impl Pattern {
    /// Compiles `text`; `*` and `?` do not match `/`, `**` matches any depth.
    pub fn new(text: &str) -> Result<Pattern, String> {
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{text}` is not a valid pattern: {}", e.kind()))?;
        Ok(Pattern {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    /// `**`: every path.
    pub fn everything() -> Pattern {
        Pattern {
            text: "**".into(),
            matcher: globset::Glob::new("**")
                .map(|g| g.compile_matcher())
                .unwrap_or_else(|_| unreachable!("`**` is a valid glob")),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches every path (`**`).
    pub fn is_everything(&self) -> bool {
        self.text == "**"
    }

    /// Whether `relative` (a path below the object) matches.
    pub fn is_match(&self, relative: &Path) -> bool {
        self.matcher.is_match(relative)
    }
}

/// A file mode (permission bits, with setuid/setgid/sticky), from an octal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

/// One hook script.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawScript")]
pub struct HookScript {
    /// The script, relative to the bundle root.
    pub location: BundlePath,
    /// How long it may run before it is killed with its process group.
    pub timeout: Duration,
    /// The user it runs as (the agent's own user when `None`).
    pub runas: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(deserialize_with = "fields::bundle_path")]
    location: BundlePath,
    #[serde(default, deserialize_with = "fields::timeout")]
    timeout: Option<u64>,
    #[serde(default, deserialize_with = "fields::name")]
    runas: Option<String>,
}

impl From<RawScript> for HookScript {
    fn from(raw: RawScript) -> HookScript {
        HookScript {
            location: raw.location,
            timeout: raw
                .timeout
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT),
            runas: raw.runas,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "appspec")]
struct RawAppSpec {
    #[serde(deserialize_with = "fields::version")]
    #[allow(dead_code)]
    version: (),
    #[serde(deserialize_with = "fields::os")]
    #[allow(dead_code)]
    os: (),
    #[serde(default)]
    files: Option<Vec<FileMapping>>,
    #[serde(default, deserialize_with = "fields::file_exists_behavior")]
    file_exists_behavior: Option<FileExistsBehavior>,
    #[serde(default)]
    permissions: Option<Vec<Permission>>,
    #[serde(default, deserialize_with = "fields::hooks")]
    hooks: BTreeMap<LifecycleEvent, Vec<HookScript>>,
}

/// An appspec problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    /// The file name (`appspec.yml`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl SpecError {
    fn from_yaml(file: &str, e: serde_yaml::Error) -> SpecError {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        // serde_yaml appends the position to the message; it is in the prefix already.
        let message = e.to_string();
        let message = match message.rsplit_once(" at line ") {
            Some((m, _)) => m.to_string(),
            None => message,
        };
        SpecError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// Parses the appspec `text`, read from `file` (the name used in errors).
pub fn parse(file: &str, text: &str) -> Result<AppSpec, SpecError> {
    if text.trim().is_empty() {
        return Err(SpecError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the appspec is empty; it needs at least `version: 0.0` and `os: linux`"
                .into(),
        });
    }
    // A document that is not a map would otherwise be reported in serde's words.
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| SpecError::from_yaml(file, e))?;
    if !value.is_mapping() {
        return Err(SpecError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the appspec must be a map, starting with `version: 0.0` and `os: linux`"
                .into(),
        });
    }
    let raw: RawAppSpec = serde_yaml::from_str(text).map_err(|e| SpecError::from_yaml(file, e))?;
    Ok(AppSpec {
        files: raw.files.unwrap_or_default(),
        file_exists_behavior: raw.file_exists_behavior,
        permissions: raw.permissions.unwrap_or_default(),
        hooks: raw.hooks,
    })
}

/// An appspec that could not be loaded from a bundle.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither name is at the bundle root.
    #[error("there is no appspec.yml (or appspec.yaml) at the root of the bundle {0}; add one starting with `version: 0.0` and `os: linux`")]
    NotFound(PathBuf),
    /// The file is there but cannot be used as it is.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The appspec's path.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The file is not a valid appspec.
    #[error(transparent)]
    Invalid(#[from] SpecError),
}

/// Finds, reads and parses the appspec at the root of `bundle_root`. The file must be a
/// regular file of at most [`MAX_APPSPEC_BYTES`]; a symlink is refused.
pub fn load(bundle_root: &Path) -> Result<AppSpec, LoadError> {
    let Some((name, path)) = APPSPEC_FILE_NAMES
        .iter()
        .map(|name| (*name, bundle_root.join(name)))
        .find(|(_, path)| path.symlink_metadata().is_ok())
    else {
        return Err(LoadError::NotFound(bundle_root.to_path_buf()));
    };
    let unreadable = |reason: String| LoadError::Unreadable {
        path: path.clone(),
        reason,
    };
    let file = crate::fsutil::open_nofollow(&path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            unreadable("it is a symlink; make the appspec a regular file in the bundle".into())
        } else {
            unreadable(e.to_string())
        }
    })?;
    let meta = file.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("it is not a regular file".into()));
    }
    if meta.len() > MAX_APPSPEC_BYTES {
        return Err(unreadable(format!(
            "it is {} bytes; the limit is {MAX_APPSPEC_BYTES}",
            meta.len()
        )));
    }
    let mut text = String::new();
    file.take(MAX_APPSPEC_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(format!("{e} (the appspec must be UTF-8 text)")))?;
    Ok(parse(name, &text)?)
}
