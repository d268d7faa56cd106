//! Moving executions forward: one pass looks at every active execution and does what
//! its state calls for — enter a stage when the gate is open, start the next run-order
//! group, collect ended builds and approvals, end the stage, fail, retry or roll back.
//!
//! Everything here runs inside one store transaction ([`crate::store::Store::pipeline_tx`]):
//! the state it writes, the events it records, the builds it queues and the mail it
//! sends are committed together, so a crash between two steps loses or doubles nothing.
//! The state lives only in the store; a pass can run at any time and from any state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::spec::{Action, ActionKind, ExecutionMode, OnFailure, PipelineSpec, Stage};
use super::vars::substitute;
use crate::compose::ServerInfo;
use crate::store::{
    ActionRow, ArtifactRef, BuildPlan, ExecutionRow, NewBuild, NewDelivery, NewEvent, NewExecution,
    PipelineTx, PlanInput, StageRow, StoreError,
};

/// Why a deploy action cannot run yet.
pub const NO_DEPLOYMENTS: &str = "deployments are not available yet: this slipway cannot carry out a deploy action (deployments arrive with slipway-agent); remove the action or run the deployment by hand";

/// Users' mail addresses and group members (from `access.yaml`), for approvals.
#[derive(Debug, Clone, Default)]
pub struct People {
    /// User → address.
    pub emails: HashMap<String, String>,
    /// Group → member users.
    pub groups: HashMap<String, Vec<String>>,
}

impl People {
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
    /// Now, in unix seconds.
    pub now: f64,
}

/// What a pass did that others must hear about once it is committed.
#[derive(Debug, Default)]
pub struct Effects {
    /// Events stored: (id, source, type), for the bus to announce.
    pub events: Vec<(i64, String, String)>,
    /// Mail queued, for the notifier.
    pub mail: Vec<crate::store::Delivery>,
    /// Whether builds were queued (the builder should look).
    pub builds_queued: bool,
    /// Builds to stop (abandoned actions).
    pub stop_builds: Vec<i64>,
    /// Executions that ended, by status (for the metrics).
    pub ended: Vec<String>,
}

impl Effects {
    /// Stores `event` now (inside the pass's transaction) and remembers to announce it.
    pub fn emit(&mut self, t: &PipelineTx<'_>, event: NewEvent) -> Result<i64, StoreError> {
        let id = t.insert_events(std::slice::from_ref(&event))?[0];
        self.events.push((id, event.source, event.kind));
        Ok(id)
    }
}

/// Names an execution's events carry.
fn base_detail(e: &ExecutionRow) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("pipeline".into(), json!(e.pipeline));
    d.insert("execution".into(), json!(e.id));
    d.insert("commit".into(), json!(e.commit));
    d.insert("execution_type".into(), json!(e.kind));
    d.insert("trigger".into(), json!(e.trigger));
    d
}

fn event(
    e: &ExecutionRow,
    kind: &str,
    state: &str,
    actor: Option<&str>,
    detail: Map<String, Value>,
) -> NewEvent {
    let mut d = base_detail(e);
    d.extend(detail);
    NewEvent {
        source: "pipeline".into(),
        kind: kind.into(),
        actor: Some(actor.unwrap_or(&e.initiator).to_string()),
        repo: Some(e.repo.clone()),
        refname: e.refname.clone(),
        state: Some(state.into()),
        detail: Value::Object(d),
    }
}

/// An execution's state-change event.
pub fn execution_event(
    e: &ExecutionRow,
    state: &str,
    actor: Option<&str>,
    reason: Option<&str>,
) -> NewEvent {
    let mut d = Map::new();
    if let Some(r) = reason {
        d.insert("reason".into(), json!(r));
    }
    if let Some(t) = e.rollback_of {
        d.insert("rollback_of".into(), json!(t));
    }
    event(e, "execution-state-change", state, actor, d)
}

/// A stage's state-change event.
pub fn stage_event(e: &ExecutionRow, s: &StageRow, actor: Option<&str>) -> NewEvent {
    let mut d = Map::new();
    d.insert("stage".into(), json!(s.name));
    d.insert("attempt".into(), json!(s.attempt));
    if let Some(r) = &s.reason {
        d.insert("reason".into(), json!(r));
    }
    let state = if s.status == "IN_PROGRESS" {
        "STARTED"
    } else {
        &s.status
    };
    event(e, "stage-state-change", state, actor, d)
}

