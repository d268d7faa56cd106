//! The conductor: starts an execution for every push a pipeline's triggers match
//! (reading the event log from its own cursor, `pipelines`), and moves executions on
//! whenever something may have changed — an event (a build ended), a person's decision,
//! or the once-a-second tick that expires approvals.
//!
//! A pass runs on a blocking thread inside one store transaction
//! ([`super::advance`]); passes never overlap, and a wake-up during a pass runs one
//! more pass right after it. Nothing is kept in memory that the store does not have, so
//! a restart (even after `kill -9`) carries on where the database stands.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::advance::{advance_all, Env, People, SpecCache};
use super::effects::Effects;
use super::lifecycle::{new_execution, start_execution};
use super::source::{for_push, PushOutcome};
use super::spec::ExecutionMode;
use crate::build::builder::{Builder, QueueChanged, StopBuild};
use crate::bus::{EventBus, EventsAvailable, Stored};
use crate::compose::ServerInfo;
use crate::metrics::RuntimeMetrics;
use crate::notify::DeliveriesQueued;
use crate::reaper::RepoCatalog;
use crate::store::unix_now as now;
use crate::store::{EventFilter, NewEvent, Store, StoreError};

/// The consumer name (cursor key) of the conductor.
pub const CONSUMER: &str = "pipelines";

/// Push events read per pass.
const BATCH: usize = 200;

/// Something changed (a command was carried out): run a pass.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// A new deploy.yaml (deploy actions create deployments of its groups).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetDeployConfig(pub Arc<crate::config::deploy::DeployConfig>);

/// New approvers' addresses and groups (from `access.yaml`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPeople(pub Arc<People>);

/// Where the effects of a pass (or of a command) go once committed.
#[derive(Clone)]
pub struct Outlets {
    /// Announces stored events.
    pub bus: Addr<EventBus>,
    /// Sends queued mail.
    pub notifier: Recipient<DeliveriesQueued>,
    /// Runs queued builds, stops abandoned ones.
    pub builder: Addr<Builder>,
    /// Counts ended executions.
    pub metrics: RuntimeMetrics,
    /// Starts the deployments deploy actions created.
    pub deployments: Recipient<crate::deploy::supervisor::Wake>,
}

impl Outlets {
    /// Passes on what a committed pass or command did.
    pub fn deliver(&self, fx: Effects) {
        if !fx.events.is_empty() {
            self.bus.do_send(Stored(fx.events));
        }
        if !fx.mail.is_empty() {
            let _ = self.notifier.try_send(DeliveriesQueued(fx.mail));
        }
        if fx.builds_queued {
            self.builder.do_send(QueueChanged);
        }
        if fx.deployments_created {
            self.deployments.do_send(crate::deploy::supervisor::Wake);
        }
        for id in fx.stop_builds {
            self.builder.do_send(StopBuild(id));
        }
        for status in fx.ended {
            self.metrics
                .pipeline_executions_total
                .with_label_values(&[&status])
                .inc();
        }
    }
}

/// The conductor actor.
pub struct Conductor {
    store: Store,
    catalog: Arc<dyn RepoCatalog>,
    outlets: Outlets,
    server: ServerInfo,
    domain: String,
    people: Arc<People>,
    deploy: Arc<crate::config::deploy::DeployConfig>,
    specs: Arc<SpecCache>,
    busy: bool,
    again: bool,
}

impl Conductor {
    /// Creates the conductor's cursor at the end of the event log if it has none, so
    /// pushes from before pipelines existed do not start executions. Call before the
    /// server accepts pushes.
    pub fn init_cursor(store: &Store) -> Result<(), StoreError> {
        store.cursor(CONSUMER, store.last_event_id()?).map(|_| ())
    }

    /// A conductor over `store`.
    pub fn new(
        store: Store,
        catalog: Arc<dyn RepoCatalog>,
        outlets: Outlets,
        server: ServerInfo,
        domain: String,
        specs: Arc<SpecCache>,
    ) -> Conductor {
        Conductor {
            store,
            catalog,
            outlets,
            server,
            domain,
            people: Arc::new(People::default()),
            deploy: Arc::default(),
            specs,
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
        let (store, catalog, specs, people, deploy) = (
            self.store.clone(),
            self.catalog.clone(),
            self.specs.clone(),
            self.people.clone(),
            self.deploy.clone(),
        );
        let (server, domain) = (self.server.clone(), self.domain.clone());
        let job = tokio::task::spawn_blocking(move || {
            run_pass(
                &store,
                catalog.as_ref(),
                &specs,
                &people,
                &deploy,
                &server,
                &domain,
            )
        });
        ctx.spawn(job.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            match result {
                Ok(Ok((fx, more))) => {
                    act.outlets.deliver(fx);
                    act.again |= more;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "pipeline pass failed; retrying on the next tick")
                }
                Err(e) => tracing::error!(error = %e, "pipeline pass task failed"),
            }
            if std::mem::take(&mut act.again) {
                act.pass(ctx);
            }
        }));
    }
}

/// The execution mode's stored name.
pub fn mode_name(mode: ExecutionMode) -> &'static str {
    match mode {
        ExecutionMode::Superseded => "superseded",
        ExecutionMode::Queued => "queued",
        ExecutionMode::Parallel => "parallel",
    }
}

