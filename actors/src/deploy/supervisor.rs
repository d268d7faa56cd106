//! The supervisor: runs a pass ([`super::advance`]) whenever something may have
//! changed — a deployment was created or stopped, an agent reported a command, the
//! alarms were read — and once a second (bake ends, lost agents, unacknowledged
//! commands). Every `deploy.alarm_interval` it reads the alarms of the running and
//! baking deployments ([`super::alarms`]); a deployment whose alarm fires is stopped in
//! the next pass. Passes never overlap, nor do readings.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::advance::{advance_all, stop_on_alarms, Clock, Effects};
use super::alarms::{self, Reading, Watch};
use crate::bus::{EventBus, Stored};
use crate::metrics::RuntimeMetrics;
use crate::store::unix_now as now;
use crate::store::{Store, StoreError};

/// Run a pass now.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// The supervisor actor.
pub struct Supervisor {
    store: Store,
    bus: Addr<EventBus>,
    /// Wakes the polls of agents whose commands became ready, so they answer at once.
    agents: Arc<super::wakers::AgentWakers>,
    metrics: RuntimeMetrics,
    /// An agent silent this long has lost its event.
    agent_timeout: Duration,
    busy: bool,
    again: bool,
    /// How often alarms are read.
    alarm_interval: Duration,
    /// How long a firing Alertmanager alert counts without being sent again.
    alert_max_age: Duration,
    /// The client alarms are read with.
    client: reqwest::Client,
    /// A reading is under way.
    reading: bool,
    /// When the newest complete reading began (unix seconds; 0: none yet).
    alarms_read_at: f64,
    /// Deployments to stop in the next pass (id, why).
    alarm_stops: Vec<(i64, String)>,
}

impl Supervisor {
    /// A supervisor over `store`.
    pub fn new(
        store: Store,
        bus: Addr<EventBus>,
        agents: Arc<super::wakers::AgentWakers>,
        metrics: RuntimeMetrics,
        settings: &crate::config::settings::DeploySettings,
    ) -> Supervisor {
        Supervisor {
            store,
            bus,
            agents,
            metrics,
            agent_timeout: settings.agent_timeout,
            busy: false,
            again: false,
            alarm_interval: settings.alarm_interval,
            alert_max_age: settings.alert_max_age,
            client: alarms::poll::client(),
            reading: false,
            alarms_read_at: 0.0,
            alarm_stops: Vec::new(),
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let agent_lost = self.agent_timeout.as_secs_f64();
        let alarms_read_at = self.alarms_read_at;
        let stops = std::mem::take(&mut self.alarm_stops);
        // Kept until a pass has committed them: the alarms' "last word" is already taken.
        let pending = stops.clone();
        let job = tokio::task::spawn_blocking(move || {
            store.deploy_tx(|t| {
                let mut fx = Effects::default();
                let now = now();
                stop_on_alarms(t, &mut fx, &stops, now)?;
                advance_all(
                    t,
                    &mut fx,
                    Clock {
                        now,
                        agent_lost,
                        alarms_read_at,
                    },
                )?;
                Ok::<_, StoreError>(fx)
            })
        });
        ctx.spawn(job.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            match result {
                Ok(Ok(fx)) => {
                    if !fx.events.is_empty() {
                        act.bus.do_send(Stored(fx.events));
                    }
                    act.agents.wake(&fx.ready_for);
                }
                Ok(Err(e)) => {
                    act.alarm_stops.extend(pending);
                    tracing::error!(error = %e, "deployment pass failed; retrying on the next tick")
                }
                Err(e) => {
                    act.alarm_stops.extend(pending);
                    tracing::error!(error = %e, "deployment pass task failed")
                }
            }
            if std::mem::take(&mut act.again) {
                act.pass(ctx);
            }
        }));
    }
}

impl Supervisor {
    /// Reads the alarms of the running and baking deployments, unless a reading is
    /// under way or the last one began less than `alarm_interval` ago.
    fn read_alarms(&mut self, ctx: &mut Context<Self>) {
        let began = now();
        if self.reading || began - self.alarms_read_at < self.alarm_interval.as_secs_f64() {
            return;
        }
        self.reading = true;
        let (store, client) = (self.store.clone(), self.client.clone());
        let alert_max_age = self.alert_max_age.as_secs_f64();
        let job = async move {
            let listed = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.deploy_tx(|t| t.active_deployments()))
                    .await
            };
            let watches: Vec<Watch> = match listed {
                Ok(Ok(list)) => list
                    .iter()
                    .filter(|d| matches!(d.status.as_str(), "IN_PROGRESS" | "BAKING"))
                    .filter_map(Watch::of)
                    .collect(),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            };
            Ok(alarms::poll_all(&client, &store, watches, alert_max_age).await)
        };
        ctx.spawn(job.into_actor(self).map(move |result, act, ctx| {
            act.reading = false;
            match result {
                Ok(polled) => {
                    act.alarms_read_at = began;
                    for p in polled {
                        for (name, kind, reading) in &p.readings {
                            let result = match reading {
                                Reading::Ok => "ok",
                                Reading::Firing(why) => {
                                    tracing::warn!(deployment = p.deployment, alarm = %name, %why, "alarm firing");
                                    "firing"
                                }
                                Reading::Unreadable(why) => {
                                    tracing::warn!(deployment = p.deployment, alarm = %name, %why, "alarm unreadable");
                                    "unreadable"
                                }
                            };
                            act.metrics
                                .deploy_alarm_readings_total
                                .with_label_values(&[kind, result])
                                .inc();
                        }
                        if let Some(why) = p.stop {
                            act.alarm_stops.push((p.deployment, why));
                        }
                    }
                    act.pass(ctx);
                }
                Err(e) => {
                    // The next tick tries again.
                    tracing::error!(error = %e, "cannot list the deployments whose alarms to read")
                }
            }
        }));
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.busy = false;
        self.reading = false;
        ctx.notify(Wake);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.pass(ctx);
            act.read_alarms(ctx);
        });
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
