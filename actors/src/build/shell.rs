//! The executors: where a build's commands run.
//!
//! A build's commands run in a long-lived session shell, on this host (`local`, in a
//! fresh process group) or inside the build's container (`docker`, through `docker
//! exec`); each command in a subshell of its own, so `exit` ends only that command. The
//! working directory and exported variables carry over from command to command as in
//! CodeBuild ([`super::carry`]); arrays and functions do not (neither do they in
//! CodeBuild). Both executors run the same scripts and the same engine code; only the
//! process that runs the session differs.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::carry::{self, Carried};
use super::spec::Shell;
use super::state_dir::{Occupant, StateDir};

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

/// What a running command list reports.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// The command at this index starts.
    Start(usize),
    /// A line of output.
    Line(&'a str),
}

/// Most commands sent to the session ahead of their turn.
const MAX_BATCH: usize = 32;

/// Where a build's commands run.
#[derive(Debug, Clone)]
pub enum Executor {
    /// On this host. Commands run as `run_as` `(uid, gid)` when given (a server running
    /// as root runs builds as `nobody`); a buildspec `run-as` user is looked up in the
    /// host's user database.
    Local {
        /// The default user for commands.
        run_as: Option<(u32, u32)>,
        /// Niceness of the build's processes (0: the server's own priority).
        nice: i32,
    },
    /// In a container of a local image, through the Docker engine.
    Docker(DockerSpec),
}

/// The container a Docker build runs in.
#[derive(Debug, Clone)]
pub struct DockerSpec {
    /// The image (never pulled: it must exist on the server).
    pub image: String,
    /// The container's name (unique per server and build).
    pub container: String,
    /// Host directories mounted read-write at the same path inside (the source directory
    /// and the build's home; the state directory is added by the executor). Nothing else
    /// of the host is visible.
    pub mounts: Vec<PathBuf>,
}

/// A prepared shell for one build.
pub struct BuildShell {
    shell: Shell,
    src_dir: PathBuf,
    state: StateDir,
    executor: Executor,
    /// The directory and exported variables the last command left.
    latest: Carried,
    /// Whether a session has reported what a fresh shell holds (`latest` then includes it).
    synced: bool,
    /// The long-lived shell that runs one subshell per command.
    session: Option<Session>,
    /// Process groups of earlier sessions (another `run-as` user's phases): what they
    /// started in the background lives until the build ends.
    retired: Vec<i32>,
    /// Marks the session's own lines in the output streams.
    nonce: String,
}

/// A long-lived shell running [`BuildShell::session_script`] as one user. Forking a subshell per
/// command costs far less than starting a shell per command.
struct Session {
    user: Option<String>,
    child: tokio::process::Child,
    /// Operations go in here; `None` once closed (the loop then ends).
    stdin: Option<tokio::process::ChildStdin>,
    /// Output lines: `(from stderr, line)`.
    lines: tokio::sync::mpsc::Receiver<String>,
    /// The session's process group (local executor): the build's commands and whatever
    /// they start in the background.
    pgid: Option<i32>,
    /// The directory and exported variables the session shell holds.
    held: Carried,
    /// Lines the shell printed before it was ready (warnings), for the next command's log.
    early: Vec<String>,
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

/// Runs the process `cmd` starts at niceness `nice` (0: unchanged). Bulk work (git's
/// pack work, builds) goes at a lower priority so that the server's own threads (event
/// delivery, SSH handshakes, hook calls) stay prompt on a busy machine.
pub fn lower_priority(cmd: &mut tokio::process::Command, nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe system call.
    unsafe {
        cmd.pre_exec(move || {
            // Best effort: a failure leaves the child at the server's priority.
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            Ok(())
        });
    }
}

/// Whether this process runs as root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `(uid, gid)` of the host user `name`, if it exists.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s
    // string fields (we only read the numeric ids).
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// The `(uid, gid)` a local build's commands run as for buildspec `run-as: name`.
/// Root is refused: a build never runs as root on the server's host.
pub fn resolve_local_user(name: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = lookup_user(name).ok_or_else(|| {
        format!("run-as user `{name}` does not exist on the build host; create it or remove run-as")
    })?;
    if uid == 0 {
        return Err(format!(
            "run-as `{name}` is root, which local builds never run as; use the docker executor for builds that need root"
        ));
    }
    // SAFETY: geteuid(2) has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !running_as_root() && uid != me {
        return Err(format!(
            "run-as `{name}` needs the server to run as root (it runs as uid {me}); remove run-as or run the server as root"
        ));
    }
    Ok((uid, gid))
}

