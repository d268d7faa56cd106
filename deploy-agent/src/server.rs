//! Talking to the slipway server: registering with a one-time token, keeping the
//! credential it returns, and the long-poll loop.
//!
//! The credential lives in `STATE/agent.json` (mode 0600) with the server's URL and the
//! agent's name. Plain `http://` is used only for a loopback server unless the operator
//! allows it (`--allow-insecure-http`): the credential travels in every request.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file holding the registration.
pub const REGISTRATION_FILE: &str = "agent.json";

/// How long the server may hold a poll; the request timeout is a little longer.
const POLL_WAIT_SECONDS: u64 = 20;

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
    /// The credential is no longer valid.
    #[error("the server no longer accepts this agent's credential (it was removed); register again with a new token")]
    Unauthorized,
    /// The state directory could not be read or written.
    #[error("{0}")]
    State(String),
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
    /// A command (its JSON as the server sent it).
    Command(serde_json::Value),
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Unreachable {
        url: url.to_string(),
        message: e.to_string(),
    }
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
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| ServerError::State(format!("the --ca certificate is not PEM: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ServerError::State(format!("cannot set up HTTP: {e}")))?;
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
            .map_err(|e| unreachable(&url, e))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| unreachable(&url, e))?;
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
            .map_err(|e| unreachable(&url, e))?;
        match response.status() {
            reqwest::StatusCode::NO_CONTENT => Ok(Polled::Nothing),
            reqwest::StatusCode::UNAUTHORIZED => Err(ServerError::Unauthorized),
            s if s.is_success() => Ok(Polled::Command(
                response.json().await.map_err(|e| unreachable(&url, e))?,
            )),
            s => Err(unreachable(&url, format!("it answered {s}"))),
        }
    }
}

/// Polls until the credential is refused (an error) or `stop` resolves (`Ok`). Network
/// trouble is retried with a backoff of 1 s doubling to 30 s.
pub async fn run(
    client: &Client,
    registration: &Registration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    tokio::pin!(stop);
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
                // Lifecycle commands arrive with deployments (issue 6).
                tracing::warn!(%command, "the server sent a command this agent cannot run yet");
            }
            Err(ServerError::Unauthorized) => return Err(ServerError::Unauthorized),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "poll failed");
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
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
    fn a_registration_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let r = Registration {
            server: "http://127.0.0.1:1".into(),
            name: "web-1".into(),
            credential: "slwc_x".into(),
            tags: [("role".to_string(), "web".to_string())].into(),
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
