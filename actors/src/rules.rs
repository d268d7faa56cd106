//! The rules engine: reads the event log from its cursor, matches each event against
//! `rules.yaml`, and queues deliveries in the outbox in the same transaction that moves
//! its cursor. A crash at any point loses nothing and queues nothing twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::bus::EventsAvailable;
use crate::compose::{self, ServerInfo};
use crate::config::rules::{Action, Recipient as MailRecipient, RulesConfig, Target};
use crate::failpoints::Failpoints;
use crate::metrics::RuntimeMetrics;
use crate::notify::DeliveriesQueued;
use crate::reaper::RunAction;
use crate::store::{Delivery, Event, EventFilter, NewDelivery, Store};

/// The consumer name (cursor key) of the rules engine.
pub const CONSUMER: &str = "rules";
const BATCH: usize = 200;
/// Failures on one event before it is set aside as a dead letter.
const MAX_FAILURES: u32 = 3;

/// New rules and user addresses (after an admin push).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRules {
    /// The rules.
    pub rules: Arc<RulesConfig>,
    /// User name → email address, from access.yaml.
    pub emails: Arc<HashMap<String, String>>,
}

/// The rules engine actor.
pub struct RulesEngine {
    store: Store,
    rules: Arc<RulesConfig>,
    emails: Arc<HashMap<String, String>>,
    server: ServerInfo,
    message_domain: String,
    notifier: Recipient<DeliveriesQueued>,
    reaper: Recipient<RunAction>,
    metrics: RuntimeMetrics,
    failpoints: Failpoints,
    busy: bool,
    again: bool,
    /// Failures per event id (kept across restarts: the struct survives them).
    failures: HashMap<i64, u32>,
}

/// What one batch did.
struct Batch {
    events: usize,
    actions: Vec<(String, Action, Event)>,
    queued: Vec<Delivery>,
}

impl RulesEngine {
    /// A rules engine; it starts from its stored cursor.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        server: ServerInfo,
        message_domain: String,
        notifier: Recipient<DeliveriesQueued>,
        reaper: Recipient<RunAction>,
        metrics: RuntimeMetrics,
        failpoints: Failpoints,
    ) -> RulesEngine {
        RulesEngine {
            store,
            rules: Arc::new(RulesConfig::default()),
            emails: Arc::new(HashMap::new()),
            server,
            message_domain,
            notifier,
            reaper,
            metrics,
            failpoints,
            busy: false,
            again: false,
            failures: HashMap::new(),
        }
    }

    fn run_batch(&mut self, ctx: &mut Context<Self>) {
        if self.failpoints.armed("rules-hold") {
            return;
        }
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        self.again = false;
        let store = self.store.clone();
        let rules = self.rules.clone();
        let emails = self.emails.clone();
        let server = self.server.clone();
        let domain = self.message_domain.clone();
        let failpoints = self.failpoints.clone();
        let work = tokio::task::spawn_blocking(move || {
            process_batch(&store, &rules, &emails, &server, &domain, &failpoints)
        });
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            let outcome = match result {
                Ok(Ok(batch)) => Ok(batch),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(format!("rules engine task failed: {join}")),
            };
            match outcome {
                Ok(batch) => {
                    act.failures.clear();
                    if !batch.queued.is_empty() {
                        // Handed over directly: the notifier need not read them back.
                        // If its mailbox is full they wait for its next poll.
                        let _ = act.notifier.try_send(DeliveriesQueued(batch.queued));
                    }
                    for (rule, action, event) in batch.actions {
                        let _ = act.reaper.try_send(RunAction {
                            rule,
                            action,
                            event: Some(event),
                        });
                    }
                    if batch.events == BATCH || act.again {
                        ctx.notify(EventsAvailable);
                    }
                }
                Err(error) => act.failed(ctx, error),
            }
        }));
    }

    /// A batch failed: count it against the first unprocessed event; after
    /// [`MAX_FAILURES`] set that event aside. Then stop, so the supervisor restarts the
    /// actor from its durable cursor.
    fn failed(&mut self, ctx: &mut Context<Self>, error: String) {
        tracing::error!(actor = "rules", %error, "rules engine failed; restarting it");
        let cursor = self.store.cursor(CONSUMER, 0).unwrap_or(0);
        let next = self
            .store
            .events(&EventFilter {
                after: cursor,
                limit: 1,
                ..Default::default()
            })
            .ok()
            .and_then(|v| v.first().map(|e| e.id));
        if let Some(id) = next {
            let count = self.failures.entry(id).or_insert(0);
            *count += 1;
            if *count >= MAX_FAILURES {
                tracing::error!(
                    event = id,
                    "event failed {MAX_FAILURES} times; setting it aside"
                );
                let _ = self.store.dead_letter(CONSUMER, id, &error);
                let _ = self.store.advance_cursor(CONSUMER, id);
                self.metrics
                    .dead_letters_total
                    .with_label_values(&[CONSUMER])
                    .inc();
                self.failures.remove(&id);
            }
        }
        ctx.stop();
    }
}

