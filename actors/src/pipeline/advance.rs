//! Moving executions forward: one pass looks at every active execution and does what
//! its state calls for — enter a stage when the gate is open, start the next run-order
//! group, collect ended builds and approvals, end the stage, fail, retry or roll back.
//!
//! Everything here runs inside one store transaction ([`crate::store::Store::pipeline_tx`]):
//! the state it writes, the events it records, the builds it queues and the mail it
//! sends are committed together, so a crash between two steps loses or doubles nothing.
//! The state lives only in the store; a pass can run at any time and from any state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::effects::{action_event, stage_event, Effects};
use super::lifecycle::{
    end_execution, fail_execution, retry_stage, rollback_execution, start_execution,
};
use super::spec::{ExecutionMode, OnFailure, PipelineSpec, Stage};
use crate::compose::ServerInfo;
use crate::store::{ActionRow, ExecutionRow, PipelineTx, StageRow, StoreError};

/// Whether a user may approve in a pipeline of a repository: `(user, pipeline, repo)`.
pub type ApproverCheck = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// Users' mail addresses and group members (from `access.yaml`), for approvals.
#[derive(Clone, Default)]
pub struct People {
    /// User → address.
    pub emails: HashMap<String, String>,
    /// Group → member users.
    pub groups: HashMap<String, Vec<String>>,
    /// Who the policy lets approve (and read the repository); everyone when unset.
    pub may_approve: Option<ApproverCheck>,
}

impl People {
    /// Whether the policy lets `user` approve in `pipeline` of `repo`.
    pub fn may_approve(&self, user: &str, pipeline: &str, repo: &str) -> bool {
        self.may_approve
            .as_ref()
            .is_none_or(|check| check(user, pipeline, repo))
    }

    /// The users an approvers list names (`user:NAME`, `group:NAME`, bare `NAME`).
    pub fn approvers(&self, list: &[String]) -> Vec<String> {
        let mut users = Vec::new();
        for entry in list {
            match entry.split_once(':') {
                Some(("group", g)) => {
                    users.extend(self.groups.get(g).into_iter().flatten().cloned())
                }
                Some(("user", u)) => users.push(u.to_string()),
                _ => users.push(entry.clone()),
            }
        }
        users.sort();
        users.dedup();
        users
    }
}

/// Parsed definitions, by their text (executions of one commit share one).
#[derive(Default)]
pub struct SpecCache(Mutex<HashMap<String, Arc<PipelineSpec>>>);

impl SpecCache {
    /// The parsed definition of `text`.
    pub fn get_spec(&self, text: &str) -> Result<Arc<PipelineSpec>, String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(text) {
            return Ok(s.clone());
        }
        let spec =
            Arc::new(super::parse_pipeline(super::PIPELINE_FILE, text).map_err(|e| e.to_string())?);
        if map.len() > 256 {
            map.clear();
        }
        map.insert(text.to_string(), spec.clone());
        Ok(spec)
    }
}

/// What a pass needs besides the store.
pub struct Env<'a> {
    /// Parsed definitions.
    pub specs: &'a SpecCache,
    /// Approvers' addresses.
    pub people: &'a People,
    /// For the commands printed in mail.
    pub server: &'a ServerInfo,
    /// Domain of Message-IDs.
    pub domain: &'a str,
    /// deploy.yaml (deploy actions).
    pub deploy: &'a crate::config::deploy::DeployConfig,
    /// Now, in unix seconds.
    pub now: f64,
}

/// One pass's view of the world: the transaction, the environment, what it did.
pub(super) struct Pass<'a, 'b> {
    pub(super) t: &'a PipelineTx<'b>,
    pub(super) env: &'a Env<'a>,
    pub(super) fx: &'a mut Effects,
}

