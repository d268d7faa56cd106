//! What people do to executions: approve or reject, stop, retry a stage, roll a stage
//! back, disable or enable a transition. Each is one store transaction that checks the
//! execution's state, changes it, records events and an audit line; the conductor then
//! moves the execution on. Permissions are checked by the caller (the SSH command).
//!
//! Blocking (sqlite); call from `spawn_blocking`.

use serde_json::json;

use super::advance::{stage_name, People, SpecCache};
use super::effects::{action_event, execution_event, stage_event, Effects};
use super::lifecycle::{
    abandon_running, end_execution, new_execution, retry_stage, rollback_execution, start_execution,
};
use super::spec::{ActionKind, ExecutionMode, PipelineSpec};
use crate::store::unix_now as now;
use crate::store::{AuditEntry, AuditKind, ExecutionRow, PipelineTx, Store, StoreError};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The execution, stage, action or pipeline does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the execution's state (the message says what would).
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a request did: the answer for the user and what the runtime must pass on.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line for the user.
    pub message: String,
    /// Events to announce, builds to stop.
    pub effects: Effects,
}

fn audit(
    t: &PipelineTx<'_>,
    user: &str,
    e: &ExecutionRow,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let mut entry = AuditEntry::new(AuditKind::Pipeline, "ok");
    entry.user = Some(user.into());
    entry.repo = Some(e.repo.clone());
    entry.refname = e.refname.clone();
    entry.action = Some(action.into());
    entry.detail = Some(detail.to_string());
    t.audit(&entry)
}

fn load(t: &PipelineTx<'_>, id: i64) -> Result<ExecutionRow, ControlError> {
    t.execution(id)?
        .ok_or_else(|| ControlError::NotFound(format!("execution {id} not found")))
}

fn spec_of(
    specs: &SpecCache,
    e: &ExecutionRow,
) -> Result<std::sync::Arc<PipelineSpec>, ControlError> {
    specs.get_spec(&e.definition).map_err(|w| {
        ControlError::Refused(format!(
            "execution {}'s pipeline.yml no longer reads: {w}",
            e.id
        ))
    })
}

fn stage_index(spec: &PipelineSpec, e: &ExecutionRow, stage: &str) -> Result<usize, ControlError> {
    spec.stages
        .iter()
        .position(|s| s.name == stage)
        .ok_or_else(|| {
            let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
            ControlError::NotFound(format!(
                "pipeline `{}` (as execution {} runs it) has no stage `{stage}`; its stages are {}",
                e.pipeline,
                e.id,
                names.join(", ")
            ))
        })
}

/// Approves (`approve`) or rejects an approval action that waits. `user` must be one
/// of the action's approvers.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    store: &Store,
    specs: &SpecCache,
    people: &People,
    pipeline: &str,
    execution: i64,
    stage: &str,
    action: &str,
    approve: bool,
    user: &str,
    comment: Option<&str>,
) -> Result<Outcome, ControlError> {
    store.pipeline_tx(|t| {
        let e = load(t, execution)?;
        if e.pipeline != pipeline {
            return Err(ControlError::NotFound(format!(
                "execution {execution} is not an execution of pipeline `{pipeline}` (it is of `{}`)",
                e.pipeline
            )));
        }
        let spec = spec_of(specs, &e)?;
        let idx = stage_index(&spec, &e, stage)?;
        let def = spec.stages[idx]
            .actions
            .iter()
            .find(|a| a.name == action)
            .ok_or_else(|| ControlError::NotFound(format!("stage `{stage}` has no action `{action}`")))?;
        let ActionKind::Approval { approvers, .. } = &def.kind else {
            return Err(ControlError::Refused(format!(
                "`{stage}/{action}` is a {} action, not an approval",
                def.kind.type_name()
            )));
        };
        if !people.approvers(approvers).iter().any(|u| u == user) {
            return Err(ControlError::Refused(format!(
                "you ({user}) are not among the approvers of `{stage}/{action}` ({}); ask one of them, or change `approvers` in pipeline.yml",
                approvers.join(", ")
            )));
        }
        let mut a = t
            .actions(e.id, idx as i64)?
            .into_iter()
            .find(|a| a.name == action)
            .filter(|a| a.status == "IN_PROGRESS")
            .ok_or_else(|| {
                ControlError::Refused(format!(
                    "`{stage}/{action}` of execution {execution} is not waiting for a decision (see `pipeline status {pipeline}`)"
                ))
            })?;
        let now = now();
        if a.detail.get("expires").and_then(|x| x.as_f64()).is_some_and(|x| now >= x) {
            return Err(ControlError::Refused(format!(
                "`{stage}/{action}` of execution {execution} is past its timeout; it fails as timed out"
            )));
        }
        a.status = if approve { "SUCCEEDED" } else { "FAILED" }.into();
        a.ended = Some(now);
        let verb = if approve { "approved" } else { "rejected" };
        a.reason = Some(match comment {
            Some(c) if !c.is_empty() => format!("{verb} by {user}: {c}"),
            _ => format!("{verb} by {user}"),
        });
        if let Some(d) = a.detail.as_object_mut() {
            d.insert("decided_by".into(), json!(user));
            d.insert("comment".into(), json!(comment));
            d.insert("decision".into(), json!(verb));
        }
        t.put_action(&a)?;
        let mut effects = Effects::default();
        effects.emit(t, action_event(&e, stage, &a, Some(user)))?;
        audit(
            t,
            user,
            &e,
            if approve { "pipeline:approve" } else { "pipeline:reject" },
            json!({ "pipeline": pipeline, "execution": execution, "stage": stage, "action": action, "decision": verb, "comment": comment }),
        )?;
        Ok(Outcome {
            message: format!("{verb} {stage}/{action} of execution {execution} of {pipeline}"),
            effects,
        })
    })
}

