//! Pipelines: approvals (mail, allowed and refused users, timeout), stop, retry,
//! rollback, deploy actions, and executions surviving `kill -9`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::*;
use crate::pipeline_modes::*;
use crate::pipelines::*;

const TRIVIAL: &str = "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n";

/// The team, with alice allowed to approve in pipeline `ship`.
fn team_with_approver(s: &Server) -> String {
    team_access_yaml(&s.admin, &s.alice, &s.bob).replace(
        "  reader:\n",
        "    - { effect: allow, actions: [\"pipeline:approve\"], resources: [\"pipeline:ship\"] }\n  reader:\n",
    )
}

/// A directory every user may read, for flags the builds look at.
fn shared_dir(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("slipway-flag-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// Approvers hear by mail what waits and the exact command; the policy and the
/// approvers list both decide who may answer; decisions are audited; a rejection fails
/// the execution, and rules can mail that.
#[test]
fn approvals_are_mailed_and_only_allowed_approvers_decide() {
    let Some(python) = crate::peers::python_with_aiosmtpd() else {
        return;
    };
    let mail_dir = tempfile::tempdir().unwrap();
    let sink = crate::peers::SmtpSink::start(&python, mail_dir.path(), 0, 0);
    let s = Server::start_with(Options {
        settings: Some(crate::notify::mail_settings(sink.port, 5)),
        ..Options::default()
    });
    s.set_access(&team_with_approver(&s)).ok();
    s.push_admin_file(
        "rules.yaml",
        "rules:\n  - name: failed-pipelines\n    match: { source: pipeline, type: execution-state-change, state: FAILED }\n    targets:\n      - email: [team@example.com]\n",
    )
    .ok();
    let pipeline = "name: ship\nstages:\n  - name: build\n    actions: [ { name: compile, build: {} } ]\n  - name: gate\n    actions:\n      - { name: ok, approval: { approvers: [\"group:dev\", bob], message: \"Ship #{source.CommitId}?\" } }\n";
    let work = work_with(
        &s,
        "w",
        &[("buildspec.yml", TRIVIAL), ("pipeline.yml", pipeline)],
    );
    push_change(&s, &work, "app-ship", 1);
    let first = wait_executions(&s, "ship", 1)[0];
    let waiting = wait_action(&s, first, "ok", "IN_PROGRESS");
    let commit = waiting["execution"]["commit"].as_str().unwrap().to_string();
    let mails = sink.wait_for(1, Duration::from_secs(30));
    let mail = mails
        .iter()
        .find(|m| m.header("To").as_deref() == Some("alice@example.com"))
        .unwrap_or_else(|| panic!("no mail to alice: {mails:?}"));
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some(format!("[slipway] approval needed: ship gate/ok (execution {first})").as_str())
    );
    let body = mail.body();
    assert!(body.contains(&format!("Ship {commit}?")), "{body}");
    assert!(
        body.contains(&format!("pipeline approve ship {first} gate ok")),
        "{body}"
    );
    assert!(
        body.contains(&format!("pipeline reject ship {first} gate ok")),
        "{body}"
    );

    // bob is listed but holds no pipeline:approve; admin holds it but is not listed.
    s.ssh(&s.bob, &format!("pipeline approve ship {first} gate ok"))
        .fails()
        .says("pipeline:approve on pipeline:ship is needed");
    s.ssh(&s.admin, &format!("pipeline approve ship {first} gate ok"))
        .fails()
        .says("not among the approvers");
    s.ssh(
        &s.alice,
        &format!("pipeline approve ship {first} build compile"),
    )
    .fails()
    .says("not an approval");
    s.ssh(
        &s.alice,
        &format!("pipeline approve ship {first} gate ok --comment 'looks good'"),
    )
    .ok()
    .says("approved gate/ok");
    let done = wait_execution(&s, first, "SUCCEEDED");
    assert_eq!(
        action(&done, "ok")["reason"],
        "approved by alice: looks good"
    );
    s.ssh(&s.alice, &format!("pipeline approve ship {first} gate ok"))
        .fails()
        .says("not waiting for a decision");
    let audit = s.ssh(&s.admin, "audit --json").ok().stdout;
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let line = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["action"] == "pipeline:approve" && l["kind"] == "pipeline")
        .unwrap_or_else(|| panic!("no approval in the audit log: {audit:#}"));
    assert_eq!(line["user"], "alice");
    assert!(line["detail"].as_str().unwrap().contains("looks good"));

    push_change(&s, &work, "app-ship", 2);
    let second = wait_executions(&s, "ship", 2)[1];
    wait_action(&s, second, "ok", "IN_PROGRESS");
    s.ssh(
        &s.alice,
        &format!("pipeline reject ship {second} gate ok --comment 'not today'"),
    )
    .ok()
    .says("rejected");
    let failed = wait_execution(&s, second, "FAILED");
    let reason = failed["execution"]["reason"].as_str().unwrap();
    assert!(reason.contains("rejected by alice: not today"), "{reason}");
    let mails = sink.wait_for(3, Duration::from_secs(30));
    let told = mails
        .iter()
        .find(|m| m.header("To").as_deref() == Some("team@example.com"))
        .unwrap_or_else(|| panic!("the failure was not mailed: {mails:?}"));
    assert_eq!(
        told.header("Subject").as_deref(),
        Some(format!("[slipway] pipeline ship #{second} FAILED").as_str())
    );
    assert!(told.body().contains("rejected by alice"), "{}", told.body());
}

