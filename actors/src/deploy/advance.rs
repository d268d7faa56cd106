//! One supervisor pass over the active deployments, in one store transaction: start a
//! queued deployment when its group is free, hand each host its next lifecycle event
//! when the previous one succeeded, decide hosts and deployments with [`Plan::step`],
//! bake, and roll back a failed deployment when the group says so.
//!
//! Lifecycle events run in CodeDeploy's in-place order, one at a time per host; an
//! event waits as READY until its agent polls for it. Nothing lives in memory: a pass
//! can run from any state, so a restart simply runs the next pass.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::plan::{tags_match, Decision, HostInfo, HostProgress, Plan, RevisionHealth};
use crate::config::deploy::{AutoRollback, DeploymentConfig, DeploymentGroup, TagSet};
use crate::store::{
    DeployTx, DeploymentRow, EventRow, HostRow, NewDeployment, NewEvent, StoreError,
};

/// The in-place lifecycle, in order (no load balancer).
pub const IN_PLACE: [&str; 7] = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
];

/// A dispatched command not acknowledged within this many seconds is handed out again
/// (the poll's answer was lost).
const ACK_WITHIN_SECONDS: f64 = 30.0;

/// A group's settings as a deployment keeps them (JSON), so later edits of
/// deploy.yaml do not change a deployment under way.
pub fn settings_json(group: &DeploymentGroup) -> Value {
    let config = match group.config {
        DeploymentConfig::OneAtATime => json!("one-at-a-time"),
        DeploymentConfig::HalfAtATime => json!("half-at-a-time"),
        DeploymentConfig::AllAtOnce => json!("all-at-once"),
        DeploymentConfig::MinHealthyHosts(n) => json!({ "hosts": n }),
        DeploymentConfig::MinHealthyPercent(p) => json!({ "percent": p }),
    };
    let tags: Vec<Vec<String>> = group
        .tags
        .iter()
        .map(|set| set.filters.iter().map(|f| f.to_string()).collect())
        .collect();
    json!({
        "config": config,
        "tags": tags,
        "auto_rollback": {
            "failure": group.auto_rollback.on_failure,
            "alarm": group.auto_rollback.on_alarm,
            "stop": group.auto_rollback.on_stop,
        },
        "bake_seconds": group.bake.map(|b| b.as_secs_f64()).unwrap_or(0.0),
        "file_exists_behavior": group.file_exists_behavior.map(|f| f.as_str()).unwrap_or("DISALLOW"),
        "alarms": super::alarms::snapshot::to_json(&group.alarms),
        "ignore_alarm_poll_failure": group.ignore_alarm_poll_failure,
    })
}

fn config_of(settings: &Value) -> DeploymentConfig {
    match &settings["config"] {
        Value::String(s) if s == "half-at-a-time" => DeploymentConfig::HalfAtATime,
        Value::String(s) if s == "all-at-once" => DeploymentConfig::AllAtOnce,
        Value::Object(o) if o.contains_key("hosts") => {
            DeploymentConfig::MinHealthyHosts(o["hosts"].as_u64().unwrap_or(0) as u32)
        }
        Value::Object(o) if o.contains_key("percent") => {
            DeploymentConfig::MinHealthyPercent(o["percent"].as_u64().unwrap_or(100) as u8)
        }
        _ => DeploymentConfig::OneAtATime,
    }
}

fn tag_sets_of(settings: &Value) -> Vec<TagSet> {
    settings["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|set| TagSet {
            filters: set
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|f| crate::config::deploy::TagFilter::parse(f).ok())
                .collect(),
        })
        .collect()
}

fn auto_rollback_of(settings: &Value) -> AutoRollback {
    let r = &settings["auto_rollback"];
    AutoRollback {
        on_failure: r["failure"].as_bool().unwrap_or(false),
        on_alarm: r["alarm"].as_bool().unwrap_or(false),
        on_stop: r["stop"].as_bool().unwrap_or(false),
    }
}

