//! `repo create|list|info|delete`.

use clap::Subcommand;
use serde::Serialize;
use slipway_actors::{AuditEntry, AuditKind};

use super::{json, CommandContext, CommandError, CommandResult};
use crate::access::Resource;
use crate::git::{RepoName, RepoStoreError};

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create an empty repository (needs repo:create).
    Create {
        /// Repository name, e.g. `app` or `team/app`.
        name: String,
    },
    /// List the repositories you may read.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a repository's default branch, tip and size.
    Info {
        /// Repository name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a repository and everything in it (needs repo:delete).
    Delete {
        /// Repository name.
        name: String,
    },
}

pub async fn run(ctx: &CommandContext<'_>, cmd: RepoCommand) -> CommandResult {
    match cmd {
        RepoCommand::Create { name } => create(ctx, &name).await,
        RepoCommand::List { json: as_json } => list(ctx, as_json).await,
        RepoCommand::Info {
            name,
            json: as_json,
        } => info(ctx, &name, as_json).await,
        RepoCommand::Delete { name } => delete(ctx, &name).await,
    }
}

fn parse_name(name: &str) -> Result<RepoName, CommandError> {
    RepoName::from_client_path(name).map_err(|e| CommandError::new(e.to_string()))
}

fn not_found(name: &RepoName) -> CommandError {
    CommandError::new(format!(
        "repository `{name}` not found (or you may not read it)"
    ))
}

fn allowed(ctx: &CommandContext<'_>, action: &str, name: &RepoName) -> bool {
    ctx.state
        .admin
        .get()
        .access
        .evaluate(&ctx.identity.user, action, &Resource::repo(name.as_str()))
        .allowed()
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, RepoStoreError> + Send + 'static,
) -> Result<Result<T, RepoStoreError>, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::internal(what, e))
}

async fn audit(ctx: &CommandContext<'_>, name: &RepoName, action: &str) {
    let mut entry = AuditEntry::new(AuditKind::Command, "ok");
    entry.user = Some(ctx.identity.user.clone());
    entry.key_fp = Some(ctx.identity.fingerprint.clone());
    entry.peer = ctx.peer.map(|p| p.to_string());
    entry.repo = Some(name.to_string());
    entry.action = Some(action.to_string());
    ctx.state.audit(entry).await;
}

async fn create(ctx: &CommandContext<'_>, name: &str) -> CommandResult {
    let name = parse_name(name)?;
    if !allowed(ctx, "repo:create", &name) {
        return Err(CommandError::new(format!(
            "you ({}) may not create `{name}`: no statement allows repo:create on repo:{name}",
            ctx.identity.user
        )));
    }
    let repos = ctx.state.repos.clone();
    let n = name.clone();
    match blocking("creating a repository", move || repos.create(&n)).await? {
        Ok(_) => {}
        Err(RepoStoreError::Exists(_)) if allowed(ctx, "git:pull", &name) => {
            return Err(CommandError::new(format!(
                "repository `{name}` already exists"
            )))
        }
        // Someone else's private repository: do not reveal it, but do not clobber it.
        Err(RepoStoreError::Exists(_)) => {
            return Err(CommandError::new(format!(
                "cannot create `{name}`: the name is taken"
            )))
        }
        Err(e) => return Err(CommandError::internal("creating a repository", e)),
    }
    audit(ctx, &name, "repo:create").await;
    Ok(format!(
        "created {name}\nclone it:  git clone {}\n",
        clone_url(ctx, &name)
    ))
}

/// The URL users clone from.
pub fn clone_url(ctx: &CommandContext<'_>, name: &RepoName) -> String {
    let ssh = &ctx.state.settings.ssh;
    let host = ssh
        .public_host
        .clone()
        .unwrap_or_else(|| ssh.listen.ip().to_string());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("ssh://git@{host}:{}/{name}.git", ssh.listen.port())
}

#[derive(Serialize)]
struct ListedRepo {
    name: String,
    url: String,
}

async fn list(ctx: &CommandContext<'_>, as_json: bool) -> CommandResult {
    let repos = ctx.state.repos.clone();
    let names = blocking("listing repositories", move || repos.list())
        .await?
        .map_err(|e| CommandError::internal("listing repositories", e))?;
    let visible: Vec<ListedRepo> = names
        .into_iter()
        .filter(|n| allowed(ctx, "git:pull", n))
        .map(|n| ListedRepo {
            url: clone_url(ctx, &n),
            name: n.to_string(),
        })
        .collect();
    if as_json {
        return json(&visible);
    }
    Ok(visible.iter().map(|r| format!("{}\n", r.name)).collect())
}

async fn info(ctx: &CommandContext<'_>, name: &str, as_json: bool) -> CommandResult {
    let name = parse_name(name)?;
    if !allowed(ctx, "git:pull", &name) {
        return Err(not_found(&name));
    }
    let repos = ctx.state.repos.clone();
    let n = name.clone();
    let info = match blocking("reading a repository", move || repos.info(&n)).await? {
        Ok(info) => info,
        Err(RepoStoreError::NotFound(_)) => return Err(not_found(&name)),
        Err(e) => return Err(CommandError::internal("reading a repository", e)),
    };
    if as_json {
        return json(&info);
    }
    let tip = match (&info.head_commit, &info.head_summary) {
        (Some(id), Some(summary)) => format!("{} {}", &id[..id.len().min(12)], summary),
        (Some(id), None) => id.clone(),
        _ => "(empty)".into(),
    };
    Ok(format!(
        "name:           {}\nclone:          {}\ndefault branch: {}\ntip:            {}\nbranches:       {}\ntags:           {}\nsize:           {} KiB\n",
        info.name,
        clone_url(ctx, &name),
        info.default_branch,
        tip,
        info.branches,
        info.tags,
        info.size_bytes / 1024
    ))
}

async fn delete(ctx: &CommandContext<'_>, name: &str) -> CommandResult {
    let name = parse_name(name)?;
    if name == ctx.state.admin_repo() {
        return Err(CommandError::new(
            "the `admin` repository holds the server's configuration and cannot be deleted",
        ));
    }
    if !allowed(ctx, "repo:delete", &name) {
        return Err(if allowed(ctx, "git:pull", &name) {
            CommandError::new(format!(
                "you ({}) may not delete `{name}`: no statement allows repo:delete on repo:{name}",
                ctx.identity.user
            ))
        } else {
            not_found(&name)
        });
    }
    let repos = ctx.state.repos.clone();
    let n = name.clone();
    match blocking("deleting a repository", move || repos.delete(&n)).await? {
        Ok(()) => {}
        Err(RepoStoreError::NotFound(_)) => return Err(not_found(&name)),
        Err(e) => return Err(CommandError::internal("deleting a repository", e)),
    }
    audit(ctx, &name, "repo:delete").await;
    Ok(format!("deleted {name}\n"))
}
