//! Starting servers and talking to them like a user would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The slipway binary cargo built for these tests.
pub const SLIPWAY: &str = env!("CARGO_BIN_EXE_slipway");

/// Whether a missing peer (Prometheus, …) must fail the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var("SLIPWAY_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Returns the path of `program` if it is installed; otherwise skips the test (prints
/// why and returns None) or, with SLIPWAY_REQUIRE_PEERS=1, fails it.
pub fn require_peer(program: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if peers_required() {
            panic!(
                "{program} is required (SLIPWAY_REQUIRE_PEERS=1) but not installed: {install_hint}"
            );
        }
        eprintln!("SKIPPED: {program} is not installed ({install_hint}); set SLIPWAY_REQUIRE_PEERS=1 to make this a failure");
    }
    found
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(output: std::process::Output) -> Out {
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success:\n{self}");
        self
    }

    /// Asserts failure and returns self.
    #[track_caller]
    pub fn fails(self) -> Out {
        assert_ne!(self.code, 0, "expected failure:\n{self}");
        self
    }

    /// Asserts stdout+stderr contains `needle`.
    #[track_caller]
    pub fn says(self, needle: &str) -> Out {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "expected output to contain {needle:?}:\n{self}"
        );
        self
    }

    /// Asserts stdout+stderr does not contain `needle`.
    #[track_caller]
    pub fn never_says(self, needle: &str) -> Out {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "expected output NOT to contain {needle:?}:\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Out {
    Out::from(
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
    )
}

/// An SSH key pair on disk.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub private: PathBuf,
    pub public: PathBuf,
    /// The `.pub` line.
    pub line: String,
}

impl Key {
    /// Generates a key with `ssh-keygen -t kind` (ed25519, ecdsa, rsa).
    pub fn generate(dir: &Path, name: &str, kind: &str) -> Key {
        let private = dir.join(format!("{name}_{kind}"));
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-C"])
            .arg(format!("{name}@test"))
            .arg("-f")
            .arg(&private);
        if kind == "rsa" {
            cmd.args(["-b", "2048"]);
        }
        run(&mut cmd).ok();
        let public = private.with_extension("pub");
        let public = if public.exists() {
            public
        } else {
            PathBuf::from(format!("{}.pub", private.display()))
        };
        let line = std::fs::read_to_string(&public).unwrap().trim().to_string();
        Key {
            name: name.into(),
            private,
            public,
            line,
        }
    }

    /// `ssh-keygen -lf` style fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen").arg("-lf").arg(&self.public)).ok();
        out.stdout
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_string()
    }
}

/// The standard team: admin administers; alice is a developer as in DESIGN.md; bob may
/// only read; mallory is unknown.
pub fn team_access_yaml(admin: &Key, alice: &Key, bob: &Key) -> String {
    format!(
        r#"users:
  admin: {{ keys: ["{}"], groups: [admins] }}
  alice: {{ keys: ["{}"], email: alice@example.com, groups: [dev] }}
  bob:   {{ keys: ["{}"], groups: [readers] }}
groups:
  admins:  {{ policies: [administrator] }}
  dev:     {{ policies: [developer] }}
  readers: {{ policies: [reader] }}
policies:
  administrator:
    - {{ effect: allow, actions: ["*"], resources: ["*"] }}
  developer:
    - {{ effect: allow, actions: ["git:pull", "git:push", "git:create-ref", "repo:create"], resources: ["repo:app-*"] }}
    - {{ effect: deny,  actions: ["git:force-push", "git:delete-ref"], resources: ["repo:*:refs/heads/main"] }}
    - {{ effect: allow, actions: ["git:force-push", "git:delete-ref"], resources: ["repo:app-*:refs/heads/feature/*"] }}
  reader:
    - {{ effect: allow, actions: ["git:pull"], resources: ["repo:*"] }}
    - {{ effect: deny,  actions: ["git:pull"], resources: ["repo:admin"] }}
"#,
        admin.line, alice.line, bob.line
    )
}