fn process_batch(
    store: &Store,
    rules: &RulesConfig,
    emails: &HashMap<String, String>,
    server: &ServerInfo,
    domain: &str,
    failpoints: &Failpoints,
) -> Result<Batch, String> {
    let cursor = store.cursor(CONSUMER, 0).map_err(|e| e.to_string())?;
    let events = store
        .events(&EventFilter {
            after: cursor,
            limit: BATCH,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(Batch {
            events: 0,
            actions: Vec::new(),
            queued: Vec::new(),
        });
    };
    if failpoints.fire("rules-panic") {
        panic!("failpoint rules-panic fired");
    }
    let mut deliveries = Vec::new();
    let mut actions = Vec::new();
    for event in &events {
        for rule in &rules.rules {
            let Some(matcher) = &rule.matcher else {
                continue;
            };
            // Notification failures reach only rules that ask for them by source, so a
            // broken target cannot feed on its own failure reports.
            if event.event.source == "notify" && matcher.source.is_none() {
                continue;
            }
            if !matcher.matches(event) {
                continue;
            }
            for target in &rule.targets {
                deliveries.extend(deliveries_for(&rule.name, target, event, emails, server));
            }
            if let Some(action) = &rule.action {
                actions.push((rule.name.clone(), action.clone(), event.clone()));
            }
        }
    }
    let queued = store
        .enqueue_and_advance(CONSUMER, last, &deliveries, domain)
        .map_err(|e| e.to_string())?;
    Ok(Batch {
        events: events.len(),
        actions,
        queued,
    })
}

fn deliveries_for(
    rule: &str,
    target: &Target,
    event: &Event,
    emails: &HashMap<String, String>,
    server: &ServerInfo,
) -> Vec<NewDelivery> {
    match target {
        Target::Email(recipients) => {
            let (subject, body) = compose::mail(event, server);
            let addresses: BTreeSet<String> = recipients
                .iter()
                .filter_map(|r| match r {
                    MailRecipient::Address(a) => Some(a.clone()),
                    MailRecipient::User(u) => {
                        let found = emails.get(u).cloned();
                        if found.is_none() {
                            tracing::warn!(rule, user = %u, "user has no email address; skipped");
                        }
                        found
                    }
                })
                .collect();
            addresses
                .into_iter()
                .map(|to| NewDelivery {
                    event_id: Some(event.id),
                    rule: rule.to_string(),
                    kind: "email".into(),
                    target: to,
                    payload: serde_json::json!({ "subject": subject, "body": body }),
                })
                .collect()
        }
        Target::Webhook { url, secret_param } => vec![NewDelivery {
            event_id: Some(event.id),
            rule: rule.to_string(),
            kind: "webhook".into(),
            target: url.clone(),
            payload: serde_json::json!({
                "body": compose::webhook_body(event),
                "event_type": event.event.kind,
                "secret_param": secret_param,
            }),
        }],
    }
}

impl Actor for RulesEngine {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.busy = false;
        // Resume from the cursor, and poll now and then in case a wake-up was missed.
        ctx.notify(EventsAvailable);
        ctx.run_interval(Duration::from_secs(2), |act, ctx| act.run_batch(ctx));
    }
}

impl Supervised for RulesEngine {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor_restarts_total
            .with_label_values(&[CONSUMER])
            .inc();
    }
}

impl Handler<EventsAvailable> for RulesEngine {
    type Result = ();
    fn handle(&mut self, _msg: EventsAvailable, ctx: &mut Self::Context) {
        self.run_batch(ctx);
    }
}

impl Handler<SetRules> for RulesEngine {
    type Result = ();
    fn handle(&mut self, msg: SetRules, _ctx: &mut Self::Context) {
        self.rules = msg.rules;
        self.emails = msg.emails;
    }
}
