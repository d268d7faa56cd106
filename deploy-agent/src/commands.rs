//! `slipway-agent run`: carrying out the server's lifecycle commands, one at a time.
//!
//! The agent long-polls the server. For each command it:
//!
//! 1. writes the in-progress tracking file ([`crate::tracking`]);
//! 2. acknowledges it, and runs it only if the server answers `IN_PROGRESS` (otherwise
//!    it was cancelled or has ended, and is dropped); while it runs, it sends a
//!    heartbeat as often as the server asks, so that a long event is not taken for a
//!    lost agent;
//! 3. fetches the deployment's description once (kept in memory) and, for
//!    DownloadBundle, the revision's zip file, which must have the announced SHA-256 and
//!    is unpacked into the deployment's archive; every other event runs through the
//!    [`Executor`] from that archive, as `slipway-agent local` runs them;
//! 4. after a successful ValidateService, records the revision as the group's last
//!    successful one (whose ApplicationStop the next deployment runs);
//! 5. keeps the result in the tracking file and reports it, retrying with a backoff
//!    while the server cannot be reached or has trouble of its own (it may be
//!    restarting); then removes the tracking file.
//!
//! When it starts, the agent first reports a command the tracking file still names: its
//! result if it had one, otherwise FAILED with FAILED_AFTER_RESTART (7). Stopping
//! (SIGTERM, Ctrl-C) in the middle of a command kills its scripts' process group and
//! leaves the tracking file for the next start.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::appspec::FileExistsBehavior;
use crate::bundle::ZipLimits;
use crate::diagnostics::Diagnostics;
use crate::event::LifecycleEvent;
use crate::executor::{Deployment, EventOutcome, EventStatus, Executor};
use crate::server::{
    Client, CommandRequest, Completion, DeploymentSpec, Polled, Registration, ServerError, ACK_RUN,
};
use crate::state::Ident;
use crate::tracking::InProgress;

