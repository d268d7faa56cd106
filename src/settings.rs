//! `slipway.yaml`: server settings. Defaults, then the file, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use slipway_actors::config::settings::{
    BuildSettings, DeploySettings, NotifySettings, SmtpSettings, WebhookSettings,
};

/// Server settings, as read from `DATA/slipway.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The SSH listener.
    pub ssh: SshSettings,
    /// The HTTP listener (metrics, health, the deploy agents' API).
    pub http: HttpSettings,
    /// How git is run.
    pub git: GitSettings,
    /// The SMTP server for mail; without it mail is written to `DATA/mail/*.eml`.
    pub smtp: Option<SmtpSettings>,
    /// Sender and retry policy of notifications.
    pub notify: NotifySettings,
    /// Webhook policy.
    pub webhooks: WebhookSettings,
    /// The build queue.
    pub builds: BuildSettings,
    /// Deployments.
    pub deploy: DeploySettings,
}

/// SSH listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSettings {
    /// Address to listen on (`--ssh-listen` overrides).
    pub listen: SocketAddr,
    /// Host name shown in the clone URLs slipway prints.
    pub public_host: Option<String>,
    /// A connection must authenticate within this time.
    #[serde(with = "slipway_actors::config::settings::duration")]
    pub login_grace_time: Duration,
    /// A connection with no traffic for this long is closed. Transfers that move data
    /// never hit it, however long they take.
    #[serde(with = "slipway_actors::config::settings::duration")]
    pub idle_timeout: Duration,
    /// Sessions (channels) one connection may have open at once.
    pub max_sessions_per_connection: usize,
    /// Connections that have not authenticated yet, at once (like OpenSSH's MaxStartups).
    pub max_unauthenticated: usize,
    /// Accept legacy `ssh-rsa` (SHA-1) signatures. Off: RSA keys must sign with SHA-2.
    pub allow_ssh_rsa_sha1: bool,
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address to listen on (`--http-listen` overrides).
    pub listen: SocketAddr,
    /// Serve HTTPS (only) with this certificate and key.
    pub tls: Option<TlsSettings>,
    /// Serve plain HTTP on an address that is not loopback. Off: the server refuses to
    /// start that way, since agents' credentials would cross the network in clear text.
    pub allow_insecure: bool,
}

/// The HTTPS certificate and key (PEM). Relative paths are relative to the data
/// directory ([`Settings::load`] makes them absolute).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate, followed by any intermediate certificates.
    pub cert: PathBuf,
    /// Its private key: PKCS#8, RSA (PKCS#1) or EC (SEC1), unencrypted.
    pub key: PathBuf,
}

/// Plain HTTP on an address other than loopback, without `http.allow_insecure`.
#[derive(Debug, thiserror::Error)]
#[error("http.listen (or --http-listen) is {listen}, which is not a loopback address, and http.tls is not set: deploy agents' credentials would cross the network unencrypted. Add `tls: {{ cert: CERT.pem, key: KEY.pem }}` under `http:` in slipway.yaml to serve HTTPS (docs/deployments.md shows how to make a certificate), listen on 127.0.0.1, or add `allow_insecure: true` under `http:` if this network is trusted")]
pub struct InsecureHttp {
    /// The address.
    pub listen: SocketAddr,
}

impl HttpSettings {
    /// Refuses plain HTTP on an address that is not loopback unless it is allowed.
    pub fn check_exposure(&self) -> Result<(), InsecureHttp> {
        let loopback = self.listen.ip().to_canonical().is_loopback();
        if self.tls.is_none() && !loopback && !self.allow_insecure {
            return Err(InsecureHttp {
                listen: self.listen,
            });
        }
        Ok(())
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// How slipway runs git.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitSettings {
    /// The git program.
    pub binary: String,
    /// Niceness (0–19) of the git processes serving clones and pushes, and of the hooks
    /// they run: pack work yields the CPU to the server's event delivery and handshakes.
    pub nice: i32,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
            public_host: None,
            login_grace_time: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            max_sessions_per_connection: 10,
            max_unauthenticated: 64,
            allow_ssh_rsa_sha1: false,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            allow_insecure: false,
        }
    }
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            binary: "git".into(),
            nice: 15,
        }
    }
}

