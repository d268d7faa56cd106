//! A build's state directory: the files between the server and the build's shell.
//!
//! ```text
//! state/            the server's: session.sh, command.sh, load.sh, final-env.sh,
//!                   running.pgid, container. The build's user may read, never write.
//! state/shell/      the build user's: out.sh, where each command's EXIT trap reports
//!                   its exported variables and directory.
//! ```
//!
//! The split matters when the server runs as root: a build that could replace the
//! server's files with symbolic links would have the server write wherever it pointed.
//! The one file the server reads from the build's side is opened without following
//! links and accepted only if it is a regular file of bounded size.
//!
//! Files are rewritten in place and then cut to length, never truncated to zero first:
//! on ext4, truncating a file to zero and rewriting it starts a writeback on close, which
//! costs more than the rest of a short command's bookkeeping.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The largest report the server reads (the environment of one process is far smaller).
const REPORT_LIMIT: u64 = 16 * 1024 * 1024;

/// Who the build's shell runs as, for the directory's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupant {
    /// The server's own user (a server not running as root, or `build --local`).
    Server,
    /// A host user other than the server's (a root server's build user).
    User {
        /// The user's id.
        uid: u32,
        /// The user's primary group.
        gid: u32,
    },
    /// Container users, which are not host users: the directory is open to all of them
    /// and the build's directory above it is closed to the host's other users.
    Container,
}

/// The paths of one build's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates `root` and `root/shell` for `occupant`.
    pub fn create(root: &Path, occupant: Occupant) -> std::io::Result<StateDir> {
        let dir = StateDir {
            root: root.to_path_buf(),
        };
        std::fs::create_dir_all(dir.shell_dir())?;
        dir.admit(occupant)?;
        Ok(dir)
    }

    /// Lets `occupant` read the server's files and write its report (a phase with
    /// another `run-as` user calls this again). Only the two directories are changed, by
    /// path: the build cannot replace them (`state/` is the server's). What lies inside
    /// `shell/` is the build's and is never followed: the report is removed (unlinking a
    /// link removes the link) and the next command's trap creates it afresh.
    pub fn admit(&self, occupant: Occupant) -> std::io::Result<()> {
        self.clear_report()?;
        let mode = |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m));
        match occupant {
            Occupant::Server => {
                mode(&self.root, 0o700)?;
                mode(&self.shell_dir(), 0o700)?;
            }
            Occupant::User { uid, gid } => {
                // The group lets the user in; others cannot enter (the server's files
                // hold the build's secrets).
                std::os::unix::fs::lchown(&self.root, None, Some(gid))?;
                mode(&self.root, 0o750)?;
                std::os::unix::fs::lchown(self.shell_dir(), Some(uid), Some(gid))?;
                mode(&self.shell_dir(), 0o700)?;
            }
            Occupant::Container => {
                mode(&self.root, 0o755)?;
                mode(&self.shell_dir(), 0o777)?;
            }
        }
        Ok(())
    }

    /// Removes the last report (a new session's user may not be able to write the old
    /// user's file); a link is removed, not followed.
    pub fn clear_report(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.report()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The directory itself (server files live directly in it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The build user's directory.
    pub fn shell_dir(&self) -> PathBuf {
        self.root.join("shell")
    }

    /// Where each command's EXIT trap reports.
    pub fn report(&self) -> PathBuf {
        self.shell_dir().join("out.sh")
    }

    /// A server file.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes the server file `name` (readable by the build's shell).
    pub fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.file(name);
        overwrite(&path, bytes)?;
        Ok(path)
    }

    /// The last report a command's EXIT trap wrote (opened without following links,
    /// only a regular file, at most 16 MiB).
    pub fn read_report(&self) -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.report())?;
        let meta = file.metadata()?;
        if !meta.is_file() || meta.size() > REPORT_LIMIT {
            return Err(std::io::Error::other(
                "the build's report is not a regular file of at most 16 MiB",
            ));
        }
        let mut bytes = Vec::with_capacity(meta.size() as usize);
        Read::by_ref(&mut file)
            .take(REPORT_LIMIT)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// Replaces the contents of `path` (created 0644 if missing) without first truncating
/// it to zero.
fn overwrite(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(bytes)?;
    if file.metadata()?.len() != bytes.len() as u64 {
        file.set_len(bytes.len() as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_replaces_longer_and_shorter_contents() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::create(d.path(), Occupant::Server).unwrap();
        state.write("f", b"a longer first text").unwrap();
        state.write("f", b"short").unwrap();
        assert_eq!(std::fs::read(state.file("f")).unwrap(), b"short");
        state.write("f", b"").unwrap();
        assert_eq!(std::fs::read(state.file("f")).unwrap(), b"");
    }

    #[test]
    fn the_report_is_never_read_through_a_link_or_from_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::create(&d.path().join("state"), Occupant::Server).unwrap();
        std::fs::write(state.report(), b"x").unwrap();
        assert_eq!(state.read_report().unwrap(), b"x");

        let secret = d.path().join("secret");
        std::fs::write(&secret, b"server only").unwrap();
        std::fs::remove_file(state.report()).unwrap();
        std::os::unix::fs::symlink(&secret, state.report()).unwrap();
        assert!(state.read_report().is_err(), "followed a link");

        std::fs::remove_file(state.report()).unwrap();
        let fifo = std::ffi::CString::new(state.report().to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo(3) has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(state.read_report().is_err(), "read a fifo");
    }

    #[test]
    fn the_server_directory_is_closed_to_others() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::create(&d.path().join("state"), Occupant::Server).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(state.root()), 0o700);
        assert_eq!(mode(&state.shell_dir()), 0o700);
    }

    /// The build owns `shell/`: a link it puts there in place of the report is removed,
    /// never followed, when the directory is handed over again.
    #[test]
    fn admitting_again_never_follows_the_builds_links() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::create(&d.path().join("state"), Occupant::Server).unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        std::fs::set_permissions(&target, PermissionsExt::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&target, state.report()).unwrap();
        state.admit(Occupant::Container).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "the link's target was changed");
        assert!(std::fs::symlink_metadata(state.report()).is_err());
        let dangling = d.path().join("created-by-root");
        std::os::unix::fs::symlink(&dangling, state.report()).unwrap();
        state.admit(Occupant::Server).unwrap();
        assert!(!dangling.exists(), "a file was created through the link");
    }
}
