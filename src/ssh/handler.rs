//! One SSH connection: authentication, sessions, exec dispatch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use russh::keys::HashAlg;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use slipway_actors::{AuditEntry, AuditKind};
use tokio::sync::OwnedSemaphorePermit;

use super::Identity;
use crate::state::ServerState;

/// Per-connection state; russh calls into it from the connection's task.
pub struct ConnectionHandler {
    state: Arc<ServerState>,
    peer: Option<SocketAddr>,
    identity: Option<Identity>,
    authenticated: Arc<AtomicBool>,
    /// Held until authentication succeeds: counts against `max_unauthenticated`.
    unauthenticated_permit: Option<OwnedSemaphorePermit>,
    /// Channels opened but not yet given a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Sessions open on this connection (shared with running commands).
    open_sessions: Arc<AtomicUsize>,
    git_protocol: Option<String>,
    started: Instant,
    /// Fingerprints of unknown keys already audited, so a probe and its retry log once.
    refused_keys: Vec<String>,
}

impl ConnectionHandler {
    pub fn new(
        state: Arc<ServerState>,
        peer: Option<SocketAddr>,
        permit: OwnedSemaphorePermit,
        authenticated: Arc<AtomicBool>,
    ) -> ConnectionHandler {
        state.metrics.ssh_connections_in_flight.inc();
        ConnectionHandler {
            state,
            peer,
            identity: None,
            authenticated,
            unauthenticated_permit: Some(permit),
            channels: HashMap::new(),
            open_sessions: Arc::new(AtomicUsize::new(0)),
            git_protocol: None,
            started: Instant::now(),
            refused_keys: Vec::new(),
        }
    }

    fn count_auth(&self, result: &str) {
        self.state
            .metrics
            .ssh_auth_attempts_total
            .with_label_values(&["publickey", result])
            .inc();
    }

    async fn audit_auth(&self, user: Option<&str>, fp: &str, result: &str, detail: &str) {
        let mut entry = AuditEntry::new(AuditKind::Auth, result);
        entry.user = user.map(str::to_string);
        entry.key_fp = Some(fp.to_string());
        entry.peer = self.peer.map(|p| p.to_string());
        entry.action = Some("publickey".into());
        entry.detail = Some(detail.to_string());
        self.state.audit(entry).await;
    }

    fn sha1_refused(&self, algorithm: &russh::keys::Algorithm) -> bool {
        algorithm.as_str() == "ssh-rsa" && !self.state.settings.ssh.allow_ssh_rsa_sha1
    }
}

impl Drop for ConnectionHandler {
    fn drop(&mut self) {
        let m = &self.state.metrics;
        m.ssh_connections_in_flight.dec();
        m.ssh_connection_duration_seconds
            .with_label_values(&[] as &[&str])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl russh::server::Handler for ConnectionHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        if self.sha1_refused(offer.algorithm) {
            self.count_auth("refused-ssh-rsa-sha1");
            if !self.refused_keys.contains(&fp) {
                self.refused_keys.push(fp.clone());
                self.audit_auth(None, &fp, "denied", "ssh-rsa (SHA-1) signatures are disabled; use rsa-sha2-256/512 or an ed25519 key").await;
            }
            return Ok(Auth::reject());
        }
        // Only a pre-check to spare a signature: identity is bound in auth_publickey.
        let config = self.state.admin.get();
        if config.keys.contains_key(&fp) {
            Ok(Auth::Accept)
        } else {
            self.count_auth("unknown-key");
            if !self.refused_keys.contains(&fp) {
                self.refused_keys.push(fp.clone());
                self.audit_auth(None, &fp, "denied", "unknown key").await;
            }
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        if self.sha1_refused(key.algorithm) {
            self.count_auth("refused-ssh-rsa-sha1");
            return Ok(Auth::reject());
        }
        let config = self.state.admin.get();
        let Some(user) = config.keys.get(&fp).cloned() else {
            self.count_auth("unknown-key");
            self.audit_auth(None, &fp, "denied", "unknown key").await;
            return Ok(Auth::reject());
        };
        self.count_auth("ok");
        self.audit_auth(Some(&user), &fp, "ok", "signature verified")
            .await;
        tracing::info!(user = %user, fingerprint = %fp, peer = ?self.peer, "authenticated");
        self.identity = Some(Identity {
            user,
            fingerprint: fp,
        });
        self.authenticated.store(true, Ordering::Release);
        self.unauthenticated_permit = None;
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let max = self.state.settings.ssh.max_sessions_per_connection;
        if self.open_sessions.load(Ordering::Acquire) >= max {
            self.state
                .metrics
                .ssh_refused_total
                .with_label_values(&["sessions-per-connection"])
                .inc();
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.open_sessions.fetch_add(1, Ordering::AcqRel);
        self.state.metrics.ssh_sessions_in_flight.inc();
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel closed before any command ran still held a session slot.
        if self.channels.remove(&channel).is_some() {
            self.open_sessions.fetch_sub(1, Ordering::AcqRel);
            self.state.metrics.ssh_sessions_in_flight.dec();
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "GIT_PROTOCOL" {
            self.git_protocol = Some(value.to_string());
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let user = self
            .identity
            .as_ref()
            .map(|i| i.user.as_str())
            .unwrap_or("?");
        let text = format!(
            "Hi {user}! You are authenticated, but slipway offers no shell.\r\nRun `ssh -p PORT git@HOST help` to see the commands.\r\n"
        );
        session.channel_success(channel)?;
        session.data(channel, text.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(ch), Some(identity)) = (self.channels.remove(&channel), self.identity.clone())
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let slot = SessionSlot {
            open_sessions: self.open_sessions.clone(),
            state: self.state.clone(),
            started: Instant::now(),
        };
        // Never run the command inline: handler callbacks stall the whole connection.
        tokio::spawn(super::exec::run(
            self.state.clone(),
            identity,
            self.peer,
            ch,
            data.to_vec(),
            self.git_protocol.clone(),
            slot,
        ));
        Ok(())
    }
}

/// Frees a session slot when the command running in it ends.
pub struct SessionSlot {
    open_sessions: Arc<AtomicUsize>,
    state: Arc<ServerState>,
    started: Instant,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.state
            .metrics
            .ssh_session_duration_seconds
            .with_label_values(&[] as &[&str])
            .observe(self.started.elapsed().as_secs_f64());
        self.open_sessions.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.ssh_sessions_in_flight.dec();
    }
}
