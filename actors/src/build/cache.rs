//! The build cache: CodeBuild's `cache.paths`, kept per repository and branch.
//!
//! After a SUCCEEDED build, [`save`] zips the files under the source directory that the
//! `cache.paths` globs match (the same glob rules as artifacts: `*` stays within one
//! directory, `**` crosses them) and records the zip as the cache of (repository,
//! branch). Before the install phase of the next build, [`restore`] unpacks that
//! branch's cache into the fresh source directory, or the default branch's when the
//! branch has none yet. The zip is stored like artifacts: sealed under the master key,
//! content-addressed ([`ArtifactStore`]); the `build_cache` table names it.
//!
//! What is kept:
//! - regular files, with their path relative to the source directory and their
//!   permission bits (`mode & 0o777`: the executable bit survives, set-id bits do not);
//!   directories are implied by the files (empty ones are not kept); modification times
//!   are not kept (restored files are as new as the restore); files not owned by the
//!   owner of the source directory are skipped (the build's user owns what it made;
//!   anything else, such as a hard link to another user's file, stays out);
//! - symbolic links whose target is relative and, resolved from the link's directory
//!   without following other links, stays inside the source directory (e.g.
//!   `node_modules/.bin/tsc -> ../typescript/bin/tsc`); they are stored as links, never
//!   followed. Links with an absolute or escaping target are skipped (counted in
//!   [`CacheSaved::skipped`]): they name things outside the build's workspace.
//!
//! Only paths relative to the source directory are cached ([`check_paths`]); the total
//! size of the files is capped at [`MAX_CACHE_BYTES`] (over it, nothing is saved and the
//! error says why).
//!
//! Safety, since the server may be root while the build's files belong to the build's
//! user (and a process the build left behind may still be changing them):
//! - saving opens every directory and file relative to its parent's descriptor with
//!   `O_NOFOLLOW`, so a path swapped for a link mid-save is skipped, never read through;
//! - restoring checks every entry before writing anything (no absolute path, no `..`, no
//!   link leaving the source directory: a crafted archive writes nothing), then creates
//!   directories and files relative to their parent's descriptor with `O_NOFOLLOW`: an
//!   existing file or link where the cache has a file is removed and the file created
//!   anew (`O_EXCL`), never written through; an existing link or file where the cache
//!   needs a directory is an error. Restored files and the directories created for them
//!   are given to `owner`.
//!
//! Both functions block; async callers use `spawn_blocking`. Errors are sentences for
//! the build log. A failed restore may have restored part of the cache.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::artifacts::{globs, ArtifactStore};
use crate::store::Store;

/// The most a cache may hold: bytes of its files, uncompressed.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

/// Longest symbolic link target kept.
const MAX_LINK_TARGET: usize = 4096;

/// What [`save`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSaved {
    /// Entries stored: files and kept symbolic links.
    pub files: usize,
    /// Bytes of the files, uncompressed.
    pub size: u64,
    /// The zip's SHA-256 (its name in the artifact store).
    pub sha256: String,
    /// Matching paths left out: links leaving the source directory, names that are not
    /// UTF-8, files not owned by the source directory's owner, files that vanished or
    /// changed type while being saved.
    pub skipped: usize,
}

/// What [`restore`] restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRestored {
    /// The branch whose cache it was (the build's, or the default branch's).
    pub from_branch: String,
    /// Entries restored: files and symbolic links.
    pub files: usize,
    /// Bytes of the files.
    pub size: u64,
}

/// Checks `cache.paths`: only globs relative to the source directory are supported.
pub fn check_paths(paths: &[String]) -> Result<(), String> {
    for p in paths {
        let rel = p.trim_start_matches("./");
        if rel.is_empty()
            || rel.starts_with('/')
            || rel.starts_with('~')
            || rel.split('/').any(|c| c == "..")
        {
            return Err(format!(
                "cache.paths `{p}`: only paths relative to the source directory are cached \
                 (no absolute path, `~` or `..`)"
            ));
        }
    }
    globs(paths).map_err(|e| format!("cache.paths {e}"))?;
    Ok(())
}

