//! `deploy create|list|status|stop`: deployments of a build's artifact to a deployment
//! group's agents (deploy.yaml).
//!
//! Actions on `deploy:APPLICATION/GROUP`: `deploy:create`, `deploy:stop`, and
//! `deploy:read` to list and show. Creating also needs `git:pull` on the build's
//! repository.

use clap::Subcommand;
use slipway_actors::deploy::advance::{rollback_settings, settings_json, stop_deployment, Effects};
use slipway_actors::store::{
    AuditEntry, AuditKind, DeploymentRow, NewDeployment, NewEvent, StoreError,
};

use tokio::io::AsyncWriteExt;

use super::{json, CommandContext, CommandError, CommandResult, Out};
use crate::access::Resource;

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Deploy a build's artifact to a deployment group (deploy.yaml).
    Create {
        /// The application.
        application: String,
        /// The deployment group.
        group: String,
        /// The build whose artifact is the revision (it must have succeeded).
        #[arg(long)]
        build: i64,
        /// The artifact: `primary` (default) or a secondary artifact's identifier.
        #[arg(long, default_value = "primary")]
        artifact: String,
    },
    /// List recent deployments you may read.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a deployment: each host's lifecycle events.
    Status {
        /// The deployment id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Redraw as it changes, until the deployment ends.
        #[arg(long)]
        watch: bool,
    },
    /// Deploy again the revision of the group's last deployment that succeeded before
    /// ID (a new deployment naming ID as the one it rolls back).
    Rollback {
        /// The deployment to roll back.
        id: i64,
    },
    /// Stop a deployment: nothing new starts (hosts already changed stay changed); the
    /// group's auto-rollback on stop applies.
    Stop {
        /// The deployment id.
        id: i64,
    },
}

fn resource(app: &str, group: &str) -> Resource {
    Resource::other("deploy", &format!("{app}/{group}"))
}

fn may(ctx: &CommandContext<'_>, action: &str, resource: &Resource) -> bool {
    ctx.state
        .admin
        .get()
        .access
        .evaluate(&ctx.identity.user, action, resource)
        .allowed()
}

fn need(
    ctx: &CommandContext<'_>,
    action: &str,
    app: &str,
    group: &str,
) -> Result<(), CommandError> {
    if may(ctx, action, &resource(app, group)) {
        Ok(())
    } else {
        Err(CommandError::new(format!(
            "you ({}) may not do that: {action} on deploy:{app}/{group} is needed",
            ctx.identity.user
        )))
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::internal(what, e))?
        .map_err(|e| CommandError::internal(what, e))
}

