//! The event log: every accepted ref update becomes events (`push`, `ref-created`,
//! `ref-deleted`) stored before the push is acknowledged; `events` lists and follows
//! them with filters and per-repository visibility; the rules engine consumes them
//! at-least-once across crashes and actor restarts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// rules.yaml mailing every push to an app-* repository to one address.
const MAIL_PUSHES: &str = r#"rules:
  - name: mail-pushes
    match: { source: git, type: push, repo: "app-*" }
    targets:
      - email: [team@example.com]
"#;

/// `events --json ARGS` as `key`: the events, oldest first.
#[track_caller]
fn events(s: &Server, key: &Key, args: &str) -> Vec<Value> {
    let out = s.ssh(key, &format!("events --json {args}")).ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("events --json is not JSON ({e}):\n{out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("events --json is not an array:\n{out}"))
        .clone()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["id"].as_i64().expect("numeric id"))
        .collect()
}

fn repos(events: &[Value]) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["repo"].as_str().map(str::to_string))
        .collect()
}

/// The newest event id the administrator can see (0 when there is none).
fn last_id(s: &Server) -> i64 {
    events(s, &s.admin, "--limit 1")
        .last()
        .map(|e| e["id"].as_i64().unwrap())
        .unwrap_or(0)
}

/// `git rev-parse REV` in `dir`.
fn rev(s: &Server, dir: &Path, rev: &str) -> String {
    s.git(&s.alice, dir, &["rev-parse", rev])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// The `.eml` files written so far (no `smtp:` in slipway.yaml), oldest first.
pub fn mails(s: &Server) -> Vec<(PathBuf, String)> {
    let dir = s.data.join("mail");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
}

/// Waits for the outbox to drain, so that every queued message has been written.
fn wait_outbox_empty(s: &Server) {
    assert!(
        eventually(Duration::from_secs(30), || s.metric("slipway_outbox_depth")
            == 0.0),
        "the outbox never drained; log:\n{}",
        s.log_text()
    );
}

/// Waits until a mail containing `needle` exists; returns all mails.
#[track_caller]
fn wait_for_mail(s: &Server, needle: &str) -> Vec<(PathBuf, String)> {
    let found = eventually(Duration::from_secs(30), || {
        mails(s).iter().any(|(_, text)| text.contains(needle))
    });
    assert!(
        found,
        "no mail containing {needle:?}; mails: {:?}\nlog:\n{}",
        mails(s),
        s.log_text()
    );
    mails(s)
}

#[test]
fn accepted_ref_updates_become_events_and_denied_pushes_none() {
    let s = Server::start();
    let url = s.url("app-web");
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "a.txt", "a\n", "Add a");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    let main1 = rev(&s, &work, "HEAD");

    // A new branch: `push` with every new commit, then `ref-created`.
    let evs = events(&s, &s.admin, "--repo app-web");
    assert_eq!(kinds(&evs), ["push", "ref-created"], "{evs:#?}");
    let push = &evs[0];
    assert!(push["id"].as_i64().unwrap() > 0, "{push}");
    let time = push["time"].as_str().expect("time");
    assert!(
        time.starts_with("20") && time.contains('T'),
        "time is RFC 3339: {time}"
    );
    assert_eq!(push["source"], "git");
    assert_eq!(push["type"], "push");
    assert_eq!(push["actor"], "alice");
    assert_eq!(push["repo"], "app-web");
    assert_eq!(push["ref"], "refs/heads/main");
    let d = &push["detail"];
    assert!(d.is_object(), "{push}");
    assert_eq!(d["old"], ZERO_ID);
    assert_eq!(d["new"], main1.as_str());
    assert_eq!(d["pusher"], "alice");
    assert_eq!(d["commits"], 2, "{push}");
    assert_eq!(d["created"], true);
    assert_eq!(d["forced"], false);
    let summary: Vec<&str> = d["summary"]
        .as_array()
        .expect("summary")
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert!(
        summary[0].ends_with(" Add a") && main1.starts_with(summary[0].split(' ').next().unwrap()),
        "newest first, `<short hash> <subject>`: {summary:?}"
    );
    assert!(summary[1].ends_with(" first commit"), "{summary:?}");
    let created = &evs[1];
    assert_eq!(created["source"], "git");
    assert_eq!(created["actor"], "alice");
    assert_eq!(created["ref"], "refs/heads/main");
    assert_eq!(created["detail"]["new"], main1.as_str());

    // A fast-forward: one `push` with its commit count.
    commit_file(&s, &s.alice, &work, "b.txt", "b\n", "Add b");
    commit_file(&s, &s.alice, &work, "c.txt", "c\n", "Add c");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    let main2 = rev(&s, &work, "HEAD");
    let mut all = events(&s, &s.admin, "--repo app-web");
    let new = &all[2..];
    assert_eq!(kinds(new), ["push"], "{all:#?}");
    let d = &new[0]["detail"];
    assert_eq!(d["commits"], 2, "{d}");
    assert_eq!(d["old"], main1.as_str());
    assert_eq!(d["new"], main2.as_str());
    assert_eq!(d["created"], false);
    assert_eq!(d["forced"], false);
    assert_eq!(d["summary"].as_array().unwrap().len(), 2);

    // A feature branch, then a force push to it.
    s.git(&s.alice, &work, &["checkout", "-q", "-b", "feature/x"])
        .ok();
    commit_file(&s, &s.alice, &work, "f.txt", "f\n", "Feature work");
    s.git(&s.alice, &work, &["push", "-q", &url, "feature/x"])
        .ok();
    let feature1 = rev(&s, &work, "HEAD");
    s.git(
        &s.alice,
        &work,
        &["commit", "-q", "--amend", "-m", "Feature work, reworded"],
    )
    .ok();
    let feature2 = rev(&s, &work, "HEAD");
    s.git(
        &s.alice,
        &work,
        &["push", "-q", "--force", &url, "feature/x"],
    )
    .ok();
    all = events(&s, &s.admin, "--repo app-web");
    let new = &all[3..];
    assert_eq!(kinds(new), ["push", "ref-created", "push"], "{all:#?}");
    assert_eq!(new[0]["ref"], "refs/heads/feature/x");
    assert_eq!(new[0]["detail"]["commits"], 1, "{}", new[0]);
    assert_eq!(new[0]["detail"]["created"], true);
    assert_eq!(new[0]["detail"]["forced"], false);
    let forced = &new[2];
    assert_eq!(forced["ref"], "refs/heads/feature/x");
    assert_eq!(forced["detail"]["forced"], true, "{forced}");
    assert_eq!(forced["detail"]["created"], false);
    assert_eq!(forced["detail"]["old"], feature1.as_str());
    assert_eq!(forced["detail"]["new"], feature2.as_str());
    assert_eq!(forced["detail"]["commits"], 1, "{forced}");

    // A deletion.
    s.git(
        &s.alice,
        &work,
        &["push", "-q", &url, "--delete", "feature/x"],
    )
    .ok();
    all = events(&s, &s.admin, "--repo app-web");
    let new = &all[6..];
    assert_eq!(kinds(new), ["ref-deleted"], "{all:#?}");
    assert_eq!(new[0]["ref"], "refs/heads/feature/x");
    assert_eq!(new[0]["actor"], "alice");
    assert_eq!(new[0]["detail"]["old"], feature2.as_str());
    assert_eq!(new[0]["detail"]["new"], ZERO_ID);

    // Ids increase.
    let all_ids = ids(&all);
    assert!(
        all_ids.windows(2).all(|w| w[0] < w[1]),
        "ids must increase: {all_ids:?}"
    );

    // Denied pushes leave no event.
    let before = last_id(&s);
    s.git(&s.alice, &work, &["checkout", "-q", "main"]).ok();
    s.git(&s.bob, &work, &["push", &url, "main:refs/heads/bobs"])
        .fails();
    s.git(
        &s.alice,
        &work,
        &["push", "--force", &url, &format!("{main1}:refs/heads/main")],
    )
    .fails()
    .says("DENIED");
    s.git(&s.alice, &work, &["push", &url, "--delete", "main"])
        .fails();
    assert_eq!(last_id(&s), before, "a refused push must not be an event");
    assert_eq!(events(&s, &s.admin, "--repo app-web").len(), 7);
}

