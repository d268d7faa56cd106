//! File operations that never follow a symlink they were not asked to follow.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Copies the regular file `src` to the new path `dst` with `src`'s permission bits.
/// `src` is opened without following a symlink; `dst` must not exist (so nothing already
/// there, a symlink included, is written through).
pub(crate) fn copy_file(src: &Path, dst: &Path) -> io::Result<()> {
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(src)?;
    let meta = from.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    io::copy(&mut from, &mut to)?;
    to.set_permissions(Permissions::from_mode(meta.permissions().mode() & 0o7777))?;
    Ok(())
}

/// Makes `dst` a symlink with the target of the symlink `src`.
pub(crate) fn copy_link(src: &Path, dst: &Path) -> io::Result<()> {
    let target = std::fs::read_link(src)?;
    std::os::unix::fs::symlink(target, dst)
}

/// Opens `path` for reading without following a final symlink.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
}

/// What kind of thing is at `path`, without following a symlink; `None` if nothing.
pub(crate) fn kind(path: &Path) -> io::Result<Option<Kind>> {
    match path.symlink_metadata() {
        Ok(meta) => {
            let t = meta.file_type();
            Ok(Some(if t.is_symlink() {
                Kind::Link
            } else if t.is_dir() {
                Kind::Dir
            } else if t.is_file() {
                Kind::File
            } else {
                Kind::Special
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A kind of directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink (not followed).
    Link,
    /// A fifo, socket or device.
    Special,
}
