use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::paths::BundlePath;

struct Bundle {
    dir: tempfile::TempDir,
    log: Arc<ScriptLog>,
    env: Vec<(String, String)>,
    options: ScriptOptions,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // Reachable by a runas user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let log =
            ScriptLog::open(&dir.path().join("logs/scripts.log")).unwrap_or_else(|e| panic!("{e}"));
        Bundle {
            dir,
            log: Arc::new(log),
            env: vec![
                ("LIFECYCLE_EVENT".into(), "AfterInstall".into()),
                ("DEPLOYMENT_ID".into(), "d-TEST".into()),
            ],
            options: ScriptOptions {
                kill_grace: Duration::from_secs(2),
                outputs_grace: Duration::from_secs(1),
            },
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn script(&self, name: &str, body: &str, mode: u32) {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn run(&self, location: &str, timeout: u64, runas: Option<&str>) -> ScriptResult {
        let script = HookScript {
            location: BundlePath::parse(location).unwrap_or_else(|e| panic!("{e}")),
            timeout: Duration::from_secs(timeout),
            runas: runas.map(str::to_string),
        };
        let ctx = ScriptContext {
            bundle_root: self.path(),
            env: &self.env,
            log: &self.log,
            options: &self.options,
        };
        run_script(ctx, &script).await
    }
}

/// Whether process `pid` is alive (a zombie nobody reaped yet counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {}", path.display()))
}

#[tokio::test]
async fn a_script_gets_the_environment_the_bundle_root_and_no_stdin() {
    let b = Bundle::new();
    b.script(
        "scripts/env.sh",
        "#!/bin/sh\necho \"event=$LIFECYCLE_EVENT id=$DEPLOYMENT_ID\"\necho \"cwd=$(pwd)\"\necho \"path=$PATH\"\necho \"stdin=$(cat)\"\necho oops >&2\n",
        0o755,
    );
    let result = b.run("scripts/env.sh", 30, None).await;
    assert_eq!(result.code, ErrorCode::Succeeded, "{}", result.message);
    let tail = b.log.tail();
    assert!(tail.contains("Script - scripts/env.sh\n"), "{tail}");
    assert!(
        tail.contains("[stdout]event=AfterInstall id=d-TEST\n"),
        "{tail}"
    );
    let root = b.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        tail.contains(&format!("[stdout]cwd={}\n", root.display())),
        "{tail}"
    );
    assert!(
        tail.contains(&format!("[stdout]path={SCRIPT_PATH}\n")),
        "{tail}"
    );
    assert!(tail.contains("[stdout]stdin=\n"), "{tail}");
    assert!(tail.contains("[stderr]oops\n"), "{tail}");
}

#[tokio::test]
async fn failures_missing_scripts_and_non_executables() {
    let b = Bundle::new();
    b.script("fail.sh", "#!/bin/sh\necho bad\nexit 3\n", 0o755);
    let result = b.run("fail.sh", 30, None).await;
    assert_eq!(result.code, ErrorCode::ScriptFailed);
    assert_eq!(
        result.message,
        "Script at specified location: fail.sh failed with exit code 3"
    );

    let result = b.run("scripts/nope.sh", 30, None).await;
    assert_eq!(result.code, ErrorCode::ScriptMissing);
    assert!(
        result
            .message
            .starts_with("Script does not exist at specified location: scripts/nope.sh"),
        "{}",
        result.message
    );

    b.script("plain.sh", "#!/bin/sh\necho ran\n", 0o644);
    let result = b.run("plain.sh", 30, None).await;
    assert_eq!(result.code, ErrorCode::Succeeded, "{}", result.message);
    let mode = std::fs::metadata(b.path().join("plain.sh"))
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    assert_eq!(mode & 0o111, 0o111, "made executable");

    b.script("noshebang.sh", "echo via-sh\n", 0o755);
    let result = b.run("noshebang.sh", 30, None).await;
    assert_eq!(result.code, ErrorCode::Succeeded, "{}", result.message);
    assert!(b.log.tail().contains("[stdout]via-sh\n"));

    b.script("python.sh", "#!/no/such/interpreter\n", 0o755);
    let result = b.run("python.sh", 30, None).await;
    assert_eq!(result.code, ErrorCode::ScriptExecutability);
    assert!(result.message.contains("interpreter"), "{}", result.message);
}

