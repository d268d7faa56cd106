//! `audit [--user U] [--repo R] [--since T] [--limit N] [--json]` (needs audit:read).

use slipway_actors::AuditFilter;

use super::{json, CommandContext, CommandError, CommandResult};
use crate::access::Resource;

#[derive(clap::Args)]
pub struct Args {
    /// Only this user's lines.
    #[arg(long)]
    user: Option<String>,
    /// Only lines about this repository.
    #[arg(long)]
    repo: Option<String>,
    /// Only lines since this time: RFC 3339 (2026-01-31T12:00:00Z), a date, or an age like 2h.
    #[arg(long)]
    since: Option<String>,
    /// At most this many lines (the newest).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &CommandContext<'_>, args: Args) -> CommandResult {
    let allowed = ctx
        .state
        .admin
        .get()
        .access
        .evaluate(
            &ctx.identity.user,
            "audit:read",
            &Resource::other("audit", "log"),
        )
        .allowed();
    if !allowed {
        return Err(CommandError::new(format!(
            "you ({}) may not read the audit log: audit:read on audit:log is needed",
            ctx.identity.user
        )));
    }
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let filter = AuditFilter {
        user: args.user,
        repo: args.repo,
        since,
        limit: args.limit.clamp(1, 100_000),
    };
    let store = ctx.state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.audit_list(&filter))
        .await
        .map_err(|e| CommandError::internal("reading the audit log", e))?
        .map_err(|e| CommandError::internal("reading the audit log", e))?;
    if args.json {
        return json(&rows);
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut text = String::new();
    for r in rows {
        let mut line = format!(
            "{} {:<10} {:<6} user={} repo={} peer={}",
            r.time,
            r.kind,
            r.result,
            dash(&r.user),
            dash(&r.repo),
            dash(&r.peer)
        );
        if let Some(refname) = &r.refname {
            line.push_str(&format!(
                " ref={refname} {}..{}",
                short(&r.old_id),
                short(&r.new_id)
            ));
        }
        if let Some(a) = &r.action {
            line.push_str(&format!(" action={a:?}"));
        }
        if let Some(s) = &r.statement {
            line.push_str(&format!(" by={s:?}"));
        }
        if let Some(d) = &r.detail {
            line.push_str(&format!(" detail={d:?}"));
        }
        if let Some(fp) = &r.key_fp {
            line.push_str(&format!(" key={fp}"));
        }
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

fn short(id: &Option<String>) -> String {
    id.as_deref()
        .map(|s| s[..s.len().min(8)].to_string())
        .unwrap_or_default()
}

/// Turns `--since` into an RFC 3339 UTC timestamp comparable with stored times.
fn parse_since(text: &str) -> Result<String, CommandError> {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    // The store writes `2026-01-31T12:00:00.000Z`; compare in exactly that shape.
    let stored = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let fmt = |t: OffsetDateTime| {
        t.to_offset(time::UtcOffset::UTC)
            .format(&stored)
            .map_err(|e| CommandError::internal("formatting a time", e))
    };
    if let Ok(age) = humantime::parse_duration(text) {
        return fmt(OffsetDateTime::now_utc() - age);
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return fmt(t);
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(text, &date_fmt) {
        return fmt(d.midnight().assume_utc());
    }
    Err(CommandError {
        message: format!(
            "--since `{text}` is not a time: use 2026-01-31, 2026-01-31T12:00:00Z or an age like 2h"
        ),
        code: 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_times_and_ages() {
        assert_eq!(
            parse_since("2026-01-31").unwrap(),
            "2026-01-31T00:00:00.000Z"
        );
        assert_eq!(
            parse_since("2026-01-31T12:00:00+02:00").unwrap(),
            "2026-01-31T10:00:00.000Z"
        );
        assert!(parse_since("2h").unwrap().ends_with('Z'));
        assert!(parse_since("yesterday")
            .unwrap_err()
            .message
            .contains("not a time"));
    }
}
