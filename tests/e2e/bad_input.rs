//! Hostile and broken input: malformed SSH commands, garbage on the hook socket, YAML
//! bombs in the admin repository, and the hook run by hand. Each is refused with a
//! clear reason and the server keeps serving.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// Runs `ssh … git@127.0.0.1 <raw bytes>` as `key`: the bytes reach the server as the
/// exec line unchanged (ssh sends a single argument as is).
fn ssh_raw(s: &Server, key: &Key, raw: &[u8]) -> Out {
    run(Command::new("ssh")
        .args(s.ssh_base(key))
        .arg("git@127.0.0.1")
        .arg(OsString::from_vec(raw.to_vec())))
}

/// The command line as the server records it: lossy UTF-8, at most 512 characters,
/// control characters escaped (mirrors `shown_command` in src/ssh/exec.rs).
fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .take(512)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The audit log as JSON rows (as admin).
fn audit_rows(s: &Server) -> Vec<serde_json::Value> {
    let out = s.ssh(&s.admin, "audit --json --limit 5000").ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --json is JSON ({e}):\n{out}"))
        .as_array()
        .expect("an array")
        .clone()
}

#[test]
fn malformed_ssh_commands_are_refused_clearly_and_audited() {
    let s = Server::start();
    let long = "a".repeat(5000);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"git-upload-pack 'app-x.git".to_vec(), "unbalanced quotes"),
        (b"repo info \"app".to_vec(), "unbalanced quotes"),
        // A lone space: an exec request whose command has no words.
        (b" ".to_vec(), "empty command; try `help`"),
        (b"repo info \xff\xfe".to_vec(), "command is not valid UTF-8"),
        (
            b"whoami\n; rm -rf /".to_vec(),
            "command contains control characters",
        ),
        (
            b"repo list\x1b[31m".to_vec(),
            "command contains control characters",
        ),
        (
            b"whoami\x07x".to_vec(),
            "command contains control characters",
        ),
        (
            long.as_bytes().to_vec(),
            "command is longer than 4096 bytes",
        ),
        (
            b"git-upload-pack 'app-x.git' 'other.git'".to_vec(),
            "usage: git-upload-pack '<repository>.git'",
        ),
        (
            b"git-receive-pack".to_vec(),
            "usage: git-receive-pack '<repository>.git'",
        ),
        (
            b"git-shell -c x".to_vec(),
            "is not a git service slipway serves",
        ),
        (
            b"git upload-pack app".to_vec(),
            "is not a git service slipway serves",
        ),
        (
            b"frobnicate".to_vec(),
            "unrecognized subcommand 'frobnicate'",
        ),
        (b"repo frobnicate now".to_vec(), "unrecognized subcommand"),
    ];
    for (raw, phrase) in &cases {
        let out = ssh_raw(&s, &s.alice, raw);
        assert_ne!(out.code, 0, "{:?} must fail:\n{out}", shown(raw));
        assert!(
            out.stderr.contains(phrase),
            "{:?}: expected {phrase:?} on stderr:\n{out}",
            shown(raw)
        );
        assert!(
            out.stdout.is_empty(),
            "{:?}: nothing on stdout:\n{out}",
            shown(raw)
        );
        // The server keeps serving, on a new connection each time.
        s.ssh(&s.alice, "whoami").ok().says("alice");
    }
    // No command at all: ssh asks for a shell, which slipway does not offer.
    let out = run(Command::new("ssh")
        .args(s.ssh_base(&s.alice))
        .arg("-T")
        .arg("git@127.0.0.1"));
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("offers no shell") || out.stderr.contains("offers no shell"),
        "{out}"
    );

    // Every refused command is in the audit log as a failed command by alice.
    let mut missing = Vec::new();
    let found = eventually(Duration::from_secs(10), || {
        let rows = audit_rows(&s);
        missing = cases
            .iter()
            .map(|(raw, _)| shown(raw))
            .filter(|want| {
                !rows.iter().any(|r| {
                    r["kind"] == "command"
                        && r["result"] == "failed"
                        && r["user"] == "alice"
                        && r["action"].as_str() == Some(want.as_str())
                })
            })
            .collect();
        missing.is_empty()
    });
    assert!(found, "not audited as failed commands: {missing:?}");
    // Nothing hostile got into the log unescaped.
    let rows = audit_rows(&s);
    assert!(rows
        .iter()
        .filter_map(|r| r["action"].as_str())
        .all(|a| !a.chars().any(char::is_control)));
    s.ssh(&s.alice, "whoami").ok();
    assert!(s.metric("slipway_ssh_commands_total{command=\"invalid\",result=\"failed\"}") >= 10.0);
}

