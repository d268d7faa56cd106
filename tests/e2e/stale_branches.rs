//! Deleting stale branches: `branch reap REPO` on demand (dry run, age, merged-only,
//! keep patterns), as a scheduled rule, with compare-and-swap against concurrent
//! pushes, and with an event and an audit line per deletion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const ZERO_ID: &str = "0000000000000000000000000000000000000000";
/// Long before any `--older-than 30d`.
const OLD: &str = "2020-01-01T00:00:00Z";
const OLDER_STILL: &str = "2019-06-01T00:00:00Z";

/// Commits `file` in `dir` as `key`, dated `date` (author and committer) if given.
fn commit_at(s: &Server, key: &Key, dir: &Path, file: &str, message: &str, date: Option<&str>) {
    std::fs::write(dir.join(file), format!("{message}\n")).unwrap();
    s.git(key, dir, &["add", file]).ok();
    let mut cmd = s.git_cmd(key, dir);
    cmd.args(["commit", "-q", "-m", message]);
    if let Some(date) = date {
        cmd.env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date);
    }
    run(&mut cmd).ok();
}

/// `git checkout -q -b BRANCH FROM` in `dir`.
fn branch_from(s: &Server, key: &Key, dir: &Path, branch: &str, from: &str) {
    s.git(key, dir, &["checkout", "-q", "-b", branch, from])
        .ok();
}

/// A local repository (as `key`) whose `main` has only an old commit, with branches:
/// `old/a`, `old/b` and `release/1.0` (old tips) and `recent` (a tip from now).
/// Pushed whole to `repo`.
fn stale_repo(s: &Server, key: &Key, repo: &str) -> PathBuf {
    let dir = s.scratch(&format!("{repo}-{}", key.name));
    s.git(key, &dir, &["init", "-q", "-b", "main"]).ok();
    commit_at(s, key, &dir, "README.md", "An old start", Some(OLDER_STILL));
    for branch in ["old/a", "old/b", "release/1.0"] {
        branch_from(s, key, &dir, branch, "main");
        commit_at(
            s,
            key,
            &dir,
            &format!("{}.txt", branch.replace('/', "-")),
            &format!("Old work on {branch}"),
            Some(OLD),
        );
    }
    branch_from(s, key, &dir, "recent", "main");
    commit_at(s, key, &dir, "recent.txt", "Recent work", None);
    s.git(key, &dir, &["checkout", "-q", "main"]).ok();
    s.git(key, &dir, &["push", "-q", &s.url(repo), "--all"])
        .ok();
    dir
}

/// Branch (short name) → tip, as the server has them.
fn heads(s: &Server, repo: &str) -> BTreeMap<String, String> {
    let out = s
        .git(&s.admin, s.dir.path(), &["ls-remote", &s.url(repo)])
        .ok();
    out.stdout
        .lines()
        .filter_map(|l| {
            let (id, name) = l.split_once('\t')?;
            let short = name.strip_prefix("refs/heads/")?;
            Some((short.to_string(), id.to_string()))
        })
        .collect()
}

