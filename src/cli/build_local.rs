//! `slipway build --local [PATH]`: run `PATH/buildspec.yml` on this machine, in PATH,
//! with the engine the server uses — the counterpart of CodeBuild's local agent.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use slipway_actors::build::{parse_buildspec, run_build, BuildContext, BuildStatus, LogSink};
use tokio_util::sync::CancellationToken;

/// Options of a local build.
pub struct LocalBuild {
    /// The source directory (holds buildspec.yml unless `buildspec` says otherwise).
    pub path: PathBuf,
    /// The buildspec file, relative to `path`.
    pub buildspec: String,
    /// `NAME=VALUE` overrides, also the values of parameter-store entries.
    pub env: Vec<(String, String)>,
    /// The build's time limit.
    pub timeout: Duration,
}

struct Stdout;
impl LogSink for Stdout {
    fn line(&mut self, text: &str) {
        println!("{text}");
    }
}

/// The working tree's commit and branch (empty when it is not a git repository), read
/// with gix rather than two `git` processes.
fn head_of(path: &Path) -> (String, String) {
    let Ok(repo) = gix::discover(path) else {
        return (String::new(), String::new());
    };
    let commit = repo.head_id().map(|id| id.to_string()).unwrap_or_default();
    let branch = repo
        .head_name()
        .ok()
        .flatten()
        .map(|n| n.shorten().to_string())
        .unwrap_or_default();
    (commit, branch)
}

/// Runs the build; returns whether it succeeded.
pub async fn build_local(opts: LocalBuild) -> anyhow::Result<bool> {
    let path = opts
        .path
        .canonicalize()
        .with_context(|| format!("cannot open {}", opts.path.display()))?;
    let file = path.join(&opts.buildspec);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {}; a build needs a buildspec.yml in the source directory",
            file.display()
        )
    })?;
    let spec = parse_buildspec(&opts.buildspec, &text)?;
    let given = |name: &str| opts.env.iter().any(|(k, _)| k == name);
    for (var, param) in spec
        .env
        .parameter_store
        .iter()
        .chain(&spec.env.secrets_manager)
    {
        if !given(var) {
            anyhow::bail!(
                "{}: {var} comes from the parameter store ({param}), which only the server has; pass --env {var}=VALUE to build locally",
                opts.buildspec
            );
        }
    }
    let (commit, branch) = head_of(&path);
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let id = format!("local:{start_ms}");
    let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
    let src = path.display().to_string();
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in [
        ("BUILD_ID", id.clone()),
        ("BUILD_NUMBER", "1".into()),
        ("INITIATOR", user),
        ("RESOLVED_SOURCE_VERSION", commit.clone()),
        (
            "SOURCE_VERSION",
            if branch.is_empty() {
                commit.clone()
            } else {
                branch.clone()
            },
        ),
        ("SOURCE_REPO_URL", src.clone()),
        ("SRC_DIR", src.clone()),
        ("START_TIME", start_ms.to_string()),
        (
            "WEBHOOK_HEAD_REF",
            if branch.is_empty() {
                String::new()
            } else {
                format!("refs/heads/{branch}")
            },
        ),
        ("WEBHOOK_PREV_COMMIT", String::new()),
        (
            "WEBHOOK_TRIGGER",
            if branch.is_empty() {
                String::new()
            } else {
                format!("branch/{branch}")
            },
        ),
        ("LOCAL_AGENT", "1".into()),
    ] {
        env.push((format!("CODEBUILD_{name}"), value.clone()));
        env.push((format!("SLIPWAY_{name}"), value));
    }
    env.push((
        "HOME".into(),
        std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
    ));
    env.extend(opts.env.iter().cloned());
    let state = tempfile::Builder::new()
        .prefix("slipway-build-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let ctx = BuildContext {
        src_dir: path.clone(),
        state_dir: state.path().to_path_buf(),
        env,
        secrets: spec
            .env
            .parameter_store
            .iter()
            .chain(&spec.env.secrets_manager)
            .filter_map(|(var, _)| {
                opts.env
                    .iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.clone())
            })
            .collect(),
        timeout: opts.timeout,
        executor: slipway_actors::build::shell::Executor::Local {
            run_as: None,
            nice: 0,
        },
    };
    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let report = run_build(&spec, &ctx, &mut Stdout, stop).await;
    println!("[slipway] Build complete: {}", report.status.as_str());
    println!();
    for phase in &report.phases {
        println!(
            "{:<11} {:<10} {:>8} ms",
            phase.name,
            phase.status.as_str(),
            phase.duration_ms
        );
    }
    for (name, value) in &report.exported {
        println!("exported {name}={value}");
    }
    println!("build {}: {}", id, report.status.as_str());
    Ok(report.status == BuildStatus::Succeeded)
}
