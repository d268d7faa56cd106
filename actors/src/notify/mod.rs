//! The notifier: delivers the outbox. Each delivery is retried with exponential backoff
//! while its target is down or answers with a temporary error, and given up after
//! `notify.max_attempts` with a `notify/delivery-failed` event. A delivery is removed
//! from the in-flight set only after its outcome is stored, so it is never sent twice
//! by one process; after a crash it may be sent again, with the same Message-ID.

mod mail;
mod webhook;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use mail::Mailer;

use crate::bus::{EventBus, Publish};
use crate::config::settings::{NotifySettings, WebhookSettings};
use crate::failpoints::Failpoints;
use crate::metrics::RuntimeMetrics;
use crate::secrets::MasterKey;
use crate::store::{Delivery, NewEvent, Store};

/// Deliveries at once.
const MAX_IN_FLIGHT: usize = 16;

/// Wakes the notifier: these deliveries were just queued (stored in the outbox). An
/// empty list just asks it to look at the outbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliveriesQueued(pub Vec<Delivery>);

/// The result of one attempt.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Try again later.
    Retry(String),
    /// Give up now.
    Permanent(String),
}

/// Everything a delivery needs besides the row itself.
pub struct Channels {
    /// Mail transport.
    pub mailer: Mailer,
    /// Webhook settings.
    pub webhooks: WebhookSettings,
    /// Reads webhook secrets.
    pub store: Store,
    /// Opens secure parameters.
    pub master: MasterKey,
    /// `From:` address.
    pub from: String,
}

/// The notifier actor.
pub struct Notifier {
    store: Store,
    settings: NotifySettings,
    channels: Arc<Channels>,
    bus: Addr<EventBus>,
    metrics: RuntimeMetrics,
    failpoints: Failpoints,
    in_flight: HashSet<i64>,
    polling: bool,
    /// A wake-up came while a poll was running: poll again when it ends, or deliveries
    /// queued meanwhile would wait for the next interval tick.
    again: bool,
    /// Deliveries that finished while a poll was reading the outbox: that poll may have
    /// read them as still pending, and must not start them again.
    finished_during_poll: HashSet<i64>,
}