/// Saves the files of `src` that `paths` match as the cache of `repo`'s `branch`,
/// written by build `build_id`. Call it after a SUCCEEDED build. A cache saved by a
/// later build of the branch is not replaced (builds can finish out of order).
pub fn save(
    store: &Store,
    artifacts: &ArtifactStore,
    repo: &str,
    branch: &str,
    build_id: i64,
    src: &Path,
    paths: &[String],
) -> Result<CacheSaved, String> {
    check_paths(paths).map_err(|e| format!("cache not saved: {e}"))?;
    let packed = pack(src, paths, MAX_CACHE_BYTES).map_err(|e| format!("cache not saved: {e}"))?;
    let sha256 = artifacts
        .put(&packed.zip)
        .map_err(|e| format!("cache not saved: {e}"))?;
    let written = store
        .cache_put(
            repo,
            branch,
            &sha256,
            packed.size as i64,
            packed.files as i64,
            build_id,
        )
        .map_err(|e| format!("cache not saved: {e}"))?;
    if !written {
        return Err(format!(
            "cache not saved: a later build of branch `{branch}` already saved its cache"
        ));
    }
    Ok(CacheSaved {
        files: packed.files,
        size: packed.size,
        sha256,
        skipped: packed.skipped,
    })
}

/// Restores into `src` the cache of `repo`'s `branch`, or, when the branch has none,
/// the cache of `default_branch`; `Ok(None)` when there is no cache to restore.
/// Restored files and created directories are given to `owner` (`(uid, gid)`) when set.
pub fn restore(
    store: &Store,
    artifacts: &ArtifactStore,
    repo: &str,
    branch: &str,
    default_branch: Option<&str>,
    src: &Path,
    owner: Option<(u32, u32)>,
) -> Result<Option<CacheRestored>, String> {
    let lookup = |b: &str| {
        store
            .cache_get(repo, b)
            .map_err(|e| format!("cache not restored: {e}"))
    };
    let row = match lookup(branch)? {
        Some(row) => row,
        None => match default_branch {
            Some(d) if d != branch => match lookup(d)? {
                Some(row) => row,
                None => return Ok(None),
            },
            _ => return Ok(None),
        },
    };
    let failed = |e: String| format!("cache of branch `{}` not restored: {e}", row.branch);
    let zip = artifacts.get(&row.sha256).map_err(failed)?;
    let (files, size) = unpack(&zip, src, owner, MAX_CACHE_BYTES, "the cache").map_err(failed)?;
    Ok(Some(CacheRestored {
        from_branch: row.branch.clone(),
        files,
        size,
    }))
}

// ---------------------------------------------------------------------------------
// Saving.

struct Packed {
    zip: Vec<u8>,
    files: usize,
    size: u64,
    skipped: usize,
}

/// Zips what `paths` match under `src`, at most `cap` bytes of file content.
fn pack(src: &Path, paths: &[String], cap: u64) -> Result<Packed, String> {
    let include = globs(paths).map_err(|e| format!("cache.paths {e}"))?;
    let root = open_root(src)
        .map_err(|e| format!("cannot open the source directory {}: {e}", src.display()))?;
    let src_owner = File::from(root.try_clone().map_err(|e| e.to_string())?)
        .metadata()
        .map_err(|e| format!("cannot read the source directory: {e}"))?
        .uid();
    let mut found = Vec::new();
    for start in walk_roots(paths) {
        if is_real_dir(src, &start) {
            list(src, &src.join(&start), &mut found)
                .map_err(|e| format!("cannot list {}: {e}", start.display()))?;
        }
    }
    found.sort();
    found.dedup();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        // A cache is written after every build and read before the next: speed first.
        .compression_level(Some(1))
        .last_modified_time(zip::DateTime::default());
    let (mut files, mut size, mut skipped) = (0usize, 0u64, 0usize);
    for (rel, is_link) in found {
        if !include.is_match(&rel) {
            continue;
        }
        let Some(name) = rel.to_str().map(str::to_string) else {
            skipped += 1;
            continue;
        };
        let (dir, leaf) = match open_parent(root.as_fd(), &rel) {
            Ok(v) => v,
            Err(e) if vanished(&e) => {
                skipped += 1;
                continue;
            }
            Err(e) => return Err(format!("cannot read {name}: {e}")),
        };
        if is_link {
            let target = match readlinkat(dir.as_fd(), &leaf) {
                Ok(t) => t,
                Err(e) if vanished(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(format!("cannot read the link {name}: {e}")),
            };
            match target.to_str() {
                Some(t) if link_stays_inside(&rel, Path::new(t)) => {
                    zip.add_symlink(name, t, options)
                        .map_err(|e| e.to_string())?;
                    files += 1;
                }
                _ => skipped += 1,
            }
            continue;
        }
        let file = match openat(
            dir.as_fd(),
            &leaf,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        ) {
            Ok(fd) => File::from(fd),
            Err(e) if vanished(&e) => {
                skipped += 1;
                continue;
            }
            Err(e) => return Err(format!("cannot read {name}: {e}")),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        // Not owned by the source directory's owner: not the build's file (say, a hard
        // link to someone else's); never copied into a cache the build will read.
        if !meta.is_file() || meta.uid() != src_owner {
            skipped += 1;
            continue;
        }
        zip.start_file(name.as_str(), options.unix_permissions(meta.mode() & 0o777))
            .map_err(|e| e.to_string())?;
        let copied = std::io::copy(&mut file.take(cap - size + 1), &mut zip)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        size += copied;
        if size > cap {
            return Err(format!(
                "the files cache.paths match are over the {} limit; cache fewer paths",
                human(cap)
            ));
        }
        files += 1;
    }
    if files == 0 {
        return Err(format!("no files match cache.paths {paths:?}"));
    }
    let zip = zip.finish().map_err(|e| e.to_string())?.into_inner();
    Ok(Packed {
        zip,
        files,
        size,
        skipped,
    })
}

/// The directories worth walking for `paths`: each pattern's leading directories
/// without glob characters (`node_modules/**/*` -> `node_modules`), without those
/// inside another one. The empty path is the whole source directory.
fn walk_roots(paths: &[String]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let parts: Vec<&str> = p.trim_start_matches("./").split('/').collect();
            let mut prefix = PathBuf::new();
            for part in &parts[..parts.len() - 1] {
                if part.contains(['*', '?', '[', '{', '\\']) {
                    break;
                }
                prefix.push(part);
            }
            prefix
        })
        .collect();
    roots.sort();
    roots.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for r in roots {
        if !kept.iter().any(|k| r.starts_with(k)) {
            kept.push(r);
        }
    }
    kept
}

