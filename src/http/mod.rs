//! The HTTP listener (actix-web): `/metrics`, `/healthz`, the deploy agents' API
//! ([`agent_api`]) and Alertmanager's webhook ([`alertmanager`]). The dashboard joins
//! it with its issue.
//!
//! With `http.tls` set the listener speaks HTTPS only ([`tls`]); plain HTTP is for
//! loopback, or for a network the operator says is trusted (`http.allow_insecure`).

mod agent_api;
mod alertmanager;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::state::ServerState;

/// An error answer: `{ "error": "…" }`, saying what to do.
fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message.into() }))
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(req: &actix_web::HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The answer to a failure inside the server (the log has the details).
fn internal() -> HttpResponse {
    error(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; the server log has details",
    )
}

/// Runs blocking work (the store) off the async threads. A failure of the work or of
/// its task is logged with `what` and becomes a 500 answer.
async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, HttpResponse>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{what} failed");
            Err(internal())
        }
        Err(e) => {
            tracing::error!(error = %e, "{what}: the task failed");
            Err(internal())
        }
    }
}

async fn metrics(state: web::Data<Arc<ServerState>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(state.metrics.render())
}

async fn healthz(state: web::Data<Arc<ServerState>>) -> HttpResponse {
    let store = state.store.clone();
    let db_ok = tokio::task::spawn_blocking(move || store.schema_version().is_ok())
        .await
        .unwrap_or(false);
    if db_ok {
        HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ok\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("database unavailable\n")
    }
}

/// Starts the HTTP server on `listener`, speaking HTTPS when `tls` is given; the returned
/// server runs until stopped.
pub fn start(
    state: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .configure(agent_api::routes)
            .configure(alertmanager::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
