//! Pipelines: execution modes (superseded, queued, parallel), parallel actions, and
//! disabled transitions.

use std::time::Duration;

use crate::harness::*;
use crate::pipelines::*;

const TRIVIAL: &str = "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n";

/// A build stage, then a gate that waits for admin's approval.
fn gated(name: &str, mode: &str) -> String {
    format!(
        "name: {name}\nexecution-mode: {mode}\nstages:\n  - name: build\n    actions:\n      - {{ name: compile, build: {{}} }}\n  - name: gate\n    actions:\n      - {{ name: ok, approval: {{ approvers: [admin] }} }}\n"
    )
}

/// A local clone with `files` committed (not pushed).
pub fn work_with(s: &Server, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let work = s.local_repo(&s.alice, name);
    for (file, text) in files {
        commit_file(s, &s.alice, &work, file, text, file);
    }
    work
}

/// Commits a change and pushes `main` to `repo`.
pub fn push_change(s: &Server, work: &std::path::Path, repo: &str, n: usize) {
    commit_file(
        s,
        &s.alice,
        work,
        "change.txt",
        &format!("{n}\n"),
        &format!("change {n}"),
    );
    s.git(&s.alice, work, &["push", "-q", &s.url(repo), "main"])
        .ok();
}

/// Waits until `f` holds for execution `id`'s JSON; answers it.
pub fn wait_for(
    s: &Server,
    id: i64,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = eventually(Duration::from_secs(60), || {
        last = execution_json(s, id);
        f(&last)
    });
    assert!(
        ok,
        "execution {id} never {what}: {last:#}\n{}",
        s.log_text()
    );
    last
}

/// Waits until action `name` of execution `id` is `status`.
pub fn wait_action(s: &Server, id: i64, name: &str, status: &str) -> serde_json::Value {
    wait_for(s, id, &format!("had {name} {status}"), |v| {
        v["actions"]
            .as_array()
            .is_some_and(|l| l.iter().any(|a| a["name"] == name && a["status"] == status))
    })
}

/// Waits until execution `id` waits in front of stage index `stage`.
pub fn wait_waiting(s: &Server, id: i64, stage: i64) -> serde_json::Value {
    wait_for(s, id, &format!("waited for stage {stage}"), |v| {
        v["execution"]["stage"] == stage && v["execution"]["entered"] == false
    })
}

pub fn approve(s: &Server, pipeline: &str, id: i64, stage: &str, action: &str) {
    s.ssh(
        &s.admin,
        &format!("pipeline approve {pipeline} {id} {stage} {action}"),
    )
    .ok()
    .says("approved");
}

/// Superseded (the default): an execution waiting in front of a busy stage is replaced
/// by a newer one arriving behind it; the one inside the stage is never interrupted.
#[test]
fn superseded_mode_replaces_a_waiting_execution_never_a_running_one() {
    let s = Server::start();
    let work = work_with(
        &s,
        "w",
        &[
            ("buildspec.yml", TRIVIAL),
            ("pipeline.yml", &gated("sup", "superseded")),
        ],
    );
    push_change(&s, &work, "app-sup", 1);
    let first = wait_executions(&s, "sup", 1)[0];
    wait_action(&s, first, "ok", "IN_PROGRESS");
    push_change(&s, &work, "app-sup", 2);
    let second = wait_executions(&s, "sup", 2)[1];
    wait_waiting(&s, second, 1);
    push_change(&s, &work, "app-sup", 3);
    let third = wait_executions(&s, "sup", 3)[2];
    let gone = wait_execution(&s, second, "SUPERSEDED");
    let reason = gone["execution"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("superseded by execution {third}")),
        "{reason}"
    );
    wait_waiting(&s, third, 1);
    // The first is still inside the gate, waiting for its approval.
    let running = execution_json(&s, first);
    assert_eq!(running["execution"]["status"], "IN_PROGRESS", "{running:#}");
    assert_eq!(action(&running, "ok")["status"], "IN_PROGRESS");
    approve(&s, "sup", first, "gate", "ok");
    wait_execution(&s, first, "SUCCEEDED");
    wait_action(&s, third, "ok", "IN_PROGRESS");
    approve(&s, "sup", third, "gate", "ok");
    wait_execution(&s, third, "SUCCEEDED");
}

