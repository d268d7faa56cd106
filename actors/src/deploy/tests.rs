//! The supervisor's passes against a real store, with agents simulated through the
//! same store calls the HTTP API makes (take, acknowledge, complete a command).

use std::collections::BTreeMap;

use serde_json::json;

use super::advance::{advance_all, Clock, Effects, IN_PLACE};
use crate::store::{CommandReport, NewDeployment, Store, StoreError};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

fn agent(store: &Store, name: &str, role: &str) {
    let tags: BTreeMap<String, String> = [("role".to_string(), role.to_string())].into();
    let token = format!("token-{name}");
    store
        .agent_token_create(&token, &tags, "admin", f64::MAX)
        .unwrap();
    store
        .agent_register(&token, name, &format!("cred-{name}"), "0.1")
        .unwrap()
        .unwrap();
}

fn deploy(store: &Store, config: serde_json::Value, auto_rollback: bool, bundle: &str) -> i64 {
    deploy_with(store, config, auto_rollback, bundle, |_| {})
}

/// Like [`deploy`], with the settings changed by `edit`.
fn deploy_with(
    store: &Store,
    config: serde_json::Value,
    auto_rollback: bool,
    bundle: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> i64 {
    let mut settings = json!({
        "config": config,
        "tags": [["role=web"]],
        "auto_rollback": { "failure": auto_rollback, "alarm": auto_rollback, "stop": false },
        "bake_seconds": 0.0,
        "file_exists_behavior": "DISALLOW",
    });
    edit(&mut settings);
    store
        .deploy_tx(|t| {
            t.insert_deployment(&NewDeployment {
                application: "web".into(),
                group_name: "prod".into(),
                build_id: Some(1),
                artifact: Some("primary".into()),
                bundle_sha256: bundle.into(),
                commit: "c".repeat(40),
                creator: "alice".into(),
                rollback_of: None,
                settings,
            })
        })
        .map(|d| d.id)
        .unwrap()
}

thread_local! {
    /// When the alarms were last read, as the passes of this test see it (`None`: now).
    static ALARMS_READ_AT: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

fn pass(store: &Store) {
    pass_losing_after(store, 60.0);
}

/// A pass in which an agent silent for `agent_lost` seconds has lost its event.
fn pass_losing_after(store: &Store, agent_lost: f64) {
    let alarms_read_at = ALARMS_READ_AT.with(|c| c.get()).unwrap_or_else(now);
    store
        .deploy_tx(|t| {
            let mut fx = Effects::default();
            advance_all(
                t,
                &mut fx,
                Clock {
                    now: now(),
                    agent_lost,
                    alarms_read_at,
                },
            )?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs passes and lets every agent answer its commands until nothing moves; `fails`
/// names (deployment, agent, event) that fail. Answers the order in which hosts started.
fn run_to_end(store: &Store, agents: &[&str], fails: &[(i64, &str, &str)]) -> Vec<String> {
    let mut started = Vec::new();
    for _ in 0..200 {
        pass(store);
        let mut any = false;
        for a in agents {
            store.agent_seen(a, "0.1").unwrap();
            if let Some(c) = store.next_command(a).unwrap() {
                any = true;
                if c.event == IN_PLACE[0] {
                    started.push(a.to_string());
                }
                assert_eq!(
                    store.ack_command(a, c.id).unwrap().as_deref(),
                    Some("IN_PROGRESS")
                );
                let failed = fails.contains(&(c.deployment_id, a, c.event.as_str()));
                let report = CommandReport {
                    status: if failed { "FAILED" } else { "SUCCEEDED" }.into(),
                    error_code: if failed { 4 } else { 0 },
                    script: failed.then(|| "scripts/check.sh".into()),
                    message: failed.then(|| "exited with 1".into()),
                    log: failed.then(|| "[stdout] not healthy".into()),
                };
                assert!(store.complete_command(a, c.id, &report).unwrap());
            }
        }
        if !any {
            pass(store);
            if (0..3).all(|_| {
                agents
                    .iter()
                    .all(|a| store.next_command(a).unwrap().is_none())
            }) {
                break;
            }
        }
    }
    started
}

#[test]
fn all_at_once_runs_every_event_on_every_host_in_order() {
    let (_d, store) = store();
    for a in ["w1", "w2", "w3"] {
        agent(&store, a, "web");
    }
    agent(&store, "db1", "db");
    let id = deploy(&store, json!("all-at-once"), false, "b1");
    run_to_end(&store, &["w1", "w2", "w3", "db1"], &[]);
    let d = store.deployment(id).unwrap().unwrap();
    assert_eq!(d.status, "SUCCEEDED", "{d:?}");
    let (hosts, events) = store
        .deploy_tx(|t| Ok::<_, StoreError>((t.hosts(id)?, t.events(id)?)))
        .unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h.agent.as_str()).collect();
    assert_eq!(names, ["w1", "w2", "w3"], "the db host is not in the group");
    assert!(events.iter().all(|e| e.status == "SUCCEEDED"));
    for h in ["w1", "w2", "w3"] {
        let mine: Vec<&str> = events
            .iter()
            .filter(|e| e.agent == h)
            .map(|e| e.event.as_str())
            .collect();
        assert_eq!(mine, IN_PLACE);
    }
}

#[test]
fn one_at_a_time_goes_host_by_host_and_failed_hosts_go_first_next_time() {
    let (_d, store) = store();
    for a in ["w1", "w2", "w3"] {
        agent(&store, a, "web");
    }
    let first = deploy(&store, json!("all-at-once"), false, "b1");
    run_to_end(
        &store,
        &["w1", "w2", "w3"],
        &[(first, "w2", "ValidateService")],
    );
    // All at once: one host failing still leaves successes.
    assert_eq!(
        store.deployment(first).unwrap().unwrap().status,
        "SUCCEEDED"
    );
    let second = deploy(&store, json!("one-at-a-time"), false, "b2");
    let order = run_to_end(&store, &["w1", "w2", "w3"], &[]);
    assert_eq!(order.first().map(String::as_str), Some("w2"), "{order:?}");
    assert_eq!(order.len(), 3);
    assert_eq!(
        store.deployment(second).unwrap().unwrap().status,
        "SUCCEEDED"
    );
}

#[test]
fn a_failed_deployment_rolls_back_to_the_last_good_revision() {
    let (_d, store) = store();
    for a in ["w1", "w2"] {
        agent(&store, a, "web");
    }
    let good = deploy(&store, json!("one-at-a-time"), true, "good");
    run_to_end(&store, &["w1", "w2"], &[]);
    assert_eq!(store.deployment(good).unwrap().unwrap().status, "SUCCEEDED");
    let bad = deploy(&store, json!("one-at-a-time"), true, "bad");
    run_to_end(
        &store,
        &["w1", "w2"],
        &[
            (bad, "w1", "ValidateService"),
            (bad, "w2", "ValidateService"),
        ],
    );
    let bad_row = store.deployment(bad).unwrap().unwrap();
    assert_eq!(bad_row.status, "FAILED", "{bad_row:?}");
    let reason = bad_row.reason.unwrap();
    assert!(reason.contains("rolling back"), "{reason}");
    let rollback = store
        .deployment(bad_row.rollback_id.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rollback.bundle_sha256, "good");
    assert_eq!(rollback.rollback_of, Some(bad));
    assert_eq!(rollback.creator, "rollback");
    assert_eq!(rollback.status, "SUCCEEDED", "{rollback:?}");
}

#[test]
fn without_a_matching_agent_the_deployment_fails_with_the_reason() {
    let (_d, store) = store();
    agent(&store, "db1", "db");
    let id = deploy(&store, json!("one-at-a-time"), true, "b1");
    pass(&store);
    let d = store.deployment(id).unwrap().unwrap();
    assert_eq!(d.status, "FAILED");
    assert!(d.reason.unwrap().contains("no registered agent matches"));
}

#[test]
fn alarms_have_the_last_word_and_a_firing_one_stops_and_rolls_back() {
    let (_d, store) = store();
    for a in ["w1", "w2"] {
        agent(&store, a, "web");
    }
    let alarms = |s: &mut serde_json::Value| {
        s["alarms"] = json!([{ "name": "paged", "alertmanager": { "alert": "Down" } }]);
    };
    // No reading since long ago: every host is done, but the deployment waits for one.
    ALARMS_READ_AT.with(|c| c.set(Some(1.0)));
    let good = deploy_with(&store, json!("all-at-once"), true, "good", alarms);
    run_to_end(&store, &["w1", "w2"], &[]);
    let waiting = store.deployment(good).unwrap().unwrap();
    assert_eq!(waiting.status, "IN_PROGRESS", "{waiting:?}");
    ALARMS_READ_AT.with(|c| c.set(None));
    pass(&store);
    assert_eq!(store.deployment(good).unwrap().unwrap().status, "SUCCEEDED");

    // A baking deployment is stopped by a firing alarm, and rolled back.
    let bad = deploy_with(&store, json!("all-at-once"), true, "bad", |s| {
        alarms(s);
        s["bake_seconds"] = json!(3600.0);
        s["file_exists_behavior"] = json!("OVERWRITE");
    });
    run_to_end(&store, &["w1", "w2"], &[]);
    assert_eq!(store.deployment(bad).unwrap().unwrap().status, "BAKING");
    store
        .deploy_tx(|t| {
            let mut fx = Effects::default();
            super::advance::stop_on_alarms(
                t,
                &mut fx,
                &[(bad, "alarm `paged` is firing".into())],
                now(),
            )?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let stopped = store.deployment(bad).unwrap().unwrap();
    assert_eq!(stopped.status, "STOPPED");
    let reason = stopped.reason.unwrap();
    assert!(
        reason.starts_with("alarm `paged` is firing; rolling back"),
        "{reason}"
    );
    let rollback = store
        .deployment(stopped.rollback_id.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rollback.bundle_sha256, "good");
    // The rollback takes the good deployment's file_exists_behavior, and is not watched.
    assert_eq!(rollback.settings["file_exists_behavior"], "DISALLOW");
    assert!(super::alarms::Watch::of(&rollback).is_none());
    run_to_end(&store, &["w1", "w2"], &[]);
    // It bakes as the group says (an hour here).
    assert_eq!(
        store.deployment(rollback.id).unwrap().unwrap().status,
        "BAKING"
    );
}

#[test]
fn deployments_are_created_then_queued_behind_the_active_one() {
    let (_d, store) = store();
    agent(&store, "w1", "web");
    let first = deploy(&store, json!("all-at-once"), false, "b1");
    let second = deploy(&store, json!("all-at-once"), false, "b2");
    let status = |id| store.deployment(id).unwrap().unwrap().status;
    assert_eq!(
        (status(first), status(second)),
        ("CREATED".into(), "CREATED".into())
    );
    pass(&store);
    assert_eq!(status(first), "IN_PROGRESS");
    assert_eq!(status(second), "QUEUED");
    run_to_end(&store, &["w1"], &[]);
    assert_eq!(
        (status(first), status(second)),
        ("SUCCEEDED".into(), "SUCCEEDED".into())
    );
}

/// An agent is heard from when it is handed a command, when it acknowledges it and while
/// it sends heartbeats, so a long poll before the command or a long lifecycle event does
/// not make it look lost; once it falls silent for the agent timeout, its event fails.
#[test]
fn a_busy_agent_is_heard_from_until_it_falls_silent() {
    const LOST_AFTER: f64 = 0.5;
    let quiet = || std::thread::sleep(std::time::Duration::from_millis(600));
    let (_d, store) = store();
    agent(&store, "w1", "web");
    let id = deploy(&store, json!("all-at-once"), false, "b1");
    let pass = || {
        pass_losing_after(&store, LOST_AFTER);
        store
            .deploy_tx(|t| t.events(id))
            .unwrap()
            .into_iter()
            .find(|e| e.event == IN_PLACE[0])
            .unwrap()
    };
    assert_eq!(pass().status, "READY");
    quiet(); // The agent's poll waited this long before the command came.
    let command = store.next_command("w1").unwrap().unwrap();
    assert_eq!(pass().status, "DISPATCHED");
    quiet();
    assert_eq!(
        store.ack_command("w1", command.id).unwrap().as_deref(),
        Some("IN_PROGRESS")
    );
    assert_eq!(pass().status, "IN_PROGRESS");
    quiet();
    assert_eq!(
        store
            .command_heartbeat("w1", command.id)
            .unwrap()
            .as_deref(),
        Some("IN_PROGRESS")
    );
    assert_eq!(pass().status, "IN_PROGRESS");
    quiet();
    let lost = pass();
    assert_eq!(lost.status, "FAILED");
    assert!(
        lost.message
            .unwrap()
            .contains("the agent stopped answering"),
        "{id}"
    );
    // Its next heartbeat learns that the server gave up on the command.
    assert_eq!(
        store
            .command_heartbeat("w1", command.id)
            .unwrap()
            .as_deref(),
        Some("FAILED")
    );
    assert_eq!(store.command_heartbeat("w2", command.id).unwrap(), None);
}

/// Every event records when it became READY, before it was dispatched and started (the
/// agents' dispatch latency is measured from it); an event handed out again after a
/// lost answer gets a new READY time, and writing it back unchanged keeps the old one.
#[test]
fn events_record_when_they_became_ready() {
    let (_d, store) = store();
    for a in ["w1", "w2"] {
        agent(&store, a, "web");
    }
    let id = deploy(&store, json!("all-at-once"), false, "b1");
    pass(&store);
    let first = store
        .deploy_tx(|t| t.events(id))
        .unwrap()
        .into_iter()
        .find(|e| e.agent == "w1" && e.status == "READY")
        .unwrap();
    let ready = first.ready.expect("a READY event has its ready time");
    // Written back as it is (still READY): the time stays.
    let kept = store
        .deploy_tx(|t| {
            t.update_event(&first)?;
            t.event(first.id)
        })
        .unwrap()
        .unwrap();
    assert_eq!(kept.ready, Some(ready));
    // Dispatched, then handed out again (READY once more): a new time.
    let c = store.next_command("w1").unwrap().unwrap();
    assert_eq!((c.id, c.ready), (first.id, Some(ready)));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let again = store
        .deploy_tx(|t| {
            let mut e = t.event(c.id)?.unwrap();
            e.status = "READY".into();
            e.dispatched = None;
            t.update_event(&e)?;
            t.event(c.id)
        })
        .unwrap()
        .unwrap();
    assert!(again.ready.unwrap() > ready, "{again:?}");

    run_to_end(&store, &["w1", "w2"], &[]);
    let events = store.deploy_tx(|t| t.events(id)).unwrap();
    assert_eq!(events.len(), 2 * IN_PLACE.len());
    for e in &events {
        assert_eq!(e.status, "SUCCEEDED", "{e:?}");
        let (r, d, s, end) = (
            e.ready.unwrap(),
            e.dispatched.unwrap(),
            e.started.unwrap(),
            e.ended.unwrap(),
        );
        assert!(r <= d && d <= s && s <= end, "{e:?}");
    }
}

/// An agent that polls while one of its commands is IN_PROGRESS restarted and lost its
/// record of it (say its in-progress file did not survive a power loss): the command
/// fails at once instead of waiting forever, and the deployment goes on.
#[test]
fn a_poll_fails_the_commands_the_agent_forgot() {
    let (_d, store) = store();
    agent(&store, "w1", "web");
    let id = deploy(&store, json!("all-at-once"), false, "b1");
    pass(&store);
    let c = store.next_command("w1").unwrap().unwrap();
    assert_eq!(
        store.ack_command("w1", c.id).unwrap().as_deref(),
        Some("IN_PROGRESS")
    );
    assert_eq!(store.fail_orphaned_commands("w2").unwrap(), 0);
    assert_eq!(store.fail_orphaned_commands("w1").unwrap(), 1);
    let e = store.deploy_tx(|t| t.event(c.id)).unwrap().unwrap();
    assert_eq!(e.status, "FAILED");
    assert_eq!(e.error_code, Some(7));
    assert!(e.message.unwrap().contains("FAILED_AFTER_RESTART"));
    assert_eq!(store.fail_orphaned_commands("w1").unwrap(), 0);
    pass(&store);
    assert_eq!(store.deployment(id).unwrap().unwrap().status, "FAILED");
}

/// Stopping a deployment that never started rolls nothing back (it changed no host; a
/// rollback would only undo the deployment running before it).
#[test]
fn a_queued_deployment_stopped_rolls_nothing_back() {
    let (_d, store) = store();
    agent(&store, "w1", "web");
    let on_stop = |s: &mut serde_json::Value| s["auto_rollback"]["stop"] = json!(true);
    let good = deploy_with(&store, json!("all-at-once"), false, "v1", on_stop);
    run_to_end(&store, &["w1"], &[]);
    assert_eq!(store.deployment(good).unwrap().unwrap().status, "SUCCEEDED");
    let running = deploy_with(&store, json!("all-at-once"), false, "v2", on_stop);
    let queued = deploy_with(&store, json!("all-at-once"), false, "v3", on_stop);
    pass(&store);
    assert_eq!(store.deployment(queued).unwrap().unwrap().status, "QUEUED");
    let why = store
        .deploy_tx(|t| {
            let mut d = t.deployment(queued)?.unwrap();
            let mut fx = Effects::default();
            super::advance::stop_deployment(
                t,
                &mut fx,
                &mut d,
                "stopped by admin".into(),
                "stop",
                now(),
            )
        })
        .unwrap();
    assert_eq!(why, "stopped by admin");
    let stopped = store.deployment(queued).unwrap().unwrap();
    assert_eq!(
        (stopped.status.as_str(), stopped.rollback_id),
        ("STOPPED", None)
    );
    run_to_end(&store, &["w1"], &[]);
    assert_eq!(
        store.deployment(running).unwrap().unwrap().status,
        "SUCCEEDED"
    );
}
