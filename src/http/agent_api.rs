//! The deploy agents' HTTP API (JSON):
//!
//! - `POST /api/agent/register` `{token, name, version}` → `{name, credential, tags}`:
//!   a one-time token (from `agent token create`) buys a credential; the token's tags
//!   become the agent's.
//! - `POST /api/agent/poll` (header `Authorization: Bearer CREDENTIAL`) `{version}`:
//!   the agent's long-poll; records that it was seen and answers `204 No Content` when
//!   there is nothing to do within `wait` seconds (query parameter, at most 30).
//!
//! Credentials are compared by their SHA-256 (stored that way); a removed agent's
//! credential stops working at once. Errors are `{ "error": "…" }` saying what to do.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use slipway_actors::store::AgentRow;

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

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message.into() }))
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
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
        sha256_hex(body.token.trim()),
        body.name.clone(),
        sha256_hex(&credential),
        clean_version(&body.version),
    );
    let result =
        tokio::task::spawn_blocking(move || store.agent_register(&token, &name, &cred, &version))
            .await;
    match result {
        Ok(Ok(Ok(agent))) => {
            tracing::info!(agent = %agent.name, tags = ?agent.tags, "agent registered");
            HttpResponse::Ok().json(serde_json::json!({
                "name": agent.name,
                "credential": credential,
                "tags": agent.tags,
            }))
        }
        Ok(Ok(Err(refused))) => {
            tracing::warn!(agent = %body.name, reason = %refused, "agent registration refused");
            error(StatusCode::FORBIDDEN, refused.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot register an agent");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has details",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "agent registration task failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has details",
            )
        }
    }
}

/// The agent a request's bearer credential names.
async fn authenticate(state: &ServerState, req: &HttpRequest) -> Result<AgentRow, HttpResponse> {
    use actix_web::http::StatusCode;
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "unknown or missing agent credential; register the agent again with a new token (`agent token create`)",
        )
    };
    let credential = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    let (store, hash) = (state.store.clone(), sha256_hex(credential));
    match tokio::task::spawn_blocking(move || store.agent_by_credential(&hash)).await {
        Ok(Ok(Some(agent))) => Ok(agent),
        Ok(Ok(None)) => Err(unauthorized()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot look up an agent");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has details",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "agent lookup task failed");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has details",
            ))
        }
    }
}

async fn poll(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    query: web::Query<PollQuery>,
    body: web::Json<Poll>,
) -> HttpResponse {
    let agent = match authenticate(&state, &req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let (store, name, version) = (
        state.store.clone(),
        agent.name.clone(),
        clean_version(&body.version),
    );
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.agent_seen(&name, &version)).await
    {
        tracing::error!(agent = %agent.name, error = %e, "cannot record an agent's poll");
    }
    let wait = query
        .wait
        .map(Duration::from_secs)
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    // Deployments hand out lifecycle commands here (issue 6); until then there is
    // never anything to do, and the poll is held for `wait`.
    tokio::time::sleep(wait).await;
    HttpResponse::NoContent().finish()
}

/// Adds the agent API's routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/agent/register", web::post().to(register))
        .route("/api/agent/poll", web::post().to(poll));
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
