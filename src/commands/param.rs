//! `param put|get|list|delete`: the parameter store (like SSM Parameter Store).
//!
//! `put` reads the value from stdin; `--secure` seals it with the master key, so what
//! lies in the database is not the plaintext. Reading needs `param:read`, writing
//! `param:write`, on `param:NAME`.

use clap::Subcommand;
use serde::Serialize;
use slipway_actors::config::rules::check_param_name;
use slipway_actors::{AuditEntry, AuditKind};

use super::{json, CommandContext, CommandError, CommandResult};
use crate::access::Resource;

/// The largest value accepted.
const MAX_VALUE: usize = 64 << 10;

#[derive(Subcommand)]
pub enum ParamCommand {
    /// Store a value read from stdin: `echo -n s3cret | ssh … param put /team/key --secure`.
    Put {
        /// Its name, e.g. /hooks/secret.
        name: String,
        /// Seal the value with the server's master key.
        #[arg(long)]
        secure: bool,
    },
    /// Print a value.
    Get {
        /// Its name.
        name: String,
    },
    /// List the parameters you may read (names only).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a parameter.
    Delete {
        /// Its name.
        name: String,
    },
}

fn check(ctx: &CommandContext<'_>, action: &str, name: &str) -> Result<(), CommandError> {
    check_param_name(name).map_err(CommandError::new)?;
    let allowed = ctx
        .state
        .admin
        .get()
        .access
        .evaluate(&ctx.identity.user, action, &Resource::other("param", name))
        .allowed();
    if allowed {
        Ok(())
    } else {
        Err(CommandError::new(format!(
            "you ({}) may not {} `{name}`: {action} on param:{name} is needed",
            ctx.identity.user,
            if action == "param:read" {
                "read"
            } else {
                "change"
            }
        )))
    }
}

async fn audit(ctx: &CommandContext<'_>, action: &str, name: &str) {
    let mut entry = AuditEntry::new(AuditKind::Command, "ok");
    entry.user = Some(ctx.identity.user.clone());
    entry.key_fp = Some(ctx.identity.fingerprint.clone());
    entry.peer = ctx.peer.map(|p| p.to_string());
    entry.action = Some(action.to_string());
    entry.detail = Some(name.to_string());
    ctx.state.audit(entry).await;
}

#[derive(Serialize)]
struct Listed {
    name: String,
    secure: bool,
    updated: String,
    updated_by: Option<String>,
}

pub async fn run(ctx: &CommandContext<'_>, cmd: ParamCommand) -> CommandResult {
    let store = ctx.state.store.clone();
    let internal =
        |e: &dyn std::fmt::Display| CommandError::internal("using the parameter store", e);
    match cmd {
        ParamCommand::Put { name, secure } => {
            check(ctx, "param:write", &name)?;
            let mut value = ctx.input.read_all(MAX_VALUE).await?;
            if value.last() == Some(&b'\n') {
                value.pop();
            }
            let stored = if secure {
                ctx.state.master.seal(&value)
            } else {
                value
            };
            let (n, by) = (name.clone(), ctx.identity.user.clone());
            tokio::task::spawn_blocking(move || store.param_put(&n, secure, &stored, &by))
                .await
                .map_err(|e| internal(&e))?
                .map_err(|e| internal(&e))?;
            audit(ctx, "param:write", &name).await;
            Ok(format!(
                "stored {name}{}\n",
                if secure { " (secure)" } else { "" }
            ))
        }
        ParamCommand::Get { name } => {
            check(ctx, "param:read", &name)?;
            let n = name.clone();
            let row = tokio::task::spawn_blocking(move || store.param_get(&n))
                .await
                .map_err(|e| internal(&e))?
                .map_err(|e| internal(&e))?
                .ok_or_else(|| CommandError::new(format!("no parameter `{name}`")))?;
            let value = if row.secure {
                ctx.state
                    .master
                    .open(&row.value)
                    .map_err(|e| internal(&e))?
            } else {
                row.value
            };
            audit(ctx, "param:read", &name).await;
            let mut text = String::from_utf8_lossy(&value).into_owned();
            text.push('\n');
            Ok(text)
        }
        ParamCommand::List { json: as_json } => {
            let rows = tokio::task::spawn_blocking(move || store.param_list())
                .await
                .map_err(|e| internal(&e))?
                .map_err(|e| internal(&e))?;
            let config = ctx.state.admin.get();
            let listed: Vec<Listed> = rows
                .into_iter()
                .filter(|r| {
                    config
                        .access
                        .evaluate(
                            &ctx.identity.user,
                            "param:read",
                            &Resource::other("param", &r.name),
                        )
                        .allowed()
                })
                .map(|r| Listed {
                    name: r.name,
                    secure: r.secure,
                    updated: r.updated,
                    updated_by: r.updated_by,
                })
                .collect();
            if as_json {
                return json(&listed);
            }
            Ok(listed
                .iter()
                .map(|p| format!("{}{}\n", p.name, if p.secure { "  (secure)" } else { "" }))
                .collect())
        }
        ParamCommand::Delete { name } => {
            check(ctx, "param:write", &name)?;
            let n = name.clone();
            let existed = tokio::task::spawn_blocking(move || store.param_delete(&n))
                .await
                .map_err(|e| internal(&e))?
                .map_err(|e| internal(&e))?;
            if !existed {
                return Err(CommandError::new(format!("no parameter `{name}`")));
            }
            audit(ctx, "param:write", &name).await;
            Ok(format!("deleted {name}\n"))
        }
    }
}