async fn readable(ctx: &CommandContext<'_>, id: i64) -> Result<DeploymentRow, CommandError> {
    let store = ctx.state.store.clone();
    blocking("reading a deployment", move || store.deployment(id))
        .await?
        .filter(|d| may(ctx, "deploy:read", &resource(&d.application, &d.group_name)))
        .ok_or_else(|| {
            CommandError::new(format!(
                "deployment {id} not found (or you may not read its group)"
            ))
        })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn line(d: &DeploymentRow) -> String {
    format!(
        "#{:<5} {:<11} {}/{} build {} ({}) by {}{}\n",
        d.id,
        d.status,
        d.application,
        d.group_name,
        d.build_id
            .map(|b| b.to_string())
            .unwrap_or_else(|| "-".into()),
        short(&d.commit),
        d.creator,
        d.reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default()
    )
}

pub async fn run(ctx: &CommandContext<'_>, cmd: DeployCommand, out: Out<'_>) -> CommandResult {
    let store = ctx.state.store.clone();
    let user = ctx.identity.user.clone();
    match cmd {
        DeployCommand::Create {
            application,
            group,
            build,
            artifact,
        } => {
            need(ctx, "deploy:create", &application, &group)?;
            let config = ctx.state.admin.get().deploy.clone();
            let Some(settings) = config.group(&application, &group) else {
                return Err(CommandError::new(format!(
                    "deploy.yaml has no group `{group}` in application `{application}`; add it in the admin repository"
                )));
            };
            let settings = settings_json(settings);
            let s = store.clone();
            let (b, artifacts) = blocking("reading a build", move || {
                Ok((s.build(build)?, s.artifacts(build)?))
            })
            .await?;
            let b = b
                .filter(|b| may(ctx, "git:pull", &Resource::repo(&b.repo)))
                .ok_or_else(|| {
                    CommandError::new(format!(
                        "build {build} not found (or you may not read its repository)"
                    ))
                })?;
            if b.status != "SUCCEEDED" {
                return Err(CommandError::new(format!(
                    "build {build} ended {}; deploy a build that succeeded",
                    b.status
                )));
            }
            let Some(a) = artifacts.iter().find(|a| a.name == artifact) else {
                return Err(CommandError::new(format!(
                    "build {build} has no artifact `{artifact}`; give its buildspec an `artifacts` section"
                )));
            };
            let new = NewDeployment {
                application: application.clone(),
                group_name: group.clone(),
                build_id: Some(build),
                artifact: Some(artifact.clone()),
                bundle_sha256: a.sha256.clone(),
                commit: b.commit.clone(),
                creator: user.clone(),
                rollback_of: None,
                settings,
            };
            let (d, effects) = blocking("creating a deployment", move || {
                store.deploy_tx(|t| {
                    let d = t.insert_deployment(&new)?;
                    let mut entry = AuditEntry::new(AuditKind::Command, "ok");
                    entry.user = Some(user.clone());
                    entry.action = Some("deploy:create".into());
                    entry.detail = Some(
                        serde_json::json!({ "deployment": d.id, "application": d.application, "group": d.group_name, "build": build })
                            .to_string(),
                    );
                    t.audit(&entry)?;
                    let mut fx = Effects::default();
                    fx.emit(
                        t,
                        NewEvent {
                            source: "deploy".into(),
                            kind: "deployment-state-change".into(),
                            actor: Some(user.clone()),
                            repo: Some(b.repo.clone()),
                            refname: b.refname.clone(),
                            state: Some("CREATED".into()),
                            detail: serde_json::json!({ "deployment": d.id, "application": d.application, "group": d.group_name, "build_id": build, "commit": d.commit }),
                        },
                    )?;
                    Ok((d, fx))
                })
            })
            .await?;
            ctx.state.runtime.deployments_announce(effects);
            Ok(format!(
                "created deployment {} of build {build} ({}) to {application}/{group}\nwatch it:  ssh … deploy status {}\n",
                d.id,
                short(&d.commit),
                d.id
            ))
        }
        DeployCommand::List {
            limit,
            json: as_json,
        } => {
            let list = blocking("listing deployments", move || {
                store.deployments_recent(limit.clamp(1, 1000) * 4)
            })
            .await?;
            let visible: Vec<DeploymentRow> = list
                .into_iter()
                .filter(|d| may(ctx, "deploy:read", &resource(&d.application, &d.group_name)))
                .take(limit)
                .collect();
            if as_json {
                return json(&visible);
            }
            Ok(visible.iter().map(line).collect())
        }
        DeployCommand::Status {
            id,
            json: as_json,
            watch,
        } => {
            if !watch {
                return status(ctx, id, as_json).await.map(|(text, _)| text);
            }
            // Redraw on every change until the deployment ends (or the client leaves).
            let closed = ctx.input.closed_token();
            let mut last = String::new();
            loop {
                let (text, active) = status(ctx, id, as_json).await?;
                if text != last {
                    let frame = if as_json {
                        serde_json::to_string(
                            &serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
                        )
                        .unwrap_or_default()
                            + "\n"
                    } else {
                        format!("\x1b[H\x1b[2J{text}")
                    };
                    if out.write_all(frame.as_bytes()).await.is_err() {
                        return Ok(String::new());
                    }
                    let _ = out.flush().await;
                    last = text;
                }
                if !active {
                    return Ok(String::new());
                }
                tokio::select! {
                    _ = closed.cancelled() => return Ok(String::new()),
                    _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
                }
            }
        }
        DeployCommand::Rollback { id } => {
            let d = readable(ctx, id).await?;
            need(ctx, "deploy:create", &d.application, &d.group_name)?;
            let (message, effects) = blocking("rolling back a deployment", move || {
                store.deploy_tx(|t| {
                    let mut fx = Effects::default();
                    let Some(good) = t.last_success(&d.application, &d.group_name, Some(id))? else {
                        return Ok((
                            Err(format!(
                                "no deployment of {}/{} before {id} succeeded, so there is nothing to roll back to",
                                d.application, d.group_name
                            )),
                            fx,
                        ));
                    };
                    let new = t.insert_deployment(&NewDeployment {
                        application: d.application.clone(),
                        group_name: d.group_name.clone(),
                        build_id: good.build_id,
                        artifact: good.artifact.clone(),
                        bundle_sha256: good.bundle_sha256.clone(),
                        commit: good.commit.clone(),
                        creator: user.clone(),
                        rollback_of: Some(id),
                        settings: rollback_settings(&d.settings, &good.settings),
                    })?;
                    if d.rollback_id.is_none() && !d.active() {
                        let mut old = d.clone();
                        old.rollback_id = Some(new.id);
                        t.update_deployment(&old)?;
                    }
                    let mut entry = AuditEntry::new(AuditKind::Command, "ok");
                    entry.user = Some(user.clone());
                    entry.action = Some("deploy:rollback".into());
                    entry.detail = Some(serde_json::json!({ "deployment": id, "rollback": new.id }).to_string());
                    t.audit(&entry)?;
                    fx.emit(
                        t,
                        NewEvent {
                            source: "deploy".into(),
                            kind: "deployment-state-change".into(),
                            actor: Some(user.clone()),
                            repo: None,
                            refname: None,
                            state: Some("CREATED".into()),
                            detail: serde_json::json!({ "deployment": new.id, "application": new.application, "group": new.group_name, "rollback_of": id, "commit": new.commit }),
                        },
                    )?;
                    Ok((
                        Ok(format!(
                            "created deployment {} rolling {id} back to the revision of deployment {} (commit {})",
                            new.id,
                            good.id,
                            short(&good.commit)
                        )),
                        fx,
                    ))
                })
            })
            .await?;
            ctx.state.runtime.deployments_announce(effects);
            message.map(|m| m + "\n").map_err(CommandError::new)
        }
        DeployCommand::Stop { id } => {
            let d = readable(ctx, id).await?;
            need(ctx, "deploy:stop", &d.application, &d.group_name)?;
            let (message, effects) = blocking("stopping a deployment", move || {
                store.deploy_tx(|t| {
                    let mut fx = Effects::default();
                    let Some(mut d) = t.deployment(id)?.filter(|d| d.active()) else {
                        return Ok((
                            format!("deployment {id} is not running; nothing to stop"),
                            fx,
                        ));
                    };
                    let now = slipway_actors::store::unix_now();
                    let why = stop_deployment(
                        t,
                        &mut fx,
                        &mut d,
                        format!("stopped by {user}"),
                        "stop",
                        now,
                    )?;
                    let mut entry = AuditEntry::new(AuditKind::Command, "ok");
                    entry.user = Some(user.clone());
                    entry.action = Some("deploy:stop".into());
                    entry.detail = Some(serde_json::json!({ "deployment": id }).to_string());
                    t.audit(&entry)?;
                    Ok((format!("deployment {id}: {why}"), fx))
                })
            })
            .await?;
            ctx.state.runtime.deployments_announce(effects);
            Ok(message + "\n")
        }
    }
}

/// `deploy status`'s text (or JSON), and whether the deployment is still active.
/// The table's lifecycle columns: a short name and the event.
const COLUMNS: [(&str, &str); 7] = [
    ("AppStop", "ApplicationStop"),
    ("Download", "DownloadBundle"),
    ("BeforeInst", "BeforeInstall"),
    ("Install", "Install"),
    ("AfterInst", "AfterInstall"),
    ("AppStart", "ApplicationStart"),
    ("Validate", "ValidateService"),
];

async fn status(
    ctx: &CommandContext<'_>,
    id: i64,
    as_json: bool,
) -> Result<(String, bool), CommandError> {
    let store = ctx.state.store.clone();
    let d = readable(ctx, id).await?;
    let s = store.clone();
    let (hosts, events) = blocking("reading a deployment", move || {
        s.deploy_tx(|t| Ok::<_, StoreError>((t.hosts(id)?, t.events(id)?)))
    })
    .await?;
    if as_json {
        return Ok((
            json(&serde_json::json!({
                "deployment": d,
                "hosts": hosts,
                "events": events,
            }))?,
            d.active(),
        ));
    }
    let mut text = line(&d);
    // Every cell is followed by at least one space, whatever its length.
    let host_width = hosts
        .iter()
        .map(|h| h.agent.len())
        .max()
        .unwrap_or(0)
        .max(4);
    text.push_str(&format!("\n{:<host_width$} {:<11}", "host", "status"));
    for (short, _) in COLUMNS {
        text.push_str(&format!(" {short:<11}"));
    }
    text.push('\n');
    for h in &hosts {
        text.push_str(&format!("{:<host_width$} {:<11}", h.agent, h.status));
        for (_, e) in COLUMNS {
            let status = events
                .iter()
                .find(|x| x.agent == h.agent && x.event == e)
                .map(|x| x.status.as_str())
                .unwrap_or("-");
            text.push_str(&format!(" {status:<11}"));
        }
        text.push('\n');
    }
    for e in events.iter().filter(|e| e.status == "FAILED") {
        text.push_str(&format!(
            "\n{} {} failed (code {}{}): {}\n",
            e.agent,
            e.event,
            e.error_code.unwrap_or(0),
            e.script
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| format!(", {s}"))
                .unwrap_or_default(),
            e.message.as_deref().unwrap_or("")
        ));
        if let Some(log) = e.log.as_deref().filter(|l| !l.is_empty()) {
            for l in log.lines() {
                text.push_str(&format!("  {l}\n"));
            }
        }
    }
    Ok((text, d.active()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_status_table_shows_every_lifecycle_event_in_order() {
        let events: Vec<&str> = super::COLUMNS.iter().map(|(_, e)| *e).collect();
        assert_eq!(events, slipway_actors::deploy::advance::IN_PLACE);
    }
}