impl Settings {
    /// Reads `path` (`DATA/slipway.yaml`); a missing file means all defaults. Relative
    /// paths in it become paths in the directory that holds it, the data directory.
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        use anyhow::Context;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut settings: Settings = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not valid; fix it and start again", path.display()))?;
        if let (Some(tls), Some(dir)) = (settings.http.tls.as_mut(), path.parent()) {
            tls.cert = dir.join(&tls.cert);
            tls.key = dir.join(&tls.key);
        }
        if !(0..=19).contains(&settings.builds.nice) {
            anyhow::bail!(
                "{}: builds.nice must be between 0 (no change) and 19 (lowest priority), not {}",
                path.display(),
                settings.builds.nice
            );
        }
        let agent_timeout = settings.deploy.agent_timeout.as_secs();
        if !(2..=3600).contains(&agent_timeout) {
            anyhow::bail!(
                "{}: deploy.agent_timeout must be between 2s and 1h, not {}",
                path.display(),
                humantime::format_duration(settings.deploy.agent_timeout)
            );
        }
        let alarm_interval = settings.deploy.alarm_interval.as_secs();
        if !(1..=600).contains(&alarm_interval) {
            anyhow::bail!(
                "{}: deploy.alarm_interval must be between 1s and 10m, not {}",
                path.display(),
                humantime::format_duration(settings.deploy.alarm_interval)
            );
        }
        if let Some(token) = &settings.deploy.alertmanager_token {
            if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                anyhow::bail!(
                    "{}: deploy.alertmanager_token must be at least 16 printable characters without spaces (e.g. the output of `openssl rand -hex 24`)",
                    path.display()
                );
            }
        }
        if settings.builds.parallel == 0 || settings.builds.parallel > 64 {
            anyhow::bail!(
                "{}: builds.parallel must be between 1 and 64, not {}",
                path.display(),
                settings.builds.parallel
            );
        }
        if settings.notify.max_attempts == 0 {
            anyhow::bail!("{}: notify.max_attempts must be at least 1", path.display());
        }
        if !slipway_actors::config::rules::valid_email(&settings.notify.from) {
            anyhow::bail!(
                "{}: notify.from `{}` is not an email address",
                path.display(),
                settings.notify.from
            );
        }
        if !(0..=19).contains(&settings.git.nice) {
            anyhow::bail!(
                "{}: git.nice must be between 0 (no change) and 19 (lowest priority), not {}",
                path.display(),
                settings.git.nice
            );
        }
        if settings.ssh.max_sessions_per_connection == 0 || settings.ssh.max_unauthenticated == 0 {
            anyhow::bail!(
                "{}: ssh.max_sessions_per_connection and ssh.max_unauthenticated must be at least 1",
                path.display()
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_settings_parse() {
        let text = include_str!("../etc/slipway.yaml");
        let s: Settings = serde_yaml::from_str(text).expect("etc/slipway.yaml parses");
        assert_eq!(s.ssh.login_grace_time, Duration::from_secs(60));
        assert!(s.http.tls.is_none() && !s.http.allow_insecure);
    }

    #[test]
    fn bad_duration_says_what_to_write() {
        let err = serde_yaml::from_str::<Settings>("ssh: { idle_timeout: soon }").unwrap_err();
        assert!(err.to_string().contains("write e.g."), "{err}");
    }

    #[test]
    fn tls_paths_are_relative_to_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.yaml");
        std::fs::write(
            &path,
            "http:\n  tls: { cert: tls/cert.pem, key: /etc/slipway/key.pem }\n",
        )
        .unwrap();
        let tls = Settings::load(&path).unwrap().http.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("tls/cert.pem"));
        assert_eq!(tls.key, Path::new("/etc/slipway/key.pem"));
        std::fs::write(&path, "http:\n  tls: { cert: cert.pem }\n").unwrap();
        let err = format!("{:#}", Settings::load(&path).unwrap_err());
        assert!(err.contains("missing field `key`"), "{err}");
    }

    #[test]
    fn plain_http_beyond_loopback_needs_tls_or_permission() {
        let http = |yaml: &str| serde_yaml::from_str::<Settings>(yaml).unwrap().http;
        assert!(HttpSettings::default().check_exposure().is_ok());
        assert!(http("http: { listen: \"[::1]:8080\" }")
            .check_exposure()
            .is_ok());
        let err = http("http: { listen: 0.0.0.0:8080 }")
            .check_exposure()
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.0.0.0:8080"), "{err}");
        assert!(err.contains("tls: { cert:"), "{err}");
        assert!(err.contains("allow_insecure: true"), "{err}");
        assert!(
            http("http: { listen: 10.0.0.1:8080, allow_insecure: true }")
                .check_exposure()
                .is_ok()
        );
        assert!(
            http("http: { listen: 0.0.0.0:8443, tls: { cert: c.pem, key: k.pem } }")
                .check_exposure()
                .is_ok()
        );
    }

    #[test]
    fn git_niceness_defaults_to_15_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.yaml");
        std::fs::write(&path, "git: { binary: git }\n").unwrap();
        assert_eq!(Settings::load(&path).unwrap().git.nice, 15);
        std::fs::write(&path, "git: { nice: 25 }\n").unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains("git.nice must be between 0"), "{err}");
    }
}