impl Notifier {
    /// A notifier over `store`'s outbox.
    pub fn new(
        store: Store,
        settings: NotifySettings,
        channels: Channels,
        bus: Addr<EventBus>,
        metrics: RuntimeMetrics,
        failpoints: Failpoints,
    ) -> Notifier {
        Notifier {
            store,
            settings,
            channels: Arc::new(channels),
            bus,
            metrics,
            failpoints,
            in_flight: HashSet::new(),
            polling: false,
            again: false,
            finished_during_poll: HashSet::new(),
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.polling {
            self.again = true;
            return;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            // A finishing delivery polls again.
            return;
        }
        self.polling = true;
        self.again = false;
        let store = self.store.clone();
        let in_flight: Vec<i64> = self.in_flight.iter().copied().collect();
        let room = MAX_IN_FLIGHT - in_flight.len();
        let fetch = tokio::task::spawn_blocking(move || {
            let due = store.due_deliveries(room, &in_flight);
            let stats = store.outbox_stats();
            (due, stats)
        });
        ctx.spawn(fetch.into_actor(self).map(|result, act, ctx| {
            act.polling = false;
            let finished = std::mem::take(&mut act.finished_during_poll);
            let Ok((due, stats)) = result else { return };
            if let Ok(stats) = stats {
                act.metrics.outbox_depth.set(stats.pending);
                act.metrics
                    .outbox_oldest_age_seconds
                    .set(stats.oldest_pending_age);
            }
            match due {
                Ok(due) => {
                    for delivery in due {
                        if !finished.contains(&delivery.id) {
                            act.start(delivery, ctx);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
            }
            if act.again {
                act.poll(ctx);
            }
        }));
    }

    fn start(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        if !self.in_flight.insert(delivery.id) {
            return;
        }
        let channels = self.channels.clone();
        let store = self.store.clone();
        let settings = self.settings.clone();
        let bus = self.bus.clone();
        let metrics = self.metrics.clone();
        let failpoints = self.failpoints.clone();
        let id = delivery.id;
        let job = async move {
            let outcome = match delivery.delivery.kind.as_str() {
                "email" => mail::send(&channels, &delivery).await,
                "webhook" => webhook::send(&channels, &delivery).await,
                other => Outcome::Permanent(format!("unknown delivery kind `{other}`")),
            };
            if matches!(outcome, Outcome::Sent) && failpoints.fire("notify-abort-after-send") {
                tracing::error!(delivery = id, "failpoint notify-abort-after-send: aborting");
                std::process::abort();
            }
            record(&store, &settings, &bus, &metrics, &delivery, outcome).await;
        };
        ctx.spawn(job.into_actor(self).map(move |(), act, ctx| {
            act.in_flight.remove(&id);
            if act.polling {
                act.finished_during_poll.insert(id);
            }
            act.poll(ctx);
        }));
    }
}

fn backoff(settings: &NotifySettings, attempts: u32) -> Duration {
    let base = settings.first_retry.as_secs_f64() * 2f64.powi(attempts.min(30) as i32);
    let capped = base.min(settings.max_retry.as_secs_f64());
    // ±20 % jitter so a recovering server is not hit by every retry at once.
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    Duration::from_secs_f64((capped * jitter).max(0.05))
}

async fn record(
    store: &Store,
    settings: &NotifySettings,
    bus: &Addr<EventBus>,
    metrics: &RuntimeMetrics,
    delivery: &Delivery,
    outcome: Outcome,
) {
    let kind = delivery.delivery.kind.clone();
    let attempts = delivery.attempts + 1;
    let (result, give_up) = match &outcome {
        Outcome::Sent => ("sent", None),
        Outcome::Retry(e) if attempts >= settings.max_attempts => ("failed", Some(e.clone())),
        Outcome::Retry(_) => ("retry", None),
        Outcome::Permanent(e) => ("failed", Some(e.clone())),
    };
    metrics
        .deliveries_total
        .with_label_values(&[&kind, result])
        .inc();
    let id = delivery.id;
    let write = {
        let store = store.clone();
        let wait = backoff(settings, delivery.attempts);
        let give_up = give_up.clone();
        tokio::task::spawn_blocking(move || match (&outcome, give_up) {
            (Outcome::Sent, _) => store.delivery_sent(id),
            (_, Some(error)) => store.delivery_failed(id, &error),
            (Outcome::Retry(error), None) => store.delivery_retry(id, wait.as_secs_f64(), error),
            (Outcome::Permanent(error), None) => store.delivery_failed(id, error),
        })
    };
    match write.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(delivery = id, error = %e, "cannot record a delivery"),
        Err(e) => tracing::error!(delivery = id, error = %e, "delivery record task failed"),
    }
    match (result, give_up) {
        ("sent", _) => {
            tracing::debug!(delivery = id, %kind, target = %delivery.delivery.target, "delivered")
        }
        (_, Some(error)) => {
            tracing::warn!(delivery = id, %kind, target = %delivery.delivery.target, attempts, %error, "gave up a delivery");
            let event = NewEvent {
                source: "notify".into(),
                kind: "delivery-failed".into(),
                actor: Some("slipway".into()),
                repo: None,
                refname: None,
                state: Some("FAILED".into()),
                detail: serde_json::json!({
                    "delivery": id,
                    "kind": kind,
                    "target": delivery.delivery.target,
                    "rule": delivery.delivery.rule,
                    "event_id": delivery.delivery.event_id,
                    "message_id": delivery.message_id,
                    "attempts": attempts,
                    "error": error,
                }),
            };
            if let Err(e) = bus.send(Publish(vec![event])).await {
                tracing::error!(error = %e, "cannot publish delivery-failed");
            }
        }
        _ => {
            tracing::info!(delivery = id, %kind, target = %delivery.delivery.target, attempts, "delivery failed; will retry")
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.polling = false;
        self.again = false;
        self.finished_during_poll.clear();
        self.in_flight.clear();
        ctx.notify(DeliveriesQueued(Vec::new()));
        // Retries come due with time, not with messages.
        ctx.run_interval(Duration::from_millis(500), |act, ctx| act.poll(ctx));
    }
}

impl Supervised for Notifier {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor_restarts_total
            .with_label_values(&["notifier"])
            .inc();
    }
}

impl Handler<DeliveriesQueued> for Notifier {
    type Result = ();
    fn handle(&mut self, msg: DeliveriesQueued, ctx: &mut Self::Context) {
        let mut left = msg.0.is_empty();
        for delivery in msg.0 {
            if self.in_flight.len() < MAX_IN_FLIGHT {
                self.start(delivery, ctx);
            } else {
                left = true;
            }
        }
        // What did not fit is in the outbox; a poll (now, or when room frees up) finds it.
        if left {
            self.poll(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = NotifySettings {
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(60),
            ..NotifySettings::default()
        };
        let first = backoff(&s, 0).as_secs_f64();
        assert!((1.6..=2.4).contains(&first), "{first}");
        let third = backoff(&s, 2).as_secs_f64();
        assert!((6.4..=9.6).contains(&third), "{third}");
        let late = backoff(&s, 20).as_secs_f64();
        assert!((48.0..=72.0).contains(&late), "{late}");
    }
}
