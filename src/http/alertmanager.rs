//! `POST /alertmanager`: Alertmanager's webhook receiver. Each notification's alerts are
//! recorded (firing ones kept by fingerprint until Alertmanager says they resolved), and
//! deployment alarms of kind `alertmanager` read them by `alertname`.
//!
//! Off unless `deploy.alertmanager_token` is set in slipway.yaml; Alertmanager sends it
//! as `Authorization: Bearer TOKEN` (`http_config.authorization.credentials`).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use slipway_actors::store::{secret_hash, AlertUpdate};

use super::{bearer, blocking, error};
use crate::state::ServerState;

/// The largest notification taken (Alertmanager groups alerts; thousands fit).
const MAX_BODY: usize = 4 << 20;

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

impl Alert {
    /// What the store keeps; `None` for an alert without an `alertname`.
    fn update(self) -> Option<AlertUpdate> {
        let alertname = self.labels.get("alertname")?.clone();
        // Alertmanager's fingerprint identifies the label set; without one, the labels do.
        let fingerprint = self
            .fingerprint
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| {
                secret_hash(&serde_json::to_string(&self.labels).unwrap_or_default())
            });
        Some(AlertUpdate {
            fingerprint,
            alertname,
            firing: self.status == "firing",
            labels: self.labels,
            starts_at: self.starts_at,
        })
    }
}

async fn receive(
    state: web::Data<Arc<ServerState>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Some(token) = state.settings.deploy.alertmanager_token.as_deref() else {
        return error(
            StatusCode::NOT_FOUND,
            "the Alertmanager webhook is off: set deploy.alertmanager_token in slipway.yaml and restart",
        );
    };
    let given = bearer(&req);
    // Compared as hashes: equal length, so the comparison says nothing about the token.
    if given.map(secret_hash) != Some(secret_hash(token)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: give Alertmanager's webhook `http_config: { authorization: { credentials: TOKEN } }` with deploy.alertmanager_token",
        );
    }
    // The body is read only once the token is right, and only up to the limit.
    let body = match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the notification: {e}"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a notification may be at most {} MiB; lower max_alerts in Alertmanager's webhook_config",
                    MAX_BODY >> 20
                ),
            )
        }
    };
    let notification: Notification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not an Alertmanager webhook notification (version 4 JSON): {e}"),
            )
        }
    };
    let updates: Vec<AlertUpdate> = notification
        .alerts
        .into_iter()
        .filter_map(Alert::update)
        .collect();
    let count = updates.len();
    let store = state.store.clone();
    match blocking("recording alerts", move || store.record_alerts(&updates)).await {
        Ok(()) => {
            tracing::info!(alerts = count, "alertmanager notification recorded");
            HttpResponse::Ok().json(serde_json::json!({ "recorded": count }))
        }
        Err(response) => response,
    }
}

/// Adds the route.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/alertmanager", web::post().to(receive));
}
