//! State changes shared by the conductor's passes and people's commands: ending,
//! starting and rolling back executions, and running a stage again.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::effects::{action_event, execution_event, stage_event, Effects};
use super::spec::PipelineSpec;
use crate::store::{ExecutionRow, NewExecution, PipelineTx, StoreError};

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

/// A new execution of `spec` at `source` (a push's, or one started by hand).
pub fn new_execution(
    spec: &PipelineSpec,
    source: &super::source::Source,
    repo: &str,
    event_id: Option<i64>,
    trigger: &str,
    initiator: &str,
) -> NewExecution {
    NewExecution {
        pipeline: spec.name.clone(),
        repo: repo.into(),
        commit: source.commit.clone(),
        refname: Some(source.refname.clone()),
        event_id,
        trigger: trigger.into(),
        initiator: initiator.into(),
        kind: "STANDARD".into(),
        rollback_of: None,
        mode: super::conductor::mode_name(spec.mode).into(),
        definition: source.definition.clone(),
        stage: 0,
        only_stage: None,
        variables: initial_variables(spec, &source.variables),
        artifacts: json!({ super::spec::SOURCE: { "commit": source.commit } }),
    }
}

/// The starting variables of an execution of `spec`.
pub fn initial_variables(spec: &PipelineSpec, source: &BTreeMap<String, String>) -> Value {
    json!({
        "source": source,
        "pipeline": { "Name": spec.name, "ExecutionId": "" },
        "variables": spec.variables,
    })
}

/// A rollback execution of stage `idx` (its index in `target`'s definition) with what
/// `target` had when it ended, run in the pipeline's current `mode`.
pub fn rollback_execution(
    target: &ExecutionRow,
    idx: i64,
    mode: &str,
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
        mode: mode.into(),
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

/// Abandons the running actions of `e`'s current stage: their builds are stopped (a
/// queued one here, in the same transaction, so it can never start; a running one by
/// the builder once this commits), and with `stop_deployments` (a person abandoned
/// them) so are their deployments.
pub fn abandon_running(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    e: &ExecutionRow,
    why: &str,
    actor: Option<&str>,
    stop_deployments: bool,
    now: f64,
) -> Result<(), StoreError> {
    let stage = t.stage(e.id, e.stage)?.map(|s| s.name).unwrap_or_default();
    for mut a in t.actions(e.id, e.stage)? {
        if a.status != "IN_PROGRESS" {
            continue;
        }
        a.status = "ABANDONED".into();
        a.ended = Some(now);
        a.reason = Some(why.to_string());
        t.put_action(&a)?;
        if let Some(b) = a.build_id {
            // A queued build is ended here, in this transaction, so it can never start
            // after a crash; the builder is told as well, in case it is starting it
            // right now (its start only takes a build that is still queued).
            t.stop_queued_build(b, why)?;
            fx.stop_builds.push(b);
        }
        if let Some(id) = a.detail.get("deployment").and_then(|v| v.as_i64()) {
            if stop_deployments {
                stop_deployment_of(t, fx, id, why, now)?;
            }
        }
        fx.emit(t, action_event(e, &stage, &a, actor))?;
    }
    Ok(())
}

/// Stops deployment `id` of an abandoned deploy action, if it still runs (the group's
/// auto-rollback on stop applies, as when a person stops it).
fn stop_deployment_of(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    id: i64,
    why: &str,
    now: f64,
) -> Result<(), StoreError> {
    let d = t.deploy();
    let Some(mut deployment) = d.deployment(id)?.filter(|x| x.active()) else {
        return Ok(());
    };
    let mut dfx = crate::deploy::advance::Effects::default();
    crate::deploy::advance::stop_deployment(
        &d,
        &mut dfx,
        &mut deployment,
        format!("its pipeline action was abandoned ({why})"),
        "stop",
        now,
    )?;
    fx.events.extend(dfx.events);
    fx.deployments_created = true;
    Ok(())
}

/// Fails `e` for a reason outside its actions (its definition no longer reads, a step
/// could not be carried out): running actions are abandoned (their builds stopped), the
/// stage it is in fails, and so does the execution.
pub fn fail_execution(
    t: &PipelineTx<'_>,
    fx: &mut Effects,
    e: &mut ExecutionRow,
    reason: String,
    now: f64,
) -> Result<(), StoreError> {
    if e.entered {
        // slipway's own trouble with the execution is no reason to stop a deployment
        // that may be going well: it runs on, nobody waits for it.
        abandon_running(t, fx, e, &reason, Some("slipway"), false, now)?;
        if let Some(mut stage) = t.stage(e.id, e.stage)? {
            if matches!(stage.status.as_str(), "IN_PROGRESS" | "STOPPING") {
                stage.status = "FAILED".into();
                stage.ended = Some(now);
                stage.reason = Some(reason.clone());
                t.put_stage(&stage)?;
                fx.emit(t, stage_event(e, &stage, Some("slipway")))?;
            }
        }
    }
    end_execution(t, fx, e, "FAILED", Some("slipway"), Some(reason), now)
}
