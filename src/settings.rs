//! `slipway.yaml`: server settings. Defaults, then the file, then command-line flags.

use std::net::SocketAddr;
use std::path::Path;
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
    /// The HTTP listener (metrics, health).
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
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        use anyhow::Context;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let settings: Settings = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not valid; fix it and start again", path.display()))?;
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
    }

    #[test]
    fn bad_duration_says_what_to_write() {
        let err = serde_yaml::from_str::<Settings>("ssh: { idle_timeout: soon }").unwrap_err();
        assert!(err.to_string().contains("write e.g."), "{err}");
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
