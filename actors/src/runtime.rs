//! Starting the actors and the handle the front doors use to reach them.
//!
//! Must be called inside a running actix System. Every actor runs under a
//! `Supervisor`: when one stops after a failure it is restarted with its state, and it
//! resumes from its durable cursor, so no event is lost.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::broadcast;

use crate::build::artifacts::ArtifactStore;
use crate::build::builder::{Builder, MailOut, SetBuilds, StartBuild, StopBuild};
use crate::bus::{EventBus, Publish, Subscribe};
use crate::compose::ServerInfo;
use crate::config::builds::BuildsConfig;
use crate::config::rules::RulesConfig;
use crate::config::settings::{BuildSettings, NotifySettings, WebhookSettings};
use crate::deploy::supervisor::{Supervisor as DeploySupervisor, Wake as DeployWake};
use crate::failpoints::Failpoints;
use crate::metrics::RuntimeMetrics;
use crate::notify::{Channels, Mailer, Notifier};
use crate::pipeline::advance::{People, SpecCache};
use crate::pipeline::conductor::{Conductor, Outlets, SetDeployConfig, SetPeople, Wake};
use crate::pipeline::control::{ControlError, Outcome};
use crate::reaper::{BranchReaper, Reap, RepoCatalog, SetSchedules, StaleBranch};
use crate::rules::{RulesEngine, SetRules};
use crate::secrets::MasterKey;
use crate::store::{BuildRow, NewBuild, NewEvent, Store};

/// What the runtime needs from the server.
pub struct RuntimeDeps {
    /// The database.
    pub store: Store,
    /// Metrics registry to register in.
    pub registry: prometheus::Registry,
    /// How mail leaves.
    pub mailer: Mailer,
    /// Retry policy and `From:`.
    pub notify: NotifySettings,
    /// Webhook policy.
    pub webhooks: WebhookSettings,
    /// Opens secure parameters.
    pub master: MasterKey,
    /// For the commands printed in mail.
    pub server: ServerInfo,
    /// Domain of Message-IDs.
    pub message_domain: String,
    /// The repositories.
    pub catalog: Arc<dyn RepoCatalog>,
    /// Build workspaces and logs (`DATA/builds`).
    pub builds_dir: std::path::PathBuf,
    /// The build queue's settings.
    pub builds: BuildSettings,
    /// Sealed artifact blobs (`DATA/artifacts`).
    pub artifacts_dir: std::path::PathBuf,
    /// Deployment settings.
    pub deploy: crate::config::settings::DeploySettings,
}

/// Handles to the running actors.
#[derive(Clone)]
pub struct Runtime {
    bus: Addr<EventBus>,
    rules: Addr<RulesEngine>,
    reaper: Addr<BranchReaper>,
    builder: Addr<Builder>,
    conductor: Addr<Conductor>,
    deployments: Addr<DeploySupervisor>,
    agents_wake: Arc<crate::deploy::wakers::AgentWakers>,
    outlets: Outlets,
    specs: Arc<SpecCache>,
    builds_dir: std::path::PathBuf,
    artifacts: ArtifactStore,
    follow: broadcast::Sender<i64>,
    metrics: RuntimeMetrics,
}

