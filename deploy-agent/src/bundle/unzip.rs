//! Unpacking the zip file the server sends into a deployment's archive.
//!
//! Nothing in the zip is trusted. Its SHA-256 must be the one the deployment announced;
//! it may be at most [`ZipLimits::max_zip_bytes`] long, hold at most
//! [`ZipLimits::max_entries`] entries and unpack to at most
//! [`ZipLimits::max_unpacked_bytes`] (counted as written, not as declared). Every name
//! must stay inside the archive (no absolute names, no `..`), nothing is written through
//! a symlink unpacked before it, and once everything is unpacked each symlink is
//! resolved, following the links it passes through, and must end inside the archive
//! (absolute targets are refused). Files keep their permission bits only: no setuid,
//! setgid or sticky bit survives.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BundleError;
use crate::fsutil::{self, Kind};

/// How large a bundle from the server may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// The zip file itself (also the download limit).
    pub max_zip_bytes: u64,
    /// Everything its files unpack to, together.
    pub max_unpacked_bytes: u64,
    /// Files, directories and symlinks.
    pub max_entries: usize,
}

impl Default for ZipLimits {
    /// 1 GiB of zip, 2 GiB unpacked, 100,000 entries.
    fn default() -> ZipLimits {
        ZipLimits {
            max_zip_bytes: 1 << 30,
            max_unpacked_bytes: 2 << 30,
            max_entries: 100_000,
        }
    }
}

/// The longest symlink target accepted.
const MAX_LINK_TARGET: u64 = 4096;

/// How many links resolving one symlink may pass through (as the kernel's ELOOP limit).
const MAX_LINK_HOPS: usize = 40;

/// The SHA-256 of the file at `path`, in lower-case hex (the file is opened without
/// following a symlink).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fsutil::open_nofollow(path)?;
    hash(&mut file)
}

fn hash(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn unpack_error(path: &Path) -> impl FnOnce(io::Error) -> BundleError {
    let path = path.to_path_buf();
    move |source| BundleError::Unpack { path, source }
}

fn refuse(entry: &str, reason: impl Into<String>) -> BundleError {
    BundleError::Entry {
        entry: entry.escape_default().to_string(),
        reason: reason.into(),
    }
}

/// Unpacks the zip file `zip` into `archive` (which must not exist) after checking that
/// its SHA-256 is `sha256` (hex, either case). Returns the number of files and symlinks
/// unpacked. On any error nothing is left at `archive`.
pub fn stage_zip(
    zip: &Path,
    sha256: &str,
    archive: &Path,
    limits: &ZipLimits,
) -> Result<usize, BundleError> {
    let mut file = fsutil::open_nofollow(zip).map_err(unpack_error(zip))?;
    let size = file.metadata().map_err(unpack_error(zip))?.len();
    if size > limits.max_zip_bytes {
        return Err(BundleError::TooLarge {
            what: "is",
            limit: human(limits.max_zip_bytes),
        });
    }
    let actual = hash(&mut file).map_err(unpack_error(zip))?;
    let expected = sha256.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(BundleError::Checksum { expected, actual });
    }
    file.rewind().map_err(unpack_error(zip))?;
    if archive.symlink_metadata().is_ok() {
        return Err(BundleError::Exists(archive.to_path_buf()));
    }
    let partial = archive.with_extension("partial");
    if partial.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&partial).map_err(unpack_error(&partial))?;
    }
    if let Some(parent) = partial.parent() {
        std::fs::create_dir_all(parent).map_err(unpack_error(parent))?;
    }
    std::fs::create_dir(&partial).map_err(unpack_error(&partial))?;
    match unpack(file, &partial, limits) {
        Ok(n) => {
            std::fs::rename(&partial, archive).map_err(unpack_error(archive))?;
            Ok(n)
        }
        Err(e) => {
            if let Err(cleanup) = std::fs::remove_dir_all(&partial) {
                tracing::warn!(path = %partial.display(), error = %cleanup,
                    "cannot remove a bundle that was refused halfway");
            }
            Err(e)
        }
    }
}

/// What a symlink entry left to check once everything is unpacked.
struct PendingLink {
    name: String,
    parts: Vec<String>,
    target: PathBuf,
}