/// Sends `request` on a fresh hook socket connection and returns the answer line
/// (empty if the server closed without one).
fn hook_exchange(s: &Server, request: &[u8], close_write: bool) -> String {
    let sock = s.data.join("run/hook.sock");
    let stream = UnixStream::connect(&sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = request.to_vec();
    // Write on a thread: the server may stop reading (and answer) before we are done.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
        if close_write {
            let _ = writer.shutdown(std::net::Shutdown::Write);
        }
    });
    let mut answer = String::new();
    let _ = BufReader::new(&stream).read_line(&mut answer);
    drop(stream);
    sender.join().unwrap();
    answer
}

/// Asserts `answer` is a refusal (`accept: false` with a message containing `phrase`),
/// or, when `closed_ok`, that the server closed without one.
#[track_caller]
fn assert_refused(answer: &str, phrase: &str, closed_ok: bool) {
    if answer.is_empty() && closed_ok {
        return;
    }
    let v: serde_json::Value = serde_json::from_str(answer)
        .unwrap_or_else(|e| panic!("the answer is one JSON line ({e}): {answer:?}"));
    assert_eq!(v["accept"], false, "{answer}");
    let messages = v["messages"].as_array().expect("messages");
    assert!(
        messages.iter().any(|m| m
            .as_str()
            .is_some_and(|m| phrase.split('|').any(|p| m.contains(p)))),
        "expected {phrase:?} in {answer}"
    );
}

