//! The deploy agents' HTTP API (JSON):
//!
//! - `POST /api/agent/register` `{token, name, version}` → `{name, credential, tags}`:
//!   a one-time token (from `agent token create`) buys a credential; the token's tags
//!   become the agent's.
//! - `POST /api/agent/poll` (header `Authorization: Bearer CREDENTIAL`) `{version}`:
//!   the agent's long-poll; records that it was seen and answers
//!   `{command: {id, deployment_id, event}}` (one lifecycle event) or `204 No Content`
//!   when there is nothing to do within `wait` seconds (query parameter, at most 30).
//! - `POST /api/agent/commands/ID/ack` → `{status, heartbeat_seconds}`: IN_PROGRESS
//!   means run it; anything else means it already ended or was cancelled.
//! - `POST /api/agent/commands/ID/heartbeat` → `{status, heartbeat_seconds}`: sent every
//!   `heartbeat_seconds` while the agent runs the command, so that a long lifecycle
//!   event is not taken for a lost agent (`deploy.agent_timeout`).
//! - `POST /api/agent/commands/ID/complete` `{status, diagnostics: {error_code,
//!   script_name, message, log}}`.
//! - `GET /api/agent/deployments/ID`: what the agent needs (ids, bundle, commit).
//! - `GET /api/agent/bundles/SHA256`: the revision zip, only for the hosts of a
//!   deployment of it.
//!
//! Credentials are compared by their SHA-256 (stored that way); a removed agent's
//! credential stops working at once. Errors are `{ "error": "…" }` saying what to do.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use slipway_actors::store::AgentRow;

use super::{bearer, blocking, error};
use crate::state::ServerState;

