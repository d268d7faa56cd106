//! `agent token create|list|remove`: deploy agents.
//!
//! Creating registration tokens and removing agents needs `agent:manage` on
//! `agent:all`; listing needs `agent:read` on `agent:all`.

use std::collections::BTreeMap;

use clap::Subcommand;
use slipway_actors::config::parse_duration;
use slipway_actors::store::{AgentPlacement, AgentRow};

use super::{json, CommandContext, CommandError, CommandResult};
use crate::access::Resource;
use slipway_actors::store::unix_now as now;

/// An agent that has not polled for this long is shown as not seen.
const SEEN_WITHIN_SECONDS: f64 = 60.0;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Registration tokens for new agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List registered agents: tags, version, last seen, health, and the revision each
    /// deployment group runs on it.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an agent: its credential stops working at once.
    Remove {
        /// The agent's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a one-time token an agent registers with (`slipway-agent register`).
    Create {
        /// A tag the agent gets (deployment groups select agents by tags); repeatable.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// How long the token stays valid.
        #[arg(long, default_value = "1h")]
        expires: String,
    },
}

fn check(ctx: &CommandContext<'_>, action: &str) -> Result<(), CommandError> {
    let allowed = ctx
        .state
        .admin
        .get()
        .access
        .evaluate(&ctx.identity.user, action, &Resource::other("agent", "all"))
        .allowed();
    if allowed {
        Ok(())
    } else {
        Err(CommandError::new(format!(
            "you ({}) may not do that: {action} on agent:all is needed",
            ctx.identity.user
        )))
    }
}

/// `KEY=VALUE` with a key and value of letters, digits, `-`, `_`, `.`, `/`.
fn parse_tag(text: &str) -> Result<(String, String), CommandError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    match text.split_once('=') {
        Some((k, v)) if ok(k) && ok(v) => Ok((k.to_string(), v.to_string())),
        _ => Err(CommandError::new(format!(
            "tag `{text}` must be KEY=VALUE (letters, digits, `-`, `_`, `.`, `/`), e.g. role=web"
        ))),
    }
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return "-".into();
    }
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn run(ctx: &CommandContext<'_>, cmd: AgentCommand) -> CommandResult {
    let store = ctx.state.store.clone();
    match cmd {
        AgentCommand::Token(TokenCommand::Create { tags, expires }) => {
            check(ctx, "agent:manage")?;
            let tags = tags
                .iter()
                .map(|t| parse_tag(t))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let valid = parse_duration(&expires).map_err(CommandError::new)?;
            let token = format!("slwa_{}", hex::encode(rand::random::<[u8; 32]>()));
            let (hash, t2, user) = (
                slipway_actors::store::secret_hash(&token),
                tags.clone(),
                ctx.identity.user.clone(),
            );
            let expires_at = now() + valid.as_secs_f64();
            tokio::task::spawn_blocking(move || {
                store.agent_token_create(&hash, &t2, &user, expires_at)
            })
            .await
            .map_err(|e| CommandError::internal("creating a token", e))?
            .map_err(|e| CommandError::internal("creating a token", e))?;
            Ok(format!(
                "{token}\n# one-time token for tags {}, valid for {}; on the host:\n#   slipway-agent register --server URL --token {token} --name NAME\n",
                tags_text(&tags),
                humantime::format_duration(valid)
            ))
        }
        AgentCommand::List { json: as_json } => {
            check(ctx, "agent:read")?;
            let (agents, placements) = tokio::task::spawn_blocking(move || {
                Ok::<_, slipway_actors::store::StoreError>((
                    store.agents()?,
                    store.agent_placements()?,
                ))
            })
            .await
            .map_err(|e| CommandError::internal("listing agents", e))?
            .map_err(|e| CommandError::internal("listing agents", e))?;
            let now = now();
            let groups_of = |name: &str| -> Vec<&AgentPlacement> {
                placements.iter().filter(|p| p.agent == name).collect()
            };
            let rows: Vec<serde_json::Value> = agents
                .iter()
                .map(|a: &AgentRow| {
                    let groups = groups_of(&a.name);
                    serde_json::json!({
                        "name": a.name,
                        "tags": a.tags,
                        "version": a.version,
                        "registered": a.registered,
                        "last_seen": a.last_seen,
                        "seconds_since_seen": (now - a.last_seen).max(0.0).round(),
                        "connected": now - a.last_seen <= SEEN_WITHIN_SECONDS,
                        "health": health(&groups),
                        "groups": groups,
                    })
                })
                .collect();
            if as_json {
                return json(&rows);
            }
            if rows.is_empty() {
                return Ok(
                    "no agents yet: create a token with `agent token create --tag KEY=VALUE`\n"
                        .into(),
                );
            }
            Ok(agents
                .iter()
                .map(|a| {
                    let ago = (now - a.last_seen).max(0.0);
                    let groups = groups_of(&a.name);
                    let mut line = format!(
                        "{:<20} {:<30} v{:<8} seen {}s ago{}  {}\n",
                        a.name,
                        tags_text(&a.tags),
                        a.version,
                        ago.round(),
                        if ago > SEEN_WITHIN_SECONDS {
                            " (not connected)"
                        } else {
                            ""
                        },
                        health(&groups),
                    );
                    for g in groups {
                        let revision = match (&g.commit, &g.revision) {
                            (Some(c), _) => format!("commit {}", &c[..c.len().min(12)]),
                            (None, Some(r)) => format!("bundle {}", &r[..r.len().min(12)]),
                            (None, None) => "no known revision".into(),
                        };
                        line.push_str(&format!(
                            "    {}/{}: {}, {revision}{}\n",
                            g.application,
                            g.group,
                            if g.healthy { "healthy" } else { "UNHEALTHY" },
                            g.deployment
                                .map(|d| format!(" (deployment {d})"))
                                .unwrap_or_default(),
                        ));
                    }
                    line
                })
                .collect())
        }
        AgentCommand::Remove { name } => {
            check(ctx, "agent:manage")?;
            let n = name.clone();
            let removed = tokio::task::spawn_blocking(move || store.agent_remove(&n))
                .await
                .map_err(|e| CommandError::internal("removing an agent", e))?
                .map_err(|e| CommandError::internal("removing an agent", e))?;
            if removed {
                Ok(format!(
                    "removed agent {name}; its credential no longer works\n"
                ))
            } else {
                Err(CommandError::new(format!(
                    "no agent named `{name}`; `agent list` shows them"
                )))
            }
        }
    }
}

/// An agent's health over its groups: `healthy`, `UNHEALTHY` (its last deployment in
/// some group failed) or `no deployments`.
fn health(groups: &[&AgentPlacement]) -> &'static str {
    if groups.is_empty() {
        "no deployments"
    } else if groups.iter().all(|g| g.healthy) {
        "healthy"
    } else {
        "UNHEALTHY"
    }
}
