//! The runtime's metrics, registered in the server's registry.

use prometheus::{Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
        RuntimeMetrics {
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
