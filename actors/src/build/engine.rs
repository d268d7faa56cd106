//! Running a buildspec: phases, transitions, statuses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::shell::{BuildShell, CommandOutcome, Executor, Output};
use super::spec::{BuildSpec, OnFailure, PHASES};

/// A build's (or a phase's) final status, as CodeBuild names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildStatus {
    /// Everything passed.
    Succeeded,
    /// A command failed.
    Failed,
    /// slipway itself could not run something (not the build's fault).
    Fault,
    /// The build ran past its timeout.
    TimedOut,
    /// Someone stopped it.
    Stopped,
}

impl BuildStatus {
    /// `SUCCEEDED`, `FAILED`, …
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Succeeded => "SUCCEEDED",
            BuildStatus::Failed => "FAILED",
            BuildStatus::Fault => "FAULT",
            BuildStatus::TimedOut => "TIMED_OUT",
            BuildStatus::Stopped => "STOPPED",
        }
    }
}

/// One phase's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `INSTALL`, `PRE_BUILD`, `BUILD`, `POST_BUILD`.
    pub name: String,
    /// How it ended.
    pub status: BuildStatus,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// The build's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Final status.
    pub status: BuildStatus,
    /// The phases that ran, in order.
    pub phases: Vec<PhaseReport>,
    /// `env.exported-variables` with their final values.
    pub exported: Vec<(String, String)>,
    /// Why the build faulted, if it did.
    pub fault: Option<String>,
}

/// Where log lines go (already masked).
pub trait LogSink: Send {
    /// One line of output or a marker.
    fn line(&mut self, text: &str);
}

/// Everything about one build that is not in the buildspec.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The checked-out source: where commands start.
    pub src_dir: PathBuf,
    /// A scratch directory for the executor's state (not inside `src_dir`).
    pub state_dir: PathBuf,
    /// Variables set for every command on top of the buildspec's `env.variables`:
    /// `CODEBUILD_*`, `SLIPWAY_*`, resolved parameters, overrides (later ones win).
    pub env: Vec<(String, String)>,
    /// Values to mask in every log line.
    pub secrets: Vec<String>,
    /// The whole build's time limit.
    pub timeout: Duration,
    /// Where the commands run (and as whom by default).
    pub executor: Executor,
}

/// Replaces every secret value in `line` with `***`.
pub fn mask(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

struct Masked<'a> {
    sink: &'a mut dyn LogSink,
    secrets: &'a [String],
}

impl Masked<'_> {
    fn line(&mut self, text: &str) {
        let masked = mask(text, self.secrets);
        self.sink.line(&masked);
    }
}

/// Runs `spec` in `ctx`, writing the log to `sink`; `stop` stops it.
pub async fn run_build(
    spec: &BuildSpec,
    ctx: &BuildContext,
    sink: &mut dyn LogSink,
    stop: CancellationToken,
) -> BuildReport {
    let mut log = Masked {
        sink,
        secrets: &ctx.secrets,
    };
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    // The buildspec's own variables come first: what the server sets wins (as in
    // CodeBuild, where the project and start-build overrides beat the buildspec).
    let env: Vec<(String, String)> = spec
        .env
        .variables
        .iter()
        .cloned()
        .chain(ctx.env.iter().cloned())
        .collect();
    let mut shell = match BuildShell::prepare(
        spec.env.shell,
        &ctx.src_dir,
        &ctx.state_dir,
        &env,
        ctx.executor.clone(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            log.line(&format!("[slipway] cannot prepare the build shell: {e}"));
            return BuildReport {
                status: BuildStatus::Fault,
                phases: Vec::new(),
                exported: Vec::new(),
                fault: Some(e),
            };
        }
    };
    let mut status = BuildStatus::Succeeded;
    let mut phases = Vec::new();
    let mut fault = None;
    'phases: for name in PHASES {
        let Some(phase) = spec.phases.get(name) else {
            continue;
        };
        let upper = name.to_uppercase();
        log.line(&format!("[slipway] Entering phase {upper}"));
        let started = Instant::now();
        let succeeding = if status == BuildStatus::Succeeded {
            "1"
        } else {
            "0"
        };
        let mut phase_status = BuildStatus::Succeeded;
        // A phase's `run-as` beats the buildspec's.
        let user = phase.run_as.as_deref().or(spec.run_as.as_deref());
        // `commands`, stopping at the first failure, then `finally`, stopping likewise.
        for list in [&phase.commands, &phase.finally] {
            if list.is_empty() {
                continue;
            }
            let (at, outcome) = shell
                .run_list(
                    list,
                    succeeding,
                    user,
                    &mut |o| match o {
                        Output::Start(i) => {
                            log.line(&format!("[slipway] Running command {}", list[i]))
                        }
                        Output::Line(l) => log.line(l),
                    },
                    &stop,
                    deadline,
                )
                .await;
            match outcome {
                CommandOutcome::Exit(0) => {}
                CommandOutcome::Exit(code) => {
                    log.line(&format!(
                        "[slipway] Command did not exit successfully {} exit status {code}",
                        list[at]
                    ));
                    phase_status = BuildStatus::Failed;
                }
                CommandOutcome::TimedOut => {
                    log.line("[slipway] Build timed out; its processes were killed");
                    phase_status = BuildStatus::TimedOut;
                }
                CommandOutcome::Stopped => {
                    log.line("[slipway] Build stopped; its processes were killed");
                    phase_status = BuildStatus::Stopped;
                }
                CommandOutcome::Fault(e) => {
                    log.line(&format!("[slipway] Cannot run the command: {e}"));
                    fault = Some(e);
                    phase_status = BuildStatus::Fault;
                }
            }
            if matches!(
                phase_status,
                BuildStatus::TimedOut | BuildStatus::Stopped | BuildStatus::Fault
            ) {
                break;
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        log.line(&format!(
            "[slipway] Phase complete: {upper} State: {}",
            phase_status.as_str()
        ));
        phases.push(PhaseReport {
            name: upper,
            status: phase_status,
            duration_ms,
        });
        match phase_status {
            BuildStatus::Succeeded => {}
            BuildStatus::TimedOut | BuildStatus::Stopped | BuildStatus::Fault => {
                status = phase_status;
                break 'phases;
            }
            BuildStatus::Failed => {
                status = BuildStatus::Failed;
                let go_on = match phase.on_failure {
                    Some(OnFailure::Continue) => true,
                    Some(OnFailure::Abort) => false,
                    // CodeBuild: install and pre_build failures go to finalizing; a
                    // failed build still runs post_build.
                    None => matches!(name, "build" | "post_build"),
                };
                if !go_on {
                    log.line("[slipway] Phase failed; going to finalizing");
                    break 'phases;
                }
            }
        }
    }
    let exported = if spec.env.exported_variables.is_empty() {
        Vec::new()
    } else {
        match shell.final_env(&spec.env.exported_variables).await {
            Ok(values) => values,
            Err(e) => {
                log.line(&format!(
                    "[slipway] cannot read the exported variables: {e}"
                ));
                Vec::new()
            }
        }
    };
    shell.close().await;
    BuildReport {
        status,
        phases,
        exported,
        fault,
    }
}
