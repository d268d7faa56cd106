//! The lifecycle events of a deployment on one host, named exactly as CodeDeploy names them.
//!
//! The server sequences the events; the agent runs one at a time. Nine of them run the
//! appspec's hook scripts; the other four are the agent's own work (`DownloadBundle`,
//! `Install`) or the load balancer's (`BlockTraffic`, `AllowTraffic`).

use std::fmt;
use std::str::FromStr;

/// One lifecycle event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum LifecycleEvent {
    /// Stops the application; runs the last successful revision's scripts.
    ApplicationStop,
    /// The agent fetches and unpacks the revision (not scriptable).
    DownloadBundle,
    /// Before the files are copied; the new revision's scripts.
    BeforeInstall,
    /// The agent copies the appspec's `files` (not scriptable).
    Install,
    /// After the files are copied.
    AfterInstall,
    /// Starts the application.
    ApplicationStart,
    /// Checks that the application works.
    ValidateService,
    /// Before the host is taken out of the load balancer; last successful revision.
    BeforeBlockTraffic,
    /// The host is taken out of the load balancer (not scriptable).
    BlockTraffic,
    /// After the host is taken out of the load balancer; last successful revision.
    AfterBlockTraffic,
    /// Before the host is put back into the load balancer.
    BeforeAllowTraffic,
    /// The host is put back into the load balancer (not scriptable).
    AllowTraffic,
    /// After the host is put back into the load balancer.
    AfterAllowTraffic,
}

/// Whose scripts an event runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionSource {
    /// The revision being deployed.
    Current,
    /// The last revision deployed successfully to this deployment group on this host
    /// (the event is skipped when there is none).
    LastSuccessful,
}

impl LifecycleEvent {
    /// Every event, in the in-place order with a load balancer.
    pub const ALL: [LifecycleEvent; 13] = [
        LifecycleEvent::BeforeBlockTraffic,
        LifecycleEvent::BlockTraffic,
        LifecycleEvent::AfterBlockTraffic,
        LifecycleEvent::ApplicationStop,
        LifecycleEvent::DownloadBundle,
        LifecycleEvent::BeforeInstall,
        LifecycleEvent::Install,
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ApplicationStart,
        LifecycleEvent::ValidateService,
        LifecycleEvent::BeforeAllowTraffic,
        LifecycleEvent::AllowTraffic,
        LifecycleEvent::AfterAllowTraffic,
    ];

    /// The events an appspec may give hook scripts, in the order a deployment with a load
    /// balancer runs them.
    pub const SCRIPTABLE: [LifecycleEvent; 9] = [
        LifecycleEvent::BeforeBlockTraffic,
        LifecycleEvent::AfterBlockTraffic,
        LifecycleEvent::ApplicationStop,
        LifecycleEvent::BeforeInstall,
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ApplicationStart,
        LifecycleEvent::ValidateService,
        LifecycleEvent::BeforeAllowTraffic,
        LifecycleEvent::AfterAllowTraffic,
    ];

    /// An in-place deployment without a load balancer, in order.
    pub const IN_PLACE: [LifecycleEvent; 7] = [
        LifecycleEvent::ApplicationStop,
        LifecycleEvent::DownloadBundle,
        LifecycleEvent::BeforeInstall,
        LifecycleEvent::Install,
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ApplicationStart,
        LifecycleEvent::ValidateService,
    ];

    /// The event's name, as written in appspec.yml and in `LIFECYCLE_EVENT`.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleEvent::ApplicationStop => "ApplicationStop",
            LifecycleEvent::DownloadBundle => "DownloadBundle",
            LifecycleEvent::BeforeInstall => "BeforeInstall",
            LifecycleEvent::Install => "Install",
            LifecycleEvent::AfterInstall => "AfterInstall",
            LifecycleEvent::ApplicationStart => "ApplicationStart",
            LifecycleEvent::ValidateService => "ValidateService",
            LifecycleEvent::BeforeBlockTraffic => "BeforeBlockTraffic",
            LifecycleEvent::BlockTraffic => "BlockTraffic",
            LifecycleEvent::AfterBlockTraffic => "AfterBlockTraffic",
            LifecycleEvent::BeforeAllowTraffic => "BeforeAllowTraffic",
            LifecycleEvent::AllowTraffic => "AllowTraffic",
            LifecycleEvent::AfterAllowTraffic => "AfterAllowTraffic",
        }
    }

    /// Whether an appspec may give this event hook scripts.
    pub fn is_scriptable(self) -> bool {
        LifecycleEvent::SCRIPTABLE.contains(&self)
    }

    /// Whose scripts the event runs: the stop and block-traffic events undo what the
    /// *previous* revision set up, so they run its scripts.
    pub fn revision_source(self) -> RevisionSource {
        match self {
            LifecycleEvent::ApplicationStop
            | LifecycleEvent::BeforeBlockTraffic
            | LifecycleEvent::AfterBlockTraffic => RevisionSource::LastSuccessful,
            _ => RevisionSource::Current,
        }
    }

    /// The scriptable event names, comma-separated, for messages.
    pub fn scriptable_names() -> String {
        LifecycleEvent::SCRIPTABLE
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a lifecycle event; the events are: {names}", names = all_names())]
pub struct UnknownEvent(pub String);

fn all_names() -> String {
    LifecycleEvent::ALL
        .iter()
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for LifecycleEvent {
    type Err = UnknownEvent;

    /// Exact, case-sensitive names, as CodeDeploy reads them.
    fn from_str(s: &str) -> Result<LifecycleEvent, UnknownEvent> {
        LifecycleEvent::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| UnknownEvent(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for event in LifecycleEvent::ALL {
            assert_eq!(event.name().parse::<LifecycleEvent>(), Ok(event));
            let json = serde_json::to_string(&event).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", event.name()));
        }
        let err = "applicationstart".parse::<LifecycleEvent>().unwrap_err();
        assert!(err.to_string().contains("ApplicationStart"), "{err}");
    }

    #[test]
    fn stop_and_block_traffic_run_the_previous_revision() {
        let previous: Vec<_> = LifecycleEvent::ALL
            .into_iter()
            .filter(|e| e.revision_source() == RevisionSource::LastSuccessful)
            .collect();
        assert_eq!(
            previous,
            [
                LifecycleEvent::BeforeBlockTraffic,
                LifecycleEvent::AfterBlockTraffic,
                LifecycleEvent::ApplicationStop
            ]
        );
        assert!(!LifecycleEvent::Install.is_scriptable());
        assert!(LifecycleEvent::ValidateService.is_scriptable());
    }
}
