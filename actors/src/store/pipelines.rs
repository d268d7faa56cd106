//! Pipeline state: which repository owns each pipeline name, executions, their stages
//! and actions (approvals among them), and disabled transitions.
//!
//! Everything that moves an execution happens inside one transaction
//! ([`Store::pipeline_tx`]), together with the events it publishes, the builds it
//! queues and the mail it sends: after a crash either all of a step happened or none.

use serde::Serialize;

use super::builds::{artifacts_in, build_in, queue_build};
use super::{now, ArtifactRow, AuditEntry, BuildRow, Delivery, NewBuild, NewDelivery, NewEvent};
use super::{Store, StoreError};

/// A pipeline name and the repository that owns it.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRow {
    /// The name.
    pub name: String,
    /// The repository whose `pipeline.yml` defines it.
    pub repo: String,
}

/// An execution as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRow {
    /// Server-wide id.
    pub id: i64,
    /// The pipeline's name.
    pub pipeline: String,
    /// The repository.
    pub repo: String,
    /// The source commit.
    pub commit: String,
    /// The pushed ref.
    #[serde(rename = "ref")]
    pub refname: Option<String>,
    /// The push event that started it.
    pub event_id: Option<i64>,
    /// `push`, `manual-rollback`, `automated-rollback`.
    pub trigger: String,
    /// Who started it.
    pub initiator: String,
    /// `STANDARD` or `ROLLBACK`.
    pub kind: String,
    /// A rollback's target execution.
    pub rollback_of: Option<i64>,
    /// `superseded`, `queued` or `parallel`.
    pub mode: String,
    /// The `pipeline.yml` text it runs.
    #[serde(skip)]
    pub definition: String,
    /// IN_PROGRESS, STOPPING, STOPPED, SUCCEEDED, FAILED, SUPERSEDED.
    pub status: String,
    /// Index of the stage it is in or waits to enter.
    pub stage: i64,
    /// In the stage (`true`) or waiting in front of it.
    pub entered: bool,
    /// A rollback runs only this stage.
    pub only_stage: Option<i64>,
    /// `{namespace: {name: value}}`.
    pub variables: serde_json::Value,
    /// `{artifact: {commit} | {sha256, build_id}}`.
    pub artifacts: serde_json::Value,
    /// Unix seconds.
    pub created: f64,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// Why it ended the way it did.
    pub reason: Option<String>,
}

impl ExecutionRow {
    /// Whether it may still change on its own.
    pub fn active(&self) -> bool {
        matches!(self.status.as_str(), "IN_PROGRESS" | "STOPPING")
    }
}

/// An execution to create.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// The pipeline.
    pub pipeline: String,
    /// The repository.
    pub repo: String,
    /// The source commit.
    pub commit: String,
    /// The pushed ref.
    pub refname: Option<String>,
    /// The push event (at most one execution per event).
    pub event_id: Option<i64>,
    /// `push`, `manual-rollback`, `automated-rollback`.
    pub trigger: String,
    /// Who started it.
    pub initiator: String,
    /// `STANDARD` or `ROLLBACK`.
    pub kind: String,
    /// A rollback's target.
    pub rollback_of: Option<i64>,
    /// The execution mode's name.
    pub mode: String,
    /// The `pipeline.yml` text.
    pub definition: String,
    /// The first stage it waits for.
    pub stage: i64,
    /// A rollback runs only this stage.
    pub only_stage: Option<i64>,
    /// Starting variables.
    pub variables: serde_json::Value,
    /// Starting artifacts.
    pub artifacts: serde_json::Value,
}

/// A stage of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    /// The execution.
    pub execution_id: i64,
    /// Index in the definition.
    pub idx: i64,
    /// The stage's name.
    pub name: String,
    /// 1, then 2, … with each retry.
    pub attempt: i64,
    /// IN_PROGRESS, STOPPING, STOPPED, SUCCEEDED, FAILED.
    pub status: String,
    /// Unix seconds.
    pub started: f64,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// Why it failed or stopped.
    pub reason: Option<String>,
}