/// Whether `src/rel` is a directory reached without passing through a link.
fn is_real_dir(src: &Path, rel: &Path) -> bool {
    let mut p = src.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

/// Appends the regular files and symbolic links under `dir` to `out` as (path relative
/// to `root`, is a link). Links are listed, never followed. (`artifacts::walk` leaves
/// links out; the cache keeps those that stay inside.)
fn list(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, bool)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            list(root, &entry.path(), out)?;
        } else if kind.is_file() || kind.is_symlink() {
            if let Ok(rel) = entry.path().strip_prefix(root) {
                out.push((rel.to_path_buf(), kind.is_symlink()));
            }
        }
    }
    Ok(())
}

/// Whether the link `rel` (relative to the source directory) pointing at `target`
/// stays inside the source directory, resolving `target` lexically from the link's
/// directory.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.as_os_str().is_empty() || target.as_os_str().len() > MAX_LINK_TARGET {
        return false;
    }
    let mut depth = rel.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => return false,
        }
    }
    true
}

/// An error meaning the path changed under us (vanished, became a link, a file or a
/// socket).
fn vanished(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::ENXIO)
    )
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{bytes} bytes")
    }
}

// ---------------------------------------------------------------------------------
// Restoring.

/// One checked archive entry.
enum Item {
    Dir(Vec<String>),
    File(Vec<String>),
    Link(Vec<String>, String),
}

/// Unpacks a build artifact's zip into `dest` (with the checks a cache gets: no entry
/// or link leaves `dest`, at most [`MAX_CACHE_BYTES`]); returns (entries, bytes).
pub fn unpack_artifact(zip: &[u8], dest: &Path, name: &str) -> Result<(usize, u64), String> {
    unpack(
        zip,
        dest,
        None,
        MAX_CACHE_BYTES,
        &format!("artifact `{name}`"),
    )
}

