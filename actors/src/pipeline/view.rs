//! What `pipeline status` shows: each stage of a pipeline (as its newest execution
//! defines them) with the execution in it or last through it, its actions, the
//! executions waiting in front of it and whether its transition is disabled.

use serde::Serialize;

use super::advance::SpecCache;
use crate::store::{ActionRow, ExecutionRow, Store, StoreError, TransitionRow};

/// How many recent executions are looked at.
const RECENT: usize = 100;

/// A pipeline's picture.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PipelineView {
    /// The pipeline.
    pub pipeline: String,
    /// Its repository.
    pub repo: String,
    /// The execution mode of the newest definition.
    pub mode: String,
    /// The newest execution.
    pub latest: ExecutionSummary,
    /// The stages, in order.
    pub stages: Vec<StageView>,
    /// Every disabled transition of the pipeline (also into stages only older
    /// definitions have).
    pub disabled_transitions: Vec<TransitionRow>,
}

/// One execution, briefly.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecutionSummary {
    /// Its id.
    pub id: i64,
    /// Its status.
    pub status: String,
    /// The source commit.
    pub commit: String,
    /// The pushed ref.
    #[serde(rename = "ref")]
    pub refname: Option<String>,
    /// STANDARD or ROLLBACK.
    pub kind: String,
    /// Why it ended so.
    pub reason: Option<String>,
}

impl From<&ExecutionRow> for ExecutionSummary {
    fn from(e: &ExecutionRow) -> Self {
        ExecutionSummary {
            id: e.id,
            status: e.status.clone(),
            commit: e.commit.clone(),
            refname: e.refname.clone(),
            kind: e.kind.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// One stage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageView {
    /// The stage's name.
    pub name: String,
    /// The disabled transition into it, if it is disabled.
    pub transition_disabled: Option<TransitionRow>,
    /// Executions waiting to enter it, oldest first.
    pub waiting: Vec<i64>,
    /// The newest execution that entered it.
    pub execution: Option<ExecutionSummary>,
    /// That execution's stage status (IN_PROGRESS, SUCCEEDED, FAILED, STOPPED).
    pub status: Option<String>,
    /// Its attempt (1 + retries).
    pub attempt: Option<i64>,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// Its actions.
    pub actions: Vec<ActionView>,
}

/// One action.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActionView {
    /// The action's name.
    pub name: String,
    /// build, approval, deploy.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its run-order.
    pub run_order: i64,
    /// PENDING, IN_PROGRESS, SUCCEEDED, FAILED, ABANDONED.
    pub status: String,
    /// Seconds it ran (so far, when running).
    pub duration_seconds: Option<f64>,
    /// Its build.
    pub build_id: Option<i64>,
    /// Why it failed, or who decided.
    pub reason: Option<String>,
    /// Approvals: the message.
    pub message: Option<String>,
}

fn action_view(a: &ActionRow, now: f64) -> ActionView {
    ActionView {
        name: a.name.clone(),
        kind: a.kind.clone(),
        run_order: a.run_order,
        status: a.status.clone(),
        duration_seconds: a.started.map(|s| (a.ended.unwrap_or(now) - s).max(0.0)),
        build_id: a.build_id,
        reason: a.reason.clone(),
        message: a
            .detail
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string),
    }
}

/// The picture of `pipeline`; `None` when it has never run.
pub fn pipeline_view(
    store: &Store,
    specs: &SpecCache,
    pipeline: &str,
    repo: &str,
) -> Result<Option<PipelineView>, StoreError> {
    let recent = store.executions(pipeline, RECENT)?;
    let Some(latest) = recent.first() else {
        return Ok(None);
    };
    let now = crate::store::unix_now();
    let names: Vec<String> = match specs.get_spec(&latest.definition) {
        Ok(spec) => spec.stages.iter().map(|s| s.name.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let disabled = store.disabled_transitions(pipeline)?;
    let mut stages = Vec::new();
    let mut stages_of: std::collections::HashMap<i64, Vec<crate::store::StageRow>> =
        std::collections::HashMap::new();
    for (idx, name) in names.iter().enumerate() {
        let idx = idx as i64;
        let mut waiting: Vec<i64> = recent
            .iter()
            .filter(|e| e.active() && !e.entered && e.stage == idx)
            .map(|e| e.id)
            .collect();
        waiting.sort();
        let mut view = StageView {
            name: name.clone(),
            transition_disabled: disabled.iter().find(|t| &t.stage == name).cloned(),
            waiting,
            execution: None,
            status: None,
            attempt: None,
            reason: None,
            actions: Vec::new(),
        };
        // The newest execution that entered this stage (by stage name: a definition
        // may have moved it).
        for e in &recent {
            // Each execution's stages are read once for the whole picture.
            if let std::collections::hash_map::Entry::Vacant(slot) = stages_of.entry(e.id) {
                slot.insert(store.execution_stages(e.id)?);
            }
            let found = stages_of[&e.id].iter().find(|s| &s.name == name).cloned();
            if let Some(s) = found {
                view.execution = Some(e.into());
                view.status = Some(s.status.clone());
                view.attempt = Some(s.attempt);
                view.reason = s.reason.clone();
                view.actions = store
                    .execution_actions(e.id)?
                    .iter()
                    .filter(|a| a.stage == s.idx)
                    .map(|a| action_view(a, now))
                    .collect();
                break;
            }
        }
        stages.push(view);
    }
    Ok(Some(PipelineView {
        pipeline: pipeline.into(),
        repo: repo.into(),
        mode: latest.mode.clone(),
        latest: latest.into(),
        stages,
        disabled_transitions: disabled,
    }))
}
