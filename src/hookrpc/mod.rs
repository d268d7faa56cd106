//! The endpoint `slipway-hook` talks to: a unix socket in `DATA/run/`.
//!
//! Each connection carries one request line and gets one answer line. A request is
//! honoured only with the token of a push that is in progress on this server; the
//! token says who pushes to which repository, so nothing in the request itself is
//! trusted for identity.

mod decide;
mod registry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_hook::wire::{HookRequest, HookResponse, Phase, MAX_LINE, MAX_UPDATES, VERSION};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::state::ServerState;

pub use registry::{PushContext, PushRegistry, PushToken};

/// How long a hook may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts hook connections until `cancel` fires.
pub async fn serve(state: Arc<ServerState>, listener: UnixListener, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "hook socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(state, stream).await {
                tracing::debug!(error = %e, "hook connection ended with an error");
            }
        });
    }
}

async fn handle(state: Arc<ServerState>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64 + 1));
    let mut line = String::new();
    let read = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match read {
        Err(_) => reject(&state, "timeout", "no request within 30 s".into()),
        Ok(Err(e)) => reject(&state, "unreadable", format!("unreadable request: {e}")),
        Ok(Ok(_)) if line.len() > MAX_LINE => {
            reject(&state, "too-large", "request is too large".into())
        }
        Ok(Ok(_)) => match serde_json::from_str::<HookRequest>(&line) {
            Err(e) => reject(&state, "malformed", format!("malformed hook request: {e}")),
            Ok(req) if req.version != VERSION => reject(
                &state,
                "version",
                format!(
                    "hook speaks protocol {}, server speaks {VERSION}; reinstall slipway-hook",
                    req.version
                ),
            ),
            Ok(req) if req.updates.len() > MAX_UPDATES => {
                reject(&state, "too-large", "too many ref updates".into())
            }
            Ok(req) => match state.pushes.lookup(&req.token) {
                None => reject(&state, "bad-token", "unknown or expired push token".into()),
                Some(ctx) => {
                    let started = Instant::now();
                    let phase = match req.phase {
                        Phase::PreReceive => "pre-receive",
                        Phase::PostReceive => "post-receive",
                    };
                    let response = match req.phase {
                        Phase::PreReceive => decide::pre_receive(&state, &ctx, &req).await,
                        Phase::PostReceive => decide::post_receive(&state, &ctx, &req).await,
                    };
                    state
                        .metrics
                        .hook_decision_duration_seconds
                        .with_label_values(&[phase])
                        .observe(started.elapsed().as_secs_f64());
                    response
                }
            },
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

fn reject(state: &ServerState, reason: &'static str, message: String) -> HookResponse {
    tracing::warn!(reason, %message, "hook request refused");
    state
        .metrics
        .hook_requests_rejected_total
        .with_label_values(&[reason])
        .inc();
    HookResponse {
        accept: false,
        messages: vec![format!("slipway: {message}")],
    }
}
