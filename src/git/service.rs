//! Building the `git` child processes that serve the transport.

use std::path::Path;
use std::process::Stdio;

/// The git services slipway serves over SSH, named exactly as the client asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `git-upload-pack`: clone and fetch.
    UploadPack,
    /// `git-receive-pack`: push.
    ReceivePack,
    /// `git-upload-archive`: `git archive --remote`.
    UploadArchive,
}

impl Service {
    /// Parses the exec verb (`git-upload-pack`, …).
    pub fn from_verb(verb: &str) -> Option<Service> {
        match verb {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            "git-upload-archive" => Some(Service::UploadArchive),
            _ => None,
        }
    }

    /// The program name, as clients send it.
    pub fn verb(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
            Service::UploadArchive => "git-upload-archive",
        }
    }

    /// The `git` subcommand.
    fn subcommand(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
            Service::UploadArchive => "upload-archive",
        }
    }

    /// Whether the service only reads.
    pub fn is_read(self) -> bool {
        !matches!(self, Service::ReceivePack)
    }
}

/// Whether a `GIT_PROTOCOL` value is one git itself would send (`version=2`,
/// `version=2:object-format=sha1`, …): nothing else is passed on.
pub fn valid_git_protocol(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b':' | b'.' | b'-' | b'_'))
}

/// The child process for `service` on the repository at `repo`.
///
/// The environment is cleared and rebuilt from an allow-list: `PATH`, `HOME` (the data
/// directory), `GIT_PROTOCOL` when valid, and `extra` (the hook socket and push token).
/// With `nice` above 0, git (and the hooks it runs) get that much lower CPU priority, so
/// that pack work cannot starve the server's own control plane (events, mail, SSH
/// handshakes) on a busy machine.
#[allow(clippy::too_many_arguments)]
pub fn git_command(
    git: &str,
    nice: i32,
    service: Service,
    repo: &Path,
    home: &Path,
    hooks_dir: &Path,
    git_protocol: Option<&str>,
    extra: &[(&str, String)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(git);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(p) = git_protocol.filter(|p| valid_git_protocol(p)) {
        cmd.env("GIT_PROTOCOL", p);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut hooks = std::ffi::OsString::from("core.hooksPath=");
    hooks.push(hooks_dir);
    cmd.arg("-c").arg(hooks);
    match service {
        Service::ReceivePack => {
            cmd.args([
                "-c",
                "receive.advertisePushOptions=true",
                "-c",
                "receive.advertiseAtomic=true",
                "-c",
                "receive.fsckObjects=false",
            ]);
        }
        Service::UploadPack => {
            cmd.args([
                "-c",
                "uploadpack.allowFilter=true",
                "-c",
                "uploadpack.allowAnySHA1InWant=false",
            ]);
        }
        Service::UploadArchive => {}
    }
    cmd.arg(service.subcommand())
        .arg(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    slipway_actors::build::shell::lower_priority(&mut cmd, nice);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_protocol_values_pass() {
        assert!(valid_git_protocol("version=2"));
        assert!(valid_git_protocol("version=2:object-format=sha256"));
        assert!(!valid_git_protocol("version=2; rm -rf /"));
        assert!(!valid_git_protocol(""));
        assert!(!valid_git_protocol("a\nb"));
    }

    #[test]
    fn verbs_round_trip() {
        for s in [
            Service::UploadPack,
            Service::ReceivePack,
            Service::UploadArchive,
        ] {
            assert_eq!(Service::from_verb(s.verb()), Some(s));
        }
        assert_eq!(Service::from_verb("git-shell"), None);
    }
}