/// An approval nobody answers fails when its timeout passes.
#[test]
fn an_unanswered_approval_times_out_as_a_failure() {
    let s = Server::start();
    let pipeline = "name: slow\nstages:\n  - name: gate\n    actions:\n      - { name: ok, approval: { approvers: [admin], timeout: 1m } }\n";
    let work = work_with(&s, "w", &[("pipeline.yml", pipeline)]);
    push_change(&s, &work, "app-slow", 1);
    let id = wait_executions(&s, "slow", 1)[0];
    wait_action(&s, id, "ok", "IN_PROGRESS");
    let mut last = serde_json::Value::Null;
    let ended = eventually(Duration::from_secs(90), || {
        last = execution_json(&s, id);
        last["execution"]["status"] != "IN_PROGRESS"
    });
    assert!(ended, "{last:#}");
    assert_eq!(last["execution"]["status"], "FAILED", "{last:#}");
    let ok = action(&last, "ok");
    assert_eq!(ok["status"], "FAILED");
    assert!(
        ok["reason"].as_str().unwrap().contains("timed out"),
        "{ok:#}"
    );
}

/// A failed stage can be retried by holders of pipeline:retry: the failed actions, or
/// with --all-actions every action; the stage's attempt counts up.
#[test]
fn a_failed_stage_is_retried_failed_actions_or_all() {
    let s = Server::start();
    let flags = shared_dir(0o755);
    let flag = flags.path().join("ready");
    let pipeline = format!(
        "name: flaky\nvariables: {{ FLAG: \"{}\" }}\nstages:\n  - name: build\n    actions:\n      - {{ name: steady, build: {{}} }}\n      - {{ name: shaky, build: {{ buildspec: shaky.yml, env: {{ FLAG: \"#{{variables.FLAG}}\" }} }} }}\n",
        flag.display()
    );
    let shaky = "version: 0.2\nphases:\n  build:\n    commands: [\"test -f \\\"$FLAG\\\"\"]\n";
    let work = work_with(
        &s,
        "w",
        &[
            ("buildspec.yml", TRIVIAL),
            ("shaky.yml", shaky),
            ("pipeline.yml", &pipeline),
        ],
    );
    push_change(&s, &work, "app-flaky", 1);
    let id = wait_executions(&s, "flaky", 1)[0];
    let failed = wait_execution(&s, id, "FAILED");
    let steady_build = action(&failed, "steady")["build_id"].as_i64().unwrap();
    let shaky_build = action(&failed, "shaky")["build_id"].as_i64().unwrap();
    assert!(failed["execution"]["reason"]
        .as_str()
        .unwrap()
        .contains("action `shaky` failed"));
    s.ssh(&s.bob, &format!("pipeline retry {id} build"))
        .fails()
        .says("pipeline:retry on pipeline:flaky is needed");
    s.ssh(&s.admin, &format!("pipeline retry {id} build"))
        .ok()
        .says("failed actions");
    let again = wait_for(&s, id, "failed again", |v| {
        v["stages"][0]["attempt"] == 2 && v["execution"]["status"] == "FAILED"
    });
    assert_eq!(action(&again, "steady")["build_id"], steady_build);
    assert_ne!(action(&again, "shaky")["build_id"], shaky_build);
    std::fs::write(&flag, "").unwrap();
    s.ssh(
        &s.admin,
        &format!("pipeline retry {id} build --all-actions"),
    )
    .ok()
    .says("all actions");
    let done = wait_execution(&s, id, "SUCCEEDED");
    assert_eq!(done["stages"][0]["attempt"], 3);
    assert_ne!(action(&done, "steady")["build_id"], steady_build);
    s.ssh(&s.admin, &format!("pipeline retry {id} build"))
        .fails()
        .says("cannot be retried");
}