#[test]
fn filters_and_visibility() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-web"), "main"])
        .ok();
    commit_file(&s, &s.alice, &work, "api.txt", "api\n", "Start the API");
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-api"), "main"])
        .ok();
    s.ssh(&s.admin, "repo create secret").ok();
    let secret = s.local_repo(&s.admin, "secret");
    s.git(&s.admin, &secret, &["push", "-q", &s.url("secret"), "main"])
        .ok();

    // The administrator sees everything, including the admin repository's pushes.
    let everything = events(&s, &s.admin, "");
    let seen = repos(&everything);
    for repo in ["admin", "app-web", "app-api", "secret"] {
        assert!(seen.contains(repo), "admin should see {repo}: {seen:?}");
    }

    // Alice sees only what she may read.
    let hers = events(&s, &s.alice, "");
    assert_eq!(
        repos(&hers).into_iter().collect::<Vec<_>>(),
        ["app-api", "app-web"],
        "{hers:#?}"
    );
    assert_eq!(hers.len(), 4, "{hers:#?}");
    s.ssh(&s.alice, "events --repo secret")
        .fails()
        .says("not found");
    s.ssh(&s.alice, "events --json --repo secret")
        .fails()
        .says("not found")
        .never_says("refs/heads");

    // --repo
    let web = events(&s, &s.alice, "--repo app-web");
    assert_eq!(kinds(&web), ["push", "ref-created"], "{web:#?}");
    assert!(web.iter().all(|e| e["repo"] == "app-web"));

    // --type
    let pushes = events(&s, &s.alice, "--type push");
    assert_eq!(pushes.len(), 2, "{pushes:#?}");
    assert!(pushes.iter().all(|e| e["type"] == "push"));
    assert_eq!(
        repos(&pushes).into_iter().collect::<Vec<_>>(),
        ["app-api", "app-web"]
    );
    let admin_pushes = events(&s, &s.admin, "--type push --repo secret");
    assert_eq!(kinds(&admin_pushes), ["push"]);

    // --since ID: only later events.
    let since = web[1]["id"].as_i64().unwrap();
    let later = events(&s, &s.alice, &format!("--since {since}"));
    assert!(
        ids(&later).iter().all(|id| *id > since),
        "{later:#?} after {since}"
    );
    assert_eq!(
        repos(&later).into_iter().collect::<Vec<_>>(),
        ["app-api"],
        "{later:#?}"
    );
    assert_eq!(later.len(), 2);
    let last = everything.last().unwrap()["id"].as_i64().unwrap();
    assert!(events(&s, &s.admin, &format!("--since {last}")).is_empty());

    // --limit: the newest N.
    let newest = events(&s, &s.admin, "--limit 2");
    assert_eq!(ids(&newest), ids(&everything[everything.len() - 2..]));
    let one = events(&s, &s.alice, "--repo app-web --limit 1");
    assert_eq!(ids(&one), [web[1]["id"].as_i64().unwrap()], "{one:#?}");
    // The newest events overall are secret's, which alice cannot see: her --limit
    // still means "her newest N".
    let hers_limited = events(&s, &s.alice, "--limit 1");
    assert_eq!(
        ids(&hers_limited),
        [hers.last().unwrap()["id"].as_i64().unwrap()],
        "alice's newest visible event with --limit 1: {hers_limited:#?}"
    );
}

