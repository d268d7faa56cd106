//! What a person reads: subjects and bodies of slipway's mail, and webhook bodies.

use serde_json::Value;

use crate::store::Event;

/// How users reach this server, for the commands printed in mail.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Host name users ssh to.
    pub ssh_host: String,
    /// SSH port.
    pub ssh_port: u16,
}

impl ServerInfo {
    /// `ssh -p PORT git@HOST`, the start of every command printed in mail.
    pub(crate) fn ssh(&self) -> String {
        format!("ssh -p {} git@{}", self.ssh_port, self.ssh_host)
    }
}

/// The first 8 characters of an object id, as ids are shown in mail.
pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn branch_words(refname: &str) -> (&'static str, &str) {
    if let Some(b) = refname.strip_prefix("refs/heads/") {
        ("branch", b)
    } else if let Some(t) = refname.strip_prefix("refs/tags/") {
        ("tag", t)
    } else {
        ("ref", refname)
    }
}

/// The subject and body of the mail about `event`.
pub fn mail(event: &Event, server: &ServerInfo) -> (String, String) {
    let e = &event.event;
    let actor = e.actor.as_deref().unwrap_or("someone");
    let repo = e.repo.as_deref().unwrap_or("-");
    let refname = e.refname.as_deref().unwrap_or("");
    let (what, name) = branch_words(refname);
    let d = &e.detail;
    let see_more = format!(
        "See more:\n  {} events --repo {repo} --since {}\n",
        server.ssh(),
        event.id - 1
    );
    match (e.source.as_str(), e.kind.as_str()) {
        ("git", "push") => {
            let commits = d["commits"].as_u64().unwrap_or(0);
            let noun = if commits == 1 { "commit" } else { "commits" };
            let forced = if d["forced"].as_bool() == Some(true) {
                " (forced)"
            } else {
                ""
            };
            let subject =
                format!("[slipway] {actor} pushed {commits} {noun} to {repo} {name}{forced}");
            let old = d["old"].as_str().unwrap_or("");
            let new = d["new"].as_str().unwrap_or("");
            let mut body = format!(
                "{actor} pushed {commits} {noun} to {what} {name} in {repo}{forced}.\n\n  repository: {repo}\n  {what}:{pad}{name} ({refname})\n  before:     {}\n  after:      {}\n  when:       {}\n",
                short(old),
                short(new),
                event.time,
                pad = " ".repeat(12usize.saturating_sub(what.len() + 1)),
            );
            if let Some(list) = d["summary"].as_array().filter(|l| !l.is_empty()) {
                body.push_str("\nCommits:\n");
                for line in list.iter().filter_map(Value::as_str) {
                    body.push_str(&format!("  {line}\n"));
                }
                if commits as usize > list.len() {
                    body.push_str(&format!("  … and {} more\n", commits as usize - list.len()));
                }
            }
            body.push('\n');
            body.push_str(&see_more);
            if !old.chars().all(|c| c == '0') && !old.is_empty() {
                body.push_str(&format!("  git log {}..{}\n", short(old), short(new)));
            }
            (subject, body)
        }
        ("git", "ref-created") | ("git", "ref-deleted") => {
            let verb = if e.kind == "ref-created" {
                "created"
            } else {
                "deleted"
            };
            let why = d["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let subject = format!("[slipway] {actor} {verb} {what} {name} in {repo}{why}");
            let id = if verb == "created" {
                d["new"].as_str()
            } else {
                d["old"].as_str()
            };
            let body = format!(
                "{actor} {verb} {what} {name} in {repo}{why}.\n\n  repository: {repo}\n  ref:        {refname}\n  commit:     {}\n  when:       {}\n\n{see_more}",
                short(id.unwrap_or("")),
                event.time,
            );
            (subject, body)
        }
        ("build", "build-state-change") => {
            let state = e.state.as_deref().unwrap_or("?");
            let build = format!("{repo}:{}", d["build_number"].as_i64().unwrap_or(0));
            let on = if name.is_empty() {
                String::new()
            } else {
                format!(" of {name}")
            };
            let inner = &d["detail"];
            let phase = inner["failed_phase"].as_str();
            let verb = match (state, phase) {
                ("IN_PROGRESS", _) => "started".to_string(),
                ("SUCCEEDED", _) => "succeeded".to_string(),
                ("FAILED", Some(p)) => format!("failed in phase {}", p.to_lowercase()),
                (other, Some(p)) => format!("ended {other} in phase {}", p.to_lowercase()),
                (other, None) => format!("ended {other}"),
            };
            let subject = format!("[slipway] build {build}{on} {verb}");
            let mut body = format!(
                "Build {build}{on} {verb}.\n\n  repository: {repo}\n  commit:     {}\n  started by: {actor}\n  when:       {}\n",
                short(d["commit"].as_str().unwrap_or("")),
                event.time,
            );
            if let Some(reason) = inner["reason"].as_str() {
                body.push_str(&format!("  reason:     {reason}\n"));
            }
            if let Some(lines) = inner["last_lines"].as_array().filter(|l| !l.is_empty()) {
                body.push_str("\nLast lines of the log:\n");
                for l in lines.iter().filter_map(Value::as_str) {
                    body.push_str(&format!("  {l}\n"));
                }
            }
            body.push_str(&format!(
                "\nThe whole log:\n  {} build logs {}\n",
                server.ssh(),
                d["build_id"].as_i64().unwrap_or(0)
            ));
            (subject, body)
        }
        ("pipeline", kind) if d["execution"].is_i64() => {
            let state = e.state.as_deref().unwrap_or("?");
            let pipeline = d["pipeline"].as_str().unwrap_or("?");
            let id = d["execution"].as_i64().unwrap_or(0);
            let place = match (d["stage"].as_str(), d["action"].as_str()) {
                (Some(stage), Some(action)) => format!(" {stage}/{action}"),
                (Some(stage), None) => format!(" stage {stage}"),
                _ => String::new(),
            };
            let what = match kind {
                "execution-state-change" => "execution",
                "stage-state-change" => "stage",
                _ => "action",
            };
            let subject = format!("[slipway] pipeline {pipeline} #{id}{place} {state}");
            let mut body = format!(
                "Pipeline {pipeline}, execution {id}:{place} {what} {state}.\n\n  repository: {repo}\n  ref:        {refname}\n  commit:     {}\n  by:         {actor}\n  when:       {}\n",
                short(d["commit"].as_str().unwrap_or("")),
                event.time,
            );
            if let Some(reason) = d["reason"].as_str() {
                body.push_str(&format!("  reason:     {reason}\n"));
            }
            body.push_str(&format!(
                "\nThe execution:\n  {} pipeline show {id}\n  {} pipeline status {pipeline}\n",
                server.ssh(),
                server.ssh()
            ));
            (subject, body)
        }
        ("deploy", "deployment-state-change") => {
            let state = e.state.as_deref().unwrap_or("?");
            let id = d["deployment"].as_i64().unwrap_or(0);
            let target = format!(
                "{}/{}",
                d["application"].as_str().unwrap_or("?"),
                d["group"].as_str().unwrap_or("?")
            );
            let what = if d["rollback_of"].is_i64() {
                format!("rollback deployment {id}")
            } else {
                format!("deployment {id}")
            };
            let subject = format!("[slipway] {what} to {target} {state}");
            let mut body = format!(
                "The {what} to {target} is {state}.\n\n  commit:     {}\n  build:      {}\n  started by: {}\n  when:       {}\n",
                short(d["commit"].as_str().unwrap_or("")),
                d["build_id"].as_i64().map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
                d["creator"].as_str().unwrap_or(actor),
                event.time,
            );
            if let Some(reason) = d["reason"].as_str() {
                body.push_str(&format!("  reason:     {reason}\n"));
            }
            if let Some(of) = d["rollback_of"].as_i64() {
                body.push_str(&format!("  rolls back: deployment {of}\n"));
            }
            if let Some(by) = d["rollback_id"].as_i64() {
                body.push_str(&format!("  rolled back by: deployment {by}\n"));
            }
            body.push_str(&format!(
                "\nEach host's lifecycle events:\n  {} deploy status {id}\n",
                server.ssh()
            ));
            (subject, body)
        }
        ("deploy", "host-state-change") => {
            let state = e.state.as_deref().unwrap_or("?");
            let id = d["deployment"].as_i64().unwrap_or(0);
            let host = d["host"].as_str().unwrap_or("?");
            let during = d["event"]
                .as_str()
                .map(|ev| format!(" in {ev}"))
                .unwrap_or_default();
            let subject = format!("[slipway] deployment {id}: host {host} {state}{during}");
            let mut body = format!(
                "Host {host} of deployment {id} ({}/{}) {state}{during}.\n",
                d["application"].as_str().unwrap_or("?"),
                d["group"].as_str().unwrap_or("?"),
            );
            if let Some(reason) = d["reason"].as_str() {
                body.push_str(&format!("\n  {reason}\n"));
            }
            if let Some(log) = d["log"].as_str().filter(|l| !l.is_empty()) {
                body.push_str("\nThe end of its output:\n");
                for l in log.lines() {
                    body.push_str(&format!("  {l}\n"));
                }
            }
            body.push_str(&format!(
                "\nThe deployment:\n  {} deploy status {id}\n",
                server.ssh()
            ));
            (subject, body)
        }
        ("notify", "delivery-failed") => {
            let subject = format!(
                "[slipway] could not deliver {} to {}",
                d["kind"].as_str().unwrap_or("a message"),
                d["target"].as_str().unwrap_or("?")
            );
            let body = format!(
                "slipway gave up delivering a {} to {} after {} attempts.\n\n  rule:  {}\n  error: {}\n\n{see_more}",
                d["kind"].as_str().unwrap_or("message"),
                d["target"].as_str().unwrap_or("?"),
                d["attempts"].as_u64().unwrap_or(0),
                d["rule"].as_str().unwrap_or("?"),
                d["error"].as_str().unwrap_or("?"),
            );
            (subject, body)
        }
        (source, kind) => {
            let state = e
                .state
                .as_deref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default();
            let subject = format!("[slipway] {source} {kind}{state} in {repo}");
            let detail = serde_json::to_string_pretty(d).unwrap_or_default();
            let body = format!(
                "{source} event `{kind}`{state} in {repo}, caused by {actor}, at {}.\n\n{detail}\n\n{see_more}",
                event.time
            );
            (subject, body)
        }
    }
}

/// The mail to an approver of a pipeline's approval action: what waits, and the exact
/// commands that approve or reject it.
pub fn approval_mail(
    e: &crate::store::ExecutionRow,
    stage: &str,
    action: &str,
    message: &str,
    expires: f64,
    server: &ServerInfo,
) -> (String, String) {
    let subject = format!(
        "[slipway] approval needed: {} {stage}/{action} (execution {})",
        e.pipeline, e.id
    );
    let expires = time::OffsetDateTime::from_unix_timestamp(expires as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "?".into());
    let command = |verb: &str| {
        format!(
            "{} pipeline {verb} {} {} {stage} {action} --comment \"…\"",
            server.ssh(),
            e.pipeline,
            e.id
        )
    };
    let mut body = format!(
        "Execution {} of pipeline {} waits for your approval in stage {stage}, action {action}.\n\n",
        e.id, e.pipeline
    );
    if !message.is_empty() {
        body.push_str(&format!("  {message}\n\n"));
    }
    body.push_str(&format!(
        "  repository: {}\n  ref:        {}\n  commit:     {}\n  started by: {}\n  expires:    {expires} (then it fails)\n\nTo approve:\n  {}\n\nTo reject:\n  {}\n\nThe whole pipeline:\n  {} pipeline status {}\n",
        e.repo,
        e.refname.as_deref().unwrap_or("-"),
        e.commit,
        e.initiator,
        command("approve"),
        command("reject"),
        server.ssh(),
        e.pipeline,
    ));
    (subject, body)
}

/// The JSON body of the webhook about `event`: the event as `events --json` prints it.
pub fn webhook_body(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;

    fn push() -> Event {
        Event {
            id: 42,
            time: "2026-11-29T10:00:00.000Z".into(),
            event: NewEvent {
                source: "git".into(),
                kind: "push".into(),
                actor: Some("alice".into()),
                repo: Some("app-web".into()),
                refname: Some("refs/heads/main".into()),
                state: None,
                detail: serde_json::json!({
                    "old": "1111111111111111111111111111111111111111",
                    "new": "2222222222222222222222222222222222222222",
                    "commits": 3,
                    "summary": ["2222222 Fix the login page", "3333333 Add tests"],
                }),
            },
        }
    }

    #[test]
    fn a_push_reads_at_a_glance() {
        let server = ServerInfo {
            ssh_host: "git.example.com".into(),
            ssh_port: 2222,
        };
        let (subject, body) = mail(&push(), &server);
        assert_eq!(subject, "[slipway] alice pushed 3 commits to app-web main");
        assert!(
            body.starts_with("alice pushed 3 commits to branch main in app-web."),
            "{body}"
        );
        assert!(body.contains("  2222222 Fix the login page\n"), "{body}");
        assert!(body.contains("… and 1 more"), "{body}");
        assert!(
            body.contains("ssh -p 2222 git@git.example.com events --repo app-web --since 41"),
            "{body}"
        );
        assert!(body.contains("git log 11111111..22222222"), "{body}");
    }

    #[test]
    fn a_failed_build_says_where_it_failed_and_how_it_ended() {
        let event = Event {
            id: 9,
            time: "2026-11-29T10:00:00.000Z".into(),
            event: NewEvent {
                source: "build".into(),
                kind: "build-state-change".into(),
                actor: Some("alice".into()),
                repo: Some("app-one".into()),
                refname: Some("refs/heads/main".into()),
                state: Some("FAILED".into()),
                detail: serde_json::json!({
                    "build_id": 31,
                    "build_number": 7,
                    "commit": "2222222222222222222222222222222222222222",
                    "detail": {
                        "failed_phase": "BUILD",
                        "last_lines": ["cargo test", "test result: FAILED. 1 failed"],
                    },
                }),
            },
        };
        let server = ServerInfo {
            ssh_host: "ci.example".into(),
            ssh_port: 2222,
        };
        let (subject, body) = mail(&event, &server);
        assert_eq!(
            subject,
            "[slipway] build app-one:7 of main failed in phase build"
        );
        assert!(body.contains("  test result: FAILED. 1 failed\n"), "{body}");
        assert!(body.contains("build logs 31"), "{body}");
        assert!(body.contains("started by: alice"), "{body}");
    }

    #[test]
    fn a_failed_host_mail_names_the_event_and_shows_the_log() {
        let event = Event {
            id: 3,
            time: "2026-12-01T10:00:00.000Z".into(),
            event: NewEvent {
                source: "deploy".into(),
                kind: "host-state-change".into(),
                actor: Some("alice".into()),
                repo: None,
                refname: None,
                state: Some("FAILED".into()),
                detail: serde_json::json!({
                    "deployment": 7,
                    "application": "web",
                    "group": "prod",
                    "host": "web-1",
                    "event": "ValidateService",
                    "reason": "ValidateService failed: exited with 1",
                    "log": "[stdout] not healthy",
                }),
            },
        };
        let server = ServerInfo {
            ssh_host: "ci.example".into(),
            ssh_port: 2222,
        };
        let (subject, body) = mail(&event, &server);
        assert_eq!(
            subject,
            "[slipway] deployment 7: host web-1 FAILED in ValidateService"
        );
        assert!(body.contains("  [stdout] not healthy\n"), "{body}");
        assert!(body.contains("deploy status 7"), "{body}");
    }
}
