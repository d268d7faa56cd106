//! `slipway-agent local`: runs a bundle directory through the in-place lifecycle on this
//! host, for troubleshooting an appspec and its scripts without a server.
//!
//! The bundle's appspec is checked first (nothing runs if it is invalid). Then
//! ApplicationStop (the group's last successful revision, skipped the first time),
//! DownloadBundle (the directory is copied into the state directory), BeforeInstall,
//! Install, AfterInstall, ApplicationStart and ValidateService run in order through the
//! same [`Executor`] a server command uses, each printed as it ends. The first failure
//! stops the run and the remaining events are Skipped; success records the revision as
//! the group's last successful one. Local deployment groups are kept apart from the
//! server's: group `NAME` has the id `local-NAME`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::appspec::{self, LoadError};
use crate::diagnostics::Diagnostics;
use crate::event::LifecycleEvent;
use crate::executor::{Deployment, EventOutcome, EventStatus, Executor};
use crate::state::{Ident, StateError};

/// What to run.
#[derive(Debug, Clone)]
pub struct LocalRequest {
    /// The bundle directory (with appspec.yml at its root).
    pub bundle: PathBuf,
    /// The deployment group's name.
    pub group: String,
    /// The application's name.
    pub application: String,
    /// The commit to report as `BUNDLE_COMMIT` (may be empty).
    pub commit: String,
}

/// The result of a local run.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The deployment's id (`l-…`).
    pub deployment_id: Ident,
    /// Every event of the lifecycle, in order (Skipped after a failure).
    pub outcomes: Vec<EventOutcome>,
    /// The script log.
    pub script_log: PathBuf,
}

impl LocalRun {
    /// Whether every event succeeded (or was skipped without a failure).
    pub fn succeeded(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| o.status != EventStatus::Failed)
    }
}

/// Why a local run could not start, or could not record its success.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The bundle's appspec is missing or invalid.
    #[error(transparent)]
    AppSpec(#[from] LoadError),
    /// The group name or the state directory cannot be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The bundle is not a directory.
    #[error("the bundle {0} is not a directory; pass the directory that holds appspec.yml")]
    NotADirectory(PathBuf),
    /// Printing failed.
    #[error("cannot print the progress: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the in-place lifecycle of `request` with `executor`, printing each event's
/// status to `out`.
pub async fn run_local(
    executor: &Executor,
    request: &LocalRequest,
    out: &mut dyn Write,
) -> Result<LocalRun, LocalError> {
    if !request.bundle.is_dir() {
        return Err(LocalError::NotADirectory(request.bundle.clone()));
    }
    appspec::load(&request.bundle)?;
    Ident::parse("--group", &request.group)?;
    let group_id = Ident::parse("--group", &format!("local-{}", request.group))?;
    let deployment = Deployment {
        deployment_id: new_deployment_id(executor, &group_id)?,
        application_name: request.application.clone(),
        group_name: request.group.clone(),
        group_id,
        bundle_commit: request.commit.clone(),
        file_exists_behavior: None,
    };
    writeln!(
        out,
        "Deployment {} of {} (application {}, group {})",
        deployment.deployment_id,
        request.bundle.display(),
        request.application,
        request.group
    )?;
    let mut run = LocalRun {
        deployment_id: deployment.deployment_id.clone(),
        outcomes: Vec::new(),
        script_log: executor.script_log(&deployment),
    };
    let mut failed = false;
    for event in LifecycleEvent::IN_PLACE {
        let outcome = if failed {
            EventOutcome {
                event,
                status: EventStatus::Skipped,
                diagnostics: Diagnostics::succeeded("an earlier event failed", String::new()),
            }
        } else if event == LifecycleEvent::DownloadBundle {
            executor.stage_directory(&deployment, &request.bundle).await
        } else {
            executor.run_event(&deployment, event).await
        };
        print_outcome(out, &outcome)?;
        failed |= outcome.status == EventStatus::Failed;
        run.outcomes.push(outcome);
    }
    if run.succeeded() {
        executor.record_success(&deployment)?;
        writeln!(
            out,
            "Deployment {} succeeded; it is now the last successful revision of group {} on this host.",
            deployment.deployment_id, request.group
        )?;
    } else {
        let at = run
            .outcomes
            .iter()
            .find(|o| o.status == EventStatus::Failed)
            .map(|o| o.event.name())
            .unwrap_or("?");
        writeln!(
            out,
            "Deployment {} failed at {at}.",
            deployment.deployment_id
        )?;
    }
    if run.script_log.exists() {
        writeln!(out, "Script log: {}", run.script_log.display())?;
    }
    Ok(run)
}

/// `l-` and 16 hex digits from the clock, unused in `group_id`'s state.
fn new_deployment_id(executor: &Executor, group_id: &Ident) -> Result<Ident, StateError> {
    let group = executor.state().group(group_id);
    let mut nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    loop {
        let id = Ident::parse("deployment id", &format!("l-{:016x}", nanos as u64))?;
        if !group.deployment_dir(&id).exists() {
            return Ok(id);
        }
        nanos += 1;
    }
}

/// One line per event; on failure, the code, script, message and log tail.
fn print_outcome(out: &mut dyn Write, outcome: &EventOutcome) -> std::io::Result<()> {
    let d = &outcome.diagnostics;
    let detail = match outcome.status {
        EventStatus::Failed => d.error_code.to_string(),
        _ => d.message.clone(),
    };
    writeln!(
        out,
        "  {:<18} {:<9}  {detail}",
        outcome.event.name(),
        outcome.status.name()
    )?;
    if outcome.status != EventStatus::Failed {
        return Ok(());
    }
    if !d.script_name.is_empty() {
        writeln!(out, "      script:  {}", d.script_name)?;
    }
    writeln!(out, "      message: {}", d.message)?;
    if !d.log.is_empty() {
        writeln!(out, "      log (last 2 KB):")?;
        for line in d.log.lines() {
            writeln!(out, "        {line}")?;
        }
    }
    Ok(())
}

/// The default state directory: `/var/lib/slipway-agent` for root, otherwise
/// `$XDG_STATE_HOME/slipway-agent` or `~/.local/state/slipway-agent`.
pub fn default_state_dir() -> Option<PathBuf> {
    if nix::unistd::Uid::effective().is_root() {
        return Some(PathBuf::from("/var/lib/slipway-agent"));
    }
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    Some(base.join("slipway-agent"))
}
