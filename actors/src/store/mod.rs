//! The sqlite store: one database file in WAL mode, opened once per process.
//!
//! rusqlite is blocking. The store guards its connection with a `std::sync::Mutex`
//! (nothing awaits while it is held); async callers run store calls inside
//! `tokio::task::spawn_blocking`. Schema changes are numbered migrations in
//! [`migrations`], applied in order at open and recorded in `schema_version`.

mod agents;
mod alerts;
mod audit;
mod builds;
mod cache;
mod deployments;
mod events;
mod migrations;
mod outbox;
mod params;
mod pipelines;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use agents::{secret_hash, AgentRow, RegisterRefused};
pub use alerts::AlertUpdate;
pub use audit::{AuditEntry, AuditFilter, AuditKind};
pub use builds::{ArtifactRef, ArtifactRow, BuildPlan, BuildRow, NewBuild, PlanInput};
pub use cache::CacheRow;
pub use deployments::{
    AgentPlacement, CommandReport, DeployTx, DeploymentRow, EventRow, GroupHostRow, HostRow,
    NewDeployment,
};
pub use events::{Event, EventFilter, NewEvent};
pub use outbox::{Delivery, NewDelivery, OutboxStats};
pub use params::ParamRow;
pub use pipelines::{
    ActionRow, ExecutionRow, NewExecution, PipelineRow, PipelineTx, StageRow, TransitionRow,
};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or configured.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The database file.
        path: String,
        /// What sqlite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer slipway.
    #[error("the database is at schema version {found}, newer than this slipway knows ({known}); upgrade slipway")]
    TooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A value could not be encoded for storage.
    #[error("cannot encode a value for the database: {0}")]
    Encode(String),
    /// Any other sqlite failure.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = rusqlite::Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // The hot statements (agents' polls, the passes) stay prepared.
        conn.set_prepared_statement_cache_capacity(128);
        let mut conn = conn;
        migrations::apply(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?)
    }

    /// Holds the database lock (tests: to stall every store call).
    #[cfg(test)]
    pub(crate) fn hold(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        // A poisoned lock only means another thread panicked mid-call; sqlite's own
        // transaction rollback keeps the data consistent, so keep serving.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;

/// Now, in unix seconds (the stored time format of every table but events).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

use unix_now as now;