/// Starts an execution by hand (no push, triggers do not apply) of `spec` at `source`
/// in `repo`, which must own the pipeline's name.
pub fn start(
    store: &Store,
    repo: &str,
    spec: &PipelineSpec,
    source: &super::source::Source,
    user: &str,
) -> Result<Outcome, ControlError> {
    store.pipeline_tx(|t| {
        let owner = t.claim_name(&spec.name, repo)?;
        if owner != repo {
            return Err(ControlError::Refused(format!(
                "pipeline name `{}` belongs to another repository; rename the pipeline in {repo}'s pipeline.yml",
                spec.name
            )));
        }
        let mut effects = Effects::default();
        let e = start_execution(
            t,
            &mut effects,
            new_execution(spec, source, repo, None, "manual", user),
        )?
        .ok_or_else(|| ControlError::Refused("the execution could not be created".into()))?;
        audit(
            t,
            user,
            &e,
            "pipeline:start",
            json!({ "pipeline": spec.name, "execution": e.id, "commit": e.commit, "ref": e.refname }),
        )?;
        Ok(Outcome {
            message: format!(
                "started execution {} of {} at {} ({})",
                e.id,
                spec.name,
                &e.commit[..e.commit.len().min(8)],
                source.refname
            ),
            effects,
        })
    })
}

/// Stops an execution: with `abandon`, running actions are abandoned at once (their
/// builds stopped); otherwise they finish and nothing new starts.
pub fn stop(
    store: &Store,
    execution: i64,
    abandon: bool,
    user: &str,
    reason: Option<&str>,
) -> Result<Outcome, ControlError> {
    store.pipeline_tx(|t| {
        let mut e = load(t, execution)?;
        if !e.active() {
            return Err(ControlError::Refused(format!(
                "execution {execution} is not running ({}); nothing to stop",
                e.status
            )));
        }
        if e.status == "STOPPING" && !abandon {
            return Err(ControlError::Refused(format!(
                "execution {execution} is already stopping; add --abandon to abandon its running actions"
            )));
        }
        let now = now();
        let why = match reason {
            Some(r) if !r.is_empty() => format!("stopped by {user}: {r}"),
            _ => format!("stopped by {user}"),
        };
        let mut effects = Effects::default();
        audit(
            t,
            user,
            &e,
            "pipeline:stop",
            json!({ "execution": execution, "abandon": abandon, "reason": reason }),
        )?;
        let message;
        if !e.entered || abandon {
            if e.entered {
                abandon_running(t, &mut effects, &e, &why, Some(user), true, now)?;
                let mut stage = t.stage(e.id, e.stage)?;
                if let Some(s) = stage.as_mut() {
                    s.status = "STOPPED".into();
                    s.ended = Some(now);
                    s.reason = Some(why.clone());
                    t.put_stage(s)?;
                    effects.emit(t, stage_event(&e, s, Some(user)))?;
                }
            }
            end_execution(t, &mut effects, &mut e, "STOPPED", Some(user), Some(why), now)?;
            message = format!("stopped execution {execution}");
        } else {
            e.status = "STOPPING".into();
            e.reason = Some(why.clone());
            t.update_execution(&e)?;
            effects.emit(t, execution_event(&e, "STOPPING", Some(user), Some(&why)))?;
            message = format!(
                "stopping execution {execution}: running actions finish, nothing new starts (--abandon to abandon them)"
            );
        }
        Ok(Outcome { message, effects })
    })
}

