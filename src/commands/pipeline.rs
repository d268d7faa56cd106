//! `pipeline list|status|executions|show|start|approve|reject|transition|stop|retry|rollback`.
//!
//! Reading a pipeline needs `git:pull` on its repository (others are told it does not
//! exist). Changing one needs an action on `pipeline:NAME`: `pipeline:start`,
//! `pipeline:approve` (approve and reject, and the user must be one of the action's
//! approvers), `pipeline:stop`,
//! `pipeline:retry`, `pipeline:rollback`, `pipeline:transition`.

use std::time::Duration;

use clap::Subcommand;
use slipway_actors::pipeline::control::{self, ControlError};
use slipway_actors::pipeline::view::{pipeline_view, PipelineView};
use slipway_actors::store::{ExecutionRow, PipelineRow};
use tokio::io::AsyncWriteExt;

use super::{json, CommandContext, CommandError, CommandResult, Out};
use crate::access::Resource;

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// List the pipelines you may read, with their newest execution.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Draw a pipeline's stages left to right: the execution in each, its actions'
    /// states and durations; --watch redraws as it changes.
    Status {
        /// The pipeline.
        pipeline: String,
        /// Keep redrawing until you disconnect (Ctrl-C).
        #[arg(long)]
        watch: bool,
        /// Print JSON (with --watch: one object per change, a line each).
        #[arg(long)]
        json: bool,
    },
    /// List a pipeline's executions, newest first.
    Executions {
        /// The pipeline.
        pipeline: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one execution: every stage and action, with reasons.
    Show {
        /// The execution id.
        execution: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start an execution by hand at a branch or tag (default: the default branch);
    /// triggers do not apply.
    Start {
        /// The pipeline.
        pipeline: String,
        /// A branch or tag (or a full ref).
        #[arg(long = "ref")]
        rev: Option<String>,
    },
    /// Approve an approval action that waits for you.
    Approve(Decision),
    /// Reject an approval action that waits for you (the action fails).
    Reject(Decision),
    /// Disable or enable the transition into a stage.
    #[command(subcommand)]
    Transition(TransitionCommand),
    /// Stop an execution: running actions finish and nothing new starts; with
    /// --abandon they are abandoned at once.
    Stop {
        /// The execution id.
        execution: i64,
        /// Abandon running actions (their builds are stopped).
        #[arg(long)]
        abandon: bool,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run the stage an execution failed in again: its failed actions, or all.
    Retry {
        /// The execution id.
        execution: i64,
        /// The stage it failed in.
        stage: String,
        /// Run every action of the stage again, not only the failed ones.
        #[arg(long)]
        all_actions: bool,
    },
    /// Run a stage again with the source, artifacts and variables of an earlier
    /// execution that succeeded in it (a new execution).
    Rollback {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
        /// The execution to roll back to (default: the newest that succeeded there).
        #[arg(long)]
        to: Option<i64>,
    },
}

#[derive(clap::Args)]
pub struct Decision {
    /// The pipeline.
    pipeline: String,
    /// The execution id.
    execution: i64,
    /// The stage.
    stage: String,
    /// The approval action.
    action: String,
    /// Why (recorded, and shown to others).
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Subcommand)]
pub enum TransitionCommand {
    /// Stop executions from entering STAGE (they wait in front of it).
    Disable {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
        /// Why (required; shown in `pipeline status`).
        #[arg(long)]
        reason: String,
    },
    /// Let executions enter STAGE again.
    Enable {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
    },
}

fn may(ctx: &CommandContext<'_>, action: &str, resource: &Resource) -> bool {
    ctx.state
        .admin
        .get()
        .access
        .evaluate(&ctx.identity.user, action, resource)
        .allowed()
}

fn not_found(name: &str) -> CommandError {
    CommandError::new(format!(
        "pipeline `{name}` not found (or you may not read its repository); `pipeline list` shows yours"
    ))
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::internal(what, e))
}

