//! Running one hook script, as the CodeDeploy agent runs it.
//!
//! The script runs in its own process group with stdin closed, a cleared environment
//! (the deployment's variables, a fixed PATH, the user's HOME), the bundle root as its
//! working directory and, with `runas`, as that user (groups, gid, then uid, switched in
//! the child before exec; only possible when the agent is root). A script that is not
//! executable is made so first. Its output goes to the event's [`ScriptLog`].
//!
//! On timeout the whole process group gets SIGTERM, then SIGKILL after a short grace,
//! so what the script started in the background dies with it. A script that exits is
//! done; what it started keeps running (that is how ApplicationStart starts a service),
//! but if that keeps the script's stdout or stderr open for more than a few seconds the
//! event fails with OUTPUTS_LEFT_OPEN, because a service should not write to the agent.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::appspec::HookScript;
use crate::diagnostics::ErrorCode;
use crate::scriptlog::ScriptLog;

/// The PATH scripts get: the agent's own environment is not passed on.
pub const SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest output line kept whole; longer lines are split.
const MAX_LINE: usize = 16 * 1024;

/// Timing of the parts of a script run that the appspec does not set.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Between SIGTERM and SIGKILL to a timed-out script's process group.
    pub kill_grace: Duration,
    /// How long output may stay open after the script exits before the event fails
    /// with OUTPUTS_LEFT_OPEN.
    pub outputs_grace: Duration,
}

impl Default for ScriptOptions {
    fn default() -> ScriptOptions {
        ScriptOptions {
            kill_grace: Duration::from_secs(3),
            outputs_grace: Duration::from_secs(5),
        }
    }
}

/// What every script of one event shares.
#[derive(Debug, Clone, Copy)]
pub struct ScriptContext<'a> {
    /// The revision's root: scripts are found and run there.
    pub bundle_root: &'a Path,
    /// The deployment's variables (LIFECYCLE_EVENT, DEPLOYMENT_ID, ...).
    pub env: &'a [(String, String)],
    /// Where the output goes.
    pub log: &'a Arc<ScriptLog>,
    /// Timing.
    pub options: &'a ScriptOptions,
}

/// How one script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    /// [`ErrorCode::Succeeded`] or why not.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

impl ScriptResult {
    fn new(code: ErrorCode, message: impl Into<String>) -> ScriptResult {
        ScriptResult {
            code,
            message: message.into(),
        }
    }
}

/// Runs `script` and waits for it (at most its timeout plus the graces).
pub async fn run_script(ctx: ScriptContext<'_>, script: &HookScript) -> ScriptResult {
    let location = script.location.to_string();
    ctx.log.line(&format!("Script - {location}"));
    let path = match find_script(ctx.bundle_root, script) {
        Ok(path) => path,
        Err(result) => return result,
    };
    let identity = match Identity::for_runas(script.runas.as_deref()) {
        Ok(identity) => identity,
        Err(message) => {
            return ScriptResult::new(
                ErrorCode::ScriptExecutability,
                format!("Script at specified location: {location} cannot run: {message}"),
            )
        }
    };
    tracing::info!(script = %location, runas = ?script.runas, "running a hook script");
    let mut child = match spawn(&path, ctx, &identity).await {
        Ok(child) => child,
        Err(e) => return spawn_failure(&location, &identity, &e),
    };
    let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return ScriptResult::new(
            ErrorCode::UnknownError,
            format!("Script at specified location: {location} ended before it could be watched"),
        );
    };
    let mut group = GroupGuard(Some(Pid::from_raw(pgid)));
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, "[stdout]", ctx.log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, "[stderr]", ctx.log.clone())));
    }
    let outputs_closed = async {
        for pump in &mut pumps {
            let _ = pump.await;
        }
    };

    let status = match tokio::time::timeout(script.timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return ScriptResult::new(
                ErrorCode::UnknownError,
                format!("cannot wait for the script at {location}: {e}"),
            )
        }
        Err(_) => {
            group.signal(Signal::SIGTERM);
            let grace = ctx.options.kill_grace;
            let _ = tokio::time::timeout(grace, async {
                let _ = child.wait().await;
                outputs_closed.await;
            })
            .await;
            group.signal(Signal::SIGKILL);
            let _ = child.wait().await;
            group.disarm();
            for pump in &pumps {
                pump.abort();
            }
            ctx.log.line(&format!(
                "Script - {location} timed out after {} seconds; its process group was killed",
                script.timeout.as_secs()
            ));
            return ScriptResult::new(
                ErrorCode::ScriptTimedOut,
                format!(
                    "Script at specified location: {location} failed to complete in {} seconds",
                    script.timeout.as_secs()
                ),
            );
        }
    };
    // The script has exited: what it left running may go on running.
    group.disarm();
    let closed = tokio::time::timeout(ctx.options.outputs_grace, outputs_closed)
        .await
        .is_ok();
    for pump in &pumps {
        pump.abort();
    }
    let as_user = match &script.runas {
        Some(user) => format!(" run as user {user}"),
        None => String::new(),
    };
    match (status.code(), status.signal()) {
        (Some(0), _) if closed => {
            ScriptResult::new(ErrorCode::Succeeded, format!("Script at specified location: {location} succeeded"))
        }
        (Some(0), _) => ScriptResult::new(
            ErrorCode::OutputsLeftOpen,
            format!(
                "Script at specified location: {location} exited, but something it started still holds its stdout or stderr open after {} seconds; send the output of background processes elsewhere (e.g. `my-daemon >/dev/null 2>&1 &`)",
                ctx.options.outputs_grace.as_secs()
            ),
        ),
        (Some(code), _) => ScriptResult::new(
            ErrorCode::ScriptFailed,
            format!("Script at specified location: {location}{as_user} failed with exit code {code}"),
        ),
        (None, signal) => ScriptResult::new(
            ErrorCode::ScriptFailed,
            format!(
                "Script at specified location: {location}{as_user} was killed by signal {}",
                signal.unwrap_or_default()
            ),
        ),
    }
}