/// Runs a failed (or stopped) stage of an execution again: its failed actions, or with
/// `all` every action.
pub fn retry(
    store: &Store,
    specs: &SpecCache,
    execution: i64,
    stage: &str,
    all: bool,
    user: &str,
) -> Result<Outcome, ControlError> {
    store.pipeline_tx(|t| {
        let mut e = load(t, execution)?;
        let spec = spec_of(specs, &e)?;
        let idx = stage_index(&spec, &e, stage)? as i64;
        if e.status == "STOPPED" && !e.entered && e.stage == idx {
            // Stopped while waiting in front of this stage: it waits there again —
            // unless a newer execution went through it meanwhile.
            if e.mode != "parallel" && t.newer_entered(&e.pipeline, e.id, stage)? {
                return Err(ControlError::Refused(format!(
                    "a newer execution has entered stage `{stage}` since execution {execution} stopped in front of it; it can no longer continue (start a new one, or roll the stage back)"
                )));
            }
            audit(
                t,
                user,
                &e,
                "pipeline:retry",
                json!({ "execution": execution, "stage": stage, "resumed": true }),
            )?;
            e.status = "IN_PROGRESS".into();
            e.ended = None;
            e.reason = None;
            t.update_execution(&e)?;
            let mut effects = Effects::default();
            effects.emit(t, execution_event(&e, "RESUMED", Some(user), None))?;
            return Ok(Outcome {
                message: format!(
                    "resumed execution {execution}: it waits to enter stage `{stage}` again"
                ),
                effects,
            });
        }
        let row = t.stage(e.id, idx)?;
        let failed_here = matches!(e.status.as_str(), "FAILED" | "STOPPED")
            && e.stage == idx
            && e.entered
            && row.as_ref().is_some_and(|s| matches!(s.status.as_str(), "FAILED" | "STOPPED"));
        if !failed_here {
            return Err(ControlError::Refused(format!(
                "execution {execution} cannot be retried in stage `{stage}`: only the stage an execution failed or stopped in can be retried (it is {} {} stage `{}`)",
                e.status,
                if e.entered { "in" } else { "waiting for" },
                spec.stages.get(e.stage as usize).map(|s| s.name.as_str()).unwrap_or("?")
            )));
        }
        if e.mode != "parallel" {
            if t.newer_entered(&e.pipeline, e.id, stage)? {
                return Err(ControlError::Refused(format!(
                    "a newer execution has entered stage `{stage}` since execution {execution} failed there; it can no longer be retried (start a new one, or roll the stage back)"
                )));
            }
            if let Some(busy) = t
                .active_executions()?
                .into_iter()
                .find(|o| {
                    o.pipeline == e.pipeline
                        && o.id != e.id
                        && o.entered
                        && stage_name(specs, o).as_deref() == Some(stage)
                })
            {
                return Err(ControlError::Refused(format!(
                    "stage `{stage}` is busy with execution {}; retry when it is done",
                    busy.id
                )));
            }
        }
        let now = now();
        let mut effects = Effects::default();
        audit(
            t,
            user,
            &e,
            "pipeline:retry",
            json!({ "execution": execution, "stage": stage, "all_actions": all }),
        )?;
        retry_stage(t, &mut effects, &mut e, idx, all, Some(user), now)?;
        effects.emit(t, execution_event(&e, "RESUMED", Some(user), None))?;
        Ok(Outcome {
            message: format!(
                "retrying stage `{stage}` of execution {execution} ({})",
                if all { "all actions" } else { "failed actions" }
            ),
            effects,
        })
    })
}