/// The pipeline `name` if the caller may read it.
async fn readable(ctx: &CommandContext<'_>, name: &str) -> Result<PipelineRow, CommandError> {
    let store = ctx.state.store.clone();
    let all = blocking("reading pipelines", move || store.pipelines())
        .await?
        .map_err(|e| CommandError::internal("reading pipelines", e))?;
    all.into_iter()
        .find(|p| p.name == name)
        .filter(|p| may(ctx, "git:pull", &Resource::repo(&p.repo)))
        .ok_or_else(|| not_found(name))
}

/// The pipeline `name`, if the caller may read it and may do `action` on it.
async fn allowed(
    ctx: &CommandContext<'_>,
    name: &str,
    action: &str,
) -> Result<PipelineRow, CommandError> {
    let p = readable(ctx, name).await?;
    if !may(ctx, action, &Resource::other("pipeline", name)) {
        return Err(CommandError::new(format!(
            "you ({}) may not do that: {action} on pipeline:{name} is needed (ask an administrator)",
            ctx.identity.user
        )));
    }
    Ok(p)
}

async fn execution(ctx: &CommandContext<'_>, id: i64) -> Result<ExecutionRow, CommandError> {
    let store = ctx.state.store.clone();
    let e = blocking("reading an execution", move || store.execution(id))
        .await?
        .map_err(|e| CommandError::internal("reading an execution", e))?;
    e.filter(|e| may(ctx, "git:pull", &Resource::repo(&e.repo)))
        .ok_or_else(|| {
            CommandError::new(format!(
                "execution {id} not found (or you may not read its repository)"
            ))
        })
}