/// The script's path inside the bundle, made executable if it is not.
fn find_script(bundle_root: &Path, script: &HookScript) -> Result<PathBuf, ScriptResult> {
    let location = script.location.to_string();
    let missing = |why: &str| {
        ScriptResult::new(
            ErrorCode::ScriptMissing,
            format!("Script does not exist at specified location: {location}{why}; add it to the bundle or fix `location` in the appspec"),
        )
    };
    let path = match script.location.resolve_within(bundle_root) {
        Ok(path) => path,
        Err(crate::paths::EscapeError::Missing(_)) => return Err(missing("")),
        Err(e) => return Err(missing(&format!(" ({e})"))),
    };
    // The script itself may be a symlink, but only to a file inside the bundle.
    let real = match path.canonicalize() {
        Ok(real) => real,
        Err(_) => return Err(missing("")),
    };
    let root = bundle_root
        .canonicalize()
        .unwrap_or_else(|_| bundle_root.to_path_buf());
    if !real.starts_with(&root) {
        return Err(missing(" (it is a symlink leading out of the bundle)"));
    }
    let meta = match real.metadata() {
        Ok(meta) if meta.is_file() => meta,
        _ => return Err(missing(" (it is not a regular file)")),
    };
    let mode = meta.permissions().mode();
    if mode & 0o111 != 0o111 {
        tracing::warn!(script = %location, "the script is not executable; making it executable");
        let made = std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode | 0o111));
        if let Err(e) = made {
            return Err(ScriptResult::new(
                ErrorCode::ScriptExecutability,
                format!("Unable to set script at specified location: {location} as executable ({e}); make it executable in the bundle"),
            ));
        }
    }
    Ok(real)
}

/// Who a script runs as.
#[derive(Debug, Clone)]
enum Identity {
    /// The agent's own user.
    Agent {
        home: Option<String>,
        name: Option<String>,
    },
    /// Another user: the agent is root and switches in the child.
    Switch {
        name: String,
        uid: Uid,
        gid: Gid,
        groups: Vec<Gid>,
        home: String,
    },
}

