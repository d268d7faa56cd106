//! Running one exec request: a git service or an admin command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use slipway_actors::{AuditEntry, AuditKind};
use tokio::io::AsyncWriteExt;

use super::command_line::{parse_exec, ExecCommand};
use super::handler::SessionSlot;
use super::pipe::{finish, pipe_child};
use super::Identity;
use crate::access::Resource;
use crate::commands::{self, CommandContext};
use crate::git::{git_command, RepoName, Service};
use crate::hookrpc::PushContext;
use crate::state::ServerState;

/// Runs the command in `raw` on `channel` and closes it.
pub async fn run(
    state: Arc<ServerState>,
    identity: Identity,
    peer: Option<SocketAddr>,
    channel: Channel<Msg>,
    raw: Vec<u8>,
    git_protocol: Option<String>,
    _slot: SessionSlot,
) {
    let shown = shown_command(&raw);
    let (code, repo, label) = match parse_exec(&raw) {
        Err(message) => {
            state
                .metrics
                .ssh_commands_total
                .with_label_values(&["invalid", "failed"])
                .inc();
            tracing::info!(user = %identity.user, command = %shown, %message, "refused command");
            fail(channel, &format!("slipway: {message}\n"), 2).await;
            (2, None, "invalid")
        }
        Ok(ExecCommand::Git { service, repo }) => {
            let code = run_git(
                &state,
                &identity,
                peer,
                channel,
                service,
                &repo,
                git_protocol,
            )
            .await;
            (code, Some(repo.to_string()), service.verb())
        }
        Ok(ExecCommand::Admin(argv)) => {
            let name = commands::metric_name(&argv);
            let code = run_admin(&state, &identity, peer, channel, argv).await;
            state
                .metrics
                .ssh_commands_total
                .with_label_values(&[name, if code == 0 { "ok" } else { "failed" }])
                .inc();
            (code, None, name)
        }
    };
    let mut entry = AuditEntry::new(AuditKind::Command, if code == 0 { "ok" } else { "failed" });
    entry.user = Some(identity.user.clone());
    entry.key_fp = Some(identity.fingerprint.clone());
    entry.peer = peer.map(|p| p.to_string());
    entry.repo = repo;
    entry.action = Some(shown);
    entry.detail = Some(format!("{label} exit {code}"));
    state.audit(entry).await;
}

