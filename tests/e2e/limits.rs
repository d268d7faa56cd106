//! Connection limits: login grace time, unauthenticated connections, sessions per
//! connection, idle timeout, and long transfers that must not be cut off.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Generous bound for "eventually": far above any limit configured here.
const WITHIN: Duration = Duration::from_secs(20);

fn start(overrides: &[(&str, &str)]) -> Server {
    Server::start_with(Options {
        settings: Some(settings_yaml(overrides)),
        ..Default::default()
    })
}

/// A server with only the administrator configured: no configuration push happens
/// under settings (a 2 s idle timeout) that could cut it on a loaded machine.
fn start_admin_only(overrides: &[(&str, &str)]) -> Server {
    Server::start_with(Options {
        settings: Some(settings_yaml(overrides)),
        init_only: true,
        ..Default::default()
    })
}

fn refused(reason: &str) -> String {
    format!("slipway_ssh_refused_total{{reason=\"{reason}\"}}")
}

/// A raw TCP connection to the SSH port that never authenticates.
fn raw_connect(s: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", s.ssh_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stream
}

/// Reads the server's identification line (`SSH-2.0-…`), proving the connection was
/// admitted.
#[track_caller]
fn read_banner(stream: &mut TcpStream) -> String {
    let deadline = Instant::now() + WITHIN;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert!(Instant::now() < deadline, "no SSH banner within {WITHIN:?}");
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed before a full banner: {:?}",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) => line.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the banner: {e}"),
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    assert!(line.starts_with("SSH-2.0-"), "{line:?}");
    line
}

/// Reads until the server closes the connection (EOF or reset). Returns what was read,
/// or None if it is still open after `limit`.
fn wait_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(seen),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() > deadline {
                    return None;
                }
            }
            Err(_) => return Some(seen),
        }
    }
}

