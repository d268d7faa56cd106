//! What the agent reports about one lifecycle event: an error code, the script it was
//! about, a message for people and the tail of the scripts' output.
//!
//! The codes and the JSON shape are CodeDeploy's (`{"error_code", "script_name",
//! "message", "log"}`), so the numbers mean the same thing to anyone who knows them.

use std::fmt;

/// How a lifecycle event ended on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Every script (or the agent's own step) succeeded.
    Succeeded,
    /// A hook script is not in the revision.
    ScriptMissing,
    /// A hook script could not be run (not made executable, no such `runas` user, ...).
    ScriptExecutability,
    /// A hook script ran past its timeout and was killed with its process group.
    ScriptTimedOut,
    /// A hook script exited with a non-zero status or was killed by a signal.
    ScriptFailed,
    /// Anything else (the agent's own steps: installing files, a missing bundle, ...).
    UnknownError,
    /// A script exited, but something it started kept its stdout or stderr open.
    OutputsLeftOpen,
    /// The agent restarted while the event ran; reported for it on restart.
    FailedAfterRestart,
}

impl ErrorCode {
    /// Every code, by number.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::Succeeded,
        ErrorCode::ScriptMissing,
        ErrorCode::ScriptExecutability,
        ErrorCode::ScriptTimedOut,
        ErrorCode::ScriptFailed,
        ErrorCode::UnknownError,
        ErrorCode::OutputsLeftOpen,
        ErrorCode::FailedAfterRestart,
    ];

    /// The number on the wire.
    pub fn number(self) -> u8 {
        match self {
            ErrorCode::Succeeded => 0,
            ErrorCode::ScriptMissing => 1,
            ErrorCode::ScriptExecutability => 2,
            ErrorCode::ScriptTimedOut => 3,
            ErrorCode::ScriptFailed => 4,
            ErrorCode::UnknownError => 5,
            ErrorCode::OutputsLeftOpen => 6,
            ErrorCode::FailedAfterRestart => 7,
        }
    }

    /// The code for `number`, if there is one.
    pub fn from_number(number: u8) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.number() == number)
    }

    /// CodeDeploy's name for the code (`SCRIPT_FAILED`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Succeeded => "SUCCEEDED",
            ErrorCode::ScriptMissing => "SCRIPT_MISSING",
            ErrorCode::ScriptExecutability => "SCRIPT_EXECUTABILITY",
            ErrorCode::ScriptTimedOut => "SCRIPT_TIMED_OUT",
            ErrorCode::ScriptFailed => "SCRIPT_FAILED",
            ErrorCode::UnknownError => "UNKNOWN_ERROR",
            ErrorCode::OutputsLeftOpen => "OUTPUTS_LEFT_OPEN",
            ErrorCode::FailedAfterRestart => "FAILED_AFTER_RESTART",
        }
    }

    /// Whether the event succeeded.
    pub fn is_success(self) -> bool {
        self == ErrorCode::Succeeded
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let number = u8::deserialize(d)?;
        ErrorCode::from_number(number).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown error code {number}; the codes are 0 to 7"))
        })
    }
}

/// The report for one lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostics {
    /// How it ended.
    pub error_code: ErrorCode,
    /// The script it is about (its `location`), or empty for the agent's own steps.
    pub script_name: String,
    /// What happened, for people; on failure, what was wrong.
    pub message: String,
    /// The last [`LOG_TAIL_BYTES`] of the event's script output.
    pub log: String,
}

/// How much of an event's output the report carries.
pub const LOG_TAIL_BYTES: usize = 2048;

impl Diagnostics {
    /// A success with `message`.
    pub fn succeeded(message: impl Into<String>, log: String) -> Diagnostics {
        Diagnostics {
            error_code: ErrorCode::Succeeded,
            script_name: String::new(),
            message: message.into(),
            log,
        }
    }

    /// A failure of the agent's own work (no script involved).
    pub fn agent_error(message: impl Into<String>) -> Diagnostics {
        Diagnostics {
            error_code: ErrorCode::UnknownError,
            script_name: String::new(),
            message: message.into(),
            log: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_codedeploys_numbers() {
        let numbers: Vec<u8> = ErrorCode::ALL.iter().map(|c| c.number()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(ErrorCode::from_number(6), Some(ErrorCode::OutputsLeftOpen));
        assert_eq!(ErrorCode::from_number(8), None);
        assert_eq!(
            ErrorCode::ScriptTimedOut.to_string(),
            "SCRIPT_TIMED_OUT (3)"
        );
    }

    #[test]
    fn json_shape_is_codedeploys() {
        let d = Diagnostics {
            error_code: ErrorCode::ScriptFailed,
            script_name: "scripts/start.sh".into(),
            message: "failed with exit code 1".into(),
            log: "[stdout]hi\n".into(),
        };
        let json = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"error_code": 4, "script_name": "scripts/start.sh",
                "message": "failed with exit code 1", "log": "[stdout]hi\n"})
        );
        let back: Diagnostics = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, d);
        let bad = serde_json::from_str::<ErrorCode>("9").unwrap_err();
        assert!(bad.to_string().contains("unknown error code 9"), "{bad}");
    }
}
