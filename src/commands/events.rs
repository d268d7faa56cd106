//! `events [--repo R] [--type T] [--since ID] [--follow] [--json]`: the event log, and
//! with `--follow` new events live until the client disconnects.
//!
//! Each user sees the events of the repositories they may read; events that belong to
//! no repository need `events:read` on `events:all`.

use std::time::Duration;

use slipway_actors::store::{Event, EventFilter};
use tokio::io::AsyncWriteExt;

use super::{CommandContext, CommandError, Out};
use crate::access::Resource;

#[derive(clap::Args)]
pub struct Args {
    /// Only this repository's events.
    #[arg(long)]
    repo: Option<String>,
    /// Only events of this type (push, ref-created, ref-deleted, …).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Only events after this id.
    #[arg(long)]
    since: Option<i64>,
    /// Keep streaming new events until you disconnect (Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// At most this many past events (the newest).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// JSON: an array, or with --follow one object per line.
    #[arg(long)]
    json: bool,
}

fn visible(ctx: &CommandContext<'_>, event: &Event) -> bool {
    let config = ctx.state.admin.get();
    let user = &ctx.identity.user;
    match &event.event.repo {
        Some(repo) => config
            .access
            .evaluate(user, "git:pull", &Resource::repo(repo))
            .allowed(),
        None => config
            .access
            .evaluate(user, "events:read", &Resource::other("events", "all"))
            .allowed(),
    }
}

/// One line a person can read.
fn line(event: &Event) -> String {
    let e = &event.event;
    let mut text = format!("#{} {} {}/{}", event.id, event.time, e.source, e.kind);
    if let Some(repo) = &e.repo {
        text.push_str(&format!(" repo={repo}"));
    }
    if let Some(r) = &e.refname {
        text.push_str(&format!(" ref={r}"));
    }
    if let Some(a) = &e.actor {
        text.push_str(&format!(" by={a}"));
    }
    if let Some(s) = &e.state {
        text.push_str(&format!(" state={s}"));
    }
    let d = &e.detail;
    if e.kind == "push" {
        let short = |k: &str| {
            d[k].as_str()
                .map(|s| s[..s.len().min(8)].to_string())
                .unwrap_or_default()
        };
        text.push_str(&format!(
            " commits={} {}..{}",
            d["commits"].as_u64().unwrap_or(0),
            short("old"),
            short("new")
        ));
    }
    if let Some(reason) = d["reason"].as_str().or(d["error"].as_str()) {
        text.push_str(&format!(" ({reason})"));
    }
    text.push('\n');
    text
}

async fn fetch(ctx: &CommandContext<'_>, filter: EventFilter) -> Result<Vec<Event>, CommandError> {
    let store = ctx.state.store.clone();
    tokio::task::spawn_blocking(move || store.events(&filter))
        .await
        .map_err(|e| CommandError::internal("reading events", e))?
        .map_err(|e| CommandError::internal("reading events", e))
}

pub async fn run(ctx: &CommandContext<'_>, args: Args, out: Out<'_>) -> Result<(), CommandError> {
    if let Some(repo) = &args.repo {
        let name = crate::git::RepoName::from_client_path(repo)
            .map_err(|e| CommandError::new(e.to_string()))?;
        let readable = ctx
            .state
            .admin
            .get()
            .access
            .evaluate(
                &ctx.identity.user,
                "git:pull",
                &Resource::repo(name.as_str()),
            )
            .allowed();
        if !readable {
            return Err(CommandError::new(format!(
                "repository `{name}` not found (or you may not read it)"
            )));
        }
    }
    let limit = args.limit.clamp(1, 10_000);
    let filter = |after: i64, limit: usize| EventFilter {
        repo: args.repo.clone(),
        kind: args.kind.clone(),
        after,
        limit,
    };
    let mut follow = ctx.state.runtime.follow();
    // `--limit` counts events this user may see: page through the log, filtering as we go.
    let (shown, mut last) = match args.since {
        Some(since) => {
            let (mut shown, mut scanned) = (Vec::new(), since);
            loop {
                let page = fetch(ctx, filter(scanned, 1000)).await?;
                let Some(end) = page.last().map(|e| e.id) else {
                    break;
                };
                for e in page {
                    if shown.len() < limit && visible(ctx, &e) {
                        scanned = e.id;
                        shown.push(e);
                    } else if shown.len() >= limit {
                        break;
                    } else {
                        scanned = e.id;
                    }
                }
                if shown.len() >= limit || scanned < end {
                    break;
                }
            }
            (shown, scanned)
        }
        None => {
            let store = ctx.state.store.clone();
            let newest = tokio::task::spawn_blocking(move || store.last_event_id())
                .await
                .map_err(|e| CommandError::internal("reading events", e))?
                .map_err(|e| CommandError::internal("reading events", e))?;
            let (mut shown, mut before) = (Vec::new(), newest + 1);
            while shown.len() < limit {
                let store = ctx.state.store.clone();
                let page_filter = filter(0, 1000);
                let page =
                    tokio::task::spawn_blocking(move || store.events_before(&page_filter, before))
                        .await
                        .map_err(|e| CommandError::internal("reading events", e))?
                        .map_err(|e| CommandError::internal("reading events", e))?;
                let Some(oldest) = page.last().map(|e| e.id) else {
                    break;
                };
                before = oldest;
                shown.extend(page.into_iter().filter(|e| visible(ctx, e)));
            }
            shown.truncate(limit);
            shown.reverse();
            (shown, newest)
        }
    };
    if !args.follow {
        let text = if args.json {
            serde_json::to_string_pretty(&shown)
                .map_err(|e| CommandError::internal("encoding JSON", e))?
                + "\n"
        } else {
            shown.iter().map(line).collect()
        };
        let _ = out.write_all(text.as_bytes()).await;
        return Ok(());
    }
    let write = |e: &Event| {
        if args.json {
            serde_json::to_string(e).unwrap_or_default() + "\n"
        } else {
            line(e)
        }
    };
    for e in &shown {
        if out.write_all(write(e).as_bytes()).await.is_err() {
            return Ok(());
        }
    }
    let _ = out.flush().await;
    let closed = ctx.input.closed_token();
    loop {
        tokio::select! {
            _ = closed.cancelled() => return Ok(()),
            _ = follow.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let new = fetch(ctx, filter(last, 1000)).await?;
        for e in &new {
            last = e.id;
            if visible(ctx, e) && out.write_all(write(e).as_bytes()).await.is_err() {
                return Ok(());
            }
        }
        if out.flush().await.is_err() {
            return Ok(());
        }
    }
}