/// `on-failure: retry` runs the failed actions once more by itself.
#[test]
fn on_failure_retry_runs_the_failed_actions_once_more() {
    let s = Server::start();
    let marks = shared_dir(0o777);
    let mark = marks.path().join("tried");
    let pipeline = format!(
        "name: heal\nvariables: {{ MARK: \"{}\" }}\nstages:\n  - name: build\n    on-failure: retry\n    actions:\n      - {{ name: once, build: {{ env: {{ MARK: \"#{{variables.MARK}}\" }} }} }}\n",
        mark.display()
    );
    // Fails the first time (leaving a mark), succeeds the second.
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - if [ -e \"$MARK\" ]; then exit 0; fi; touch \"$MARK\"; exit 1\n";
    let work = work_with(
        &s,
        "w",
        &[("buildspec.yml", spec), ("pipeline.yml", &pipeline)],
    );
    push_change(&s, &work, "app-heal", 1);
    let id = wait_executions(&s, "heal", 1)[0];
    let done = wait_execution(&s, id, "SUCCEEDED");
    assert_eq!(done["stages"][0]["attempt"], 2, "{done:#}");
    assert!(mark.exists());
}

const PACK: &str =
    "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\nartifacts:\n  files: ['**/*']\n";
const INSTALL: &str = "version: 0.2\nenv:\n  exported-variables: [V]\nphases:\n  build:\n    commands:\n      - export V=$(cat version.txt)\n      - test \"$V\" != bad\n";

/// A stage with `on-failure: rollback` that fails is run again, as a new ROLLBACK
/// execution, with the artifacts of the last execution that succeeded in it; people
/// holding pipeline:rollback can do the same by hand.
#[test]
fn a_failed_stage_rolls_back_to_the_last_good_execution() {
    let s = Server::start();
    let pipeline = "name: rb\nstages:\n  - name: build\n    actions: [ { name: compile, build: { buildspec: pack.yml }, outputs: [app] } ]\n  - name: deploy\n    on-failure: rollback\n    actions: [ { name: install, build: { buildspec: install.yml }, inputs: [app], namespace: D } ]\n";
    let work = work_with(
        &s,
        "w",
        &[
            ("pack.yml", PACK),
            ("install.yml", INSTALL),
            ("version.txt", "1\n"),
            ("pipeline.yml", pipeline),
        ],
    );
    push_change(&s, &work, "app-rb", 1);
    let good = wait_executions(&s, "rb", 1)[0];
    let good_json = wait_execution(&s, good, "SUCCEEDED");
    commit_file(&s, &s.alice, &work, "version.txt", "bad\n", "break it");
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-rb"), "main"])
        .ok();
    let bad = wait_executions(&s, "rb", 2)[1];
    let failed = wait_execution(&s, bad, "FAILED");
    let reason = failed["execution"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("rolling the stage back to execution {good}")),
        "{reason}"
    );
    let rollback = wait_executions(&s, "rb", 3)[2];
    let rolled = wait_execution(&s, rollback, "SUCCEEDED");
    let e = &rolled["execution"];
    assert_eq!(e["kind"], "ROLLBACK");
    assert_eq!(e["trigger"], "automated-rollback");
    assert_eq!(e["rollback_of"], good);
    assert_eq!(e["commit"], good_json["execution"]["commit"]);
    assert_eq!(
        e["variables"]["D"]["V"], "1",
        "ran with the good artifact: {e:#}"
    );
    assert_eq!(
        rolled["stages"].as_array().unwrap().len(),
        1,
        "only the stage: {rolled:#}"
    );

    s.ssh(&s.alice, "pipeline rollback rb deploy")
        .fails()
        .says("pipeline:rollback on pipeline:rb is needed");
    s.ssh(&s.admin, &format!("pipeline rollback rb deploy --to {bad}"))
        .fails()
        .says("did not succeed in stage `deploy`");
    s.ssh(
        &s.admin,
        &format!("pipeline rollback rb deploy --to {rollback}"),
    )
    .fails()
    .says("itself a rollback");
    s.ssh(&s.admin, "pipeline rollback rb deploy")
        .ok()
        .says(&format!("to execution {good}"));
    let manual = wait_executions(&s, "rb", 4)[3];
    let m = wait_execution(&s, manual, "SUCCEEDED");
    assert_eq!(m["execution"]["trigger"], "manual-rollback");
    assert_eq!(m["execution"]["initiator"], "admin");
}