/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often fetching a deployment or a bundle is tried before the event fails (about
/// 30 s of waiting in all).
const FETCH_ATTEMPTS: u32 = 5;

/// How many deployments' descriptions are kept in memory.
const CACHED_DEPLOYMENTS: usize = 32;

/// How often a running command's heartbeat is sent when the server does not say (a
/// quarter of the server's default agent timeout).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// Polls and carries out commands until the credential is refused (an error) or `stop`
/// resolves (`Ok`). Network trouble is retried with a backoff of 1 s doubling to 30 s.
pub async fn run(
    client: &Client,
    registration: &Registration,
    executor: &Executor,
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    tokio::pin!(stop);
    let mut agent = Agent {
        client,
        credential: &registration.credential,
        executor,
        limits: ZipLimits::default(),
        deployments: HashMap::new(),
    };
    tokio::select! {
        _ = &mut stop => return Ok(()),
        recovered = agent.recover() => recovered?,
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let polled = tokio::select! {
            _ = &mut stop => return Ok(()),
            polled = client.poll(&registration.credential) => polled,
        };
        match polled {
            Ok(Polled::Nothing) => backoff = Duration::from_secs(1),
            Ok(Polled::Command(command)) => {
                backoff = Duration::from_secs(1);
                tokio::select! {
                    _ = &mut stop => {
                        tracing::warn!(command = command.id, event = %command.event,
                            "stopping in the middle of a command; it is reported when the agent starts again");
                        return Ok(());
                    }
                    done = agent.carry_out(&command) => done?,
                }
            }
            Err(ServerError::Unauthorized) => return Err(ServerError::Unauthorized),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "poll failed");
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A deployment as the executor needs it, and its bundle.
#[derive(Debug, Clone)]
struct Remote {
    deployment: Deployment,
    bundle_sha256: String,
}

struct Agent<'a> {
    client: &'a Client,
    credential: &'a str,
    executor: &'a Executor,
    limits: ZipLimits,
    deployments: HashMap<i64, Remote>,
}

impl Agent<'_> {
    fn state_dir(&self) -> &Path {
        self.executor.state().dir()
    }

    /// Removes the tracking file.
    fn forget(&self) {
        if let Err(e) = InProgress::remove(self.state_dir()) {
            tracing::warn!(error = %e, "cannot remove the in-progress file; its command will be reported again when the agent starts");
        }
    }

    /// Reports the command the tracking file names, if any.
    async fn recover(&mut self) -> Result<(), ServerError> {
        let tracking = match InProgress::load(self.state_dir()) {
            Ok(Some(tracking)) => tracking,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "the in-progress file cannot be read; removing it");
                self.forget();
                return Ok(());
            }
        };
        if tracking.result.is_some() {
            tracing::info!(command = tracking.command_id, event = %tracking.event,
                "reporting the result the server had not taken when the agent stopped");
        } else {
            tracing::warn!(command = tracking.command_id, deployment = tracking.deployment_id,
                event = %tracking.event,
                "the agent stopped while it ran this command; reporting it as failed (FAILED_AFTER_RESTART)");
        }
        self.report(&tracking).await
    }

    /// Carries out one command; an error only when the credential was refused.
    async fn carry_out(&mut self, command: &CommandRequest) -> Result<(), ServerError> {
        let mut tracking = InProgress::new(command.id, command.deployment_id, &command.event);
        if let Err(e) = tracking.save(self.state_dir()) {
            tracing::error!(error = %e,
                "cannot write the in-progress file; if the agent stops during this command, it will not report it");
        }
        let (client, credential) = (self.client, self.credential);
        let acked = retrying("acknowledge a command", None, || {
            client.ack(credential, command.id)
        })
        .await;
        let acked = match acked {
            Ok(acked) => acked,
            Err(ServerError::Unauthorized) => return Err(ServerError::Unauthorized),
            Err(e) => {
                tracing::warn!(command = command.id, error = %e,
                    "the server refused the acknowledgement; not running the command");
                self.forget();
                return Ok(());
            }
        };
        if acked.status != ACK_RUN {
            tracing::info!(command = command.id, event = %command.event, status = %acked.status,
                "the command is already over on the server; not running it");
            self.forget();
            return Ok(());
        }
        tracing::info!(command = command.id, deployment = command.deployment_id,
            event = %command.event, "running a lifecycle event");
        let every = acked.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
        let completion = tokio::select! {
            completion = self.execute(command) => completion,
            never = heartbeats(client, credential, command.id, every) => match never {},
        };
        tracing::info!(command = command.id, event = %command.event, status = ?completion.status,
            error_code = %completion.diagnostics.error_code,
            message = %completion.diagnostics.message, "the lifecycle event ended");
        tracking.result = Some(completion);
        if let Err(e) = tracking.save(self.state_dir()) {
            tracing::warn!(error = %e, "cannot keep the result in the in-progress file");
        }
        self.report(&tracking).await
    }

    /// Reports `tracking`'s command (retrying while the server is unreachable) and
    /// removes the tracking file; an error only when the credential was refused.
    async fn report(&self, tracking: &InProgress) -> Result<(), ServerError> {
        let completion = tracking.completion();
        let (client, credential, id) = (self.client, self.credential, tracking.command_id);
        let reported = retrying("report a command's result", None, || {
            client.complete(credential, id, &completion)
        })
        .await;
        match reported {
            Ok(()) => tracing::debug!(command = id, "result reported"),
            Err(ServerError::Unauthorized) => return Err(ServerError::Unauthorized),
            Err(e) if matches!(e.status(), Some(404 | 409)) => {
                tracing::info!(command = id, error = %e, "the server no longer waits for this command's result");
            }
            Err(e) => {
                tracing::warn!(command = id, error = %e, "the server refused this command's result; dropping it");
            }
        }
        self.forget();
        Ok(())
    }

    /// Runs the command's event; every problem becomes a failure to report.
    async fn execute(&mut self, command: &CommandRequest) -> Completion {
        let event = match command.event.parse::<LifecycleEvent>() {
            Ok(event) => event,
            Err(e) => {
                return Completion::agent_error(format!(
                    "{e}; this agent (version {}) cannot run it: upgrade the agent",
                    env!("CARGO_PKG_VERSION")
                ))
            }
        };
        let remote = match self.deployment(command.deployment_id).await {
            Ok(remote) => remote,
            Err(message) => return Completion::agent_error(message),
        };
        let outcome = match event {
            LifecycleEvent::DownloadBundle => self.download(&remote).await,
            _ => self.executor.run_event(&remote.deployment, event).await,
        };
        if event == LifecycleEvent::ValidateService && outcome.status == EventStatus::Succeeded {
            if let Err(e) = self.executor.record_success(&remote.deployment) {
                return Completion::agent_error(format!(
                    "ValidateService succeeded, but the revision cannot be recorded as the group's last successful one: {e}"
                ));
            }
        }
        outcome.into()
    }

    /// Deployment `id`, from memory or from the server.
    async fn deployment(&mut self, id: i64) -> Result<Remote, String> {
        if let Some(remote) = self.deployments.get(&id) {
            return Ok(remote.clone());
        }
        let (client, credential) = (self.client, self.credential);
        let spec = retrying("get a deployment", Some(FETCH_ATTEMPTS), || {
            client.deployment(credential, id)
        })
        .await
        .map_err(|e| format!("cannot get deployment {id} from the server: {e}"))?;
        let remote = remote_deployment(spec)?;
        if self.deployments.len() >= CACHED_DEPLOYMENTS {
            self.deployments.clear();
        }
        self.deployments.insert(id, remote.clone());
        Ok(remote)
    }

    /// DownloadBundle: fetches the revision's zip file and unpacks it into the
    /// deployment's archive (once: an archive already there is kept).
    async fn download(&self, remote: &Remote) -> EventOutcome {
        let event = LifecycleEvent::DownloadBundle;
        let deployment = &remote.deployment;
        let group = self.executor.group(deployment);
        if group.archive(&deployment.deployment_id).is_dir() {
            return self.executor.run_event(deployment, event).await;
        }
        if let Err(e) = group.create_deployment(&deployment.deployment_id) {
            return EventOutcome::new(event, Diagnostics::agent_error(e.to_string()));
        }
        let zip = group
            .deployment_dir(&deployment.deployment_id)
            .join("bundle.zip");
        let (client, credential, max) = (self.client, self.credential, self.limits.max_zip_bytes);
        let sha256 = remote.bundle_sha256.as_str();
        let downloaded = retrying("download a bundle", Some(FETCH_ATTEMPTS), || {
            client.download_bundle(credential, sha256, &zip, max)
        })
        .await;
        let outcome = match downloaded {
            Ok(bytes) => {
                tracing::info!(deployment = %deployment.deployment_id, bytes, "bundle downloaded");
                self.executor
                    .stage_zip(deployment, &zip, sha256, self.limits)
                    .await
            }
            Err(e) => EventOutcome::new(
                event,
                Diagnostics::agent_error(format!("cannot download the bundle: {e}")),
            ),
        };
        match std::fs::remove_file(&zip) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %zip.display(), error = %e, "cannot remove the downloaded bundle")
            }
        }
        outcome
    }
}