#[tokio::test]
async fn a_script_may_not_be_a_symlink_out_of_the_bundle() {
    let b = Bundle::new();
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let evil = outside.path().join("evil.sh");
    std::fs::write(&evil, "#!/bin/sh\necho escaped\n").unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&evil, b.path().join("start.sh")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(outside.path(), b.path().join("dir"))
        .unwrap_or_else(|e| panic!("{e}"));
    for location in ["start.sh", "dir/evil.sh"] {
        let result = b.run(location, 30, None).await;
        assert_eq!(result.code, ErrorCode::ScriptMissing, "{location}");
        assert!(
            result.message.contains("out of the bundle"),
            "{}",
            result.message
        );
    }
    assert!(!b.log.tail().contains("escaped"));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let b = Bundle::new();
    let pidfile = b.path().join("bg.pid");
    // The background child ignores SIGTERM, so only the SIGKILL after the grace ends it.
    b.script(
        "hang.sh",
        &format!(
            "#!/bin/sh\n(trap '' TERM; sleep 300) &\necho $! > {}\necho started\nsleep 300\n",
            pidfile.display()
        ),
        0o755,
    );
    let result = b.run("hang.sh", 1, None).await;
    assert_eq!(result.code, ErrorCode::ScriptTimedOut);
    assert_eq!(
        result.message,
        "Script at specified location: hang.sh failed to complete in 1 seconds"
    );
    assert!(b.log.tail().contains("[stdout]started\n"));
    let pid = read_pid(&pidfile);
    for _ in 0..100 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the background child {pid} of a timed-out script is still alive");
}

#[tokio::test]
async fn a_daemon_holding_stdout_open_fails_the_event_but_a_quiet_one_is_fine() {
    let b = Bundle::new();
    let loud = b.path().join("loud.pid");
    let quiet = b.path().join("quiet.pid");
    b.script(
        "loud.sh",
        &format!("#!/bin/sh\nsleep 300 &\necho $! > {}\n", loud.display()),
        0o755,
    );
    b.script(
        "quiet.sh",
        &format!(
            "#!/bin/sh\nsleep 300 >/dev/null 2>&1 &\necho $! > {}\n",
            quiet.display()
        ),
        0o755,
    );
    let result = b.run("loud.sh", 30, None).await;
    let loud_pid = read_pid(&loud);
    let quiet_result = b.run("quiet.sh", 30, None).await;
    let quiet_pid = read_pid(&quiet);
    let both_alive = (alive(loud_pid), alive(quiet_pid));
    for pid in [loud_pid, quiet_pid] {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_eq!(
        result.code,
        ErrorCode::OutputsLeftOpen,
        "{}",
        result.message
    );
    assert!(result
        .message
        .contains("still holds its stdout or stderr open"));
    assert_eq!(
        quiet_result.code,
        ErrorCode::Succeeded,
        "{}",
        quiet_result.message
    );
    assert_eq!(
        both_alive,
        (true, true),
        "a finished script's daemons keep running"
    );
}

#[tokio::test]
async fn runas_switches_user_when_root() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let Ok(Some(nobody)) = User::from_name("nobody") else {
        eprintln!("skipped: no user `nobody`");
        return;
    };
    let b = Bundle::new();
    b.script(
        "who.sh",
        "#!/bin/sh\necho \"uid=$(id -u) gid=$(id -g) user=$USER\"\n",
        0o755,
    );
    let result = b.run("who.sh", 30, Some("nobody")).await;
    assert_eq!(result.code, ErrorCode::Succeeded, "{}", result.message);
    let expected = format!(
        "[stdout]uid={} gid={} user=nobody\n",
        nobody.uid, nobody.gid
    );
    assert!(b.log.tail().contains(&expected), "{}", b.log.tail());

    let result = b.run("who.sh", 30, Some("no-such-user-here")).await;
    assert_eq!(result.code, ErrorCode::ScriptExecutability);
    assert!(
        result.message.contains("does not exist on this host"),
        "{}",
        result.message
    );

    b.script("fail.sh", "#!/bin/sh\nexit 1\n", 0o755);
    let result = b.run("fail.sh", 30, Some("nobody")).await;
    assert_eq!(
        result.message,
        "Script at specified location: fail.sh run as user nobody failed with exit code 1"
    );
}

#[test]
fn runas_another_user_needs_root() {
    let me = Uid::from_raw(1000);
    assert_eq!(decide_switch(me, Uid::from_raw(1000)), Switch::No);
    assert_eq!(decide_switch(me, Uid::from_raw(1001)), Switch::Impossible);
    assert_eq!(
        decide_switch(Uid::from_raw(0), Uid::from_raw(1001)),
        Switch::Yes
    );
    assert_eq!(
        decide_switch(Uid::from_raw(0), Uid::from_raw(0)),
        Switch::No
    );
}