/// Queued: executions wait their turn at a busy stage and go through in order; none
/// is superseded.
#[test]
fn queued_mode_runs_executions_one_by_one_in_order() {
    let s = Server::start();
    let work = work_with(
        &s,
        "w",
        &[
            ("buildspec.yml", TRIVIAL),
            ("pipeline.yml", &gated("que", "queued")),
        ],
    );
    push_change(&s, &work, "app-que", 1);
    let first = wait_executions(&s, "que", 1)[0];
    wait_action(&s, first, "ok", "IN_PROGRESS");
    push_change(&s, &work, "app-que", 2);
    push_change(&s, &work, "app-que", 3);
    let ids = wait_executions(&s, "que", 3);
    let (second, third) = (ids[1], ids[2]);
    wait_waiting(&s, second, 1);
    wait_waiting(&s, third, 1);
    approve(&s, "que", first, "gate", "ok");
    wait_execution(&s, first, "SUCCEEDED");
    wait_action(&s, second, "ok", "IN_PROGRESS");
    // The third still waits: the second came first.
    let v = execution_json(&s, third);
    assert_eq!(v["execution"]["entered"], false, "{v:#}");
    assert_eq!(v["execution"]["status"], "IN_PROGRESS", "{v:#}");
    approve(&s, "que", second, "gate", "ok");
    wait_execution(&s, second, "SUCCEEDED");
    wait_action(&s, third, "ok", "IN_PROGRESS");
    approve(&s, "que", third, "gate", "ok");
    wait_execution(&s, third, "SUCCEEDED");
}

/// Parallel: executions do not wait for each other; two approvals wait at once.
#[test]
fn parallel_mode_runs_executions_independently() {
    let s = Server::start();
    let work = work_with(
        &s,
        "w",
        &[
            ("buildspec.yml", TRIVIAL),
            ("pipeline.yml", &gated("par", "parallel")),
        ],
    );
    push_change(&s, &work, "app-par", 1);
    let first = wait_executions(&s, "par", 1)[0];
    wait_action(&s, first, "ok", "IN_PROGRESS");
    push_change(&s, &work, "app-par", 2);
    let second = wait_executions(&s, "par", 2)[1];
    wait_action(&s, second, "ok", "IN_PROGRESS");
    assert_eq!(
        action(&execution_json(&s, first), "ok")["status"],
        "IN_PROGRESS"
    );
    approve(&s, "par", second, "gate", "ok");
    wait_execution(&s, second, "SUCCEEDED");
    approve(&s, "par", first, "gate", "ok");
    wait_execution(&s, first, "SUCCEEDED");
}

const SLOW: &str = r#"version: 0.2
env:
  exported-variables: [START, END]
phases:
  build:
    commands:
      - export START=$(date +%s%N)
      - sleep 1
      - export END=$(date +%s%N)
"#;

