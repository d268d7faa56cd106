//! Pipelines: `pipeline.yml` checked when it is pushed.

use crate::harness::*;

/// A pushed `pipeline.yml` with a mistake is accepted as code, but the pusher sees the
/// problem at its line and column, it is recorded as a `pipeline/invalid` event, and the
/// repository does not build the way a plain buildspec repository would. A fixed file
/// is quiet.
#[test]
fn an_invalid_pipeline_is_reported_to_the_pusher_and_recorded() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    commit_file(
        &s,
        &s.alice,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n",
        "spec",
    );
    let bad = "name: web\nstages:\n  - name: build\n    actions:\n      - { name: compile, build: {}, outputs: [app] }\n  - name: deploy\n    actions:\n      - { name: prod, deploy: { application: web, group: prod }, inputs: [ap] }\n";
    commit_file(&s, &s.alice, &work, "pipeline.yml", bad, "pipeline");
    s.git(&s.alice, &work, &["push", &s.url("app-p"), "main"])
        .ok()
        .says("remote: slipway: pipeline.yml:8:75: stages[1].actions[0].inputs[0]: input `ap` is not made by an earlier action")
        .says("will not run until pipeline.yml is fixed");
    let events = s.ssh(&s.admin, "events --type invalid --json").ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&events).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{events}");
    assert_eq!(list[0]["source"], "pipeline");
    assert_eq!(list[0]["detail"]["line"], 8);
    assert_eq!(list[0]["detail"]["pusher"], "alice");
    // With a pipeline.yml, pushes do not start plain builds.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let builds = s
        .ssh(&s.alice, "build list --repo app-p --json")
        .ok()
        .stdout;
    let builds: serde_json::Value = serde_json::from_str(&builds).unwrap();
    assert_eq!(builds.as_array().map(Vec::len), Some(0), "{builds}");

    commit_file(
        &s,
        &s.alice,
        &work,
        "pipeline.yml",
        &bad.replace("[ap]", "[app]"),
        "fix",
    );
    s.git(&s.alice, &work, &["push", &s.url("app-p"), "main"])
        .ok()
        .never_says("pipeline.yml:");
    let events = s.ssh(&s.admin, "events --type invalid --json").ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{events}");
}