/// Unpacks `zip` into `src`; returns (entries, bytes).
fn unpack(
    zip: &[u8],
    src: &Path,
    owner: Option<(u32, u32)>,
    cap: u64,
    what: &str,
) -> Result<(usize, u64), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| format!("{what} is not a readable zip: {e}"))?;
    // Check everything before writing anything.
    let mut items = Vec::with_capacity(archive.len());
    let mut declared = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("{what} is damaged: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("{what} is damaged: {e}"))?
            .into_owned();
        let Some(parts) = safe_parts(&name) else {
            return Err(format!(
                "{what} has an entry `{}` that escapes the source directory; refused",
                name.escape_default()
            ));
        };
        if entry.is_dir() {
            items.push(Item::Dir(parts));
        } else if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry)
                .take(MAX_LINK_TARGET as u64 + 1)
                .read_to_string(&mut target)
                .map_err(|e| format!("{what} is damaged ({name}): {e}"))?;
            if !link_stays_inside(Path::new(&name), Path::new(&target)) {
                return Err(format!(
                    "{what} has a link `{name}` that leaves the source directory; refused"
                ));
            }
            items.push(Item::Link(parts, target));
        } else {
            declared = declared.saturating_add(entry.size());
            items.push(Item::File(parts));
        }
    }
    if declared > cap {
        return Err(format!(
            "{what} holds more than the {} limit; refused",
            human(cap)
        ));
    }
    let root = open_root(src)
        .map_err(|e| format!("cannot open the source directory {}: {e}", src.display()))?;
    let mut dirs = DirCache::default();
    let (mut files, mut size) = (0usize, 0u64);
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Item::Dir(parts) => {
                dirs.get(root.as_fd(), &parts, owner)?;
            }
            Item::Link(parts, target) => {
                let (dir, leaf, shown) = dirs.parent(root.as_fd(), &parts, owner)?;
                remove_leaf(dir, &leaf, &shown)?;
                symlinkat(&target, dir, &leaf)
                    .map_err(|e| format!("cannot create the link {shown}: {e}"))?;
                if let Some((uid, gid)) = owner {
                    lchownat(dir, &leaf, uid, gid)
                        .map_err(|e| format!("cannot give {shown} to {uid}:{gid}: {e}"))?;
                }
                files += 1;
            }
            Item::File(parts) => {
                let (dir, leaf, shown) = dirs.parent(root.as_fd(), &parts, owner)?;
                remove_leaf(dir, &leaf, &shown)?;
                let mut file = File::from(
                    openat(
                        dir,
                        &leaf,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                        0o600,
                    )
                    .map_err(|e| format!("cannot create {shown}: {e}"))?,
                );
                let mut entry = archive
                    .by_index(i)
                    .map_err(|e| format!("{what} is damaged: {e}"))?;
                let mode = entry.unix_mode().map(|m| m & 0o777).unwrap_or(0o644);
                let copied = std::io::copy(&mut (&mut entry).take(cap - size + 1), &mut file)
                    .map_err(|e| format!("cannot restore {shown}: {e}"))?;
                size += copied;
                if size > cap {
                    return Err(format!(
                        "{what} holds more than the {} limit; refused",
                        human(cap)
                    ));
                }
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                        .map_err(|e| format!("cannot give {shown} to {uid}:{gid}: {e}"))?;
                }
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("cannot set the mode of {shown}: {e}"))?;
                file.flush()
                    .map_err(|e| format!("cannot restore {shown}: {e}"))?;
                files += 1;
            }
        }
    }
    Ok((files, size))
}

/// The components of an archive entry's name when it is a plain relative path (no
/// leading `/`, no `.`, `..` or empty component, no NUL); a trailing `/` (a directory)
/// is allowed.
fn safe_parts(name: &str) -> Option<Vec<String>> {
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    if trimmed.is_empty() || name.contains('\0') {
        return None;
    }
    let parts: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty() || p == "." || p == "..") {
        return None;
    }
    Some(parts)
}

/// Removes whatever non-directory is at `leaf` in `dir` (a file or a link, itself,
/// never its target).
fn remove_leaf(dir: BorrowedFd<'_>, leaf: &CStr, shown: &str) -> Result<(), String> {
    // SAFETY: `leaf` is NUL-terminated and `dir` an open descriptor.
    let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), leaf.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR) | Some(libc::EPERM) => Err(format!(
            "{shown} is a directory in the source, a file in the cache; remove one of them"
        )),
        _ => Err(format!("cannot replace {shown}: {e}")),
    }
}

/// Descriptors of the directories files are restored into, opened without following
/// links and created when missing; the last one is kept (entries come in order).
#[derive(Default)]
struct DirCache {
    last: Option<(Vec<String>, OwnedFd)>,
}

