//! A network cut between an agent and the server, made by a TCP proxy in the test
//! process: the agent registers and runs with `--server http://127.0.0.1:PROXY`, and
//! cutting the proxy closes its listener and every connection through it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::deployments::{
    create_deployment, deployment_json, first_build, server_with_deploy_settings, start_agent,
    start_agent_via, wait_deployment, Agent,
};
use crate::harness::*;

/// A loopback TCP proxy to `target` that can be cut (listener closed, live connections
/// shut) and restored on the same port.
pub struct Proxy {
    pub port: u16,
    target: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
    up: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let mut proxy = Proxy {
            port,
            target,
            live: Arc::new(Mutex::new(Vec::new())),
            up: Arc::new(AtomicBool::new(true)),
            acceptor: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let (up, live, target) = (self.up.clone(), self.live.clone(), self.target);
        self.acceptor = Some(std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut conns = live.lock().unwrap();
                        for (from, to) in [(&client, &server), (&server, &client)] {
                            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                                continue;
                            };
                            std::thread::spawn(move || pipe(from, to));
                        }
                        conns.push(client);
                        conns.push(server);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // Dropping the listener here closes the port.
        }));
    }

    /// Cuts the network: no new connections, and every live one is shut down.
    pub fn cut(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for conn in self.live.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Restores the network on the same port.
    pub fn restore(&mut self) {
        let mut bound = None;
        let listening = eventually(Duration::from_secs(10), || {
            bound = TcpListener::bind(("127.0.0.1", self.port)).ok();
            bound.is_some()
        });
        assert!(listening, "cannot listen on port {} again", self.port);
        self.up.store(true, Ordering::SeqCst);
        if let Some(listener) = bound {
            self.serve(listener);
        }
    }

    /// The URL agents use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies `from` to `to` until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

const BUILDSPEC: &str = "version: 0.2\nphases:\n  build:\n    commands: [\"chmod +x scripts/*.sh\"]\nartifacts:\n  files: ['appspec.yml', 'scripts/*']\n";

const APPSPEC: &str = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n      timeout: 120\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 120\n";

/// ApplicationStart sleeps as many seconds as the host's `ROOT/sleep` says, and notes
/// each run in `ROOT/runs`.
const START: &str = "#!/bin/sh\necho \"start $DEPLOYMENT_ID\" >> \"$SLIPWAY_AGENT_ROOT/runs\"\nsleep \"$(cat \"$SLIPWAY_AGENT_ROOT/sleep\" 2>/dev/null || echo 0)\"\necho \"end $DEPLOYMENT_ID\" >> \"$SLIPWAY_AGENT_ROOT/runs\"\n";

const VALIDATE: &str =
    "#!/bin/sh\necho \"validate $DEPLOYMENT_ID\" >> \"$SLIPWAY_AGENT_ROOT/runs\"\n";

/// The lines of `ROOT/runs` naming deployment `id`.
fn runs(agent: &Agent, id: i64) -> Vec<String> {
    let suffix = format!(" d-{id}");
    std::fs::read_to_string(agent.root.join("runs"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with(&suffix))
        .map(str::to_string)
        .collect()
}

fn host<'a>(done: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    done["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["agent"] == name))
        .unwrap_or_else(|| panic!("no host {name}: {done:#}"))
}

/// Two hosts, one at a time, with a 3 s agent timeout; `n2` talks to the server through
/// the proxy. An agent busy for longer than the timeout is not lost. A cut while `n2`
/// runs ApplicationStart fails that host once the timeout has passed (`n2` goes last,
/// so one-at-a-time still succeeds); restored, the same agent process reconnects by
/// itself, the cut command is not run again, and the next deployment goes to `n2` first.
#[test]
fn a_network_cut_fails_the_host_and_the_agent_comes_back_by_itself() {
    let s = server_with_deploy_settings("  agent_timeout: 3s\n");
    s.push_admin_file(
        "deploy.yaml",
        "applications:\n  net:\n    groups:\n      prod:\n        tags: [[\"role=net\"]]\n        config: one-at-a-time\n",
    )
    .ok();
    let mut proxy = Proxy::start(s.http_port);
    let n1 = start_agent(&s, "n1", &["role=net"]);
    let mut n2 = start_agent_via(
        &s,
        "n2",
        &["role=net"],
        &crate::deployments::Connection::to(&proxy.url()),
    );
    first_build(
        &s,
        "app-net",
        &[
            ("buildspec.yml", BUILDSPEC),
            ("appspec.yml", APPSPEC),
            ("scripts/start.sh", START),
            ("scripts/validate.sh", VALIDATE),
        ],
    );

    // Busy for 5 s, longer than the agent timeout, without a cut: not lost.
    std::fs::write(n2.root.join("sleep"), "5").unwrap();
    let busy = create_deployment(&s, "net", "prod", 1, None);
    let done = wait_deployment(&s, busy);
    assert_eq!(done["deployment"]["status"], "SUCCEEDED", "{done:#}");
    assert_eq!(host(&done, "n2")["status"], "SUCCEEDED", "{done:#}");

    // Cut while n2 runs ApplicationStart (its script has begun), and keep it cut until
    // the server gives up on n2.
    std::fs::write(n2.root.join("sleep"), "3").unwrap();
    let cut = create_deployment(&s, "net", "prod", 1, None);
    let started = eventually(Duration::from_secs(60), || !runs(&n2, cut).is_empty());
    assert!(started, "{:#}", deployment_json(&s, cut));
    proxy.cut();
    let done = wait_deployment(&s, cut);
    proxy.restore();
    assert_eq!(
        done["deployment"]["status"], "SUCCEEDED",
        "one-at-a-time tolerates its last host failing: {done:#}"
    );
    assert_eq!(host(&done, "n1")["status"], "SUCCEEDED", "{done:#}");
    let lost = host(&done, "n2");
    assert_eq!(lost["status"], "FAILED", "{done:#}");
    let reason = lost["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("ApplicationStart failed: the agent stopped answering"),
        "{done:#}"
    );
    s.ssh(&s.admin, &format!("deploy status {cut}"))
        .ok()
        .says("n2 ApplicationStart failed")
        .says("the agent stopped answering");

    // Restored: the same agent process carries on and takes the next deployment, which
    // starts with n2, the host that failed.
    std::fs::write(n2.root.join("sleep"), "0").unwrap();
    let next = create_deployment(&s, "net", "prod", 1, None);
    let done = wait_deployment(&s, next);
    assert_eq!(done["deployment"]["status"], "SUCCEEDED", "{done:#}");
    assert_eq!(
        done["hosts"][0]["agent"], "n2",
        "the failed host goes first: {done:#}"
    );
    let (first, second) = (host(&done, "n2"), host(&done, "n1"));
    assert!(
        first["ended"].as_f64() <= second["started"].as_f64(),
        "n2 before n1: {done:#}"
    );
    assert!(
        n2.running(),
        "the agent was never restarted:\n{}",
        n2.log_text()
    );
    // The cut ApplicationStart ran once (to its end: the agent cannot tell a cut from a
    // slow server), and the ValidateService after it never ran.
    assert_eq!(
        runs(&n2, cut),
        [format!("start d-{cut}"), format!("end d-{cut}")],
        "{}",
        n2.log_text()
    );
    assert_eq!(runs(&n2, next).len(), 3, "{}", n2.log_text());
    drop(n1);
}
