//! Talking to the slipway server: registering with a one-time token, keeping the
//! credential it returns, and the requests of the agent protocol (the loop that uses
//! them is in [`crate::commands`]).
//!
//! The credential lives in `STATE/agent.json` (mode 0600) with the server's URL and the
//! agent's name. Plain `http://` is used only for a loopback server unless the operator
//! allows it (`--allow-insecure-http`): the credential travels in every request.
//!
//! # Protocol (JSON; every request but `register` carries `Authorization: Bearer CREDENTIAL`)
//!
//! - `POST /api/agent/poll?wait=20` `{"version"}` → `204`, or `200`
//!   `{"command": {"id", "deployment_id", "event"}}`; `401`: the credential was refused.
//! - `POST /api/agent/commands/{id}/ack` `{}` → `{"status", "heartbeat_seconds"}`; only
//!   `IN_PROGRESS` means "run it" (`SUCCEEDED`, `FAILED`, `CANCELLED`: it is over, do not
//!   run it).
//! - `POST /api/agent/commands/{id}/heartbeat` `{}` → `{"status", "heartbeat_seconds"}`:
//!   sent every `heartbeat_seconds` while the command runs; a server that hears nothing
//!   from the agent for its agent timeout fails the command.
//! - `GET /api/agent/deployments/{deployment_id}` → `{"deployment_id", "application",
//!   "group", "group_id", "bundle_sha256", "bundle_commit", "file_exists_behavior"}`.
//! - `GET /api/agent/bundles/{sha256}` → the revision as a zip file.
//! - `POST /api/agent/commands/{id}/complete` `{"status": "SUCCEEDED" | "FAILED" |
//!   "SKIPPED", "diagnostics": {"error_code", "script_name", "message", "log"}}`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diagnostics::Diagnostics;
use crate::executor::{EventOutcome, EventStatus};

/// The file holding the registration.
pub const REGISTRATION_FILE: &str = "agent.json";

/// How long the server may hold a poll; the request timeout is a little longer.
const POLL_WAIT_SECONDS: u64 = 20;

/// How long a bundle download may take in all.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How long a bundle download may go without receiving anything.
const DOWNLOAD_STALL: Duration = Duration::from_secs(60);

/// The acknowledgement status that means "run it".
pub const ACK_RUN: &str = "IN_PROGRESS";

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The URL is not usable.
    #[error("server URL `{0}`: {1}")]
    Url(String, String),
    /// Plain HTTP to a host that is not loopback, without permission.
    #[error("refusing plain http:// to {0}: the credential would cross the network unencrypted; use https://, or pass --allow-insecure-http if this network is trusted")]
    Insecure(String),
    /// The server could not be reached or answered garbage.
    #[error("cannot reach the server at {url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server refused (its message says why).
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server answered with an error status.
    #[error("the server answered {status} to {url}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's `error`, or the status's reason.
        message: String,
    },
    /// The server answered something this agent does not understand.
    #[error("the server at {url} answered something this agent does not understand ({message}); are the agent and the server of matching versions?")]
    Garbage {
        /// The URL.
        url: String,
        /// What did not parse.
        message: String,
    },
    /// A bundle is larger than the agent accepts.
    #[error("the bundle at {url} is larger than the {limit} bytes this agent accepts")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A download could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The credential is no longer valid.
    #[error("the server no longer accepts this agent's credential (it was removed); register again with a new token")]
    Unauthorized,
    /// The state directory could not be read or written.
    #[error("{0}")]
    State(String),
}

impl ServerError {
    /// Whether trying again later may work: the server could not be reached or had
    /// trouble of its own (5xx, 408, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            ServerError::Unreachable { .. } => true,
            ServerError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => false,
        }
    }

    /// The HTTP status the server answered, if this is an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ServerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A registration, as kept in the state directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// The server's base URL.
    pub server: String,
    /// This agent's name.
    pub name: String,
    /// The secret it polls with.
    pub credential: String,
    /// Tags the server gave it.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// The extra CA certificate given at registration (`--ca`), used by `run` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Whether plain http:// off loopback was allowed at registration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

impl Registration {
    /// Where it is kept under `state`.
    pub fn path(state: &Path) -> PathBuf {
        state.join(REGISTRATION_FILE)
    }