/// A child process this test started; killed (by its own handle) if still running when
/// dropped, so a failing assertion leaves nothing behind.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Started {
    /// Waits up to `limit` for the process to exit; its exit code, or None if it still
    /// runs.
    fn wait_for(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A long-lived `git-upload-pack` session: stdin kept open, so after its ref
/// advertisement upload-pack waits for the client forever.
struct Waiting {
    child: Started,
    /// stderr, once the process has ended.
    stderr: mpsc::Receiver<String>,
}

impl Waiting {
    /// Starts `ssh ARGS git@127.0.0.1 git-upload-pack REPO` and waits for the first
    /// bytes of the ref advertisement.
    #[track_caller]
    fn start(args: &[String], repo: &str) -> Waiting {
        let mut child = Started(
            Command::new("ssh")
                .args(args)
                .arg("git@127.0.0.1")
                .arg(format!("git-upload-pack {repo}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ssh runs"),
        );
        let mut stdout = child.0.stdout.take().unwrap();
        let mut stderr = child.0.stderr.take().unwrap();
        let (first_tx, first_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut sent = false;
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if !sent {
                    let _ = first_tx.send(buf[..n].to_vec());
                    sent = true;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        let mut session = Waiting {
            child,
            stderr: err_rx,
        };
        match first_rx.recv_timeout(WITHIN) {
            Ok(first) => assert!(
                first.len() >= 4 && first[..4].iter().all(u8::is_ascii_hexdigit),
                "not a pkt-line: {:?}",
                String::from_utf8_lossy(&first)
            ),
            Err(_) => {
                let code = session.child.wait_for(Duration::from_secs(1));
                panic!(
                    "no ref advertisement from upload-pack (exit {code:?}): {}",
                    session.stderr_text()
                );
            }
        }
        session
    }

    /// stderr so far, if the process has ended (else empty).
    fn stderr_text(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default()
    }

    /// Closes stdin: upload-pack sees the client go away and ends.
    fn hang_up(&mut self) {
        drop(self.child.0.stdin.take());
    }
}

// A client that sends its version line and stalls is disconnected after login_grace_time.
#[test]
fn login_grace_time_disconnects_a_client_stalled_before_key_exchange() {
    let s = start(&[("login_grace_time", "1s")]);
    let before = s.metric(&refused("login-grace-time"));
    let mut stalled = raw_connect(&s);
    read_banner(&mut stalled);
    stalled.write_all(b"SSH-2.0-stalled_client\r\n").unwrap();
    // Meanwhile a normal login works.
    s.ssh(&s.alice, "whoami").ok().says("alice");
    let closed = wait_closed(&mut stalled, WITHIN);
    assert!(
        closed.is_some(),
        "a connection that never authenticated was still open {WITHIN:?} after connecting \
         (login_grace_time is 1s); login-grace-time refusals counted: {before} -> {}",
        s.metric(&refused("login-grace-time"))
    );
    assert!(
        eventually(WITHIN, || s.metric(&refused("login-grace-time")) > before),
        "login-grace-time refusal not counted"
    );
    s.ssh(&s.alice, "whoami").ok().says("alice");
}

// A connection that sends nothing at all is dropped after `login_grace_time` too.
#[test]
fn login_grace_time_disconnects_a_silent_client() {
    let s = start(&[("login_grace_time", "1s")]);
    let before = s.metric(&refused("login-grace-time"));
    let mut silent = raw_connect(&s);
    read_banner(&mut silent);
    s.ssh(&s.alice, "whoami").ok().says("alice");
    let closed = wait_closed(&mut silent, WITHIN);
    assert!(
        closed.is_some(),
        "a connection that sent nothing was still open {WITHIN:?} after connecting \
         (login_grace_time is 1s); login-grace-time refusals counted: {before} -> {}",
        s.metric(&refused("login-grace-time"))
    );
    assert!(
        eventually(WITHIN, || s.metric(&refused("login-grace-time")) > before),
        "login-grace-time refusal not counted"
    );
}

// Typing the key's passphrase too late: ssh says "authentication took too long".
#[test]
fn login_grace_time_disconnects_a_client_stuck_in_authentication() {
    let s = start(&[("login_grace_time", "1s")]);
    let before = s.metric(&refused("login-grace-time"));
    // alice's key, protected by a passphrase that the "user" takes 4 s to type. Her
    // public key is offered and accepted as a probe; ssh then asks for the passphrase.
    let keys = s.scratch("slow-user");
    let locked = keys.join("alice_locked");
    std::fs::copy(&s.alice.private, &locked).unwrap();
    std::fs::copy(&s.alice.public, keys.join("alice_locked.pub")).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "a passphrase", "-f"])
        .arg(&locked))
    .ok();
    let askpass = keys.join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\nsleep 4\necho 'a passphrase'\n").unwrap();
    run(Command::new("chmod").arg("+x").arg(&askpass)).ok();
    let mut args = Vec::new();
    let base = s.ssh_base(&s.alice);
    let mut i = 0;
    while i < base.len() {
        match base[i].as_str() {
            "-i" => {
                args.push("-i".into());
                args.push(locked.display().to_string());
                i += 2;
                continue;
            }
            "BatchMode=yes" => args.push("BatchMode=no".into()),
            "LogLevel=ERROR" => args.push("LogLevel=INFO".into()),
            other => args.push(other.into()),
        }
        i += 1;
    }
    let mut cmd = Command::new("ssh");
    cmd.args(&args)
        .arg("git@127.0.0.1")
        .arg("whoami")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    let mut child = Started(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(
        eventually(WITHIN, || s.metric(&refused("login-grace-time")) > before),
        "login-grace-time refusal not counted"
    );
    let code = child.wait_for(WITHIN);
    assert!(code.is_some(), "ssh still running {WITHIN:?} later");
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_ne!(code, Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("user:"), "{stdout}");
    assert!(
        stderr.contains("authentication took too long"),
        "ssh should report the server's reason:\n{stderr}"
    );
    s.ssh(&s.alice, "whoami").ok().says("alice");
}

// Over `max_unauthenticated`, a new connection is closed at once without an SSH banner.
#[test]
fn unauthenticated_connection_limit_refuses_extra_connections() {
    let s = start(&[("max_unauthenticated", "2")]);
    let before = s.metric(&refused("unauthenticated-limit"));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = raw_connect(&s);
        read_banner(&mut c);
        held.push(c);
    }
    let mut third = raw_connect(&s);
    let got = wait_closed(&mut third, WITHIN).expect("the third connection should be closed");
    assert!(
        got.is_empty(),
        "the refused connection got bytes: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        eventually(WITHIN, || s.metric(&refused("unauthenticated-limit"))
            > before),
        "unauthenticated-limit refusal not counted"
    );
    // A real client is refused the same way while the two are held.
    s.ssh(&s.alice, "whoami").fails().never_says("user:");
    drop(held);
    assert!(
        eventually(WITHIN, || s.ssh(&s.alice, "whoami").code == 0),
        "logins did not work again after the held connections closed"
    );
    s.ssh(&s.alice, "whoami").ok().says("alice");
}

