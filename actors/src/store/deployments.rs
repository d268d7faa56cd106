//! Deployments: a revision carried to a group's hosts, with per-host, per-lifecycle-event
//! status, and each group's host health (what the last deployment left).
//!
//! The supervisor moves deployments in one transaction per pass
//! ([`Store::deploy_tx`]); agents take and report commands (one lifecycle event each)
//! through [`Store::next_command`], [`Store::ack_command`] and
//! [`Store::complete_command`].

use serde::Serialize;

use super::{now, AgentRow, AuditEntry, NewEvent, Store, StoreError};

/// A deployment as stored.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentRow {
    /// Server-wide id (agents see `d-ID`).
    pub id: i64,
    /// The application.
    pub application: String,
    /// The deployment group.
    #[serde(rename = "group")]
    pub group_name: String,
    /// The build whose artifact it deploys.
    pub build_id: Option<i64>,
    /// That artifact's name.
    pub artifact: Option<String>,
    /// The revision bundle (a sealed artifact zip).
    pub bundle_sha256: String,
    /// The commit the build was of.
    pub commit: String,
    /// CREATED, QUEUED, IN_PROGRESS, BAKING, SUCCEEDED, FAILED, STOPPED.
    pub status: String,
    /// A user, `rollback`, or `pipeline/NAME`.
    pub creator: String,
    /// The deployment this one rolls back.
    pub rollback_of: Option<i64>,
    /// The deployment that rolled this one back.
    pub rollback_id: Option<i64>,
    /// The group's settings when it was created (JSON).
    pub settings: serde_json::Value,
    /// Unix seconds.
    pub created: f64,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// While BAKING: when the bake ends.
    pub bake_until: Option<f64>,
    /// Why it ended so.
    pub reason: Option<String>,
}

impl DeploymentRow {
    /// Whether it may still change.
    pub fn active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATED" | "QUEUED" | "IN_PROGRESS" | "BAKING"
        )
    }
}

/// A deployment to create.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// The application.
    pub application: String,
    /// The group.
    pub group_name: String,
    /// The build.
    pub build_id: Option<i64>,
    /// The artifact's name.
    pub artifact: Option<String>,
    /// The bundle.
    pub bundle_sha256: String,
    /// The commit.
    pub commit: String,
    /// Who or what.
    pub creator: String,
    /// What it rolls back.
    pub rollback_of: Option<i64>,
    /// The group's settings (JSON).
    pub settings: serde_json::Value,
}

/// One host of a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    /// The deployment.
    pub deployment_id: i64,
    /// The agent.
    pub agent: String,
    /// PENDING, IN_PROGRESS, SUCCEEDED, FAILED, SKIPPED.
    pub status: String,
    /// Whether it was healthy before this deployment.
    pub healthy_before: bool,
    /// The revision it ran before.
    pub revision_before: Option<String>,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
}

/// One lifecycle event on one host (the command an agent carries out).
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// The command id.
    pub id: i64,
    /// The deployment.
    pub deployment_id: i64,
    /// The agent.
    pub agent: String,
    /// The lifecycle event.
    pub event: String,
    /// Its place in the host's order.
    pub seq: i64,
    /// PENDING, READY, DISPATCHED, IN_PROGRESS, SUCCEEDED, FAILED, SKIPPED, CANCELLED.
    pub status: String,
    /// Unix seconds: when it last became READY. Kept by the store
    /// ([`DeployTx::update_event`] stamps it on the change to READY); what callers put
    /// here is not written.
    pub ready: Option<f64>,
    /// Unix seconds.
    pub dispatched: Option<f64>,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// The agent's error code (0 = succeeded).
    pub error_code: Option<i64>,
    /// The script that failed.
    pub script: Option<String>,
    /// What the agent said.
    pub message: Option<String>,
    /// The last 2 KB of output.
    pub log: Option<String>,
}