impl DirCache {
    /// The directory `parts` (relative to `root`), created when missing.
    fn get(
        &mut self,
        root: BorrowedFd<'_>,
        parts: &[String],
        owner: Option<(u32, u32)>,
    ) -> Result<BorrowedFd<'_>, String> {
        let hit = matches!(&self.last, Some((p, _)) if p.as_slice() == parts);
        if !hit {
            let mut fd = root
                .try_clone_to_owned()
                .map_err(|e| format!("cannot open the source directory: {e}"))?;
            for (i, part) in parts.iter().enumerate() {
                let shown = parts[..=i].join("/");
                let name = CString::new(part.as_bytes())
                    .map_err(|_| format!("bad name {}", shown.escape_default()))?;
                fd = open_or_create_dir(fd.as_fd(), &name, owner).map_err(|e| {
                    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                        format!(
                            "{shown} is a file or a symbolic link in the source, a directory \
                             in the cache; the cache is never written through a link"
                        )
                    } else {
                        format!("cannot create the directory {shown}: {e}")
                    }
                })?;
            }
            self.last = Some((parts.to_vec(), fd));
        }
        Ok(self.last.as_ref().expect("just set").1.as_fd())
    }

    /// The directory holding `parts`'s last component, that component, and the path
    /// for messages.
    fn parent(
        &mut self,
        root: BorrowedFd<'_>,
        parts: &[String],
        owner: Option<(u32, u32)>,
    ) -> Result<(BorrowedFd<'_>, CString, String), String> {
        let shown = parts.join("/");
        let leaf = CString::new(parts[parts.len() - 1].as_bytes())
            .map_err(|_| format!("bad name {}", shown.escape_default()))?;
        let dir = self.get(root, &parts[..parts.len() - 1], owner)?;
        Ok((dir, leaf, shown))
    }
}

/// Opens the directory `name` in `dir` without following a link, creating it (mode
/// 0755, given to `owner`) when missing.
fn open_or_create_dir(
    dir: BorrowedFd<'_>,
    name: &CStr,
    owner: Option<(u32, u32)>,
) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and `dir` an open descriptor.
    let created = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } == 0;
    if !created {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    let fd = openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )?;
    if created {
        let f = File::from(fd);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        return Ok(OwnedFd::from(f));
    }
    Ok(fd)
}

// ---------------------------------------------------------------------------------
// Descriptor-relative file system calls.

/// Opens the source directory itself (not through a link).
fn open_root(src: &Path) -> std::io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(src)?;
    Ok(OwnedFd::from(f))
}

/// Opens the directories leading to `rel` from `root` without following links;
/// returns the last one and the final component.
fn open_parent(root: BorrowedFd<'_>, rel: &Path) -> std::io::Result<(OwnedFd, CString)> {
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(std::io::Error::from(std::io::ErrorKind::InvalidInput)),
        })
        .collect::<Result<_, _>>()?;
    let Some((leaf, dirs)) = parts.split_last() else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let mut fd = root.try_clone_to_owned()?;
    for d in dirs {
        fd = openat(
            fd.as_fd(),
            &cstring(d)?,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
    }
    Ok((fd, cstring(leaf)?))
}

fn cstring(name: &std::ffi::OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput.into())
}

fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated, `dir` an open descriptor; on success the
    // returned descriptor is new and ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> std::io::Result<PathBuf> {
    let mut buf = vec![0u8; MAX_LINK_TARGET + 1];
    // SAFETY: `buf` is writable for `buf.len()` bytes; `name` is NUL-terminated.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