/// An action of an execution's stage.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    /// The execution.
    pub execution_id: i64,
    /// The stage's index.
    pub stage: i64,
    /// The action's name.
    pub name: String,
    /// `build`, `approval`, `deploy`.
    pub kind: String,
    /// Its run-order.
    pub run_order: i64,
    /// 1, then 2, … with each retry.
    pub attempt: i64,
    /// PENDING, IN_PROGRESS, SUCCEEDED, FAILED, ABANDONED.
    pub status: String,
    /// The build it runs.
    pub build_id: Option<i64>,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// Why it failed, or who decided an approval.
    pub reason: Option<String>,
    /// Approvals: approvers, message, expires, decided_by, comment.
    pub detail: serde_json::Value,
}

impl ActionRow {
    /// Whether it has ended.
    pub fn done(&self) -> bool {
        matches!(self.status.as_str(), "SUCCEEDED" | "FAILED" | "ABANDONED")
    }
}

/// A disabled transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRow {
    /// The pipeline.
    pub pipeline: String,
    /// The stage it leads into.
    pub stage: String,
    /// Why it was disabled.
    pub reason: String,
    /// Who disabled it.
    pub by: String,
    /// Unix seconds.
    pub time: f64,
}

const EXECUTION_COLUMNS: &str = "id, pipeline, repo, commit_id, refname, event_id, trigger, initiator, kind, rollback_of, mode, definition, status, stage, entered, only_stage, variables, artifacts, created, ended, reason";

fn execution_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
    };
    Ok(ExecutionRow {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        repo: r.get(2)?,
        commit: r.get(3)?,
        refname: r.get(4)?,
        event_id: r.get(5)?,
        trigger: r.get(6)?,
        initiator: r.get(7)?,
        kind: r.get(8)?,
        rollback_of: r.get(9)?,
        mode: r.get(10)?,
        definition: r.get(11)?,
        status: r.get(12)?,
        stage: r.get(13)?,
        entered: r.get::<_, i64>(14)? != 0,
        only_stage: r.get(15)?,
        variables: json(16)?,
        artifacts: json(17)?,
        created: r.get(18)?,
        ended: r.get(19)?,
        reason: r.get(20)?,
    })
}

const STAGE_COLUMNS: &str = "execution_id, idx, name, attempt, status, started, ended, reason";

fn stage_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StageRow> {
    Ok(StageRow {
        execution_id: r.get(0)?,
        idx: r.get(1)?,
        name: r.get(2)?,
        attempt: r.get(3)?,
        status: r.get(4)?,
        started: r.get(5)?,
        ended: r.get(6)?,
        reason: r.get(7)?,
    })
}

const ACTION_COLUMNS: &str =
    "execution_id, stage, name, kind, run_order, attempt, status, build_id, started, ended, reason, detail";

fn action_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRow> {
    Ok(ActionRow {
        execution_id: r.get(0)?,
        stage: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        run_order: r.get(4)?,
        attempt: r.get(5)?,
        status: r.get(6)?,
        build_id: r.get(7)?,
        started: r.get(8)?,
        ended: r.get(9)?,
        reason: r.get(10)?,
        detail: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
    })
}

fn transition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransitionRow> {
    Ok(TransitionRow {
        pipeline: r.get(0)?,
        stage: r.get(1)?,
        reason: r.get(2)?,
        by: r.get(3)?,
        time: r.get(4)?,
    })
}