/// A group host's state after its last deployment.
#[derive(Debug, Clone, Serialize)]
pub struct GroupHostRow {
    /// The agent.
    pub agent: String,
    /// Whether its last deployment succeeded.
    pub healthy: bool,
    /// The revision it runs.
    pub revision: Option<String>,
}

/// What an agent reported for a command.
#[derive(Debug, Clone)]
pub struct CommandReport {
    /// SUCCEEDED, FAILED or SKIPPED.
    pub status: String,
    /// The error code.
    pub error_code: i64,
    /// The failing script.
    pub script: Option<String>,
    /// The message.
    pub message: Option<String>,
    /// The log tail.
    pub log: Option<String>,
}

const DEPLOYMENT_COLUMNS: &str = "id, application, group_name, build_id, artifact, bundle_sha256, commit_id, status, creator, rollback_of, rollback_id, settings, created, started, ended, bake_until, reason";

fn deployment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(0)?,
        application: r.get(1)?,
        group_name: r.get(2)?,
        build_id: r.get(3)?,
        artifact: r.get(4)?,
        bundle_sha256: r.get(5)?,
        commit: r.get(6)?,
        status: r.get(7)?,
        creator: r.get(8)?,
        rollback_of: r.get(9)?,
        rollback_id: r.get(10)?,
        settings: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
        created: r.get(12)?,
        started: r.get(13)?,
        ended: r.get(14)?,
        bake_until: r.get(15)?,
        reason: r.get(16)?,
    })
}

const HOST_COLUMNS: &str =
    "deployment_id, agent, status, healthy_before, revision_before, started, ended, reason";

fn host_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        deployment_id: r.get(0)?,
        agent: r.get(1)?,
        status: r.get(2)?,
        healthy_before: r.get::<_, i64>(3)? != 0,
        revision_before: r.get(4)?,
        started: r.get(5)?,
        ended: r.get(6)?,
        reason: r.get(7)?,
    })
}

const EVENT_COLUMNS: &str = "id, deployment_id, agent, event, seq, status, dispatched, started, ended, error_code, script, message, log, ready";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        deployment_id: r.get(1)?,
        agent: r.get(2)?,
        event: r.get(3)?,
        seq: r.get(4)?,
        status: r.get(5)?,
        dispatched: r.get(6)?,
        started: r.get(7)?,
        ended: r.get(8)?,
        error_code: r.get(9)?,
        script: r.get(10)?,
        message: r.get(11)?,
        log: r.get(12)?,
        ready: r.get(13)?,
    })
}