/// What a pass did that others must hear about once committed.
#[derive(Debug, Default)]
pub struct Effects {
    /// Events stored: (id, source, type).
    pub events: Vec<(i64, String, String)>,
    /// The agents that have commands ready (their polls should look now).
    pub ready_for: std::collections::BTreeSet<String>,
}

impl Effects {
    /// Stores `event` inside the transaction and remembers to announce it.
    pub fn emit(&mut self, t: &DeployTx<'_>, event: NewEvent) -> Result<(), StoreError> {
        let id = t.insert_events(std::slice::from_ref(&event))?[0];
        self.events.push((id, event.source, event.kind));
        Ok(())
    }
}

fn deployment_event(d: &DeploymentRow, state: &str, extra: Value) -> NewEvent {
    let mut detail = json!({
        "deployment": d.id,
        "application": d.application,
        "group": d.group_name,
        "build_id": d.build_id,
        "commit": d.commit,
        "creator": d.creator,
        "rollback_of": d.rollback_of,
        "rollback_id": d.rollback_id,
        "reason": d.reason,
    });
    if let (Some(map), Value::Object(more)) = (detail.as_object_mut(), extra) {
        map.extend(more);
    }
    NewEvent {
        source: "deploy".into(),
        kind: "deployment-state-change".into(),
        actor: Some(d.creator.clone()),
        repo: None,
        refname: None,
        state: Some(state.into()),
        detail,
    }
}

fn host_event(d: &DeploymentRow, h: &HostRow, failed: Option<&EventRow>) -> NewEvent {
    let mut detail = json!({
        "deployment": d.id,
        "application": d.application,
        "group": d.group_name,
        "host": h.agent,
        "reason": h.reason,
    });
    if let (Some(map), Some(e)) = (detail.as_object_mut(), failed) {
        map.insert("event".into(), json!(e.event));
        map.insert("error_code".into(), json!(e.error_code));
        map.insert("script".into(), json!(e.script));
        map.insert("log".into(), json!(e.log));
    }
    NewEvent {
        source: "deploy".into(),
        kind: "host-state-change".into(),
        actor: Some(d.creator.clone()),
        repo: None,
        refname: None,
        state: Some(h.status.clone()),
        detail,
    }
}

/// Ends `d` with `status` and `reason`, and records it.
pub fn end_deployment(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &mut DeploymentRow,
    status: &str,
    reason: Option<String>,
    now: f64,
) -> Result<(), StoreError> {
    d.status = status.into();
    d.ended = Some(now);
    d.reason = reason;
    t.update_deployment(d)?;
    fx.emit(t, deployment_event(d, status, json!({})))
}