    /// Reads it from `state`.
    pub fn load(state: &Path) -> Result<Registration, ServerError> {
        let path = Registration::path(state);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ServerError::State(format!(
                "cannot read {} ({e}); register first: slipway-agent register --server URL --token TOKEN --name NAME",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ServerError::State(format!(
                "{} is damaged ({e}); register again",
                path.display()
            ))
        })
    }

    /// Writes it into `state`, readable only by this user.
    pub fn save(&self, state: &Path) -> Result<(), ServerError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(state)
            .map_err(|e| ServerError::State(format!("cannot create {}: {e}", state.display())))?;
        let path = Registration::path(state);
        let tmp = state.join(format!("{REGISTRATION_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ServerError::State(format!("cannot encode the registration: {e}")))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ServerError::State(format!("cannot write {}: {e}", tmp.display())))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| ServerError::State(format!("cannot write {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| ServerError::State(format!("cannot write {}: {e}", path.display())))
    }
}

/// Checks `url` and that its scheme is allowed; answers it without a trailing `/`.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<String, ServerError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ServerError::Url(url.into(), e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| ServerError::Url(url.into(), "it names no host".into()))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = bare == "localhost"
                || bare
                    .parse::<IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if !loopback && !allow_insecure_http {
                return Err(ServerError::Insecure(host.to_string()));
            }
        }
        other => {
            return Err(ServerError::Url(
                url.into(),
                format!("scheme `{other}` is not http:// or https://"),
            ))
        }
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The agent's HTTP client.
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// What a poll brought.
#[derive(Debug)]
pub enum Polled {
    /// Nothing to do.
    Nothing,
    /// A command.
    Command(CommandRequest),
}

/// A lifecycle command: run `event` of deployment `deployment_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommandRequest {
    /// The command's id (acknowledge and complete it with this).
    pub id: i64,
    /// The server's deployment id ([`Client::deployment`] describes it).
    pub deployment_id: i64,
    /// The lifecycle event, as named in appspec.yml (kept as text: an event this agent
    /// does not know is reported, not dropped).
    pub event: String,
}

#[derive(Deserialize)]
struct PollAnswer {
    command: CommandRequest,
}

#[derive(Deserialize)]
struct AckAnswer {
    status: String,
    #[serde(default)]
    heartbeat_seconds: Option<u64>,
}

/// The server's answer to an acknowledgement or a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The command's status ([`ACK_RUN`]: run it, or it still runs).
    pub status: String,
    /// How often to send heartbeats while the command runs, if the server says.
    pub heartbeat: Option<Duration>,
}

impl From<AckAnswer> for Acked {
    fn from(answer: AckAnswer) -> Acked {
        Acked {
            status: answer.status,
            heartbeat: answer
                .heartbeat_seconds
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
        }
    }
}

/// A deployment as the server describes it to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeploymentSpec {
    /// `DEPLOYMENT_ID` (`d-5`).
    pub deployment_id: String,
    /// `APPLICATION_NAME`.
    pub application: String,
    /// `DEPLOYMENT_GROUP_NAME`.
    pub group: String,
    /// `DEPLOYMENT_GROUP_ID` (`web.prod`).
    pub group_id: String,
    /// The SHA-256 of the revision's zip file, in hex.
    pub bundle_sha256: String,
    /// `BUNDLE_COMMIT`.
    #[serde(default)]
    pub bundle_commit: Option<String>,
    /// `DISALLOW`, `OVERWRITE` or `RETAIN`.
    #[serde(default)]
    pub file_exists_behavior: Option<String>,
}

/// How a command ended, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompletionStatus {
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// It had nothing to do.
    Skipped,
}

/// The body of `complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// How it ended.
    pub status: CompletionStatus,
    /// The details.
    pub diagnostics: Diagnostics,
}

impl Completion {
    /// A failure of the agent's own work.
    pub fn agent_error(message: impl Into<String>) -> Completion {
        Completion {
            status: CompletionStatus::Failed,
            diagnostics: Diagnostics::agent_error(message),
        }
    }
}

