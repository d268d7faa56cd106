//! The implicit source stage: for a push, whether the pushed commit's `pipeline.yml`
//! starts an execution, and the source variables actions can use
//! (`#{source.CommitId}`, …).

use std::collections::BTreeMap;
use std::path::Path;

use gix::ObjectId;

use super::spec::{parse_pipeline, PipelineSpec, PIPELINE_FILE};
use super::triggers::{any_matches, Changed};
use crate::config::ConfigError;

/// Most changed paths listed for the `paths` filter; a bigger push passes it.
const MAX_CHANGED: usize = 100_000;

/// What a push means for a repository's pipeline.
#[derive(Debug)]
pub enum PushOutcome {
    /// The commit has no `pipeline.yml`.
    NoPipeline,
    /// The commit's `pipeline.yml` does not validate (the pusher was told at push time).
    Invalid(ConfigError),
    /// The pipeline's triggers do not match this push.
    NotTriggered,
    /// An execution starts with this definition and source.
    Start(Box<PipelineSpec>, Source),
}

/// The source stage's artifact and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The pushed commit (its tree is the `source` artifact).
    pub commit: String,
    /// The pushed ref.
    pub refname: String,
    /// `CommitId`, `BranchName` (or `TagName`), `CommitMessage`, `AuthorName`,
    /// `AuthorEmail`, `AuthorDate` (RFC 3339), `RepositoryName`.
    pub variables: BTreeMap<String, String>,
    /// The `pipeline.yml` text (what the execution runs).
    pub definition: String,
}

/// Decides what a push of `refname` from `old` (all zeros: created) to `new` in the
/// repository `repo_name` at `repo` means for its pipeline.
pub fn for_push(
    repo: &Path,
    repo_name: &str,
    refname: &str,
    old: &str,
    new: &str,
) -> Result<PushOutcome, String> {
    let repo = gix::open(repo).map_err(|e| format!("cannot open the repository: {e}"))?;
    let commit = peel(&repo, new)?;
    let (spec, text) = match definition(&commit)? {
        None => return Ok(PushOutcome::NoPipeline),
        Some(Err(e)) => return Ok(PushOutcome::Invalid(e)),
        Some(Ok(found)) => found,
    };
    let default_branch = repo
        .head_name()
        .ok()
        .flatten()
        .and_then(|n| {
            n.as_bstr()
                .to_string()
                .strip_prefix("refs/heads/")
                .map(str::to_string)
        })
        .unwrap_or_else(|| "main".to_string());
    // Which pushes start an execution is the default branch's decision: another branch
    // cannot join the pipeline (its locks, its rollback targets) by editing its own
    // copy of the triggers. When the default branch has no pipeline.yml, the pushed
    // commit's triggers decide; when it is missing or its file is invalid, only the
    // default branch triggers.
    let default_ref = format!("refs/heads/{default_branch}");
    let triggers = if refname == default_ref {
        spec.triggers.clone()
    } else {
        match default_definition(&repo, &default_ref)? {
            DefaultPipeline::Absent => spec.triggers.clone(),
            DefaultPipeline::Valid(triggers) => triggers,
            DefaultPipeline::Invalid => return Ok(PushOutcome::NotTriggered),
        }
    };
    let branch_push = refname.starts_with("refs/heads/");
    let paths = if branch_push && triggers.iter().any(|t| t.paths.is_some()) {
        changed_paths(&repo, old, &commit)?
    } else {
        None
    };
    let changed = match &paths {
        Some(p) => Changed::Paths(p),
        None => Changed::Unknown,
    };
    if !any_matches(&triggers, &default_branch, refname, &changed) {
        return Ok(PushOutcome::NotTriggered);
    }
    Ok(PushOutcome::Start(
        Box::new(spec),
        source_of(&commit, repo_name, refname, text),
    ))
}

/// A definition and the source it would run on.
pub type Found = (PipelineSpec, Source);

