//! Alarms: what a deployment watches while it runs and bakes. Any alarm in ALARM stops
//! the deployment (and rolls it back when its group says `auto-rollback: [alarm]`).
//!
//! - [`snapshot`]: a group's alarms as a deployment keeps them (JSON in its settings),
//!   so an edit of deploy.yaml does not change what a deployment under way watches.
//! - [`prometheus`]: the PromQL query's URL and the reading of its answer (pure).
//! - [`poll`]: reading every alarm of the running deployments (HTTP, the store's
//!   Alertmanager alerts).
//!
//! A reading is [`Reading::Ok`], [`Reading::Firing`] or [`Reading::Unreadable`];
//! [`verdict`] turns one deployment's readings into the reason to stop it, if any.

pub mod poll;
pub mod prometheus;
pub mod snapshot;

pub use poll::{poll_all, Watch};

/// What reading one alarm found.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Not in ALARM (including "no data").
    Ok,
    /// In ALARM; says why (the value and the threshold, the status, the alert).
    Firing(String),
    /// Its state could not be read (the alarm's source is down or answered nonsense).
    Unreadable(String),
}

/// Why a deployment must stop, given its alarms' readings (name, reading) and whether
/// its group ignores poll failures; `None` when it may go on.
pub fn verdict(readings: &[(String, Reading)], ignore_poll_failure: bool) -> Option<String> {
    let firing: Vec<String> = readings
        .iter()
        .filter_map(|(name, r)| match r {
            Reading::Firing(why) => Some(format!("alarm `{name}` is firing: {why}")),
            _ => None,
        })
        .collect();
    if !firing.is_empty() {
        return Some(firing.join("; "));
    }
    if ignore_poll_failure {
        return None;
    }
    let unreadable: Vec<String> = readings
        .iter()
        .filter_map(|(name, r)| match r {
            Reading::Unreadable(why) => Some(format!(
                "alarm `{name}` could not be read ({why}); set `ignore-alarm-poll-failure: true` on the group to carry on when that happens"
            )),
            _ => None,
        })
        .collect();
    (!unreadable.is_empty()).then(|| unreadable.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, reading: Reading) -> (String, Reading) {
        (name.to_string(), reading)
    }

    #[test]
    fn firing_alarms_stop_and_say_which() {
        let readings = [
            r("health", Reading::Ok),
            r("errors", Reading::Firing("rate = 0.2 (> 0.05)".into())),
            r("latency", Reading::Unreadable("connection refused".into())),
        ];
        let why = verdict(&readings, false).unwrap();
        assert!(
            why.contains("alarm `errors` is firing: rate = 0.2 (> 0.05)"),
            "{why}"
        );
        assert!(!why.contains("health"), "{why}");
        assert_eq!(verdict(&readings, true), Some(why));
    }

    #[test]
    fn unreadable_alarms_stop_unless_ignored() {
        let readings = [
            r("health", Reading::Ok),
            r("errors", Reading::Unreadable("connection refused".into())),
        ];
        let why = verdict(&readings, false).unwrap();
        assert!(why.contains("alarm `errors` could not be read (connection refused)"));
        assert!(why.contains("ignore-alarm-poll-failure"));
        assert_eq!(verdict(&readings, true), None);
        assert_eq!(verdict(&[r("health", Reading::Ok)], false), None);
        assert_eq!(verdict(&[], false), None);
    }
}