#[test]
fn hook_socket_refuses_garbage_and_keeps_serving() {
    let s = Server::start();
    let bad_token = "slipway_hook_requests_rejected_total{reason=\"bad-token\"}";
    let malformed = "slipway_hook_requests_rejected_total{reason=\"malformed\"}";
    let version = "slipway_hook_requests_rejected_total{reason=\"version\"}";
    let too_large = "slipway_hook_requests_rejected_total{reason=\"too-large\"}";
    let before = |name: &str| s.metric(name);
    let (bt0, m0, v0, t0) = (
        before(bad_token),
        before(malformed),
        before(version),
        before(too_large),
    );
    let zero = "0".repeat(40);
    let update = format!(
        r#"{{"old":"{zero}","new":"{}","refname":"refs/heads/main","kind":"create"}}"#,
        "a".repeat(40)
    );

    // (a) garbage and a newline: text, then bytes that are not even UTF-8.
    let answer = hook_exchange(&s, b"garbage {{{ not json\n", false);
    assert_refused(&answer, "malformed hook request", false);
    let answer = hook_exchange(&s, b"\x00\xff\xfe garbage\n", false);
    assert_refused(&answer, "malformed hook request|unreadable request", false);
    // (b) a well-formed request with a token no push holds.
    let req = format!(
        r#"{{"version":1,"token":"not-a-real-token","phase":"pre-receive","updates":[{update}],"push_options":[],"quarantine":{{}}}}"#
    );
    let answer = hook_exchange(&s, format!("{req}\n").as_bytes(), false);
    assert_refused(&answer, "unknown or expired push token", false);
    // (c) a protocol version from the future.
    let req = format!(
        r#"{{"version":99,"token":"not-a-real-token","phase":"pre-receive","updates":[{update}],"push_options":[],"quarantine":{{}}}}"#
    );
    let answer = hook_exchange(&s, format!("{req}\n").as_bytes(), false);
    assert_refused(&answer, "hook speaks protocol 99", false);
    // (d) nothing, then close.
    let answer = hook_exchange(&s, b"", true);
    assert_refused(&answer, "malformed hook request", false);
    // (e) a 5 MiB line with no newline.
    let big = vec![b'x'; 5 << 20];
    let answer = hook_exchange(&s, &big, false);
    assert_refused(&answer, "request is too large", true);
    // (f) valid JSON of the wrong shape, and a truncated request.
    let answer = hook_exchange(&s, b"{\"version\":1}\n", false);
    assert_refused(&answer, "malformed hook request", false);
    let answer = hook_exchange(&s, b"{\"version\":1,\"token\":\"x\"", true);
    assert_refused(&answer, "malformed hook request", false);

    // Each refusal is logged with its reason. (The server's start-up self-test of the
    // hook already logs one bad-token refusal, so count the reasons.)
    let logged = |reason: &str| {
        s.log_text()
            .lines()
            .filter(|l| l.contains("hook request refused") && l.contains(reason))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || logged("malformed") >= 4
            && logged("bad-token") >= 2
            && logged("version") >= 1
            && logged("too-large") >= 1),
        "the server logs each refused hook request with its reason:\n{}",
        s.log_text()
    );
    assert!(
        s.metric(bad_token) >= bt0 + 1.0,
        "bad-token rejections are counted"
    );
    assert!(
        s.metric(malformed) >= m0 + 4.0,
        "malformed rejections are counted"
    );
    assert!(
        s.metric(version) >= v0 + 1.0,
        "version rejections are counted"
    );
    assert!(
        s.metric(too_large) >= t0 + 1.0,
        "too-large rejections are counted"
    );

    // Real pushes still work, accepted and denied alike.
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-after"), "main"])
        .ok();
    s.git(
        &s.alice,
        &work,
        &["commit", "-q", "--amend", "-m", "rewrite"],
    )
    .ok();
    s.git(
        &s.alice,
        &work,
        &["push", "-f", &s.url("app-after"), "main"],
    )
    .fails()
    .says("DENIED");
    s.ssh(&s.alice, "whoami").ok();
}

/// Asserts `out` is a refused admin push whose message names access.yaml with a line
/// and column, and contains `phrase`.
#[track_caller]
fn assert_config_refused(out: Out, phrase: &str) {
    let out = out.fails();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("slipway: access.yaml:"))
        .unwrap_or_else(|| panic!("expected `access.yaml:LINE:COL: …`:\n{out}"));
    println!("refused: {}", line.trim());
    let rest = line.split("access.yaml:").nth(1).unwrap();
    let mut parts = rest.splitn(3, ':');
    let (l, c) = (parts.next().unwrap(), parts.next().unwrap_or(""));
    assert!(
        l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok(),
        "file:line:col in {line:?}"
    );
    assert!(
        phrase.split('|').any(|p| out.stderr.contains(p)),
        "expected {phrase:?}:\n{out}"
    );
    assert!(
        out.stderr.contains("the configuration was not changed"),
        "{out}"
    );
}