/// What starting `repo_name`'s pipeline by hand at `commit` (reached from `refname`)
/// would run: `None` when the commit has no pipeline.yml, `Some(Err)` when it does not
/// validate. Triggers do not apply.
pub fn for_start(
    repo: &Path,
    repo_name: &str,
    refname: &str,
    commit: &str,
) -> Result<Option<Result<Found, ConfigError>>, String> {
    let repo = gix::open(repo).map_err(|e| format!("cannot open the repository: {e}"))?;
    let commit = peel(&repo, commit)?;
    Ok(definition(&commit)?.map(|found| {
        found.map(|(spec, text)| {
            let source = source_of(&commit, repo_name, refname, text);
            (spec, source)
        })
    }))
}

/// The source stage of `commit`: its id, ref and variables.
fn source_of(
    commit: &gix::Commit<'_>,
    repo_name: &str,
    refname: &str,
    definition: String,
) -> Source {
    let mut variables = BTreeMap::new();
    variables.insert("CommitId".to_string(), commit.id.to_string());
    variables.insert("RepositoryName".to_string(), repo_name.to_string());
    if let Some(branch) = refname.strip_prefix("refs/heads/") {
        variables.insert("BranchName".to_string(), branch.to_string());
    }
    if let Some(tag) = refname.strip_prefix("refs/tags/") {
        variables.insert("TagName".to_string(), tag.to_string());
    }
    let message = commit
        .message_raw()
        .map(|m| m.to_string())
        .unwrap_or_default();
    variables.insert("CommitMessage".to_string(), message.trim_end().to_string());
    if let Ok(author) = commit.author() {
        variables.insert("AuthorName".to_string(), author.name.to_string());
        variables.insert("AuthorEmail".to_string(), author.email.to_string());
        if let Ok(time) = author.time() {
            variables.insert("AuthorDate".to_string(), rfc3339(time.seconds));
        }
    }
    Source {
        commit: commit.id.to_string(),
        refname: refname.to_string(),
        variables,
        definition,
    }
}

/// The `pipeline.yml` of `commit` in the repository at `repo`: `None` when it has none,
/// `Some(Err)` when it does not validate.
pub fn load(
    repo: &Path,
    commit: &str,
) -> Result<Option<Result<PipelineSpec, ConfigError>>, String> {
    let repo = gix::open(repo).map_err(|e| format!("cannot open the repository: {e}"))?;
    let commit = peel(&repo, commit)?;
    Ok(definition(&commit)?.map(|found| found.map(|(spec, _)| spec)))
}

/// The commit's `pipeline.yml`, parsed, with its text.
type Definition = Result<(PipelineSpec, String), ConfigError>;

fn definition(commit: &gix::Commit<'_>) -> Result<Option<Definition>, String> {
    let id = commit.id;
    let tree = commit.tree().map_err(|e| format!("commit {id}: {e}"))?;
    let Some(entry) = tree
        .lookup_entry_by_path(PIPELINE_FILE)
        .map_err(|e| format!("reading {PIPELINE_FILE} at {id}: {e}"))?
    else {
        return Ok(None);
    };
    if !entry.mode().is_blob() {
        return Ok(Some(Err(ConfigError::at(
            PIPELINE_FILE,
            1,
            1,
            "pipeline.yml must be a regular file (it is a directory, link or submodule here)",
        ))));
    }
    let data = entry
        .object()
        .map_err(|e| format!("reading {PIPELINE_FILE} at {id}: {e}"))?
        .data
        .clone();
    Ok(Some(match String::from_utf8(data) {
        Ok(text) => parse_pipeline(PIPELINE_FILE, &text).map(|spec| (spec, text)),
        Err(_) => Err(ConfigError::at(
            PIPELINE_FILE,
            1,
            1,
            "the file is not UTF-8 text",
        )),
    }))
}

/// What the default branch says about triggers.
enum DefaultPipeline {
    /// The branch has no pipeline.yml: the pushed commit's triggers decide.
    Absent,
    /// Its pipeline.yml's triggers.
    Valid(Vec<super::triggers::Trigger>),
    /// The branch is missing or its pipeline.yml does not validate: nothing but the
    /// default branch itself triggers.
    Invalid,
}

