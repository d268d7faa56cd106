//! The `slipway` command line: `serve --dev` as a newcomer runs it, `init` and `serve`
//! errors a user can act on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Runs `slipway serve --dev` in `cwd` with `home` as HOME until its quick start has
/// been printed; returns the printed text and the child (to stop).
fn serve_dev(cwd: &std::path::Path, home: &std::path::Path) -> (String, std::process::Child) {
    let mut child = Command::new(SLIPWAY)
        .args([
            "serve",
            "--dev",
            "--ssh-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .current_dir(cwd)
        .env("HOME", home)
        .env("USER", "newcomer")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Stop with Ctrl-C") {
                let _ = tx.send(text.clone());
            }
        }
    });
    let text = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("serve --dev prints its quick start");
    (text, child)
}

/// Runs the `ssh … whoami` line printed by the quick start (with our test options).
fn run_printed_whoami(text: &str, home: &std::path::Path) -> Out {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ssh ") && l.ends_with(" whoami"))
        .unwrap_or_else(|| panic!("no `ssh … whoami` line in:\n{text}"));
    let words = shell_words(line);
    let mut cmd = Command::new(&words[0]);
    cmd.env("HOME", home).args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]);
    // OpenSSH finds ~/.ssh through the password database, not $HOME: name the key the
    // user's own ssh would have picked.
    let own = home.join(".ssh/id_ed25519");
    if own.exists() {
        cmd.arg("-i").arg(own);
    }
    cmd.args(&words[1..]);
    run(&mut cmd)
}

fn shell_words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn stop(mut child: std::process::Child) {
    unsafe_kill(child.id(), "TERM");
    let _ = child.wait();
}

#[test]
fn serve_dev_uses_the_users_own_key_and_prints_working_commands() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = Key::generate(&home.join(".ssh"), "me", "ed25519");
    std::fs::rename(&key.private, home.join(".ssh/id_ed25519")).unwrap();
    std::fs::rename(&key.public, home.join(".ssh/id_ed25519.pub")).unwrap();
    let (text, child) = serve_dev(dir.path(), &home);
    assert!(
        dir.path().join(".slipway/slipway.db").exists(),
        "data dir made in ./.slipway"
    );
    assert!(text.contains("git clone ssh://git@127.0.0.1:"), "{text}");
    let who = run_printed_whoami(&text, &home);
    stop(child);
    who.ok().says("user:   newcomer");
    // A second start reuses the data directory and still prints the quick start.
    let (text, child) = serve_dev(dir.path(), &home);
    let who = run_printed_whoami(&text, &home);
    stop(child);
    who.ok().says("newcomer");
}

#[test]
fn serve_dev_generates_a_key_when_the_user_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let (text, child) = serve_dev(dir.path(), &home);
    let generated = dir.path().join(".slipway/keys/dev_admin_ed25519");
    assert!(generated.exists());
    assert!(
        text.contains(&format!("-i {}", generated.display())),
        "{text}"
    );
    let who = run_printed_whoami(&text, &home);
    stop(child);
    who.ok().says("newcomer");
}

#[test]
fn serve_refuses_a_directory_that_was_never_initialized() {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(SLIPWAY)
        .args([
            "serve",
            "--ssh-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("nothing")))
    .fails()
    .says("slipway init --data");
}

#[test]
fn init_explains_a_wrong_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate(dir.path(), "k", "ed25519");
    let data = dir.path().join("d");
    let init = |file: &std::path::Path| {
        run(Command::new(SLIPWAY)
            .arg("init")
            .arg("--data")
            .arg(&data)
            .arg("--admin-key")
            .arg(file))
    };
    init(&key.private).fails().says("is a private key");
    init(&dir.path().join("missing.pub"))
        .fails()
        .says("cannot read the admin key");
    std::fs::write(dir.path().join("junk.pub"), "hello world\n").unwrap();
    init(&dir.path().join("junk.pub"))
        .fails()
        .says("not an OpenSSH public key");
    assert!(
        !data.join("repos/admin.git").exists(),
        "a failed init creates nothing"
    );
    run(Command::new(SLIPWAY)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .arg("--admin-key")
        .arg(&key.public)
        .args(["--admin-name", "bad name"]))
    .fails()
    .says("not a valid name");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut s = Server::start();
    let pid = s.pid();
    s.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .contains("zombie")
        }
    );
    assert!(
        !s.data.join("run/hook.sock").exists(),
        "socket removed on shutdown"
    );
    assert!(s.log_text().contains("stopped"), "{}", s.log_text());
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let s = Server::start();
    run(Command::new(SLIPWAY)
        .args([
            "serve",
            "--ssh-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&s.data))
    .fails()
    .says("another slipway server is already serving");
    // The first one is untouched: its hook socket still works for pushes.
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-lock"), "main"])
        .ok();
}