fn names(map: &BTreeMap<String, String>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

/// `branch reap ARGS --json` as `key`: the branches judged stale.
#[track_caller]
fn reap(s: &Server, key: &Key, args: &str) -> Vec<Value> {
    let out = s.ssh(key, &format!("branch reap {args} --json")).ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("branch reap --json is not JSON ({e}):\n{out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("branch reap --json is not an array:\n{out}"))
        .clone()
}

/// Branch → result, sorted by branch.
fn results(branches: &[Value]) -> BTreeMap<String, String> {
    branches
        .iter()
        .map(|b| {
            (
                b["branch"].as_str().expect("branch").to_string(),
                b["result"].as_str().expect("result").to_string(),
            )
        })
        .collect()
}

/// `events --json ARGS` as the administrator.
#[track_caller]
fn events(s: &Server, args: &str) -> Vec<Value> {
    let out = s.ssh(&s.admin, &format!("events --json {args}")).ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("events --json is not JSON ({e}):\n{out}"));
    v.as_array().expect("an array").clone()
}

#[test]
fn dry_run_lists_and_a_real_run_deletes_only_old_unprotected_branches() {
    let s = Server::start();
    stale_repo(&s, &s.alice, "app-web");
    let before = heads(&s, "app-web");
    assert_eq!(
        names(&before),
        ["main", "old/a", "old/b", "recent", "release/1.0"]
    );

    // A dry run lists the old branches (not main, although it is old too) and deletes
    // nothing.
    let listed = reap(&s, &s.admin, "app-web --dry-run --older-than 30d");
    let r = results(&listed);
    assert_eq!(
        r.keys().map(String::as_str).collect::<Vec<_>>(),
        ["old/a", "old/b", "release/1.0"],
        "{listed:#?}"
    );
    assert!(r.values().all(|v| v == "would-delete"), "{r:?}");
    for b in &listed {
        let name = b["branch"].as_str().unwrap();
        assert_eq!(b["repo"], "app-web");
        assert_eq!(b["tip"], before[name].as_str(), "{b}");
        assert!(b["age_days"].as_f64().unwrap() > 365.0, "{b}");
    }
    s.ssh(&s.admin, "branch reap app-web --dry-run --older-than 30d")
        .ok()
        .says("would-delete")
        .says("old/a");
    assert_eq!(heads(&s, "app-web"), before, "a dry run deletes nothing");

    // The real run, keeping release branches.
    let done = reap(&s, &s.admin, "app-web --older-than 30d --keep 'release/*'");
    let r = results(&done);
    assert_eq!(
        r,
        BTreeMap::from([
            ("old/a".to_string(), "deleted".to_string()),
            ("old/b".to_string(), "deleted".to_string()),
        ]),
        "{done:#?}"
    );
    let after = heads(&s, "app-web");
    assert_eq!(names(&after), ["main", "recent", "release/1.0"]);
    for name in ["main", "recent", "release/1.0"] {
        assert_eq!(after[name], before[name], "{name} must not change");
    }
}

#[test]
fn merged_only_deletes_only_branches_reachable_from_main() {
    let s = Server::start();
    let dir = s.scratch("merged");
    let me = &s.alice;
    s.git(me, &dir, &["init", "-q", "-b", "main"]).ok();
    commit_at(&s, me, &dir, "README.md", "Old start", Some(OLDER_STILL));
    branch_from(&s, me, &dir, "merged-old", "main");
    commit_at(&s, me, &dir, "m.txt", "Merged long ago", Some(OLD));
    s.git(me, &dir, &["checkout", "-q", "main"]).ok();
    s.git(me, &dir, &["merge", "-q", "--ff-only", "merged-old"])
        .ok();
    commit_at(&s, me, &dir, "now.txt", "Main moves on", None);
    branch_from(&s, me, &dir, "unmerged-old", "main~1");
    commit_at(&s, me, &dir, "u.txt", "Never merged", Some(OLD));
    s.git(me, &dir, &["checkout", "-q", "main"]).ok();
    s.git(me, &dir, &["push", "-q", &s.url("app-web"), "--all"])
        .ok();
    let before = heads(&s, "app-web");
    assert_eq!(names(&before), ["main", "merged-old", "unmerged-old"]);

    let done = reap(&s, &s.admin, "app-web --older-than 30d --merged-only");
    assert_eq!(
        results(&done),
        BTreeMap::from([("merged-old".to_string(), "deleted".to_string())]),
        "{done:#?}"
    );
    let after = heads(&s, "app-web");
    assert_eq!(names(&after), ["main", "unmerged-old"]);
    assert_eq!(after["unmerged-old"], before["unmerged-old"]);
}

#[test]
fn each_deletion_is_an_event_and_an_audit_line() {
    let s = Server::start();
    stale_repo(&s, &s.alice, "app-web");
    let before = heads(&s, "app-web");
    reap(&s, &s.admin, "app-web --older-than 30d --keep 'release/*'");

    let deleted = events(&s, "--repo app-web --type ref-deleted");
    let refs: Vec<&str> = deleted.iter().map(|e| e["ref"].as_str().unwrap()).collect();
    assert_eq!(
        refs,
        ["refs/heads/old/a", "refs/heads/old/b"],
        "{deleted:#?}"
    );
    for e in &deleted {
        let branch = e["ref"].as_str().unwrap().trim_start_matches("refs/heads/");
        assert_eq!(e["source"], "git");
        assert_eq!(e["actor"], "admin", "who asked: {e}");
        assert_eq!(e["repo"], "app-web");
        let d = &e["detail"];
        assert!(
            d["reason"].as_str().unwrap_or_default().contains("stale"),
            "{e}"
        );
        assert_eq!(d["old"], before[branch].as_str(), "{e}");
        assert_eq!(d["new"], ZERO_ID);
        assert_eq!(d["trigger"], "command", "{e}");
    }
    // Readers of the repository see them too.
    assert_eq!(
        s.ssh(&s.alice, "events --json --repo app-web --type ref-deleted")
            .ok()
            .stdout
            .matches("\"ref-deleted\"")
            .count(),
        2
    );

    let out = s.ssh(&s.admin, "audit --json --repo app-web").ok();
    let audit: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let reaped: Vec<&Value> = audit
        .iter()
        .filter(|a| a["action"] == "branch:reap")
        .collect();
    assert_eq!(reaped.len(), 2, "{audit:#?}");
    for (a, branch) in reaped.iter().zip(["old/a", "old/b"]) {
        assert_eq!(a["kind"], "ref-update", "{a}");
        assert_eq!(a["result"], "ok", "{a}");
        assert_eq!(a["user"], "admin", "{a}");
        assert_eq!(a["repo"], "app-web");
        assert_eq!(a["ref"], format!("refs/heads/{branch}").as_str(), "{a}");
        assert_eq!(a["old_id"], before[branch].as_str(), "{a}");
        assert_eq!(a["new_id"], ZERO_ID, "{a}");
    }
}

#[test]
fn a_branch_pushed_to_while_being_reaped_survives() {
    let mut s = Server::start();
    let work = stale_repo(&s, &s.alice, "app-web");
    let before = heads(&s, "app-web");
    // Prepare the new commit on old/b now, so that the push is quick.
    s.git(&s.alice, &work, &["checkout", "-q", "old/b"]).ok();
    commit_at(&s, &s.alice, &work, "fresh.txt", "Fresh work", None);
    let fresh = s
        .git(&s.alice, &work, &["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();

    s.stop();
    s.spawn_env(&[("SLIPWAY_FAILPOINTS", "reaper-before-delete")]);
    let url = s.url("app-web");
    let (out, push) = std::thread::scope(|scope| {
        let reaper = scope.spawn(|| s.ssh(&s.admin, "branch reap app-web --older-than 30d --json"));
        // The reaper judges as soon as the command runs, then waits 3 s before deleting.
        assert!(
            eventually(Duration::from_secs(20), || s
                .metric("slipway_ssh_sessions_in_flight")
                >= 1.0),
            "the reap command never started"
        );
        std::thread::sleep(Duration::from_millis(200));
        let push = s.git(&s.alice, &work, &["push", "-q", &url, "old/b"]);
        (reaper.join().unwrap(), push)
    });
    push.ok();
    let out = out.ok();
    let done: Vec<Value> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let r = results(&done);
    assert_eq!(r.get("old/a").map(String::as_str), Some("deleted"), "{r:?}");
    assert_eq!(
        r.get("release/1.0").map(String::as_str),
        Some("deleted"),
        "{r:?}"
    );
    let b = r.get("old/b").expect("old/b was judged stale");
    assert!(
        b.starts_with("skipped") && b.contains("changed meanwhile"),
        "old/b: {b}"
    );

    let after = heads(&s, "app-web");
    assert_eq!(names(&after), ["main", "old/b", "recent"]);
    assert_eq!(after["old/b"], fresh, "the new push must stay");
    assert_eq!(after["main"], before["main"]);
    let deleted = events(&s, "--repo app-web --type ref-deleted");
    let refs: Vec<&str> = deleted.iter().map(|e| e["ref"].as_str().unwrap()).collect();
    assert_eq!(
        refs,
        ["refs/heads/old/a", "refs/heads/release/1.0"],
        "no event for the branch that survived: {deleted:#?}"
    );
}

#[test]
fn a_scheduled_rule_reaps_matching_repositories_on_its_own() {
    let s = Server::start();
    let work = stale_repo(&s, &s.alice, "app-web");
    // A repository the rule does not cover.
    stale_repo(&s, &s.admin, "tools");
    let tools = heads(&s, "tools");
    s.push_admin_file(
        "rules.yaml",
        r#"rules:
  - name: tidy
    schedule: "every 2s"
    action:
      delete-stale-branches: { repo: "app-*", older-than: 30d, keep: [main] }
"#,
    )
    .ok()
    .says("configuration applied");

    let gone = eventually(Duration::from_secs(60), || {
        names(&heads(&s, "app-web")) == ["main", "recent"]
    });
    assert!(
        gone,
        "old branches still there: {:?}\nlog:\n{}",
        heads(&s, "app-web"),
        s.log_text()
    );
    let deleted = events(&s, "--repo app-web --type ref-deleted");
    let refs: Vec<&str> = deleted.iter().map(|e| e["ref"].as_str().unwrap()).collect();
    assert_eq!(
        refs,
        [
            "refs/heads/old/a",
            "refs/heads/old/b",
            "refs/heads/release/1.0"
        ],
        "{deleted:#?}"
    );
    for e in &deleted {
        assert_eq!(e["detail"]["trigger"], "schedule", "{e}");
        assert_eq!(e["actor"], "rule:tidy", "{e}");
        assert!(
            e["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("stale"),
            "{e}"
        );
    }

    // A later run reaps a newly pushed old branch too; that run started after the first
    // one had gone through every repository, so `tools` has been looked at.
    branch_from(&s, &s.alice, &work, "old/late", "main");
    commit_at(&s, &s.alice, &work, "late.txt", "Late but old", Some(OLD));
    s.git(
        &s.alice,
        &work,
        &["push", "-q", &s.url("app-web"), "old/late"],
    )
    .ok();
    assert!(
        eventually(Duration::from_secs(60), || !heads(&s, "app-web")
            .contains_key("old/late")),
        "old/late was not reaped"
    );
    assert_eq!(
        heads(&s, "tools"),
        tools,
        "tools is not covered by the rule"
    );
    assert!(events(&s, "--repo tools --type ref-deleted").is_empty());
}

#[test]
fn permissions_and_errors() {
    let s = Server::start();
    stale_repo(&s, &s.alice, "app-web");
    let before = heads(&s, "app-web");

    s.ssh(&s.alice, "branch reap app-web --older-than 30d")
        .fails()
        .says("branch:reap");
    s.ssh(&s.bob, "branch reap app-web --older-than 30d --dry-run")
        .fails()
        .says("branch:reap");
    assert_eq!(heads(&s, "app-web"), before);

    s.ssh(&s.admin, "branch reap app-web")
        .fails()
        .says("no delete-stale-branches rule")
        .says("--older-than");
    s.ssh(&s.admin, "branch reap nosuch --older-than 30d")
        .fails()
        .says("not found");
    assert_eq!(heads(&s, "app-web"), before);
}