fn default_definition(
    repo: &gix::Repository,
    default_ref: &str,
) -> Result<DefaultPipeline, String> {
    // A default branch that does not exist (deleted, or HEAD names a branch never
    // pushed) cannot vouch for anyone: only its own pushes would trigger.
    let Some(mut reference) = repo
        .try_find_reference(default_ref)
        .map_err(|e| format!("reading {default_ref}: {e}"))?
    else {
        return Ok(DefaultPipeline::Invalid);
    };
    let commit = reference
        .peel_to_commit()
        .map_err(|e| format!("reading {default_ref}: {e}"))?;
    Ok(match definition(&commit)? {
        None => DefaultPipeline::Absent,
        Some(Ok((spec, _))) => DefaultPipeline::Valid(spec.triggers),
        Some(Err(_)) => DefaultPipeline::Invalid,
    })
}

/// The commit `hex` names, through annotated tags.
fn peel<'r>(repo: &'r gix::Repository, hex: &str) -> Result<gix::Commit<'r>, String> {
    let id = parse_id(hex)?;
    repo.find_object(id)
        .map_err(|e| format!("object {id} not found: {e}"))?
        .peel_to_commit()
        .map_err(|e| format!("{id} does not name a commit: {e}"))
}

fn parse_id(hex: &str) -> Result<ObjectId, String> {
    ObjectId::from_hex(hex.as_bytes()).map_err(|e| format!("`{hex}` is not an object id: {e}"))
}

