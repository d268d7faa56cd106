//! `slipway-agent run` against a fake server: a thread speaking just enough HTTP/1.1 to
//! hand out lifecycle commands, describe deployments, serve zip bundles and record what
//! the agent sends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest;

use crate::Host;

const CREDENTIAL: &str = "slwc_test_credential";

/// One request the agent made.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

#[derive(Default)]
struct World {
    /// Commands to hand out, in order (one per poll).
    queue: VecDeque<Value>,
    /// What `ack` answers per command (default IN_PROGRESS).
    ack: HashMap<i64, &'static str>,
    /// What `ack` and `heartbeat` answer as `heartbeat_seconds` (none when unset).
    heartbeat_seconds: Option<u64>,
    /// What `heartbeat` answers per command (default IN_PROGRESS).
    heartbeat: HashMap<i64, &'static str>,
    deployments: HashMap<i64, Value>,
    /// Bundles by the SHA-256 they are asked for with.
    bundles: HashMap<String, Vec<u8>>,
    /// Commands whose first `complete` is answered 503 (the server restarting).
    complete_fails_once: HashSet<i64>,
    seen: Vec<Seen>,
    /// Requests without the agent's credential.
    unauthenticated: Vec<String>,
}

/// The fake server: a listener thread, one thread per connection.
struct FakeServer {
    url: String,
    world: Arc<Mutex<World>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(world: World) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let world = Arc::new(Mutex::new(world));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (world.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let w = w.clone();
                        std::thread::spawn(move || serve(stream, &w));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeServer {
            url,
            world,
            stop,
            thread: Some(thread),
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bodies of the accepted `complete`s, in order, by command id.
    fn completed(&self) -> Vec<(i64, Value)> {
        let world = self.world();
        let mut done = Vec::new();
        let mut failed_once = HashSet::new();
        for seen in &world.seen {
            if let Some(id) = command_id(&seen.path, "complete") {
                if world.complete_fails_once.contains(&id) && failed_once.insert(id) {
                    continue; // Answered 503.
                }
                done.push((id, seen.body.clone()));
            }
        }
        done
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `17` from `/api/agent/commands/17/ack` (with `verb` "ack").
fn command_id(path: &str, verb: &str) -> Option<i64> {
    path.strip_prefix("/api/agent/commands/")?
        .strip_suffix(&format!("/{verb}"))?
        .parse()
        .ok()
}

fn serve(mut stream: TcpStream, world: &Mutex<World>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split_whitespace();
    let method = request_line.next().unwrap_or("").to_string();
    let path = request_line.next().unwrap_or("").to_string();
    let mut length = 0usize;
    let mut authorized = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => authorized = value.trim() == format!("Bearer {CREDENTIAL}"),
            _ => {}
        }
    }
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    let (status, content) = answer(world, &method, &path, body, authorized);
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let mut response = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if status != 204 {
        response += &format!("Content-Length: {}\r\n", content.len());
    }
    response += "\r\n";
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(&content);
    let _ = stream.write_all(&bytes);
    let _ = stream.flush();
}

/// The fake server's answer: status and body.
fn answer(
    world: &Mutex<World>,
    method: &str,
    path: &str,
    body: Value,
    authorized: bool,
) -> (u16, Vec<u8>) {
    let json = |v: Value| v.to_string().into_bytes();
    let mut w = world
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !authorized {
        w.unauthenticated.push(format!("{method} {path}"));
        return (401, json(json!({"error": "unknown credential"})));
    }
    w.seen.push(Seen {
        method: method.to_string(),
        path: path.to_string(),
        body,
    });
    let count = |w: &World, m: &str, p: &str| {
        w.seen
            .iter()
            .filter(|s| s.method == m && s.path == p)
            .count()
    };
    if method == "POST" && path == "/api/agent/poll?wait=20" {
        return match w.queue.pop_front() {
            Some(command) => (200, json(json!({ "command": command }))),
            None => {
                drop(w);
                std::thread::sleep(Duration::from_millis(100));
                (204, Vec::new())
            }
        };
    }
    if method == "POST" {
        if let Some(id) = command_id(path, "ack") {
            let status = w.ack.get(&id).copied().unwrap_or("IN_PROGRESS");
            let every = w.heartbeat_seconds;
            return (
                200,
                json(json!({ "status": status, "heartbeat_seconds": every })),
            );
        }
        if let Some(id) = command_id(path, "heartbeat") {
            let status = w.heartbeat.get(&id).copied().unwrap_or("IN_PROGRESS");
            let every = w.heartbeat_seconds;
            return (
                200,
                json(json!({ "status": status, "heartbeat_seconds": every })),
            );
        }
        if let Some(id) = command_id(path, "complete") {
            if w.complete_fails_once.contains(&id) && count(&w, method, path) == 1 {
                return (503, json(json!({"error": "restarting"})));
            }
            return (200, json(json!({"accepted": true})));
        }
    }
    if method == "GET" {
        if let Some(id) = path.strip_prefix("/api/agent/deployments/") {
            if let Some(d) = id.parse().ok().and_then(|id: i64| w.deployments.get(&id)) {
                return (200, json(d.clone()));
            }
        }
        if let Some(sha) = path.strip_prefix("/api/agent/bundles/") {
            if let Some(bytes) = w.bundles.get(sha) {
                return (200, bytes.clone());
            }
        }
    }
    (404, json(json!({"error": "no such thing"})))
}

/// A zip of `files` ((name, content)), with the default (0644) modes, as the server's
/// artifacts are; answers the bytes and their SHA-256.
fn zip(files: &[(&str, String)]) -> (Vec<u8>, String) {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in files {
        z.start_file(*name, options)
            .unwrap_or_else(|e| panic!("{e}"));
        z.write_all(content.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let bytes = z.finish().unwrap_or_else(|e| panic!("{e}")).into_inner();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    (bytes, sha)
}

const APPSPEC: &str = r#"version: 0.0
os: linux
files:
  - source: app
    destination: /srv/web
hooks:
  ApplicationStop: [{ location: scripts/ApplicationStop.sh }]
  BeforeInstall: [{ location: scripts/BeforeInstall.sh }]
  ApplicationStart: [{ location: scripts/ApplicationStart.sh }]
  ValidateService: [{ location: scripts/ValidateService.sh }]
"#;

/// A revision whose scripts append `TAG EVENT|DEPLOYMENT_ID|...` to the host's record;
/// BeforeInstall ends with `before_install_end`.
fn revision(host: &Host, tag: &str, before_install_end: &str) -> (Vec<u8>, String) {
    let script = format!(
        "#!/bin/sh\necho \"{tag} $LIFECYCLE_EVENT|$DEPLOYMENT_ID|$APPLICATION_NAME|$DEPLOYMENT_GROUP_NAME|$DEPLOYMENT_GROUP_ID|$BUNDLE_COMMIT\" >> {}\n",
        host.record().display()
    );
    zip(&[
        ("appspec.yml", APPSPEC.to_string()),
        ("app/index.html", tag.to_string()),
        ("scripts/ApplicationStop.sh", script.clone()),
        (
            "scripts/BeforeInstall.sh",
            format!("{script}{before_install_end}\n"),
        ),
        ("scripts/ApplicationStart.sh", script.clone()),
        ("scripts/ValidateService.sh", script),
    ])
}

fn deployment(id: i64, sha: &str) -> Value {
    json!({
        "deployment_id": format!("d-{id}"), "application": "web", "group": "prod",
        "group_id": "web.prod", "bundle_sha256": sha, "bundle_commit": "c0ffee",
        "file_exists_behavior": "DISALLOW"
    })
}

fn command(id: i64, deployment_id: i64, event: &str) -> Value {
    json!({ "id": id, "deployment_id": deployment_id, "event": event })
}

/// The agent process; killed (by its PID) if the test ends early.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(host: &Host) -> Agent {
        let log = host.path("agent.log");
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_slipway-agent"))
            .arg("run")
            .arg("--state")
            .arg(host.path("state"))
            .arg("--root")
            .arg(host.path("root"))
            .env("RUST_LOG", "slipway_agent=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run slipway-agent: {e}"));
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (up to 5 s) for a clean exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => panic!("the agent did not stop on SIGTERM:\n{}", self.log()),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Registers the host's agent with `server` by writing agent.json into its state
/// directory; answers the directory.
fn register(host: &Host, server: &FakeServer) -> PathBuf {
    let state = host.path("state");
    std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{e}"));
    let registration = json!({"server": server.url, "name": "web-1",
        "credential": CREDENTIAL, "tags": {"role": "web"}});
    std::fs::write(state.join("agent.json"), registration.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    state
}

/// Waits (up to 15 s) until `done` holds.
fn wait_for(what: &str, agent: &Agent, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn runs_the_servers_commands_and_reports_them() {
    let host = Host::new();
    let (v1, sha1) = revision(&host, "v1", "");
    let (v2, sha2) = revision(&host, "v2", "echo boom >&2\nexit 3");
    let (_, sha_other) = zip(&[("appspec.yml", "version: 0.0\nos: linux\n".into())]);

    let mut world = World::default();
    world.deployments.insert(5, deployment(5, &sha1));
    world.deployments.insert(6, deployment(6, &sha2));
    world.deployments.insert(7, deployment(7, &sha_other));
    world.bundles.insert(sha1.clone(), v1);
    world.bundles.insert(sha2.clone(), v2.clone());
    // Deployment 7's bundle arrives damaged (other bytes than announced).
    world.bundles.insert(sha_other.clone(), v2);
    world.ack.insert(21, "CANCELLED");
    world.complete_fails_once.insert(17);
    world.queue = [
        command(17, 5, "DownloadBundle"),
        command(18, 5, "Install"),
        command(19, 5, "BeforeInstall"),
        command(20, 5, "ValidateService"),
        command(21, 5, "ApplicationStart"),
        command(22, 6, "DownloadBundle"),
        command(23, 6, "ApplicationStop"),
        command(24, 6, "BeforeInstall"),
        command(25, 7, "DownloadBundle"),
    ]
    .into();
    let server = FakeServer::start(world);

    // A command the agent was running when it stopped.
    let state = register(&host, &server);
    std::fs::write(
        state.join("in-progress.json"),
        json!({"command_id": 16, "deployment_id": 4, "event": "AfterInstall"}).to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let mut agent = Agent::start(&host);
    wait_for("the last command's result", &agent, || {
        server.completed().iter().any(|(id, _)| *id == 25)
    });
    let status = agent.stop();
    assert!(status.success(), "{status:?}\n{}", agent.log());

    let world = server.world();
    assert_eq!(
        world.unauthenticated,
        Vec::<String>::new(),
        "every request carries the credential"
    );
    // First of all, the command that was interrupted.
    let first = &world.seen[0];
    assert_eq!(first.path, "/api/agent/commands/16/complete");
    assert_eq!(first.body["status"], "FAILED");
    assert_eq!(first.body["diagnostics"]["error_code"], 7);
    let message = first.body["diagnostics"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("agent stopped while it ran AfterInstall"),
        "{message}"
    );
    drop(world);

    let completed = server.completed();
    let statuses: Vec<(i64, &str)> = completed
        .iter()
        .map(|(id, body)| (*id, body["status"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        statuses,
        [
            (16, "FAILED"),
            (17, "SUCCEEDED"),
            (18, "SUCCEEDED"),
            (19, "SUCCEEDED"),
            (20, "SUCCEEDED"),
            (22, "SUCCEEDED"),
            (23, "SUCCEEDED"),
            (24, "FAILED"),
            (25, "FAILED"),
        ],
        "{completed:#?}\n{}",
        agent.log()
    );
    let body = |id: i64| {
        completed
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    };
    let failed = body(24)["diagnostics"].clone();
    assert_eq!(failed["error_code"], 4, "{failed}");
    assert_eq!(failed["script_name"], "scripts/BeforeInstall.sh");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or("")
            .contains("failed with exit code 3"),
        "{failed}"
    );
    assert!(
        failed["log"]
            .as_str()
            .unwrap_or("")
            .contains("[stderr]boom"),
        "the script's log tail: {failed}"
    );
    let damaged = body(25)["diagnostics"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(damaged.contains("SHA-256"), "{damaged}");
    assert_eq!(body(20)["diagnostics"]["error_code"], 0);

    let world = server.world();
    // Each command is acknowledged before it is reported, and each deployment and
    // bundle is fetched once.
    for id in [17, 18, 19, 20, 22, 23, 24, 25] {
        let at = |verb: &str| {
            world
                .seen
                .iter()
                .position(|s| command_id(&s.path, verb) == Some(id))
        };
        assert!(
            at("ack").is_some() && at("ack") < at("complete"),
            "command {id}"
        );
    }
    let gets = |p: &str| world.seen.iter().filter(|s| s.path == p).count();
    assert_eq!(gets("/api/agent/deployments/5"), 1);
    assert_eq!(gets("/api/agent/deployments/6"), 1);
    assert_eq!(gets(&format!("/api/agent/bundles/{sha1}")), 1);
    assert_eq!(gets(&format!("/api/agent/bundles/{sha2}")), 1);
    // The cancelled command was acknowledged, then neither run nor reported.
    assert_eq!(gets("/api/agent/commands/21/ack"), 1);
    assert_eq!(gets("/api/agent/commands/21/complete"), 0);
    // The result the server did not take at first was sent again.
    assert_eq!(gets("/api/agent/commands/17/complete"), 2);
    drop(world);

    // The scripts ran in the order handed out; deployment 6's ApplicationStop ran the
    // script of d-5, the last successful revision; ApplicationStart (cancelled) did not.
    assert_eq!(
        host.recorded(),
        [
            "v1 BeforeInstall|d-5|web|prod|web.prod|c0ffee",
            "v1 ValidateService|d-5|web|prod|web.prod|c0ffee",
            "v1 ApplicationStop|d-6|web|prod|web.prod|c0ffee",
            "v2 BeforeInstall|d-6|web|prod|web.prod|c0ffee",
        ],
        "{}",
        agent.log()
    );
    assert_eq!(
        std::fs::read_to_string(host.installed("/srv/web/index.html"))
            .ok()
            .as_deref(),
        Some("v1")
    );
    let deployments = state.join("groups/web.prod/deployments");
    assert!(deployments.join("d-5/archive/appspec.yml").is_file());
    assert!(!deployments.join("d-5/bundle.zip").exists());
    assert!(!deployments.join("d-7/archive").exists());
    assert_eq!(
        std::fs::read_to_string(state.join("groups/web.prod/last-successful"))
            .ok()
            .as_deref(),
        Some("d-5")
    );
    assert!(
        !state.join("in-progress.json").exists(),
        "nothing is in progress"
    );
}

#[test]
fn an_agent_stopped_during_a_script_reports_it_as_failed_when_it_starts_again() {
    let host = Host::new();
    let (bundle, sha) = revision(
        &host,
        "v1",
        &format!("echo \"pid $$\" >> {}\nsleep 30", host.record().display()),
    );
    let mut world = World::default();
    world.deployments.insert(5, deployment(5, &sha));
    world.bundles.insert(sha, bundle);
    world.queue = [
        command(30, 5, "DownloadBundle"),
        command(31, 5, "BeforeInstall"),
    ]
    .into();
    let server = FakeServer::start(world);
    let state = register(&host, &server);

    let mut agent = Agent::start(&host);
    let script_pid = || {
        host.recorded()
            .iter()
            .find_map(|l| l.strip_prefix("pid ")?.parse::<i32>().ok())
    };
    wait_for("the script to start", &agent, || script_pid().is_some());
    let status = agent.stop();
    assert!(status.success(), "{status:?}\n{}", agent.log());
    let pid = script_pid().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the script {pid} outlived the agent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tracking: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("in-progress.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(
        tracking,
        json!({"command_id": 31, "deployment_id": 5, "event": "BeforeInstall"})
    );
    assert_eq!(
        server
            .completed()
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        [30]
    );

    let mut again = Agent::start(&host);
    wait_for("the interrupted command's report", &again, || {
        server.completed().len() == 2
    });
    assert!(again.stop().success(), "{}", again.log());
    let (id, body) = server.completed()[1].clone();
    assert_eq!(id, 31);
    assert_eq!(body["status"], "FAILED");
    assert_eq!(body["diagnostics"]["error_code"], 7, "{body}");
    assert!(!state.join("in-progress.json").exists());
}

/// While a command runs the agent sends heartbeats as often as the server asks (so a long
/// event does not look like a lost agent), and stops when the command has ended; a
/// server that no longer waits for the command does not stop the script (its result is
/// still reported).
#[test]
fn a_running_command_sends_heartbeats_until_it_ends() {
    let host = Host::new();
    let (bundle, sha) = revision(&host, "v1", "sleep 3");
    let mut world = World::default();
    world.deployments.insert(5, deployment(5, &sha));
    world.bundles.insert(sha, bundle);
    world.heartbeat_seconds = Some(1);
    world.heartbeat.insert(41, "FAILED");
    world.queue = [
        command(40, 5, "DownloadBundle"),
        command(41, 5, "BeforeInstall"),
        command(42, 5, "Install"),
    ]
    .into();
    let server = FakeServer::start(world);
    register(&host, &server);

    let mut agent = Agent::start(&host);
    wait_for("the last command's result", &agent, || {
        server.completed().iter().any(|(id, _)| *id == 42)
    });
    // Still a moment for a stray heartbeat to show up, if one were sent after the end.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(agent.stop().success(), "{}", agent.log());

    let world = server.world();
    let at = |verb: &str, id: i64| -> Vec<usize> {
        world
            .seen
            .iter()
            .enumerate()
            .filter(|(_, s)| command_id(&s.path, verb) == Some(id))
            .map(|(i, _)| i)
            .collect()
    };
    let beats = at("heartbeat", 41);
    assert!(
        beats.len() >= 2,
        "a 3 s script with heartbeats every second: {beats:?}\n{}",
        agent.log()
    );
    let (ack, complete) = (at("ack", 41)[0], at("complete", 41)[0]);
    assert!(
        beats.iter().all(|b| ack < *b && *b < complete),
        "heartbeats only while the command runs"
    );
    assert!(at("heartbeat", 40).is_empty() && at("heartbeat", 42).is_empty());
    drop(world);
    let statuses: Vec<(i64, String)> = server
        .completed()
        .into_iter()
        .map(|(id, body)| (id, body["status"].as_str().unwrap_or("?").to_string()))
        .collect();
    assert_eq!(
        statuses,
        [
            (40, "SUCCEEDED".to_string()),
            (41, "SUCCEEDED".to_string()),
            (42, "SUCCEEDED".to_string())
        ]
    );
    assert!(
        agent
            .log()
            .contains("the server no longer waits for this command"),
        "{}",
        agent.log()
    );
}
