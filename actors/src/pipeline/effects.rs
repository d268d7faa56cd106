//! What a step records: the events of executions, stages and actions (stored in the
//! step's transaction), and what others must hear once it is committed.

use serde_json::{json, Map, Value};

use crate::store::{ActionRow, ExecutionRow, NewEvent, PipelineTx, StageRow, StoreError};

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
    /// Whether deploy actions created or stopped deployments (the supervisor should look).
    pub deployments_created: bool,
}

/// How much an [`Effects`] held at one point (to forget what a failed step added).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    events: usize,
    mail: usize,
    stop_builds: usize,
    ended: usize,
    builds_queued: bool,
    deployments_created: bool,
}

impl Effects {
    /// Where it stands now.
    pub fn mark(&self) -> Mark {
        Mark {
            events: self.events.len(),
            mail: self.mail.len(),
            stop_builds: self.stop_builds.len(),
            ended: self.ended.len(),
            builds_queued: self.builds_queued,
            deployments_created: self.deployments_created,
        }
    }

    /// Forgets everything added since `mark` (its writes were rolled back).
    pub fn rewind(&mut self, mark: Mark) {
        self.events.truncate(mark.events);
        self.mail.truncate(mark.mail);
        self.stop_builds.truncate(mark.stop_builds);
        self.ended.truncate(mark.ended);
        self.builds_queued = mark.builds_queued;
        self.deployments_created = mark.deployments_created;
    }

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