fn unpack(file: File, dest: &Path, limits: &ZipLimits) -> Result<usize, BundleError> {
    let damaged = |e: ::zip::result::ZipError| BundleError::NotAZip(e.to_string());
    let mut zip = ::zip::ZipArchive::new(file).map_err(damaged)?;
    if zip.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries(limits.max_entries));
    }
    let too_large = || BundleError::TooLarge {
        what: "unpacks to",
        limit: human(limits.max_unpacked_bytes),
    };
    let mut written = 0u64;
    let mut count = 0usize;
    let mut links = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(damaged)?;
        let name = entry.name().map_err(damaged)?.into_owned();
        let parts = entry_parts(&name).map_err(|reason| refuse(&name, reason))?;
        let Some((leaf, parents)) = parts.split_last() else {
            if entry.is_dir() {
                continue; // The bundle's root.
            }
            return Err(refuse(&name, "has no file name"));
        };
        let path = make_parents(dest, parents, &name)?.join(leaf);
        if entry.is_dir() {
            match fsutil::kind(&path).map_err(unpack_error(&path))? {
                None => std::fs::create_dir(&path).map_err(unpack_error(&path))?,
                Some(Kind::Dir) => {}
                Some(_) => {
                    return Err(refuse(
                        &name,
                        "is a directory where the bundle already has a file or symlink",
                    ))
                }
            }
        } else if entry.is_symlink() {
            let mut target = Vec::new();
            (&mut entry)
                .take(MAX_LINK_TARGET + 1)
                .read_to_end(&mut target)
                .map_err(unpack_error(&path))?;
            if target.is_empty() || target.len() as u64 > MAX_LINK_TARGET || target.contains(&0) {
                return Err(refuse(
                    &name,
                    "is a symlink with an empty, overlong or malformed target",
                ));
            }
            let target = PathBuf::from(OsStr::from_bytes(&target));
            if target.is_absolute() {
                return Err(refuse(
                    &name,
                    format!(
                        "is a symlink to the absolute path {}: links must stay inside the bundle",
                        target.display()
                    ),
                ));
            }
            std::os::unix::fs::symlink(&target, &path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    refuse(&name, "appears twice")
                } else {
                    unpack_error(&path)(e)
                }
            })?;
            links.push(PendingLink {
                name: name.clone(),
                parts: parts.clone(),
                target,
            });
            count += 1;
        } else {
            let room = limits.max_unpacked_bytes.saturating_sub(written);
            if entry.size() > room {
                return Err(too_large());
            }
            let mode = entry
                .unix_mode()
                .map(|m| m & 0o777)
                .filter(|m| *m != 0)
                .unwrap_or(0o644);
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        refuse(&name, "appears twice")
                    } else {
                        unpack_error(&path)(e)
                    }
                })?;
            let copied = io::copy(&mut (&mut entry).take(room.saturating_add(1)), &mut out)
                .map_err(unpack_error(&path))?;
            written = written.saturating_add(copied);
            if written > limits.max_unpacked_bytes {
                return Err(too_large());
            }
            out.set_permissions(Permissions::from_mode(mode))
                .map_err(unpack_error(&path))?;
            count += 1;
        }
    }
    for link in links {
        let inside = link_stays_within(dest, &link.parts).map_err(unpack_error(dest))?;
        if !inside {
            return Err(refuse(
                &link.name,
                format!(
                    "is a symlink to {}, which leads out of the bundle (or through too many links)",
                    link.target.display()
                ),
            ));
        }
    }
    Ok(count)
}

/// The components of an entry's name; `.` and empty components are dropped. Absolute
/// names and `..` are refused.
fn entry_parts(name: &str) -> Result<Vec<String>, &'static str> {
    if name.contains('\0') {
        return Err("has a NUL byte in its name");
    }
    if name.starts_with('/') {
        return Err("has an absolute name; entries must be relative to the bundle's root");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("has `..` in its name, which would lead out of the bundle"),
            _ => parts.push(part.to_string()),
        }
    }
    Ok(parts)
}

/// Creates the directories `parents` under `dest` as needed, refusing to pass through a
/// symlink or a file the bundle unpacked before; answers the innermost.
fn make_parents(dest: &Path, parents: &[String], name: &str) -> Result<PathBuf, BundleError> {
    let mut dir = dest.to_path_buf();
    for (i, part) in parents.iter().enumerate() {
        dir.push(part);
        match fsutil::kind(&dir).map_err(unpack_error(&dir))? {
            None => std::fs::create_dir(&dir).map_err(unpack_error(&dir))?,
            Some(Kind::Dir) => {}
            Some(Kind::Link) => {
                return Err(refuse(
                    name,
                    format!(
                        "goes through `{}`, a symlink in the bundle",
                        parents[..=i].join("/")
                    ),
                ))
            }
            Some(_) => {
                return Err(refuse(
                    name,
                    format!(
                        "is inside `{}`, a file in the bundle",
                        parents[..=i].join("/")
                    ),
                ))
            }
        }
    }
    Ok(dir)
}

/// One step of resolving a symlink target.
enum Step {
    Up,
    Down(OsString),
}

