//! Staging a revision bundle into a deployment's archive: copying a directory
//! (`slipway-agent local`) or unpacking the zip file the server sends ([`stage_zip`]).
//!
//! Symlinks are copied as symlinks and never followed, so a bundle cannot pull host
//! files into the archive. The copy is made next to the archive and renamed into place,
//! so an archive either is complete or does not exist. A zip from the server is held to
//! more: its SHA-256 must be the one announced, its size is capped, and no entry or
//! symlink may lead out of the archive.

use std::path::{Path, PathBuf};

use crate::fsutil::{self, Kind};

mod unzip;

pub use unzip::{sha256_file, stage_zip, ZipLimits};

/// A bundle that could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle directory is not usable.
    #[error("the bundle {0} is not a directory; pass the directory that holds appspec.yml")]
    NotADirectory(PathBuf),
    /// The bundle holds a fifo, socket or device.
    #[error("the bundle holds {0}, which is not a file, directory or symlink; remove it from the bundle")]
    Special(PathBuf),
    /// The archive already exists.
    #[error("the archive {0} already exists; each deployment needs its own id")]
    Exists(PathBuf),
    /// The zip's SHA-256 is not the one the server announced.
    #[error("the bundle's SHA-256 is {actual}, not the {expected} the server announced: it was damaged or changed on the way; refused")]
    Checksum {
        /// What the server announced.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The zip, or what it unpacks to, is larger than allowed.
    #[error("the bundle {what} more than the {limit} limit; refused")]
    TooLarge {
        /// "is" (the zip) or "unpacks to" (its content).
        what: &'static str,
        /// The limit, for people.
        limit: String,
    },
    /// The zip has more entries than allowed.
    #[error("the bundle has more than {0} entries; refused")]
    TooManyEntries(usize),
    /// The file is not a zip that can be read.
    #[error("the bundle is not a readable zip file: {0}")]
    NotAZip(String),
    /// One entry cannot be unpacked safely.
    #[error("the bundle's entry `{entry}` {reason}; refused")]
    Entry {
        /// The entry's name (escaped for display).
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the zip or writing what it holds failed.
    #[error("cannot unpack the bundle ({path}): {source}")]
    Unpack {
        /// The zip file, or what was being written.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A copy failed.
    #[error("cannot copy {path} into the deployment archive: {source}")]
    Io {
        /// What was being copied or created.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Copies the directory `bundle` to `archive` (which must not exist). Returns the number
/// of files and symlinks copied.
pub fn stage_directory(bundle: &Path, archive: &Path) -> Result<usize, BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    if fsutil::kind(bundle).map_err(io(bundle))? != Some(Kind::Dir) {
        return Err(BundleError::NotADirectory(bundle.to_path_buf()));
    }
    if archive.symlink_metadata().is_ok() {
        return Err(BundleError::Exists(archive.to_path_buf()));
    }
    let partial = archive.with_extension("partial");
    if partial.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    if let Some(parent) = partial.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::create_dir(&partial).map_err(io(&partial))?;
    let mut copied = 0;
    let mut pending = vec![(bundle.to_path_buf(), partial.clone())];
    while let Some((from_dir, to_dir)) = pending.pop() {
        for entry in std::fs::read_dir(&from_dir).map_err(io(&from_dir))? {
            let entry = entry.map_err(io(&from_dir))?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            match fsutil::kind(&from).map_err(io(&from))? {
                Some(Kind::Dir) => {
                    std::fs::create_dir(&to).map_err(io(&to))?;
                    pending.push((from, to));
                }
                Some(Kind::File) => {
                    fsutil::copy_file(&from, &to).map_err(io(&from))?;
                    copied += 1;
                }
                Some(Kind::Link) => {
                    fsutil::copy_link(&from, &to).map_err(io(&from))?;
                    copied += 1;
                }
                Some(Kind::Special) => {
                    let inside = from.strip_prefix(bundle).unwrap_or(&from).to_path_buf();
                    return Err(BundleError::Special(inside));
                }
                None => {} // Removed while we copied.
            }
        }
    }
    std::fs::rename(&partial, archive).map_err(io(archive))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copies_files_modes_and_links_without_following() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let secret = out.path().join("host-secret");
        std::fs::write(&secret, "secret").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(src.path().join("scripts")).unwrap_or_else(|e| panic!("{e}"));
        let script = src.path().join("scripts/start.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750))
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&secret, src.path().join("leak"))
            .unwrap_or_else(|e| panic!("{e}"));

        let archive = out.path().join("d/archive");
        let n = stage_directory(src.path(), &archive).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 2);
        let copied = archive.join("scripts/start.sh");
        let mode = copied
            .metadata()
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o750);
        let link = std::fs::read_link(archive.join("leak")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(link, secret, "a link stays a link");
        assert!(!out.path().join("d/archive.partial").exists());

        let again = stage_directory(src.path(), &archive).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let not_dir = stage_directory(&script, &out.path().join("x")).unwrap_err();
        assert!(
            not_dir.to_string().contains("is not a directory"),
            "{not_dir}"
        );
    }
}
