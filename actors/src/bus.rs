//! The event bus: stores events (before anyone sees them) and wakes the consumers.

use actix::prelude::*;
use tokio::sync::broadcast;

use crate::metrics::RuntimeMetrics;
use crate::store::{NewEvent, Store};

/// How many messages the bus queues before senders wait.
pub const MAILBOX: usize = 256;

/// Store these events; answers their ids once they are durable.
#[derive(Message)]
#[rtype(result = "Result<Vec<i64>, String>")]
pub struct Publish(pub Vec<NewEvent>);

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
}

impl EventBus {
    /// A bus over `store`; `follow` carries the newest id to live followers.
    pub fn new(store: Store, follow: broadcast::Sender<i64>, metrics: RuntimeMetrics) -> EventBus {
        EventBus {
            store,
            subscribers: Vec::new(),
            follow,
            metrics,
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

impl Handler<Publish> for EventBus {
    type Result = ResponseFuture<Result<Vec<i64>, String>>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        self.metrics
            .actor_mailbox_depth
            .with_label_values(&["bus"])
            .dec();
        let store = self.store.clone();
        let subscribers = self.subscribers.clone();
        let follow = self.follow.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
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
