//! What the server answers to pre-receive (decide every ref) and post-receive (record,
//! apply admin changes).

use std::sync::Arc;

use slipway_actors::store::NewEvent;
use slipway_actors::{AuditEntry, AuditKind};
use slipway_hook::wire::{HookRequest, HookResponse, RefUpdate, UpdateKind};

use super::PushContext;
use crate::access::Resource;
use crate::adminconfig::{self, ADMIN_REF};
use crate::git::Quarantine;
use crate::state::ServerState;

/// The policy action a ref update needs.
pub fn action_for(kind: UpdateKind) -> &'static str {
    match kind {
        UpdateKind::Create => "git:create-ref",
        UpdateKind::FastForward => "git:push",
        UpdateKind::Force => "git:force-push",
        UpdateKind::Delete => "git:delete-ref",
    }
}

pub(super) async fn pre_receive(
    state: &Arc<ServerState>,
    ctx: &PushContext,
    req: &HookRequest,
) -> HookResponse {
    let config = state.admin.get();
    let head_ref = {
        let repos = state.repos.clone();
        let repo = ctx.repo.clone();
        tokio::task::spawn_blocking(move || repos.head_ref(&repo))
            .await
            .ok()
            .and_then(Result::ok)
    };
    let mut messages = Vec::new();
    let mut accept = true;
    for update in &req.updates {
        let action = action_for(update.kind);
        let (allowed, reason) = if update.kind == UpdateKind::Delete
            && head_ref.as_deref() == Some(update.refname.as_str())
        {
            (
                false,
                "the default branch cannot be deleted; point HEAD elsewhere first".to_string(),
            )
        } else if !valid_refname(&update.refname) {
            (false, "invalid ref name".to_string())
        } else if update.refname.starts_with("refs/slipway/") {
            // slipway's own refs (commits a guarded branch rejected): written only by
            // the server, so nobody can remove the record or block a roll-back.
            (
                false,
                "refs/slipway/ belongs to the server; push to a branch or tag instead".to_string(),
            )
        } else {
            let decision = config.access.evaluate(
                &ctx.user,
                action,
                &Resource::repo_ref(ctx.repo.as_str(), &update.refname),
            );
            (decision.allowed(), decision.reason())
        };
        state
            .metrics
            .ref_updates_total
            .with_label_values(&[if allowed { "allowed" } else { "denied" }])
            .inc();
        audit_update(state, ctx, update, action, allowed, &reason).await;
        if !allowed {
            accept = false;
            messages.push(format!(
                "slipway: DENIED {} of {} in {} for {}: {}",
                update.kind.as_str(),
                update.refname,
                ctx.repo,
                ctx.user,
                reason
            ));
        }
    }
    if accept && ctx.repo == state.admin_repo() {
        if let Err(problems) = check_admin_push(state, ctx, req).await {
            accept = false;
            messages.extend(problems);
        }
    }
    if !accept {
        messages.push("slipway: push refused; nothing was changed".into());
    }
    HookResponse { accept, messages }
}

/// Validates the admin files of a push to the admin repository's main branch.
async fn check_admin_push(
    state: &Arc<ServerState>,
    ctx: &PushContext,
    req: &HookRequest,
) -> Result<(), Vec<String>> {
    let Some(update) = req.updates.iter().find(|u| u.refname == ADMIN_REF) else {
        return Ok(());
    };
    match update.kind {
        UpdateKind::Delete => {
            return Err(vec![
                format!("slipway: DENIED delete of {ADMIN_REF} in admin for {}: the admin repository's main branch holds the live configuration and cannot be deleted", ctx.user),
            ])
        }
        // Its history is the record of every configuration change: keep it.
        UpdateKind::Force => {
            return Err(vec![
                format!("slipway: DENIED force-update of {ADMIN_REF} in admin for {}: the admin repository's main branch is the history of the configuration and cannot be rewritten; undo a change with `git revert` and push that", ctx.user),
            ])
        }
        UpdateKind::Create | UpdateKind::FastForward => {}
    }
    let quarantine = Quarantine::checked(
        &ctx.repo_path,
        req.quarantine.object_directory.as_deref(),
        req.quarantine.alternate_object_directories.as_deref(),
    )
    .map_err(|e| vec![format!("slipway: {e}")])?;
    let result = adminconfig::load_at(
        &state.settings.git.binary,
        &ctx.repo_path,
        &update.new,
        quarantine.as_ref(),
    )
    .await;
    let mut entry = AuditEntry::new(
        AuditKind::Config,
        if result.is_ok() { "ok" } else { "denied" },
    );
    entry.user = Some(ctx.user.clone());
    entry.key_fp = Some(ctx.key_fp.clone());
    entry.peer = ctx.peer.map(|p| p.to_string());
    entry.repo = Some(ctx.repo.to_string());
    entry.refname = Some(update.refname.clone());
    entry.old_id = Some(update.old.clone());
    entry.new_id = Some(update.new.clone());
    entry.action = Some("validate".into());
    if let Err(e) = &result {
        entry.detail = Some(e.to_string());
    }
    state.audit(entry).await;
    result.map(|_| ()).map_err(|e| {
        vec![
            format!("slipway: {e}"),
            "slipway: the configuration was not changed; fix the file and push again".into(),
        ]
    })
}

