//! End-to-end tests of the `slipway-agent` binary: each test gets its own host root and
//! state directory in a temp dir and runs the real program on bundles it writes.

mod local;
mod run;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A host for one test: `root/` for installed files, `state/` for the agent's state,
/// `bundles/` for revisions and `record` for what scripts write.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // Reachable by a runas user, like a real state directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("root")).unwrap_or_else(|e| panic!("{e}"));
        Host { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Where `host_path` (absolute) is under this host's root.
    fn installed(&self, host_path: &str) -> PathBuf {
        self.path("root").join(host_path.trim_start_matches('/'))
    }

    /// The file scripts append to.
    fn record(&self) -> PathBuf {
        self.path("record")
    }

    /// What scripts appended so far, line by line.
    fn recorded(&self) -> Vec<String> {
        std::fs::read_to_string(self.record())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Writes bundle `name`: appspec.yml and `files` ((path, content); paths ending in
    /// `.sh` are made executable).
    fn bundle(&self, name: &str, appspec: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path("bundles").join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("appspec.yml"), appspec).unwrap_or_else(|e| panic!("{e}"));
        for (path, content) in files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
            if path.extension().is_some_and(|e| e == "sh") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        dir
    }

    /// Runs `slipway-agent local` on `bundle` with this host's root and state.
    fn local(&self, bundle: &Path, extra: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_slipway-agent"))
            .arg("local")
            .arg("--bundle")
            .arg(bundle)
            .arg("--root")
            .arg(self.path("root"))
            .arg("--state")
            .arg(self.path("state"))
            .args(extra)
            .env_remove("RUST_LOG")
            .output()
            .unwrap_or_else(|e| panic!("cannot run slipway-agent: {e}"));
        Run::from(output)
    }
}

/// One run of the binary.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            ok: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The status word printed for `event` (`Succeeded`, `Failed`, `Skipped`).
    fn status(&self, event: &str) -> Option<&str> {
        self.stdout.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(event))
                .then(|| words.next())
                .flatten()
        })
    }

    /// The deployment id printed on the first line.
    fn deployment_id(&self) -> String {
        self.stdout
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("Deployment "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no deployment line in:\n{}", self.stdout))
            .to_string()
    }

    /// Panics with the output unless the run succeeded.
    fn assert_ok(&self) -> &Run {
        assert!(
            self.ok,
            "slipway-agent failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics with the output unless the run failed with exit status 1.
    fn assert_failed(&self) -> &Run {
        assert_eq!(
            self.code,
            Some(1),
            "slipway-agent should have failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self
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
