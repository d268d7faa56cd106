//! The hook's side: read git's input, classify, ask the server, relay its answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use crate::wire::{
    is_null_id, HookRequest, HookResponse, Phase, Quarantine, RefUpdate, UpdateKind, MAX_LINE,
    MAX_UPDATES, VERSION,
};

/// How long the hook waits for the server's verdict.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one hook invocation and returns the process exit code.
pub fn run(phase: Phase) -> i32 {
    match try_run(phase) {
        Ok(response) => {
            let mut err = std::io::stderr().lock();
            for line in &response.messages {
                let _ = writeln!(err, "{line}");
            }
            if response.accept {
                0
            } else {
                1
            }
        }
        Err(msg) => {
            eprintln!("slipway: {msg}");
            match phase {
                // Fail closed: without the server's decision nothing may change.
                Phase::PreReceive => {
                    eprintln!("slipway: push refused because it could not be checked; try again, and tell the administrator if it persists");
                    1
                }
                // The refs are already updated; git ignores our exit code here anyway.
                Phase::PostReceive => 0,
            }
        }
    }
}

fn try_run(phase: Phase) -> Result<HookResponse, String> {
    let socket = std::env::var("SLIPWAY_HOOK_SOCKET").map_err(|_| {
        "SLIPWAY_HOOK_SOCKET is not set; this hook only runs under slipway".to_string()
    })?;
    let token = std::env::var("SLIPWAY_PUSH_TOKEN").map_err(|_| {
        "SLIPWAY_PUSH_TOKEN is not set; this hook only runs under slipway".to_string()
    })?;
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_LINE as u64)
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read the hook input: {e}"))?;
    let updates = parse_input(&input)?
        .into_iter()
        .map(|(old, new, refname)| {
            let kind = classify(&old, &new);
            RefUpdate {
                old,
                new,
                refname,
                kind,
            }
        })
        .collect();
    let request = HookRequest {
        version: VERSION,
        token,
        phase,
        updates,
        push_options: push_options(),
        quarantine: Quarantine {
            object_directory: std::env::var("GIT_OBJECT_DIRECTORY").ok(),
            alternate_object_directories: std::env::var("GIT_ALTERNATE_OBJECT_DIRECTORIES").ok(),
            quarantine_path: std::env::var("GIT_QUARANTINE_PATH").ok(),
        },
    };
    exchange(&socket, &request)
}

/// Parses git's `old new ref` lines.
pub fn parse_input(input: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(old), Some(new), Some(refname), None) => {
                out.push((old.to_string(), new.to_string(), refname.to_string()))
            }
            _ => return Err(format!("hook input line {} is not `old new ref`", n + 1)),
        }
        if out.len() > MAX_UPDATES {
            return Err(format!("more than {MAX_UPDATES} ref updates in one push"));
        }
    }
    Ok(out)
}

fn classify(old: &str, new: &str) -> UpdateKind {
    if is_null_id(old) {
        return UpdateKind::Create;
    }
    if is_null_id(new) {
        return UpdateKind::Delete;
    }
    // git runs hooks with the pushed objects reachable (quarantine env is inherited).
    let status = Command::new("git")
        .args(["merge-base", "--is-ancestor", old, new])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => UpdateKind::FastForward,
        // Not an ancestor, or the old commit is missing: treat as a rewrite, the stricter case.
        _ => UpdateKind::Force,
    }
}

fn push_options() -> Vec<String> {
    let count: usize = std::env::var("GIT_PUSH_OPTION_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (0..count.min(100))
        .filter_map(|i| std::env::var(format!("GIT_PUSH_OPTION_{i}")).ok())
        .collect()
}

fn exchange(socket: &str, request: &HookRequest) -> Result<HookResponse, String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the slipway server at {socket}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("cannot set socket timeouts: {e}"))?;
    let mut line =
        serde_json::to_vec(request).map_err(|e| format!("cannot encode request: {e}"))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| format!("cannot send to the slipway server: {e}"))?;
    let mut reader = BufReader::new(stream.take(MAX_LINE as u64));
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| format!("no answer from the slipway server: {e}"))?;
    serde_json::from_str(&answer)
        .map_err(|e| format!("unreadable answer from the slipway server: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_hook_input() {
        let zero = "0".repeat(40);
        let a = "a".repeat(40);
        let input = format!("{zero} {a} refs/heads/main\n{a} {zero} refs/tags/v1\n");
        let parsed = parse_input(&input).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].2, "refs/heads/main");
        assert_eq!(classify(&zero, &a), UpdateKind::Create);
        assert_eq!(classify(&a, &zero), UpdateKind::Delete);
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(parse_input("only two\n").is_err());
        assert!(parse_input("a b c d\n").is_err());
    }
}