/// Tells the server every `every` that command `id` is still running. Never ends: it is
/// dropped when the command ends. A heartbeat that fails is not retried (the next one
/// comes soon); the server fails the command if it hears nothing for its agent timeout.
async fn heartbeats(client: &Client, credential: &str, id: i64, every: Duration) -> Infallible {
    let (mut unreachable, mut over) = (false, false);
    loop {
        tokio::time::sleep(every).await;
        match client.heartbeat(credential, id, every).await {
            Ok(acked) => {
                if unreachable {
                    tracing::info!(command = id, "the server is reachable again");
                    unreachable = false;
                }
                if acked.status != ACK_RUN && !over {
                    over = true;
                    tracing::warn!(command = id, status = %acked.status,
                        "the server no longer waits for this command (it took the agent for lost, or the deployment was stopped); it runs to its end, but its result will not count");
                }
            }
            Err(e) if !unreachable => {
                unreachable = true;
                tracing::warn!(command = id, error = %e,
                    "cannot tell the server that this command is still running; if this lasts longer than the server's agent timeout, the server fails the command");
            }
            Err(_) => {}
        }
    }
}

/// Calls `call` until it succeeds or fails for good. Transient failures (the server
/// unreachable, 5xx) are tried again after 1 s, doubling to 30 s, at most `attempts`
/// times in all (`None`: until they work).
async fn retrying<T, F, Fut>(
    what: &str,
    attempts: Option<u32>,
    mut call: F,
) -> Result<T, ServerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServerError>>,
{
    let mut backoff = Duration::from_secs(1);
    let mut tries = 0u32;
    loop {
        tries += 1;
        match call().await {
            Err(e) if e.is_transient() && attempts.is_none_or(|n| tries < n) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot {what}; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            done => return done,
        }
    }
}