// A third session on a 2-session connection: ssh says "Session open refused by peer".
#[test]
fn sessions_per_connection_limit_refuses_a_third_session() {
    let s = start(&[("max_sessions_per_connection", "2")]);
    let before = s.metric(&refused("sessions-per-connection"));
    let sock = s.dir.path().join("cm.sock");
    let mut mux = s.ssh_base(&s.admin);
    mux.extend([
        "-S".to_string(),
        sock.display().to_string(),
        "-o".into(),
        "ControlMaster=no".into(),
    ]);
    let mut master = Started(
        Command::new("ssh")
            .args(s.ssh_base(&s.admin))
            .args(["-M", "-N", "-S"])
            .arg(&sock)
            .arg("git@127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh master runs"),
    );
    let check = |args: &[String]| {
        run(Command::new("ssh")
            .args(args)
            .args(["-O", "check", "git@127.0.0.1"]))
        .code
            == 0
    };
    assert!(
        eventually(WITHIN, || check(&mux)),
        "the master did not come up"
    );

    let mut one = Waiting::start(&mux, "admin.git");
    let mut two = Waiting::start(&mux, "admin.git");
    // Both run over the master's single connection.
    assert!(
        eventually(WITHIN, || {
            s.metric("slipway_ssh_connections_in_flight") == 1.0
                && s.metric("slipway_ssh_sessions_in_flight") == 2.0
        }),
        "expected 1 connection with 2 sessions:\n{}",
        s.metrics()
    );

    // When the master's session is refused, ssh would quietly fall back to a new
    // connection of its own; a ProxyCommand that fails rules that out.
    let third = run(Command::new("ssh")
        .args(&mux)
        .args(["-o", "ProxyCommand=/bin/false"])
        .arg("git@127.0.0.1")
        .arg("whoami"));
    assert_ne!(third.code, 0, "a third session should be refused:\n{third}");
    assert!(!third.stdout.contains("user:"), "{third}");
    assert!(
        third.stderr.contains("Session open refused by peer"),
        "ssh should report the refused session:\n{third}"
    );
    assert!(
        eventually(WITHIN, || s.metric(&refused("sessions-per-connection"))
            > before),
        "sessions-per-connection refusal not counted"
    );
    // The refusal did not hurt the two sessions or the master.
    assert_eq!(one.child.0.try_wait().unwrap(), None);
    assert_eq!(two.child.0.try_wait().unwrap(), None);

    one.hang_up();
    two.hang_up();
    assert!(
        one.child.wait_for(WITHIN).is_some(),
        "session one did not end"
    );
    assert!(
        two.child.wait_for(WITHIN).is_some(),
        "session two did not end"
    );
    assert!(
        eventually(WITHIN, || {
            let out = run(Command::new("ssh")
                .args(&mux)
                .arg("git@127.0.0.1")
                .arg("whoami"));
            out.code == 0 && out.stdout.contains("admin")
        }),
        "a new session did not work after the two ended"
    );
    run(Command::new("ssh")
        .args(&mux)
        .args(["-O", "exit", "git@127.0.0.1"]));
    assert!(master.wait_for(WITHIN).is_some(), "the master did not exit");
}

// With `idle_timeout: 2s`, a session where nothing is sent is closed by the server.
#[test]
fn idle_timeout_closes_a_silent_session() {
    let s = start_admin_only(&[("idle_timeout", "2s")]);
    let mut session = Waiting::start(&s.ssh_base(&s.admin), "admin.git");
    let code = session.child.wait_for(WITHIN);
    assert!(
        code.is_some(),
        "a session that sent nothing was still open {WITHIN:?} later (idle_timeout is 2s)"
    );
    assert_ne!(code, Some(0));
    println!("ssh ended with {code:?}: {}", session.stderr_text());
    s.ssh(&s.admin, "whoami").ok().says("admin");
}

/// A relay for ssh's ProxyCommand: copies stdin to the server and the server's answer
/// to stdout, 16 KiB at a time with a pause, about 1 MiB/s.
const SLOW_RELAY: &str = r#"
import os, socket, sys, threading, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def upstream():
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        sock.sendall(data)
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=upstream, daemon=True).start()
while True:
    data = sock.recv(16384)
    if not data:
        break
    while data:
        n = os.write(1, data)
        data = data[n:]
    time.sleep(0.016)
"#;

/// `len` bytes that do not compress.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

// A slow clone that keeps data moving completes even though it outlasts idle_timeout.
#[test]
fn idle_timeout_does_not_cut_off_a_long_transfer() {
    let idle = Duration::from_secs(3);
    let s = start_admin_only(&[("idle_timeout", "3s")]);
    let work = s.scratch("big");
    s.git(&s.admin, &work, &["init", "-q", "-b", "main"]).ok();
    let data = random_bytes(6 << 20);
    std::fs::write(work.join("big.bin"), &data).unwrap();
    s.git(&s.admin, &work, &["add", "big.bin"]).ok();
    s.git(&s.admin, &work, &["commit", "-q", "-m", "big"]).ok();
    s.git(&s.admin, &work, &["push", "-q", &s.url("big"), "main"])
        .ok();

    let relay = s.dir.path().join("relay.py");
    std::fs::write(&relay, SLOW_RELAY).unwrap();
    let slow_ssh = format!(
        "{} -o 'ProxyCommand=/usr/bin/python3 {} %h %p'",
        s.git_ssh_command(&s.admin),
        relay.display()
    );
    let into = s.scratch("clone");
    let started = Instant::now();
    let out = run(s
        .git_cmd(&s.admin, &into)
        .env("GIT_SSH_COMMAND", &slow_ssh)
        .args(["clone", "-q", &s.url("big"), "big"]));
    let elapsed = started.elapsed();
    println!("slow clone of 6 MiB took {elapsed:?} (idle_timeout {idle:?})");
    out.ok();
    assert!(
        elapsed > idle,
        "the transfer took {elapsed:?}, not longer than the idle timeout: slow the relay down"
    );
    let cloned = std::fs::read(into.join("big/big.bin")).unwrap();
    assert!(cloned == data, "cloned content differs");
}
