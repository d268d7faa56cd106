//! Parsing the exec line a client sends. No shell ever sees it.

use crate::git::{RepoName, Service};

/// The longest exec line accepted.
const MAX_COMMAND: usize = 4096;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecCommand {
    /// A git transport service on a repository.
    Git {
        /// Which service.
        service: Service,
        /// The repository.
        repo: RepoName,
    },
    /// An admin command, split into words.
    Admin(Vec<String>),
}

/// Parses an exec line; the error is shown to the client as is.
pub fn parse_exec(raw: &[u8]) -> Result<ExecCommand, String> {
    if raw.len() > MAX_COMMAND {
        return Err(format!("command is longer than {MAX_COMMAND} bytes"));
    }
    let line = std::str::from_utf8(raw).map_err(|_| "command is not valid UTF-8".to_string())?;
    if line
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != ' ')
    {
        return Err("command contains control characters".into());
    }
    let words = shell_words::split(line).map_err(|_| {
        "malformed command: unbalanced quotes; quote arguments like 'this'".to_string()
    })?;
    let Some(first) = words.first() else {
        return Err("empty command; try `help`".into());
    };
    if let Some(service) = Service::from_verb(first) {
        let [_, path] = words.as_slice() else {
            return Err(format!("usage: {} '<repository>.git'", service.verb()));
        };
        let repo = RepoName::from_client_path(path).map_err(|e| e.to_string())?;
        return Ok(ExecCommand::Git { service, repo });
    }
    if first == "git-upload-pack" || first.starts_with("git-") || first == "git" {
        return Err(format!(
            "`{}` is not a git service slipway serves; it serves git-upload-pack, git-receive-pack and git-upload-archive",
            first.chars().take(40).collect::<String>()
        ));
    }
    Ok(ExecCommand::Admin(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_commands_in_every_client_form() {
        for line in [
            "git-upload-pack 'app.git'",
            "git-upload-pack '/app.git'",
            "git-upload-pack app",
            "git-upload-pack '~/app.git'",
        ] {
            assert_eq!(
                parse_exec(line.as_bytes()).unwrap(),
                ExecCommand::Git {
                    service: Service::UploadPack,
                    repo: RepoName::parse("app").unwrap()
                },
                "{line}"
            );
        }
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert!(parse_exec(b"git-upload-pack '../etc'")
            .unwrap_err()
            .contains("invalid"));
        assert!(parse_exec(b"git-receive-pack 'a' 'b'")
            .unwrap_err()
            .contains("usage"));
        assert!(parse_exec(b"git-upload-pack 'unterminated")
            .unwrap_err()
            .contains("unbalanced"));
        assert!(parse_exec(b"").unwrap_err().contains("empty"));
        assert!(parse_exec(b"\xff\xfe").unwrap_err().contains("UTF-8"));
        assert!(parse_exec(b"repo list\n; rm -rf /")
            .unwrap_err()
            .contains("control"));
        assert!(parse_exec(b"git-shell -c x")
            .unwrap_err()
            .contains("not a git service"));
        assert!(parse_exec(&vec![b'a'; 5000])
            .unwrap_err()
            .contains("longer"));
    }

    #[test]
    fn admin_commands_split_like_a_shell_without_one() {
        assert_eq!(
            parse_exec(b"policy simulate alice git:push 'repo:a b'").unwrap(),
            ExecCommand::Admin(vec![
                "policy".into(),
                "simulate".into(),
                "alice".into(),
                "git:push".into(),
                "repo:a b".into()
            ])
        );
        // `$(…)` and `;` are plain characters here: nothing is evaluated.
        assert_eq!(
            parse_exec(b"repo info '$(reboot);x'").unwrap(),
            ExecCommand::Admin(vec!["repo".into(), "info".into(), "$(reboot);x".into()])
        );
    }
}