const SLEEPY: &str = "version: 0.2\nphases:\n  build:\n    commands: [\"sleep 60\"]\n";

/// Stop lets nothing new start; an approval is abandoned; --abandon abandons a running
/// build at once and stops it.
#[test]
fn stop_and_stop_abandon() {
    let s = Server::start();
    let gated = "name: halt\nstages:\n  - name: gate\n    actions: [ { name: ok, approval: { approvers: [admin] } } ]\n  - name: after\n    actions: [ { name: never, build: {} } ]\n";
    let work = work_with(
        &s,
        "w",
        &[("buildspec.yml", TRIVIAL), ("pipeline.yml", gated)],
    );
    push_change(&s, &work, "app-halt", 1);
    let id = wait_executions(&s, "halt", 1)[0];
    wait_action(&s, id, "ok", "IN_PROGRESS");
    s.ssh(&s.bob, &format!("pipeline stop {id}"))
        .fails()
        .says("pipeline:stop on pipeline:halt is needed");
    s.ssh(
        &s.admin,
        &format!("pipeline stop {id} --reason 'wrong day'"),
    )
    .ok()
    .says("stopping");
    let stopped = wait_execution(&s, id, "STOPPED");
    assert_eq!(action(&stopped, "ok")["status"], "ABANDONED");
    assert_eq!(
        stopped["stages"].as_array().unwrap().len(),
        1,
        "{stopped:#}"
    );

    let long =
        "name: long\nstages:\n  - name: build\n    actions: [ { name: sleeper, build: {} } ]\n";
    let work = work_with(
        &s,
        "w2",
        &[("buildspec.yml", SLEEPY), ("pipeline.yml", long)],
    );
    push_change(&s, &work, "app-long", 1);
    let id = wait_executions(&s, "long", 1)[0];
    let running = wait_action(&s, id, "sleeper", "IN_PROGRESS");
    let build = action(&running, "sleeper")["build_id"].as_i64().unwrap();
    let in_progress = eventually(Duration::from_secs(30), || {
        s.ssh(&s.admin, &format!("build info {build} --json"))
            .ok()
            .stdout
            .contains("\"IN_PROGRESS\"")
    });
    assert!(in_progress);
    s.ssh(&s.admin, &format!("pipeline stop {id} --abandon"))
        .ok()
        .says("stopped execution");
    let stopped = wait_execution(&s, id, "STOPPED");
    assert_eq!(action(&stopped, "sleeper")["status"], "ABANDONED");
    let ended = eventually(Duration::from_secs(30), || {
        s.ssh(&s.admin, &format!("build info {build} --json"))
            .ok()
            .stdout
            .contains("\"STOPPED\"")
    });
    assert!(ended, "the abandoned build was not stopped");
}

