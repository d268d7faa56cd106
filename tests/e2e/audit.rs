//! The audit log: every authentication, SSH command and ref update, readable by
//! administrators with `audit`, filtered, and kept across restarts and crashes.

use serde_json::Value;

use crate::harness::*;

const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// `audit --json ARGS` as admin: the entries, oldest first.
fn audit(s: &Server, args: &str) -> Vec<Value> {
    let out = s.ssh(&s.admin, &format!("audit --json {args}")).ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --json is not JSON ({e}):\n{out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("audit --json is not an array:\n{out}"))
        .clone()
}

/// The entries matching every `(field, value)` pair.
fn matching<'a>(entries: &'a [Value], fields: &[(&str, &str)]) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| fields.iter().all(|(k, v)| e[*k].as_str() == Some(*v)))
        .collect()
}

/// The one entry matching `fields` (panics, with the log, if there is not exactly one).
#[track_caller]
fn the_entry<'a>(entries: &'a [Value], fields: &[(&str, &str)]) -> &'a Value {
    let found = matching(entries, fields);
    assert_eq!(
        found.len(),
        1,
        "expected one entry with {fields:?}, found {}:\n{}",
        found.len(),
        serde_json::to_string_pretty(entries).unwrap()
    );
    found[0]
}

#[track_caller]
fn assert_from_loopback(entry: &Value) {
    let peer = entry["peer"].as_str().unwrap_or_default();
    assert!(
        peer.starts_with("127.0.0.1:"),
        "peer is {peer:?} in {entry}"
    );
}