#[test]
fn yaml_bombs_and_oversized_admin_files_are_refused() {
    let s = Server::start();
    let scratch = s.scratch("ls");
    let admin_main = || {
        s.git(
            &s.admin,
            &scratch,
            &["ls-remote", &s.url("admin"), "refs/heads/main"],
        )
        .ok()
        .stdout
    };
    let live = admin_main();
    let team = team_access_yaml(&s.admin, &s.alice, &s.bob);

    // Billion laughs: nine levels of nine-fold aliases where group names are expected,
    // ending in a user whose `groups: *l8` would expand to 9^9 names.
    let admins = ["admins"; 9].join(",");
    let mut users = format!("users:\n  x0: {{ groups: &l0 [{admins}] }}\n");
    for i in 1..=8 {
        let refs = vec![format!("*l{}", i - 1); 9].join(",");
        users.push_str(&format!("  x{i}: {{ groups: &l{i} [{refs}] }}\n"));
    }
    users.push_str("  boom: { groups: *l8 }\n");
    let bomb = team.replacen("users:\n", &users, 1);
    assert_config_refused(
        s.push_admin_file("access.yaml", &bomb),
        "invalid type|repetition limit|recursion limit",
    );
    s.ssh(&s.alice, "whoami").ok().says("alice");

    // A string-shaped bomb: aliases of a long scalar, repeated where names go.
    let mut laughs = String::from("users:\n  z0: { groups: [&s0 admins] }\n");
    laughs.push_str("  z1: { groups: &s1 [*s0,*s0,*s0,*s0,*s0,*s0,*s0,*s0,*s0,*s0] }\n");
    for i in 2..=9 {
        let p = i - 1;
        laughs.push_str(&format!(
            "  z{i}: {{ groups: &s{i} [*s{p},*s{p},*s{p},*s{p},*s{p},*s{p},*s{p},*s{p},*s{p},*s{p}] }}\n"
        ));
    }
    let laughs = team.replacen("users:\n", &laughs, 1);
    assert_config_refused(
        s.push_admin_file("access.yaml", &laughs),
        "invalid type|repetition limit|recursion limit|unknown group",
    );

    // Huge: more than 1 MiB.
    let huge = format!("{team}# {}\n", "padding ".repeat((1 << 20) / 8 + 16));
    assert!(huge.len() > 1 << 20);
    assert_config_refused(s.push_admin_file("access.yaml", &huge), "the limit is");

    // Deeply nested: 10,000 `[` where a list of names is expected.
    let deep = team.replacen(
        "groups: [dev]",
        &format!("groups: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
        1,
    );
    assert_config_refused(
        s.push_admin_file("access.yaml", &deep),
        "recursion limit|invalid type",
    );

    // The live configuration never changed, and the server keeps serving.
    assert_eq!(admin_main(), live);
    s.ssh(&s.alice, "whoami").ok().says("alice");
    s.ssh(&s.bob, "whoami").ok().says("bob");
    s.ssh(&s.mallory, "whoami").fails();
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-still"), "main"])
        .ok();
    // A good change still applies.
    let changed = team.replace("alice@example.com", "alice@example.org");
    s.push_admin_file("access.yaml", &changed)
        .ok()
        .says("configuration applied");
}

#[test]
fn the_hook_run_by_hand_refuses_clearly() {
    let s = Server::start();
    let pre = s.data.join("hooks/pre-receive");
    assert!(pre.exists(), "{} is installed", pre.display());
    let zero = "0".repeat(40);
    let out = run(Command::new(&pre)
        .env_clear()
        .stdin(std::process::Stdio::null()));
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("SLIPWAY_HOOK_SOCKET is not set; this hook only runs under slipway"),
        "{out}"
    );
    assert!(out.stderr.contains("push refused"), "{out}");

    // With some input on stdin, as git would give it, still refused.
    let mut child = Command::new(&pre)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = format!("{zero} {} refs/heads/main\n", "a".repeat(40));
    let _ = child.stdin.take().unwrap().write_all(line.as_bytes());
    let output = child.wait_with_output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("only runs under slipway"));

    // Pointed at the real socket with a made-up token: refused by the server.
    let out = run(Command::new(&pre)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SLIPWAY_HOOK_SOCKET", s.data.join("run/hook.sock"))
        .env("SLIPWAY_PUSH_TOKEN", "made-up"));
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("unknown or expired push token"),
        "{out}"
    );

    // post-receive by hand: says why; nothing to refuse any more, so it exits 0.
    let post = s.data.join("hooks/post-receive");
    let out = run(Command::new(&post).env_clear());
    assert!(out.stderr.contains("only runs under slipway"), "{out}");
    // The server is unaffected.
    s.ssh(&s.alice, "whoami").ok();
}