fn valid_refname(refname: &str) -> bool {
    refname.starts_with("refs/")
        && refname.len() <= 1024
        && !refname.bytes().any(|b| b.is_ascii_control())
}

async fn audit_update(
    state: &Arc<ServerState>,
    ctx: &PushContext,
    update: &RefUpdate,
    action: &str,
    allowed: bool,
    reason: &str,
) {
    let mut entry = AuditEntry::new(AuditKind::RefUpdate, if allowed { "ok" } else { "denied" });
    entry.user = Some(ctx.user.clone());
    entry.key_fp = Some(ctx.key_fp.clone());
    entry.peer = ctx.peer.map(|p| p.to_string());
    entry.repo = Some(ctx.repo.to_string());
    entry.refname = Some(update.refname.clone());
    entry.action = Some(action.to_string());
    entry.old_id = Some(update.old.clone());
    entry.new_id = Some(update.new.clone());
    entry.statement = Some(reason.to_string());
    state.audit(entry).await;
}

pub(super) async fn post_receive(
    state: &Arc<ServerState>,
    ctx: &PushContext,
    req: &HookRequest,
) -> HookResponse {
    let mut messages = Vec::new();
    // A repository created by this push points HEAD at `main`; if the push brought no
    // `main`, point HEAD at the first branch it did bring, so clones check something out.
    fix_head(state, ctx, req).await;
    if ctx.repo == state.admin_repo() && req.updates.iter().any(|u| u.refname == ADMIN_REF) {
        match state.reload_admin().await {
            Ok(()) => messages.push("slipway: configuration applied".into()),
            Err(e) => {
                tracing::error!(error = %e, "accepted admin push could not be loaded");
                messages.push(format!("slipway: configuration NOT applied: {e}"));
            }
        }
    }
    // The push is accepted only once its events are durable: record them before
    // answering, so an acknowledged push is never missing from the event log.
    let mut events = push_events(state, ctx, req).await;
    let (problems, invalid) = check_pipelines(state, ctx, req).await;
    messages.extend(problems);
    events.extend(invalid);
    if events.is_empty() {
        // Nothing changed (e.g. deleting a ref that did not exist).
    } else if let Err(e) = state.runtime.publish(events).await {
        tracing::error!(error = %e, repo = %ctx.repo, "cannot record the push's events");
        messages.push("slipway: warning: the push was stored but its events were not recorded; tell the administrator".into());
    }
    tracing::info!(user = %ctx.user, repo = %ctx.repo, refs = req.updates.len(), "push accepted");
    HookResponse {
        accept: true,
        messages,
    }
}

/// The events of an accepted push: `push` for every created or updated ref (with the
/// new commits), plus `ref-created` / `ref-deleted`.
async fn push_events(
    state: &Arc<ServerState>,
    ctx: &PushContext,
    req: &HookRequest,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for u in &req.updates {
        let base = |kind: &str, detail: serde_json::Value| NewEvent {
            source: "git".into(),
            kind: kind.into(),
            actor: Some(ctx.user.clone()),
            repo: Some(ctx.repo.to_string()),
            refname: Some(u.refname.clone()),
            state: None,
            detail,
        };
        if u.kind == UpdateKind::Delete {
            events.push(base(
                "ref-deleted",
                serde_json::json!({ "old": u.old, "new": u.new, "pusher": ctx.user }),
            ));
            continue;
        }
        let (commits, summary) = crate::git::new_commits(
            &state.settings.git.binary,
            &ctx.repo_path,
            &u.old,
            &u.new,
            &u.refname,
            10,
        )
        .await
        .unwrap_or_default();
        events.push(base(
            "push",
            serde_json::json!({
                "old": u.old,
                "new": u.new,
                "pusher": ctx.user,
                "commits": commits,
                "summary": summary,
                "created": u.kind == UpdateKind::Create,
                "forced": u.kind == UpdateKind::Force,
                "push_options": req.push_options,
            }),
        ));
        if u.kind == UpdateKind::Create {
            events.push(base(
                "ref-created",
                serde_json::json!({ "old": u.old, "new": u.new, "pusher": ctx.user }),
            ));
        }
    }
    events
}