/// Starts a rollback execution of `stage`: that stage runs again with the source,
/// artifacts and variables of `to` (default: the newest execution that succeeded in
/// it).
pub fn rollback(
    store: &Store,
    specs: &SpecCache,
    pipeline: &str,
    stage: &str,
    to: Option<i64>,
    user: &str,
) -> Result<Outcome, ControlError> {
    store.pipeline_tx(|t| {
        let latest = store_latest(t, pipeline)?;
        let spec = spec_of(specs, &latest)?;
        if spec.mode == ExecutionMode::Parallel {
            return Err(ControlError::Refused(format!(
                "pipeline `{pipeline}` runs in parallel mode, where stages cannot be rolled back (as in CodePipeline)"
            )));
        }
        stage_index(&spec, &latest, stage)?;
        let (target, idx) = match to {
            Some(id) => {
                let target = load(t, id)?;
                if target.pipeline != pipeline {
                    return Err(ControlError::NotFound(format!(
                        "execution {id} is not an execution of pipeline `{pipeline}`"
                    )));
                }
                if target.kind != "STANDARD" {
                    return Err(ControlError::Refused(format!(
                        "execution {id} is itself a rollback; roll back to the execution it rolled back to ({})",
                        target.rollback_of.unwrap_or(0)
                    )));
                }
                let idx = t
                    .stages(id)?
                    .into_iter()
                    .find(|s| s.status == "SUCCEEDED" && s.name == stage)
                    .map(|s| s.idx)
                    .ok_or_else(|| {
                        ControlError::Refused(format!(
                            "execution {id} did not succeed in stage `{stage}`; roll back only to an execution that did"
                        ))
                    })?;
                (target, idx)
            }
            None => t.last_success_in_stage(pipeline, stage, None)?.ok_or_else(|| {
                ControlError::Refused(format!(
                    "no execution of `{pipeline}` has succeeded in stage `{stage}`; there is nothing to roll back to"
                ))
            })?,
        };
        let mut effects = Effects::default();
        let new = rollback_execution(&target, idx, &latest.mode, "manual-rollback", user);
        let e = start_execution(t, &mut effects, new)?
            .ok_or_else(|| ControlError::Refused("the rollback execution could not be created".into()))?;
        audit(
            t,
            user,
            &e,
            "pipeline:rollback",
            json!({ "pipeline": pipeline, "stage": stage, "to": target.id, "execution": e.id }),
        )?;
        Ok(Outcome {
            message: format!(
                "started rollback execution {} of stage `{stage}` to execution {} (commit {})",
                e.id,
                target.id,
                &target.commit[..target.commit.len().min(8)]
            ),
            effects,
        })
    })
}

fn store_latest(t: &PipelineTx<'_>, pipeline: &str) -> Result<ExecutionRow, ControlError> {
    t.latest_execution(pipeline)?.ok_or_else(|| {
        ControlError::NotFound(format!(
            "pipeline `{pipeline}` not found (it exists once a push has started it)"
        ))
    })
}

/// Disables (`Some(reason)`) or enables the transition into `stage`. On enable, the
/// executions waiting there move on as the execution mode says (in superseded mode,
/// only the newest is left to enter).
pub fn transition(
    store: &Store,
    specs: &SpecCache,
    pipeline: &str,
    stage: &str,
    disable: Option<&str>,
    user: &str,
) -> Result<Outcome, ControlError> {
    store.pipeline_tx(|t| {
        let latest = store_latest(t, pipeline)?;
        let spec = spec_of(specs, &latest)?;
        // A transition disabled into a stage a newer definition renamed can still be
        // enabled (executions of older commits may wait there).
        if disable.is_some() || t.transition(pipeline, stage)?.is_none() {
            stage_index(&spec, &latest, stage)?;
        }
        let changed = t.set_transition(pipeline, stage, disable.map(|r| (r, user)))?;
        let mut effects = Effects::default();
        let verb = if disable.is_some() {
            "disabled"
        } else {
            "enabled"
        };
        if changed {
            audit(
                t,
                user,
                &latest,
                if disable.is_some() {
                    "pipeline:disable-transition"
                } else {
                    "pipeline:enable-transition"
                },
                json!({ "pipeline": pipeline, "stage": stage, "reason": disable }),
            )?;
            effects.emit(
                t,
                crate::store::NewEvent {
                    source: "pipeline".into(),
                    kind: "transition-state-change".into(),
                    actor: Some(user.into()),
                    repo: Some(latest.repo.clone()),
                    refname: None,
                    state: Some(verb.to_uppercase()),
                    detail: json!({ "pipeline": pipeline, "stage": stage, "reason": disable }),
                },
            )?;
        }
        Ok(Outcome {
            message: if changed {
                format!("transition into `{stage}` of `{pipeline}` {verb}")
            } else {
                format!("transition into `{stage}` of `{pipeline}` was already {verb}")
            },
            effects,
        })
    })
}
