//! The branch reaper: deletes stale branches on a schedule, on an event, or on demand
//! (`ssh … branch reap REPO [--dry-run]`).
//!
//! A branch is stale when its tip commit is older than `older-than` and, with
//! `merged-only`, its tip is reachable from the default branch. The default branch and
//! `keep` patterns are never deleted. Deletion is compare-and-swap on the tip that was
//! judged stale: a branch pushed to meanwhile is left alone. Every deletion is an event
//! (`git/ref-deleted`; its actor is the user who ran `branch reap`, or `rule:NAME` for a
//! rule) and an audit line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};
use serde::Serialize;

use crate::bus::{EventBus, Publish};
use crate::config::rules::{Action, RulesConfig, StaleBranches};
use crate::failpoints::Failpoints;
use crate::metrics::RuntimeMetrics;
use crate::store::{AuditEntry, AuditKind, Event, NewEvent, Store};

/// The repositories the reaper may look at. The server implements it over its
/// validated repository names.
pub trait RepoCatalog: Send + Sync + 'static {
    /// Every repository name.
    fn list(&self) -> Vec<String>;
    /// The path of a repository, if it exists.
    fn path(&self, repo: &str) -> Option<PathBuf>;
}

/// One branch the reaper judged stale.
#[derive(Debug, Clone, Serialize)]
pub struct StaleBranch {
    /// The repository.
    pub repo: String,
    /// Short name (`feature/x`).
    pub branch: String,
    /// Its tip when judged.
    pub tip: String,
    /// Age of the tip commit, in days.
    pub age_days: f64,
    /// `deleted`, `would-delete` (dry run) or `skipped: …`.
    pub result: String,
}

/// Runs a rule's action (from the rules engine or the schedule).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunAction {
    /// The rule.
    pub rule: String,
    /// Its action.
    pub action: Action,
    /// The event that triggered it, if any.
    pub event: Option<Event>,
}

/// Reaps one repository now.
#[derive(Message)]
#[rtype(result = "Result<Vec<StaleBranch>, String>")]
pub struct Reap {
    /// The repository.
    pub repo: String,
    /// What counts as stale.
    pub settings: StaleBranches,
    /// List only.
    pub dry_run: bool,
    /// Who asked (for events and audit).
    pub requested_by: String,
}

/// New scheduled rules.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSchedules(pub Arc<RulesConfig>);

/// The reaper actor.
pub struct BranchReaper {
    store: Store,
    catalog: Arc<dyn RepoCatalog>,
    bus: Addr<EventBus>,
    metrics: RuntimeMetrics,
    failpoints: Failpoints,
    rules: Arc<RulesConfig>,
    scheduling: bool,
}

impl BranchReaper {
    /// A reaper over `catalog`.
    pub fn new(
        store: Store,
        catalog: Arc<dyn RepoCatalog>,
        bus: Addr<EventBus>,
        metrics: RuntimeMetrics,
        failpoints: Failpoints,
    ) -> BranchReaper {
        BranchReaper {
            store,
            catalog,
            bus,
            metrics,
            failpoints,
            rules: Arc::new(RulesConfig::default()),
            scheduling: false,
        }
    }