impl Identity {
    fn for_runas(runas: Option<&str>) -> Result<Identity, String> {
        let me = Uid::effective();
        let Some(name) = runas else {
            let user = User::from_uid(me).ok().flatten();
            return Ok(Identity::Agent {
                home: user.as_ref().map(|u| u.dir.display().to_string()),
                name: user.map(|u| u.name),
            });
        };
        let user = User::from_name(name)
            .map_err(|e| format!("cannot look up user `{name}`: {e}"))?
            .ok_or_else(|| {
                format!(
                    "runas user `{name}` does not exist on this host; create it or change `runas`"
                )
            })?;
        match decide_switch(me, user.uid) {
            Switch::No => Ok(Identity::Agent {
                home: Some(user.dir.display().to_string()),
                name: Some(user.name),
            }),
            Switch::Yes => {
                let c_name = std::ffi::CString::new(name)
                    .map_err(|_| format!("`{name}` is not a user name"))?;
                let groups = nix::unistd::getgrouplist(&c_name, user.gid)
                    .map_err(|e| format!("cannot list the groups of `{name}`: {e}"))?;
                Ok(Identity::Switch {
                    name: user.name,
                    uid: user.uid,
                    gid: user.gid,
                    groups,
                    home: user.dir.display().to_string(),
                })
            }
            Switch::Impossible => Err(format!(
                "runas `{name}` needs the agent to run as root, and it runs as uid {me}; run the agent as root or remove `runas`"
            )),
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Identity::Agent { name, .. } => name.as_deref(),
            Identity::Switch { name, .. } => Some(name),
        }
    }

    fn home(&self) -> Option<&str> {
        match self {
            Identity::Agent { home, .. } => home.as_deref(),
            Identity::Switch { home, .. } => Some(home),
        }
    }
}

/// Whether running as `target` means switching user.
#[derive(Debug, PartialEq, Eq)]
enum Switch {
    No,
    Yes,
    Impossible,
}

fn decide_switch(me: Uid, target: Uid) -> Switch {
    if me == target {
        Switch::No
    } else if me.is_root() {
        Switch::Yes
    } else {
        Switch::Impossible
    }
}

async fn spawn(
    path: &Path,
    ctx: ScriptContext<'_>,
    identity: &Identity,
) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    let mut via_shell = false;
    loop {
        let mut cmd = if via_shell {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg(path);
            cmd
        } else {
            tokio::process::Command::new(path)
        };
        cmd.current_dir(ctx.bundle_root)
            .env_clear()
            .env("PATH", SCRIPT_PATH)
            .env("LANG", "C.UTF-8")
            .envs(ctx.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(home) = identity.home() {
            cmd.env("HOME", home);
        }
        if let Some(name) = identity.name() {
            cmd.env("USER", name).env("LOGNAME", name);
        }
        if let Identity::Switch {
            uid, gid, groups, ..
        } = identity
        {
            let (uid, gid, groups) = (*uid, *gid, groups.clone());
            // SAFETY: the closure runs in the forked child before exec and only makes
            // the async-signal-safe calls setgroups, setgid and setuid (no allocation:
            // `groups` was built before the fork).
            unsafe {
                cmd.pre_exec(move || {
                    nix::unistd::setgroups(&groups)?;
                    nix::unistd::setgid(gid)?;
                    nix::unistd::setuid(uid)?;
                    Ok(())
                });
            }
        }
        match cmd.spawn() {
            // A script without `#!`: run it with sh, as execvp (and CodeDeploy) would.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOEXEC) && !via_shell => {
                via_shell = true;
            }
            // Another thread may have held the freshly written script open for writing
            // across a fork; that passes quickly.
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

fn spawn_failure(location: &str, identity: &Identity, e: &std::io::Error) -> ScriptResult {
    let user = identity.name().unwrap_or("the agent's user");
    let why = match e.raw_os_error() {
        Some(nix::libc::EACCES) => format!(
            "permission denied for user {user}; the script and every directory above it (the agent's state directory) must be readable and searchable by that user"
        ),
        Some(nix::libc::ENOENT) => {
            "its interpreter (the program on its `#!` line) is not installed".to_string()
        }
        Some(nix::libc::EPERM) => format!("cannot switch to user {user}: {e}"),
        _ => e.to_string(),
    };
    ScriptResult::new(
        ErrorCode::ScriptExecutability,
        format!("Script at specified location: {location} cannot be run: {why}"),
    )
}

/// Copies one output stream into the log, line by line.
async fn pump<R: AsyncRead + Unpin>(stream: R, prefix: &'static str, log: Arc<ScriptLog>) {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        log.line(&format!("{prefix}{}", text.trim_end_matches(['\n', '\r'])));
        line.clear();
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (take, complete) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if complete || line.len() >= MAX_LINE {
            emit(&mut line);
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

/// Kills the script's process group if the run is abandoned (the future dropped) while
/// the script still runs.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.0 {
            // ESRCH: the group is already gone.
            let _ = killpg(pgid, signal);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