/// An action's state-change event.
pub fn action_event(e: &ExecutionRow, stage: &str, a: &ActionRow, actor: Option<&str>) -> NewEvent {
    let mut d = Map::new();
    d.insert("stage".into(), json!(stage));
    d.insert("action".into(), json!(a.name));
    d.insert("type".into(), json!(a.kind));
    d.insert("attempt".into(), json!(a.attempt));
    if let Some(b) = a.build_id {
        d.insert("build_id".into(), json!(b));
    }
    if let Some(r) = &a.reason {
        d.insert("reason".into(), json!(r));
    }
    for key in ["decided_by", "comment", "message", "expires"] {
        if let Some(v) = a.detail.get(key) {
            d.insert(key.into(), v.clone());
        }
    }
    let state = if a.status == "IN_PROGRESS" {
        "STARTED"
    } else {
        &a.status
    };
    event(e, "action-state-change", state, actor, d)
}

/// Ends `e` with `status` and `reason`, and records it.
pub fn end_execution(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    status: &str,
    actor: Option<&str>,
    reason: Option<String>,
    now: f64,
) -> Result<(), StoreError> {
    e.status = status.into();
    e.ended = Some(now);
    e.reason = reason;
    t.update_execution(e)?;
    fx.emit(t, execution_event(e, status, actor, e.reason.as_deref()))?;
    fx.ended.push(status.to_string());
    Ok(())
}

/// Creates an execution and records that it started. `pipeline.ExecutionId` is filled
/// in once its id is known.
pub fn start_execution(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    new: NewExecution,
) -> Result<Option<ExecutionRow>, StoreError> {
    let Some(mut e) = t.insert_execution(&new)? else {
        return Ok(None);
    };
    if let Some(p) = e
        .variables
        .get_mut("pipeline")
        .and_then(Value::as_object_mut)
    {
        p.insert("ExecutionId".into(), json!(e.id.to_string()));
    }
    t.update_execution(&e)?;
    fx.emit(t, execution_event(&e, "STARTED", None, None))?;
    Ok(Some(e))
}

/// The starting variables of an execution of `spec`.
pub fn initial_variables(spec: &PipelineSpec, source: &BTreeMap<String, String>) -> Value {
    json!({
        "source": source,
        "pipeline": { "Name": spec.name, "ExecutionId": "" },
        "variables": spec.variables,
    })
}

/// A rollback execution of stage `idx` with what `target` had when it ended.
pub fn rollback_execution(
    target: &ExecutionRow,
    idx: i64,
    trigger: &str,
    initiator: &str,
) -> NewExecution {
    NewExecution {
        pipeline: target.pipeline.clone(),
        repo: target.repo.clone(),
        commit: target.commit.clone(),
        refname: target.refname.clone(),
        event_id: None,
        trigger: trigger.into(),
        initiator: initiator.into(),
        kind: "ROLLBACK".into(),
        rollback_of: Some(target.id),
        mode: target.mode.clone(),
        definition: target.definition.clone(),
        stage: idx,
        only_stage: Some(idx),
        variables: target.variables.clone(),
        artifacts: target.artifacts.clone(),
    }
}

/// Makes stage `idx` of `e` run again: failed (or, with `all`, every) actions become
/// pending with the next attempt number, and the execution is back in the stage.
pub fn retry_stage(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    idx: i64,
    all: bool,
    actor: Option<&str>,
    now: f64,
) -> Result<(), StoreError> {
    let mut stage = match t.stage(e.id, idx)? {
        Some(s) => s,
        None => return Ok(()),
    };
    stage.attempt += 1;
    stage.status = "IN_PROGRESS".into();
    stage.started = now;
    stage.ended = None;
    stage.reason = None;
    t.put_stage(&stage)?;
    for mut a in t.actions(e.id, idx)? {
        if all || a.status != "SUCCEEDED" {
            a.attempt += 1;
            a.status = "PENDING".into();
            a.build_id = None;
            a.started = None;
            a.ended = None;
            a.reason = None;
            a.detail = json!({});
            t.put_action(&a)?;
        }
    }
    e.status = "IN_PROGRESS".into();
    e.stage = idx;
    e.entered = true;
    e.ended = None;
    e.reason = None;
    t.update_execution(e)?;
    fx.emit(t, stage_event(e, &stage, actor))?;
    Ok(())
}

