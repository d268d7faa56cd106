//! Checking out one commit of a bare repository into a plain directory, with gix.

use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Writes the tree of `commit` in the repository at `repo` into `dest` (created; must be
/// empty). No `.git` directory is made: a build sees files only.
pub fn checkout(repo: &Path, commit: &str, dest: &Path) -> Result<(), String> {
    let repo = gix::open(repo).map_err(|e| format!("cannot open the repository: {e}"))?;
    let id = gix::ObjectId::from_hex(commit.as_bytes())
        .map_err(|e| format!("`{commit}` is not a commit id: {e}"))?;
    let commit = repo
        .find_commit(id)
        .map_err(|e| format!("commit {id} not found: {e}"))?;
    let tree = commit
        .tree_id()
        .map_err(|e| format!("commit {id} has no tree: {e}"))?;
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut index = repo
        .index_from_tree(&tree)
        .map_err(|e| format!("cannot read the tree of {id}: {e}"))?;
    let mut options = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| format!("checkout options: {e}"))?;
    options.destination_is_initially_empty = true;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| format!("object store: {e}"))?;
    gix::worktree::state::checkout(
        &mut index,
        dest,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        &AtomicBool::new(false),
        options,
    )
    .map_err(|e| format!("checkout of {id} failed: {e}"))?;
    Ok(())
}

/// Reads `path` from the tree of `commit` (None when absent).
pub fn read_file(repo: &Path, commit: &str, path: &str) -> Result<Option<Vec<u8>>, String> {
    let repo = gix::open(repo).map_err(|e| format!("cannot open the repository: {e}"))?;
    let id = gix::ObjectId::from_hex(commit.as_bytes())
        .map_err(|e| format!("`{commit}` is not a commit id: {e}"))?;
    let tree = repo
        .find_commit(id)
        .and_then(|c| c.tree())
        .map_err(|e| format!("commit {id}: {e}"))?;
    let Some(entry) = tree
        .lookup_entry_by_path(path)
        .map_err(|e| format!("reading {path} at {id}: {e}"))?
    else {
        return Ok(None);
    };
    let object = entry
        .object()
        .map_err(|e| format!("reading {path} at {id}: {e}"))?;
    Ok(Some(object.data.clone()))
}

/// The short name of the default branch (what `HEAD` names) of the repository at `repo`.
pub fn default_branch(repo: &Path) -> Option<String> {
    let repo = gix::open(repo).ok()?;
    let head = repo.head_name().ok()??;
    head.as_bstr()
        .to_string()
        .strip_prefix("refs/heads/")
        .map(str::to_string)
}
