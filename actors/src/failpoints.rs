//! Fault injection for tests: `SLIPWAY_FAILPOINTS=name,name` arms the named points.
//! Production code asks at a few places where a crash must not lose anything; without
//! the variable nothing ever fires. The points:
//!
//! - `rules-panic`: the rules engine panics once in its next batch (it is restarted).
//! - `rules-hold`: the rules engine processes nothing in this process (events pile up
//!   behind its cursor, as if the server died before getting to them).
//! - `notify-abort-after-send`: the process aborts right after a delivery succeeded and
//!   before it is recorded (the message will be sent again, with the same Message-ID).
//! - `reaper-before-delete`: the reaper waits 3 s between judging branches stale and
//!   deleting them (so a test can push meanwhile).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The failpoints armed for this process.
#[derive(Clone, Default)]
pub struct Failpoints {
    armed: Arc<Mutex<HashSet<String>>>,
}

impl Failpoints {
    /// Reads `SLIPWAY_FAILPOINTS`.
    pub fn from_env() -> Failpoints {
        let armed = std::env::var("SLIPWAY_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<HashSet<_>>();
        if !armed.is_empty() {
            tracing::warn!(?armed, "failpoints armed (testing only)");
        }
        Failpoints {
            armed: Arc::new(Mutex::new(armed)),
        }
    }

    /// Whether a point is armed, without disarming it (for points that hold).
    pub fn armed(&self, name: &str) -> bool {
        self.armed.lock().map(|a| a.contains(name)).unwrap_or(false)
    }

    /// True once for an armed point, then never again.
    pub fn fire(&self, name: &str) -> bool {
        self.armed
            .lock()
            .map(|mut a| a.remove(name))
            .unwrap_or(false)
    }
}
