//! Deployments with real agent processes on loopback: each agent has its own root and
//! state directory; the server sequences the lifecycle events.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A running `slipway-agent run`, killed when dropped.
pub struct Agent {
    child: Child,
    pub root: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

/// How an agent reaches the server: the URL it registers with, and flags for `register`
/// (e.g. `--ca FILE`), which the registration remembers for `run`.
pub struct Connection {
    pub url: String,
    pub args: Vec<String>,
}

impl Connection {
    /// Plain HTTP to the server's loopback listener.
    pub fn plain(s: &Server) -> Connection {
        Connection::to(&format!("http://127.0.0.1:{}", s.http_port))
    }

    /// Plain HTTP to `url` (a proxy in front of the server, say).
    pub fn to(url: &str) -> Connection {
        Connection {
            url: url.to_string(),
            args: Vec::new(),
        }
    }
}

impl Agent {
    /// Kills the agent at once (SIGKILL), as a crashed host would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running (it was neither restarted nor has exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the agent has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts it again with the same state and root.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_agent(&self.state, &self.root, &self.log);
    }
}

fn spawn_agent(state: &Path, root: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(agent_binary())
        .args(["run", "--state"])
        .arg(state)
        .arg("--root")
        .arg(root)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the agent starts")
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `slipway-agent` binary built beside `slipway` (`cargo test --workspace` builds
/// both; alone, run `cargo build -p slipway-agent` first).
pub fn agent_binary() -> PathBuf {
    let path = Path::new(SLIPWAY)
        .parent()
        .expect("the binary has a directory")
        .join("slipway-agent");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p slipway-agent` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// Registers an agent `name` with `tags` and starts it.
pub fn start_agent(s: &Server, name: &str, tags: &[&str]) -> Agent {
    start_agent_via(s, name, tags, &Connection::plain(s))
}

/// A one-time registration token for `tags`, made by the administrator.
pub fn agent_token(s: &Server, tags: &[&str]) -> String {
    let mut cmd = "agent token create".to_string();
    for t in tags {
        cmd.push_str(&format!(" --tag {t}"));
    }
    s.ssh(&s.admin, &cmd)
        .ok()
        .stdout
        .lines()
        .next()
        .unwrap()
        .to_string()
}

/// Registers an agent `name` with `tags` through `connection` and starts it.
pub fn start_agent_via(s: &Server, name: &str, tags: &[&str], connection: &Connection) -> Agent {
    let token = agent_token(s, tags);
    let state = s.scratch(&format!("agent-{name}-state"));
    let root = s.scratch(&format!("agent-{name}-root"));
    run(Command::new(agent_binary())
        .args(["register", "--server", &connection.url])
        .args(["--token", &token, "--name", name, "--state"])
        .arg(&state)
        .args(&connection.args))
    .ok();
    let log = s.dir.path().join(format!("agent-{name}.log"));
    // `run` is given nothing: registration remembers --ca and --allow-insecure-http.
    let child = spawn_agent(&state, &root, &log);
    Agent {
        child,
        root,
        state,
        log,
    }
}

/// `deploy status ID --json`.
pub fn deployment_json(s: &Server, id: i64) -> serde_json::Value {
    let out = s
        .ssh(&s.admin, &format!("deploy status {id} --json"))
        .ok()
        .stdout;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits until deployment `id` has ended; answers its JSON.
pub fn wait_deployment(s: &Server, id: i64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ended = eventually(Duration::from_secs(90), || {
        last = deployment_json(s, id);
        !matches!(
            last["deployment"]["status"].as_str(),
            Some("CREATED") | Some("QUEUED") | Some("IN_PROGRESS") | Some("BAKING")
        )
    });
    assert!(
        ended,
        "deployment {id} never ended: {last:#}\n{}",
        s.log_text()
    );
    last
}

/// `deploy create APPLICATION GROUP --build BUILD [--artifact NAME]` as admin; answers
/// the deployment's id.
pub fn create_deployment(
    s: &Server,
    application: &str,
    group: &str,
    build: i64,
    artifact: Option<&str>,
) -> i64 {
    let mut command = format!("deploy create {application} {group} --build {build}");
    if let Some(name) = artifact {
        command.push_str(&format!(" --artifact {name}"));
    }
    let out = s.ssh(&s.admin, &command).ok().stdout;
    out.strip_prefix("created deployment ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no deployment id in: {out}"))
}

/// Waits until build `id` has ended; answers its JSON.
pub fn build_done(s: &Server, id: i64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = eventually(Duration::from_secs(60), || {
        last = serde_json::from_str(
            &s.ssh(&s.admin, &format!("build info {id} --json"))
                .ok()
                .stdout,
        )
        .unwrap();
        !matches!(
            last["status"].as_str(),
            Some("QUEUED") | Some("IN_PROGRESS")
        )
    });
    assert!(done, "build {id} did not finish: {last}");
    last
}

pub const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/web\nhooks:\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 30\n";

/// Group web/prod (tag role=web) with agent web-1, and a work tree with the buildspec
/// and appspec of [`SPEC`] and [`APPSPEC`] committed (push it to a repository).
fn web_prod_with_one_agent(s: &Server) -> (Agent, PathBuf) {
    s.push_admin_file(
        "deploy.yaml",
        "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n",
    )
    .ok();
    (start_agent(s, "web-1", &["role=web"]), app_work(s))
}

/// A work tree with the buildspec and appspec of [`SPEC`] and [`APPSPEC`] committed
/// (push it to a repository; add a revision with [`revision`]).
pub fn app_work(s: &Server) -> PathBuf {
    let work = s.local_repo(&s.admin, "w");
    commit_file(s, &s.admin, &work, "buildspec.yml", SPEC, "spec");
    commit_file(s, &s.admin, &work, "appspec.yml", APPSPEC, "appspec");
    work
}

/// A server whose slipway.yaml has `deploy:` settings `lines` (indented YAML lines).
pub fn server_with_deploy_settings(lines: &str) -> Server {
    Server::start_with(Options {
        settings: Some(format!("{}deploy:\n{lines}", settings_yaml(&[]))),
        ..Options::default()
    })
}

/// Commits `files` (path, text) to a new work tree, pushes it to `repo` and waits for
/// that push's build, the server's first; answers the work tree.
pub fn first_build(s: &Server, repo: &str, files: &[(&str, &str)]) -> PathBuf {
    let work = s.local_repo(&s.admin, "w");
    for (file, text) in files {
        commit_file(s, &s.admin, &work, file, text, file);
    }
    s.git(&s.admin, &work, &["push", "-q", &s.url(repo), "main"])
        .ok();
    assert_eq!(build_done(s, 1)["status"], "SUCCEEDED");
    work
}

/// A pipeline `ship`: a build stage whose artifact `site` a deploy stage deploys to
/// web/prod; `deploy_stage_extra` is added to the deploy stage (e.g. `on-failure`).
fn ship_pipeline(deploy_stage_extra: &str) -> String {
    format!("name: ship\nstages:\n  - name: build\n    actions: [ {{ name: compile, build: {{}}, outputs: [site] }} ]\n  - name: deploy\n{deploy_stage_extra}    actions: [ {{ name: prod, deploy: {{ application: web, group: prod }}, inputs: [site] }} ]\n")
}

/// A revision: the site's index.html says `text`; ValidateService fails when `healthy`
/// is false.
pub fn revision(s: &Server, work: &Path, text: &str, healthy: bool) {
    commit_file(
        s,
        &s.admin,
        work,
        "site/index.html",
        &format!("{text}\n"),
        text,
    );
    let check = if healthy {
        "exit 0"
    } else {
        "echo not healthy; exit 1"
    };
    commit_file(
        s,
        &s.admin,
        work,
        "scripts/validate.sh",
        &format!("#!/bin/sh\necho validating $DEPLOYMENT_ID on $DEPLOYMENT_GROUP_NAME\n{check}\n"),
        "validate",
    );
}

pub const SPEC: &str = "version: 0.2\nphases:\n  build:\n    commands: [\"chmod +x scripts/validate.sh\"]\nartifacts:\n  files: ['appspec.yml', 'site/**/*', 'scripts/*']\n";

/// All at once to two agents (a third with other tags is left alone); then a revision
/// whose ValidateService fails everywhere fails the deployment and the group rolls back
/// to the good revision by itself.
#[test]
fn a_revision_reaches_the_group_and_a_failing_one_is_rolled_back() {
    let s = Server::start();
    s.push_admin_file(
        "deploy.yaml",
        "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n        config: all-at-once\n        auto-rollback: [failure]\n",
    )
    .ok();
    s.push_admin_file(
        "rules.yaml",
        "rules:\n  - name: deploy-failures\n    match: { source: deploy, state: FAILED }\n    targets:\n      - email: [team@example.com]\n",
    )
    .ok();
    let a = start_agent(&s, "web-1", &["role=web"]);
    let b = start_agent(&s, "web-2", &["role=web"]);
    let other = start_agent(&s, "db-1", &["role=db"]);
    let work = app_work(&s);
    revision(&s, &work, "version one", true);
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-site"), "main"])
        .ok();
    assert_eq!(build_done(&s, 1)["status"], "SUCCEEDED");
    s.ssh(&s.alice, "deploy create web prod --build 1")
        .fails()
        .says("deploy:create on deploy:web/prod is needed");
    s.ssh(&s.admin, "deploy create web prod --build 1")
        .ok()
        .says("created deployment 1");
    let done = wait_deployment(&s, 1);
    assert_eq!(done["deployment"]["status"], "SUCCEEDED", "{done:#}");
    let hosts: Vec<&str> = done["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["agent"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 2, "{done:#}");
    assert!(!hosts.contains(&"db-1"));
    for agent in [&a, &b] {
        let page = std::fs::read_to_string(agent.root.join("srv/web/index.html")).unwrap();
        assert_eq!(page, "version one\n");
    }
    assert!(!other.root.join("srv/web").exists());
    // The build's chmod +x travels in the artifact: the agent has nothing to fix.
    for agent in [&a, &b] {
        let log = agent.log_text();
        assert!(log.contains("running a lifecycle event"), "{log}");
        assert!(!log.contains("not executable"), "{log}");
    }
    s.ssh(&s.admin, "deploy status 1")
        .ok()
        .says("AppStop     Download    BeforeInst  Install     AfterInst   AppStart    Validate")
        .says("web-1")
        .says("SUCCEEDED");

    revision(&s, &work, "version two", false);
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-site"), "main"])
        .ok();
    assert_eq!(build_done(&s, 2)["status"], "SUCCEEDED");
    s.ssh(&s.admin, "deploy create web prod --build 2").ok();
    let failed = wait_deployment(&s, 2);
    assert_eq!(failed["deployment"]["status"], "FAILED", "{failed:#}");
    let reason = failed["deployment"]["reason"].as_str().unwrap();
    assert!(reason.contains("rolling back"), "{reason}");
    let log = failed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "FAILED")
        .and_then(|e| e["log"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(log.contains("not healthy"), "{failed:#}");
    let rollback = failed["deployment"]["rollback_id"].as_i64().unwrap();
    let rolled = wait_deployment(&s, rollback);
    assert_eq!(rolled["deployment"]["status"], "SUCCEEDED", "{rolled:#}");
    assert_eq!(rolled["deployment"]["creator"], "rollback");
    for agent in [&a, &b] {
        let page = std::fs::read_to_string(agent.root.join("srv/web/index.html")).unwrap();
        assert_eq!(page, "version one\n");
    }
    let events = s
        .ssh(&s.admin, "events --type host-state-change --json")
        .ok()
        .stdout;
    assert!(events.contains("ValidateService"), "{events}");
    // People hear of it: the failed deployment and each failed host, with its log.
    let mailed = eventually(Duration::from_secs(30), || {
        let all = crate::events::mails(&s);
        all.iter()
            .any(|(_, m)| m.contains("[slipway] deployment 2 to web/prod FAILED"))
            && all.iter().any(|(_, m)| {
                m.contains("host web-1 FAILED in ValidateService") && m.contains("not healthy")
            })
    });
    assert!(mailed, "{:?}", crate::events::mails(&s));

    // By hand: nothing succeeded before deployment 1; rolling 2 back redeploys 1's.
    s.ssh(&s.admin, "deploy rollback 1")
        .fails()
        .says("nothing to roll back to");
    s.ssh(&s.admin, "deploy rollback 2")
        .ok()
        .says("to the revision of deployment 1");
    // --watch follows a deployment until it ends.
    let watched = s
        .ssh(&s.admin, "deploy status 4 --watch --json")
        .ok()
        .stdout;
    let frames: Vec<serde_json::Value> = watched
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        frames.last().unwrap()["deployment"]["status"],
        "SUCCEEDED",
        "{watched}"
    );
    assert_eq!(frames.last().unwrap()["deployment"]["rollback_of"], 2);
}

/// A pipeline's deploy action deploys its input artifact (a build's) to the group and
/// waits for the deployment; the stage succeeds with it.
#[test]
fn a_pipeline_deploy_action_deploys_the_build_artifact() {
    let s = Server::start();
    let (agent, work) = web_prod_with_one_agent(&s);
    revision(&s, &work, "from the pipeline", true);
    commit_file(
        &s,
        &s.admin,
        &work,
        "pipeline.yml",
        &ship_pipeline(""),
        "pipeline",
    );
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-ship"), "main"])
        .ok();
    let id = crate::pipelines::wait_executions(&s, "ship", 1)[0];
    let done = crate::pipelines::wait_execution(&s, id, "SUCCEEDED");
    let prod = crate::pipelines::action(&done, "prod");
    assert_eq!(prod["status"], "SUCCEEDED", "{done:#}");
    let deployment = prod["detail"]["deployment"].as_i64().unwrap();
    let d = deployment_json(&s, deployment);
    assert_eq!(d["deployment"]["creator"], "pipeline/ship");
    assert_eq!(d["deployment"]["status"], "SUCCEEDED");
    let page = std::fs::read_to_string(agent.root.join("srv/web/index.html")).unwrap();
    assert_eq!(page, "from the pipeline\n");

    // A host that joins the group later gets its current revision by itself.
    let late = start_agent(&s, "web-2", &["role=web"]);
    let installed = eventually(Duration::from_secs(60), || {
        std::fs::read_to_string(late.root.join("srv/web/index.html")).ok()
            == Some("from the pipeline\n".to_string())
    });
    assert!(installed, "{}", s.log_text());
    let list = s.ssh(&s.admin, "deploy list --json").ok().stdout;
    assert!(list.contains("new host web-2"), "{list}");
}

/// An agent killed in the middle of a lifecycle event: after the agent timeout its event
/// and host fail (one-at-a-time tolerates the last host failing); the next deployment
/// goes to that host first, and the restarted agent reports the interrupted command.
#[test]
fn a_killed_agent_fails_its_host_and_is_deployed_to_first_next_time() {
    let s = server_with_deploy_settings("  agent_timeout: 3s\n");
    s.push_admin_file(
        "deploy.yaml",
        "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n        config: one-at-a-time\n",
    )
    .ok();
    let first = start_agent(&s, "web-1", &["role=web"]);
    let mut second = start_agent(&s, "web-2", &["role=web"]);
    let work = app_work(&s);
    // web-2's ValidateService takes long (its root's path names it).
    commit_file(&s, &s.admin, &work, "site/index.html", "one\n", "one");
    commit_file(
        &s,
        &s.admin,
        &work,
        "scripts/validate.sh",
        "#!/bin/sh\ncase \"$SLIPWAY_AGENT_ROOT\" in *web-2*) sleep 20;; esac\nexit 0\n",
        "slow on web-2",
    );
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-kill"), "main"])
        .ok();
    assert_eq!(build_done(&s, 1)["status"], "SUCCEEDED");
    s.ssh(&s.admin, "deploy create web prod --build 1").ok();
    let running = eventually(Duration::from_secs(60), || {
        deployment_json(&s, 1)["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["agent"] == "web-2"
                    && e["event"] == "ValidateService"
                    && e["status"] == "IN_PROGRESS"
            })
    });
    assert!(running, "{:#}", deployment_json(&s, 1));
    second.kill();
    let done = wait_deployment(&s, 1);
    assert_eq!(
        done["deployment"]["status"], "SUCCEEDED",
        "the last host may fail: {done:#}"
    );
    let lost = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["agent"] == "web-2" && e["event"] == "ValidateService")
        .unwrap()
        .clone();
    assert_eq!(lost["status"], "FAILED", "{done:#}");
    assert!(
        lost["message"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{lost:#}"
    );
    // agent list shows each agent's health and the revision it runs.
    let commit = done["deployment"]["commit"].as_str().unwrap();
    let list = s.ssh(&s.admin, "agent list").ok().stdout;
    let line_of = |name: &str| -> String {
        let start = list
            .find(&format!("{name} "))
            .unwrap_or_else(|| panic!("{list}"));
        list[start..].lines().take(2).collect::<Vec<_>>().join("\n")
    };
    let web1 = line_of("web-1");
    assert!(web1.contains("healthy"), "{list}");
    assert!(
        web1.contains(&format!(
            "web/prod: healthy, commit {} (deployment 1)",
            &commit[..12]
        )),
        "{list}"
    );
    let web2 = line_of("web-2");
    assert!(web2.contains("UNHEALTHY"), "{list}");
    assert!(
        web2.contains("web/prod: UNHEALTHY, no known revision (deployment 1)"),
        "{list}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&s.ssh(&s.admin, "agent list --json").ok().stdout).unwrap();
    let web1 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "web-1")
        .unwrap();
    assert_eq!(web1["health"], "healthy", "{listed:#}");
    assert_eq!(web1["groups"][0]["commit"], commit, "{listed:#}");

    second.restart();
    commit_file(
        &s,
        &s.admin,
        &work,
        "scripts/validate.sh",
        "#!/bin/sh\nexit 0\n",
        "fast",
    );
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-kill"), "main"])
        .ok();
    assert_eq!(build_done(&s, 2)["status"], "SUCCEEDED");
    s.ssh(&s.admin, "deploy create web prod --build 2").ok();
    let next = wait_deployment(&s, 2);
    assert_eq!(next["deployment"]["status"], "SUCCEEDED", "{next:#}");
    assert_eq!(
        next["hosts"][0]["agent"], "web-2",
        "the failed host goes first: {next:#}"
    );
    drop(first);
}

/// Abandoning a pipeline execution stops the deployment of its running deploy action.
#[test]
fn abandoning_a_pipeline_stops_its_deployment() {
    let s = Server::start();
    let (agent, work) = web_prod_with_one_agent(&s);
    commit_file(&s, &s.admin, &work, "site/index.html", "slow\n", "site");
    commit_file(
        &s,
        &s.admin,
        &work,
        "scripts/validate.sh",
        "#!/bin/sh\ntouch \"$SLIPWAY_AGENT_ROOT/validating\"\nsleep 20\n",
        "slow validate",
    );
    commit_file(
        &s,
        &s.admin,
        &work,
        "pipeline.yml",
        &ship_pipeline(""),
        "pipeline",
    );
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-ship"), "main"])
        .ok();
    let id = crate::pipelines::wait_executions(&s, "ship", 1)[0];
    let validating = eventually(Duration::from_secs(60), || {
        agent.root.join("validating").exists()
    });
    assert!(
        validating,
        "ValidateService never started\n{}",
        s.log_text()
    );
    s.ssh(&s.admin, &format!("pipeline stop {id} --abandon"))
        .ok();
    let stopped = crate::pipelines::wait_execution(&s, id, "STOPPED");
    let prod = crate::pipelines::action(&stopped, "prod");
    assert_eq!(prod["status"], "ABANDONED", "{stopped:#}");
    let deployment = prod["detail"]["deployment"].as_i64().unwrap();
    let d = wait_deployment(&s, deployment);
    assert_eq!(d["deployment"]["status"], "STOPPED", "{d:#}");
    let reason = d["deployment"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("its pipeline action was abandoned"),
        "{reason}"
    );
    // The host was half deployed: it does not stay "in progress" forever.
    let host = &d["hosts"][0];
    assert_eq!(host["status"], "FAILED", "{d:#}");
    assert!(
        host["reason"]
            .as_str()
            .unwrap()
            .contains("the deployment was stopped while this host was being deployed"),
        "{d:#}"
    );
    let list = s.ssh(&s.admin, "agent list").ok().stdout;
    assert!(list.contains("web/prod: UNHEALTHY"), "{list}");
}

/// A deploy stage with `on-failure: rollback`: when its deployment fails, the stage fails
/// and is run again with the last good execution's artifact, which is deployed again.
#[test]
fn a_failed_deploy_stage_rolls_back_through_a_new_deployment() {
    let s = Server::start();
    let (agent, work) = web_prod_with_one_agent(&s);
    revision(&s, &work, "good", true);
    let pipeline = ship_pipeline("    on-failure: rollback\n");
    commit_file(&s, &s.admin, &work, "pipeline.yml", &pipeline, "pipeline");
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-ship"), "main"])
        .ok();
    let good = crate::pipelines::wait_executions(&s, "ship", 1)[0];
    crate::pipelines::wait_execution(&s, good, "SUCCEEDED");
    let page = || std::fs::read_to_string(agent.root.join("srv/web/index.html")).unwrap();
    assert_eq!(page(), "good\n");

    revision(&s, &work, "bad", false);
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-ship"), "main"])
        .ok();
    let bad = crate::pipelines::wait_executions(&s, "ship", 2)[1];
    let failed = crate::pipelines::wait_execution(&s, bad, "FAILED");
    let prod = crate::pipelines::action(&failed, "prod");
    assert_eq!(prod["status"], "FAILED", "{failed:#}");
    let bad_deployment = prod["detail"]["deployment"].as_i64().unwrap();
    assert_eq!(
        deployment_json(&s, bad_deployment)["deployment"]["status"],
        "FAILED"
    );
    let reason = failed["execution"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("rolling the stage back to execution {good}")),
        "{reason}"
    );
    let rollback = crate::pipelines::wait_executions(&s, "ship", 3)[2];
    let rolled = crate::pipelines::wait_execution(&s, rollback, "SUCCEEDED");
    assert_eq!(rolled["execution"]["kind"], "ROLLBACK");
    let redeployed = crate::pipelines::action(&rolled, "prod")["detail"]["deployment"]
        .as_i64()
        .unwrap();
    assert!(redeployed > bad_deployment);
    let d = deployment_json(&s, redeployed);
    assert_eq!(d["deployment"]["status"], "SUCCEEDED", "{d:#}");
    assert_eq!(
        d["deployment"]["build_id"], 1,
        "the good execution's build: {d:#}"
    );
    assert_eq!(page(), "good\n");
}

/// An agent killed in the middle of an event that comes back without its record of it
/// (its in-progress file lost, as after a power cut) cannot leave the deployment hanging:
/// its next poll fails the event at once, long before the agent timeout.
#[test]
fn an_agent_that_forgot_its_running_event_fails_it_on_its_next_poll() {
    let s = Server::start();
    let (mut agent, work) = web_prod_with_one_agent(&s);
    commit_file(&s, &s.admin, &work, "site/index.html", "slow\n", "site");
    commit_file(
        &s,
        &s.admin,
        &work,
        "scripts/validate.sh",
        "#!/bin/sh\ntouch \"$SLIPWAY_AGENT_ROOT/validating\"\nsleep 30\n",
        "slow validate",
    );
    s.git(
        &s.admin,
        &work,
        &["push", "-q", &s.url("app-forget"), "main"],
    )
    .ok();
    assert_eq!(build_done(&s, 1)["status"], "SUCCEEDED");
    s.ssh(&s.admin, "deploy create web prod --build 1").ok();
    let validating = eventually(Duration::from_secs(60), || {
        agent.root.join("validating").exists()
    });
    assert!(
        validating,
        "ValidateService never started\n{}",
        s.log_text()
    );
    agent.kill();
    let record = agent.state.join("in-progress.json");
    assert!(
        record.exists(),
        "the agent keeps a record of the running event"
    );
    std::fs::remove_file(&record).unwrap();
    agent.restart();
    // The default agent timeout is 60 s; this must not wait for it.
    let mut last = serde_json::Value::Null;
    let failed = eventually(Duration::from_secs(20), || {
        last = deployment_json(&s, 1);
        last["deployment"]["status"] == "FAILED"
    });
    assert!(failed, "{last:#}\n{}", s.log_text());
    let event = last["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "ValidateService")
        .unwrap()
        .clone();
    assert_eq!(event["status"], "FAILED", "{last:#}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("FAILED_AFTER_RESTART"),
        "{event:#}"
    );
}
