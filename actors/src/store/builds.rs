//! Build records: queued, running and finished builds.

use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// A build as stored.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRow {
    /// Server-wide id.
    pub id: i64,
    /// The repository.
    pub repo: String,
    /// Number within the repository (1, 2, …).
    pub number: i64,
    /// The commit built.
    pub commit: String,
    /// The ref that was built, if any.
    #[serde(rename = "ref")]
    pub refname: Option<String>,
    /// The ref's previous commit.
    pub prev_commit: Option<String>,
    /// Who or what started it.
    pub initiator: String,
    /// QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, FAULT, TIMED_OUT, STOPPED.
    pub status: String,
    /// Per-phase status and duration (JSON).
    pub phases: serde_json::Value,
    /// Exported variables (JSON).
    pub exported: serde_json::Value,
    /// Unix seconds.
    pub queued: f64,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Unix seconds.
    pub ended: Option<f64>,
    /// Why it faulted, and the like.
    pub detail: Option<String>,
    /// The push event that triggered it, if one did.
    pub event_id: Option<i64>,
    /// Test report summaries (JSON list), from the buildspec's `reports`.
    pub reports: serde_json::Value,
    /// What a pipeline action asked for (none for other builds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<BuildPlan>,
    /// Why a stored plan could not be read (the build must not run without it).
    #[serde(skip)]
    pub plan_error: Option<String>,
}

/// A build a pipeline's action asks for: which buildspec, in which artifacts, with
/// which extra variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildPlan {
    /// The pipeline.
    pub pipeline: String,
    /// The execution id.
    pub execution: i64,
    /// The stage's name.
    pub stage: String,
    /// The action's name.
    pub action: String,
    /// The buildspec's path in the first input.
    pub buildspec: String,
    /// Variables set on top of the buildspec's (values already substituted).
    pub env: Vec<(String, String)>,
    /// The input artifacts; the first is the source directory.
    pub inputs: Vec<PlanInput>,
}

/// One input artifact of a pipeline build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInput {
    /// The artifact's name in the pipeline.
    pub name: String,
    /// Where its files come from.
    #[serde(flatten)]
    pub from: ArtifactRef,
}

/// Where an artifact's files are: a commit's tree (`source`) or a build's zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArtifactRef {
    /// The tree of a commit of the pipeline's repository.
    Commit {
        /// The commit id.
        commit: String,
    },
    /// A sealed zip made by a build.
    Zip {
        /// The blob's name.
        sha256: String,
        /// The build that made it.
        build_id: i64,
    },
}

/// A build to queue.
#[derive(Debug, Clone, Default)]
pub struct NewBuild {
    /// The repository.
    pub repo: String,
    /// The commit to build.
    pub commit: String,
    /// The ref it was pushed to.
    pub refname: Option<String>,
    /// The ref's previous commit.
    pub prev_commit: Option<String>,
    /// The push event that asked for it.
    pub event_id: Option<i64>,
    /// Who or what started it.
    pub initiator: String,
    /// What a pipeline action asks for.
    pub plan: Option<BuildPlan>,
}

const COLUMNS: &str = "id, repo, number, commit_id, refname, prev_id, initiator, status, phases, exported, queued, started, ended, detail, event_id, reports, plan";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRow> {
    let plan: Option<Result<BuildPlan, String>> = r
        .get::<_, Option<String>>(16)?
        .map(|p| serde_json::from_str(&p).map_err(|e| e.to_string()));
    let phases: String = r.get(8)?;
    let exported: String = r.get(9)?;
    Ok(BuildRow {
        id: r.get(0)?,
        repo: r.get(1)?,
        number: r.get(2)?,
        commit: r.get(3)?,
        refname: r.get(4)?,
        prev_commit: r.get(5)?,
        initiator: r.get(6)?,
        status: r.get(7)?,
        phases: serde_json::from_str(&phases).unwrap_or_default(),
        exported: serde_json::from_str(&exported).unwrap_or_default(),
        queued: r.get(10)?,
        started: r.get(11)?,
        ended: r.get(12)?,
        detail: r.get(13)?,
        event_id: r.get(14)?,
        reports: serde_json::from_str(&r.get::<_, String>(15)?).unwrap_or_default(),
        plan: plan.as_ref().and_then(|p| p.as_ref().ok()).cloned(),
        plan_error: plan.and_then(|p| p.err()),
    })
}

