//! `whoami`: the caller's identity as slipway sees it.

use serde::Serialize;

use super::{json, CommandContext, CommandResult};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Whoami<'a> {
    user: &'a str,
    key_fingerprint: &'a str,
    email: Option<&'a str>,
    groups: Vec<&'a str>,
}

pub async fn run(ctx: &CommandContext<'_>, args: Args) -> CommandResult {
    let config = ctx.state.admin.get();
    let user = config.access.users.get(&ctx.identity.user);
    let who = Whoami {
        user: &ctx.identity.user,
        key_fingerprint: &ctx.identity.fingerprint,
        email: user.and_then(|u| u.email.as_deref()),
        groups: user
            .map(|u| u.groups.iter().map(String::as_str).collect())
            .unwrap_or_default(),
    };
    if args.json {
        return json(&who);
    }
    Ok(format!(
        "user:   {}\nkey:    {}\nemail:  {}\ngroups: {}\n",
        who.user,
        who.key_fingerprint,
        who.email.unwrap_or("-"),
        if who.groups.is_empty() {
            "-".to_string()
        } else {
            who.groups.join(", ")
        }
    ))
}