/// The pipeline tables inside one transaction.
pub struct PipelineTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Store {
    /// Runs `f` in one transaction over the pipeline tables; commits when it returns
    /// `Ok`, rolls everything back when it returns `Err`.
    pub fn pipeline_tx<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&PipelineTx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(StoreError::from)?;
        let out = f(&PipelineTx { tx: &tx })?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Every pipeline name and its repository, by name.
    pub fn pipelines(&self) -> Result<Vec<PipelineRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT name, repo FROM pipelines ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(PipelineRow {
                name: r.get(0)?,
                repo: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One execution.
    pub fn execution(&self, id: i64) -> Result<Option<ExecutionRow>, StoreError> {
        self.pipeline_tx(|t| t.execution(id))
    }

    /// The newest executions of `pipeline`, newest first.
    pub fn executions(
        &self,
        pipeline: &str,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(rusqlite::params![pipeline, limit as i64], execution_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The stages of execution `id`.
    pub fn execution_stages(&self, id: i64) -> Result<Vec<StageRow>, StoreError> {
        self.pipeline_tx(|t| t.stages(id))
    }

    /// Every action of execution `id`, by stage.
    pub fn execution_actions(&self, id: i64) -> Result<Vec<ActionRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ACTION_COLUMNS} FROM pipeline_actions WHERE execution_id = ?1 ORDER BY stage, run_order, rowid"
        ))?;
        let rows = stmt.query_map([id], action_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The disabled transitions of `pipeline`.
    pub fn disabled_transitions(&self, pipeline: &str) -> Result<Vec<TransitionRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT pipeline, stage, reason, by_user, time FROM pipeline_transitions WHERE pipeline = ?1 ORDER BY stage",
        )?;
        let rows = stmt.query_map([pipeline], transition_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

impl PipelineTx<'_> {
    /// Starts a savepoint: what follows can be undone alone with [`Self::undo_step`].
    pub fn begin_step(&self) -> Result<(), StoreError> {
        self.tx.execute_batch("SAVEPOINT step")?;
        Ok(())
    }

    /// Keeps what was written since [`Self::begin_step`].
    pub fn end_step(&self) -> Result<(), StoreError> {
        self.tx.execute_batch("RELEASE step")?;
        Ok(())
    }

    /// Undoes what was written since [`Self::begin_step`].
    pub fn undo_step(&self) -> Result<(), StoreError> {
        self.tx.execute_batch("ROLLBACK TO step; RELEASE step")?;
        Ok(())
    }

    /// The repository owning `name`, claiming it for `repo` if nobody has.
    pub fn claim_name(&self, name: &str, repo: &str) -> Result<String, StoreError> {
        self.tx.execute(
            "INSERT OR IGNORE INTO pipelines (name, repo, created) VALUES (?1, ?2, ?3)",
            rusqlite::params![name, repo, now()],
        )?;
        Ok(self
            .tx
            .query_row("SELECT repo FROM pipelines WHERE name = ?1", [name], |r| {
                r.get(0)
            })?)
    }

    /// The repository owning pipeline `name`.
    pub fn owner(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT repo FROM pipelines WHERE name = ?1")?;
        let mut rows = stmt.query_map([name], |r| r.get(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Creates an execution; `None` when its push event already has one.
    pub fn insert_execution(&self, e: &NewExecution) -> Result<Option<ExecutionRow>, StoreError> {
        let inserted = self.tx.execute(
            "INSERT OR IGNORE INTO pipeline_executions
               (pipeline, repo, commit_id, refname, event_id, trigger, initiator, kind, rollback_of, mode,
                definition, status, stage, entered, only_stage, variables, artifacts, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'IN_PROGRESS', ?12, 0, ?13, ?14, ?15, ?16)",
            rusqlite::params![
                e.pipeline,
                e.repo,
                e.commit,
                e.refname,
                e.event_id,
                e.trigger,
                e.initiator,
                e.kind,
                e.rollback_of,
                e.mode,
                e.definition,
                e.stage,
                e.only_stage,
                e.variables.to_string(),
                e.artifacts.to_string(),
                now()
            ],
        )?;
        if inserted == 0 {
            return Ok(None);
        }
        self.execution(self.tx.last_insert_rowid())
    }

    /// One execution.
    pub fn execution(&self, id: i64) -> Result<Option<ExecutionRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE id = ?1"
        ))?;
        let mut rows = stmt.query_map([id], execution_row)?;
        Ok(rows.next().transpose()?)
    }

    /// The newest execution of `pipeline`.
    pub fn latest_execution(&self, pipeline: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1"
        ))?;
        let mut rows = stmt.query_map([pipeline], execution_row)?;
        Ok(rows.next().transpose()?)
    }