/// Kills the `ssh` client when dropped (e.g. when an assertion fails).
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next JSON line from a following client.
#[track_caller]
fn next_line(rx: &Receiver<String>, s: &Server) -> Value {
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no event line on the stream ({e}); log:\n{}", s.log_text()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
}

#[test]
fn follow_streams_new_events_until_the_client_goes_away() {
    let s = Server::start();
    let url = s.url("app-web");
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();

    let mut client = Client(
        Command::new("ssh")
            .args(s.ssh_base(&s.alice))
            .arg("git@127.0.0.1")
            .arg("events --follow --json --repo app-web")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh starts"),
    );
    let stdout = client.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The history first (so the stream is up), one object per line.
    assert_eq!(next_line(&rx, &s)["type"], "push");
    assert_eq!(next_line(&rx, &s)["type"], "ref-created");

    for (n, subject) in ["Live one", "Live two"].into_iter().enumerate() {
        commit_file(&s, &s.alice, &work, &format!("live{n}.txt"), "x\n", subject);
        s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
        let tip = rev(&s, &work, "HEAD");
        let e = next_line(&rx, &s);
        assert_eq!(e["type"], "push", "{e}");
        assert_eq!(e["repo"], "app-web");
        assert_eq!(e["detail"]["new"], tip.as_str(), "{e}");
        assert_eq!(e["detail"]["commits"], 1);
    }
    assert!(
        client.0.try_wait().unwrap().is_none(),
        "the follower must stay connected"
    );
    assert!(s.metric("slipway_ssh_sessions_in_flight") >= 1.0);

    // The client goes away: the server notices and ends the session.
    drop(client);
    assert!(
        eventually(Duration::from_secs(30), || s
            .metric("slipway_ssh_sessions_in_flight")
            == 0.0),
        "the follow session never ended; log:\n{}",
        s.log_text()
    );
}