/// Actions with the same run-order really run at the same time; a higher run-order
/// starts only after them.
#[test]
fn actions_of_one_run_order_overlap_in_time() {
    let s = Server::start();
    let pipeline = "name: together\nstages:\n  - name: build\n    actions:\n      - { name: left, build: { buildspec: slow.yml }, namespace: L }\n      - { name: right, build: { buildspec: slow.yml }, namespace: R }\n      - { name: after, run-order: 2, build: { buildspec: slow.yml }, namespace: A }\n";
    let work = work_with(&s, "w", &[("slow.yml", SLOW), ("pipeline.yml", pipeline)]);
    push_change(&s, &work, "app-tog", 1);
    let id = wait_executions(&s, "together", 1)[0];
    let done = wait_execution(&s, id, "SUCCEEDED");
    let vars = &done["execution"]["variables"];
    let t = |ns: &str, v: &str| -> u128 {
        vars[ns][v]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{ns}.{v} missing: {vars:#}"))
    };
    assert!(
        t("L", "START") < t("R", "END") && t("R", "START") < t("L", "END"),
        "left and right did not overlap: {vars:#}"
    );
    assert!(
        t("A", "START") > t("L", "END") && t("A", "START") > t("R", "END"),
        "run-order 2 started before run-order 1 ended: {vars:#}"
    );
}

/// A disabled transition holds executions in front of its stage (in superseded mode
/// the newest one is kept); enabling it lets that one in. Only holders of
/// pipeline:transition may change it.
#[test]
fn a_disabled_transition_holds_executions_until_enabled() {
    let s = Server::start();
    let pipeline = "name: tr\nstages:\n  - name: build\n    actions: [ { name: compile, build: {} } ]\n  - name: test\n    actions: [ { name: check, build: {} } ]\n";
    let work = work_with(
        &s,
        "w",
        &[("buildspec.yml", TRIVIAL), ("pipeline.yml", pipeline)],
    );
    push_change(&s, &work, "app-tr", 1);
    let first = wait_executions(&s, "tr", 1)[0];
    wait_execution(&s, first, "SUCCEEDED");
    s.ssh(
        &s.bob,
        "pipeline transition disable tr test --reason freeze",
    )
    .fails()
    .says("pipeline:transition on pipeline:tr is needed");
    s.ssh(
        &s.admin,
        "pipeline transition disable tr nope --reason freeze",
    )
    .fails()
    .says("no stage `nope`");
    s.ssh(
        &s.admin,
        "pipeline transition disable tr test --reason 'release freeze'",
    )
    .ok()
    .says("disabled");
    push_change(&s, &work, "app-tr", 2);
    let second = wait_executions(&s, "tr", 2)[1];
    wait_waiting(&s, second, 1);
    push_change(&s, &work, "app-tr", 3);
    let third = wait_executions(&s, "tr", 3)[2];
    wait_execution(&s, second, "SUPERSEDED");
    wait_waiting(&s, third, 1);
    let status = s.ssh(&s.alice, "pipeline status tr").ok().stdout;
    assert!(status.contains("=X=>"), "{status}");
    assert!(status.contains("release freeze"), "{status}");
    assert!(status.contains(&format!("waiting: #{third}")), "{status}");
    let v: serde_json::Value =
        serde_json::from_str(&s.ssh(&s.alice, "pipeline status tr --json").ok().stdout).unwrap();
    assert_eq!(
        v["stages"][1]["transition_disabled"]["reason"],
        "release freeze"
    );
    // Stopped while it waits, and resumed: it waits there again.
    s.ssh(&s.admin, &format!("pipeline stop {third}")).ok();
    wait_execution(&s, third, "STOPPED");
    s.ssh(&s.admin, &format!("pipeline retry {third} test"))
        .ok()
        .says("waits to enter stage `test` again");
    wait_waiting(&s, third, 1);
    s.ssh(&s.admin, "pipeline transition enable tr test")
        .ok()
        .says("enabled");
    wait_execution(&s, third, "SUCCEEDED");
    let audit = s.ssh(&s.admin, "audit --json").ok().stdout;
    assert!(audit.contains("pipeline:disable-transition"), "{audit}");
}

/// Triggers decide which pushes start an execution: branch and tag globs, and changed
/// paths (excludes win). Pushes are handled in order, so once the tag's execution
/// exists the pushes before it were decided too.
#[test]
fn triggers_pick_the_pushes_that_start_executions() {
    let s = Server::start();
    let pipeline = "name: trig\ntriggers:\n  - push: { branches: { include: [main] }, paths: { exclude: [\"docs/**\"] } }\n  - push: { tags: { include: [\"v*\"] } }\nstages:\n  - name: build\n    actions: [ { name: compile, build: {} } ]\n";
    let work = work_with(
        &s,
        "w",
        &[("buildspec.yml", TRIVIAL), ("pipeline.yml", pipeline)],
    );
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-trig"), "main"])
        .ok();
    let first = wait_executions(&s, "trig", 1)[0];
    commit_file(&s, &s.alice, &work, "docs/guide.md", "words\n", "docs only");
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-trig"), "main"])
        .ok();
    s.git(&s.alice, &work, &["checkout", "-q", "-b", "feature/x"])
        .ok();
    commit_file(&s, &s.alice, &work, "src.txt", "code\n", "feature work");
    s.git(
        &s.alice,
        &work,
        &["push", "-q", &s.url("app-trig"), "feature/x"],
    )
    .ok();
    s.git(&s.alice, &work, &["tag", "v1"]).ok();
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-trig"), "v1"])
        .ok();
    let ids = wait_executions(&s, "trig", 2);
    assert_eq!(ids.len(), 2, "only main's first push and the tag: {ids:?}");
    let tag = execution_json(&s, ids[1]);
    assert_eq!(tag["execution"]["ref"], "refs/tags/v1", "{tag:#}");
    assert_eq!(ids[0], first);
    wait_execution(&s, ids[1], "SUCCEEDED");
    assert!(s.metric("slipway_pipeline_executions_total{status=\"SUCCEEDED\"}") >= 1.0);
}