/// The executor's view of a deployment the server describes. Ids that cannot be
/// directory names are replaced by safe ones made from them ([`Ident::derive`]).
fn remote_deployment(spec: DeploymentSpec) -> Result<Remote, String> {
    let sha256 = spec.bundle_sha256.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the server gave deployment {} the bundle SHA-256 `{}`, which is not 64 hex digits",
            spec.deployment_id,
            spec.bundle_sha256.escape_default()
        ));
    }
    let file_exists_behavior = match spec.file_exists_behavior.as_deref() {
        None | Some("") => None,
        Some("DISALLOW") => Some(FileExistsBehavior::Disallow),
        Some("OVERWRITE") => Some(FileExistsBehavior::Overwrite),
        Some("RETAIN") => Some(FileExistsBehavior::Retain),
        Some(other) => {
            tracing::warn!(deployment = %spec.deployment_id, value = %other.escape_default(),
                "unknown file_exists_behavior; the appspec's, or DISALLOW, applies");
            None
        }
    };
    let deployment_id = Ident::derive(&spec.deployment_id);
    let group_id = Ident::derive(&spec.group_id);
    for (what, given, id) in [
        ("deployment id", &spec.deployment_id, &deployment_id),
        ("deployment group id", &spec.group_id, &group_id),
    ] {
        if id.as_str() != given {
            tracing::warn!(given = %given.escape_default(), used = %id,
                "the server's {what} cannot be a directory name; a safe one made from it is used");
        }
    }
    Ok(Remote {
        deployment: Deployment {
            deployment_id,
            application_name: spec.application,
            group_name: spec.group,
            group_id,
            bundle_commit: spec.bundle_commit.unwrap_or_default(),
            file_exists_behavior,
        },
        bundle_sha256: sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "deployment_id": "d-5", "application": "web", "group": "prod",
            "group_id": "web.prod", "bundle_sha256": "AB".repeat(32),
            "bundle_commit": "0123abcd", "file_exists_behavior": "OVERWRITE"
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_servers_deployment_becomes_the_executors() {
        let remote = remote_deployment(spec()).unwrap_or_else(|e| panic!("{e}"));
        let d = &remote.deployment;
        assert_eq!(d.deployment_id.as_str(), "d-5");
        assert_eq!(d.group_id.as_str(), "web.prod");
        assert_eq!(
            (d.application_name.as_str(), d.group_name.as_str()),
            ("web", "prod")
        );
        assert_eq!(d.bundle_commit, "0123abcd");
        assert_eq!(d.file_exists_behavior, Some(FileExistsBehavior::Overwrite));
        assert_eq!(remote.bundle_sha256, "ab".repeat(32));

        let mut odd = spec();
        odd.group_id = "web/prod".into();
        odd.bundle_commit = None;
        odd.file_exists_behavior = Some("SOMETIMES".into());
        let remote = remote_deployment(odd).unwrap_or_else(|e| panic!("{e}"));
        assert!(remote.deployment.group_id.as_str().starts_with("web_prod-"));
        assert_eq!(remote.deployment.bundle_commit, "");
        assert_eq!(remote.deployment.file_exists_behavior, None);

        for bad in ["", "../../etc", &"a".repeat(63), &"g".repeat(64)] {
            let mut s = spec();
            s.bundle_sha256 = bad.to_string();
            let e = remote_deployment(s).map(|_| ()).unwrap_err();
            assert!(e.contains("not 64 hex digits"), "{e}");
        }
    }
}
