//! The accept loop: admission control for unauthenticated connections, login grace
//! time, and graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::server::Config;
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cut::CuttableStream;
use super::handler::ConnectionHandler;
use crate::settings::SshSettings;
use crate::state::ServerState;

fn refuse_late_login(state: &ServerState, peer: std::net::SocketAddr) {
    tracing::info!(%peer, "login grace time over; disconnecting");
    state
        .metrics
        .ssh_refused_total
        .with_label_values(&["login-grace-time"])
        .inc();
}

/// Builds the russh configuration from the settings.
fn config(ssh: &SshSettings, host_key: russh::keys::PrivateKey) -> Config {
    Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-slipway_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // OpenSSH probes with `none` first: answer at once, or every connection pays.
        auth_rejection_time_initial: Some(Duration::ZERO),
        auth_rejection_time: Duration::from_millis(100),
        keys: vec![host_key],
        inactivity_timeout: Some(ssh.idle_timeout),
        keepalive_interval: None,
        nodelay: true,
        window_size: 8 << 20,
        maximum_packet_size: 32768,
        max_auth_attempts: 6,
        ..Default::default()
    }
}

/// Serves SSH on `listener` until `cancel` fires; connections are tracked by `tracker`
/// so shutdown can wait for them.
pub async fn run(
    state: Arc<ServerState>,
    listener: TcpListener,
    host_key: russh::keys::PrivateKey,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let config = Arc::new(config(&state.settings.ssh, host_key));
    let unauthenticated = Arc::new(Semaphore::new(state.settings.ssh.max_unauthenticated));
    let grace = state.settings.ssh.login_grace_time;
    loop {
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = unauthenticated.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many unauthenticated connections; refusing");
            state
                .metrics
                .ssh_refused_total
                .with_label_values(&["unauthenticated-limit"])
                .inc();
            drop(socket);
            continue;
        };
        let authenticated = Arc::new(AtomicBool::new(false));
        let handler =
            ConnectionHandler::new(state.clone(), Some(peer), permit, authenticated.clone());
        let config = config.clone();
        let state = state.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _ = socket.set_nodelay(true);
            let cut = CancellationToken::new();
            let stream = CuttableStream::new(socket, cut.clone());
            // The grace time runs from accept: a client that never finishes the
            // handshake is held to it too.
            let grace_over = tokio::time::sleep(grace);
            tokio::pin!(grace_over);
            let session = tokio::select! {
                started = russh::server::run_stream(config, stream, handler) => match started {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "ssh handshake failed");
                        return;
                    }
                },
                _ = &mut grace_over => {
                    refuse_late_login(&state, peer);
                    cut.cancel();
                    return;
                }
            };
            let handle = session.handle();
            tokio::pin!(session);
            tokio::select! {
                _ = &mut session => return,
                _ = &mut grace_over => {}
            }
            if !authenticated.load(Ordering::Acquire) {
                refuse_late_login(&state, peer);
                // Say why when russh can (after key exchange); cut the socket regardless.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    handle.disconnect(
                        russh::Disconnect::ByApplication,
                        "authentication took too long".into(),
                        "en".into(),
                    ),
                )
                .await;
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut session).await;
                cut.cancel();
                return;
            }
            tokio::select! {
                _ = &mut session => {}
                _ = cancel.cancelled() => {
                    // Shutdown: give running transfers time to finish before cutting.
                    tokio::select! {
                        _ = &mut session => {}
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                handle.disconnect(russh::Disconnect::ByApplication, "server shutting down".into(), "en".into()),
                            )
                            .await;
                            cut.cancel();
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_probe_is_answered_without_delay_and_only_keys_are_offered() {
        let settings = SshSettings {
            idle_timeout: Duration::from_secs(42),
            ..SshSettings::default()
        };
        let config = config(&settings, crate::ssh::random_ed25519());
        // OpenSSH always starts with a `none` probe; a delay there is paid by everyone.
        assert_eq!(config.auth_rejection_time_initial, Some(Duration::ZERO));
        assert!(config.auth_rejection_time <= Duration::from_millis(100));
        assert_eq!(
            config.methods,
            MethodSet::from(&[MethodKind::PublicKey][..])
        );
        assert_eq!(config.inactivity_timeout, Some(Duration::from_secs(42)));
        assert_eq!(
            config.keepalive_interval, None,
            "keepalives would defeat the idle timeout"
        );
    }
}
