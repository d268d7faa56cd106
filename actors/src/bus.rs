//! The event bus: stores events (before anyone sees them) and wakes the consumers.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::{broadcast, Semaphore};

use crate::metrics::RuntimeMetrics;
use crate::store::{NewEvent, Store};

/// How many messages the bus queues before senders wait.
pub const MAILBOX: usize = 256;
/// How many `Publish` batches are stored at once. Past that the bus stops taking
/// messages, its mailbox fills, and `send` waits: backpressure reaches the pushers
/// instead of an ever-growing pile of pending writes.
pub const IN_FLIGHT: usize = 8;

/// Store these events; answers their ids once they are durable.
#[derive(Message)]
#[rtype(result = "Result<Vec<i64>, String>")]
pub struct Publish(pub Vec<NewEvent>);

/// Events another actor stored inside its own transaction (so they are durable with
/// the state change they describe): wake the consumers and followers, count them.
/// Each entry is (id, source, type).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stored(pub Vec<(i64, String, String)>);

/// Tells a consumer that new events are in the log.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct EventsAvailable;

/// Adds a consumer to wake on new events.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<EventsAvailable>);

/// The bus actor.
pub struct EventBus {
    store: Store,
    subscribers: Vec<Recipient<EventsAvailable>>,
    follow: broadcast::Sender<i64>,
    metrics: RuntimeMetrics,
    slots: Arc<Semaphore>,
}

impl EventBus {
    /// A bus over `store`; `follow` carries the newest id to live followers.
    pub fn new(store: Store, follow: broadcast::Sender<i64>, metrics: RuntimeMetrics) -> EventBus {
        EventBus {
            store,
            subscribers: Vec::new(),
            follow,
            metrics,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

impl Supervised for EventBus {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::error!(actor = "bus", "actor restarted after a failure");
        self.metrics
            .actor_restarts_total
            .with_label_values(&["bus"])
            .inc();
    }
}

impl Handler<Subscribe> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<Stored> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Stored, _ctx: &mut Self::Context) {
        for (_, source, kind) in &msg.0 {
            self.metrics
                .events_total
                .with_label_values(&[source, kind])
                .inc();
        }
        for s in &self.subscribers {
            let _ = s.try_send(EventsAvailable);
        }
        if let Some(last) = msg.0.iter().map(|(id, _, _)| *id).max() {
            let _ = self.follow.send(last);
        }
    }
}

impl Handler<Publish> for EventBus {
    type Result = ResponseFuture<Result<Vec<i64>, String>>;

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) -> Self::Result {
        self.metrics
            .actor_mailbox_depth
            .with_label_values(&["bus"])
            .dec();
        let slots = self.slots.clone();
        let slot = match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                // Every slot is busy: take no further message until one frees up.
                let wait = slots.clone();
                ctx.wait(
                    async move {
                        let _ = wait.acquire().await;
                    }
                    .into_actor(self),
                );
                None
            }
        };
        let store = self.store.clone();
        let subscribers = self.subscribers.clone();
        let follow = self.follow.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let _slot = match slot {
                Some(permit) => permit,
                None => slots
                    .acquire_owned()
                    .await
                    .map_err(|_| "event bus closed".to_string())?,
            };
            let events = msg.0;
            let counted: Vec<(String, String)> = events
                .iter()
                .map(|e| (e.source.clone(), e.kind.clone()))
                .collect();
            let ids = tokio::task::spawn_blocking(move || store.insert_events(&events))
                .await
                .map_err(|e| format!("event store task failed: {e}"))?
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot store events");
                    e.to_string()
                })?;
            for (source, kind) in counted {
                metrics
                    .events_total
                    .with_label_values(&[&source, &kind])
                    .inc();
            }
            for s in &subscribers {
                // A full mailbox already holds a wake-up; consumers read everything new.
                let _ = s.try_send(EventsAvailable);
            }
            if let Some(last) = ids.last() {
                let _ = follow.send(*last);
            }
            Ok(ids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;

    fn event() -> NewEvent {
        NewEvent {
            source: "git".into(),
            kind: "push".into(),
            actor: Some("alice".into()),
            repo: Some("app".into()),
            refname: Some("refs/heads/main".into()),
            state: None,
            detail: serde_json::json!({}),
        }
    }

    /// While the database is stalled, the bus takes at most IN_FLIGHT batches plus a
    /// full mailbox; then `try_send` says Full (and `send` waits). Nothing is lost once
    /// the database is back.
    #[test]
    fn a_stalled_store_fills_the_mailbox_and_pushes_back() {
        actix::System::new().block_on(stalled_store());
    }

    // Holding the database lock across the yields is the point: the bus's blocking
    // store calls wait on it, while this task only yields (it never blocks on them).
    #[allow(clippy::await_holding_lock)]
    async fn stalled_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("slipway.db")).unwrap();
        let metrics = RuntimeMetrics::register(&prometheus::Registry::new());
        let (follow, _) = broadcast::channel(16);
        let bus = EventBus::new(store.clone(), follow, metrics).start();
        let held = store.hold();
        let mut accepted = Vec::new();
        let mut full = false;
        for _ in 0..(IN_FLIGHT + MAILBOX + 64) {
            match bus.try_send(Publish(vec![event()])) {
                Ok(()) => accepted.push(()),
                Err(SendError::Full(_)) => {
                    full = true;
                    break;
                }
                Err(SendError::Closed(_)) => panic!("the bus stopped"),
            }
            // Let the bus take what it will from its mailbox.
            tokio::task::yield_now().await;
        }
        assert!(
            full,
            "the mailbox never filled: {} accepted",
            accepted.len()
        );
        assert!(
            accepted.len() <= IN_FLIGHT + MAILBOX + 1,
            "{} messages accepted while the store was stalled",
            accepted.len()
        );
        drop(held);
        // Everything accepted is stored once the database answers again.
        bus.send(Publish(vec![event()])).await.unwrap().unwrap();
        let mut stored = 0;
        for _ in 0..200 {
            stored = store
                .events(&crate::store::EventFilter {
                    limit: 10_000,
                    ..Default::default()
                })
                .unwrap()
                .len();
            if stored == accepted.len() + 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(stored, accepted.len() + 1);
    }
}
