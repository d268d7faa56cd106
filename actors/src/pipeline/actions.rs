//! Starting actions (a build queued with its plan, an approval mailed, a deployment
//! created) and noticing when they end (a build finished, an approval timed out or was
//! decided, a deployment ended).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::advance::Pass;
use super::effects::action_event;
use super::spec::{Action, ActionKind, PipelineSpec, Stage};
use super::vars::substitute;
use crate::store::{
    ActionRow, ArtifactRef, BuildPlan, ExecutionRow, NewBuild, NewDelivery, PlanInput, StoreError,
};

impl Pass<'_, '_> {
    /// Whether an in-progress action has ended (a build finished, an approval timed out);
    /// updates it, and the execution's artifacts and variables.
    pub(super) fn collect(
        &mut self,
        e: &mut ExecutionRow,
        def: &Action,
        a: &mut ActionRow,
    ) -> Result<bool, StoreError> {
        match &def.kind {
            ActionKind::Build { .. } => {
                let Some(build) = a.build_id.map(|id| self.t.build(id)).transpose()?.flatten()
                else {
                    a.status = "FAILED".into();
                    a.ended = Some(self.env.now);
                    a.reason = Some("its build record is missing".into());
                    return Ok(true);
                };
                if matches!(build.status.as_str(), "QUEUED" | "IN_PROGRESS") {
                    return Ok(false);
                }
                a.ended = Some(self.env.now);
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
                let made = self.t.artifacts(build.id)?;
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
                if self.env.now < expires {
                    return Ok(false);
                }
                a.status = "FAILED".into();
                a.ended = Some(self.env.now);
                a.reason = Some(format!(
                    "nobody approved or rejected it within {}; the approval timed out",
                    humantime::format_duration(*timeout)
                ));
                Ok(true)
            }
            ActionKind::Deploy { .. } => {
                let Some(id) = a.detail.get("deployment").and_then(Value::as_i64) else {
                    a.status = "FAILED".into();
                    a.ended = Some(self.env.now);
                    a.reason = Some("its deployment was not recorded".into());
                    return Ok(true);
                };
                let Some(d) = self.t.deployment(id)? else {
                    a.status = "FAILED".into();
                    a.ended = Some(self.env.now);
                    a.reason = Some(format!("its deployment {id} is gone"));
                    return Ok(true);
                };
                match d.status.as_str() {
                    "SUCCEEDED" => a.status = "SUCCEEDED".into(),
                    "FAILED" | "STOPPED" => {
                        a.status = "FAILED".into();
                        a.reason = Some(format!(
                            "deployment {id} ended {}{} (see `deploy status {id}`)",
                            d.status,
                            d.reason.map(|r| format!(": {r}")).unwrap_or_default()
                        ));
                    }
                    _ => return Ok(false),
                }
                a.ended = Some(self.env.now);
                Ok(true)
            }
        }
    }

    pub(super) fn start_action(
        &mut self,
        e: &ExecutionRow,
        spec: &PipelineSpec,
        stage: &Stage,
        def: &Action,
        a: &mut ActionRow,
    ) -> Result<(), StoreError> {
        a.started = Some(self.env.now);
        a.status = "IN_PROGRESS".into();
        let failed = |a: &mut ActionRow, why: String| {
            a.status = "FAILED".into();
            a.ended = Some(self.env.now);
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
                        match self.t.queue_build(&request)? {
                            Some(b) => {
                                a.build_id = Some(b.id);
                                self.fx.builds_queued = true;
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
                    let expires = self.env.now + timeout.as_secs_f64();
                    let users = self.env.people.approvers(approvers);
                    // Only approvers the policy lets decide (and read the repository)
                    // hear of it: the file names them, but anyone who may push can edit it.
                    let (may, may_not): (Vec<String>, Vec<String>) = users
                        .into_iter()
                        .partition(|u| self.env.people.may_approve(u, &e.pipeline, &e.repo));
                    if !may_not.is_empty() {
                        tracing::warn!(pipeline = %e.pipeline, execution = e.id, action = %a.name, users = ?may_not, "approvers without pipeline:approve and git:pull are not mailed");
                    }
                    let notified: Vec<String> = may
                        .iter()
                        .filter(|u| self.env.people.emails.contains_key(*u))
                        .cloned()
                        .collect();
                    a.detail = json!({
                        "approvers": approvers,
                        "message": text,
                        "expires": expires,
                        "timeout": humantime::format_duration(*timeout).to_string(),
                        "notified": notified,
                    });
                    self.t.put_action(a)?;
                    let event_id = self
                        .fx
                        .emit(self.t, action_event(e, &stage.name, a, None))?;
                    let (subject, body) = crate::compose::approval_mail(
                        e,
                        &stage.name,
                        &a.name,
                        &text,
                        expires,
                        self.env.server,
                    );
                    let deliveries: Vec<NewDelivery> = notified
                        .iter()
                        .filter_map(|u| self.env.people.emails.get(u))
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
                    self.fx
                        .mail
                        .extend(self.t.enqueue(&deliveries, self.env.domain)?);
                    return Ok(());
                }
            },
            ActionKind::Deploy { application, group } => {
                match self.create_deployment(e, def, application, group)? {
                    Ok(id) => {
                        a.detail = json!({ "deployment": id });
                        self.fx.deployments_created = true;
                    }
                    Err(why) => failed(a, why),
                }
            }
        }
        self.t.put_action(a)?;
        self.fx
            .emit(self.t, action_event(e, &stage.name, a, None))?;
        Ok(())
    }
}

impl Pass<'_, '_> {
    /// Creates the deployment of a deploy action: its single input (a build's artifact)
    /// to the group in deploy.yaml. `Ok(Err)`: why it cannot be created.
    fn create_deployment(
        &mut self,
        e: &ExecutionRow,
        def: &Action,
        application: &str,
        group: &str,
    ) -> Result<Result<i64, String>, StoreError> {
        let Some(settings) = self.env.deploy.group(application, group) else {
            return Ok(Err(format!(
                "deploy.yaml has no group `{group}` in application `{application}`; add it in the admin repository"
            )));
        };
        let input = def.inputs.first().cloned().unwrap_or_default();
        let from = e
            .artifacts
            .get(&input)
            .and_then(|v| serde_json::from_value::<ArtifactRef>(v.clone()).ok());
        let (sha256, build_id) = match from {
            Some(ArtifactRef::Zip { sha256, build_id }) => (sha256, build_id),
            Some(ArtifactRef::Commit { .. }) => {
                return Ok(Err(format!(
                    "its input `{input}` is a commit, not a revision: deploy the output of a build action (its artifact holds appspec.yml)"
                )))
            }
            None => return Ok(Err(format!("its input `{input}` was not made in this execution"))),
        };
        let d = self.t.insert_deployment(&crate::store::NewDeployment {
            application: application.into(),
            group_name: group.into(),
            build_id: Some(build_id),
            artifact: Some(input),
            bundle_sha256: sha256,
            commit: e.commit.clone(),
            creator: format!("pipeline/{}", e.pipeline),
            rollback_of: None,
            settings: crate::deploy::advance::settings_json(settings),
        })?;
        Ok(Ok(d.id))
    }
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