/// A deploy action to a group deploy.yaml does not have fails with a clear reason.
#[test]
fn a_deploy_action_to_an_unknown_group_fails_clearly() {
    let s = Server::start();
    let pipeline = "name: dep\nstages:\n  - name: build\n    actions: [ { name: compile, build: { buildspec: pack.yml }, outputs: [app] } ]\n  - name: deploy\n    actions: [ { name: prod, deploy: { application: web, group: prod }, inputs: [app] } ]\n";
    let work = work_with(&s, "w", &[("pack.yml", PACK), ("pipeline.yml", pipeline)]);
    push_change(&s, &work, "app-dep", 1);
    let id = wait_executions(&s, "dep", 1)[0];
    let failed = wait_execution(&s, id, "FAILED");
    let prod = action(&failed, "prod");
    assert!(
        prod["reason"]
            .as_str()
            .unwrap()
            .contains("deploy.yaml has no group `prod` in application `web`"),
        "{prod:#}"
    );
}

/// After `kill -9`: a waiting approval still waits, a disabled transition stays
/// disabled, and an execution whose build was running fails with the reason instead of
/// hanging.
#[test]
fn executions_survive_kill_9() {
    let mut s = Server::start();
    let gated = "name: keep\nstages:\n  - name: gate\n    actions: [ { name: ok, approval: { approvers: [admin] } } ]\n  - name: after\n    actions: [ { name: fin, build: {} } ]\n";
    let work = work_with(
        &s,
        "w",
        &[("buildspec.yml", TRIVIAL), ("pipeline.yml", gated)],
    );
    push_change(&s, &work, "app-keep", 1);
    let kept = wait_executions(&s, "keep", 1)[0];
    wait_action(&s, kept, "ok", "IN_PROGRESS");
    s.ssh(
        &s.admin,
        "pipeline transition disable keep after --reason hold",
    )
    .ok();
    let long =
        "name: cut\nstages:\n  - name: build\n    actions: [ { name: sleeper, build: {} } ]\n";
    let work2 = work_with(
        &s,
        "w2",
        &[("buildspec.yml", SLEEPY), ("pipeline.yml", long)],
    );
    push_change(&s, &work2, "app-cut", 1);
    let cut = wait_executions(&s, "cut", 1)[0];
    let running = wait_action(&s, cut, "sleeper", "IN_PROGRESS");
    let build = action(&running, "sleeper")["build_id"].as_i64().unwrap();
    assert!(eventually(Duration::from_secs(30), || {
        s.ssh(&s.admin, &format!("build info {build} --json"))
            .ok()
            .stdout
            .contains("\"IN_PROGRESS\"")
    }));

    s.kill9();
    s.spawn();

    let failed = wait_execution(&s, cut, "FAILED");
    let reason = failed["execution"]["reason"].as_str().unwrap();
    assert!(reason.contains("server stopped"), "{reason}");
    let v = execution_json(&s, kept);
    assert_eq!(action(&v, "ok")["status"], "IN_PROGRESS", "{v:#}");
    approve(&s, "keep", kept, "gate", "ok");
    wait_waiting(&s, kept, 1);
    s.ssh(&s.admin, "pipeline status keep")
        .ok()
        .says("transition into after disabled by admin: hold");
    s.ssh(&s.admin, "pipeline transition enable keep after")
        .ok();
    wait_execution(&s, kept, "SUCCEEDED");
}