#[test]
fn events_held_back_by_a_crash_are_mailed_after_restart_exactly_once() {
    let mut s = Server::start_with(Options {
        env: vec![("SLIPWAY_FAILPOINTS", "rules-hold".into())],
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    let url = s.url("app-web");
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "a.txt", "a\n", "Before the crash");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();

    // Stored before the push was acknowledged …
    let stored = events(&s, &s.admin, "--repo app-web --type push");
    assert_eq!(stored.len(), 1, "{stored:#?}");
    // … but the engine is held: nothing is mailed (it polls every 2 s; give it more).
    std::thread::sleep(Duration::from_secs(5));
    assert!(mails(&s).is_empty(), "held engine mailed: {:?}", mails(&s));

    s.kill9();
    s.spawn();
    let after_crash = wait_for_mail(&s, "Before the crash");
    assert_eq!(after_crash.len(), 1, "{after_crash:?}");
    assert!(after_crash[0].1.contains("app-web"), "{}", after_crash[0].1);
    wait_outbox_empty(&s);

    // A second, normal restart must not mail the first push again.
    s.stop();
    s.spawn();
    commit_file(&s, &s.alice, &work, "b.txt", "b\n", "After the restart");
    // The restarted server listens on a new port.
    let url = s.url("app-web");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    wait_for_mail(&s, "After the restart");
    wait_outbox_empty(&s);
    let all = mails(&s);
    assert_eq!(
        all.len(),
        2,
        "one mail per push, none twice: {:?}",
        all.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter()
            .filter(|(_, t)| t.contains("Before the crash"))
            .count(),
        1
    );
}

#[test]
fn a_crashed_rules_engine_is_restarted_and_loses_nothing() {
    let mut s = Server::start();
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    let url = s.url("app-web");
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "a.txt", "a\n", "Warm up");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    // Once this is mailed, the engine's cursor is past every event so far.
    wait_for_mail(&s, "Warm up");
    wait_outbox_empty(&s);

    // Now the engine panics on its next batch: the one holding this push.
    s.stop();
    s.spawn_env(&[("SLIPWAY_FAILPOINTS", "rules-panic")]);
    commit_file(&s, &s.alice, &work, "b.txt", "b\n", "Despite the panic");
    let url = s.url("app-web");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    wait_for_mail(&s, "Despite the panic");
    wait_outbox_empty(&s);
    assert_eq!(mails(&s).len(), 2, "{:?}", mails(&s));
    assert_eq!(
        s.metric(r#"slipway_actor_restarts_total{actor="rules"}"#),
        1.0,
        "{}",
        s.metrics()
    );
    let log = s.log_text();
    assert!(
        log.contains("rules-panic") || log.contains("rules engine failed"),
        "the log should tell of the failure:\n{log}"
    );
}

#[test]
fn event_metrics() {
    let s = Server::start();
    let push = r#"slipway_events_total{source="git",type="push"}"#;
    let created = r#"slipway_events_total{source="git",type="ref-created"}"#;
    let pushes_before = s.metric(push);
    let created_before = s.metric(created);
    let url = s.url("app-web");
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    commit_file(&s, &s.alice, &work, "a.txt", "a\n", "More");
    s.git(&s.alice, &work, &["push", "-q", &url, "main"]).ok();
    assert_eq!(s.metric(push), pushes_before + 2.0, "{}", s.metrics());
    assert_eq!(s.metric(created), created_before + 1.0, "{}", s.metrics());
    let text = s.metrics();
    assert!(
        text.lines()
            .any(|l| l.starts_with(r#"slipway_actor_mailbox_depth{actor="bus"} "#)),
        "{text}"
    );
    assert!(
        eventually(Duration::from_secs(10), || s
            .metric(r#"slipway_actor_mailbox_depth{actor="bus"}"#)
            == 0.0),
        "the bus mailbox should be empty at rest:\n{}",
        s.metrics()
    );
}