/// The steps of a relative `target`; `None` if it is absolute.
fn steps(target: &Path) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(name) => steps.push(Step::Down(name.to_os_string())),
            Component::ParentDir => steps.push(Step::Up),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(steps)
}

/// Whether the symlink at `parts` (under `root`, in real directories) resolves inside
/// `root`, following every symlink met on the way as the kernel would. Checking each
/// link's target on its own is not enough: with `a/b/up -> ../..`, the link
/// `x -> a/b/up/..` looks like `a/b` but is the parent of `root`.
fn link_stays_within(root: &Path, parts: &[String]) -> io::Result<bool> {
    let Some((leaf, parents)) = parts.split_last() else {
        return Ok(true);
    };
    let mut here: Vec<OsString> = parents.iter().map(OsString::from).collect();
    let target = std::fs::read_link(root.join(parents.join("/")).join(leaf))?;
    let Some(first) = steps(&target) else {
        return Ok(false);
    };
    let mut queue: VecDeque<Step> = first.into();
    let mut hops = 0;
    while let Some(step) = queue.pop_front() {
        match step {
            Step::Up => {
                if here.pop().is_none() {
                    return Ok(false);
                }
            }
            Step::Down(name) => {
                let mut path = root.to_path_buf();
                path.extend(&here);
                path.push(&name);
                if fsutil::kind(&path)? == Some(Kind::Link) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Ok(false);
                    }
                    // Relative to the link's directory, which is `here`.
                    let Some(more) = steps(&std::fs::read_link(&path)?) else {
                        return Ok(false);
                    };
                    for step in more.into_iter().rev() {
                        queue.push_front(step);
                    }
                } else {
                    here.push(name);
                }
            }
        }
    }
    Ok(true)
}

