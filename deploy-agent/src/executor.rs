//! Running one lifecycle event of one deployment on this host: what a server command
//! asks for, and what `slipway-agent local` runs event after event.
//!
//! Each call is self-contained: it finds the revision in the state directory and parses
//! its appspec again, so events can run in separate commands and across agent restarts.
//! ApplicationStop and the block-traffic events run the scripts of the group's last
//! successful revision (and are skipped when there is none); the other hooks run the
//! deployment's own revision. Nothing here fails with an `Err`: every problem becomes a
//! failed [`EventOutcome`] with an error code and a message saying what to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::appspec::{self, FileExistsBehavior};
use crate::bundle::{self, ZipLimits};
use crate::diagnostics::{Diagnostics, ErrorCode};
use crate::event::{LifecycleEvent, RevisionSource};
use crate::install::{self, InstallRequest};
use crate::paths::HostRoot;
use crate::script::{self, ScriptContext, ScriptOptions};
use crate::scriptlog::ScriptLog;
use crate::state::{GroupState, Ident, StateDir, StateError};

/// The deployment an event belongs to (what the server sends with each command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// `DEPLOYMENT_ID`; also the name of its directory in the state directory.
    pub deployment_id: Ident,
    /// `APPLICATION_NAME`.
    pub application_name: String,
    /// `DEPLOYMENT_GROUP_NAME`.
    pub group_name: String,
    /// `DEPLOYMENT_GROUP_ID`; the state (cleanup list, last success) is kept per group id.
    pub group_id: Ident,
    /// `BUNDLE_COMMIT`: the git commit the revision was built from (may be empty).
    pub bundle_commit: String,
    /// The deployment's `file_exists_behavior`, used when the appspec does not say.
    pub file_exists_behavior: Option<FileExistsBehavior>,
}

/// How an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EventStatus {
    /// It ran and succeeded (or had nothing to do).
    Succeeded,
    /// It failed; the diagnostics say why.
    Failed,
    /// It did not run (ApplicationStop on a group's first deployment, traffic events).
    Skipped,
}

impl EventStatus {
    /// The status as shown to people.
    pub fn name(self) -> &'static str {
        match self {
            EventStatus::Succeeded => "Succeeded",
            EventStatus::Failed => "Failed",
            EventStatus::Skipped => "Skipped",
        }
    }
}

/// The result of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    /// The event.
    pub event: LifecycleEvent,
    /// How it ended.
    pub status: EventStatus,
    /// What to report.
    pub diagnostics: Diagnostics,
}

impl EventOutcome {
    /// Succeeded or Failed, as `diagnostics`' error code says.
    pub fn new(event: LifecycleEvent, diagnostics: Diagnostics) -> EventOutcome {
        let status = if diagnostics.error_code.is_success() {
            EventStatus::Succeeded
        } else {
            EventStatus::Failed
        };
        EventOutcome {
            event,
            status,
            diagnostics,
        }
    }

    fn skipped(event: LifecycleEvent, message: impl Into<String>) -> EventOutcome {
        EventOutcome {
            event,
            status: EventStatus::Skipped,
            diagnostics: Diagnostics::succeeded(message, String::new()),
        }
    }
}

/// Runs lifecycle events on this host.
#[derive(Debug, Clone)]
pub struct Executor {
    root: HostRoot,
    state: StateDir,
    options: ScriptOptions,
}

impl Executor {
    /// An executor placing files under `root` and keeping its state in `state`.
    pub fn new(root: HostRoot, state: StateDir, options: ScriptOptions) -> Executor {
        Executor {
            root,
            state,
            options,
        }
    }