fn ids(entries: &[Value]) -> Vec<i64> {
    entries
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

#[test]
fn authentications_commands_and_ref_updates_are_recorded() {
    let s = Server::start();
    let alice = &s.alice;
    let alice_fp = alice.fingerprint();
    let mallory_fp = s.mallory.fingerprint();

    s.ssh(alice, "whoami").ok();
    s.ssh(&s.mallory, "whoami").fails();
    s.ssh(alice, "audit").fails();
    let w = s.local_repo(alice, "w");
    let first = s
        .git(alice, &w, &["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    commit_file(&s, alice, &w, "b.txt", "b\n", "second");
    let second = s
        .git(alice, &w, &["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    s.git(alice, &w, &["push", &s.url("app-x"), "main"]).ok();
    s.git(
        alice,
        &w,
        &[
            "push",
            &s.url("app-x"),
            &format!("+{first}:refs/heads/main"),
        ],
    )
    .fails()
    .says("DENIED");

    let log = audit(&s, "--limit 1000");
    for e in &log {
        assert!(
            e["id"].as_i64().is_some() && e["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
    }

    // Authentication: accepted with alice's key, refused for the unknown one.
    let auth = matching(
        &log,
        &[("kind", "auth"), ("user", "alice"), ("result", "ok")],
    );
    assert!(!auth.is_empty(), "no auth entry for alice");
    for e in &auth {
        assert_eq!(e["key_fp"], alice_fp.as_str());
        assert_from_loopback(e);
    }
    let refused = matching(&log, &[("kind", "auth"), ("key_fp", &mallory_fp)]);
    assert!(!refused.is_empty(), "no auth entry for mallory's key");
    for e in &refused {
        assert_eq!(e["result"], "denied", "{e}");
        assert_eq!(e["user"], Value::Null, "an unknown key has no user: {e}");
        assert_from_loopback(e);
    }
    assert!(matching(&log, &[("user", "mallory")]).is_empty());

    // Commands: admin commands (ok and failed) and git services.
    let whoami = the_entry(
        &log,
        &[("kind", "command"), ("user", "alice"), ("action", "whoami")],
    );
    assert_eq!(whoami["result"], "ok");
    assert_eq!(whoami["key_fp"], alice_fp.as_str());
    assert_from_loopback(whoami);
    let refused_audit = the_entry(
        &log,
        &[("kind", "command"), ("user", "alice"), ("action", "audit")],
    );
    assert_eq!(refused_audit["result"], "failed");
    let pushes = matching(
        &log,
        &[("kind", "command"), ("user", "alice"), ("repo", "app-x")],
    );
    assert_eq!(pushes.len(), 2, "two git-receive-pack commands on app-x");
    for e in &pushes {
        assert!(
            e["action"].as_str().unwrap().contains("git-receive-pack"),
            "{e}"
        );
        assert_eq!(e["key_fp"], alice_fp.as_str());
        assert_from_loopback(e);
    }

    // Ref updates: old and new ids, the decision and the deciding statement.
    let created = the_entry(
        &log,
        &[("kind", "ref-update"), ("repo", "app-x"), ("result", "ok")],
    );
    assert_eq!(created["user"], "alice");
    assert_eq!(created["key_fp"], alice_fp.as_str());
    assert_eq!(created["ref"], "refs/heads/main");
    assert_eq!(created["old_id"], ZERO_ID);
    assert_eq!(created["new_id"], second.as_str());
    assert_eq!(created["action"], "git:create-ref");
    assert!(
        created["statement"]
            .as_str()
            .unwrap()
            .starts_with("developer[0]"),
        "{created}"
    );
    assert_from_loopback(created);
    let denied = the_entry(
        &log,
        &[
            ("kind", "ref-update"),
            ("repo", "app-x"),
            ("result", "denied"),
        ],
    );
    assert_eq!(denied["user"], "alice");
    assert_eq!(denied["ref"], "refs/heads/main");
    assert_eq!(denied["old_id"], second.as_str());
    assert_eq!(denied["new_id"], first.as_str());
    assert_eq!(denied["action"], "git:force-push");
    assert!(
        denied["statement"]
            .as_str()
            .unwrap()
            .starts_with("developer[1]"),
        "{denied}"
    );
    assert_from_loopback(denied);
    assert!(created["id"].as_i64() < denied["id"].as_i64());

    // The harness's own change of access.yaml is there too, by admin.
    let admin_update = matching(
        &log,
        &[
            ("kind", "ref-update"),
            ("repo", "admin"),
            ("user", "admin"),
            ("result", "ok"),
        ],
    );
    assert!(!admin_update.is_empty());

    // Oldest first.
    let all = ids(&log);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");

    // The text form shows the same lines.
    s.ssh(&s.admin, "audit")
        .ok()
        .says("ref-update")
        .says("user=alice")
        .says("ref=refs/heads/main")
        .says(&mallory_fp);
}

#[test]
fn audit_filters_and_who_may_read_it() {
    let s = Server::start();
    let w = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &w, &["push", &s.url("app-x"), "main"]).ok();
    s.ssh(&s.bob, "whoami").ok();
    s.ssh(&s.admin, "repo create app-y").ok();

    let alice = audit(&s, "--user alice");
    assert!(!alice.is_empty());
    assert!(alice.iter().all(|e| e["user"] == "alice"), "{alice:?}");
    assert!(!matching(&alice, &[("kind", "ref-update")]).is_empty());

    let app_x = audit(&s, "--repo app-x");
    assert!(!app_x.is_empty());
    assert!(app_x.iter().all(|e| e["repo"] == "app-x"), "{app_x:?}");
    assert!(!matching(&app_x, &[("kind", "ref-update")]).is_empty());
    assert!(!matching(&app_x, &[("kind", "command")]).is_empty());

    let both = audit(&s, "--user alice --repo app-x");
    assert!(!both.is_empty());
    assert!(both
        .iter()
        .all(|e| e["user"] == "alice" && e["repo"] == "app-x"));
    assert!(audit(&s, "--user bob --repo app-x").is_empty());

    assert!(audit(&s, "--since 2999-01-01").is_empty());
    assert!(audit(&s, "--since 2999-01-01T00:00:00Z").is_empty());
    let recent = audit(&s, "--since 1h");
    assert!(!recent.is_empty());
    assert!(!matching(&recent, &[("user", "alice")]).is_empty());

    let everything = audit(&s, "--limit 1000");
    let newest_seen = *ids(&everything).last().unwrap();
    let two = audit(&s, "--limit 2");
    assert_eq!(two.len(), 2, "{two:?}");
    let two = ids(&two);
    // The newest two: at least this call's own login came after the previous listing.
    assert!(two[0] < two[1], "{two:?}");
    assert!(
        two[0] >= newest_seen && two[1] > newest_seen,
        "{two:?} vs {newest_seen}"
    );

    s.ssh(&s.admin, "audit --since yesterday")
        .fails()
        .says("--since `yesterday` is not a time")
        .never_says("ref-update");

    // Non-administrators may not read it.
    let out = s.ssh(&s.alice, "audit").fails().says("audit:read");
    assert!(out.stdout.is_empty(), "{out}");
    s.ssh(&s.bob, "audit --json").fails().says("audit:read");
}

#[test]
fn the_audit_log_survives_a_restart_and_kill_9() {
    let mut s = Server::start();
    let w = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &w, &["push", &s.url("app-x"), "main"]).ok();
    s.ssh(&s.mallory, "whoami").fails();
    let before = audit(&s, "--limit 1000");
    assert!(!matching(&before, &[("kind", "ref-update"), ("repo", "app-x")]).is_empty());

    let assert_kept = |old: &[Value], new: &[Value]| {
        for e in old {
            let kept = new.iter().find(|n| n["id"] == e["id"]);
            assert_eq!(kept, Some(e), "entry lost or changed");
        }
    };

    s.stop();
    s.spawn();
    let after_restart = audit(&s, "--limit 1000");
    assert_kept(&before, &after_restart);

    // A push right before the crash is in the log after it.
    commit_file(&s, &s.alice, &w, "c.txt", "c\n", "before the crash");
    let tip = s
        .git(&s.alice, &w, &["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    s.git(&s.alice, &w, &["push", &s.url("app-x"), "main"]).ok();
    let before_crash = audit(&s, "--limit 1000");
    s.kill9();
    s.spawn();
    let after_crash = audit(&s, "--limit 1000");
    assert_kept(&before, &after_crash);
    assert_kept(&before_crash, &after_crash);
    let update = the_entry(
        &after_crash,
        &[("kind", "ref-update"), ("repo", "app-x"), ("new_id", &tip)],
    );
    assert_eq!(update["result"], "ok");
    assert_eq!(update["user"], "alice");
    // New entries continue after the old ones.
    let newest_before = *ids(&before_crash).last().unwrap();
    assert!(*ids(&after_crash).last().unwrap() > newest_before);
}