/// The command line as it may appear in logs: printable, at most 512 characters.
fn shown_command(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .take(512)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

async fn fail(channel: Channel<Msg>, message: &str, code: u32) {
    let _ = channel.extended_data(1, message.as_bytes()).await;
    let _ = channel.exit_status(code).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

fn not_found(repo: &RepoName) -> String {
    format!("slipway: repository `{repo}` not found (or you may not read it)\n")
}

async fn run_git(
    state: &Arc<ServerState>,
    identity: &Identity,
    peer: Option<SocketAddr>,
    channel: Channel<Msg>,
    service: Service,
    repo: &RepoName,
    git_protocol: Option<String>,
) -> u32 {
    let started = Instant::now();
    let config = state.admin.get();
    let access = &config.access;
    let user = identity.user.as_str();
    let exists = state.repos.exists(repo);
    let can_read = access
        .evaluate(user, "git:pull", &Resource::repo(repo.as_str()))
        .allowed();
    let mut created = false;
    let refusal = match service {
        _ if service.is_read() => (!exists || !can_read).then(|| not_found(repo)),
        _ if exists => {
            if access.may_push_somewhere(user, repo.as_str()) {
                None
            } else if can_read {
                Some(format!(
                    "slipway: you ({user}) may not push to `{repo}`: no statement allows git:push, git:create-ref, git:delete-ref or git:force-push there\n"
                ))
            } else {
                Some(not_found(repo))
            }
        }
        _ => {
            let may_create = access
                .evaluate(user, "repo:create", &Resource::repo(repo.as_str()))
                .allowed();
            if !may_create {
                Some(not_found(repo))
            } else {
                match state.repos.create(repo) {
                    Ok(_) => {
                        created = true;
                        tracing::info!(user, %repo, "repository created by push");
                        None
                    }
                    // Someone else created it a moment ago: push into it.
                    Err(crate::git::RepoStoreError::Exists(_)) => None,
                    Err(e) => {
                        tracing::error!(%repo, error = %e, "cannot create repository");
                        Some(format!(
                            "slipway: cannot create `{repo}`; the server log has details\n"
                        ))
                    }
                }
            }
        }
    };
    if let Some(message) = refusal {
        state
            .metrics
            .git_operations_total
            .with_label_values(&[service.verb(), "denied"])
            .inc();
        fail(channel, &message, 1).await;
        return 1;
    }
    let repo_path = state.repos.path(repo);
    let token = (service == Service::ReceivePack).then(|| {
        state.pushes.register(PushContext {
            user: user.to_string(),
            key_fp: identity.fingerprint.clone(),
            peer,
            repo: repo.clone(),
            repo_path: repo_path.clone(),
        })
    });
    let mut extra = Vec::new();
    if let Some(t) = &token {
        extra.push((
            "SLIPWAY_HOOK_SOCKET",
            state.data.hook_socket().display().to_string(),
        ));
        extra.push(("SLIPWAY_PUSH_TOKEN", t.value().to_string()));
    }
    let mut cmd = git_command(
        &state.settings.git.binary,
        state.settings.git.nice,
        service,
        &repo_path,
        state.data.root(),
        &state.data.hooks(),
        git_protocol.as_deref(),
        &extra,
    );
    let (code, finisher) = match cmd.spawn() {
        Ok(child) => pipe_child(channel, child).await,
        Err(e) => {
            tracing::error!(error = %e, git = %state.settings.git.binary, "cannot run git");
            fail(
                channel,
                "slipway: the server cannot run git; tell the administrator\n",
                1,
            )
            .await;
            return 1;
        }
    };
    drop(token);
    if created {
        let repos = state.repos.clone();
        let r = repo.clone();
        let keep = tokio::task::spawn_blocking(move || repos.has_refs(&r).unwrap_or(false))
            .await
            .unwrap_or(false);
        if code != 0 || !keep {
            let _ = state.repos.delete(repo);
            tracing::info!(%repo, "push into a new repository failed; removed it again");
        }
    }
    // Only now does the client's command end: what it sees next reflects the cleanup.
    finish(finisher, code).await;
    let m = &state.metrics;
    m.git_operations_total
        .with_label_values(&[service.verb(), if code == 0 { "ok" } else { "failed" }])
        .inc();
    m.git_operation_duration_seconds
        .with_label_values(&[service.verb()])
        .observe(started.elapsed().as_secs_f64());
    code
}

async fn run_admin(
    state: &Arc<ServerState>,
    identity: &Identity,
    peer: Option<SocketAddr>,
    channel: Channel<Msg>,
    argv: Vec<String>,
) -> u32 {
    let (mut rx, tx) = channel.split();
    // Forward stdin to the command (bounded: what does not fit is dropped, so a client
    // cannot stall its connection), and notice when the client goes away.
    let (chunks, input) = commands::Input::channel();
    let closed = input.closed_token();
    let reader = tokio::spawn(async move {
        let mut chunks = Some(chunks);
        while let Some(msg) = rx.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(c) = &chunks {
                        let _ = c.try_send(data.to_vec());
                    }
                }
                ChannelMsg::Eof => chunks = None,
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        closed.cancel();
    });
    let mut out = tx.make_writer();
    let mut err = tx.make_writer_ext(Some(1));
    let ctx = CommandContext {
        state,
        identity,
        peer,
        input,
    };
    let code = commands::run(&ctx, argv, &mut out, &mut err).await;
    let _ = out.flush().await;
    let _ = err.flush().await;
    let _ = tx.exit_status(code).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
    reader.abort();
    code
}