/// One pass over every active execution, repeated while something moves (bounded).
pub fn advance_all(t: &PipelineTx<'_>, env: &Env<'_>, fx: &mut Effects) -> Result<(), StoreError> {
    for _ in 0..32 {
        let mut moved = false;
        for e in t.active_executions()? {
            // An earlier step of this pass may have changed it.
            let Some(mut e) = t.execution(e.id)? else {
                continue;
            };
            if !e.active() {
                continue;
            }
            moved |= step(t, env, fx, &mut e)?;
        }
        if !moved {
            break;
        }
    }
    Ok(())
}

fn step(
    t: &PipelineTx<'_>,
    env: &Env<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
) -> Result<bool, StoreError> {
    let spec = match env.specs.get_spec(&e.definition) {
        Ok(s) => s,
        Err(why) => {
            let reason = format!("its pipeline.yml no longer reads: {why}");
            end_execution(t, fx, e, "FAILED", Some("slipway"), Some(reason), env.now)?;
            return Ok(true);
        }
    };
    let Some(stage) = spec.stages.get(e.stage as usize) else {
        end_execution(t, fx, e, "SUCCEEDED", None, None, env.now)?;
        return Ok(true);
    };
    if e.entered {
        run_stage(t, env, fx, e, &spec, stage)
    } else {
        gate(t, env, fx, e, &spec, stage)
    }
}

fn mode_of(e: &ExecutionRow) -> ExecutionMode {
    match e.mode.as_str() {
        "queued" => ExecutionMode::Queued,
        "parallel" => ExecutionMode::Parallel,
        _ => ExecutionMode::Superseded,
    }
}

/// Waiting in front of a stage: enter it when the transition is enabled and the stage
/// is free (or the mode has no locks); in superseded mode, give way to a newer
/// execution waiting at the same stage.
fn gate(
    t: &PipelineTx<'_>,
    env: &Env<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    spec: &PipelineSpec,
    stage: &Stage,
) -> Result<bool, StoreError> {
    if e.status == "STOPPING" {
        let reason = format!("stopped while waiting to enter stage `{}`", stage.name);
        end_execution(t, fx, e, "STOPPED", None, Some(reason), env.now)?;
        return Ok(true);
    }
    let mode = mode_of(e);
    if mode != ExecutionMode::Parallel {
        let others: Vec<ExecutionRow> = t
            .active_executions()?
            .into_iter()
            .filter(|o| o.pipeline == e.pipeline && o.id != e.id)
            .collect();
        let standard = e.kind == "STANDARD";
        if mode == ExecutionMode::Superseded && standard {
            if let Some(newer) = others.iter().find(|o| {
                o.id > e.id
                    && !o.entered
                    && o.stage == e.stage
                    && o.kind == "STANDARD"
                    && o.status == "IN_PROGRESS"
            }) {
                let reason = format!(
                    "superseded by execution {} while waiting to enter stage `{}`",
                    newer.id, stage.name
                );
                end_execution(t, fx, e, "SUPERSEDED", None, Some(reason), env.now)?;
                return Ok(true);
            }
        }
        if others.iter().any(|o| o.entered && o.stage == e.stage) {
            return Ok(false);
        }
        let goes_first = |o: &ExecutionRow| {
            let o_rollback = o.kind == "ROLLBACK";
            let e_rollback = e.kind == "ROLLBACK";
            (o_rollback && !e_rollback) || (o_rollback == e_rollback && o.id < e.id)
        };
        if others
            .iter()
            .any(|o| !o.entered && o.stage == e.stage && o.status == "IN_PROGRESS" && goes_first(o))
        {
            return Ok(false);
        }
    }
    if t.transition(&e.pipeline, &stage.name)?.is_some() {
        return Ok(false);
    }
    enter(t, fx, e, spec, stage, env.now)?;
    Ok(true)
}