/// The longest a poll is held open.
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct Register {
    token: String,
    name: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct Poll {
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct PollQuery {
    wait: Option<u64>,
}

/// Agent names: 1–64 letters, digits, `-`, `_`, `.`, not starting with `.` or `-`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A version string as agents send it (shown in `agent list`), bounded.
fn clean_version(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

async fn register(state: web::Data<Arc<ServerState>>, body: web::Json<Register>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let body = body.into_inner();
    if !valid_name(&body.name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "agent name `{}` is not valid: use 1-64 letters, digits, `-`, `_`, `.`",
                body.name.escape_default()
            ),
        );
    }
    let credential = format!("slwc_{}", hex::encode(rand::random::<[u8; 32]>()));
    let (store, token, name, cred, version) = (
        state.store.clone(),
        slipway_actors::store::secret_hash(body.token.trim()),
        body.name.clone(),
        slipway_actors::store::secret_hash(&credential),
        clean_version(&body.version),
    );
    let result = blocking("registering an agent", move || {
        store.agent_register(&token, &name, &cred, &version)
    })
    .await;
    match result {
        Ok(Ok(agent)) => {
            tracing::info!(agent = %agent.name, tags = ?agent.tags, "agent registered");
            new_host(&state, &agent).await;
            HttpResponse::Ok().json(serde_json::json!({
                "name": agent.name,
                "credential": credential,
                "tags": agent.tags,
            }))
        }
        Ok(Err(refused)) => {
            tracing::warn!(agent = %body.name, reason = %refused, "agent registration refused");
            error(StatusCode::FORBIDDEN, refused.to_string())
        }
        Err(response) => response,
    }
}

/// A new agent whose tags put it in deployment groups gets each group's current
/// revision (a deployment to it alone), as an instance launched by an autoscaling
/// group does in CodeDeploy.
async fn new_host(state: &Arc<ServerState>, agent: &AgentRow) {
    use slipway_actors::deploy::advance::{deploy_to_new_host, Effects};
    use slipway_actors::deploy::plan::groups_for;
    let config = state.admin.get().deploy.clone();
    let (store, agent) = (state.store.clone(), agent.clone());
    let created = tokio::task::spawn_blocking(move || {
        store.deploy_tx(|t| {
            let mut fx = Effects::default();
            let mut ids = Vec::new();
            for (app, group, settings) in groups_for(&config, &agent.tags) {
                if let Some(id) = deploy_to_new_host(t, &mut fx, app, group, settings, &agent.name)?
                {
                    ids.push(id);
                }
            }
            Ok::<_, slipway_actors::StoreError>((ids, fx))
        })
    })
    .await;
    match created {
        Ok(Ok((ids, fx))) => {
            if !ids.is_empty() {
                tracing::info!(deployments = ?ids, "the new host gets its groups' current revisions");
            }
            state.runtime.deployments_announce(fx);
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot deploy to a new host"),
        Err(e) => tracing::error!(error = %e, "new host task failed"),
    }
}

/// What an agent without a valid credential is told.
const UNKNOWN_CREDENTIAL: &str =
    "unknown or missing agent credential; register the agent again with a new token (`agent token create`)";

/// The answer handing `command` to `agent`.
fn dispatched(agent: &AgentRow, command: &slipway_actors::store::EventRow) -> HttpResponse {
    tracing::debug!(agent = %agent.name, command = command.id, event = %command.event, "command dispatched");
    HttpResponse::Ok().json(serde_json::json!({
        "command": {
            "id": command.id,
            "deployment_id": command.deployment_id,
            "event": command.event,
        }
    }))
}

/// The answer to a request without a known agent credential.
fn unauthorized() -> HttpResponse {
    error(
        actix_web::http::StatusCode::UNAUTHORIZED,
        UNKNOWN_CREDENTIAL,
    )
}

/// The SHA-256 of a request's bearer credential (as the store keeps credentials).
fn credential_hash(req: &HttpRequest) -> Option<String> {
    bearer(req).map(slipway_actors::store::secret_hash)
}

/// The agent a request's bearer credential names.
async fn authenticate(state: &ServerState, req: &HttpRequest) -> Result<AgentRow, HttpResponse> {
    let hash = credential_hash(req).ok_or_else(unauthorized)?;
    let store = state.store.clone();
    blocking("looking up an agent", move || {
        store.agent_by_credential(&hash)
    })
    .await?
    .ok_or_else(unauthorized)
}

async fn poll(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    query: web::Query<PollQuery>,
    body: web::Json<Poll>,
) -> HttpResponse {
    let Some(hash) = credential_hash(&req) else {
        return unauthorized();
    };
    // One trip to the store: who it is, that it was seen, what it forgot, and its next
    // command if one is ready already (an agent back from an event often has one).
    let (store, version) = (state.store.clone(), clean_version(&body.version));
    let first = blocking("recording an agent's poll", move || {
        let Some(agent) = store.agent_by_credential(&hash)? else {
            return Ok(None);
        };
        store.agent_seen(&agent.name, &version)?;
        let orphans = store.fail_orphaned_commands(&agent.name)?;
        let command = store.next_command(&agent.name)?;
        Ok::<_, slipway_actors::store::StoreError>(Some((agent, orphans, command)))
    })
    .await;
    let (agent, orphans, command) = match first {
        Ok(Some(found)) => found,
        Ok(None) => return unauthorized(),
        Err(response) => return response,
    };
    if orphans > 0 {
        tracing::warn!(agent = %agent.name, commands = orphans,
            "the agent polled while its commands were in progress: it restarted without a record of them; failed them");
        state.runtime.deployments_changed();
    }
    if let Some(command) = command {
        return dispatched(&agent, &command);
    }
    let wait = query
        .wait
        .map(Duration::from_secs)
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let wake = state.runtime.agents_wake().for_agent(&agent.name);
    loop {
        // Listen before looking, so a command made ready in between is not missed.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (store, name) = (state.store.clone(), agent.name.clone());
        match blocking("reading agent commands", move || store.next_command(&name)).await {
            Ok(Some(command)) => return dispatched(&agent, &command),
            Ok(None) => {}
            Err(response) => return response,
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => return HttpResponse::NoContent().finish(),
        }
    }
}

#[derive(Deserialize)]
struct Complete {
    status: String,
    #[serde(default)]
    diagnostics: Diagnostics,
}

#[derive(Deserialize, Default)]
struct Diagnostics {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    script_name: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    log: Option<String>,
}

/// Bounds what an agent sends back (the log is its last 2 KB; allow some slack).
fn bounded(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| {
        if t.len() <= max {
            t
        } else {
            let mut end = t.len() - max;
            while !t.is_char_boundary(end) {
                end += 1;
            }
            t[end..].to_string()
        }
    })
}

/// How often an agent running a command says so: often enough that a pass (once a
/// second) never finds it silent for the agent timeout.
fn heartbeat_seconds(state: &ServerState) -> u64 {
    (state.settings.deploy.agent_timeout.as_secs() / 4).max(1)
}

async fn ack(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> HttpResponse {
    command_status(state, req, path, false).await
}

async fn heartbeat(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> HttpResponse {
    command_status(state, req, path, true).await
}

/// Acknowledges a command (or, for a heartbeat, only records that the agent is alive)
/// and answers its status.
async fn command_status(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    path: web::Path<i64>,
    heartbeat: bool,
) -> HttpResponse {
    let agent = match authenticate(&state, &req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let (store, id) = (state.store.clone(), path.into_inner());
    match blocking("acknowledging a command", move || {
        if heartbeat {
            store.command_heartbeat(&agent.name, id)
        } else {
            store.ack_command(&agent.name, id)
        }
    })
    .await
    {
        Ok(Some(status)) => HttpResponse::Ok().json(serde_json::json!({
            "status": status,
            "heartbeat_seconds": heartbeat_seconds(&state),
        })),
        Ok(None) => error(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("command {id} is not this agent's"),
        ),
        Err(response) => response,
    }
}

async fn complete(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Json<Complete>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let agent = match authenticate(&state, &req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let body = body.into_inner();
    if !matches!(body.status.as_str(), "SUCCEEDED" | "FAILED" | "SKIPPED") {
        return error(
            StatusCode::BAD_REQUEST,
            "status must be SUCCEEDED, FAILED or SKIPPED",
        );
    }
    let report = slipway_actors::store::CommandReport {
        status: body.status,
        error_code: body.diagnostics.error_code,
        script: bounded(body.diagnostics.script_name, 512),
        message: bounded(body.diagnostics.message, 2048),
        log: bounded(body.diagnostics.log, 4096),
    };
    let (store, id, name) = (state.store.clone(), path.into_inner(), agent.name.clone());
    match blocking("completing a command", move || {
        store.complete_command(&name, id, &report)
    })
    .await
    {
        Ok(true) => {
            state.runtime.deployments_changed();
            HttpResponse::Ok().json(serde_json::json!({ "accepted": true }))
        }
        Ok(false) => error(
            StatusCode::CONFLICT,
            format!("command {id} is not running on this agent (ended, cancelled or not its own)"),
        ),
        Err(response) => response,
    }
}

async fn deployment(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> HttpResponse {
    let agent = match authenticate(&state, &req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let (store, id) = (state.store.clone(), path.into_inner());
    match blocking("reading a deployment for an agent", move || {
        store.agent_deployment(&agent.name, id)
    })
    .await
    {
        Ok(Some(d)) => HttpResponse::Ok().json(serde_json::json!({
            "deployment_id": format!("d-{}", d.id),
            "application": d.application,
            "group": d.group_name,
            "group_id": format!("{}.{}", d.application, d.group_name),
            "bundle_sha256": d.bundle_sha256,
            "bundle_commit": d.commit,
            "file_exists_behavior": d.settings["file_exists_behavior"].as_str().unwrap_or("DISALLOW"),
        })),
        Ok(None) => error(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("deployment {id} has no such host"),
        ),
        Err(response) => response,
    }
}

async fn bundle(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let agent = match authenticate(&state, &req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let sha = path.into_inner();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return error(actix_web::http::StatusCode::BAD_REQUEST, "not a SHA-256");
    }
    let (store, s2, name) = (state.store.clone(), sha.clone(), agent.name.clone());
    match blocking("checking a bundle download", move || {
        store.agent_may_fetch(&name, &s2)
    })
    .await
    {
        Ok(true) => {}
        Ok(false) => {
            return error(
                actix_web::http::StatusCode::NOT_FOUND,
                "no deployment of this agent uses that bundle",
            )
        }
        Err(response) => return response,
    }
    let runtime = state.runtime.clone();
    match blocking("reading a bundle", move || runtime.artifact(&sha)).await {
        Ok(zip) => HttpResponse::Ok().content_type("application/zip").body(zip),
        Err(response) => response,
    }
}

/// Adds the agent API's routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/agent/register", web::post().to(register))
        .route("/api/agent/poll", web::post().to(poll))
        .route("/api/agent/commands/{id}/ack", web::post().to(ack))
        .route(
            "/api/agent/commands/{id}/heartbeat",
            web::post().to(heartbeat),
        )
        .route(
            "/api/agent/commands/{id}/complete",
            web::post().to(complete),
        )
        .route("/api/agent/deployments/{id}", web::get().to(deployment))
        .route("/api/agent/bundles/{sha256}", web::get().to(bundle));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_plain() {
        assert!(valid_name("web-1.prod_a"));
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(clean_version("1.2\n<script>"), "1.2<script>");
    }
}