impl From<EventOutcome> for Completion {
    fn from(outcome: EventOutcome) -> Completion {
        Completion {
            status: match outcome.status {
                EventStatus::Succeeded => CompletionStatus::Succeeded,
                EventStatus::Failed => CompletionStatus::Failed,
                EventStatus::Skipped => CompletionStatus::Skipped,
            },
            diagnostics: outcome.diagnostics,
        }
    }
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Unreachable {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// A request that failed on the way: reqwest's own message names only the URL, so the
/// causes (refused, timed out, an untrusted certificate) are added, and for a
/// certificate problem what to do about it.
fn request_failed(url: &str, e: reqwest::Error) -> ServerError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    if message.contains("CaUsedAsEndEntity") {
        // rustls will not take a CA certificate as the server's own, which is what a
        // plain `openssl req -x509` makes.
        message.push_str(
            "; the server's certificate is a CA certificate (CA:TRUE): make it with `-addext basicConstraints=critical,CA:FALSE`, or sign it with a private CA and give the CA's certificate with --ca FILE",
        );
    } else if message.contains("certificate") {
        message.push_str(
            "; if the server's certificate comes from a private CA, give that CA's certificate with --ca FILE (to register and to run)",
        );
    } else if url.starts_with("http://") && message.contains("invalid HTTP version") {
        // What a TLS alert looks like to an HTTP client.
        message.push_str("; the server may be speaking HTTPS: use https://");
    }
    unreachable(url, message)
}

fn garbage(url: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Garbage {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// Passes a successful response on; turns the others into errors.
async fn checked(url: &str, response: reqwest::Response) -> Result<reqwest::Response, ServerError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(ServerError::Unauthorized);
    }
    let body = response.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string()
        });
    Err(ServerError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    })
}

/// Reads a successful response's JSON body.
async fn json_body<T: serde::de::DeserializeOwned>(
    url: &str,
    response: reqwest::Response,
) -> Result<T, ServerError> {
    let response = checked(url, response).await?;
    let body = response.bytes().await.map_err(|e| request_failed(url, e))?;
    serde_json::from_slice(&body).map_err(|e| garbage(url, e))
}

