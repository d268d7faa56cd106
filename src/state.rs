//! The state every front door shares, passed explicitly (no globals).

use std::collections::HashMap;
use std::sync::Arc;

use slipway_actors::{AuditEntry, Store};

use crate::adminconfig::{AdminState, ADMIN_REPO};
use crate::datadir::DataDir;
use crate::git::{RepoName, RepoStore};
use crate::hookrpc::PushRegistry;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// Shared server state.
pub struct ServerState {
    /// `slipway.yaml` plus flags.
    pub settings: Settings,
    /// Where everything lives.
    pub data: DataDir,
    /// The bare repositories.
    pub repos: RepoStore,
    /// sqlite.
    pub store: Store,
    /// The admin configuration in force.
    pub admin: AdminState,
    /// Metrics.
    pub metrics: Metrics,
    /// Pushes in progress, by hook token.
    pub pushes: Arc<PushRegistry>,
    /// The actors (events, rules, notifications, branch reaper).
    pub runtime: slipway_actors::Runtime,
    /// Seals and opens secure parameters.
    pub master: slipway_actors::secrets::MasterKey,
}

impl ServerState {
    /// Appends an audit line without blocking the async runtime; a failure is logged.
    pub async fn audit(self: &Arc<Self>, entry: AuditEntry) {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit log"),
            Err(e) => tracing::error!(error = %e, "audit task failed"),
        }
    }

    /// The admin repository's name.
    pub fn admin_repo(&self) -> RepoName {
        RepoName::parse(ADMIN_REPO).expect("`admin` is a valid repository name")
    }

    /// Reloads the admin configuration from the admin repository's main branch.
    pub async fn reload_admin(&self) -> Result<(), crate::adminconfig::LoadError> {
        let path = self.repos.path(&self.admin_repo());
        match crate::adminconfig::load_current(&self.settings.git.binary, &path).await {
            Ok(config) => {
                tracing::info!(
                    commit = %config.commit,
                    users = config.access.users.len(),
                    rules = config.rules.rules.len(),
                    "admin configuration loaded"
                );
                self.runtime
                    .set_rules(config.rules.clone(), Arc::new(config.emails()));
                self.runtime
                    .set_builds(config.builds.clone(), Arc::new(config.emails()));
                self.runtime.set_people(config.people());
                self.runtime.set_deploy(config.deploy.clone());
                self.admin.replace(config);
                self.metrics
                    .config_reloads_total
                    .with_label_values(&["ok"])
                    .inc();
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reloads_total
                    .with_label_values(&["failed"])
                    .inc();
                Err(e)
            }
        }
    }
}

/// Maps key fingerprints to user names, for O(1) lookup at authentication.
pub fn key_index(access: &crate::access::AccessConfig) -> HashMap<String, String> {
    access
        .users
        .iter()
        .flat_map(|(name, user)| {
            user.keys
                .iter()
                .map(move |k| (k.fingerprint.clone(), name.clone()))
        })
        .collect()
}

/// The repositories, as the branch reaper sees them.
pub struct Catalog(pub RepoStore);

impl slipway_actors::reaper::RepoCatalog for Catalog {
    fn list(&self) -> Vec<String> {
        self.0
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    }

    fn path(&self, repo: &str) -> Option<std::path::PathBuf> {
        let name = RepoName::parse(repo).ok()?;
        self.0.exists(&name).then(|| self.0.path(&name))
    }
}