impl Runtime {
    /// Starts every actor.
    pub fn start(deps: RuntimeDeps) -> Runtime {
        let metrics = RuntimeMetrics::register(&deps.registry);
        let master_for_builds = deps.master.clone();
        let artifacts = ArtifactStore::new(deps.artifacts_dir.clone(), deps.master.clone());
        let failpoints = Failpoints::from_env();
        let (follow, _) = broadcast::channel(1024);
        let bus = {
            let (store, follow, metrics) = (deps.store.clone(), follow.clone(), metrics.clone());
            Supervisor::start(move |_| EventBus::new(store, follow, metrics))
        };
        let notifier = {
            let (store, metrics, bus) = (deps.store.clone(), metrics.clone(), bus.clone());
            let channels = Channels {
                mailer: deps.mailer,
                webhooks: deps.webhooks,
                store: deps.store.clone(),
                master: deps.master,
                from: deps.notify.from.clone(),
            };
            let settings = deps.notify;
            let failpoints = failpoints.clone();
            Supervisor::start(move |_| {
                Notifier::new(store, settings, channels, bus, metrics, failpoints)
            })
        };
        let reaper = {
            let (store, catalog, bus, metrics) = (
                deps.store.clone(),
                deps.catalog.clone(),
                bus.clone(),
                metrics.clone(),
            );
            let failpoints = failpoints.clone();
            Supervisor::start(move |_| BranchReaper::new(store, catalog, bus, metrics, failpoints))
        };
        let server_for_builds = deps.server.clone();
        let server_for_pipelines = deps.server.clone();
        let domain_for_pipelines = deps.message_domain.clone();
        let notifier_for_pipelines = notifier.clone().recipient();
        let mail_for_builds = MailOut {
            notifier: notifier.clone().recipient(),
            domain: deps.message_domain.clone(),
        };
        let rules = {
            let (store, metrics) = (deps.store.clone(), metrics.clone());
            let (notifier, reaper) = (notifier.clone().recipient(), reaper.clone().recipient());
            let (server, domain) = (deps.server, deps.message_domain);
            Supervisor::start(move |_| {
                RulesEngine::new(store, server, domain, notifier, reaper, metrics, failpoints)
            })
        };
        let builder = {
            let (store, catalog, bus, metrics) = (
                deps.store.clone(),
                deps.catalog.clone(),
                bus.clone(),
                metrics.clone(),
            );
            let (dir, server, master) = (
                deps.builds_dir.clone(),
                server_for_builds,
                master_for_builds,
            );
            let artifacts = artifacts.clone();
            let queue = deps.builds.clone();
            Supervisor::start(move |_| {
                Builder::new(
                    store,
                    catalog,
                    bus,
                    dir,
                    server,
                    master,
                    artifacts.clone(),
                    metrics,
                    queue.clone(),
                    mail_for_builds.clone(),
                )
            })
        };
        let agents_wake = Arc::new(crate::deploy::wakers::AgentWakers::default());
        let deployments = {
            let (store, bus, wake, metrics) = (
                deps.store.clone(),
                bus.clone(),
                agents_wake.clone(),
                metrics.clone(),
            );
            let settings = deps.deploy.clone();
            Supervisor::start(move |_| {
                DeploySupervisor::new(
                    store.clone(),
                    bus.clone(),
                    wake.clone(),
                    metrics.clone(),
                    &settings,
                )
            })
        };
        let outlets = Outlets {
            bus: bus.clone(),
            notifier: notifier_for_pipelines,
            builder: builder.clone(),
            metrics: metrics.clone(),
            deployments: deployments.clone().recipient(),
        };
        let specs = Arc::new(SpecCache::default());
        if let Err(e) = Conductor::init_cursor(&deps.store) {
            tracing::error!(error = %e, "cannot read the pipeline conductor's cursor");
        }
        let conductor = {
            let (store, catalog, outlets, specs) = (
                deps.store.clone(),
                deps.catalog.clone(),
                outlets.clone(),
                specs.clone(),
            );
            Supervisor::start(move |_| {
                Conductor::new(
                    store,
                    catalog,
                    outlets.clone(),
                    server_for_pipelines.clone(),
                    domain_for_pipelines.clone(),
                    specs.clone(),
                )
            })
        };
        bus.do_send(Subscribe(rules.clone().recipient()));
        bus.do_send(Subscribe(builder.clone().recipient()));
        bus.do_send(Subscribe(conductor.clone().recipient()));
        Runtime {
            bus,
            rules,
            reaper,
            builder,
            conductor,
            deployments,
            agents_wake,
            outlets,
            specs,
            builds_dir: deps.builds_dir,
            artifacts,
            follow,
            metrics,
        }
    }