/// Why a build shell's output ended before its command did, and what to check.
fn shell_gone(shell: Shell, executor: &Executor) -> String {
    match executor {
        Executor::Docker(spec) => format!(
            "the build shell `{}` ended unexpectedly; check that image `{}` has it (or set env.shell: sh)",
            shell.program(),
            spec.image
        ),
        Executor::Local { .. } => format!(
            "the build shell `{}` ended unexpectedly; check that it is installed on the server",
            shell.program()
        ),
    }
}

/// The whole environment a local build shell starts with.
fn local_base_env() -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    vec![("PATH".into(), path), ("LANG".into(), "C.UTF-8".into())]
}

/// The environment the `docker` client itself runs with.
fn docker_client<S: AsRef<OsStr>>(args: &[S]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args).env_clear().env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    for var in ["DOCKER_HOST", "DOCKER_CONFIG", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs a `docker` command to completion; its stderr is the error.
async fn docker<S: AsRef<OsStr>>(args: &[S]) -> Result<String, String> {
    let out = tokio::time::timeout(Duration::from_secs(120), docker_client(args).output())
        .await
        .map_err(|_| "the Docker engine did not answer within 120 s".to_string())?
        .map_err(|e| {
            format!("cannot run `docker` ({e}); install the Docker CLI or use executor: local")
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl BuildShell {
    /// Creates the state directory for the build's shell, which starts in `src_dir` with
    /// `env` exported; for Docker, starts the build's container.
    pub async fn prepare(
        shell: Shell,
        src_dir: &Path,
        state: &Path,
        env: &[(String, String)],
        executor: Executor,
    ) -> Result<BuildShell, String> {
        let occupant = match &executor {
            Executor::Local {
                run_as: Some((uid, gid)),
                ..
            } if running_as_root() => Occupant::User {
                uid: *uid,
                gid: *gid,
            },
            Executor::Local { .. } => Occupant::Server,
            Executor::Docker(_) => Occupant::Container,
        };
        let state = StateDir::create(state, occupant)
            .map_err(|e| format!("cannot prepare the build's state directory: {e}"))?;
        if let Executor::Docker(spec) = &executor {
            start_container(spec, src_dir, &state).await?;
        }
        Ok(BuildShell {
            shell,
            src_dir: src_dir.to_path_buf(),
            latest: Carried::initial(env, src_dir.as_os_str().as_bytes()),
            synced: false,
            state,
            executor,
            session: None,
            retired: Vec::new(),
            nonce: format!("slipway-{:016x}", rand::random::<u64>()),
        })
    }

    /// The session loop (POSIX sh), one operation per line on stdin: `load` sources
    /// `load.sh` into the session itself, so the next commands inherit it; `run N` runs
    /// `cN.sh` in a subshell, then reports `<RS>NONCE done STATUS` after the command's
    /// own output (stdout and stderr are one pipe, so lines keep their order); `then N`
    /// does the same only if the command before succeeded, and is skipped silently
    /// otherwise. `__slipway_save`, inherited by every subshell, is what a command's EXIT
    /// trap calls to report its variables and directory. As in CodeBuild, what a command
    /// starts in the background (a daemon in `install`) keeps running for the later
    /// commands and phases; it is killed when the build ends.
    fn session_script(&self) -> String {
        let state = shell_quote(&self.state.root().display().to_string());
        let report = shell_quote(&self.state.report().display().to_string());
        let nonce = &self.nonce;
        format!(
            "__slipway_ok=1\n\
             __slipway_save() {{ {{ export -p; printf '\\036{nonce} pwd %s\\n' \"$PWD\"; }} 1<>{report}; }}\n\
             __slipway_lost() {{ __slipway_ok=; printf '\\036{nonce} lost\\n'; }}\n\
             __slipway_save\n\
             printf '\\036{nonce} ready\\n'\n\
             __slipway_rc=0\n\
             while IFS=' ' read -r __slipway_op __slipway_slot; do\n  \
               case $__slipway_op in\n    \
                 load) . {state}/load.sh ;;\n    \
                 run|then)\n      \
                   if [ \"$__slipway_op\" = then ] && [ \"$__slipway_rc\" != 0 ]; then continue; fi\n      \
                   if [ -n \"$__slipway_ok\" ]; then ( . {state}/c\"$__slipway_slot\".sh ) </dev/null; __slipway_rc=$?; else __slipway_rc=1; fi\n      \
                   __slipway_ok=1\n      \
                   printf '\\036{nonce} done %s\\n' \"$__slipway_rc\" ;;\n  \
               esac\n\
             done\n"
        )
    }

    /// One command's script: the EXIT trap that reports what it leaves, then the command
    /// with every assignment exported (so plain `NAME=value` carries over too). A command
    /// that cannot change the shell's state ([`carry::leaves_state_alone`]) has nothing
    /// to report: the subshell `exec`s it.
    fn script(command: &str, succeeding: &str, exec: bool) -> String {
        let set = format!(
            "export CODEBUILD_BUILD_SUCCEEDING={succeeding} SLIPWAY_BUILD_SUCCEEDING={succeeding}"
        );
        if exec {
            return format!("{set}\nexec {command}\n");
        }
        format!(
            "trap '__slipway_rc=$?; __slipway_save; exit $__slipway_rc' EXIT\n\
             {set}\n\
             set -a\n\
             {command}\n"
        )
    }

    /// The process that runs `script` as `user` (a buildspec `run-as`; `None` is the
    /// executor's default user); `interactive` keeps its stdin open through Docker.
    fn command(
        &self,
        script: &Path,
        user: Option<&str>,
        interactive: bool,
    ) -> Result<tokio::process::Command, String> {
        match &self.executor {
            Executor::Local { run_as, nice } => {
                let ids = match user {
                    None => *run_as,
                    Some(name) => Some(resolve_local_user(name)?),
                };
                let mut cmd = tokio::process::Command::new(self.shell.program());
                cmd.arg(script)
                    .current_dir(&self.src_dir)
                    .env_clear()
                    .envs(local_base_env());
                if let Some((uid, gid)) = ids {
                    if running_as_root() {
                        // The state directory follows the user a phase runs as.
                        self.state.admit(Occupant::User { uid, gid }).map_err(|e| {
                            format!("cannot hand the build's state directory to uid {uid}: {e}; the data directory must be on a file system where the server (root) can change owners")
                        })?;
                        // std drops root's supplementary groups when it sets the uid.
                        cmd.uid(uid).gid(gid);
                    }
                }
                lower_priority(&mut cmd, *nice);
                Ok(cmd)
            }
            Executor::Docker(spec) => {
                let mut args: Vec<OsString> = vec!["exec".into()];
                if interactive {
                    args.push("--interactive".into());
                }
                if let Some(name) = user {
                    args.extend(["--user".into(), name.into()]);
                }
                args.extend([
                    "--workdir".into(),
                    self.src_dir.clone().into_os_string(),
                    spec.container.clone().into(),
                    self.shell.program().into(),
                    script.as_os_str().to_owned(),
                ]);
                Ok(docker_client(&args))
            }
        }
    }

    /// Runs `commands` in order as `user` (`None`: the executor's default), stopping at
    /// the first that does not succeed; `out` hears when each starts and each output line
    /// as it is produced. Each command starts from the directory and environment the
    /// previous one left. Returns the index of the last command started and how it ended.
    ///
    /// Commands go to the session in batches: a plain program run cannot change the
    /// shell's state, so the command after it is sent along and starts as soon as it
    /// succeeds, without waiting for the server; any other command ends a batch (the
    /// server reads what it left before sending more).
    pub async fn run_list(
        &mut self,
        commands: &[String],
        succeeding: &str,
        user: Option<&str>,
        out: &mut (dyn FnMut(Output<'_>) + Send),
        stop: &CancellationToken,
        deadline: tokio::time::Instant,
    ) -> (usize, CommandOutcome) {
        let exec: Vec<bool> = commands
            .iter()
            .map(|c| carry::leaves_state_alone(c))
            .collect();
        let mut first = 0;
        while first < commands.len() {
            let mut last = first;
            while last + 1 < commands.len() && last + 1 - first < MAX_BATCH && exec[last] {
                last += 1;
            }
            match self
                .run_batch(
                    &commands[first..=last],
                    &exec[first..=last],
                    succeeding,
                    user,
                    first,
                    out,
                    stop,
                    deadline,
                )
                .await
            {
                (at, CommandOutcome::Exit(0)) if at == last => first = last + 1,
                ended => return ended,
            }
        }
        (commands.len().saturating_sub(1), CommandOutcome::Exit(0))
    }

    /// Runs one batch (see [`BuildShell::run_list`]); `exec[i]`: command `i` is a plain
    /// program run; indexes count from `offset`.
    #[allow(clippy::too_many_arguments)]
    async fn run_batch(
        &mut self,
        batch: &[String],
        exec: &[bool],
        succeeding: &str,
        user: Option<&str>,
        offset: usize,
        out: &mut (dyn FnMut(Output<'_>) + Send),
        stop: &CancellationToken,
        deadline: tokio::time::Instant,
    ) -> (usize, CommandOutcome) {
        let mut ops = Vec::new();
        for (slot, command) in batch.iter().enumerate() {
            let script = Self::script(command, succeeding, exec[slot]);
            if let Err(e) = self.state.write(&format!("c{slot}.sh"), script.as_bytes()) {
                return (
                    offset + slot,
                    CommandOutcome::Fault(format!("cannot write the command script: {e}")),
                );
            }
            let op = if slot == 0 { "run" } else { "then" };
            ops.extend_from_slice(format!("{op} {slot}\n").as_bytes());
        }
        let marker = format!("\u{1e}{} ", self.nonce);
        if let Err(e) = self.session_for(user).await {
            return (offset, CommandOutcome::Fault(e));
        }
        let Some(session) = self.session.as_mut() else {
            return (
                offset,
                CommandOutcome::Fault("the build shell did not start".into()),
            );
        };
        // The session takes on what the last command left, if that changed anything.
        if let Some(load) = session.held.changes_to(&self.latest, "__slipway_lost") {
            if let Err(e) = self.state.write("load.sh", &load) {
                return (
                    offset,
                    CommandOutcome::Fault(format!("cannot write the build's state: {e}")),
                );
            }
            session.held = self.latest.clone();
            ops.splice(0..0, b"load\n".iter().copied());
        }
        use tokio::io::AsyncWriteExt;
        let sent = match session.stdin.as_mut() {
            Some(stdin) => match stdin.write_all(&ops).await {
                Ok(()) => stdin.flush().await,
                Err(e) => Err(e),
            },
            None => Err(std::io::Error::other("closed")),
        };
        if let Err(e) = sent {
            self.kill_everything().await;
            return (
                offset,
                CommandOutcome::Fault(format!("the build shell is gone: {e}")),
            );
        }
        for line in session.early.drain(..) {
            out(Output::Line(&line));
        }
        let mut slot = 0;
        out(Output::Start(offset));
        let ended = loop {
            tokio::select! {
                next = session.lines.recv() => match next {
                    Some(text) => {
                        let Some(pos) = text.find(&marker) else {
                            out(Output::Line(&text));
                            continue;
                        };
                        // A command's last line without a newline shares the marker's line.
                        if pos > 0 {
                            out(Output::Line(&text[..pos]));
                        }
                        let after = &text[pos + marker.len()..];
                        if after == "ready" {
                            // A local session's start-up report, not waited for.
                            continue;
                        }
                        if after == "lost" {
                            // The directory could not be entered: the session is not
                            // where it should be; the next load tries again.
                            session.held.pwd.clear();
                            continue;
                        }
                        let Some(("done", rc)) = after.split_once(' ') else {
                            out(Output::Line(&text[pos..]));
                            continue;
                        };
                        let rc = rc.trim().parse().unwrap_or(1);
                        if rc != 0 || slot + 1 == batch.len() {
                            // The session skips the rest of the batch by itself.
                            break CommandOutcome::Exit(rc);
                        }
                        slot += 1;
                        out(Output::Start(offset + slot));
                    }
                    None => break CommandOutcome::Fault(shell_gone(self.shell, &self.executor)),
                },
                _ = tokio::time::sleep_until(deadline) => break CommandOutcome::TimedOut,
                _ = stop.cancelled() => break CommandOutcome::Stopped,
            }
        };
        if !matches!(ended, CommandOutcome::Exit(_)) {
            // Timed out, stopped or broken: everything the build runs goes.
            self.kill_everything().await;
        } else if !exec[slot] {
            // (An `exec`ed command could not change the shell's state.)
            if let Some(left) = self.reported() {
                self.latest = left;
            }
        }
        (offset + slot, ended)
    }

    /// Starts (or keeps) the session for `user`.
    async fn session_for(&mut self, user: Option<&str>) -> Result<&mut Session, String> {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.user.as_deref() != user)
        {
            // Another user's phase: that session's loop ends (the state on disk carries
            // over); what it started in the background lives until the build ends.
            if let Some(old) = self.session.take() {
                self.retired.extend(old.pgid);
                drop(old);
            }
        }
        if self.session.is_none() {
            // The new shell (maybe another user) writes its own report.
            self.state
                .clear_report()
                .map_err(|e| format!("cannot clear the build's report: {e}"))?;
            let loop_path = self
                .state
                .write("session.sh", self.session_script().as_bytes())
                .map_err(|e| format!("cannot write the session script: {e}"))?;
            let mut cmd = self.command(&loop_path, user, true)?;
            // Both output streams go into one pipe, in the order they were written.
            let (output, writer) =
                std::io::pipe().map_err(|e| format!("cannot make the build's pipe: {e}"))?;
            let writer2 = writer
                .try_clone()
                .map_err(|e| format!("cannot make the build's pipe: {e}"))?;
            cmd.stdin(Stdio::piped())
                .stdout(writer)
                .stderr(writer2)
                .process_group(0)
                .kill_on_drop(true);
            let spawned = cmd.spawn();
            // Our copies of the write end go, so the pipe ends when the build's processes do.
            drop(cmd);
            let mut child = spawned.map_err(|e| format!("cannot start the build shell: {e}"))?;
            let output = tokio::net::unix::pipe::Receiver::from_owned_fd(output.into())
                .map_err(|e| format!("cannot read the build's pipe: {e}"))?;
            let pgid = child.id().map(|p| p as i32);
            if let (Some(pgid), Executor::Local { .. }) = (pgid, &self.executor) {
                // So that a server killed mid-build can end these groups on restart.
                let groups: Vec<String> = self
                    .retired
                    .iter()
                    .chain(std::iter::once(&pgid))
                    .map(|g| g.to_string())
                    .collect();
                let _ = self
                    .state
                    .write("running.pgid", groups.join(" ").as_bytes());
            }
            let Some(stdin) = child.stdin.take() else {
                return Err("no pipe to the build shell".into());
            };
            let (tx, rx) = tokio::sync::mpsc::channel::<String>(1024);
            tokio::spawn(async move {
                // Lines as text; bytes that are not UTF-8 are replaced, not fatal.
                let mut reader = BufReader::new(output);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if tx.send(text).await.is_err() {
                        break;
                    }
                }
            });
            self.session = Some(Session {
                user: user.map(str::to_string),
                child,
                stdin: Some(stdin),
                lines: rx,
                pgid,
                // Replaced below by what the shell reports it holds.
                held: Carried {
                    vars: Default::default(),
                    pwd: self.src_dir.as_os_str().as_bytes().to_vec(),
                },
                early: Vec::new(),
            });
            match &self.executor {
                // A container starts with its image's variables: ask the shell.
                Executor::Docker(_) => self.sync_session().await?,
                // A local shell starts with exactly what `command` gave it.
                Executor::Local { .. } => {
                    let holds =
                        Carried::initial(&local_base_env(), self.src_dir.as_os_str().as_bytes());
                    self.hold(holds);
                }
            }
        }
        self.session
            .as_mut()
            .ok_or_else(|| "the build shell did not start".to_string())
    }

    /// Waits for a new session to report what it holds (the variables its process was
    /// started with: for Docker, the image's), so that the first load can unset what the
    /// build had unset. The first session also fills in the build's starting state: the
    /// shell's own variables with the build's environment over them.
    async fn sync_session(&mut self) -> Result<(), String> {
        let ready = format!("\u{1e}{} ready", self.nonce);
        let Some(session) = self.session.as_mut() else {
            return Err("the build shell did not start".into());
        };
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = session.lines.recv().await {
                if line.contains(&ready) {
                    return true;
                }
                session.early.push(line);
            }
            false
        })
        .await;
        if waited != Ok(true) {
            self.kill_everything().await;
            return Err(match waited {
                Ok(_) => shell_gone(self.shell, &self.executor),
                Err(_) => format!(
                    "the build shell `{}` did not start within 60 s; check the Docker engine and the host's load",
                    self.shell.program()
                ),
            });
        }
        if let Some(holds) = self.reported() {
            self.hold(holds);
        }
        self.synced = true;
        Ok(())
    }

    /// What the last report (a command's EXIT trap, or a new session) says the shell
    /// holds. A report without its closing line (the trap did not finish, e.g. the command
    /// replaced the shell with `exec`) says nothing.
    fn reported(&self) -> Option<Carried> {
        let marker = format!("\u{1e}{} pwd ", self.nonce);
        let report = self.state.read_report().ok()?;
        Carried::parse(&report, marker.as_bytes())
    }

    /// Records what a new session holds; the first also fills in the build's starting
    /// state: the shell's own variables with the build's environment over them.
    fn hold(&mut self, holds: Carried) {
        if !self.synced {
            let mut start = holds.clone();
            start.vars.extend(std::mem::take(&mut self.latest.vars));
            start.pwd = std::mem::take(&mut self.latest.pwd);
            self.latest = start;
            self.synced = true;
        }
        if let Some(session) = self.session.as_mut() {
            session.held = holds;
        }
    }

    /// Kills everything the build runs: every session's process group (with what the
    /// commands left in the background), and for Docker the container's processes
    /// (killing the `docker exec` clients alone would leave them running).
    async fn kill_everything(&mut self) {
        if let Executor::Docker(spec) = &self.executor {
            if let Err(e) = docker(&["kill", spec.container.as_str()]).await {
                tracing::warn!(container = %spec.container, error = %e, "cannot kill the build container");
            }
        }
        let current = self.session.take();
        let groups: Vec<i32> = self
            .retired
            .drain(..)
            .chain(current.as_ref().and_then(|s| s.pgid))
            .collect();
        for g in groups {
            // SAFETY: kill(2) on process groups this build's shells lead.
            unsafe {
                libc::kill(-g, libc::SIGKILL);
            }
        }
        if let Some(mut session) = current {
            let _ = session.child.kill().await;
        }
    }

    /// Kills what a previous server process left running for the build whose state
    /// directory is `state`: the local process group (only if it still runs our script)
    /// or the build's container.
    pub async fn kill_leftover(state: &Path) {
        if let Ok(name) = std::fs::read_to_string(state.join("container")) {
            let name = name.trim();
            if !name.is_empty() {
                match docker(&["rm", "-f", name]).await {
                    Ok(_) => tracing::warn!(
                        container = name,
                        "removed a build container left by a previous server process"
                    ),
                    Err(e) => {
                        tracing::debug!(container = name, error = %e, "no leftover container")
                    }
                }
            }
            let _ = std::fs::remove_file(state.join("container"));
        }
        let Ok(text) = std::fs::read_to_string(state.join("running.pgid")) else {
            return;
        };
        // Our processes run `bash STATE/session.sh` (or `sh STATE/session.sh`).
        let ours_args = [state.join("session.sh")];
        for pgid in text
            .split_whitespace()
            .filter_map(|t| t.parse::<i32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap_or_default();
            let ours = cmdline
                .split(|b| *b == 0)
                .any(|arg| ours_args.iter().any(|p| arg == p.as_os_str().as_bytes()));
            if pgid > 1 && ours {
                // SAFETY: kill(2) on a process group we verified runs this build's shell.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                tracing::warn!(
                    pgid,
                    "killed a build left running by a previous server process"
                );
            }
        }
        let _ = std::fs::remove_file(state.join("running.pgid"));
    }

    /// The values of `names` as the last command left the environment (empty when unset).
    pub async fn final_env(&self, names: &[String]) -> Result<Vec<(String, String)>, String> {
        let mut script = self.latest.statements();
        script.extend_from_slice(b"printf '%s\\0'");
        for name in names {
            if super::carry::is_identifier(name) {
                script.extend_from_slice(format!(" \"${{{name}-}}\"").as_bytes());
            } else {
                script.extend_from_slice(b" ''");
            }
        }
        script.push(b'\n');
        let path = self
            .state
            .write("final-env.sh", &script)
            .map_err(|e| e.to_string())?;
        let mut cmd = self.command(&path, None, false)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let out = cmd.output().await.map_err(|e| e.to_string())?;
        let values: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        Ok(names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), values.get(i).cloned().unwrap_or_default()))
            .collect())
    }

    /// Ends the build's executor: removes the Docker container (after giving the files
    /// it wrote in the workspace back to the server's user when the server is not root).
    pub async fn close(&mut self) {
        if let Some(session) = self.session.as_mut() {
            // End of input ends the loop; then the build's leftovers go with its groups.
            session.stdin = None;
            let _ = tokio::time::timeout(Duration::from_secs(5), session.child.wait()).await;
        }
        if matches!(self.executor, Executor::Local { .. }) {
            self.kill_everything().await;
        } else {
            // The container goes below, with everything in it.
            self.session = None;
        }
        let _ = std::fs::remove_file(self.state.file("running.pgid"));
        let Executor::Docker(spec) = &self.executor else {
            return;
        };
        if !running_as_root() {
            // SAFETY: getuid/getgid have no preconditions.
            let owner = unsafe { format!("{}:{}", libc::geteuid(), libc::getegid()) };
            let mut args: Vec<OsString> = [
                "exec",
                "--user",
                "0",
                &spec.container,
                "chown",
                "-R",
                &owner,
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            args.extend(spec.mounts.iter().map(|m| m.clone().into_os_string()));
            args.push(self.state.shell_dir().into_os_string());
            let _ = docker(&args).await;
        }
        if let Err(e) = docker(&["rm", "-f", spec.container.as_str()]).await {
            tracing::warn!(container = %spec.container, error = %e, "cannot remove the build container");
        }
        let _ = std::fs::remove_file(self.state.file("container"));
    }
}

/// Starts the long-lived container the build's commands are `docker exec`ed in.
/// The server's state files are mounted read-only, so that the container (whose root is
/// the host's root) cannot turn them into links the server would write through; only
/// the shell's report directory is writable. `MKNOD` is dropped, so no device node the
/// server might open appears in the mounts.
async fn start_container(
    spec: &DockerSpec,
    src_dir: &Path,
    state: &StateDir,
) -> Result<(), String> {
    let mut mounts = Vec::new();
    let writable = spec.mounts.iter().map(|d| (d.clone(), false));
    let state_mounts = [
        (state.root().to_path_buf(), true),
        (state.shell_dir(), false),
    ];
    for (dir, read_only) in writable.chain(state_mounts) {
        let text = dir.to_str().unwrap_or("");
        if text.is_empty() || text.contains([',', '=', '"', '\n']) {
            return Err(format!(
                "the build directory {} cannot be mounted into a container (its path has a comma, quote or `=`); move the data directory",
                dir.display()
            ));
        }
        let options = if read_only { ",readonly" } else { "" };
        mounts.push(format!("type=bind,source={text},target={text}{options}"));
    }
    // Written first, so a server killed right after `docker run` still removes it.
    state
        .write("container", spec.container.as_bytes())
        .map_err(|e| format!("cannot record the build container: {e}"))?;
    let mut args: Vec<OsString> = [
        "run",
        "--detach",
        "--pull",
        "never",
        "--name",
        &spec.container,
        "--label",
        "org.slipway.build=1",
        "--cap-drop",
        "MKNOD",
        "--entrypoint",
        "sleep",
        "--workdir",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(src_dir.as_os_str().to_owned());
    for m in mounts {
        args.extend(["--mount".into(), m.into()]);
    }
    // Far longer than any build may run (36 h); the container is removed at the end.
    args.extend([spec.image.clone().into(), "2147483".into()]);
    match docker(&args).await {
        Ok(_) => Ok(()),
        Err(e) if e.contains("No such image") || e.contains("pull access denied") => Err(format!(
            "the image `{}` is not on this server, and slipway never pulls images: build or load it there first (docker build / docker load / docker import)",
            spec.image
        )),
        Err(e) => Err(format!(
            "cannot start the build container from image `{}`: {e}",
            spec.image
        )),
    }
}
