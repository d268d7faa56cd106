//! The in-progress tracking file: which server command the agent is carrying out, so
//! that an agent that stopped in the middle (crash, reboot, `systemctl stop`) reports it
//! when it starts again instead of leaving the server waiting.
//!
//! `STATE/in-progress.json` is written before the command is acknowledged, gets the
//! result once the event has ended, and is removed once the server took the result. On
//! start, a file without a result is reported as FAILED with FAILED_AFTER_RESTART (7);
//! one with a result is reported with it (the agent stopped before the server took it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostics, ErrorCode};
use crate::server::{Completion, CompletionStatus};
use crate::state::{self, StateError};

/// The tracking file's name in the state directory.
pub const TRACKING_FILE: &str = "in-progress.json";

/// The command being carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    /// The server's command id.
    pub command_id: i64,
    /// The server's deployment id.
    pub deployment_id: i64,
    /// The lifecycle event, as the server named it.
    pub event: String,
    /// How it ended, once it has (until the server takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Completion>,
}

impl InProgress {
    /// A command just received.
    pub fn new(command_id: i64, deployment_id: i64, event: &str) -> InProgress {
        InProgress {
            command_id,
            deployment_id,
            event: event.to_string(),
            result: None,
        }
    }

    /// Where it is kept under the state directory `state`.
    pub fn path(state: &Path) -> PathBuf {
        state.join(TRACKING_FILE)
    }

    /// Reads it; `None` when there is none.
    pub fn load(state: &Path) -> Result<Option<InProgress>, StateError> {
        let path = InProgress::path(state);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state::io("read", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Damaged {
                path,
                message: e.to_string(),
            })
    }

    /// Writes it (atomically) into `state`. Without a result it is not forced to disk:
    /// it is written just before the acknowledgement, on the path of every command, and
    /// it only has to survive the agent's crash. If a power loss takes it, the server
    /// fails the command when the agent polls again (it never polls while running one).
    pub fn save(&self, state: &Path) -> Result<(), StateError> {
        let path = InProgress::path(state);
        let text = serde_json::to_vec_pretty(self).map_err(|e| StateError::Damaged {
            path: path.clone(),
            message: e.to_string(),
        })?;
        state::write_replacing(&path, &text, self.result.is_some())
    }

    /// Removes the file from `state` (nothing there is fine).
    pub fn remove(state: &Path) -> Result<(), StateError> {
        let path = InProgress::path(state);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state::io("remove", &path)(e)),
        }
    }

    /// What to report for it: its result if it has one; otherwise (the agent stopped
    /// while it ran) FAILED with FAILED_AFTER_RESTART.
    pub fn completion(&self) -> Completion {
        if let Some(result) = &self.result {
            return result.clone();
        }
        Completion {
            status: CompletionStatus::Failed,
            diagnostics: Diagnostics {
                error_code: ErrorCode::FailedAfterRestart,
                script_name: String::new(),
                message: format!(
                    "the agent stopped while it ran {} of this deployment (command {}), so how it ended is unknown; check the host (the agent's state directory has the script log) and deploy again",
                    self.event, self.command_id
                ),
                log: String::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_a_restart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(InProgress::load(dir.path()).ok(), Some(None));
        let mut tracking = InProgress::new(17, 5, "BeforeInstall");
        tracking.save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(InProgress::path(dir.path())).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"command_id": 17, "deployment_id": 5, "event": "BeforeInstall"})
        );
        let back = InProgress::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.as_ref(), Some(&tracking));

        let report = tracking.completion();
        assert_eq!(report.status, CompletionStatus::Failed);
        assert_eq!(report.diagnostics.error_code, ErrorCode::FailedAfterRestart);
        assert!(
            report
                .diagnostics
                .message
                .contains("agent stopped while it ran BeforeInstall"),
            "{}",
            report.diagnostics.message
        );

        let done = Completion {
            status: CompletionStatus::Succeeded,
            diagnostics: Diagnostics::succeeded("1 script succeeded", "[stdout]hi\n".into()),
        };
        tracking.result = Some(done.clone());
        tracking.save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let back = InProgress::load(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("saved"));
        assert_eq!(back.completion(), done);

        InProgress::remove(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        InProgress::remove(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(InProgress::load(dir.path()).ok(), Some(None));

        std::fs::write(InProgress::path(dir.path()), "{").unwrap_or_else(|e| panic!("{e}"));
        let damaged = InProgress::load(dir.path()).unwrap_err();
        assert!(damaged.to_string().contains("is damaged"), "{damaged}");
    }
}
