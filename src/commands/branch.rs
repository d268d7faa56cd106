//! `branch reap REPO [--dry-run]`: delete stale branches now (needs branch:reap).

use clap::Subcommand;
use slipway_actors::config::parse_duration;
use slipway_actors::config::rules::{Action, StaleBranches};
use slipway_actors::pattern::Pattern;
use slipway_actors::reaper::Reap;

use super::{json, CommandContext, CommandError, CommandResult};
use crate::access::Resource;
use crate::git::RepoName;

#[derive(Subcommand)]
pub enum BranchCommand {
    /// Delete the stale branches of a repository, as its delete-stale-branches rule
    /// would; flags override the rule's settings.
    Reap {
        /// The repository.
        repo: String,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// A branch is stale when its tip is older than this (e.g. 30d).
        #[arg(long)]
        older_than: Option<String>,
        /// Only branches already merged into the default branch.
        #[arg(long)]
        merged_only: bool,
        /// Branch patterns never to delete (repeatable), e.g. --keep 'release/*'.
        #[arg(long)]
        keep: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &CommandContext<'_>, cmd: BranchCommand) -> CommandResult {
    let BranchCommand::Reap {
        repo,
        dry_run,
        older_than,
        merged_only,
        keep,
        json: as_json,
    } = cmd;
    let name = RepoName::from_client_path(&repo).map_err(|e| CommandError::new(e.to_string()))?;
    let config = ctx.state.admin.get();
    let user = &ctx.identity.user;
    if !config
        .access
        .evaluate(user, "branch:reap", &Resource::repo(name.as_str()))
        .allowed()
    {
        let readable = config
            .access
            .evaluate(user, "git:pull", &Resource::repo(name.as_str()))
            .allowed();
        return Err(CommandError::new(if readable {
            format!("you ({user}) may not reap branches in `{name}`: branch:reap on repo:{name} is needed")
        } else {
            format!("repository `{name}` not found (or you may not read it)")
        }));
    }
    if !ctx.state.repos.exists(&name) {
        return Err(CommandError::new(format!(
            "repository `{name}` not found (or you may not read it)"
        )));
    }
    // Start from the first delete-stale-branches rule covering this repository.
    let from_rule = config.rules.rules.iter().find_map(|r| match &r.action {
        Some(Action::DeleteStaleBranches(s)) if s.repo.is_match(name.as_str()) => Some(s.clone()),
        _ => None,
    });
    let mut settings = match (from_rule, &older_than) {
        (Some(s), _) => s,
        (None, Some(_)) => StaleBranches {
            repo: Pattern::new("*").expect("valid pattern"),
            older_than: std::time::Duration::ZERO,
            merged_only: false,
            keep: Vec::new(),
        },
        (None, None) => {
            return Err(CommandError::new(format!(
                "no delete-stale-branches rule in rules.yaml covers `{name}`; pass --older-than (e.g. 30d)"
            )))
        }
    };
    if let Some(age) = older_than {
        settings.older_than = parse_duration(&age).map_err(CommandError::new)?;
    }
    settings.merged_only |= merged_only;
    for k in keep {
        settings
            .keep
            .push(Pattern::new(&k).map_err(CommandError::new)?);
    }
    let branches = ctx
        .state
        .runtime
        .reap(Reap {
            repo: name.to_string(),
            settings,
            dry_run,
            requested_by: user.clone(),
        })
        .await
        .map_err(|e| CommandError::internal("reaping branches", e))?;
    if as_json {
        return json(&branches);
    }
    if branches.is_empty() {
        return Ok(format!("no stale branches in {name}\n"));
    }
    let mut text = String::new();
    for b in &branches {
        text.push_str(&format!(
            "{:<14} {}  (tip {} is {:.0} days old)\n",
            b.result,
            b.branch,
            &b.tip[..b.tip.len().min(8)],
            b.age_days
        ));
    }
    Ok(text)
}