impl Client {
    /// A client for the server at `base` (already checked with [`check_url`]), trusting
    /// the extra CA certificate in `ca_pem` when given.
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<Client, ServerError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(POLL_WAIT_SECONDS + 15))
            .user_agent(concat!("slipway-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            // Every certificate in the file is trusted (a bundle works); a file without
            // one would otherwise be ignored in silence.
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ServerError::State(format!("the --ca file is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ServerError::State(
                    "the --ca file holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the certificate of the CA that signed the server's certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            ServerError::State(format!("cannot set up HTTP: {e}{cause}"))
        })?;
        Ok(Client {
            http,
            base: base.to_string(),
        })
    }

    /// Registers as `name` with a one-time `token`.
    pub async fn register(&self, token: &str, name: &str) -> Result<Registration, ServerError> {
        let url = format!("{}/api/agent/register", self.base);
        let response = self
            .http
            .post(&url)
            .json(&serde_json::json!({
                "token": token,
                "name": name,
                "version": env!("CARGO_PKG_VERSION"),
            }))
            .send()
            .await
            .map_err(|e| request_failed(&url, e))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| request_failed(&url, e))?;
        if !status.is_success() {
            return Err(ServerError::Refused(
                body["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string(),
            ));
        }
        let credential = body["credential"]
            .as_str()
            .ok_or_else(|| unreachable(&url, "the answer has no credential"))?;
        Ok(Registration {
            server: self.base.clone(),
            name: body["name"].as_str().unwrap_or(name).to_string(),
            credential: credential.to_string(),
            tags: serde_json::from_value(body["tags"].clone()).unwrap_or_default(),
            ca: None,
            allow_insecure_http: false,
        })
    }

    /// One long-poll: waits up to about 20 s for a command.
    pub async fn poll(&self, credential: &str) -> Result<Polled, ServerError> {
        let url = format!("{}/api/agent/poll?wait={POLL_WAIT_SECONDS}", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(credential)
            .json(&serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
            .send()
            .await
            .map_err(|e| request_failed(&url, e))?;
        match response.status() {
            reqwest::StatusCode::NO_CONTENT => Ok(Polled::Nothing),
            reqwest::StatusCode::UNAUTHORIZED => Err(ServerError::Unauthorized),
            s if s.is_success() => {
                let answer: PollAnswer = json_body(&url, response).await?;
                Ok(Polled::Command(answer.command))
            }
            s => Err(unreachable(&url, format!("it answered {s}"))),
        }
    }

    /// Acknowledges command `id`; answers the command's status ([`ACK_RUN`]: run it).
    pub async fn ack(&self, credential: &str, id: i64) -> Result<Acked, ServerError> {
        let url = format!("{}/api/agent/commands/{id}/ack", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(credential)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| request_failed(&url, e))?;
        let answer: AckAnswer = json_body(&url, response).await?;
        Ok(answer.into())
    }

    /// Tells the server that command `id` is still running, giving up after `timeout`;
    /// answers the command's status ([`ACK_RUN`] while the server still waits for it).
    pub async fn heartbeat(
        &self,
        credential: &str,
        id: i64,
        timeout: Duration,
    ) -> Result<Acked, ServerError> {
        let url = format!("{}/api/agent/commands/{id}/heartbeat", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(credential)
            .timeout(timeout)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        let answer: AckAnswer = json_body(&url, response).await?;
        Ok(answer.into())
    }

    /// Reports how command `id` ended.
    pub async fn complete(
        &self,
        credential: &str,
        id: i64,
        completion: &Completion,
    ) -> Result<(), ServerError> {
        let url = format!("{}/api/agent/commands/{id}/complete", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(credential)
            .json(completion)
            .send()
            .await
            .map_err(|e| request_failed(&url, e))?;
        checked(&url, response).await.map(drop)
    }

    /// What the server says about deployment `id`.
    pub async fn deployment(
        &self,
        credential: &str,
        id: i64,
    ) -> Result<DeploymentSpec, ServerError> {
        let url = format!("{}/api/agent/deployments/{id}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(credential)
            .send()
            .await
            .map_err(|e| request_failed(&url, e))?;
        json_body(&url, response).await
    }

    /// Downloads the bundle `sha256` (hex) into the file `dest` (replaced), refusing more
    /// than `max_bytes`; answers its size. The caller checks the SHA-256. A refused or
    /// broken download leaves no file.
    pub async fn download_bundle(
        &self,
        credential: &str,
        sha256: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<u64, ServerError> {
        let url = format!("{}/api/agent/bundles/{sha256}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(credential)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| request_failed(&url, e))?;
        let mut response = checked(&url, response).await?;
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(ServerError::TooLarge {
                url,
                limit: max_bytes,
            });
        }
        let written = write_body(&url, &mut response, dest, max_bytes).await;
        if written.is_err() {
            if let Err(e) = tokio::fs::remove_file(dest).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %dest.display(), error = %e, "cannot remove a broken download");
                }
            }
        }
        written
    }
}

/// Writes `response`'s body into `dest`, at most `max_bytes` of it.
async fn write_body(
    url: &str,
    response: &mut reqwest::Response,
    dest: &Path,
    max_bytes: u64,
) -> Result<u64, ServerError> {
    use tokio::io::AsyncWriteExt;
    let write_error = |source| ServerError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(write_error)?;
    let mut size = 0u64;
    loop {
        let chunk = tokio::time::timeout(DOWNLOAD_STALL, response.chunk())
            .await
            .map_err(|_| {
                unreachable(
                    url,
                    format!("nothing arrived for {} seconds", DOWNLOAD_STALL.as_secs()),
                )
            })?
            .map_err(|e| request_failed(url, e))?;
        let Some(chunk) = chunk else { break };
        size = size.saturating_add(chunk.len() as u64);
        if size > max_bytes {
            return Err(ServerError::TooLarge {
                url: url.to_string(),
                limit: max_bytes,
            });
        }
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    file.sync_all().await.map_err(write_error)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        assert_eq!(
            check_url("http://127.0.0.1:8080/", false).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_url("http://[::1]:8080", false).is_ok());
        assert!(check_url("http://localhost:8080", false).is_ok());
        assert!(matches!(
            check_url("http://ci.example:8080", false),
            Err(ServerError::Insecure(_))
        ));
        assert!(check_url("http://ci.example:8080", true).is_ok());
        assert!(check_url("https://ci.example", false).is_ok());
        assert!(matches!(
            check_url("ftp://ci.example", true),
            Err(ServerError::Url(..))
        ));
        assert!(matches!(
            check_url("not a url", true),
            Err(ServerError::Url(..))
        ));
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let err = Client::new("https://ci.example", Some(b"not a certificate\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn a_registration_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let r = Registration {
            server: "http://127.0.0.1:1".into(),
            name: "web-1".into(),
            credential: "slwc_x".into(),
            tags: [("role".to_string(), "web".to_string())].into(),
            ca: Some("/etc/slipway-agent/ca.pem".into()),
            allow_insecure_http: false,
        };
        r.save(dir.path()).unwrap();
        let mode = std::fs::metadata(Registration::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Registration::load(dir.path()).unwrap(), r);
        let e = Registration::load(&dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("register first"), "{e}");
    }
}