/// Skips whatever has not started on `d`'s hosts (the deployment ended).
fn skip_the_rest(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &DeploymentRow,
    why: &str,
    now: f64,
) -> Result<(), StoreError> {
    for mut e in t.events(d.id)? {
        if matches!(e.status.as_str(), "PENDING" | "READY" | "DISPATCHED") {
            e.status = "SKIPPED".into();
            e.ended = Some(now);
            t.update_event(&e)?;
        }
    }
    for mut h in t.hosts(d.id)? {
        match h.status.as_str() {
            "PENDING" => {
                h.status = "SKIPPED".into();
                h.ended = Some(now);
                h.reason = Some(why.into());
                t.put_host(&h)?;
            }
            // Half deployed (an event may still finish on its agent): the host is not
            // healthy, and goes first next time.
            "IN_PROGRESS" => {
                h.status = "FAILED".into();
                h.ended = Some(now);
                h.reason = Some(format!("{why} while this host was being deployed"));
                t.put_host(&h)?;
                t.set_group_host(&d.application, &d.group_name, &h.agent, false, None, d.id)?;
                fx.emit(t, host_event(d, &h, None))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Stops `d` (asked by a person, an alarm, an abandoned pipeline): nothing new starts on
/// its hosts (an event already running finishes on its agent), it ends STOPPED with
/// `why`, and, if it had started, the group's auto-rollback for `cause` (`stop` or
/// `alarm`) applies. Answers the whole reason.
pub fn stop_deployment(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &mut DeploymentRow,
    why: String,
    cause: &str,
    now: f64,
) -> Result<String, StoreError> {
    skip_the_rest(t, fx, d, "the deployment was stopped", now)?;
    let mut why = why;
    // One that never started changed no host: rolling back would only undo the
    // deployment that runs before it.
    if d.started.is_some() {
        if let Some(more) = maybe_roll_back(t, fx, d, cause)? {
            why.push_str("; ");
            why.push_str(&more);
        }
    }
    end_deployment(t, fx, d, "STOPPED", Some(why.clone()), now)?;
    Ok(why)
}

/// Stops the deployments whose alarms fired (deployment id, why), those still running.
pub fn stop_on_alarms(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    stops: &[(i64, String)],
    now: f64,
) -> Result<(), StoreError> {
    for (id, why) in stops {
        let Some(mut d) = t.deployment(*id)? else {
            continue;
        };
        if matches!(d.status.as_str(), "IN_PROGRESS" | "BAKING") {
            stop_deployment(t, fx, &mut d, why.clone(), "alarm", now)?;
        }
    }
    Ok(())
}

/// Starts a rollback of `d` if its group rolls back on `cause` (`failure`, `alarm`,
/// `stop`): a new deployment of the group's last successful revision. Answers the
/// sentence for `d`'s reason.
pub fn maybe_roll_back(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &mut DeploymentRow,
    cause: &str,
) -> Result<Option<String>, StoreError> {
    let wanted = auto_rollback_of(&d.settings);
    let on = match cause {
        "failure" => wanted.on_failure,
        "alarm" => wanted.on_alarm,
        _ => wanted.on_stop,
    };
    if !on || d.rollback_of.is_some() {
        return Ok(None);
    }
    let Some(good) = t.last_success(&d.application, &d.group_name, Some(d.id))? else {
        return Ok(Some(
            "no earlier deployment of this group succeeded, so there is nothing to roll back to"
                .into(),
        ));
    };
    let rollback = t.insert_deployment(&NewDeployment {
        application: d.application.clone(),
        group_name: d.group_name.clone(),
        build_id: good.build_id,
        artifact: good.artifact.clone(),
        bundle_sha256: good.bundle_sha256.clone(),
        commit: good.commit.clone(),
        creator: "rollback".into(),
        rollback_of: Some(d.id),
        settings: rollback_settings(&d.settings, &good.settings),
    })?;
    d.rollback_id = Some(rollback.id);
    t.update_deployment(d)?;
    fx.emit(
        t,
        deployment_event(&rollback, "CREATED", json!({ "rollback_of": d.id })),
    )?;
    Ok(Some(format!(
        "rolling back: deployment {} redeploys the revision of deployment {} (commit {})",
        rollback.id,
        good.id,
        &good.commit[..good.commit.len().min(8)]
    )))
}

/// What a pass knows besides the store.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix seconds.
    pub now: f64,
    /// An agent not heard from for this many seconds has lost the event it was running.
    pub agent_lost: f64,
    /// When the newest complete reading of the alarms began (unix seconds): a bake
    /// with alarms ends only after a reading that began once the bake time was over.
    pub alarms_read_at: f64,
}

/// A rollback's settings: the failed deployment's, with the last good deployment's
/// file_exists_behavior (as CodeDeploy does: the files go back the way they came).
pub fn rollback_settings(failed: &Value, good: &Value) -> Value {
    let mut settings = failed.clone();
    if let Some(feb) = good.get("file_exists_behavior") {
        settings["file_exists_behavior"] = feb.clone();
    }
    settings
}

/// One pass over every active deployment.
pub fn advance_all(t: &DeployTx<'_>, fx: &mut Effects, clock: Clock) -> Result<(), StoreError> {
    let now = clock.now;
    for _ in 0..8 {
        let mut moved = false;
        for d in t.active_deployments()? {
            let Some(mut d) = t.deployment(d.id)? else {
                continue;
            };
            if !d.active() {
                continue;
            }
            // Another round is needed only when a deployment changed state (an ended
            // one lets the next of its group start); events made ready wait for agents.
            let before = d.status.clone();
            match d.status.as_str() {
                "CREATED" | "QUEUED" => start(t, fx, &mut d, now)?,
                "IN_PROGRESS" => progress(t, fx, &mut d, clock)?,
                _ => bake(t, fx, &mut d, clock)?,
            }
            moved |= d.status != before;
        }
        if !moved {
            break;
        }
    }
    Ok(())
}

fn start(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &mut DeploymentRow,
    now: f64,
) -> Result<(), StoreError> {
    // One active deployment per group; the others wait in order.
    let waits = t.active_deployments()?.iter().any(|o| {
        o.id != d.id
            && o.application == d.application
            && o.group_name == d.group_name
            && (!matches!(o.status.as_str(), "CREATED" | "QUEUED") || o.id < d.id)
    });
    if waits {
        if d.status == "CREATED" {
            d.status = "QUEUED".into();
            t.update_deployment(d)?;
            fx.emit(t, deployment_event(d, "QUEUED", json!({})))?;
            return Ok(());
        }
        return Ok(());
    }
    let sets = tag_sets_of(&d.settings);
    // A deployment for hosts that joined the group later reaches only them.
    let only: Option<Vec<String>> = d.settings["only_hosts"].as_array().map(|l| {
        l.iter()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect()
    });
    let agents: Vec<String> = t
        .agents()?
        .into_iter()
        .filter(|a| tags_match(&sets, &a.tags))
        .filter(|a| only.as_ref().is_none_or(|o| o.contains(&a.name)))
        .map(|a| a.name)
        .collect();
    let known: BTreeMap<String, (bool, Option<String>)> = t
        .group_hosts(&d.application, &d.group_name)?
        .into_iter()
        .map(|h| (h.agent, (h.healthy, h.revision)))
        .collect();
    let hosts: Vec<HostInfo> = agents
        .iter()
        .map(|name| {
            let (healthy, revision) = known.get(name).cloned().unwrap_or((true, None));
            HostInfo {
                name: name.clone(),
                healthy,
                revision: match revision {
                    None => RevisionHealth::Unknown,
                    Some(r) if r == d.bundle_sha256 => RevisionHealth::Current,
                    Some(_) => RevisionHealth::Old,
                },
            }
        })
        .collect();
    d.started = Some(now);
    let plan = match Plan::new(config_of(&d.settings), hosts.clone()) {
        Ok(p) => p,
        Err(e) => {
            let reason = if agents.is_empty() {
                format!(
                    "no registered agent matches the tags of group {}/{}; register agents with `agent token create --tag KEY=VALUE`",
                    d.application, d.group_name
                )
            } else {
                e.to_string()
            };
            end_deployment(t, fx, d, "FAILED", Some(reason), now)?;
            return Ok(());
        }
    };
    for h in plan.hosts() {
        let before = known.get(&h.name);
        t.put_host(&HostRow {
            deployment_id: d.id,
            agent: h.name.clone(),
            status: "PENDING".into(),
            healthy_before: h.healthy,
            revision_before: before.and_then(|(_, r)| r.clone()),
            started: None,
            ended: None,
            reason: None,
        })?;
        for (seq, event) in IN_PLACE.iter().enumerate() {
            t.insert_event(d.id, &h.name, event, seq as i64)?;
        }
    }
    d.status = "IN_PROGRESS".into();
    t.update_deployment(d)?;
    fx.emit(
        t,
        deployment_event(d, "STARTED", json!({ "hosts": plan.hosts().len() })),
    )?;
    Ok(())
}

fn plan_of(d: &DeploymentRow, hosts: &[HostRow]) -> Result<Plan, String> {
    let infos = hosts
        .iter()
        .map(|h| HostInfo {
            name: h.agent.clone(),
            healthy: h.healthy_before,
            revision: match &h.revision_before {
                None => RevisionHealth::Unknown,
                Some(r) if *r == d.bundle_sha256 => RevisionHealth::Current,
                Some(_) => RevisionHealth::Old,
            },
        })
        .collect();
    Plan::new(config_of(&d.settings), infos).map_err(|e| e.to_string())
}

fn progress(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &mut DeploymentRow,
    clock: Clock,
) -> Result<(), StoreError> {
    let (now, agent_lost) = (clock.now, clock.agent_lost);
    let last_seen: BTreeMap<String, f64> = t
        .agents()?
        .into_iter()
        .map(|a| (a.name, a.last_seen))
        .collect();
    let mut events = t.events(d.id)?;
    // Housekeeping: lost answers are handed out again; a lost agent fails its event.
    for e in events.iter_mut() {
        let seen = last_seen.get(&e.agent).copied().unwrap_or(0.0);
        let lost = now - seen > agent_lost;
        if matches!(e.status.as_str(), "DISPATCHED" | "IN_PROGRESS") && lost {
            e.status = "FAILED".into();
            e.ended = Some(now);
            e.error_code = Some(5);
            e.message = Some(format!(
                "the agent stopped answering (not heard from for {}s)",
                (now - seen).round()
            ));
            t.update_event(e)?;
        } else if e.status == "DISPATCHED"
            && e.dispatched.is_some_and(|at| now - at > ACK_WITHIN_SECONDS)
        {
            e.status = "READY".into();
            e.dispatched = None;
            t.update_event(e)?;
            fx.ready_for.insert(e.agent.clone());
        }
    }
    let mut hosts = t.hosts(d.id)?;
    for h in hosts.iter_mut().filter(|h| h.status == "IN_PROGRESS") {
        let mine: Vec<&mut EventRow> = events.iter_mut().filter(|e| e.agent == h.agent).collect();
        if let Some(failed) = mine
            .iter()
            .find(|e| e.status == "FAILED")
            .map(|e| (*e).clone())
        {
            for e in mine {
                if matches!(e.status.as_str(), "PENDING" | "READY") {
                    e.status = "SKIPPED".into();
                    t.update_event(e)?;
                }
            }
            h.status = "FAILED".into();
            h.ended = Some(now);
            h.reason = Some(format!(
                "{} failed: {}",
                failed.event,
                failed
                    .message
                    .clone()
                    .unwrap_or_else(|| "no reason given".into())
            ));
            t.put_host(h)?;
            t.set_group_host(&d.application, &d.group_name, &h.agent, false, None, d.id)?;
            fx.emit(t, host_event(d, h, Some(&failed)))?;
        } else if mine
            .iter()
            .all(|e| matches!(e.status.as_str(), "SUCCEEDED" | "SKIPPED"))
        {
            h.status = "SUCCEEDED".into();
            h.ended = Some(now);
            t.put_host(h)?;
            t.set_group_host(
                &d.application,
                &d.group_name,
                &h.agent,
                true,
                Some(&d.bundle_sha256),
                d.id,
            )?;
            fx.emit(t, host_event(d, h, None))?;
        } else if !mine
            .iter()
            .any(|e| matches!(e.status.as_str(), "READY" | "DISPATCHED" | "IN_PROGRESS"))
        {
            if let Some(next) = mine.into_iter().find(|e| e.status == "PENDING") {
                next.status = "READY".into();
                t.update_event(next)?;
                fx.ready_for.insert(next.agent.clone());
            }
        }
    }
    let plan = match plan_of(d, &hosts) {
        Ok(p) => p,
        Err(why) => {
            skip_the_rest(t, fx, d, &why, now)?;
            end_deployment(t, fx, d, "FAILED", Some(why), now)?;
            return Ok(());
        }
    };
    let progress: BTreeMap<String, HostProgress> = hosts
        .iter()
        .map(|h| {
            let p = match h.status.as_str() {
                "IN_PROGRESS" => HostProgress::InProgress,
                "SUCCEEDED" => HostProgress::Succeeded,
                "FAILED" | "SKIPPED" => HostProgress::Failed,
                _ => HostProgress::Pending,
            };
            (h.agent.clone(), p)
        })
        .collect();
    match plan.step(&progress) {
        Decision::Continue { start } => {
            for name in start {
                let Some(h) = hosts.iter_mut().find(|h| h.agent == name) else {
                    continue;
                };
                h.status = "IN_PROGRESS".into();
                h.started = Some(now);
                t.put_host(h)?;
                if let Some(first) = events
                    .iter_mut()
                    .filter(|e| e.agent == name && e.status == "PENDING")
                    .min_by_key(|e| e.seq)
                {
                    first.status = "READY".into();
                    t.update_event(first)?;
                    fx.ready_for.insert(first.agent.clone());
                }
            }
        }
        Decision::Succeeded => {
            let bake = d.settings["bake_seconds"].as_f64().unwrap_or(0.0);
            let last_host = hosts.iter().filter_map(|h| h.ended).fold(0.0, f64::max);
            if bake <= 0.0 && super::alarms::Watch::applies(d) && clock.alarms_read_at < last_host {
                // The alarms have the last word: wait for a reading made after the
                // last host finished.
                return Ok(());
            }
            if bake > 0.0 {
                d.status = "BAKING".into();
                d.bake_until = Some(now + bake);
                t.update_deployment(d)?;
                fx.emit(t, deployment_event(d, "BAKING", json!({})))?;
            } else {
                end_deployment(t, fx, d, "SUCCEEDED", None, now)?;
            }
        }
        Decision::Failed { reason } => {
            skip_the_rest(t, fx, d, "the deployment failed", now)?;
            let mut why = reason;
            if let Some(more) = maybe_roll_back(t, fx, d, "failure")? {
                why.push_str("; ");
                why.push_str(&more);
            }
            end_deployment(t, fx, d, "FAILED", Some(why), now)?;
        }
    }
    Ok(())
}

fn bake(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    d: &mut DeploymentRow,
    clock: Clock,
) -> Result<(), StoreError> {
    let until = d.bake_until.unwrap_or(0.0);
    if clock.now < until {
        return Ok(());
    }
    // Alarms count until the end: the bake ends after a reading made once it was over.
    if super::alarms::Watch::applies(d) && clock.alarms_read_at < until {
        return Ok(());
    }
    end_deployment(t, fx, d, "SUCCEEDED", None, clock.now)?;
    Ok(())
}

/// A host that joined `group` gets the group's current revision: a deployment of its
/// last successful revision to that host alone (queued behind any active deployment).
/// Answers the new deployment's id, or `None` when the group never succeeded.
pub fn deploy_to_new_host(
    t: &DeployTx<'_>,
    fx: &mut Effects,
    application: &str,
    group_name: &str,
    group: &DeploymentGroup,
    agent: &str,
) -> Result<Option<i64>, StoreError> {
    let Some(good) = t.last_success(application, group_name, None)? else {
        return Ok(None);
    };
    let mut settings = settings_json(group);
    settings["only_hosts"] = json!([agent]);
    // One host: whatever the group's configuration, it must succeed on it.
    settings["config"] = json!("one-at-a-time");
    let d = t.insert_deployment(&NewDeployment {
        application: application.into(),
        group_name: group_name.into(),
        build_id: good.build_id,
        artifact: good.artifact.clone(),
        bundle_sha256: good.bundle_sha256.clone(),
        commit: good.commit.clone(),
        creator: format!("slipway (new host {agent})"),
        rollback_of: None,
        settings,
    })?;
    fx.emit(
        t,
        deployment_event(
            &d,
            "CREATED",
            json!({ "new_host": agent, "revision_of": good.id }),
        ),
    )?;
    Ok(Some(d.id))
}
