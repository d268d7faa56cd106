//! The repository store: bare repositories under `DATA/repos/NAME.git`, read and
//! edited with gix (blocking: async callers use `spawn_blocking`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{RepoName, DEFAULT_BRANCH};

/// Repository store failures.
#[derive(Debug, thiserror::Error)]
pub enum RepoStoreError {
    /// The repository is already there.
    #[error("repository `{0}` already exists")]
    Exists(String),
    /// The repository is not there.
    #[error("repository `{0}` not found")]
    NotFound(String),
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// gix failed.
    #[error("repository `{name}`: {message}")]
    Git {
        /// The repository.
        name: String,
        /// gix's message.
        message: String,
    },
}

/// What `repo info` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RepoInfo {
    /// The name.
    pub name: String,
    /// The branch HEAD points at.
    pub default_branch: String,
    /// Number of branches.
    pub branches: usize,
    /// Number of tags.
    pub tags: usize,
    /// The default branch's tip, if it exists.
    pub head_commit: Option<String>,
    /// The tip's summary line.
    pub head_summary: Option<String>,
    /// The tip's commit time (seconds since the epoch).
    pub head_time: Option<i64>,
    /// Bytes on disk.
    pub size_bytes: u64,
}

/// Bare repositories under one directory.
#[derive(Debug, Clone)]
pub struct RepoStore {
    root: PathBuf,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RepoStoreError {
    let path = path.display().to_string();
    move |source| RepoStoreError::Io { what, path, source }
}

fn git_err(name: &RepoName) -> impl Fn(gix::Error) -> RepoStoreError + '_ {
    move |e| RepoStoreError::Git {
        name: name.to_string(),
        message: e.to_string(),
    }
}