fn symlinkat(target: &str, dir: BorrowedFd<'_>, name: &CStr) -> std::io::Result<()> {
    let target = CString::new(target).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: both strings are NUL-terminated; `dir` is an open descriptor.
    if unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn lchownat(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: `name` is NUL-terminated; `dir` is an open descriptor.
    let rc = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    struct Env {
        dir: tempfile::TempDir,
        store: Store,
        artifacts: ArtifactStore,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let artifacts = ArtifactStore::new(
            dir.path().join("artifacts"),
            MasterKey::from_bytes(&[7; 32]).unwrap(),
        );
        Env {
            dir,
            store,
            artifacts,
        }
    }

    impl Env {
        /// A new empty directory under the test's temporary directory.
        fn fresh(&self, name: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            p
        }

        fn save(
            &self,
            branch: &str,
            build: i64,
            src: &Path,
            paths: &[&str],
        ) -> Result<CacheSaved, String> {
            save(
                &self.store,
                &self.artifacts,
                "web",
                branch,
                build,
                src,
                &strings(paths),
            )
        }

        fn restore(
            &self,
            branch: &str,
            default: Option<&str>,
            dst: &Path,
        ) -> Result<Option<CacheRestored>, String> {
            restore(
                &self.store,
                &self.artifacts,
                "web",
                branch,
                default,
                dst,
                Some(me()),
            )
        }

        /// Stores a hand-made zip as the cache of `web`'s `main`.
        fn plant(&self, zip: Vec<u8>) {
            let sha = self.artifacts.put(&zip).unwrap();
            assert!(self.store.cache_put("web", "main", &sha, 1, 1, 1).unwrap());
        }
    }

    fn me() -> (u32, u32) {
        // SAFETY: plain getters.
        unsafe { (libc::geteuid(), libc::getegid()) }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn write(root: &Path, rel: &str, content: &str, mode: u32) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    fn zip_of(entries: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        for (name, link, content) in entries {
            match link {
                Some(target) => z.add_symlink(*name, *target, o).unwrap(),
                None => {
                    z.start_file(*name, o).unwrap();
                    z.write_all(content.as_bytes()).unwrap();
                }
            }
        }
        z.finish().unwrap().into_inner()
    }

    #[test]
    fn save_and_restore_round_trip() {
        let e = env();
        let src = e.fresh("src");
        write(&src, "node_modules/a/b/c.js", "deep", 0o644);
        write(&src, "node_modules/x.js", "x", 0o600);
        write(&src, "node_modules/tool/bin/tool", "#!/bin/sh\n", 0o755);
        std::fs::create_dir(src.join("node_modules/.bin")).unwrap();
        std::os::unix::fs::symlink("../tool/bin/tool", src.join("node_modules/.bin/tool")).unwrap();
        write(&src, ".cache/pip/w.whl", "wheel", 0o644);
        write(&src, "README.md", "not cached", 0o644);
        write(&src, ".cache/other/skip", "not cached", 0o644);

        let saved = e
            .save("main", 1, &src, &["node_modules/**/*", "./.cache/pip/**/*"])
            .unwrap();
        assert_eq!(saved.files, 5, "{saved:?}");
        assert_eq!(saved.size, (4 + 1 + 10 + 5) as u64);
        assert_eq!(saved.skipped, 0);
        let row = e.store.cache_get("web", "main").unwrap().unwrap();
        assert_eq!(
            (row.sha256.as_str(), row.files, row.build_id),
            (saved.sha256.as_str(), 5, 1)
        );

        let dst = e.fresh("dst");
        write(&dst, "README.md", "checked out", 0o644);
        let restored = e.restore("main", Some("main"), &dst).unwrap().unwrap();
        assert_eq!(
            restored,
            CacheRestored {
                from_branch: "main".into(),
                files: 5,
                size: saved.size
            }
        );
        assert_eq!(read(&dst.join("node_modules/a/b/c.js")), "deep");
        assert_eq!(read(&dst.join("node_modules/x.js")), "x");
        assert_eq!(read(&dst.join(".cache/pip/w.whl")), "wheel");
        assert_eq!(mode(&dst.join("node_modules/tool/bin/tool")), 0o755);
        assert_eq!(mode(&dst.join("node_modules/x.js")), 0o600);
        assert_eq!(mode(&dst.join("node_modules/a/b/c.js")), 0o644);
        assert_eq!(mode(&dst.join("node_modules/a/b")), 0o755);
        let link = dst.join("node_modules/.bin/tool");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../tool/bin/tool")
        );
        assert_eq!(read(&link), "#!/bin/sh\n", "the link works once restored");
        assert_eq!(read(&dst.join("README.md")), "checked out");
        assert!(!dst.join(".cache/other").exists());
        assert_eq!(
            std::fs::metadata(dst.join("node_modules/x.js"))
                .unwrap()
                .uid(),
            me().0
        );
    }

    #[test]
    fn a_branch_without_cache_falls_back_to_the_default_branch() {
        let e = env();
        let src = e.fresh("src");
        write(&src, "target/out", "from main", 0o644);
        let dst = e.fresh("dst");
        assert_eq!(
            e.restore("main", Some("main"), &dst).unwrap(),
            None,
            "no cache yet"
        );
        e.save("main", 1, &src, &["target/**/*"]).unwrap();

        assert_eq!(e.restore("feature", None, &dst).unwrap(), None);
        let r = e.restore("feature", Some("main"), &dst).unwrap().unwrap();
        assert_eq!(r.from_branch, "main");
        assert_eq!(read(&dst.join("target/out")), "from main");
        let other = restore(
            &e.store,
            &e.artifacts,
            "api",
            "main",
            Some("main"),
            &dst,
            None,
        );
        assert_eq!(other.unwrap(), None, "caches are per repository");

        write(&src, "target/out", "from feature", 0o644);
        e.save("feature", 2, &src, &["target/**/*"]).unwrap();
        let dst2 = e.fresh("dst2");
        let r = e.restore("feature", Some("main"), &dst2).unwrap().unwrap();
        assert_eq!(r.from_branch, "feature");
        assert_eq!(read(&dst2.join("target/out")), "from feature");
    }

    #[test]
    fn a_newer_save_replaces_the_older_and_an_older_build_does_not() {
        let e = env();
        let src = e.fresh("src");
        write(&src, "target/out", "one", 0o644);
        let first = e.save("main", 1, &src, &["target/**/*"]).unwrap();
        write(&src, "target/out", "two", 0o644);
        let second = e.save("main", 2, &src, &["target/**/*"]).unwrap();
        assert_ne!(first.sha256, second.sha256);
        let row = e.store.cache_get("web", "main").unwrap().unwrap();
        assert_eq!((row.sha256, row.build_id), (second.sha256.clone(), 2));

        write(&src, "target/out", "late", 0o644);
        let late = e.save("main", 1, &src, &["target/**/*"]).unwrap_err();
        assert!(late.contains("later build"), "{late}");

        let dst = e.fresh("dst");
        write(&dst, "target/out", "checked out", 0o644);
        e.restore("main", None, &dst).unwrap().unwrap();
        assert_eq!(read(&dst.join("target/out")), "two");
    }

    #[test]
    fn entries_escaping_the_source_are_refused_before_anything_is_written() {
        for (bad, why) in [
            ("../evil.txt", "escapes"),
            ("a/../../evil.txt", "escapes"),
            ("/tmp/evil.txt", "escapes"),
        ] {
            let e = env();
            e.plant(zip_of(&[("ok.txt", None, "ok"), (bad, None, "evil")]));
            let dst = e.fresh("work/dst");
            let err = e.restore("main", None, &dst).unwrap_err();
            assert!(err.contains(why) && err.contains("refused"), "{bad}: {err}");
            assert!(!dst.join("ok.txt").exists(), "nothing written");
            assert!(!e.dir.path().join("work/evil.txt").exists());
        }
        let e = env();
        e.plant(zip_of(&[("a/l", Some("../../etc"), "")]));
        let dst = e.fresh("dst");
        let err = e.restore("main", None, &dst).unwrap_err();
        assert!(err.contains("leaves the source directory"), "{err}");
        assert!(std::fs::symlink_metadata(dst.join("a/l")).is_err());
    }

    #[test]
    fn symlinks_are_not_followed_on_save() {
        let e = env();
        let outside = e.fresh("outside");
        write(&outside, "secret.txt", "secret", 0o644);
        let src = e.fresh("src");
        write(&src, "node_modules/real.txt", "real", 0o644);
        let nm = src.join("node_modules");
        std::os::unix::fs::symlink("/etc/passwd", nm.join("passwd")).unwrap();
        std::os::unix::fs::symlink(&outside, nm.join("out")).unwrap();
        std::os::unix::fs::symlink("../../outside", nm.join("rel-out")).unwrap();
        std::os::unix::fs::symlink(&outside, src.join(".cache")).unwrap();

        let saved = e
            .save("main", 1, &src, &["node_modules/**/*", ".cache/**/*"])
            .unwrap();
        assert_eq!((saved.files, saved.skipped), (1, 3), "{saved:?}");
        let zip = e.artifacts.get(&saved.sha256).unwrap();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let names: Vec<String> = (0..z.len())
            .map(|i| z.by_index(i).unwrap().name().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["node_modules/real.txt"]);

        let err = e.save("main", 2, &src, &[".cache/**/*"]).unwrap_err();
        assert!(err.contains("no files match"), "{err}");
    }

    #[test]
    fn restore_never_writes_through_a_link() {
        let e = env();
        let src = e.fresh("src");
        write(&src, "node_modules/real.txt", "cached", 0o644);
        e.save("main", 1, &src, &["node_modules/**/*"]).unwrap();
        let outside = e.fresh("outside");
        write(&outside, "target.txt", "untouched", 0o644);

        // A link where the cache has a file: the link is replaced, its target untouched.
        let dst = e.fresh("dst");
        std::fs::create_dir(dst.join("node_modules")).unwrap();
        std::os::unix::fs::symlink(
            outside.join("target.txt"),
            dst.join("node_modules/real.txt"),
        )
        .unwrap();
        e.restore("main", None, &dst).unwrap().unwrap();
        assert_eq!(read(&outside.join("target.txt")), "untouched");
        let meta = std::fs::symlink_metadata(dst.join("node_modules/real.txt")).unwrap();
        assert!(meta.is_file());
        assert_eq!(read(&dst.join("node_modules/real.txt")), "cached");

        // A link where the cache needs a directory: refused.
        let dst = e.fresh("dst2");
        std::os::unix::fs::symlink(&outside, dst.join("node_modules")).unwrap();
        let err = e.restore("main", None, &dst).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!outside.join("real.txt").exists());

        // A directory where the cache has a file: refused.
        let dst = e.fresh("dst3");
        std::fs::create_dir_all(dst.join("node_modules/real.txt")).unwrap();
        let err = e.restore("main", None, &dst).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn a_tampered_blob_is_refused() {
        let e = env();
        let src = e.fresh("src");
        write(&src, "target/out", "bytes", 0o644);
        let saved = e.save("main", 1, &src, &["target/**/*"]).unwrap();
        let blob = e
            .dir
            .path()
            .join("artifacts")
            .join(&saved.sha256[..2])
            .join(format!("{}.sealed", saved.sha256));
        let mut sealed = std::fs::read(&blob).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 0xff;
        std::fs::write(&blob, sealed).unwrap();
        let dst = e.fresh("dst");
        let err = e.restore("main", None, &dst).unwrap_err();
        assert!(
            err.contains("not restored") && err.contains("refused"),
            "{err}"
        );
        assert!(!dst.join("target").exists());
    }

    #[test]
    fn paths_must_stay_inside_the_source() {
        assert!(check_paths(&strings(&[
            "node_modules/**/*",
            "./target/**/*",
            ".cache/pip/**/*"
        ]))
        .is_ok());
        for bad in ["/root/.m2/**/*", "~/.m2/**/*", "../x/**/*", "a/../../b", ""] {
            let err = check_paths(&strings(&[bad])).unwrap_err();
            assert!(
                err.contains("only paths relative to the source directory"),
                "{bad}: {err}"
            );
        }
        assert!(check_paths(&strings(&["a/[b"]))
            .unwrap_err()
            .contains("cache.paths"));
        let e = env();
        let src = e.fresh("src");
        let err = e.save("main", 1, &src, &["/etc/**/*"]).unwrap_err();
        assert!(err.starts_with("cache not saved:"), "{err}");
    }

    #[test]
    fn the_size_cap_is_enforced_both_ways() {
        let e = env();
        let src = e.fresh("src");
        write(&src, "target/a", "0123456789", 0o644);
        write(&src, "target/b", "0123456789", 0o644);
        let paths = strings(&["target/**/*"]);
        assert!(pack(&src, &paths, 20).is_ok());
        let err = pack(&src, &paths, 19).err().unwrap();
        assert!(err.contains("limit"), "{err}");
        let packed = pack(&src, &paths, 20).unwrap();
        let dst = e.fresh("dst");
        let err = unpack(&packed.zip, &dst, None, 19, "the cache").unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn ownership_when_the_server_is_root() {
        if me().0 != 0 {
            return; // needs chown; covered by the other tests' `owner = me()` otherwise
        }
        let e = env();
        let src = e.fresh("src");
        write(&src, "target/mine", "build's", 0o644);
        write(&src, "target/theirs", "someone else's", 0o644);
        std::os::unix::fs::chown(&src, Some(4242), Some(4242)).unwrap();
        std::os::unix::fs::chown(src.join("target/mine"), Some(4242), Some(4242)).unwrap();
        let saved = e.save("main", 1, &src, &["target/**/*"]).unwrap();
        assert_eq!((saved.files, saved.skipped), (1, 1), "{saved:?}");

        let dst = e.fresh("dst");
        let owner = Some((4242, 4343));
        restore(&e.store, &e.artifacts, "web", "main", None, &dst, owner)
            .unwrap()
            .unwrap();
        for p in ["target", "target/mine"] {
            let m = std::fs::symlink_metadata(dst.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343), "{p}");
        }
        assert!(!dst.join("target/theirs").exists());
    }

    #[test]
    fn only_the_literal_prefixes_are_walked() {
        let roots = walk_roots(&strings(&[
            "node_modules/**/*",
            "node_modules/.bin/*",
            "./.cache/pip/**/*",
            "x/*/y/*",
        ]));
        assert_eq!(
            roots,
            vec![
                PathBuf::from(".cache/pip"),
                PathBuf::from("node_modules"),
                PathBuf::from("x")
            ]
        );
        assert_eq!(
            walk_roots(&strings(&["**/*.o", "a/b"])),
            vec![PathBuf::new()]
        );
    }
}