/// A push that starts an execution.
struct Start {
    event_id: i64,
    pusher: String,
    repo: String,
    spec: Box<super::PipelineSpec>,
    source: super::source::Source,
}

/// One pass: start executions for new pushes, then move every active execution.
/// Answers the effects and whether more push events wait.
fn run_pass(
    store: &Store,
    catalog: &dyn RepoCatalog,
    specs: &SpecCache,
    people: &People,
    deploy: &crate::config::deploy::DeployConfig,
    server: &ServerInfo,
    domain: &str,
) -> Result<(Effects, bool), StoreError> {
    let cursor = store.cursor(CONSUMER, 0)?;
    let events = store.events(&EventFilter {
        after: cursor,
        limit: BATCH,
        ..Default::default()
    })?;
    // Reading repositories happens outside the transaction (it can take a while).
    let mut starts = Vec::new();
    let mut unreadable = Vec::new();
    for e in &events {
        let ev = &e.event;
        let (Some(repo), Some(refname)) = (&ev.repo, &ev.refname) else {
            continue;
        };
        let tracked = refname.starts_with("refs/heads/") || refname.starts_with("refs/tags/");
        if ev.source != "git" || ev.kind != "push" || !tracked || repo == "admin" {
            continue;
        }
        let (Some(old), Some(new)) = (ev.detail["old"].as_str(), ev.detail["new"].as_str()) else {
            continue;
        };
        let Some(path) = catalog.path(repo) else {
            continue;
        };
        match for_push(&path, repo, refname, old, new) {
            Ok(PushOutcome::Start(spec, source)) => starts.push(Start {
                event_id: e.id,
                pusher: ev.actor.clone().unwrap_or_else(|| "push".into()),
                repo: repo.clone(),
                spec,
                source,
            }),
            Ok(_) => {}
            Err(why) => {
                // Not silently dropped: the push is recorded as one that did not start.
                tracing::warn!(repo = %repo, refname = %refname, error = %why, "cannot read the pushed pipeline");
                unreadable.push(NewEvent {
                    source: "pipeline".into(),
                    kind: "invalid".into(),
                    actor: ev.actor.clone(),
                    repo: Some(repo.clone()),
                    refname: Some(refname.clone()),
                    state: None,
                    detail: json!({
                        "commit": new,
                        "message": format!("the pushed commit's pipeline could not be read ({why}); no execution started — push again, or tell the administrator if it persists"),
                        "pusher": ev.actor,
                    }),
                });
            }
        }
    }
    let more = events.len() == BATCH;
    let env = Env {
        specs,
        people,
        server,
        domain,
        deploy,
        now: now(),
    };
    let fx = store.pipeline_tx(|t| {
        let mut fx = Effects::default();
        for event in unreadable {
            fx.emit(t, event)?;
        }
        for s in starts {
            let owner = t.claim_name(&s.spec.name, &s.repo)?;
            if owner != s.repo {
                // The event belongs to this repository: its readers may not read the
                // owner, so it is not named (the server log names it).
                let message = format!(
                    "pipeline name `{}` belongs to another repository; give this pipeline another `name:`",
                    s.spec.name
                );
                tracing::warn!(name = %s.spec.name, owner = %owner, repo = %s.repo, "pipeline name taken");
                tracing::warn!(repo = %s.repo, %message, "pipeline not started");
                fx.emit(
                    t,
                    NewEvent {
                        source: "pipeline".into(),
                        kind: "invalid".into(),
                        actor: Some(s.pusher.clone()),
                        repo: Some(s.repo.clone()),
                        refname: Some(s.source.refname.clone()),
                        state: None,
                        detail: json!({ "commit": s.source.commit, "message": message, "pusher": s.pusher }),
                    },
                )?;
                continue;
            }
            start_execution(
                t,
                &mut fx,
                new_execution(&s.spec, &s.source, &s.repo, Some(s.event_id), "push", &s.pusher),
            )?;
        }
        if let Some(last) = events.last() {
            t.advance_cursor(CONSUMER, last.id)?;
        }
        advance_all(t, &env, &mut fx)?;
        Ok::<_, StoreError>(fx)
    })?;
    Ok((fx, more))
}

impl Actor for Conductor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        self.busy = false;
        ctx.notify(Wake);
        // Approval timeouts and builds the builder ended on its own (after a restart)
        // are noticed within a second.
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.pass(ctx));
    }
}

impl Supervised for Conductor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.outlets
            .metrics
            .actor_restarts_total
            .with_label_values(&[CONSUMER])
            .inc();
    }
}

impl Handler<Wake> for Conductor {
    type Result = ();
    fn handle(&mut self, _msg: Wake, ctx: &mut Self::Context) {
        self.pass(ctx);
    }
}

impl Handler<EventsAvailable> for Conductor {
    type Result = ();
    fn handle(&mut self, _msg: EventsAvailable, ctx: &mut Self::Context) {
        self.pass(ctx);
    }
}

impl Handler<SetDeployConfig> for Conductor {
    type Result = ();
    fn handle(&mut self, msg: SetDeployConfig, _ctx: &mut Self::Context) {
        self.deploy = msg.0;
    }
}

impl Handler<SetPeople> for Conductor {
    type Result = ();
    fn handle(&mut self, msg: SetPeople, _ctx: &mut Self::Context) {
        self.people = msg.0;
    }
}