impl Store {
    /// Queues a build and returns it. With `event_id`, a second build for the same
    /// event is not queued (`None`): replaying the event log cannot double a build.
    pub fn build_queue(&self, request: &NewBuild) -> Result<Option<BuildRow>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let build = queue_build(&tx, request)?;
        tx.commit()?;
        Ok(build)
    }

    /// One build.
    pub fn build(&self, id: i64) -> Result<Option<BuildRow>, StoreError> {
        build_in(&self.lock(), id)
    }

    /// Builds with `status`, oldest first.
    pub fn builds_with_status(&self, status: &str) -> Result<Vec<BuildRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM builds WHERE status = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([status], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest builds (of `repo` when given), newest first.
    pub fn builds_recent(
        &self,
        repo: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BuildRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM builds WHERE (?1 IS NULL OR repo = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(rusqlite::params![repo, status, limit as i64], row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Marks a build started; answers whether it was still queued (a build stopped
    /// before it started stays stopped).
    pub fn build_started(&self, id: i64) -> Result<bool, StoreError> {
        let conn = self.lock();
        Ok(conn.execute(
            "UPDATE builds SET status = 'IN_PROGRESS', started = ?2 WHERE id = ?1 AND status = 'QUEUED'",
            rusqlite::params![id, now()],
        )? > 0)
    }

    /// Stores the test report summaries of build `id`.
    pub fn build_reports(&self, id: i64, reports: &serde_json::Value) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE builds SET reports = ?2 WHERE id = ?1",
            rusqlite::params![id, reports.to_string()],
        )?;
        Ok(())
    }

    /// Records a build's end.
    pub fn build_finished(
        &self,
        id: i64,
        status: &str,
        phases: &serde_json::Value,
        exported: &serde_json::Value,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        finish_in(&self.lock(), id, status, phases, exported, detail)
    }

    /// Records a build's end and the event that tells of it in one transaction (so the
    /// event is never lost, and nobody sees the end before the event exists); answers
    /// the event's id.
    pub fn build_finished_with_event(
        &self,
        id: i64,
        status: &str,
        phases: &serde_json::Value,
        exported: &serde_json::Value,
        detail: Option<&str>,
        event: &super::NewEvent,
    ) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        finish_in(&tx, id, status, phases, exported, detail)?;
        let ids = super::events::insert_in(&tx, std::slice::from_ref(event))?;
        tx.commit()?;
        Ok(ids[0])
    }
}

fn finish_in(
    conn: &rusqlite::Connection,
    id: i64,
    status: &str,
    phases: &serde_json::Value,
    exported: &serde_json::Value,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE builds SET status = ?2, phases = ?3, exported = ?4, detail = ?5, ended = ?6 WHERE id = ?1",
        rusqlite::params![id, status, phases.to_string(), exported.to_string(), detail, now()],
    )?;
    Ok(())
}

/// Queues a build inside `tx` (see [`Store::build_queue`]).
pub(super) fn queue_build(
    tx: &rusqlite::Transaction<'_>,
    request: &NewBuild,
) -> Result<Option<BuildRow>, StoreError> {
    let number: i64 = tx.query_row(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE repo = ?1",
        [&request.repo],
        |r| r.get(0),
    )?;
    let plan = match &request.plan {
        Some(p) => Some(serde_json::to_string(p).map_err(|e| StoreError::Encode(e.to_string()))?),
        None => None,
    };
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO builds (repo, number, commit_id, refname, prev_id, event_id, initiator, status, queued, plan)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'QUEUED', ?8, ?9)",
        rusqlite::params![
            request.repo,
            number,
            request.commit,
            request.refname,
            request.prev_commit,
            request.event_id,
            request.initiator,
            now(),
            plan
        ],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    let id = tx.last_insert_rowid();
    Ok(Some(
        build_in(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?,
    ))
}

/// One build, read inside a transaction.
pub(super) fn build_in(
    conn: &rusqlite::Connection,
    id: i64,
) -> Result<Option<BuildRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM builds WHERE id = ?1"))?;
    let mut rows = stmt.query_map([id], row)?;
    Ok(rows.next().transpose()?)
}

/// The artifacts of a build, read inside a transaction.
pub(super) fn artifacts_in(
    conn: &rusqlite::Connection,
    build_id: i64,
) -> Result<Vec<ArtifactRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, sha256, size, files FROM artifacts WHERE build_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([build_id], |r| {
        Ok(ArtifactRow {
            name: r.get(0)?,
            sha256: r.get(1)?,
            size: r.get(2)?,
            files: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One stored artifact of a build.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRow {
    /// `primary`, or the secondary artifact's identifier.
    pub name: String,
    /// SHA-256 of the zip (the blob's name).
    pub sha256: String,
    /// Zip size in bytes.
    pub size: i64,
    /// Files in it.
    pub files: i64,
}

impl Store {
    /// Records an artifact of build `build_id`.
    pub fn artifact_add(&self, build_id: i64, a: &ArtifactRow) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR REPLACE INTO artifacts (build_id, name, sha256, size, files) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![build_id, a.name, a.sha256, a.size, a.files],
        )?;
        Ok(())
    }

    /// The artifacts of build `build_id`.
    pub fn artifacts(&self, build_id: i64) -> Result<Vec<ArtifactRow>, StoreError> {
        artifacts_in(&self.lock(), build_id)
    }
}
