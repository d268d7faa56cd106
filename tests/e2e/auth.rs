//! Public-key authentication: key types, signature algorithms, identity binding,
//! unknown keys, auth metrics and the no-shell answer.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// `ssh` arguments like `Server::ssh_base`, but offering `identities` (in order)
/// instead of the one key, with `extra` options before the host. `LogLevel=ERROR`
/// becomes `verbose`'s level when given.
fn ssh_args(s: &Server, identities: &[&Path], extra: &[&str], verbose: bool) -> Vec<String> {
    let base = s.ssh_base(&s.admin);
    let mut args = Vec::new();
    let mut i = 0;
    while i < base.len() {
        if base[i] == "-i" {
            for id in identities {
                args.push("-i".to_string());
                args.push(id.display().to_string());
            }
            i += 2;
            continue;
        }
        if base[i] == "LogLevel=ERROR" && verbose {
            args.push("LogLevel=DEBUG1".to_string());
        } else {
            args.push(base[i].clone());
        }
        i += 1;
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Runs `ssh ARGS git@127.0.0.1 [command]` with stdin closed.
fn ssh_run(args: &[String], command: Option<&str>) -> Out {
    let mut cmd = Command::new("ssh");
    cmd.args(args).arg("git@127.0.0.1");
    if let Some(c) = command {
        cmd.arg(c);
    }
    run(&mut cmd)
}

/// Runs `cmd` (stdin closed) but gives up after `limit`: kills the child it started
/// and returns None.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<Out> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    let status = status?;
    Some(Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

/// The audit log as JSON objects (admin reads it).
fn audit(s: &Server) -> Vec<serde_json::Value> {
    let out = s.ssh(&s.admin, "audit --json --limit 100000").ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --json is not JSON ({e}):\n{out}"));
    v.as_array().expect("a JSON array").clone()
}

/// Audit entries of kind `auth` with this result and user (None: user is null).
fn auth_entries<'a>(
    rows: &'a [serde_json::Value],
    result: &str,
    user: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    rows.iter()
        .filter(|r| r["kind"] == "auth" && r["result"] == result)
        .filter(|r| match user {
            Some(u) => r["user"] == u,
            None => r["user"].is_null(),
        })
        .collect()
}

/// `whoami` prints `user:   NAME` on its first line.
#[track_caller]
fn assert_whoami(out: &Out, user: &str) {
    let first = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first.split_whitespace().collect::<Vec<_>>(),
        ["user:", user],
        "whoami should say {user}:\n{out}"
    );
}

const OK: &str = r#"slipway_ssh_auth_attempts_total{method="publickey",result="ok"}"#;
const UNKNOWN: &str = r#"slipway_ssh_auth_attempts_total{method="publickey",result="unknown-key"}"#;
const SHA1: &str =
    r#"slipway_ssh_auth_attempts_total{method="publickey",result="refused-ssh-rsa-sha1"}"#;

// A user with an ed25519 key runs `ssh git@host whoami` and sees their own name.
#[test]
fn ed25519_keys_authenticate() {
    let s = Server::start();
    for key in [&s.admin, &s.alice, &s.bob] {
        let out = s.ssh(key, "whoami").ok();
        assert_whoami(&out, &key.name);
        out.says(&key.fingerprint());
    }
}

// A user with an ECDSA key runs `ssh git@host whoami` and sees their own name.
#[test]
fn ecdsa_keys_authenticate() {
    let s = Server::start_with(Options {
        key_kind: Some("ecdsa"),
        ..Default::default()
    });
    assert!(s.alice.line.starts_with("ecdsa-sha2-"), "{}", s.alice.line);
    for key in [&s.admin, &s.alice, &s.bob] {
        let out = s.ssh(key, "whoami").ok();
        assert_whoami(&out, &key.name);
    }
}

// A user with an RSA key logs in whether their client signs with rsa-sha2-256 or -512.
#[test]
fn rsa_keys_authenticate_with_sha2_256_and_sha2_512() {
    let s = Server::start_with(Options {
        key_kind: Some("rsa"),
        ..Default::default()
    });
    assert!(s.alice.line.starts_with("ssh-rsa "), "{}", s.alice.line);
    // The default client choice.
    assert_whoami(&s.ssh(&s.alice, "whoami").ok(), "alice");
    for alg in ["rsa-sha2-256", "rsa-sha2-512"] {
        let opt = format!("PubkeyAcceptedAlgorithms={alg}");
        for key in [&s.admin, &s.alice] {
            let args = ssh_args(&s, &[&key.private], &["-o", &opt], false);
            let out = ssh_run(&args, Some("whoami"));
            assert_eq!(out.code, 0, "{alg} as {}:\n{out}", key.name);
            assert_whoami(&out, &key.name);
        }
    }
}

// A client that signs RSA with legacy SHA-1 (`ssh-rsa`) gets "Permission denied" by default.
#[test]
fn legacy_ssh_rsa_sha1_signatures_are_refused_by_default() {
    let s = Server::start_with(Options {
        key_kind: Some("rsa"),
        ..Default::default()
    });
    let before = s.metric(SHA1);
    let args = ssh_args(
        &s,
        &[&s.alice.private],
        &["-o", "PubkeyAcceptedAlgorithms=ssh-rsa"],
        false,
    );
    ssh_run(&args, Some("whoami"))
        .fails()
        .says("Permission denied")
        .never_says("user:");
    assert!(
        s.metric(SHA1) > before,
        "refused-ssh-rsa-sha1 should count the refusal"
    );
    // The refusal is audited with a hint, against alice's key but no user.
    let rows = audit(&s);
    let fp = s.alice.fingerprint();
    let denied = auth_entries(&rows, "denied", None);
    let entry = denied
        .iter()
        .find(|r| r["key_fp"] == fp.as_str())
        .unwrap_or_else(|| panic!("no denied auth entry for alice's key in {rows:#?}"));
    assert!(
        entry["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("SHA-1"),
        "{entry:#}"
    );
    // The same key signing with SHA-2 is fine.
    let args = ssh_args(
        &s,
        &[&s.alice.private],
        &["-o", "PubkeyAcceptedAlgorithms=rsa-sha2-256"],
        false,
    );
    assert_whoami(&ssh_run(&args, Some("whoami")).ok(), "alice");
}

// With `allow_ssh_rsa_sha1: true`, an old client that signs with `ssh-rsa` logs in.
#[test]
fn legacy_ssh_rsa_sha1_signatures_are_accepted_when_allowed() {
    let s = Server::start_with(Options {
        key_kind: Some("rsa"),
        settings: Some(settings_yaml(&[("allow_ssh_rsa_sha1", "true")])),
        ..Default::default()
    });
    let before = s.metric(SHA1);
    let args = ssh_args(
        &s,
        &[&s.alice.private],
        &["-o", "PubkeyAcceptedAlgorithms=ssh-rsa"],
        false,
    );
    let out = ssh_run(&args, Some("whoami")).ok();
    assert_whoami(&out, "alice");
    assert_eq!(s.metric(SHA1), before, "nothing was refused");
}

// Offering the admin's public key without its private half: `whoami` still says alice.
#[test]
fn identity_is_bound_to_the_key_that_signed_not_a_key_offered() {
    let s = Server::start();
    // The admin's public key alone, as an attacker could copy it from anywhere. ssh
    // drops `-i` paths that do not exist, so name the .pub file itself: ssh offers it,
    // and fails to load a private key from it when the server says PK_OK.
    let stolen_dir = s.scratch("stolen");
    let stolen = stolen_dir.join("stolen.pub");
    std::fs::copy(&s.admin.public, &stolen).unwrap();
    assert!(!stolen_dir.join("stolen").exists());
    let admin_fp = s.admin.fingerprint();
    let alice_fp = s.alice.fingerprint();
    let admin_logins = |rows: &[serde_json::Value]| auth_entries(rows, "ok", Some("admin")).len();
    let admin_before = admin_logins(&audit(&s));

    // Offer the admin's key first, then alice's.
    let args = ssh_args(&s, &[&stolen, &s.alice.private], &[], true);
    let out = ssh_run(&args, Some("whoami"));
    assert_eq!(
        out.code, 0,
        "alice's own key should still log her in:\n{out}"
    );
    assert_whoami(&out, "alice");
    assert_offered_and_probe_accepted(&out, &stolen, &admin_fp);

    // The audit log names alice and her key, and has no new admin login but the one
    // reading it now.
    let rows = audit(&s);
    let alice_ok = auth_entries(&rows, "ok", Some("alice"));
    assert!(
        alice_ok.iter().any(|r| r["key_fp"] == alice_fp.as_str()),
        "no auth ok entry for alice with {alice_fp}: {rows:#?}"
    );
    assert!(alice_ok.iter().all(|r| r["key_fp"] == alice_fp.as_str()));
    assert_eq!(
        admin_logins(&rows),
        admin_before + 1,
        "only the audit reader's own login may be a new admin login: {rows:#?}"
    );

    // The admin's public key plus an unknown key of one's own: no login at all.
    let args = ssh_args(&s, &[&stolen, &s.mallory.private], &[], true);
    let out = ssh_run(&args, Some("whoami"));
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Permission denied"), "{out}");
    assert!(!out.stdout.contains("user:"), "{out}");
    assert_offered_and_probe_accepted(&out, &stolen, &admin_fp);
}

/// `ssh -v` output shows `key` (fingerprint `fp`) was offered and the server answered
/// the probe with PK_OK ("Server accepts key"), before ssh failed to sign with it.
#[track_caller]
fn assert_offered_and_probe_accepted(out: &Out, key: &Path, fp: &str) {
    let path = key.display().to_string();
    let offered = out
        .stderr
        .lines()
        .any(|l| l.contains("Offering public key") && l.contains(&path) && l.contains(fp));
    assert!(offered, "ssh did not offer the admin's key {fp}:\n{out}");
    let accepted = out
        .stderr
        .lines()
        .any(|l| l.contains("Server accepts key") && l.contains(&path));
    assert!(
        accepted,
        "the server should answer the admin key's probe with PK_OK:\n{out}"
    );
}

// A stranger's key gets "Permission denied"; the attempt is audited and counted.
#[test]
fn unknown_key_is_refused_audited_and_counted() {
    let s = Server::start();
    let before = s.metric(UNKNOWN);
    s.ssh(&s.mallory, "whoami")
        .fails()
        .says("Permission denied")
        .never_says("user:");
    assert!(
        s.metric(UNKNOWN) > before,
        "unknown-key should have increased from {before}"
    );
    let rows = audit(&s);
    let fp = s.mallory.fingerprint();
    let denied = auth_entries(&rows, "denied", None);
    assert!(
        denied.iter().any(|r| r["key_fp"] == fp.as_str()),
        "no denied auth entry (user null) for mallory's key {fp}: {rows:#?}"
    );
    // Nothing in the log credits mallory's key to anyone.
    assert!(rows
        .iter()
        .filter(|r| r["key_fp"] == fp.as_str())
        .all(|r| r["user"].is_null() && r["result"] == "denied"));
}

// Each successful login shows up in slipway_ssh_auth_attempts_total{result="ok"}.
#[test]
fn successful_logins_are_counted() {
    let s = Server::start();
    let before = s.metric(OK);
    s.ssh(&s.alice, "whoami").ok();
    let after = s.metric(OK);
    assert!(after >= 1.0, "{after}");
    assert!(
        after > before,
        "ok count should increase: {before} -> {after}"
    );
}

// `ssh git@host` with no command prints "…slipway offers no shell…" and exits non-zero.
#[test]
fn shell_request_gets_a_friendly_no_shell_message() {
    let s = Server::start();
    for tty in ["-T", "-tt"] {
        let mut cmd = Command::new("ssh");
        cmd.args(s.ssh_base(&s.alice)).arg(tty).arg("git@127.0.0.1");
        let out = run_bounded(&mut cmd, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("`ssh {tty}` without a command hung for 20 s"));
        assert_ne!(out.code, 0, "ssh {tty}: {out}");
        assert!(out.stdout.contains("offers no shell"), "ssh {tty}: {out}");
        assert!(out.stdout.contains("Hi alice!"), "ssh {tty}: {out}");
    }
}