/// `1 GiB`, `12 MiB` or bytes.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    /// Writes a zip of `entries` into `dir/bundle.zip`; answers its path and SHA-256.
    fn zip_of(dir: &Path, entries: &[E<'_>]) -> (PathBuf, String) {
        let mut z = ::zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = ::zip::write::SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Deflated);
        for e in entries {
            match e {
                E::File(name, content, mode) => {
                    z.start_file(*name, options.unix_permissions(*mode))
                        .unwrap_or_else(|e| panic!("{e}"));
                    z.write_all(content).unwrap_or_else(|e| panic!("{e}"));
                }
                E::Dir(name) => z
                    .add_directory(*name, options)
                    .unwrap_or_else(|e| panic!("{e}")),
                E::Link(name, target) => z
                    .add_symlink(*name, *target, options)
                    .unwrap_or_else(|e| panic!("{e}")),
            }
        }
        let bytes = z.finish().unwrap_or_else(|e| panic!("{e}")).into_inner();
        let path = dir.join("bundle.zip");
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let sha = hex::encode(Sha256::digest(&bytes));
        (path, sha)
    }

    struct Case {
        dir: tempfile::TempDir,
    }

    impl Case {
        fn new() -> Case {
            Case {
                dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            }
        }

        fn archive(&self) -> PathBuf {
            self.dir.path().join("d/archive")
        }

        fn stage(&self, entries: &[E<'_>], limits: &ZipLimits) -> Result<usize, BundleError> {
            let (zip, sha) = zip_of(self.dir.path(), entries);
            stage_zip(&zip, &sha, &self.archive(), limits)
        }

        /// Panics unless `result` is the refusal of `entry`, and checks nothing was left.
        fn assert_refused(&self, result: Result<usize, BundleError>, entry: &str, words: &str) {
            match result {
                Err(BundleError::Entry { entry: e, reason }) => {
                    assert_eq!(e, entry);
                    assert!(reason.contains(words), "{reason}");
                }
                other => panic!("expected entry `{entry}` refused, got {other:?}"),
            }
            assert!(!self.archive().exists());
            assert!(!self.archive().with_extension("partial").exists());
        }
    }

    #[test]
    fn unpacks_files_directories_modes_and_inside_links() {
        let case = Case::new();
        let n = case
            .stage(
                &[
                    E::File("appspec.yml", b"version: 0.0\n", 0o644),
                    E::Dir("empty/"),
                    E::File("./scripts/start.sh", b"#!/bin/sh\n", 0o4755),
                    E::File("lib/real.so", b"elf", 0o644),
                    E::Link("lib/current.so", "real.so"),
                    E::Link("scripts/lib", "../lib"),
                    E::Link("start", "scripts/lib/../start.sh"),
                ],
                &ZipLimits::default(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 6);
        let archive = case.archive();
        assert!(archive.join("empty").is_dir());
        let mode = std::fs::metadata(archive.join("scripts/start.sh"))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0);
        assert_eq!(mode, 0o755, "no setuid from a bundle");
        assert_eq!(
            std::fs::read_link(archive.join("scripts/lib")).ok(),
            Some(PathBuf::from("../lib"))
        );
        assert_eq!(
            std::fs::read(archive.join("lib/current.so")).unwrap_or_default(),
            b"elf"
        );
        assert!(!archive.with_extension("partial").exists());
        let again = case.stage(&[E::File("a", b"", 0o644)], &ZipLimits::default());
        assert!(matches!(again, Err(BundleError::Exists(_))), "{again:?}");
    }

    #[test]
    fn refuses_entries_leaving_the_archive() {
        for (name, words) in [
            ("../evil", "`..`"),
            ("a/../../evil", "`..`"),
            ("/etc/evil", "absolute"),
        ] {
            let case = Case::new();
            let result = case.stage(
                &[
                    E::File("appspec.yml", b"", 0o644),
                    E::File(name, b"x", 0o644),
                ],
                &ZipLimits::default(),
            );
            case.assert_refused(result, name, words);
            assert!(!case.dir.path().join("evil").exists());
            assert!(!case.dir.path().join("d/evil").exists());
        }
    }

    #[test]
    fn refuses_symlinks_leaving_the_archive() {
        let cases: &[(&[E<'_>], &str, &str)] = &[
            (&[E::Link("passwd", "/etc/passwd")], "passwd", "absolute"),
            (&[E::Link("up", "..")], "up", "leads out"),
            (&[E::Link("a/b/up", "../../../x")], "a/b/up", "leads out"),
            // Each target alone stays inside; together they leave.
            (
                &[
                    E::Dir("a/b/c/"),
                    E::Link("a/b/c/up", "../../.."),
                    E::Link("esc", "a/b/c/up/.."),
                ],
                "esc",
                "leads out",
            ),
            (&[E::Link("loop", "loop/x")], "loop", "too many links"),
            // Writing through a link unpacked before.
            (
                &[E::Link("d", "."), E::File("d/x", b"x", 0o644)],
                "d/x",
                "goes through `d`",
            ),
        ];
        for (entries, entry, words) in cases {
            let case = Case::new();
            let result = case.stage(entries, &ZipLimits::default());
            case.assert_refused(result, entry, words);
        }
    }

    #[test]
    fn sizes_and_entry_counts_are_capped() {
        let big = vec![b'x'; 300];
        let limits = ZipLimits {
            max_zip_bytes: 1 << 20,
            max_unpacked_bytes: 500,
            max_entries: 3,
        };
        let case = Case::new();
        let two = [E::File("a", &big, 0o644), E::File("b", &big, 0o644)];
        let result = case.stage(&two, &limits);
        assert!(
            matches!(
                &result,
                Err(BundleError::TooLarge {
                    what: "unpacks to",
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(!case.archive().exists());
        assert!(case.stage(&two[..1], &limits).is_ok());

        let case = Case::new();
        let small = ZipLimits {
            max_zip_bytes: 100,
            ..limits
        };
        let result = case.stage(&two[..1], &small);
        let message = result
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(
            message.contains("is more than the 100 bytes limit"),
            "{message}"
        );

        let case = Case::new();
        let many: Vec<E<'_>> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| E::File(n, b"", 0o644))
            .collect();
        let result = case.stage(&many, &limits);
        assert!(
            matches!(result, Err(BundleError::TooManyEntries(3))),
            "{result:?}"
        );
    }

    #[test]
    fn a_bundle_whose_sha256_differs_is_refused() {
        let case = Case::new();
        let (zip, sha) = zip_of(case.dir.path(), &[E::File("appspec.yml", b"", 0o644)]);
        assert_eq!(sha256_file(&zip).unwrap_or_default(), sha);
        let wrong = "0".repeat(64);
        let result = stage_zip(&zip, &wrong, &case.archive(), &ZipLimits::default());
        match result {
            Err(BundleError::Checksum { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, sha);
            }
            other => panic!("{other:?}"),
        }
        assert!(!case.archive().exists());
        // Upper-case hex is the same digest.
        stage_zip(
            &zip,
            &sha.to_ascii_uppercase(),
            &case.archive(),
            &ZipLimits::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn garbage_is_not_a_zip() {
        let case = Case::new();
        let path = case.dir.path().join("bundle.zip");
        std::fs::write(&path, b"not a zip").unwrap_or_else(|e| panic!("{e}"));
        let sha = sha256_file(&path).unwrap_or_default();
        let result = stage_zip(&path, &sha, &case.archive(), &ZipLimits::default());
        assert!(matches!(result, Err(BundleError::NotAZip(_))), "{result:?}");
        assert!(!case.archive().with_extension("partial").exists());
    }
}