/// One pass over every active execution, repeated while something moves (bounded).
pub fn advance_all(t: &PipelineTx<'_>, env: &Env<'_>, fx: &mut Effects) -> Result<(), StoreError> {
    let mut skip = std::collections::HashSet::new();
    for _ in 0..32 {
        let mut moved = false;
        for e in t.active_executions()? {
            if skip.contains(&e.id) {
                continue;
            }
            // An earlier step of this pass may have changed it.
            let Some(mut e) = t.execution(e.id)? else {
                continue;
            };
            if !e.active() {
                continue;
            }
            // One execution's trouble is its own: its step is undone and it fails
            // with the reason, and the others move on.
            let mark = fx.mark();
            t.begin_step()?;
            let stepped = Pass {
                t,
                env,
                fx: &mut *fx,
            }
            .step(&mut e);
            match stepped {
                Ok(m) => {
                    t.end_step()?;
                    moved |= m;
                }
                Err(err) => {
                    t.undo_step()?;
                    fx.rewind(mark);
                    tracing::error!(execution = e.id, pipeline = %e.pipeline, error = %err, "cannot move an execution on; it fails");
                    // Failing it is a step of its own: if even that cannot be done, it
                    // is left alone for this pass and the others still move.
                    let mark = fx.mark();
                    t.begin_step()?;
                    let failed = match t.execution(e.id) {
                        Ok(Some(mut e)) => {
                            let reason = format!(
                                "slipway could not move it on ({err}); the server log has details"
                            );
                            fail_execution(t, fx, &mut e, reason, env.now)
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    match failed {
                        Ok(()) => {
                            t.end_step()?;
                            moved = true;
                        }
                        Err(again) => {
                            t.undo_step()?;
                            fx.rewind(mark);
                            tracing::error!(execution = e.id, error = %again, "cannot fail the execution either; skipping it in this pass");
                        }
                    }
                    skip.insert(e.id);
                }
            }
        }
        if !moved {
            break;
        }
    }
    Ok(())
}

impl Pass<'_, '_> {
    fn step(&mut self, e: &mut ExecutionRow) -> Result<bool, StoreError> {
        let spec = match self.env.specs.get_spec(&e.definition) {
            Ok(s) => s,
            Err(why) => {
                let reason = format!("its pipeline.yml no longer reads: {why}");
                fail_execution(self.t, self.fx, e, reason, self.env.now)?;
                return Ok(true);
            }
        };
        let Some(stage) = spec.stages.get(e.stage as usize) else {
            end_execution(self.t, self.fx, e, "SUCCEEDED", None, None, self.env.now)?;
            return Ok(true);
        };
        if e.entered {
            self.run_stage(e, &spec, stage)
        } else {
            self.gate(e, &spec, stage)
        }
    }

    /// Waiting in front of a stage: enter it when the transition is enabled and the stage
    /// is free (or the mode has no locks); in superseded mode, give way to a newer
    /// execution waiting at the same stage.
    fn gate(
        &mut self,
        e: &mut ExecutionRow,
        spec: &PipelineSpec,
        stage: &Stage,
    ) -> Result<bool, StoreError> {
        if e.status == "STOPPING" {
            let reason = format!("stopped while waiting to enter stage `{}`", stage.name);
            end_execution(
                self.t,
                self.fx,
                e,
                "STOPPED",
                None,
                Some(reason),
                self.env.now,
            )?;
            return Ok(true);
        }
        let mode = mode_of(e);
        let disabled = self.t.transition(&e.pipeline, &stage.name)?.is_some();
        // The other executions at this stage (by name: each runs its own definition,
        // where the stage may sit at another position). Parallel mode has no locks.
        let others: Vec<ExecutionRow> = if mode == ExecutionMode::Parallel {
            Vec::new()
        } else {
            self.t
                .active_executions()?
                .into_iter()
                .filter(|o| o.pipeline == e.pipeline && o.id != e.id)
                .filter(|o| stage_name(self.env.specs, o).as_deref() == Some(&stage.name))
                .collect()
        };
        let blocked = disabled || others.iter().any(|o| o.entered);
        // Superseded: one waiting in front of a busy stage or a disabled transition
        // gives way to a newer one arriving behind it.
        if blocked && mode == ExecutionMode::Superseded && e.kind == "STANDARD" {
            if let Some(newer) = others.iter().find(|o| {
                o.id > e.id && !o.entered && o.kind == "STANDARD" && o.status == "IN_PROGRESS"
            }) {
                let reason = format!(
                    "superseded by execution {} while waiting to enter stage `{}`",
                    newer.id, stage.name
                );
                end_execution(
                    self.t,
                    self.fx,
                    e,
                    "SUPERSEDED",
                    None,
                    Some(reason),
                    self.env.now,
                )?;
                return Ok(true);
            }
        }
        if blocked {
            return Ok(false);
        }
        // Rollbacks go first, then the oldest.
        let goes_first = |o: &ExecutionRow| {
            let o_rollback = o.kind == "ROLLBACK";
            let e_rollback = e.kind == "ROLLBACK";
            (o_rollback && !e_rollback) || (o_rollback == e_rollback && o.id < e.id)
        };
        if others
            .iter()
            .any(|o| !o.entered && o.status == "IN_PROGRESS" && goes_first(o))
        {
            return Ok(false);
        }
        self.enter(e, spec, stage, self.env.now)?;
        Ok(true)
    }

    fn enter(
        &mut self,
        e: &mut ExecutionRow,
        _spec: &PipelineSpec,
        stage: &Stage,
        now: f64,
    ) -> Result<(), StoreError> {
        e.entered = true;
        self.t.update_execution(e)?;
        let row = StageRow {
            execution_id: e.id,
            idx: e.stage,
            name: stage.name.clone(),
            attempt: 1,
            status: "IN_PROGRESS".into(),
            started: now,
            ended: None,
            reason: None,
        };
        self.t.put_stage(&row)?;
        for a in &stage.actions {
            self.t.put_action(&ActionRow {
                execution_id: e.id,
                stage: e.stage,
                name: a.name.clone(),
                kind: a.kind.type_name().into(),
                run_order: a.run_order as i64,
                attempt: 1,
                status: "PENDING".into(),
                build_id: None,
                started: None,
                ended: None,
                reason: None,
                detail: json!({}),
            })?;
        }
        self.fx.emit(self.t, stage_event(e, &row, None))?;
        Ok(())
    }

    /// In a stage: collect what ended, start the next group, or end the stage.
    fn run_stage(
        &mut self,
        e: &mut ExecutionRow,
        spec: &PipelineSpec,
        stage: &Stage,
    ) -> Result<bool, StoreError> {
        let mut moved = false;
        let mut actions = self.t.actions(e.id, e.stage)?;
        for a in actions.iter_mut().filter(|a| a.status == "IN_PROGRESS") {
            let Some(def) = stage.actions.iter().find(|d| d.name == a.name) else {
                continue;
            };
            if self.collect(e, def, a)? {
                self.t.put_action(a)?;
                self.fx
                    .emit(self.t, action_event(e, &stage.name, a, None))?;
                moved = true;
            }
        }
        if moved {
            // Exported variables and artifacts were added.
            self.t.update_execution(e)?;
        }
        let running = actions.iter().any(|a| a.status == "IN_PROGRESS");
        if e.status == "STOPPING" {
            for a in actions
                .iter_mut()
                .filter(|a| a.status == "IN_PROGRESS" && a.kind == "approval")
            {
                a.status = "ABANDONED".into();
                a.ended = Some(self.env.now);
                a.reason = Some("the execution was stopped".into());
                self.t.put_action(a)?;
                self.fx
                    .emit(self.t, action_event(e, &stage.name, a, None))?;
                moved = true;
            }
            if actions.iter().any(|a| a.status == "IN_PROGRESS") {
                return Ok(moved);
            }
            let mut row = stage_row(self.t, e)?;
            row.status = "STOPPED".into();
            row.ended = Some(self.env.now);
            self.t.put_stage(&row)?;
            self.fx.emit(self.t, stage_event(e, &row, None))?;
            let reason = e.reason.clone();
            end_execution(self.t, self.fx, e, "STOPPED", None, reason, self.env.now)?;
            return Ok(true);
        }
        if let Some(failed) = actions
            .iter()
            .find(|a| matches!(a.status.as_str(), "FAILED" | "ABANDONED"))
        {
            if running {
                return Ok(moved);
            }
            let why = format!(
                "action `{}` {}{}",
                failed.name,
                failed.status.to_lowercase(),
                failed
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            self.stage_failed(e, stage, why)?;
            return Ok(true);
        }
        if let Some(order) = actions
            .iter()
            .filter(|a| a.status == "PENDING")
            .map(|a| a.run_order)
            .min()
        {
            if actions
                .iter()
                .any(|a| a.run_order < order && a.status != "SUCCEEDED")
            {
                return Ok(moved);
            }
            for a in actions
                .iter_mut()
                .filter(|a| a.status == "PENDING" && a.run_order == order)
            {
                let Some(def) = stage.actions.iter().find(|d| d.name == a.name) else {
                    continue;
                };
                self.start_action(e, spec, stage, def, a)?;
            }
            return Ok(true);
        }
        if running {
            return Ok(moved);
        }
        // Every action succeeded.
        let mut row = stage_row(self.t, e)?;
        row.status = "SUCCEEDED".into();
        row.ended = Some(self.env.now);
        self.t.put_stage(&row)?;
        self.fx.emit(self.t, stage_event(e, &row, None))?;
        let next = e.stage + 1;
        if e.only_stage.is_some() || next as usize >= spec.stages.len() {
            end_execution(self.t, self.fx, e, "SUCCEEDED", None, None, self.env.now)?;
        } else {
            e.stage = next;
            e.entered = false;
            self.t.update_execution(e)?;
        }
        Ok(true)
    }

    /// A stage failed: retry it once, roll it back, or fail the execution.
    fn stage_failed(
        &mut self,
        e: &mut ExecutionRow,
        stage: &Stage,
        why: String,
    ) -> Result<(), StoreError> {
        let mut row = stage_row(self.t, e)?;
        if stage.on_failure == OnFailure::Retry && row.attempt == 1 {
            row.reason = Some(format!(
                "{why}; retrying the failed actions (on-failure: retry)"
            ));
            row.status = "FAILED".into();
            row.ended = Some(self.env.now);
            self.t.put_stage(&row)?;
            self.fx.emit(self.t, stage_event(e, &row, None))?;
            let idx = e.stage;
            return retry_stage(
                self.t,
                self.fx,
                e,
                idx,
                false,
                Some("slipway"),
                self.env.now,
            );
        }
        row.status = "FAILED".into();
        row.ended = Some(self.env.now);
        row.reason = Some(why.clone());
        self.t.put_stage(&row)?;
        self.fx.emit(self.t, stage_event(e, &row, None))?;
        let mut reason = format!("stage `{}` failed: {why}", stage.name);
        let rollback = stage.on_failure == OnFailure::Rollback
            && e.kind == "STANDARD"
            && mode_of(e) != ExecutionMode::Parallel;
        let mut new_rollback = None;
        if rollback {
            match self.t.last_success_in_stage(&e.pipeline, &stage.name, Some(e.id))? {
            Some((target, idx)) => {
                reason.push_str(&format!(
                    "; rolling the stage back to execution {} (on-failure: rollback)",
                    target.id
                ));
                new_rollback = Some((target, idx));
            }
            None => reason.push_str(&format!(
                "; on-failure: rollback found no earlier execution that succeeded in stage `{}`, so there is nothing to roll back to",
                stage.name
            )),
        }
        }
        end_execution(
            self.t,
            self.fx,
            e,
            "FAILED",
            None,
            Some(reason),
            self.env.now,
        )?;
        if let Some((target, idx)) = new_rollback {
            let new = rollback_execution(&target, idx, &e.mode, "automated-rollback", "slipway");
            start_execution(self.t, self.fx, new)?;
        }
        Ok(())
    }
}

/// The name of the stage `e` is in or waits for, in its own definition.
pub fn stage_name(specs: &SpecCache, e: &ExecutionRow) -> Option<String> {
    let spec = specs.get_spec(&e.definition).ok()?;
    spec.stages.get(e.stage as usize).map(|s| s.name.clone())
}

fn mode_of(e: &ExecutionRow) -> ExecutionMode {
    match e.mode.as_str() {
        "queued" => ExecutionMode::Queued,
        "parallel" => ExecutionMode::Parallel,
        _ => ExecutionMode::Superseded,
    }
}

fn stage_row(t: &PipelineTx<'_>, e: &ExecutionRow) -> Result<StageRow, StoreError> {
    t.stage(e.id, e.stage)?
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}
