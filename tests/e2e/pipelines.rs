//! Pipelines: `pipeline.yml` checked when it is pushed.

use std::time::Duration;

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

// ---- running executions ----------------------------------------------------------

/// `pipeline show ID --json` as the admin sees it.
pub fn execution_json(s: &Server, id: i64) -> serde_json::Value {
    let out = s
        .ssh(&s.admin, &format!("pipeline show {id} --json"))
        .ok()
        .stdout;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits until execution `id` has `status`; answers its JSON.
pub fn wait_execution(s: &Server, id: i64, status: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ended = eventually(Duration::from_secs(60), || {
        last = execution_json(s, id);
        let now = last["execution"]["status"].as_str().unwrap_or("");
        now == status || !matches!(now, "IN_PROGRESS" | "STOPPING")
    });
    assert!(
        ended && last["execution"]["status"] == status,
        "execution {id} never reached {status}: {last:#}\n{}",
        s.log_text()
    );
    last
}

/// The ids of `pipeline`'s executions, oldest first.
pub fn execution_ids(s: &Server, pipeline: &str) -> Vec<i64> {
    let out = s
        .ssh(&s.admin, &format!("pipeline executions {pipeline} --json"))
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Waits until `pipeline` has `n` executions; answers their ids, oldest first.
pub fn wait_executions(s: &Server, pipeline: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    let ok = eventually(Duration::from_secs(30), || {
        let known = s
            .ssh(&s.admin, "pipeline list --json")
            .ok()
            .stdout
            .contains(&format!("\"{pipeline}\""));
        if known {
            ids = execution_ids(s, pipeline);
        }
        ids.len() >= n
    });
    assert!(
        ok,
        "{pipeline} never had {n} executions: {ids:?}\n{}",
        s.log_text()
    );
    ids
}

/// The action `name` of an execution's JSON.
pub fn action<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no action {name}: {v:#}"))
}

const COMPILE: &str = r#"version: 0.2
env:
  exported-variables: [TAG]
phases:
  build:
    commands:
      - echo "$GREETING" > app.txt
      - export TAG="v-$(tr ' ' '-' < app.txt)"
artifacts:
  files: ['**/*']
"#;

const CHECK: &str = r#"version: 0.2
phases:
  build:
    commands:
      - test "$(cat app.txt)" = "hi main"
      - test "$TAG" = "v-hi-main"
      - test -f "$CODEBUILD_SRC_DIR_source/buildspec.yml"
      - test ! -e "$CODEBUILD_SRC_DIR_source/app.txt"
"#;

/// A push runs the stages in order: the build's artifact is the next stage's source
/// directory, the pushed tree is there too, variables flow through `#{…}`, and the
/// status drawing shows every stage with its actions.
#[test]
fn a_push_runs_the_stages_with_artifacts_and_variables() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "buildspec.yml", COMPILE, "compile");
    commit_file(&s, &s.alice, &work, "ci/check.yml", CHECK, "check");
    let pipeline = r##"name: web
stages:
  - name: build
    actions:
      - name: compile
        build: { env: { GREETING: "hi #{source.BranchName}" } }
        outputs: [app]
        namespace: B
  - name: test
    actions:
      - { name: check, build: { buildspec: ci/check.yml, env: { TAG: "#{B.TAG}" } }, inputs: [app, source] }
"##;
    commit_file(&s, &s.alice, &work, "pipeline.yml", pipeline, "pipeline");
    s.git(&s.alice, &work, &["push", &s.url("app-p"), "main"])
        .ok();
    let ids = wait_executions(&s, "web", 1);
    let done = wait_execution(&s, ids[0], "SUCCEEDED");
    let stages: Vec<&str> = done["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["status"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["SUCCEEDED", "SUCCEEDED"], "{done:#}");
    assert_eq!(done["execution"]["variables"]["B"]["TAG"], "v-hi-main");
    let status = s.ssh(&s.alice, "pipeline status web").ok().stdout;
    assert!(
        status.contains("[build]") && status.contains("[test]"),
        "{status}"
    );
    assert!(status.contains("compile SUCCEEDED"), "{status}");
    assert!(status.contains("check SUCCEEDED"), "{status}");
    // Bob may read the repository, so he sees it; mallory's key is unknown.
    s.ssh(&s.bob, "pipeline status web").ok().says("[test]");
    let list = s.ssh(&s.alice, "pipeline list").ok().stdout;
    assert!(list.contains("web") && list.contains("SUCCEEDED"), "{list}");

    // Started by hand: needs pipeline:start; runs the definition at the ref.
    s.ssh(&s.alice, "pipeline start web")
        .fails()
        .says("pipeline:start on pipeline:web is needed");
    s.ssh(&s.admin, "pipeline start web --ref nope")
        .fails()
        .says("neither a branch nor a tag");
    s.ssh(&s.admin, "pipeline start web --ref main")
        .ok()
        .says("started execution");
    let ids = wait_executions(&s, "web", 2);
    let manual = wait_execution(&s, ids[1], "SUCCEEDED");
    assert_eq!(manual["execution"]["trigger"], "manual");
    assert_eq!(manual["execution"]["initiator"], "admin");

    // Another repository cannot take the name: the pusher is told, and it never runs.
    let other = s.local_repo(&s.alice, "w2");
    commit_file(&s, &s.alice, &other, "buildspec.yml", COMPILE, "compile");
    commit_file(&s, &s.alice, &other, "pipeline.yml", pipeline, "pipeline");
    s.git(&s.alice, &other, &["push", &s.url("app-q"), "main"])
        .ok()
        .says("pipeline name `web` belongs to repository `app-p`");
    let recorded = eventually(Duration::from_secs(30), || {
        s.ssh(&s.admin, "events --type invalid --repo app-q --json")
            .ok()
            .stdout
            .contains("belongs to another repository")
    });
    assert!(recorded, "{}", s.log_text());
    assert_eq!(execution_ids(&s, "web"), ids);
}

/// A `--watch` client that is killed when dropped.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pipeline status --watch --json` prints the picture again whenever it changes, live,
/// until the client goes away; the text form redraws the screen.
#[test]
fn status_watch_redraws_as_the_execution_moves() {
    use std::io::BufRead;
    let s = Server::start();
    let pipeline = "name: live\nstages:\n  - name: gate\n    actions: [ { name: ok, approval: { approvers: [admin], message: \"go?\" } } ]\n  - name: after\n    actions: [ { name: fin, build: {} } ]\n";
    let work = s.local_repo(&s.alice, "w");
    commit_file(
        &s,
        &s.alice,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n",
        "spec",
    );
    commit_file(&s, &s.alice, &work, "pipeline.yml", pipeline, "pipeline");
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-live"), "main"])
        .ok();
    let id = wait_executions(&s, "live", 1)[0];
    let text = s.ssh(&s.alice, "pipeline status live").ok().stdout;
    assert!(
        text.contains("[gate]") && text.contains("[after]"),
        "{text}"
    );

    let mut child = Watcher(
        std::process::Command::new("ssh")
            .args(s.ssh_base(&s.alice))
            .arg("git@127.0.0.1")
            .arg("pipeline status live --watch --json")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str(&line) else {
                break;
            };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let next_until = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no frame with {what}; log:\n{}", s.log_text()));
            if f(&v) {
                return v;
            }
        }
    };
    let waiting = next_until("the approval waiting", &|v| {
        v["stages"][0]["actions"][0]["status"] == "IN_PROGRESS"
    });
    assert_eq!(waiting["stages"][0]["actions"][0]["message"], "go?");
    assert_eq!(waiting["latest"]["id"], id);
    s.ssh(&s.admin, &format!("pipeline approve live {id} gate ok"))
        .ok();
    let done = next_until("the execution done", &|v| {
        v["latest"]["status"] == "SUCCEEDED"
    });
    assert_eq!(done["stages"][1]["status"], "SUCCEEDED", "{done:#}");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the watcher must stay"
    );

    // The text form clears the screen and draws the stages.
    let mut text = Watcher(
        std::process::Command::new("ssh")
            .args(s.ssh_base(&s.alice))
            .arg("git@127.0.0.1")
            .arg("pipeline status live --watch")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh starts"),
    );
    let mut stdout = text.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = String::from_utf8_lossy(&seen).to_string();
        if shown.contains("\x1b[2J") && shown.contains("fin SUCCEEDED") {
            break;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!("no drawn frame: {shown:?}"),
        }
    }
}
