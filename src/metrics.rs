//! Prometheus metrics, registered in one registry that is passed around (never global).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric slipway exports, named `slipway_<subsystem>_<what>_<unit>`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// SSH connections open now.
    pub ssh_connections_in_flight: IntGauge,
    /// SSH sessions (channels) open now.
    pub ssh_sessions_in_flight: IntGauge,
    /// How long SSH connections last.
    pub ssh_connection_duration_seconds: HistogramVec,
    /// How long SSH sessions (one command each) last.
    pub ssh_session_duration_seconds: HistogramVec,
    /// Authentication attempts by method and result.
    pub ssh_auth_attempts_total: IntCounterVec,
    /// Connections or sessions refused by a limit, by reason.
    pub ssh_refused_total: IntCounterVec,
    /// Git operations by service and result.
    pub git_operations_total: IntCounterVec,
    /// Git operation durations by service.
    pub git_operation_duration_seconds: HistogramVec,
    /// Ref updates by decision.
    pub ref_updates_total: IntCounterVec,
    /// Time the server takes to decide a pre-receive request.
    pub hook_decision_duration_seconds: HistogramVec,
    /// Hook requests refused before a decision (bad token, malformed), by reason.
    pub hook_requests_rejected_total: IntCounterVec,
    /// Admin commands by command and result.
    pub ssh_commands_total: IntCounterVec,
    /// Admin configuration reloads by result.
    pub config_reloads_total: IntCounterVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let long = vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0,
        ];
        let short = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        Metrics {
            ssh_connections_in_flight: gauge(
                "slipway_ssh_connections_in_flight",
                "SSH connections open now.",
            ),
            ssh_sessions_in_flight: gauge(
                "slipway_ssh_sessions_in_flight",
                "SSH sessions (channels) open now.",
            ),
            ssh_connection_duration_seconds: histogram(
                "slipway_ssh_connection_duration_seconds",
                "How long SSH connections last.",
                &[],
                long.clone(),
            ),
            ssh_session_duration_seconds: histogram(
                "slipway_ssh_session_duration_seconds",
                "How long SSH sessions (channels, one command each) last.",
                &[],
                long.clone(),
            ),
            ssh_auth_attempts_total: counter(
                "slipway_ssh_auth_attempts_total",
                "SSH authentication attempts by method and result.",
                &["method", "result"],
            ),
            ssh_refused_total: counter(
                "slipway_ssh_refused_total",
                "SSH connections or sessions refused by a limit, by reason.",
                &["reason"],
            ),
            git_operations_total: counter(
                "slipway_git_operations_total",
                "Git transport operations by service and result.",
                &["service", "result"],
            ),
            git_operation_duration_seconds: histogram(
                "slipway_git_operation_duration_seconds",
                "Git transport operation durations by service.",
                &["service"],
                long,
            ),
            ref_updates_total: counter(
                "slipway_ref_updates_total",
                "Ref updates decided by the pre-receive check, by decision.",
                &["decision"],
            ),
            hook_decision_duration_seconds: histogram(
                "slipway_hook_decision_duration_seconds",
                "Time the server takes to answer a hook request, by phase.",
                &["phase"],
                short,
            ),
            hook_requests_rejected_total: counter(
                "slipway_hook_requests_rejected_total",
                "Hook socket requests refused before any decision, by reason.",
                &["reason"],
            ),
            ssh_commands_total: counter(
                "slipway_ssh_commands_total",
                "Admin commands over SSH by command and result.",
                &["command", "result"],
            ),
            config_reloads_total: counter(
                "slipway_config_reloads_total",
                "Admin configuration reloads by result.",
                &["result"],
            ),
            registry,
        }
    }

    /// The registry, for other parts (the actor runtime) to register in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
