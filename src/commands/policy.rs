//! `policy simulate USER ACTION RESOURCE`: explain a decision statement by statement.

use clap::Subcommand;
use serde::Serialize;

use super::{json, CommandContext, CommandError, CommandResult};
use crate::access::{Decision, Resource};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Explain whether USER may do ACTION on RESOURCE, statement by statement.
    ///
    /// Example: policy simulate alice git:force-push repo:app:refs/heads/main
    Simulate {
        /// The user to simulate.
        user: String,
        /// The action, e.g. git:push.
        action: String,
        /// The resource: repo:NAME or repo:NAME:REF.
        resource: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Row<'a> {
    statement: &'a str,
    via: &'a str,
    outcome: &'a str,
}

#[derive(Serialize)]
struct Report<'a> {
    user: &'a str,
    action: &'a str,
    resource: String,
    decision: &'a str,
    decided_by: String,
    statements: Vec<Row<'a>>,
}

pub async fn run(ctx: &CommandContext<'_>, cmd: PolicyCommand) -> CommandResult {
    let PolicyCommand::Simulate {
        user,
        action,
        resource,
        json: as_json,
    } = cmd;
    let config = ctx.state.admin.get();
    let access = &config.access;
    // Anyone may ask about themselves; asking about others needs policy:simulate.
    if user != ctx.identity.user
        && !access
            .evaluate(
                &ctx.identity.user,
                "policy:simulate",
                &Resource::other("policy", &user),
            )
            .allowed()
    {
        return Err(CommandError::new(format!(
            "you ({}) may simulate only your own access; policy:simulate on policy:{user} is needed for others",
            ctx.identity.user
        )));
    }
    if !access.users.contains_key(&user) {
        return Err(CommandError::new(format!(
            "no user `{user}` in access.yaml"
        )));
    }
    let resource = Resource::parse(&resource).map_err(CommandError::new)?;
    let trace = access.explain(&user, &action, &resource);
    let decision = match &trace.decision {
        Decision::Allow(_) => "ALLOW",
        Decision::ExplicitDeny(_) => "DENY (explicit)",
        Decision::ImplicitDeny => "DENY (implicit)",
    };
    let report = Report {
        user: &user,
        action: &action,
        resource: resource.to_string(),
        decision,
        decided_by: trace.decision.reason(),
        statements: trace
            .statements
            .iter()
            .map(|s| Row {
                statement: &s.statement,
                via: &s.via,
                outcome: s.outcome,
            })
            .collect(),
    };
    if as_json {
        return json(&report);
    }
    let mut text = format!("{} {} on {}\n", report.user, report.action, report.resource);
    if report.statements.is_empty() {
        text.push_str("  (no policies apply to this user)\n");
    }
    for row in &report.statements {
        text.push_str(&format!(
            "  {:<24} {}  (via {})\n",
            row.outcome, row.statement, row.via
        ));
    }
    match trace.decision {
        Decision::ImplicitDeny => text.push_str(&format!(
            "decision: {}: no statement allows it\n",
            report.decision
        )),
        _ => text.push_str(&format!(
            "decision: {} by {}\n",
            report.decision, report.decided_by
        )),
    }
    Ok(text)
}