    /// Executions that may still move (IN_PROGRESS, STOPPING), oldest first.
    pub fn active_executions(&self) -> Result<Vec<ExecutionRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE status IN ('IN_PROGRESS', 'STOPPING') ORDER BY id"
        ))?;
        let rows = stmt.query_map([], execution_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Writes back an execution's moving parts.
    pub fn update_execution(&self, e: &ExecutionRow) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE pipeline_executions SET status = ?2, stage = ?3, entered = ?4, variables = ?5,
               artifacts = ?6, ended = ?7, reason = ?8 WHERE id = ?1",
            rusqlite::params![
                e.id,
                e.status,
                e.stage,
                e.entered as i64,
                e.variables.to_string(),
                e.artifacts.to_string(),
                e.ended,
                e.reason
            ],
        )?;
        Ok(())
    }

    /// The stages an execution has entered, in order.
    pub fn stages(&self, execution: i64) -> Result<Vec<StageRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {STAGE_COLUMNS} FROM pipeline_stages WHERE execution_id = ?1 ORDER BY idx"
        ))?;
        let rows = stmt.query_map([execution], stage_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One stage of an execution.
    pub fn stage(&self, execution: i64, idx: i64) -> Result<Option<StageRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {STAGE_COLUMNS} FROM pipeline_stages WHERE execution_id = ?1 AND idx = ?2"
        ))?;
        let mut rows = stmt.query_map([execution, idx], stage_row)?;
        Ok(rows.next().transpose()?)
    }

    /// Inserts or replaces a stage.
    pub fn put_stage(&self, s: &StageRow) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT OR REPLACE INTO pipeline_stages (execution_id, idx, name, attempt, status, started, ended, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                s.execution_id,
                s.idx,
                s.name,
                s.attempt,
                s.status,
                s.started,
                s.ended,
                s.reason
            ],
        )?;
        Ok(())
    }

    /// The actions of one stage of an execution, by run-order.
    pub fn actions(&self, execution: i64, stage: i64) -> Result<Vec<ActionRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ACTION_COLUMNS} FROM pipeline_actions WHERE execution_id = ?1 AND stage = ?2 ORDER BY run_order, rowid"
        ))?;
        let rows = stmt.query_map([execution, stage], action_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Inserts or replaces an action.
    pub fn put_action(&self, a: &ActionRow) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO pipeline_actions (execution_id, stage, name, kind, run_order, attempt, status, build_id, started, ended, reason, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(execution_id, stage, name) DO UPDATE SET kind = excluded.kind,
               run_order = excluded.run_order, attempt = excluded.attempt, status = excluded.status,
               build_id = excluded.build_id, started = excluded.started, ended = excluded.ended,
               reason = excluded.reason, detail = excluded.detail",
            rusqlite::params![
                a.execution_id,
                a.stage,
                a.name,
                a.kind,
                a.run_order,
                a.attempt,
                a.status,
                a.build_id,
                a.started,
                a.ended,
                a.reason,
                a.detail.to_string()
            ],
        )?;
        Ok(())
    }

    /// The disabled transition into `stage` of `pipeline`, if it is disabled.
    pub fn transition(
        &self,
        pipeline: &str,
        stage: &str,
    ) -> Result<Option<TransitionRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT pipeline, stage, reason, by_user, time FROM pipeline_transitions WHERE pipeline = ?1 AND stage = ?2",
        )?;
        let mut rows = stmt.query_map([pipeline, stage], transition_row)?;
        Ok(rows.next().transpose()?)
    }

    /// Disables (`Some(reason)`) or enables (`None`) the transition into `stage`;
    /// answers whether anything changed.
    pub fn set_transition(
        &self,
        pipeline: &str,
        stage: &str,
        disabled: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let changed = match disabled {
            Some((reason, by)) => self.tx.execute(
                "INSERT INTO pipeline_transitions (pipeline, stage, reason, by_user, time) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(pipeline, stage) DO UPDATE SET reason = excluded.reason, by_user = excluded.by_user, time = excluded.time",
                rusqlite::params![pipeline, stage, reason, by, now()],
            )?,
            None => self.tx.execute(
                "DELETE FROM pipeline_transitions WHERE pipeline = ?1 AND stage = ?2",
                [pipeline, stage],
            )?,
        };
        Ok(changed > 0)
    }

    /// The newest execution of `pipeline` (older than `before`, when given) that
    /// succeeded in the stage named `stage` and is not itself a rollback, with that
    /// stage's index in its own definition.
    pub fn last_success_in_stage(
        &self,
        pipeline: &str,
        stage: &str,
        before: Option<i64>,
    ) -> Result<Option<(ExecutionRow, i64)>, StoreError> {
        let found: Option<(i64, i64)> = self
            .tx
            .query_row(
                "SELECT e.id, s.idx FROM pipeline_executions e JOIN pipeline_stages s ON s.execution_id = e.id
                 WHERE e.pipeline = ?1 AND e.kind = 'STANDARD' AND s.name = ?2
                   AND s.status = 'SUCCEEDED' AND (?3 IS NULL OR e.id < ?3)
                 ORDER BY e.id DESC LIMIT 1",
                rusqlite::params![pipeline, stage, before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        match found {
            Some((id, idx)) => Ok(self.execution(id)?.map(|e| (e, idx))),
            None => Ok(None),
        }
    }

    /// Whether an execution of `pipeline` newer than `id` has entered the stage named
    /// `stage`.
    pub fn newer_entered(&self, pipeline: &str, id: i64, stage: &str) -> Result<bool, StoreError> {
        Ok(self.tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM pipeline_executions e JOIN pipeline_stages s ON s.execution_id = e.id
               WHERE e.pipeline = ?1 AND e.id > ?2 AND s.name = ?3)",
            rusqlite::params![pipeline, id, stage],
            |r| r.get(0),
        )?)
    }

    /// Queues a build (see [`Store::build_queue`]).
    pub fn queue_build(&self, request: &NewBuild) -> Result<Option<BuildRow>, StoreError> {
        queue_build(self.tx, request)
    }

    /// Ends build `id` as STOPPED if it has not started; answers whether it had not
    /// (a running build must be stopped by the builder).
    pub fn stop_queued_build(&self, id: i64, why: &str) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "UPDATE builds SET status = 'STOPPED', detail = ?2, ended = ?3 WHERE id = ?1 AND status = 'QUEUED'",
            rusqlite::params![id, why, now()],
        )? > 0)
    }

    /// The deployment tables in this same transaction (a stopped pipeline stops its
    /// deploy actions' deployments).
    pub fn deploy(&self) -> super::DeployTx<'_> {
        super::deployments::DeployTx::over(self.tx)
    }

    /// Creates a deployment (a pipeline's deploy action).
    pub fn insert_deployment(
        &self,
        d: &super::NewDeployment,
    ) -> Result<super::DeploymentRow, StoreError> {
        super::deployments::insert_in(self.tx, d)
    }

    /// One deployment.
    pub fn deployment(&self, id: i64) -> Result<Option<super::DeploymentRow>, StoreError> {
        super::deployments::deployment_in(self.tx, id)
    }

    /// One build.
    pub fn build(&self, id: i64) -> Result<Option<BuildRow>, StoreError> {
        build_in(self.tx, id)
    }

    /// A build's artifacts.
    pub fn artifacts(&self, build_id: i64) -> Result<Vec<ArtifactRow>, StoreError> {
        artifacts_in(self.tx, build_id)
    }

    /// Appends events; the caller announces them on the bus after the commit.
    pub fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        super::events::insert_in(self.tx, events)
    }

    /// Queues mail (see [`Store::enqueue`]).
    pub fn enqueue(
        &self,
        deliveries: &[NewDelivery],
        domain: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        super::outbox::insert_deliveries(self.tx, deliveries, domain)
    }

    /// Moves `consumer`'s cursor forward to `last_id`.
    pub fn advance_cursor(&self, consumer: &str, last_id: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO cursors (consumer, last_id) VALUES (?1, ?2)
             ON CONFLICT(consumer) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
            rusqlite::params![consumer, last_id],
        )?;
        Ok(())
    }

    /// Writes an audit line.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        super::audit::insert_in(self.tx, entry)
    }
}