    /// Stores `events` and returns their ids once durable. Waits while the bus's mailbox
    /// is full (backpressure).
    pub async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, String> {
        let gauge = self.metrics.actor_mailbox_depth.with_label_values(&["bus"]);
        gauge.inc();
        let result = self.bus.send(Publish(events)).await;
        if result.is_err() {
            gauge.dec();
        }
        result.map_err(|e| format!("event bus unavailable: {e}"))?
    }

    /// Puts new rules in force.
    pub fn set_rules(&self, rules: Arc<RulesConfig>, emails: Arc<HashMap<String, String>>) {
        self.rules.do_send(SetRules {
            rules: rules.clone(),
            emails,
        });
        self.reaper.do_send(SetSchedules(rules));
    }

    /// Puts new build settings (builds.yaml) in force.
    /// `emails` (user → address, from access.yaml) reach pushers whose guarded branch
    /// was moved back.
    pub fn set_builds(&self, builds: Arc<BuildsConfig>, emails: Arc<HashMap<String, String>>) {
        self.builder.do_send(SetBuilds {
            config: builds,
            emails,
        });
    }

    /// Puts a new deploy.yaml in force for pipelines' deploy actions.
    pub fn set_deploy(&self, config: Arc<crate::config::deploy::DeployConfig>) {
        self.conductor.do_send(SetDeployConfig(config));
    }

    /// Puts new approvers' addresses and groups (access.yaml) in force.
    pub fn set_people(&self, people: People) {
        self.conductor.do_send(SetPeople(Arc::new(people)));
    }

    /// Parsed pipeline definitions, shared with the conductor.
    pub fn pipeline_specs(&self) -> Arc<SpecCache> {
        self.specs.clone()
    }

    /// Passes on what a pipeline command did (events, builds to stop) and lets the
    /// conductor move the executions on.
    pub fn pipeline_changed(
        &self,
        result: Result<Outcome, ControlError>,
    ) -> Result<String, ControlError> {
        let outcome = result?;
        self.outlets.deliver(outcome.effects);
        self.conductor.do_send(Wake);
        Ok(outcome.message)
    }

    /// Lets the deployment supervisor look at its deployments now (one was created or
    /// stopped, an agent reported).
    pub fn deployments_changed(&self) {
        self.deployments.do_send(DeployWake);
    }

    /// Announces what a deployment command stored (events) and lets the supervisor look.
    pub fn deployments_announce(&self, effects: crate::deploy::advance::Effects) {
        if !effects.events.is_empty() {
            self.bus.do_send(crate::bus::Stored(effects.events));
        }
        self.agents_wake.wake(&effects.ready_for);
        self.deployments.do_send(DeployWake);
    }

    /// Wakes agents' polls when lifecycle commands become ready for them.
    pub fn agents_wake(&self) -> Arc<crate::deploy::wakers::AgentWakers> {
        self.agents_wake.clone()
    }

    /// Reaps one repository now.
    pub async fn reap(&self, request: Reap) -> Result<Vec<StaleBranch>, String> {
        self.reaper
            .send(request)
            .await
            .map_err(|e| format!("branch reaper unavailable: {e}"))?
    }

    /// Queues a build.
    pub async fn start_build(&self, request: NewBuild) -> Result<BuildRow, String> {
        self.builder
            .send(StartBuild(request))
            .await
            .map_err(|e| format!("builder unavailable: {e}"))?
    }

    /// Stops a build; `Ok(false)` when it was not running or queued.
    pub async fn stop_build(&self, id: i64) -> Result<bool, String> {
        self.builder
            .send(StopBuild(id))
            .await
            .map_err(|e| format!("builder unavailable: {e}"))?
    }

    /// The zip of an artifact, checked against tampering.
    pub fn artifact(&self, sha256: &str) -> Result<Vec<u8>, String> {
        self.artifacts.get(sha256)
    }

    /// Where build `id` writes its log.
    pub fn build_log(&self, id: i64) -> std::path::PathBuf {
        Builder::log_path(&self.builds_dir, id)
    }

    /// A receiver of the newest event id, for live followers.
    pub fn follow(&self) -> broadcast::Receiver<i64> {
        self.follow.subscribe()
    }
}