    fn run_schedules(&mut self, ctx: &mut Context<Self>) {
        if self.scheduling {
            return;
        }
        self.scheduling = true;
        let store = self.store.clone();
        let catalog = self.catalog.clone();
        let rules = self.rules.clone();
        let bus = self.bus.clone();
        let metrics = self.metrics.clone();
        let failpoints = self.failpoints.clone();
        let job = async move {
            for rule in &rules.rules {
                let (Some(period), Some(Action::DeleteStaleBranches(settings))) =
                    (rule.schedule, &rule.action)
                else {
                    continue;
                };
                let now = unix_now();
                let last = {
                    let store = store.clone();
                    let name = rule.name.clone();
                    tokio::task::spawn_blocking(move || store.schedule_last_run(&name))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten()
                };
                if last.is_some_and(|l| now - l < period.as_secs_f64()) {
                    continue;
                }
                tracing::info!(rule = %rule.name, "running scheduled delete-stale-branches");
                for repo in catalog.list() {
                    if settings.repo.is_match(&repo) {
                        let _ = reap(
                            &store,
                            &catalog,
                            &bus,
                            &metrics,
                            &failpoints,
                            &repo,
                            settings,
                            false,
                            &format!("rule:{}", rule.name),
                            "schedule",
                        )
                        .await;
                    }
                }
                let store = store.clone();
                let name = rule.name.clone();
                let _ = tokio::task::spawn_blocking(move || store.schedule_ran(&name, now)).await;
            }
        };
        ctx.spawn(
            job.into_actor(self)
                .map(|(), act, _| act.scheduling = false),
        );
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Finds (and unless `dry_run`, deletes) the stale branches of `repo`, then publishes an
/// event per deletion.
#[allow(clippy::too_many_arguments)]
async fn reap(
    store: &Store,
    catalog: &Arc<dyn RepoCatalog>,
    bus: &Addr<EventBus>,
    metrics: &RuntimeMetrics,
    failpoints: &Failpoints,
    repo: &str,
    settings: &StaleBranches,
    dry_run: bool,
    actor: &str,
    trigger: &str,
) -> Result<Vec<StaleBranch>, String> {
    let path = catalog
        .path(repo)
        .ok_or_else(|| format!("repository `{repo}` not found"))?;
    let (store2, repo2, settings2, actor2) = (
        store.clone(),
        repo.to_string(),
        settings.clone(),
        actor.to_string(),
    );
    let pause = !dry_run && failpoints.fire("reaper-before-delete");
    let branches = tokio::task::spawn_blocking(move || {
        reap_blocking(&store2, &path, &repo2, &settings2, dry_run, &actor2, pause)
    })
    .await
    .map_err(|e| format!("reaper task failed: {e}"))??;
    let events: Vec<NewEvent> = branches
        .iter()
        .filter(|b| b.result == "deleted")
        .map(|b| NewEvent {
            source: "git".into(),
            kind: "ref-deleted".into(),
            actor: Some(actor.to_string()),
            repo: Some(repo.to_string()),
            refname: Some(format!("refs/heads/{}", b.branch)),
            state: None,
            detail: serde_json::json!({
                "old": b.tip,
                "new": "0".repeat(40),
                "reason": format!("stale: tip {:.0} days old", b.age_days),
                "trigger": trigger,
            }),
        })
        .collect();
    if !events.is_empty() {
        metrics
            .branches_reaped_total
            .with_label_values(&[trigger])
            .inc_by(events.len() as u64);
        bus.send(Publish(events))
            .await
            .map_err(|e| format!("cannot publish: {e}"))??;
    }
    Ok(branches)
}

fn reap_blocking(
    store: &Store,
    path: &std::path::Path,
    repo_name: &str,
    settings: &StaleBranches,
    dry_run: bool,
    actor: &str,
    pause_before_delete: bool,
) -> Result<Vec<StaleBranch>, String> {
    let err = |e: gix::Error| format!("repository `{repo_name}`: {e}");
    let repo = gix::open(path).map_err(|e| format!("repository `{repo_name}`: {e}"))?;
    let default_ref = repo
        .head_name()
        .map_err(err)?
        .map(|n| n.as_bstr().to_string())
        .unwrap_or_else(|| "refs/heads/main".into());
    let default_tip = match repo.try_find_reference(default_ref.as_str()).map_err(err)? {
        Some(mut r) => Some(r.peel_to_id().map_err(err)?.detach()),
        None => None,
    };
    let now = unix_now();
    let mut found = Vec::new();
    let refs = repo.references().map_err(err)?;
    for reference in refs.local_branches().map_err(err)? {
        let mut reference = reference.map_err(|e| format!("repository `{repo_name}`: {e}"))?;
        let full = reference.name().as_bstr().to_string();
        let Some(short) = full.strip_prefix("refs/heads/") else {
            continue;
        };
        if full == default_ref || settings.keeps(short) {
            continue;
        }
        let Ok(tip) = reference.peel_to_id() else {
            continue;
        };
        let tip = tip.detach();
        let Ok(commit) = repo.find_commit(tip) else {
            continue;
        };
        let Ok(time) = commit.time() else { continue };
        let age = (now - time.seconds as f64).max(0.0);
        if age < settings.older_than.as_secs_f64() {
            continue;
        }
        if settings.merged_only {
            let merged = match default_tip {
                Some(d) => repo
                    .merge_base(tip, d)
                    .ok()
                    .flatten()
                    .is_some_and(|b| b.detach() == tip),
                None => false,
            };
            if !merged {
                continue;
            }
        }
        found.push(StaleBranch {
            repo: repo_name.to_string(),
            branch: short.to_string(),
            tip: tip.to_string(),
            age_days: age / 86400.0,
            result: if dry_run {
                "would-delete".into()
            } else {
                String::new()
            },
        });
    }
    if dry_run {
        return Ok(found);
    }
    if pause_before_delete {
        std::thread::sleep(Duration::from_secs(3));
    }
    for branch in &mut found {
        let Ok(tip) = gix::ObjectId::from_hex(branch.tip.as_bytes()) else {
            continue;
        };
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(gix::refs::Target::Object(tip)),
                log: RefLog::AndReference,
            },
            name: match format!("refs/heads/{}", branch.branch).try_into() {
                Ok(n) => n,
                Err(_) => continue,
            },
            deref: false,
        };
        branch.result = match repo.edit_reference(edit) {
            Ok(_) => "deleted".into(),
            Err(e) => format!("skipped: changed meanwhile ({e})"),
        };
        let mut entry = AuditEntry::new(
            AuditKind::RefUpdate,
            if branch.result == "deleted" {
                "ok"
            } else {
                "failed"
            },
        );
        entry.user = Some(actor.to_string());
        entry.repo = Some(repo_name.to_string());
        entry.refname = Some(format!("refs/heads/{}", branch.branch));
        entry.action = Some("branch:reap".into());
        entry.old_id = Some(branch.tip.clone());
        entry.new_id = Some("0".repeat(40));
        entry.detail = Some(format!(
            "stale branch ({:.0} days): {}",
            branch.age_days, branch.result
        ));
        if let Err(e) = store.audit(&entry) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
    Ok(found)
}

impl Actor for BranchReaper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.scheduling = false;
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.run_schedules(ctx));
    }
}