fn rfc3339(seconds: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The paths that differ between the tree of `old` (for a created ref: the new
/// commit's first parent; none: the empty tree) and the new commit's; `None` when there
/// are too many to list.
fn changed_paths(
    repo: &gix::Repository,
    old: &str,
    new: &gix::Commit<'_>,
) -> Result<Option<Vec<String>>, String> {
    let created = old.bytes().all(|b| b == b'0');
    let base = if created {
        match new.parent_ids().next() {
            Some(id) => Some(peel(repo, &id.to_string())?),
            None => None,
        }
    } else {
        Some(peel(repo, old)?)
    };
    let base_tree = match base {
        Some(c) => Some(
            c.tree_id()
                .map_err(|e| format!("commit {}: {e}", c.id))?
                .detach(),
        ),
        None => None,
    };
    let new_tree = new
        .tree_id()
        .map_err(|e| format!("commit {}: {e}", new.id))?
        .detach();
    let mut out = Vec::new();
    if !diff_trees(repo, base_tree, Some(new_tree), "", 0, &mut out)? {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Deepest directory nesting walked; deeper pushes pass a `paths` filter.
const MAX_DEPTH: usize = 64;

/// Adds to `out` every file path under `prefix` that differs (content or mode) between
/// trees `a` and `b` (`None`: empty); false when the list would pass [`MAX_CHANGED`] or
/// the trees nest deeper than [`MAX_DEPTH`].
fn diff_trees(
    repo: &gix::Repository,
    a: Option<ObjectId>,
    b: Option<ObjectId>,
    prefix: &str,
    depth: usize,
    out: &mut Vec<String>,
) -> Result<bool, String> {
    if a == b {
        return Ok(true);
    }
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    type Entry = (ObjectId, bool, u16);
    let entries = |id: Option<ObjectId>| -> Result<BTreeMap<String, Entry>, String> {
        let Some(id) = id else {
            return Ok(BTreeMap::new());
        };
        let tree = repo.find_tree(id).map_err(|e| format!("tree {id}: {e}"))?;
        let decoded = tree.decode().map_err(|e| format!("tree {id}: {e}"))?;
        Ok(decoded
            .entries
            .iter()
            .map(|e| {
                let entry = (e.oid.to_owned(), e.mode.is_tree(), e.mode.value());
                (e.filename.to_string(), entry)
            })
            .collect())
    };
    let (left, right) = (entries(a)?, entries(b)?);
    let names: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for name in names {
        let (l, r) = (left.get(name), right.get(name));
        if l == r {
            continue;
        }
        let path = format!("{prefix}{name}");
        let subtree = |e: Option<&Entry>| e.filter(|(_, t, _)| *t).map(|(id, _, _)| *id);
        let (lt, rt) = (subtree(l), subtree(r));
        if (lt.is_some() || rt.is_some())
            && !diff_trees(repo, lt, rt, &format!("{path}/"), depth + 1, out)?
        {
            return Ok(false);
        }
        // A file on either side (also a file replaced by a directory, or back).
        let is_file = |e: Option<&Entry>| e.is_some_and(|(_, t, _)| !*t);
        if is_file(l) || is_file(r) {
            out.push(path);
            if out.len() > MAX_CHANGED {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Ada Author")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
            .env("GIT_COMMITTER_NAME", "c")
            .env("GIT_COMMITTER_EMAIL", "c@example.com")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", message]);
        git(dir, &["rev-parse", "HEAD"])
    }

    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn triggers_paths_and_source_variables() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let pipeline = "name: web\ntriggers:\n  - push: { branches: { include: [main, \"release/*\"] }, paths: { exclude: [\"docs/**\"] } }\n  - push: { tags: { include: [\"v*\"] } }\nstages:\n  - name: build\n    actions: [{ name: compile, build: {} }]\n";
        let first = commit(
            dir,
            &[
                ("pipeline.yml", pipeline),
                ("src/a.rs", "1"),
                ("docs/x.md", "1"),
            ],
            "first\n\nbody",
        );
        // A created branch with no parent: everything changed.
        let PushOutcome::Start(spec, source) =
            for_push(dir, "app", "refs/heads/main", ZERO, &first).unwrap()
        else {
            panic!("the first push starts an execution");
        };
        assert_eq!(spec.name, "web");
        assert_eq!(source.variables["CommitId"], first);
        assert_eq!(source.variables["BranchName"], "main");
        assert_eq!(source.variables["CommitMessage"], "first\n\nbody");
        assert_eq!(source.variables["AuthorName"], "Ada Author");
        assert_eq!(source.variables["AuthorEmail"], "ada@example.com");
        assert_eq!(source.variables["AuthorDate"], "2026-01-02T03:04:05Z");
        assert_eq!(source.variables["RepositoryName"], "app");

        let docs = commit(dir, &[("docs/x.md", "2"), ("docs/deep/y.md", "2")], "docs");
        assert!(matches!(
            for_push(dir, "app", "refs/heads/main", &first, &docs).unwrap(),
            PushOutcome::NotTriggered
        ));
        let code = commit(dir, &[("docs/x.md", "3"), ("src/b/c.rs", "3")], "code");
        assert!(matches!(
            for_push(dir, "app", "refs/heads/main", &docs, &code).unwrap(),
            PushOutcome::Start(..)
        ));
        // A new branch is compared with its commit's parent.
        assert!(matches!(
            for_push(dir, "app", "refs/heads/release/1", ZERO, &docs).unwrap(),
            PushOutcome::NotTriggered
        ));
        assert!(matches!(
            for_push(dir, "app", "refs/heads/feature", ZERO, &code).unwrap(),
            PushOutcome::NotTriggered
        ));
        git(dir, &["tag", "-a", "-m", "release", "v1.0", &docs]);
        let tag_object = git(dir, &["rev-parse", "v1.0"]);
        assert_ne!(tag_object, docs, "an annotated tag is an object of its own");
        let PushOutcome::Start(_, tag) =
            for_push(dir, "app", "refs/tags/v1.0", ZERO, &tag_object).unwrap()
        else {
            panic!("a v* tag starts an execution");
        };
        assert_eq!(tag.variables["TagName"], "v1.0");
        assert_eq!(tag.variables["CommitId"], docs);

        let broken = commit(
            dir,
            &[("pipeline.yml", "name: web\nstages: []\n")],
            "broken",
        );
        assert!(matches!(
            for_push(dir, "app", "refs/heads/main", &code, &broken).unwrap(),
            PushOutcome::Invalid(_)
        ));
        git(dir, &["rm", "-q", "pipeline.yml"]);
        git(dir, &["commit", "-q", "-m", "no pipeline"]);
        let none = git(dir, &["rev-parse", "HEAD"]);
        assert!(matches!(
            for_push(dir, "app", "refs/heads/main", &broken, &none).unwrap(),
            PushOutcome::NoPipeline
        ));
    }

    /// A branch cannot add itself to the triggers with its own copy of the file: the
    /// default branch's pipeline.yml decides (the stages still come from the push).
    #[test]
    fn the_default_branch_decides_which_branches_trigger() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let only_main = "name: web\ntriggers:\n  - push: { branches: { include: [main] } }\nstages:\n  - name: build\n    actions: [{ name: compile, build: {} }]\n";
        let main = commit(dir, &[("pipeline.yml", only_main)], "main");
        git(dir, &["checkout", "-q", "-b", "feature/x"]);
        let sneaky = only_main.replace("[main]", "[main, \"feature/*\"]");
        let feature = commit(dir, &[("pipeline.yml", &sneaky)], "join in");
        // HEAD names the default branch, as in the server's bare repositories.
        git(dir, &["checkout", "-q", "main"]);
        let outcome = for_push(dir, "app", "refs/heads/feature/x", ZERO, &feature).unwrap();
        assert!(matches!(outcome, PushOutcome::NotTriggered), "{outcome:?}");
        // Once main's file includes feature branches, they run — with their own stages.
        let both = only_main
            .replace("[main]", "[main, \"feature/*\"]")
            .replace("compile", "build-it");
        commit(dir, &[("pipeline.yml", &both)], "open up");
        let PushOutcome::Start(spec, _) =
            for_push(dir, "app", "refs/heads/feature/x", &main, &feature).unwrap()
        else {
            panic!("main's triggers now include feature/*");
        };
        assert_eq!(spec.stages[0].actions[0].name, "compile");
        // A default branch that does not exist vouches for nobody.
        git(dir, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
        let outcome = for_push(dir, "app", "refs/heads/feature/x", &main, &feature).unwrap();
        assert!(matches!(outcome, PushOutcome::NotTriggered), "{outcome:?}");
        // Without a pipeline on the default branch, the pushed file decides.
        let e = tempfile::tempdir().unwrap();
        git(e.path(), &["init", "-q", "-b", "main"]);
        commit(e.path(), &[("README", "x")], "no pipeline");
        git(e.path(), &["checkout", "-q", "-b", "feature/y"]);
        let own = commit(e.path(), &[("pipeline.yml", &sneaky)], "own");
        git(e.path(), &["checkout", "-q", "main"]);
        let outcome = for_push(e.path(), "app", "refs/heads/feature/y", ZERO, &own).unwrap();
        assert!(matches!(outcome, PushOutcome::Start(..)), "{outcome:?}");
    }

    #[test]
    fn changed_paths_descend_only_into_changed_trees() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let a = commit(dir, &[("keep/a", "1"), ("x/y/z", "1"), ("f", "1")], "a");
        std::fs::remove_file(dir.join("f")).unwrap();
        std::fs::create_dir_all(dir.join("f")).unwrap();
        commit(
            dir,
            &[("x/y/z", "2"), ("x/new", "1"), ("f/inside", "1")],
            "b",
        );
        git(dir, &["update-index", "--chmod=+x", "keep/a"]);
        git(dir, &["commit", "-q", "-m", "mode"]);
        let b = git(dir, &["rev-parse", "HEAD"]);
        let repo = gix::open(dir).unwrap();
        let new = repo.find_commit(parse_id(&b).unwrap()).unwrap();
        let mut paths = changed_paths(&repo, &a, &new).unwrap().unwrap();
        paths.sort();
        assert_eq!(paths, ["f", "f/inside", "keep/a", "x/new", "x/y/z"]);
    }
}
