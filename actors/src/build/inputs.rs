//! A build's source directories: the commit's tree for an ordinary build; for a
//! pipeline's build action, its input artifacts (the first is the source directory and
//! holds the buildspec; the others go to `src-NAME` beside it, named by
//! `CODEBUILD_SRC_DIR_NAME`).

use std::path::{Path, PathBuf};

use super::artifacts::ArtifactStore;
use super::checkout::{checkout, read_file};
use crate::store::{ArtifactRef, BuildPlan};

/// What the build runs on.
pub struct Prepared {
    /// The buildspec's path (for messages).
    pub buildspec: String,
    /// Its text.
    pub text: String,
    /// Secondary inputs: (variable suffix, directory).
    pub secondary: Vec<(String, PathBuf)>,
}

/// Fills `src` (and the secondary input directories under `dir`) and reads the
/// buildspec. Blocking.
pub fn prepare(
    repo: &Path,
    commit: &str,
    plan: Option<&BuildPlan>,
    dir: &Path,
    src: &Path,
    artifacts: &ArtifactStore,
) -> Result<Prepared, String> {
    let buildspec = plan
        .map(|p| p.buildspec.clone())
        .unwrap_or_else(|| "buildspec.yml".into());
    let primary = plan
        .and_then(|p| p.inputs.first())
        .map(|i| (i.name.clone(), i.from.clone()))
        .unwrap_or_else(|| {
            (
                crate::pipeline::spec::SOURCE.into(),
                ArtifactRef::Commit {
                    commit: commit.into(),
                },
            )
        });
    let text = match &primary.1 {
        ArtifactRef::Commit { commit } => {
            let text = read_file(repo, commit, &buildspec)?
                .ok_or_else(|| format!("there is no {buildspec} in commit {commit}"))?;
            checkout(repo, commit, src)?;
            text
        }
        ArtifactRef::Zip { .. } => {
            fill(repo, &primary.0, &primary.1, src, artifacts)?;
            read_inside(src, &buildspec).map_err(|e| {
                format!(
                    "cannot read {buildspec} in input artifact `{}`: {e}",
                    primary.0
                )
            })?
        }
    };
    let text = String::from_utf8(text).map_err(|_| format!("{buildspec} is not UTF-8 text"))?;
    let mut secondary = Vec::new();
    for input in plan.map(|p| p.inputs.iter().skip(1)).into_iter().flatten() {
        let target = dir.join(format!("src-{}", input.name));
        fill(repo, &input.name, &input.from, &target, artifacts)?;
        let suffix: String = input
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        secondary.push((suffix, target));
    }
    Ok(Prepared {
        buildspec,
        text,
        secondary,
    })
}

/// Writes an input's files into `target` (created).
fn fill(
    repo: &Path,
    name: &str,
    from: &ArtifactRef,
    target: &Path,
    artifacts: &ArtifactStore,
) -> Result<(), String> {
    match from {
        ArtifactRef::Commit { commit } => checkout(repo, commit, target),
        ArtifactRef::Zip { sha256, .. } => {
            let zip = artifacts
                .get(sha256)
                .map_err(|e| format!("input artifact `{name}`: {e}"))?;
            std::fs::create_dir_all(target)
                .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
            super::cache::unpack_artifact(&zip, target, name).map(|_| ())
        }
    }
}

/// Reads `rel` under `root`, refusing anything that resolves outside it or is not a
/// regular file.
fn read_inside(root: &Path, rel: &str) -> Result<Vec<u8>, String> {
    let base = root.canonicalize().map_err(|e| e.to_string())?;
    let path = base
        .join(rel)
        .canonicalize()
        .map_err(|_| "it is not there".to_string())?;
    if !path.starts_with(&base) {
        return Err("it leads outside the artifact".into());
    }
    let meta = std::fs::metadata(&path).map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err("it is not a regular file of at most 1 MiB".into());
    }
    std::fs::read(&path).map_err(|e| e.to_string())
}
