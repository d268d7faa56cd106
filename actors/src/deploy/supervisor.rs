//! The supervisor: runs a pass ([`super::advance`]) whenever something may have
//! changed — a deployment was created or stopped, an agent reported a command — and once
//! a second (bake ends, lost agents, unacknowledged commands). Passes never overlap.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::advance::{advance_all, Effects};
use crate::bus::{EventBus, Stored};
use crate::metrics::RuntimeMetrics;
use crate::store::{Store, StoreError};

/// Run a pass now.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// The supervisor actor.
pub struct Supervisor {
    store: Store,
    bus: Addr<EventBus>,
    /// Woken when commands become ready, so agents' long polls answer at once.
    agents: Arc<tokio::sync::Notify>,
    metrics: RuntimeMetrics,
    /// An agent silent this long has lost its event.
    agent_timeout: Duration,
    busy: bool,
    again: bool,
}

impl Supervisor {
    /// A supervisor over `store`.
    pub fn new(
        store: Store,
        bus: Addr<EventBus>,
        agents: Arc<tokio::sync::Notify>,
        metrics: RuntimeMetrics,
        agent_timeout: Duration,
    ) -> Supervisor {
        Supervisor {
            store,
            bus,
            agents,
            metrics,
            agent_timeout,
            busy: false,
            again: false,
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let lost = self.agent_timeout.as_secs_f64();
        let job = tokio::task::spawn_blocking(move || {
            store.deploy_tx(|t| {
                let mut fx = Effects::default();
                advance_all(t, &mut fx, now(), lost)?;
                Ok::<_, StoreError>(fx)
            })
        });
        ctx.spawn(job.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            match result {
                Ok(Ok(fx)) => {
                    if !fx.events.is_empty() {
                        act.bus.do_send(Stored(fx.events));
                    }
                    if fx.commands_ready {
                        act.agents.notify_waiters();
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "deployment pass failed; retrying on the next tick")
                }
                Err(e) => tracing::error!(error = %e, "deployment pass task failed"),
            }
            if std::mem::take(&mut act.again) {
                act.pass(ctx);
            }
        }));
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.busy = false;
        ctx.notify(Wake);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.pass(ctx));
    }
}

impl actix::Supervised for Supervisor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor_restarts_total
            .with_label_values(&["deployments"])
            .inc();
    }
}

impl Handler<Wake> for Supervisor {
    type Result = ();
    fn handle(&mut self, _msg: Wake, ctx: &mut Self::Context) {
        self.pass(ctx);
    }
}