fn enter(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    _spec: &PipelineSpec,
    stage: &Stage,
    now: f64,
) -> Result<(), StoreError> {
    e.entered = true;
    t.update_execution(e)?;
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
    t.put_stage(&row)?;
    for a in &stage.actions {
        t.put_action(&ActionRow {
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
    fx.emit(t, stage_event(e, &row, None))?;
    Ok(())
}

/// In a stage: collect what ended, start the next group, or end the stage.
fn run_stage(
    t: &PipelineTx<'_>,
    env: &Env<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    spec: &PipelineSpec,
    stage: &Stage,
) -> Result<bool, StoreError> {
    let mut moved = false;
    let mut actions = t.actions(e.id, e.stage)?;
    for a in actions.iter_mut().filter(|a| a.status == "IN_PROGRESS") {
        let Some(def) = stage.actions.iter().find(|d| d.name == a.name) else {
            continue;
        };
        if collect(t, env, e, def, a)? {
            t.put_action(a)?;
            fx.emit(t, action_event(e, &stage.name, a, None))?;
            moved = true;
        }
    }
    if moved {
        // Exported variables and artifacts were added.
        t.update_execution(e)?;
    }
    let running = actions.iter().any(|a| a.status == "IN_PROGRESS");
    if e.status == "STOPPING" {
        for a in actions
            .iter_mut()
            .filter(|a| a.status == "IN_PROGRESS" && a.kind == "approval")
        {
            a.status = "ABANDONED".into();
            a.ended = Some(env.now);
            a.reason = Some("the execution was stopped".into());
            t.put_action(a)?;
            fx.emit(t, action_event(e, &stage.name, a, None))?;
            moved = true;
        }
        if actions.iter().any(|a| a.status == "IN_PROGRESS") {
            return Ok(moved);
        }
        let mut row = stage_row(t, e)?;
        row.status = "STOPPED".into();
        row.ended = Some(env.now);
        t.put_stage(&row)?;
        fx.emit(t, stage_event(e, &row, None))?;
        let reason = e.reason.clone();
        end_execution(t, fx, e, "STOPPED", None, reason, env.now)?;
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
        stage_failed(t, env, fx, e, stage, why)?;
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
            start_action(t, env, fx, e, spec, stage, def, a)?;
        }
        return Ok(true);
    }
    if running {
        return Ok(moved);
    }
    // Every action succeeded.
    let mut row = stage_row(t, e)?;
    row.status = "SUCCEEDED".into();
    row.ended = Some(env.now);
    t.put_stage(&row)?;
    fx.emit(t, stage_event(e, &row, None))?;
    let next = e.stage + 1;
    if e.only_stage.is_some() || next as usize >= spec.stages.len() {
        end_execution(t, fx, e, "SUCCEEDED", None, None, env.now)?;
    } else {
        e.stage = next;
        e.entered = false;
        t.update_execution(e)?;
    }
    Ok(true)
}

fn stage_row(t: &PipelineTx<'_>, e: &ExecutionRow) -> Result<StageRow, StoreError> {
    t.stage(e.id, e.stage)?
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

/// A stage failed: retry it once, roll it back, or fail the execution.
fn stage_failed(
    t: &PipelineTx<'_>,
    env: &Env<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    stage: &Stage,
    why: String,
) -> Result<(), StoreError> {
    let mut row = stage_row(t, e)?;
    if stage.on_failure == OnFailure::Retry && row.attempt == 1 {
        row.reason = Some(format!(
            "{why}; retrying the failed actions (on-failure: retry)"
        ));
        row.status = "FAILED".into();
        row.ended = Some(env.now);
        t.put_stage(&row)?;
        fx.emit(t, stage_event(e, &row, None))?;
        let idx = e.stage;
        return retry_stage(t, fx, e, idx, false, Some("slipway"), env.now);
    }
    row.status = "FAILED".into();
    row.ended = Some(env.now);
    row.reason = Some(why.clone());
    t.put_stage(&row)?;
    fx.emit(t, stage_event(e, &row, None))?;
    let mut reason = format!("stage `{}` failed: {why}", stage.name);
    let rollback = stage.on_failure == OnFailure::Rollback
        && e.kind == "STANDARD"
        && mode_of(e) != ExecutionMode::Parallel;
    let mut new_rollback = None;
    if rollback {
        match t.last_success_in_stage(&e.pipeline, e.stage, &stage.name, Some(e.id))? {
            Some(target) => {
                reason.push_str(&format!(
                    "; rolling the stage back to execution {} (on-failure: rollback)",
                    target.id
                ));
                new_rollback = Some(target);
            }
            None => reason.push_str(&format!(
                "; on-failure: rollback found no earlier execution that succeeded in stage `{}`, so there is nothing to roll back to",
                stage.name
            )),
        }
    }
    end_execution(t, fx, e, "FAILED", None, Some(reason), env.now)?;
    if let Some(target) = new_rollback {
        let new = rollback_execution(&target, e.stage, "automated-rollback", "slipway");
        start_execution(t, fx, new)?;
    }
    Ok(())
}

/// Whether an in-progress action has ended (a build finished, an approval timed out);
/// updates it, and the execution's artifacts and variables.
fn collect(
    t: &PipelineTx<'_>,
    env: &Env<'_>,
    e: &mut ExecutionRow,
    def: &Action,
    a: &mut ActionRow,
) -> Result<bool, StoreError> {
    match &def.kind {
        ActionKind::Build { .. } => {
            let Some(build) = a.build_id.map(|id| t.build(id)).transpose()?.flatten() else {
                a.status = "FAILED".into();
                a.ended = Some(env.now);
                a.reason = Some("its build record is missing".into());
                return Ok(true);
            };
            if matches!(build.status.as_str(), "QUEUED" | "IN_PROGRESS") {
                return Ok(false);
            }
            a.ended = Some(env.now);
            if build.status != "SUCCEEDED" {
                a.status = "FAILED".into();
                let phase = build
                    .phases
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["status"] != "SUCCEEDED")
                    .and_then(|p| p["name"].as_str())
                    .map(|p| format!(" in phase {p}"))
                    .unwrap_or_default();
                let detail = build
                    .detail
                    .clone()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                a.reason = Some(format!(
                    "build {} ended {}{phase}{detail} (see `build logs {}`)",
                    build.id, build.status, build.id
                ));
                return Ok(true);
            }
            let made = t.artifacts(build.id)?;
            let mut outputs = Map::new();
            for (i, name) in def.outputs.iter().enumerate() {
                let found = made.iter().find(|m| &m.name == name).or_else(|| {
                    (i == 0)
                        .then(|| made.iter().find(|m| m.name == "primary"))
                        .flatten()
                });
                match found {
                    Some(m) => {
                        outputs.insert(
                            name.clone(),
                            json!({ "sha256": m.sha256, "build_id": build.id }),
                        );
                    }
                    None => {
                        a.status = "FAILED".into();
                        a.reason = Some(format!(
                            "build {} made no artifact for output `{name}`: give the buildspec {}",
                            build.id,
                            if i == 0 {
                                "an `artifacts` section".to_string()
                            } else {
                                format!("a secondary artifact named `{name}`")
                            }
                        ));
                        return Ok(true);
                    }
                }
            }
            if let Some(map) = e.artifacts.as_object_mut() {
                map.extend(outputs);
            }
            if let (Some(ns), Some(vars)) = (&def.namespace, e.variables.as_object_mut()) {
                vars.insert(ns.clone(), build.exported.clone());
            }
            a.status = "SUCCEEDED".into();
            Ok(true)
        }
        ActionKind::Approval { timeout, .. } => {
            let expires = a
                .detail
                .get("expires")
                .and_then(Value::as_f64)
                .unwrap_or(f64::MAX);
            if env.now < expires {
                return Ok(false);
            }
            a.status = "FAILED".into();
            a.ended = Some(env.now);
            a.reason = Some(format!(
                "nobody approved or rejected it within {}; the approval timed out",
                humantime::format_duration(*timeout)
            ));
            Ok(true)
        }
        ActionKind::Deploy { .. } => {
            a.status = "FAILED".into();
            a.ended = Some(env.now);
            a.reason = Some(NO_DEPLOYMENTS.into());
            Ok(true)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start_action(
    t: &PipelineTx<'_>,
    env: &Env<'_>,
    fx: &mut Effects,
    e: &ExecutionRow,
    spec: &PipelineSpec,
    stage: &Stage,
    def: &Action,
    a: &mut ActionRow,
) -> Result<(), StoreError> {
    a.started = Some(env.now);
    a.status = "IN_PROGRESS".into();
    let failed = |a: &mut ActionRow, why: String| {
        a.status = "FAILED".into();
        a.ended = Some(env.now);
        a.reason = Some(why);
    };
    match &def.kind {
        ActionKind::Build {
            buildspec,
            env: vars,
        } => {
            let plan = build_plan(e, stage, def, buildspec, vars);
            match plan {
                Err(why) => failed(a, why),
                Ok(plan) => {
                    let request = NewBuild {
                        repo: e.repo.clone(),
                        commit: e.commit.clone(),
                        refname: e.refname.clone(),
                        prev_commit: None,
                        event_id: None,
                        initiator: format!("pipeline/{}", spec.name),
                        plan: Some(plan),
                    };
                    match t.queue_build(&request)? {
                        Some(b) => {
                            a.build_id = Some(b.id);
                            fx.builds_queued = true;
                        }
                        None => failed(a, "the build could not be queued".into()),
                    }
                }
            }
        }
        ActionKind::Approval {
            approvers,
            timeout,
            message,
        } => match substitute(message, &e.variables) {
            Err(why) => failed(a, format!("its message cannot be written: {why}")),
            Ok(text) => {
                let expires = env.now + timeout.as_secs_f64();
                let users = env.people.approvers(approvers);
                let notified: Vec<String> = users
                    .iter()
                    .filter(|u| env.people.emails.contains_key(*u))
                    .cloned()
                    .collect();
                a.detail = json!({
                    "approvers": approvers,
                    "message": text,
                    "expires": expires,
                    "timeout": humantime::format_duration(*timeout).to_string(),
                    "notified": notified,
                });
                t.put_action(a)?;
                let event_id = fx.emit(t, action_event(e, &stage.name, a, None))?;
                let (subject, body) = crate::compose::approval_mail(
                    e,
                    &stage.name,
                    &a.name,
                    &text,
                    expires,
                    env.server,
                );
                let deliveries: Vec<NewDelivery> = notified
                    .iter()
                    .filter_map(|u| env.people.emails.get(u))
                    .map(|to| NewDelivery {
                        event_id: Some(event_id),
                        rule: "approval".into(),
                        kind: "email".into(),
                        target: to.clone(),
                        payload: json!({ "subject": subject, "body": body }),
                    })
                    .collect();
                if deliveries.is_empty() {
                    tracing::warn!(pipeline = %e.pipeline, execution = e.id, action = %a.name, "no approver of this action has an email address; nobody was mailed");
                }
                fx.mail.extend(t.enqueue(&deliveries, env.domain)?);
                return Ok(());
            }
        },
        ActionKind::Deploy { .. } => failed(a, NO_DEPLOYMENTS.into()),
    }
    t.put_action(a)?;
    fx.emit(t, action_event(e, &stage.name, a, None))?;
    Ok(())
}

/// What the builder needs for a build action: its inputs (the first is the source
/// directory), the buildspec path and the substituted variables.
fn build_plan(
    e: &ExecutionRow,
    stage: &Stage,
    def: &Action,
    buildspec: &str,
    vars: &BTreeMap<String, String>,
) -> Result<BuildPlan, String> {
    let mut env = Vec::new();
    for (name, value) in vars {
        env.push((
            name.clone(),
            substitute(value, &e.variables).map_err(|w| format!("env {name}: {w}"))?,
        ));
    }
    let mut inputs = Vec::new();
    for name in &def.inputs {
        let from = e
            .artifacts
            .get(name)
            .and_then(|v| serde_json::from_value::<ArtifactRef>(v.clone()).ok())
            .ok_or_else(|| format!("its input `{name}` was not made in this execution"))?;
        inputs.push(PlanInput {
            name: name.clone(),
            from,
        });
    }
    if inputs.is_empty() {
        inputs.push(PlanInput {
            name: super::spec::SOURCE.into(),
            from: ArtifactRef::Commit {
                commit: e.commit.clone(),
            },
        });
    }
    Ok(BuildPlan {
        pipeline: e.pipeline.clone(),
        execution: e.id,
        stage: stage.name.clone(),
        action: def.name.clone(),
        buildspec: buildspec.to_string(),
        env,
        inputs,
    })
}