impl Supervised for BranchReaper {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor_restarts_total
            .with_label_values(&["reaper"])
            .inc();
    }
}

impl Handler<SetSchedules> for BranchReaper {
    type Result = ();
    fn handle(&mut self, msg: SetSchedules, _ctx: &mut Self::Context) {
        self.rules = msg.0;
    }
}

impl Handler<Reap> for BranchReaper {
    type Result = ResponseFuture<Result<Vec<StaleBranch>, String>>;
    fn handle(&mut self, msg: Reap, _ctx: &mut Self::Context) -> Self::Result {
        let (store, catalog, bus, metrics, failpoints) = (
            self.store.clone(),
            self.catalog.clone(),
            self.bus.clone(),
            self.metrics.clone(),
            self.failpoints.clone(),
        );
        Box::pin(async move {
            reap(
                &store,
                &catalog,
                &bus,
                &metrics,
                &failpoints,
                &msg.repo,
                &msg.settings,
                msg.dry_run,
                &msg.requested_by,
                "command",
            )
            .await
        })
    }
}

impl Handler<RunAction> for BranchReaper {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: RunAction, _ctx: &mut Self::Context) -> Self::Result {
        let (store, catalog, bus, metrics, failpoints) = (
            self.store.clone(),
            self.catalog.clone(),
            self.bus.clone(),
            self.metrics.clone(),
            self.failpoints.clone(),
        );
        Box::pin(async move {
            let Action::DeleteStaleBranches(settings) = &msg.action;
            let repos: Vec<String> = match msg.event.as_ref().and_then(|e| e.event.repo.clone()) {
                Some(repo) => vec![repo],
                None => catalog.list(),
            };
            for repo in repos.iter().filter(|r| settings.repo.is_match(r)) {
                if let Err(e) = reap(
                    &store,
                    &catalog,
                    &bus,
                    &metrics,
                    &failpoints,
                    repo,
                    settings,
                    false,
                    &format!("rule:{}", msg.rule),
                    "event",
                )
                .await
                {
                    tracing::warn!(rule = %msg.rule, %repo, error = %e, "delete-stale-branches failed");
                }
            }
        })
    }
}
