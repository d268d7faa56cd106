//! Fault injection for tests: `SLIPWAY_FAILPOINTS=name,name` makes the named points
//! fail once. Production code asks [`Failpoints::fire`] at a few places where a crash
//! must not lose anything; without the variable nothing ever fires.

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

    /// True once for an armed point, then never again.
    pub fn fire(&self, name: &str) -> bool {
        self.armed
            .lock()
            .map(|mut a| a.remove(name))
            .unwrap_or(false)
    }
}