fn optional<T>(r: rusqlite::Result<T>) -> rusqlite::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates a deployment (CREATED) on `conn`.
pub(super) fn insert_in(
    conn: &rusqlite::Connection,
    d: &NewDeployment,
) -> Result<DeploymentRow, StoreError> {
    conn.execute(
        "INSERT INTO deployments (application, group_name, build_id, artifact, bundle_sha256, commit_id, status, creator, rollback_of, settings, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'CREATED', ?7, ?8, ?9, ?10)",
        rusqlite::params![
            d.application,
            d.group_name,
            d.build_id,
            d.artifact,
            d.bundle_sha256,
            d.commit,
            d.creator,
            d.rollback_of,
            d.settings.to_string(),
            now()
        ],
    )?;
    deployment_in(conn, conn.last_insert_rowid())?
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

/// One deployment, read on `conn`.
pub(super) fn deployment_in(
    conn: &rusqlite::Connection,
    id: i64,
) -> Result<Option<DeploymentRow>, StoreError> {
    Ok(optional(conn.query_row(
        &format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"),
        [id],
        deployment_row,
    ))?)
}

/// The deployment tables inside one transaction.
pub struct DeployTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

/// Where an agent stands in one deployment group (for `agent list`).
#[derive(Debug, Clone, Serialize)]
pub struct AgentPlacement {
    /// The agent.
    #[serde(skip)]
    pub agent: String,
    /// The application.
    pub application: String,
    /// The group.
    pub group: String,
    /// Whether its last deployment in the group succeeded.
    pub healthy: bool,
    /// The revision (bundle SHA-256) it runs, when known.
    pub revision: Option<String>,
    /// The commit of that revision, when known.
    pub commit: Option<String>,
    /// The last deployment that reached it.
    pub deployment: Option<i64>,
}

impl Store {
    /// Every agent's place in every group it was deployed to, by agent.
    pub fn agent_placements(&self) -> Result<Vec<AgentPlacement>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT g.agent, g.application, g.group_name, g.healthy, g.revision, g.deployment_id,
                    (SELECT d.commit_id FROM deployments d WHERE d.bundle_sha256 = g.revision ORDER BY d.id DESC LIMIT 1)
             FROM group_hosts g ORDER BY g.agent, g.application, g.group_name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AgentPlacement {
                agent: r.get(0)?,
                application: r.get(1)?,
                group: r.get(2)?,
                healthy: r.get::<_, i64>(3)? != 0,
                revision: r.get(4)?,
                deployment: r.get(5)?,
                commit: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Runs `f` in one transaction over the deployment tables (commit on `Ok`).
    pub fn deploy_tx<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&DeployTx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(StoreError::from)?;
        let out = f(&DeployTx { tx: &tx })?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// One deployment.
    pub fn deployment(&self, id: i64) -> Result<Option<DeploymentRow>, StoreError> {
        self.deploy_tx(|t| t.deployment(id))
    }

    /// The newest deployments, newest first.
    pub fn deployments_recent(&self, limit: usize) -> Result<Vec<DeploymentRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], deployment_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The next command for `agent`: its oldest READY event, now DISPATCHED. The agent
    /// is heard from as it is handed the command (its poll may have waited long).
    pub fn next_command(&self, agent: &str) -> Result<Option<EventRow>, StoreError> {
        self.deploy_tx(|t| {
            let mut stmt = t.tx.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM host_events WHERE agent = ?1 AND status = 'READY' ORDER BY id LIMIT 1"
            ))?;
            let found = optional(stmt.query_row([agent], event_row))?;
            drop(stmt);
            let Some(mut e) = found else { return Ok(None) };
            e.status = "DISPATCHED".into();
            e.dispatched = Some(now());
            t.update_event(&e)?;
            t.heard_from(agent)?;
            Ok(Some(e))
        })
    }

    /// Fails the commands `agent` has IN_PROGRESS: an agent runs one command at a time
    /// and asks for work only between commands, so a poll means it no longer runs them
    /// (it restarted and lost its record of them). Answers how many were failed.
    pub fn fail_orphaned_commands(&self, agent: &str) -> Result<usize, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "UPDATE host_events SET status = 'FAILED', ended = ?2, error_code = 7, message = ?3
             WHERE agent = ?1 AND status = 'IN_PROGRESS'",
        )?;
        Ok(stmt.execute(rusqlite::params![
            agent,
            now(),
            "the agent asked for new work while this event was running: it restarted and lost its record of it (FAILED_AFTER_RESTART); check the host and deploy again"
        ])?)
    }

    /// `agent` acknowledges command `id`: a dispatched command becomes IN_PROGRESS;
    /// answers its status (`None`: not this agent's command). The agent is heard from.
    pub fn ack_command(&self, agent: &str, id: i64) -> Result<Option<String>, StoreError> {
        self.deploy_tx(|t| {
            let Some(mut e) = t.event(id)?.filter(|e| e.agent == agent) else {
                return Ok(None);
            };
            t.heard_from(agent)?;
            if matches!(e.status.as_str(), "DISPATCHED" | "READY") {
                e.status = "IN_PROGRESS".into();
                e.started = Some(now());
                t.update_event(&e)?;
            }
            Ok(Some(e.status))
        })
    }

    /// `agent` says it is still running command `id` (a heartbeat, so that a long
    /// lifecycle event does not look like a lost agent); answers the command's status
    /// (`None`: not this agent's command).
    pub fn command_heartbeat(&self, agent: &str, id: i64) -> Result<Option<String>, StoreError> {
        self.deploy_tx(|t| {
            let Some(e) = t.event(id)?.filter(|e| e.agent == agent) else {
                return Ok(None);
            };
            t.heard_from(agent)?;
            Ok(Some(e.status))
        })
    }

    /// `agent` reports command `id` done; answers whether it was taken (`false`: not
    /// its command, or already ended).
    pub fn complete_command(
        &self,
        agent: &str,
        id: i64,
        report: &CommandReport,
    ) -> Result<bool, StoreError> {
        self.deploy_tx(|t| {
            let Some(mut e) = t.event(id)?.filter(|e| e.agent == agent) else {
                return Ok(false);
            };
            if !matches!(e.status.as_str(), "DISPATCHED" | "IN_PROGRESS" | "READY") {
                return Ok(false);
            }
            e.status = report.status.clone();
            e.ended = Some(now());
            e.error_code = Some(report.error_code);
            e.script = report.script.clone();
            e.message = report.message.clone();
            e.log = report.log.clone();
            t.update_event(&e)?;
            Ok(true)
        })
    }

    /// The deployment `agent` is a host of, with id `id`.
    pub fn agent_deployment(
        &self,
        agent: &str,
        id: i64,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        self.deploy_tx(|t| {
            let host = t.hosts(id)?.into_iter().any(|h| h.agent == agent);
            if !host {
                return Ok(None);
            }
            t.deployment(id)
        })
    }

    /// Whether `agent` is a host of an active deployment of bundle `sha256`.
    pub fn agent_may_fetch(&self, agent: &str, sha256: &str) -> Result<bool, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM deployments d JOIN deployment_hosts h ON h.deployment_id = d.id
               WHERE h.agent = ?1 AND d.bundle_sha256 = ?2 AND d.status IN ('IN_PROGRESS', 'BAKING'))",
            [agent, sha256],
            |r| r.get(0),
        )?)
    }
}