/// A complete slipway.yaml (the keys of etc/slipway.yaml) with `overrides` applied to
/// the `ssh:` section, e.g. `[("login_grace_time", "1s")]`.
pub fn settings_yaml(overrides: &[(&str, &str)]) -> String {
    let mut ssh = vec![
        ("listen", "127.0.0.1:2222"),
        ("login_grace_time", "60s"),
        ("idle_timeout", "10m"),
        ("max_sessions_per_connection", "10"),
        ("max_unauthenticated", "64"),
        ("allow_ssh_rsa_sha1", "false"),
    ];
    for (key, value) in overrides {
        let slot = ssh
            .iter_mut()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("unknown ssh setting {key}"));
        slot.1 = value;
    }
    let mut yaml = String::from("ssh:\n");
    for (k, v) in ssh {
        yaml.push_str(&format!("  {k}: {v}\n"));
    }
    yaml.push_str("http:\n  listen: 127.0.0.1:8080\ngit:\n  binary: git\n");
    yaml
}

/// A running slipway server with its own data directory and identities.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub ssh_port: u16,
    pub http_port: u16,
    pub admin: Key,
    pub alice: Key,
    pub bob: Key,
    pub mallory: Key,
    child: Option<Child>,
    pub log: PathBuf,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra YAML merged over the default slipway.yaml (written whole if given).
    pub settings: Option<String>,
    /// Key type for every identity (default ed25519).
    pub key_kind: Option<&'static str>,
    /// Leave access.yaml as `slipway init` wrote it (admin only) instead of the team.
    pub init_only: bool,
    /// Extra environment for the first start (e.g. failpoints).
    pub env: Vec<(&'static str, String)>,
    /// Files written (mode 0600) into the data directory before the first start, by
    /// path relative to it (e.g. a TLS certificate and key).
    pub data_files: Vec<(&'static str, Vec<u8>)>,
}

impl Server {
    /// A server with the standard team configured.
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("slipway-e2e-")
            .tempdir()
            .unwrap();
        let kind = options.key_kind.unwrap_or("ed25519");
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let admin = Key::generate(&keys, "admin", kind);
        let alice = Key::generate(&keys, "alice", kind);
        let bob = Key::generate(&keys, "bob", kind);
        let mallory = Key::generate(&keys, "mallory", kind);
        let data = dir.path().join("data");
        run(Command::new(SLIPWAY)
            .arg("init")
            .arg("--data")
            .arg(&data)
            .arg("--admin-key")
            .arg(&admin.public)
            .args(["--admin-name", "admin"]))
        .ok();
        if let Some(settings) = &options.settings {
            std::fs::write(data.join("slipway.yaml"), settings).unwrap();
        }
        for (name, contents) in &options.data_files {
            use std::os::unix::fs::OpenOptionsExt;
            let path = data.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(contents))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let log = dir.path().join("server.log");
        let mut server = Server {
            data,
            ssh_port: 0,
            http_port: 0,
            admin,
            alice,
            bob,
            mallory,
            child: None,
            log,
            dir,
        };
        let env: Vec<(&str, &str)> = options.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        server.spawn_env(&env);
        if !options.init_only {
            let yaml = team_access_yaml(&server.admin, &server.alice, &server.bob);
            server.set_access(&yaml).ok();
        }
        server
    }

    /// Starts the server process and waits for its "listening" line.
    pub fn spawn(&mut self) {
        self.spawn_env(&[]);
    }

    /// Like [`Server::spawn`], with extra environment (e.g. `SLIPWAY_FAILPOINTS`).
    pub fn spawn_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(SLIPWAY)
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args([
                "--ssh-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info,slipway=debug,slipway_actors=debug")
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("slipway serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if line.starts_with("slipway: listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        };
        let port = |key: &str| -> u16 {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .expect("address in the listening line");
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        self.ssh_port = port("ssh=");
        self.http_port = port("http=");
        self.child = Some(child);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_kill(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh` arguments for `key` (no host, no command).
    pub fn ssh_base(&self, key: &Key) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            key.private.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-p".into(),
            self.ssh_port.to_string(),
        ]
    }

    /// Runs an admin command over SSH as `key`.
    pub fn ssh(&self, key: &Key, command: &str) -> Out {
        run(Command::new("ssh")
            .args(self.ssh_base(key))
            .arg("git@127.0.0.1")
            .arg(command))
    }

    /// Runs an admin command over SSH as `key`, with `input` on its stdin.
    pub fn ssh_with_stdin(&self, key: &Key, command: &str, input: &[u8]) -> Out {
        let mut child = Command::new("ssh")
            .args(self.ssh_base(key))
            .arg("git@127.0.0.1")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh runs");
        if let Some(mut stdin) = child.stdin.take() {
            // The server may refuse before reading: a broken pipe is fine.
            let _ = stdin.write_all(input);
        }
        Out::from(child.wait_with_output().expect("ssh finishes"))
    }

    /// `GIT_SSH_COMMAND` for `key`.
    pub fn git_ssh_command(&self, key: &Key) -> String {
        let mut parts = vec!["ssh".to_string()];
        for a in self.ssh_base(key) {
            if a == "-p" {
                break;
            }
            parts.push(a);
        }
        parts.join(" ")
    }

    /// The clone URL of `repo`.
    pub fn url(&self, repo: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{repo}.git", self.ssh_port)
    }

    /// A `git` command as `key`, in `cwd`, with a clean environment.
    pub fn git_cmd(&self, key: &Key, cwd: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(cwd)
            .env("GIT_SSH_COMMAND", self.git_ssh_command(key))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", &key.name)
            .env("GIT_AUTHOR_EMAIL", format!("{}@example.com", key.name))
            .env("GIT_COMMITTER_NAME", &key.name)
            .env("GIT_COMMITTER_EMAIL", format!("{}@example.com", key.name))
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["-c", "init.defaultBranch=main", "-c", "protocol.version=2"]);
        cmd
    }

    /// Runs `git args…` as `key` in `cwd`.
    pub fn git(&self, key: &Key, cwd: &Path, args: &[&str]) -> Out {
        run(self.git_cmd(key, cwd).args(args))
    }

    /// A fresh scratch directory inside the test's temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A local repository at `scratch(name)` with one commit on main.
    pub fn local_repo(&self, key: &Key, name: &str) -> PathBuf {
        let dir = self.scratch(name);
        self.git(key, &dir, &["init", "-q", "-b", "main"]).ok();
        commit_file(self, key, &dir, "README.md", "hello\n", "first commit");
        dir
    }

    /// Replaces access.yaml through the admin repository, as an administrator would.
    pub fn set_access(&self, yaml: &str) -> Out {
        self.push_admin_file("access.yaml", yaml)
    }

    /// Commits `contents` as `file` in admin and pushes it as admin (result returned).
    pub fn push_admin_file(&self, file: &str, contents: &str) -> Out {
        let dir = self.dir.path().join("admin-clone");
        if !dir.exists() {
            self.git(
                &self.admin,
                self.dir.path(),
                &["clone", "-q", &self.url("admin"), "admin-clone"],
            )
            .ok();
        } else {
            self.git(&self.admin, &dir, &["fetch", "-q", "origin"]).ok();
            self.git(&self.admin, &dir, &["reset", "-q", "--hard", "origin/main"])
                .ok();
        }
        std::fs::write(dir.join(file), contents).unwrap();
        self.git(&self.admin, &dir, &["add", file]).ok();
        self.git(
            &self.admin,
            &dir,
            &["commit", "-q", "-m", &format!("change {file}")],
        )
        .ok();
        self.git(&self.admin, &dir, &["push", "origin", "main"])
    }

    /// GET `path` on the HTTP listener: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_port, path)
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of one sample in `/metrics` (`name{labels}` exactly as printed), or 0.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }

    /// Path of a bare repository on the server.
    pub fn repo_path(&self, repo: &str) -> PathBuf {
        self.data.join("repos").join(format!("{repo}.git"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Commits one file in a local repository.
pub fn commit_file(
    server: &Server,
    key: &Key,
    dir: &Path,
    file: &str,
    contents: &str,
    message: &str,
) {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, contents).unwrap();
    server.git(key, dir, &["add", file]).ok();
    server.git(key, dir, &["commit", "-q", "-m", message]).ok();
}

/// Reads one sample's value from Prometheus text.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.0 GET over loopback.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_exchange(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"),
        Duration::from_secs(10),
    )
}

/// A minimal HTTP/1.0 POST of JSON over loopback, with a bearer token if given:
/// (status, body). Waits up to 40 s for the answer (long polls).
pub fn http_post(port: u16, path: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    http_exchange(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        Duration::from_secs(40),
    )
}

/// Sends `request` and reads the whole answer: (status, body).
fn http_exchange(port: u16, request: &str, timeout: Duration) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http connect");
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends a signal to a process this test started.
pub fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Polls `f` until it returns true or `timeout` passes; returns whether it did.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
