//! The local executor: each command runs in its own shell process in a fresh process
//! group. Between commands the working directory and the environment are kept in a
//! state directory (`pwd`, `env.sh`), so `cd` and `export` carry over as in CodeBuild;
//! arrays and functions do not (neither do they in CodeBuild).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::spec::Shell;

/// How one command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// It exited with this status (signals: 128 + signal).
    Exit(i32),
    /// The build's deadline passed; the process group was killed.
    TimedOut,
    /// Someone stopped the build; the process group was killed.
    Stopped,
    /// The shell could not be started.
    Fault(String),
}

/// A prepared shell for one build.
pub struct LocalShell {
    shell: Shell,
    src_dir: PathBuf,
    state: PathBuf,
    run_as: Option<(u32, u32)>,
}

/// Gives `path` and everything below it to `uid:gid` (symlinks themselves, not targets).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// `'text'` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl LocalShell {
    /// Writes the initial state: `env` and the starting directory `src_dir`.
    /// With `run_as`, commands run as that `(uid, gid)` and the state belongs to it.
    pub fn prepare(
        shell: Shell,
        src_dir: &Path,
        state: &Path,
        env: &[(String, String)],
        run_as: Option<(u32, u32)>,
    ) -> std::io::Result<LocalShell> {
        std::fs::create_dir_all(state)?;
        let mut lines = String::new();
        for (k, v) in env {
            lines.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        std::fs::write(state.join("env.sh"), lines)?;
        let mut pwd = src_dir.as_os_str().as_bytes().to_vec();
        pwd.push(b'\n');
        std::fs::write(state.join("pwd"), pwd)?;
        if let Some((uid, gid)) = run_as {
            chown_tree(state, uid, gid)?;
        }
        Ok(LocalShell {
            shell,
            src_dir: src_dir.to_path_buf(),
            state: state.to_path_buf(),
            run_as,
        })
    }

    fn script(&self, command: &str, succeeding: &str) -> String {
        let state = shell_quote(&self.state.display().to_string());
        format!(
            "cd \"$(cat {state}/pwd)\" || exit 1\n\
             . {state}/env.sh\n\
             export CODEBUILD_BUILD_SUCCEEDING={succeeding} SLIPWAY_BUILD_SUCCEEDING={succeeding}\n\
             trap '__slipway_rc=$?; pwd > {state}/pwd; export -p > {state}/env.sh; exit $__slipway_rc' EXIT\n\
             set -a\n\
             {command}\n"
        )
    }

    /// Runs one command; each output line goes to `out` as it is produced.
    pub async fn run(
        &self,
        command: &str,
        succeeding: &str,
        out: &mut (dyn FnMut(&str) + Send),
        stop: &CancellationToken,
        deadline: tokio::time::Instant,
    ) -> CommandOutcome {
        let script_path = self.state.join("command.sh");
        if let Err(e) = std::fs::write(&script_path, self.script(command, succeeding)) {
            return CommandOutcome::Fault(format!("cannot write the command script: {e}"));
        }
        if let Some((uid, gid)) = self.run_as {
            let _ = std::os::unix::fs::lchown(&script_path, Some(uid), Some(gid));
        }
        let mut cmd = tokio::process::Command::new(self.shell.program());
        cmd.arg(&script_path)
            .current_dir(&self.src_dir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups when it sets the uid of a child of root.
            cmd.uid(uid).gid(gid);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return CommandOutcome::Fault(format!("cannot start {}: {e}", self.shell.program()))
            }
        };
        let pgid = child.id().map(|p| p as i32);
        // Recorded so that a server killed mid-build can end the group on restart.
        if let Some(pgid) = pgid {
            let _ = std::fs::write(self.state.join("running.pgid"), pgid.to_string());
        }
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return CommandOutcome::Fault("no output pipes".into());
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let kill_group = || {
            if let Some(pgid) = pgid {
                // SAFETY: kill(2) with a negative pid signals our own child's process group.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        };
        let mut open = true;
        loop {
            tokio::select! {
                line = rx.recv(), if open => match line {
                    Some(l) => out(&l),
                    None => open = false,
                },
                status = child.wait(), if !open => {
                    // The shell is done; anything it left running in its group goes too.
                    kill_group();
                    return match status {
                        Ok(s) => CommandOutcome::Exit(s.code().unwrap_or_else(|| {
                            use std::os::unix::process::ExitStatusExt;
                            128 + s.signal().unwrap_or(0)
                        })),
                        Err(e) => CommandOutcome::Fault(format!("waiting for the command: {e}")),
                    };
                }
                _ = tokio::time::sleep_until(deadline) => {
                    kill_group();
                    let _ = child.wait().await;
                    return CommandOutcome::TimedOut;
                }
                _ = stop.cancelled() => {
                    kill_group();
                    let _ = child.wait().await;
                    return CommandOutcome::Stopped;
                }
            }
        }
    }

    /// Kills the process group a previous server process left running for the build
    /// whose state directory is `state` — only if that group still runs our script.
    pub fn kill_leftover(state: &Path) {
        let Ok(text) = std::fs::read_to_string(state.join("running.pgid")) else {
            return;
        };
        let Ok(pgid) = text.trim().parse::<i32>() else {
            return;
        };
        let script = state.join("command.sh");
        let cmdline = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap_or_default();
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == script.as_os_str().as_bytes());
        if pgid > 1 && ours {
            // SAFETY: kill(2) on a process group we verified runs this build's script.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            tracing::warn!(
                pgid,
                "killed a build left running by a previous server process"
            );
        }
        let _ = std::fs::remove_file(state.join("running.pgid"));
    }

    /// The environment as the last command left it.
    pub async fn final_env(&self) -> std::io::Result<Vec<(String, String)>> {
        let state = shell_quote(&self.state.display().to_string());
        let mut cmd = tokio::process::Command::new(self.shell.program());
        cmd.arg("-c")
            .arg(format!(". {state}/env.sh; env -0"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(&self.src_dir);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().await?;
        Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect())
    }
}