/// A pushed `pipeline.yml` that does not validate is reported to the pusher (as
/// `remote:` lines, with file:line:column) and recorded as a `pipeline/invalid` event;
/// such a pipeline never starts. Each pushed commit is checked once.
async fn check_pipelines(
    state: &Arc<ServerState>,
    ctx: &PushContext,
    req: &HookRequest,
) -> (Vec<String>, Vec<NewEvent>) {
    use slipway_actors::pipeline::PIPELINE_FILE;
    let mut messages = Vec::new();
    let mut events = Vec::new();
    if ctx.repo == state.admin_repo() {
        return (messages, events);
    }
    let mut seen = std::collections::HashSet::new();
    for u in &req.updates {
        let tracked = u.refname.starts_with("refs/heads/") || u.refname.starts_with("refs/tags/");
        if u.kind == UpdateKind::Delete || !tracked || !seen.insert(u.new.clone()) {
            continue;
        }
        let (path, commit) = (ctx.repo_path.clone(), u.new.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            slipway_actors::pipeline::source::load(&path, &commit)
        })
        .await;
        // No pipeline, or a commit that cannot be read: nothing to report.
        let Ok(Ok(Some(loaded))) = loaded else {
            continue;
        };
        let short = &u.new[..u.new.len().min(12)];
        let problem = match loaded {
            Err(problem) => problem,
            Ok(spec) => {
                // A valid pipeline whose name another repository owns never starts.
                let store = state.store.clone();
                let owners = tokio::task::spawn_blocking(move || store.pipelines()).await;
                let Ok(Ok(owners)) = owners else { continue };
                if let Some(owner) = owners
                    .iter()
                    .find(|p| p.name == spec.name && p.repo != ctx.repo.as_str())
                {
                    // Name the owner only to someone who may read it.
                    let readable = state
                        .admin
                        .get()
                        .access
                        .evaluate(
                            &ctx.user,
                            "git:pull",
                            &crate::access::Resource::repo(&owner.repo),
                        )
                        .allowed();
                    let whose = if readable {
                        format!("repository `{}`", owner.repo)
                    } else {
                        "another repository".to_string()
                    };
                    messages.push(format!(
                        "slipway: {PIPELINE_FILE}: pipeline name `{}` belongs to {whose}; the pipeline in {} ({short}) will not run until it has another `name:`",
                        spec.name, u.refname
                    ));
                }
                continue;
            }
        };
        messages.push(format!("slipway: {problem}"));
        messages.push(format!(
            "slipway: the pipeline in {} ({short}) will not run until {PIPELINE_FILE} is fixed",
            u.refname
        ));
        events.push(NewEvent {
            source: "pipeline".into(),
            kind: "invalid".into(),
            actor: Some(ctx.user.clone()),
            repo: Some(ctx.repo.to_string()),
            refname: Some(u.refname.clone()),
            state: None,
            detail: serde_json::json!({
                "commit": u.new,
                "file": problem.file,
                "line": problem.line,
                "column": problem.column,
                "message": problem.message,
                "pusher": ctx.user,
            }),
        });
    }
    (messages, events)
}

async fn fix_head(state: &Arc<ServerState>, ctx: &PushContext, req: &HookRequest) {
    let repos = state.repos.clone();
    let repo = ctx.repo.clone();
    let branches: Vec<String> = req
        .updates
        .iter()
        .filter(|u| u.kind != UpdateKind::Delete && u.refname.starts_with("refs/heads/"))
        .map(|u| u.refname.clone())
        .collect();
    let _ = tokio::task::spawn_blocking(move || -> Result<(), crate::git::RepoStoreError> {
        let head = repos.head_ref(&repo)?;
        if repos.ref_exists(&repo, &head)? {
            return Ok(());
        }
        let preferred = ["refs/heads/main", "refs/heads/master"];
        let pick = preferred
            .iter()
            .find(|p| branches.iter().any(|b| b == *p))
            .map(|s| s.to_string())
            .or_else(|| branches.first().cloned());
        if let Some(branch) = pick {
            repos.set_head(&repo, &branch)?;
        }
        Ok(())
    })
    .await;
}
