//! The runtime's metrics, registered in the server's registry.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Metrics of the event bus, the rules engine, the notifier and the actors themselves.
#[derive(Clone)]
pub struct RuntimeMetrics {
    /// Events stored, by source and type.
    pub events_total: IntCounterVec,
    /// Delivery attempts by kind (`email`, `webhook`) and result (`sent`, `retry`, `failed`).
    pub deliveries_total: IntCounterVec,
    /// Deliveries waiting in the outbox.
    pub outbox_depth: IntGauge,
    /// Age of the oldest undelivered message.
    pub outbox_oldest_age_seconds: Gauge,
    /// Actor restarts after a failure, by actor.
    pub actor_restarts_total: IntCounterVec,
    /// Messages waiting in an actor's mailbox, by actor.
    pub actor_mailbox_depth: IntGaugeVec,
    /// Events a consumer gave up on, by consumer.
    pub dead_letters_total: IntCounterVec,
    /// Stale branches deleted.
    pub branches_reaped_total: IntCounterVec,
    /// Builds ended, by status.
    pub builds_total: IntCounterVec,
    /// Builds waiting in the queue.
    pub build_queue_depth: IntGauge,
    /// Builds running now.
    pub builds_running: IntGauge,
    /// Whole builds' durations (start to end), by status.
    pub build_duration_seconds: HistogramVec,
    /// Phase durations, by phase and status.
    pub build_phase_duration_seconds: HistogramVec,
    /// From the push event stored to its build starting.
    pub push_to_build_start_seconds: Histogram,
    /// Guarded branches moved back after a failed build, by outcome.
    pub guard_rollbacks_total: IntCounterVec,
    /// Pipeline executions ended, by status.
    pub pipeline_executions_total: IntCounterVec,
    /// Deployment alarm readings, by kind and result (`ok`, `firing`, `unreadable`).
    pub deploy_alarm_readings_total: IntCounterVec,
}

impl RuntimeMetrics {
    /// Registers every runtime metric in `registry`.
    pub fn register(registry: &Registry) -> RuntimeMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let outbox_depth = IntGauge::new(
            "slipway_outbox_depth",
            "Mail and webhook deliveries waiting in the outbox.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(outbox_depth.clone()))
            .expect("unique metric");
        let oldest = Gauge::new(
            "slipway_outbox_oldest_age_seconds",
            "Age of the oldest undelivered message in the outbox (0 when empty).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(oldest.clone()))
            .expect("unique metric");
        let mailbox = IntGaugeVec::new(
            Opts::new(
                "slipway_actor_mailbox_depth",
                "Messages waiting in an actor's mailbox.",
            ),
            &["actor"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(mailbox.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        // Builds take seconds to hours; starting one takes milliseconds.
        let long = vec![
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
        ];
        let push_to_start = Histogram::with_opts(
            HistogramOpts::new(
                "slipway_push_to_build_start_seconds",
                "Time from a push event being stored to its build starting.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(push_to_start.clone()))
            .expect("unique metric");
        RuntimeMetrics {
            builds_total: counter(
                "slipway_builds_total",
                "Builds ended, by status (SUCCEEDED, FAILED, FAULT, TIMED_OUT, STOPPED).",
                &["status"],
            ),
            build_queue_depth: gauge(
                "slipway_build_queue_depth",
                "Builds waiting in the queue for a free slot.",
            ),
            builds_running: gauge("slipway_builds_running", "Builds running now."),
            build_duration_seconds: histogram_vec(
                "slipway_build_duration_seconds",
                "Build durations from start to end, by status.",
                &["status"],
                long.clone(),
            ),
            build_phase_duration_seconds: histogram_vec(
                "slipway_build_phase_duration_seconds",
                "Build phase durations, by phase and status.",
                &["phase", "status"],
                long,
            ),
            push_to_build_start_seconds: push_to_start,
            deploy_alarm_readings_total: counter(
                "slipway_deploy_alarm_readings_total",
                "Deployment alarm readings, by kind (prometheus, http, alertmanager) and result (ok, firing, unreadable).",
                &["kind", "result"],
            ),
            pipeline_executions_total: counter(
                "slipway_pipeline_executions_total",
                "Pipeline executions ended, by status (SUCCEEDED, FAILED, STOPPED, SUPERSEDED).",
                &["status"],
            ),
            guard_rollbacks_total: counter(
                "slipway_guard_rollbacks_total",
                "Guarded branches handled after a failed build, by outcome (moved-back, deleted, left-alone, error).",
                &["outcome"],
            ),
            events_total: counter(
                "slipway_events_total",
                "Events stored, by source and type.",
                &["source", "type"],
            ),
            deliveries_total: counter(
                "slipway_deliveries_total",
                "Delivery attempts by target kind and result.",
                &["kind", "result"],
            ),
            outbox_depth,
            outbox_oldest_age_seconds: oldest,
            actor_restarts_total: counter(
                "slipway_actor_restarts_total",
                "Actor restarts after a failure, by actor.",
                &["actor"],
            ),
            actor_mailbox_depth: mailbox,
            dead_letters_total: counter(
                "slipway_dead_letters_total",
                "Events a consumer gave up on after repeated failures, by consumer.",
                &["consumer"],
            ),
            branches_reaped_total: counter(
                "slipway_branches_reaped_total",
                "Stale branches deleted, by trigger (schedule or command).",
                &["trigger"],
            ),
        }
    }
}