impl<'a> DeployTx<'a> {
    /// Over an open transaction.
    pub(super) fn over(tx: &'a rusqlite::Transaction<'a>) -> DeployTx<'a> {
        DeployTx { tx }
    }
}

impl DeployTx<'_> {
    /// Creates a deployment (CREATED).
    pub fn insert_deployment(&self, d: &NewDeployment) -> Result<DeploymentRow, StoreError> {
        insert_in(self.tx, d)
    }

    /// One deployment.
    pub fn deployment(&self, id: i64) -> Result<Option<DeploymentRow>, StoreError> {
        deployment_in(self.tx, id)
    }

    /// Deployments that may still move, oldest first.
    pub fn active_deployments(&self) -> Result<Vec<DeploymentRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE status IN ('CREATED', 'QUEUED', 'IN_PROGRESS', 'BAKING') ORDER BY id"
        ))?;
        let rows = stmt.query_map([], deployment_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Writes back a deployment's moving parts.
    pub fn update_deployment(&self, d: &DeploymentRow) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached("UPDATE deployments SET status = ?2, rollback_id = ?3, started = ?4, ended = ?5, bake_until = ?6, reason = ?7 WHERE id = ?1")?;
        stmt.execute(rusqlite::params![
            d.id,
            d.status,
            d.rollback_id,
            d.started,
            d.ended,
            d.bake_until,
            d.reason
        ])?;
        Ok(())
    }

    /// The newest deployment of the group that succeeded (older than `before`).
    pub fn last_success(
        &self,
        application: &str,
        group: &str,
        before: Option<i64>,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE application = ?1 AND group_name = ?2
               AND status = 'SUCCEEDED' AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT 1"
        ))?;
        Ok(optional(stmt.query_row(
            rusqlite::params![application, group, before],
            deployment_row,
        ))?)
    }

    /// The hosts of a deployment.
    pub fn hosts(&self, deployment: i64) -> Result<Vec<HostRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {HOST_COLUMNS} FROM deployment_hosts WHERE deployment_id = ?1 ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([deployment], host_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Inserts or replaces a host.
    pub fn put_host(&self, h: &HostRow) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached("INSERT INTO deployment_hosts (deployment_id, agent, status, healthy_before, revision_before, started, ended, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(deployment_id, agent) DO UPDATE SET status = excluded.status, started = excluded.started,
               ended = excluded.ended, reason = excluded.reason")?;
        stmt.execute(rusqlite::params![
            h.deployment_id,
            h.agent,
            h.status,
            h.healthy_before as i64,
            h.revision_before,
            h.started,
            h.ended,
            h.reason
        ])?;
        Ok(())
    }

    /// The lifecycle events of a deployment, by host and order.
    pub fn events(&self, deployment: i64) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM host_events WHERE deployment_id = ?1 ORDER BY agent, seq"
        ))?;
        let rows = stmt.query_map([deployment], event_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One event.
    pub fn event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        Ok(optional(
            self.tx
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM host_events WHERE id = ?1"
                ))?
                .query_row([id], event_row),
        )?)
    }

    /// Adds a PENDING event.
    pub fn insert_event(
        &self,
        deployment: i64,
        agent: &str,
        event: &str,
        seq: i64,
    ) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached("INSERT INTO host_events (deployment_id, agent, event, seq, status) VALUES (?1, ?2, ?3, ?4, 'PENDING')")?;
        stmt.execute(rusqlite::params![deployment, agent, event, seq])?;
        Ok(())
    }

    /// Writes back an event; an event that becomes READY (from any other status) has
    /// its `ready` time set to now.
    pub fn update_event(&self, e: &EventRow) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached("UPDATE host_events SET status = ?2, dispatched = ?3, started = ?4, ended = ?5, error_code = ?6,
               script = ?7, message = ?8, log = ?9,
               ready = CASE WHEN ?2 = 'READY' AND status <> 'READY' THEN ?10 ELSE ready END
             WHERE id = ?1")?;
        stmt.execute(rusqlite::params![
            e.id,
            e.status,
            e.dispatched,
            e.started,
            e.ended,
            e.error_code,
            e.script,
            e.message,
            e.log,
            now()
        ])?;
        Ok(())
    }

    /// The group's hosts and their health.
    pub fn group_hosts(
        &self,
        application: &str,
        group: &str,
    ) -> Result<Vec<GroupHostRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT agent, healthy, revision FROM group_hosts WHERE application = ?1 AND group_name = ?2 ORDER BY agent",
        )?;
        let rows = stmt.query_map([application, group], |r| {
            Ok(GroupHostRow {
                agent: r.get(0)?,
                healthy: r.get::<_, i64>(1)? != 0,
                revision: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records a group host's health and revision after a deployment.
    pub fn set_group_host(
        &self,
        application: &str,
        group: &str,
        agent: &str,
        healthy: bool,
        revision: Option<&str>,
        deployment: i64,
    ) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached("INSERT INTO group_hosts (application, group_name, agent, healthy, revision, deployment_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(application, group_name, agent) DO UPDATE SET healthy = excluded.healthy,
               revision = COALESCE(excluded.revision, group_hosts.revision), deployment_id = excluded.deployment_id")?;
        stmt.execute(rusqlite::params![
            application,
            group,
            agent,
            healthy as i64,
            revision,
            deployment
        ])?;
        Ok(())
    }

    /// Records that `agent` was heard from now.
    pub fn heard_from(&self, agent: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE agents SET last_seen = ?2 WHERE name = ?1")?
            .execute(rusqlite::params![agent, now()])?;
        Ok(())
    }

    /// Every registered agent.
    pub fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT name, tags, version, registered, last_seen FROM agents ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AgentRow {
                name: r.get(0)?,
                tags: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
                version: r.get(2)?,
                registered: r.get(3)?,
                last_seen: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Appends events (announced on the bus after the commit).
    pub fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        super::events::insert_in(self.tx, events)
    }

    /// Writes an audit line.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        super::audit::insert_in(self.tx, entry)
    }
}
