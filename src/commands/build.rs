//! `build start|list|info|logs|stop`: builds of a repository's `buildspec.yml`.
//!
//! Starting needs `build:start`, stopping `build:stop`, on `repo:REPO`; reading builds
//! and their logs needs `git:pull` on the repository.

use std::time::Duration;

use clap::Subcommand;
use slipway_actors::store::{ArtifactRow, BuildRow, NewBuild};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{json, CommandContext, CommandError, CommandResult, Out};
use crate::access::Resource;
use crate::git::RepoName;

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Build a repository's buildspec.yml at a ref (default: the default branch).
    Start {
        /// The repository.
        repo: String,
        /// A branch, tag or commit.
        #[arg(long = "ref")]
        rev: Option<String>,
    },
    /// List recent builds you may read.
    List {
        /// Only this repository's builds.
        #[arg(long)]
        repo: Option<String>,
        /// Only builds with this status (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, FAULT,
        /// TIMED_OUT, STOPPED).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one build: status, phases, exported variables, test reports, artifacts.
    Info {
        /// The build id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a build's log; --follow streams it until the build ends.
    Logs {
        /// The build id.
        id: i64,
        /// Keep streaming while the build runs.
        #[arg(long)]
        follow: bool,
    },
    /// Write an artifact's zip to stdout: `ssh … build artifact 7 > app.zip`.
    Artifact {
        /// The build id.
        id: i64,
        /// `primary` (default) or a secondary artifact's identifier.
        #[arg(default_value = "primary")]
        name: String,
    },
    /// Stop a queued or running build.
    Stop {
        /// The build id.
        id: i64,
    },
}

fn allowed(ctx: &CommandContext<'_>, action: &str, repo: &str) -> bool {
    ctx.state
        .admin
        .get()
        .access
        .evaluate(&ctx.identity.user, action, &Resource::repo(repo))
        .allowed()
}

fn not_found(id: i64) -> CommandError {
    CommandError::new(format!(
        "build {id} not found (or you may not read its repository)"
    ))
}

async fn load(ctx: &CommandContext<'_>, id: i64) -> Result<BuildRow, CommandError> {
    let store = ctx.state.store.clone();
    let build = tokio::task::spawn_blocking(move || store.build(id))
        .await
        .map_err(|e| CommandError::internal("reading a build", e))?
        .map_err(|e| CommandError::internal("reading a build", e))?
        .ok_or_else(|| not_found(id))?;
    if !allowed(ctx, "git:pull", &build.repo) {
        return Err(not_found(id));
    }
    Ok(build)
}

async fn artifacts_of(ctx: &CommandContext<'_>, id: i64) -> Result<Vec<ArtifactRow>, CommandError> {
    let store = ctx.state.store.clone();
    tokio::task::spawn_blocking(move || store.artifacts(id))
        .await
        .map_err(|e| CommandError::internal("reading artifacts", e))?
        .map_err(|e| CommandError::internal("reading artifacts", e))
}

fn summary(b: &BuildRow) -> String {
    format!(
        "#{:<5} {:<11} {}:{} {} {}",
        b.id,
        b.status,
        b.repo,
        b.number,
        b.refname.as_deref().unwrap_or("-"),
        &b.commit[..b.commit.len().min(8)]
    )
}

fn terminal(status: &str) -> bool {
    !matches!(status, "QUEUED" | "IN_PROGRESS")
}

pub async fn run(ctx: &CommandContext<'_>, cmd: BuildCommand, out: Out<'_>) -> CommandResult {
    match cmd {
        BuildCommand::Start { repo, rev } => {
            let name =
                RepoName::from_client_path(&repo).map_err(|e| CommandError::new(e.to_string()))?;
            if !allowed(ctx, "build:start", name.as_str()) {
                return Err(if allowed(ctx, "git:pull", name.as_str()) {
                    CommandError::new(format!(
                        "you ({}) may not start builds of `{name}`: build:start on repo:{name} is needed",
                        ctx.identity.user
                    ))
                } else {
                    CommandError::new(format!(
                        "repository `{name}` not found (or you may not read it)"
                    ))
                });
            }
            let repos = ctx.state.repos.clone();
            let n = name.clone();
            let rev2 = rev.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                let rev = match rev2 {
                    Some(r) => r,
                    None => repos.head_ref(&n)?,
                };
                let commit = repos.resolve_commit(&n, &rev)?;
                Ok::<_, crate::git::RepoStoreError>((rev, commit))
            })
            .await
            .map_err(|e| CommandError::internal("resolving a ref", e))?;
            let (rev, commit) = match resolved {
                Ok((rev, Some(c))) => (rev, c),
                Ok((rev, None)) => {
                    return Err(CommandError::new(format!(
                        "`{rev}` names no commit in `{name}`"
                    )))
                }
                Err(crate::git::RepoStoreError::NotFound(_)) => {
                    return Err(CommandError::new(format!(
                        "repository `{name}` not found (or you may not read it)"
                    )))
                }
                Err(e) => return Err(CommandError::internal("resolving a ref", e)),
            };
            let refname = if rev.starts_with("refs/") {
                Some(rev)
            } else if rev.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                Some(format!("refs/heads/{rev}"))
            };
            let build = ctx
                .state
                .runtime
                .start_build(NewBuild {
                    repo: name.to_string(),
                    commit,
                    refname,
                    prev_commit: None,
                    event_id: None,
                    initiator: ctx.identity.user.clone(),
                    plan: None,
                })
                .await
                .map_err(|e| CommandError::internal("starting a build", e))?;
            Ok(format!(
                "queued build {} ({}:{} at {})\nfollow it:  ssh -p {} git@{} build logs {} --follow\n",
                build.id,
                build.repo,
                build.number,
                &build.commit[..build.commit.len().min(8)],
                ctx.state.settings.ssh.listen.port(),
                ctx.state
                    .settings
                    .ssh
                    .public_host
                    .clone()
                    .unwrap_or_else(|| ctx.state.settings.ssh.listen.ip().to_string()),
                build.id
            ))
        }
        BuildCommand::List {
            repo,
            status,
            limit,
            json: as_json,
        } => {
            const STATUSES: [&str; 7] = [
                "QUEUED",
                "IN_PROGRESS",
                "SUCCEEDED",
                "FAILED",
                "FAULT",
                "TIMED_OUT",
                "STOPPED",
            ];
            let status = status.map(|s| s.to_ascii_uppercase());
            if let Some(s) = status.as_deref().filter(|s| !STATUSES.contains(s)) {
                return Err(CommandError::new(format!(
                    "unknown status `{s}`; use one of {}",
                    STATUSES.join(", ")
                )));
            }
            let store = ctx.state.store.clone();
            let r = repo.clone();
            let builds = tokio::task::spawn_blocking(move || {
                store.builds_recent(r.as_deref(), status.as_deref(), limit.clamp(1, 1000) * 4)
            })
            .await
            .map_err(|e| CommandError::internal("listing builds", e))?
            .map_err(|e| CommandError::internal("listing builds", e))?;
            let visible: Vec<BuildRow> = builds
                .into_iter()
                .filter(|b| allowed(ctx, "git:pull", &b.repo))
                .take(limit)
                .collect();
            if as_json {
                return json(&visible);
            }
            Ok(visible.iter().map(|b| summary(b) + "\n").collect())
        }
        BuildCommand::Info { id, json: as_json } => {
            let b = load(ctx, id).await?;
            if as_json {
                return json(&b);
            }
            let mut text = summary(&b) + "\n";
            text.push_str(&format!("initiator: {}\n", b.initiator));
            for p in b.phases.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "  {:<11} {:<10} {} ms\n",
                    p["name"].as_str().unwrap_or("?"),
                    p["status"].as_str().unwrap_or("?"),
                    p["duration_ms"].as_u64().unwrap_or(0)
                ));
            }
            if let Some(map) = b.exported.as_object() {
                for (k, v) in map {
                    text.push_str(&format!("exported {k}={}\n", v.as_str().unwrap_or("")));
                }
            }
            if let Some(d) = &b.detail {
                text.push_str(&format!("detail: {d}\n"));
            }
            for r in b.reports.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "report {}: {} tests, {} passed, {} failed, {} errors, {} skipped ({} files)\n",
                    r["name"].as_str().unwrap_or("?"),
                    r["total"].as_u64().unwrap_or(0),
                    r["passed"].as_u64().unwrap_or(0),
                    r["failed"].as_u64().unwrap_or(0),
                    r["errors"].as_u64().unwrap_or(0),
                    r["skipped"].as_u64().unwrap_or(0),
                    r["files"].as_u64().unwrap_or(0),
                ));
                for p in r["problems"].as_array().into_iter().flatten() {
                    text.push_str(&format!("  {}\n", p.as_str().unwrap_or("")));
                }
            }
            for a in artifacts_of(ctx, id).await? {
                text.push_str(&format!(
                    "artifact {}: {} files, {} bytes, sha256 {}\n",
                    a.name, a.files, a.size, a.sha256
                ));
            }
            Ok(text)
        }
        BuildCommand::Logs { id, follow } => {
            let mut build = load(ctx, id).await?;
            let path = ctx.state.runtime.build_log(id);
            let closed = ctx.input.closed_token();
            let mut offset = 0u64;
            // Without --follow: one read. With it: read, wait, re-check the status; once
            // the build has ended, one last read picks up the tail.
            let mut done = !follow;
            loop {
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    let mut buf = Vec::new();
                    if f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
                        && f.read_to_end(&mut buf).await.is_ok()
                        && !buf.is_empty()
                    {
                        offset += buf.len() as u64;
                        if out.write_all(&buf).await.is_err() {
                            return Ok(String::new());
                        }
                        let _ = out.flush().await;
                    }
                }
                if done {
                    break;
                }
                tokio::select! {
                    _ = closed.cancelled() => return Ok(String::new()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                build = load(ctx, id).await?;
                done = terminal(&build.status);
            }
            Ok(if follow {
                format!("[slipway] build {id} {}\n", build.status)
            } else {
                String::new()
            })
        }
        BuildCommand::Artifact { id, name } => {
            load(ctx, id).await?;
            let artifact = artifacts_of(ctx, id)
                .await?
                .into_iter()
                .find(|a| a.name == name)
                .ok_or_else(|| CommandError::new(format!("build {id} has no artifact `{name}`")))?;
            let runtime = ctx.state.runtime.clone();
            let sha = artifact.sha256.clone();
            let zip = tokio::task::spawn_blocking(move || runtime.artifact(&sha))
                .await
                .map_err(|e| CommandError::internal("reading an artifact", e))?
                .map_err(|e| {
                    tracing::error!(build = id, error = %e, "artifact refused");
                    CommandError::new(format!("{e}; tell the administrator"))
                })?;
            if out.write_all(&zip).await.is_err() {
                return Ok(String::new());
            }
            Ok(String::new())
        }
        BuildCommand::Stop { id } => {
            let b = load(ctx, id).await?;
            if !allowed(ctx, "build:stop", &b.repo) {
                return Err(CommandError::new(format!(
                    "you ({}) may not stop builds of `{}`: build:stop on repo:{} is needed",
                    ctx.identity.user, b.repo, b.repo
                )));
            }
            let stopped = ctx
                .state
                .runtime
                .stop_build(id)
                .await
                .map_err(|e| CommandError::internal("stopping a build", e))?;
            Ok(if stopped {
                format!("stopping build {id}\n")
            } else {
                format!("build {id} is not running ({})\n", b.status)
            })
        }
    }
}