fn control_error(e: ControlError) -> CommandError {
    match e {
        ControlError::NotFound(m) | ControlError::Refused(m) => CommandError::new(m),
        ControlError::Store(e) => CommandError::internal("changing a pipeline", e),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn seconds(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The stages left to right, one column each.
fn draw(v: &PipelineView) -> String {
    const WIDTH: usize = 30;
    let mut columns: Vec<Vec<String>> = Vec::new();
    for s in &v.stages {
        let mut col = vec![format!("[{}]", s.name), "-".repeat(WIDTH - 2)];
        match (&s.execution, &s.status) {
            (Some(e), Some(status)) => {
                col.push(format!("#{} {} {}", e.id, short(&e.commit), status));
                if s.attempt.unwrap_or(1) > 1 {
                    col.push(format!("attempt {}", s.attempt.unwrap_or(1)));
                }
                for a in &s.actions {
                    let d = a.duration_seconds.map(seconds).unwrap_or_default();
                    col.push(format!(" {} {} {d}", a.name, a.status));
                }
            }
            _ => col.push("(not run yet)".into()),
        }
        if !s.waiting.is_empty() {
            let ids: Vec<String> = s.waiting.iter().map(|i| format!("#{i}")).collect();
            col.insert(2, format!("waiting: {}", ids.join(" ")));
        }
        columns.push(col);
    }
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0);
    let mut text = format!(
        "pipeline {} ({}, {} mode) — newest execution #{} {}\n\n",
        v.pipeline, v.repo, v.mode, v.latest.id, v.latest.status
    );
    for r in 0..rows {
        let mut line = String::new();
        for (i, col) in columns.iter().enumerate() {
            if i > 0 {
                let gate = if r == 0 {
                    if v.stages[i].transition_disabled.is_some() {
                        " =X=> "
                    } else {
                        " ===> "
                    }
                } else {
                    "      "
                };
                line.push_str(gate);
            }
            let cell = col.get(r).map(String::as_str).unwrap_or("");
            let cell: String = cell.chars().take(WIDTH).collect();
            line.push_str(&format!("{cell:<WIDTH$}"));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    for t in &v.disabled_transitions {
        text.push_str(&format!(
            "\ntransition into {} disabled by {}: {}",
            t.stage, t.by, t.reason
        ));
    }
    for s in &v.stages {
        for a in &s.actions {
            if let (Some(r), true) = (&a.reason, a.status != "SUCCEEDED") {
                text.push_str(&format!("\n{}/{}: {r}", s.name, a.name));
            }
            if let (Some(m), "IN_PROGRESS") = (&a.message, a.status.as_str()) {
                text.push_str(&format!("\n{}/{} waits for approval: {m}", s.name, a.name));
            }
        }
    }
    if let Some(r) = &v.latest.reason {
        text.push_str(&format!("\nexecution #{}: {r}", v.latest.id));
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

async fn view(ctx: &CommandContext<'_>, p: &PipelineRow) -> Result<PipelineView, CommandError> {
    let (store, specs) = (ctx.state.store.clone(), ctx.state.runtime.pipeline_specs());
    let (name, repo) = (p.name.clone(), p.repo.clone());
    blocking("reading a pipeline", move || {
        pipeline_view(&store, &specs, &name, &repo)
    })
    .await?
    .map_err(|e| CommandError::internal("reading a pipeline", e))?
    .ok_or_else(|| not_found(&p.name))
}

pub async fn run(ctx: &CommandContext<'_>, cmd: PipelineCommand, out: Out<'_>) -> CommandResult {
    let user = ctx.identity.user.clone();
    let store = ctx.state.store.clone();
    let runtime = ctx.state.runtime.clone();
    let specs = runtime.pipeline_specs();
    match cmd {
        PipelineCommand::List { json: as_json } => {
            let s = store.clone();
            let all = blocking("reading pipelines", move || s.pipelines())
                .await?
                .map_err(|e| CommandError::internal("reading pipelines", e))?;
            let mut rows = Vec::new();
            for p in all
                .into_iter()
                .filter(|p| may(ctx, "git:pull", &Resource::repo(&p.repo)))
            {
                let (s, name) = (store.clone(), p.name.clone());
                let latest = blocking("reading executions", move || s.executions(&name, 1))
                    .await?
                    .map_err(|e| CommandError::internal("reading executions", e))?
                    .into_iter()
                    .next();
                rows.push(serde_json::json!({
                    "name": p.name,
                    "repo": p.repo,
                    "mode": latest.as_ref().map(|e| e.mode.clone()),
                    "latest": latest,
                }));
            }
            if as_json {
                return json(&rows);
            }
            if rows.is_empty() {
                return Ok(
                    "no pipelines yet: push a pipeline.yml (see docs/pipelines.md)\n".into(),
                );
            }
            Ok(rows
                .iter()
                .map(|r| {
                    let l = &r["latest"];
                    format!(
                        "{:<20} {:<20} #{} {} {}\n",
                        r["name"].as_str().unwrap_or(""),
                        r["repo"].as_str().unwrap_or(""),
                        l["id"],
                        l["status"].as_str().unwrap_or("-"),
                        short(l["commit"].as_str().unwrap_or(""))
                    )
                })
                .collect())
        }
        PipelineCommand::Status {
            pipeline,
            watch,
            json: as_json,
        } => {
            let p = readable(ctx, &pipeline).await?;
            let render = |v: &PipelineView| -> Result<String, CommandError> {
                if as_json {
                    if watch {
                        serde_json::to_string(v)
                            .map(|s| s + "\n")
                            .map_err(|e| CommandError::internal("encoding JSON", e))
                    } else {
                        json(v)
                    }
                } else {
                    Ok(draw(v))
                }
            };
            if !watch {
                return render(&view(ctx, &p).await?);
            }
            let closed = ctx.input.closed_token();
            let mut follow = runtime.follow();
            let mut last = String::new();
            loop {
                let text = render(&view(ctx, &p).await?)?;
                if text != last {
                    let frame = if as_json {
                        text.clone()
                    } else {
                        // Clear the screen and draw from the top.
                        format!("\x1b[H\x1b[2J{text}")
                    };
                    if out.write_all(frame.as_bytes()).await.is_err() {
                        return Ok(String::new());
                    }
                    let _ = out.flush().await;
                    last = text;
                }
                tokio::select! {
                    _ = closed.cancelled() => return Ok(String::new()),
                    _ = follow.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        PipelineCommand::Executions {
            pipeline,
            limit,
            json: as_json,
        } => {
            let p = readable(ctx, &pipeline).await?;
            let list = blocking("reading executions", move || {
                store.executions(&p.name, limit.clamp(1, 1000))
            })
            .await?
            .map_err(|e| CommandError::internal("reading executions", e))?;
            if as_json {
                return json(&list);
            }
            Ok(list
                .iter()
                .map(|e| {
                    format!(
                        "#{:<5} {:<11} {:<8} {} {}{}\n",
                        e.id,
                        e.status,
                        e.kind,
                        short(&e.commit),
                        e.refname.as_deref().unwrap_or("-"),
                        e.reason
                            .as_deref()
                            .map(|r| format!("  ({r})"))
                            .unwrap_or_default()
                    )
                })
                .collect())
        }
        PipelineCommand::Show {
            execution: id,
            json: as_json,
        } => {
            let e = execution(ctx, id).await?;
            let s = store.clone();
            let (stages, actions) = blocking("reading an execution", move || {
                Ok::<_, slipway_actors::StoreError>((
                    s.execution_stages(id)?,
                    s.execution_actions(id)?,
                ))
            })
            .await?
            .map_err(|e| CommandError::internal("reading an execution", e))?;
            if as_json {
                return json(&serde_json::json!({
                    "execution": e,
                    "stages": stages,
                    "actions": actions,
                }));
            }
            let mut text = format!(
                "execution #{} of {} ({}, {}): {} at {} ({})\ntrigger: {} by {}\n",
                e.id,
                e.pipeline,
                e.kind,
                e.mode,
                e.status,
                short(&e.commit),
                e.refname.as_deref().unwrap_or("-"),
                e.trigger,
                e.initiator
            );
            if let Some(t) = e.rollback_of {
                text.push_str(&format!("rolls back to execution #{t}\n"));
            }
            if let Some(r) = &e.reason {
                text.push_str(&format!("reason: {r}\n"));
            }
            for s in &stages {
                text.push_str(&format!(
                    "stage {} {} (attempt {}){}\n",
                    s.name,
                    s.status,
                    s.attempt,
                    s.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
                for a in actions.iter().filter(|a| a.stage == s.idx) {
                    let d = a
                        .started
                        .map(|st| seconds(a.ended.unwrap_or(st) - st))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "  {} ({}, run-order {}) {} {d}{}{}\n",
                        a.name,
                        a.kind,
                        a.run_order,
                        a.status,
                        a.build_id
                            .map(|b| format!(" build {b}"))
                            .unwrap_or_default(),
                        a.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ));
                }
            }
            Ok(text)
        }
        PipelineCommand::Start { pipeline, rev } => start(ctx, &pipeline, rev).await,
        PipelineCommand::Approve(d) => decide(ctx, d, true).await,
        PipelineCommand::Reject(d) => decide(ctx, d, false).await,
        PipelineCommand::Transition(t) => {
            let (pipeline, stage, reason) = match t {
                TransitionCommand::Disable {
                    pipeline,
                    stage,
                    reason,
                } => (pipeline, stage, Some(reason)),
                TransitionCommand::Enable { pipeline, stage } => (pipeline, stage, None),
            };
            if reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(CommandError::new(
                    "--reason must say why the transition is disabled",
                ));
            }
            allowed(ctx, &pipeline, "pipeline:transition").await?;
            let result = blocking("changing a transition", move || {
                control::transition(&store, &specs, &pipeline, &stage, reason.as_deref(), &user)
            })
            .await?;
            finish(ctx, result)
        }
        PipelineCommand::Stop {
            execution: id,
            abandon,
            reason,
        } => {
            let e = execution(ctx, id).await?;
            allowed(ctx, &e.pipeline, "pipeline:stop").await?;
            let result = blocking("stopping an execution", move || {
                control::stop(&store, id, abandon, &user, reason.as_deref())
            })
            .await?;
            finish(ctx, result)
        }
        PipelineCommand::Retry {
            execution: id,
            stage,
            all_actions,
        } => {
            let e = execution(ctx, id).await?;
            allowed(ctx, &e.pipeline, "pipeline:retry").await?;
            let result = blocking("retrying a stage", move || {
                control::retry(&store, &specs, id, &stage, all_actions, &user)
            })
            .await?;
            finish(ctx, result)
        }
        PipelineCommand::Rollback {
            pipeline,
            stage,
            to,
        } => {
            allowed(ctx, &pipeline, "pipeline:rollback").await?;
            let result = blocking("rolling back a stage", move || {
                control::rollback(&store, &specs, &pipeline, &stage, to, &user)
            })
            .await?;
            finish(ctx, result)
        }
    }
}

fn finish(
    ctx: &CommandContext<'_>,
    result: Result<control::Outcome, ControlError>,
) -> CommandResult {
    ctx.state
        .runtime
        .pipeline_changed(result)
        .map(|m| m + "\n")
        .map_err(control_error)
}

async fn decide(ctx: &CommandContext<'_>, d: Decision, approve: bool) -> CommandResult {
    allowed(ctx, &d.pipeline, "pipeline:approve").await?;
    let store = ctx.state.store.clone();
    let specs = ctx.state.runtime.pipeline_specs();
    let people = ctx.state.admin.get().people();
    let user = ctx.identity.user.clone();
    let result = blocking("recording a decision", move || {
        control::decide(
            &store,
            &specs,
            &people,
            &d.pipeline,
            d.execution,
            &d.stage,
            &d.action,
            approve,
            &user,
            d.comment.as_deref(),
        )
    })
    .await?;
    finish(ctx, result)
}

async fn start(ctx: &CommandContext<'_>, pipeline: &str, rev: Option<String>) -> CommandResult {
    let p = allowed(ctx, pipeline, "pipeline:start").await?;
    let repo = crate::git::RepoName::parse(&p.repo)
        .map_err(|e| CommandError::internal("reading a pipeline's repository", e))?;
    let repos = ctx.state.repos.clone();
    let r = repo.clone();
    let resolved = blocking("resolving a ref", move || {
        let refname = match rev {
            None => repos.head_ref(&r)?,
            // An existing ref, exactly: no revision expressions (`main~5`).
            Some(rev) if rev.starts_with("refs/heads/") || rev.starts_with("refs/tags/") => {
                if !repos.ref_exists(&r, &rev)? {
                    return Ok(Err(format!("`{rev}` does not exist in `{r}`")));
                }
                rev
            }
            Some(rev) if rev.starts_with("refs/") => {
                return Ok(Err(format!(
                    "`{rev}`: give a branch or a tag (refs/heads/… or refs/tags/…)"
                )))
            }
            Some(rev) => {
                let branch = format!("refs/heads/{rev}");
                let tag = format!("refs/tags/{rev}");
                if repos.ref_exists(&r, &branch)? {
                    branch
                } else if repos.ref_exists(&r, &tag)? {
                    tag
                } else {
                    return Ok(Err(format!(
                        "`{rev}` is neither a branch nor a tag of `{r}`"
                    )));
                }
            }
        };
        Ok::<_, crate::git::RepoStoreError>(Ok((repos.resolve_commit(&r, &refname)?, refname)))
    })
    .await?
    .map_err(|e| CommandError::internal("resolving a ref", e))?
    .map_err(CommandError::new)?;
    let (commit, refname) = match resolved {
        (Some(c), refname) => (c, refname),
        (None, refname) => {
            return Err(CommandError::new(format!(
                "`{refname}` names no commit in `{repo}`"
            )))
        }
    };
    let path = ctx.state.repos.path(&repo);
    let (repo_name, r2, c2) = (p.repo.clone(), refname.clone(), commit.clone());
    let found = blocking("reading pipeline.yml", move || {
        slipway_actors::pipeline::source::for_start(&path, &repo_name, &r2, &c2)
    })
    .await?
    .map_err(|e| CommandError::internal("reading pipeline.yml", e))?;
    let (spec, source) = match found {
        None => {
            return Err(CommandError::new(format!(
                "there is no pipeline.yml at {refname} ({})",
                short(&commit)
            )))
        }
        Some(Err(problem)) => {
            return Err(CommandError::new(format!(
                "the pipeline.yml at {refname} does not validate: {problem}"
            )))
        }
        Some(Ok(found)) => found,
    };
    if spec.name != pipeline {
        return Err(CommandError::new(format!(
            "the pipeline.yml at {refname} defines pipeline `{}`, not `{pipeline}`",
            spec.name
        )));
    }
    let (store, user, repo_name) = (
        ctx.state.store.clone(),
        ctx.identity.user.clone(),
        p.repo.clone(),
    );
    let result = blocking("starting an execution", move || {
        control::start(&store, &repo_name, &spec, &source, &user)
    })
    .await?;
    finish(ctx, result)
}