    /// Where host paths go.
    pub fn root(&self) -> &HostRoot {
        &self.root
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The state of `deployment`'s group.
    pub fn group(&self, deployment: &Deployment) -> GroupState {
        self.state.group(&deployment.group_id)
    }

    /// The script log of `deployment`.
    pub fn script_log(&self, deployment: &Deployment) -> PathBuf {
        self.group(deployment).script_log(&deployment.deployment_id)
    }

    /// DownloadBundle from a directory on this host: copies `bundle` into the
    /// deployment's archive.
    pub async fn stage_directory(&self, deployment: &Deployment, bundle: &Path) -> EventOutcome {
        let event = LifecycleEvent::DownloadBundle;
        let group = self.group(deployment);
        if let Err(e) = group.create_deployment(&deployment.deployment_id) {
            return EventOutcome::new(event, Diagnostics::agent_error(e.to_string()));
        }
        let archive = group.archive(&deployment.deployment_id);
        let bundle = bundle.to_path_buf();
        let staged =
            tokio::task::spawn_blocking(move || bundle::stage_directory(&bundle, &archive)).await;
        let diagnostics = match staged {
            Ok(Ok(n)) => Diagnostics::succeeded(
                format!("{} staged", count(n, "file", "files")),
                String::new(),
            ),
            Ok(Err(e)) => Diagnostics::agent_error(e.to_string()),
            Err(e) => Diagnostics::agent_error(format!("internal error staging the bundle: {e}")),
        };
        EventOutcome::new(event, diagnostics)
    }

    /// DownloadBundle from the server: unpacks the zip file `zip` (already downloaded)
    /// into the deployment's archive after checking that its SHA-256 is `sha256`.
    pub async fn stage_zip(
        &self,
        deployment: &Deployment,
        zip: &Path,
        sha256: &str,
        limits: ZipLimits,
    ) -> EventOutcome {
        let event = LifecycleEvent::DownloadBundle;
        let group = self.group(deployment);
        if let Err(e) = group.create_deployment(&deployment.deployment_id) {
            return EventOutcome::new(event, Diagnostics::agent_error(e.to_string()));
        }
        let archive = group.archive(&deployment.deployment_id);
        let (zip, sha256) = (zip.to_path_buf(), sha256.to_string());
        let staged = tokio::task::spawn_blocking(move || {
            bundle::stage_zip(&zip, &sha256, &archive, &limits)
        })
        .await;
        let diagnostics = match staged {
            Ok(Ok(n)) => Diagnostics::succeeded(
                format!(
                    "{} unpacked from the bundle",
                    count(n, "file or symlink", "files and symlinks")
                ),
                String::new(),
            ),
            Ok(Err(e)) => Diagnostics::agent_error(e.to_string()),
            Err(e) => Diagnostics::agent_error(format!("internal error unpacking the bundle: {e}")),
        };
        EventOutcome::new(event, diagnostics)
    }

    /// Runs `event` of `deployment`.
    pub async fn run_event(&self, deployment: &Deployment, event: LifecycleEvent) -> EventOutcome {
        let archive = self.group(deployment).archive(&deployment.deployment_id);
        match event {
            LifecycleEvent::DownloadBundle if archive.is_dir() => EventOutcome::new(
                event,
                Diagnostics::succeeded("the bundle is already staged", String::new()),
            ),
            LifecycleEvent::DownloadBundle => EventOutcome::new(
                event,
                Diagnostics::agent_error(format!(
                    "no bundle is staged for deployment {}; stage it first",
                    deployment.deployment_id
                )),
            ),
            LifecycleEvent::BlockTraffic | LifecycleEvent::AllowTraffic => EventOutcome::skipped(
                event,
                "traffic is switched by the load balancer, not on the host",
            ),
            LifecycleEvent::Install => self.install(deployment, &archive).await,
            _ => self.run_hooks(deployment, event).await,
        }
    }

    /// Records `deployment` as its group's last successful one (whose ApplicationStop the
    /// next deployment runs) and removes old archives.
    pub fn record_success(&self, deployment: &Deployment) -> Result<(), StateError> {
        let group = self.group(deployment);
        group.record_last_successful(&deployment.deployment_id)?;
        group.prune(&deployment.deployment_id);
        Ok(())
    }

    async fn install(&self, deployment: &Deployment, archive: &Path) -> EventOutcome {
        let event = LifecycleEvent::Install;
        if !archive.is_dir() {
            return EventOutcome::new(event, missing_bundle(deployment));
        }
        let spec = match appspec::load(archive) {
            Ok(spec) => spec,
            Err(e) => return EventOutcome::new(event, Diagnostics::agent_error(e.to_string())),
        };
        let archive = archive.to_path_buf();
        let root = self.root.clone();
        let cleanup = self.group(deployment).cleanup_file();
        let behavior = deployment.file_exists_behavior;
        let done = tokio::task::spawn_blocking(move || {
            install::install(InstallRequest {
                spec: &spec,
                archive: &archive,
                root: &root,
                cleanup_file: &cleanup,
                file_exists_behavior: behavior,
            })
        })
        .await;
        let diagnostics = match done {
            Ok(Ok(report)) => {
                let mut message = format!(
                    "{} installed, {} removed",
                    count(
                        report.files + report.directories,
                        "file or directory",
                        "files and directories"
                    ),
                    count(
                        report.removed,
                        "path of the previous deployment",
                        "paths of the previous deployment"
                    )
                );
                if !report.overwritten.is_empty() {
                    message += &format!(
                        ", {} overwritten",
                        count(report.overwritten.len(), "existing file", "existing files")
                    );
                }
                if !report.retained.is_empty() {
                    message += &format!(
                        ", {} retained",
                        count(report.retained.len(), "existing file", "existing files")
                    );
                }
                Diagnostics::succeeded(message, String::new())
            }
            Ok(Err(e)) => Diagnostics::agent_error(e.to_string()),
            Err(e) => Diagnostics::agent_error(format!("internal error during Install: {e}")),
        };
        EventOutcome::new(event, diagnostics)
    }

    async fn run_hooks(&self, deployment: &Deployment, event: LifecycleEvent) -> EventOutcome {
        let group = self.group(deployment);
        let revision = match event.revision_source() {
            RevisionSource::Current => deployment.deployment_id.clone(),
            RevisionSource::LastSuccessful => match group.last_successful() {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return EventOutcome::skipped(
                        event,
                        format!(
                            "no earlier successful deployment of group {} on this host",
                            deployment.group_name
                        ),
                    )
                }
                Err(e) => return EventOutcome::new(event, Diagnostics::agent_error(e.to_string())),
            },
        };
        let archive = group.archive(&revision);
        if !archive.is_dir() {
            return EventOutcome::new(event, missing_bundle(deployment));
        }
        let spec = match appspec::load(&archive) {
            Ok(spec) => spec,
            Err(e) => return EventOutcome::new(event, Diagnostics::agent_error(e.to_string())),
        };
        let scripts = spec.scripts(event);
        if scripts.is_empty() {
            return EventOutcome::new(event, Diagnostics::succeeded("no scripts", String::new()));
        }
        let log_path = group.script_log(&deployment.deployment_id);
        let log = match ScriptLog::open(&log_path) {
            Ok(log) => Arc::new(log),
            Err(e) => {
                return EventOutcome::new(
                    event,
                    Diagnostics::agent_error(format!(
                        "cannot open the script log {}: {e}; check that the state directory is writable",
                        log_path.display()
                    )),
                )
            }
        };
        log.line(&format!("LifecycleEvent - {event}"));
        let env = self.script_env(deployment, event);
        let ctx = ScriptContext {
            bundle_root: &archive,
            env: &env,
            log: &log,
            options: &self.options,
        };
        for hook in scripts {
            let result = script::run_script(ctx, hook).await;
            if result.code != ErrorCode::Succeeded {
                return EventOutcome::new(
                    event,
                    Diagnostics {
                        error_code: result.code,
                        script_name: hook.location.to_string(),
                        message: result.message,
                        log: log.tail(),
                    },
                );
            }
        }
        let message = match scripts.len() {
            1 => "1 script succeeded".to_string(),
            n => format!("{n} scripts succeeded"),
        };
        EventOutcome::new(event, Diagnostics::succeeded(message, log.tail()))
    }

    /// The variables every hook script gets (PATH, HOME and USER are added per script).
    fn script_env(&self, deployment: &Deployment, event: LifecycleEvent) -> Vec<(String, String)> {
        [
            ("LIFECYCLE_EVENT", event.name().to_string()),
            ("DEPLOYMENT_ID", deployment.deployment_id.to_string()),
            ("APPLICATION_NAME", deployment.application_name.clone()),
            ("DEPLOYMENT_GROUP_NAME", deployment.group_name.clone()),
            ("DEPLOYMENT_GROUP_ID", deployment.group_id.to_string()),
            ("BUNDLE_COMMIT", deployment.bundle_commit.clone()),
            ("SLIPWAY_AGENT_ROOT", self.root.script_prefix()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// `1 file`, `2 files`.
fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn missing_bundle(deployment: &Deployment) -> Diagnostics {
    Diagnostics::agent_error(format!(
        "the bundle of deployment {} is not on this host; DownloadBundle must run first",
        deployment.deployment_id
    ))
}