impl RepoStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: PathBuf) -> RepoStore {
        RepoStore { root }
    }

    /// Where `name` lives on disk.
    pub fn path(&self, name: &RepoName) -> PathBuf {
        self.root.join(format!("{}.git", name.as_str()))
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &RepoName) -> bool {
        self.path(name).join("HEAD").is_file()
    }

    /// Creates an empty bare repository whose HEAD names `main`.
    pub fn create(&self, name: &RepoName) -> Result<PathBuf, RepoStoreError> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RepoStoreError::Exists(name.to_string()))
            }
            Err(e) => return Err(io("cannot create", &path)(e)),
        }
        if let Err(e) = gix::init_bare(&path) {
            let _ = std::fs::remove_dir_all(&path);
            return Err(git_err(name)(e));
        }
        std::fs::write(
            path.join("HEAD"),
            format!("ref: refs/heads/{DEFAULT_BRANCH}\n"),
        )
        .map_err(io("cannot write", &path))?;
        Ok(path)
    }

    /// Removes `name` and any parent directories it leaves empty.
    pub fn delete(&self, name: &RepoName) -> Result<(), RepoStoreError> {
        let path = self.path(name);
        if !path.is_dir() {
            return Err(RepoStoreError::NotFound(name.to_string()));
        }
        std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Every repository, sorted by name.
    pub fn list(&self) -> Result<Vec<RepoName>, RepoStoreError> {
        let mut out = Vec::new();
        self.walk(&self.root, "", 0, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk(
        &self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        out: &mut Vec<RepoName>,
    ) -> Result<(), RepoStoreError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("cannot list", dir)(e)),
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if !entry.path().is_dir() {
                continue;
            }
            if let Some(stem) = file_name.strip_suffix(".git") {
                if let Ok(name) = RepoName::parse(&format!("{prefix}{stem}")) {
                    out.push(name);
                }
            } else if depth < 2 {
                self.walk(
                    &entry.path(),
                    &format!("{prefix}{file_name}/"),
                    depth + 1,
                    out,
                )?;
            }
        }
        Ok(())
    }

    fn open(&self, name: &RepoName) -> Result<gix::Repository, RepoStoreError> {
        if !self.exists(name) {
            return Err(RepoStoreError::NotFound(name.to_string()));
        }
        gix::open(self.path(name)).map_err(|e| RepoStoreError::Git {
            name: name.to_string(),
            message: e.to_string(),
        })
    }

    /// The full ref name HEAD points at, e.g. `refs/heads/main`.
    pub fn head_ref(&self, name: &RepoName) -> Result<String, RepoStoreError> {
        let repo = self.open(name)?;
        let head = repo.head_name().map_err(git_err(name))?;
        Ok(head
            .map(|h| h.as_bstr().to_string())
            .unwrap_or_else(|| format!("refs/heads/{DEFAULT_BRANCH}")))
    }

    /// Points HEAD at `refname`.
    pub fn set_head(&self, name: &RepoName, refname: &str) -> Result<(), RepoStoreError> {
        let path = self.path(name).join("HEAD");
        std::fs::write(&path, format!("ref: {refname}\n")).map_err(io("cannot write", &path))
    }

    /// Whether `refname` exists.
    pub fn ref_exists(&self, name: &RepoName, refname: &str) -> Result<bool, RepoStoreError> {
        let repo = self.open(name)?;
        Ok(repo
            .try_find_reference(refname)
            .map_err(git_err(name))?
            .is_some())
    }

    /// The commit a revision (`main`, `refs/tags/v1`, an id) names, if any.
    pub fn resolve_commit(
        &self,
        name: &RepoName,
        rev: &str,
    ) -> Result<Option<String>, RepoStoreError> {
        let repo = self.open(name)?;
        let Ok(id) = repo.rev_parse_single(rev) else {
            return Ok(None);
        };
        Ok(id
            .object()
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id.to_string()))
    }

    /// All branch names (`refs/heads/…`).
    pub fn branches(&self, name: &RepoName) -> Result<Vec<String>, RepoStoreError> {
        let repo = self.open(name)?;
        let refs = repo.references().map_err(git_err(name))?;
        let mut out = Vec::new();
        for r in refs.local_branches().map_err(git_err(name))?.flatten() {
            out.push(r.name().as_bstr().to_string());
        }
        Ok(out)
    }

    /// Whether the repository has any ref at all.
    pub fn has_refs(&self, name: &RepoName) -> Result<bool, RepoStoreError> {
        let repo = self.open(name)?;
        let refs = repo.references().map_err(git_err(name))?;
        let mut all = refs.all().map_err(git_err(name))?;
        Ok(all.next().is_some())
    }

    /// Summary for `repo info`.
    pub fn info(&self, name: &RepoName) -> Result<RepoInfo, RepoStoreError> {
        let repo = self.open(name)?;
        let head_ref = self.head_ref(name)?;
        let refs = repo.references().map_err(git_err(name))?;
        let branches = refs.local_branches().map_err(git_err(name))?.count();
        let tags = refs.tags().map_err(git_err(name))?.count();
        let (mut head_commit, mut head_summary, mut head_time) = (None, None, None);
        if let Some(mut r) = repo
            .try_find_reference(head_ref.as_str())
            .map_err(git_err(name))?
        {
            if let Ok(commit) = r.peel_to_commit() {
                head_commit = Some(commit.id.to_string());
                head_summary = commit.message().ok().map(|m| m.summary().to_string());
                head_time = commit.time().ok().map(|t| t.seconds);
            }
        }
        Ok(RepoInfo {
            name: name.to_string(),
            default_branch: head_ref
                .strip_prefix("refs/heads/")
                .unwrap_or(&head_ref)
                .to_string(),
            branches,
            tags,
            head_commit,
            head_summary,
            head_time,
            size_bytes: dir_size(&self.path(name)),
        })
    }

    /// Commits `files` (path, contents) as the new tip of `branch`, on top of its
    /// current tip if any. Used to seed the admin repository.
    pub fn commit_files(
        &self,
        name: &RepoName,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<String, RepoStoreError> {
        let repo = self.open(name)?;
        let err = git_err(name);
        let refname = format!("refs/heads/{branch}");
        let parent = match repo.try_find_reference(refname.as_str()).map_err(&err)? {
            Some(mut r) => Some(r.peel_to_commit().map_err(&err)?),
            None => None,
        };
        let base_tree = match &parent {
            Some(c) => c.tree_id().map_err(&err)?.detach(),
            None => gix::ObjectId::empty_tree(repo.object_hash()),
        };
        let mut editor = repo.edit_tree(base_tree).map_err(&err)?;
        for (path, contents) in files {
            let blob = repo.write_blob(contents).map_err(&err)?.detach();
            editor
                .upsert(*path, gix::object::tree::EntryKind::Blob, blob)
                .map_err(&err)?;
        }
        let tree = editor.write().map_err(&err)?.detach();
        let signature = gix::actor::Signature {
            name: "slipway".into(),
            email: "slipway@localhost".into(),
            time: gix::date::Time::now_local_or_utc(),
        };
        let mut buf = gix::date::parse::TimeBuf::default();
        let sig = signature.to_ref(&mut buf);
        let parents: Vec<gix::ObjectId> = parent.iter().map(|c| c.id).collect();
        let id = repo
            .commit_as(sig, sig, refname.as_str(), message, tree, parents)
            .map_err(&err)?;
        Ok(id.to_string())
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_commit_info_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = RepoStore::new(dir.path().to_path_buf());
        let name = RepoName::parse("team/app").unwrap();
        store.create(&name).unwrap();
        assert!(matches!(
            store.create(&name),
            Err(RepoStoreError::Exists(_))
        ));
        assert!(!store.has_refs(&name).unwrap());
        let id = store
            .commit_files(&name, "main", &[("a.txt", b"hello")], "first")
            .unwrap();
        let info = store.info(&name).unwrap();
        assert_eq!(info.default_branch, "main");
        assert_eq!(info.head_commit.as_deref(), Some(id.as_str()));
        assert_eq!(info.head_summary.as_deref(), Some("first"));
        assert_eq!(info.branches, 1);
        assert_eq!(store.list().unwrap(), vec![name.clone()]);
        store.delete(&name).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(!dir.path().join("team").exists(), "empty parent removed");
    }
}
