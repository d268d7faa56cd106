//! Admin commands over SSH: `ssh -p PORT git@HOST COMMAND …`.
//!
//! One file per command family; this file holds the grammar (clap) and the dispatch.
//! Every command has `--help`; list-style output has `--json`. Commands write to the
//! SSH channel's stdout and stderr and return an exit status.

mod agent;
mod audit;
mod branch;
mod build;
mod deploy;
mod events;
mod param;
mod pipeline;
mod policy;
mod repo;
mod whoami;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::ssh::Identity;
use crate::state::ServerState;

/// What a command may use.
pub struct CommandContext<'a> {
    /// The server.
    pub state: &'a Arc<ServerState>,
    /// The caller.
    pub identity: &'a Identity,
    /// The caller's address.
    pub peer: Option<SocketAddr>,
    /// The caller's stdin, and whether they are still there.
    pub input: Input,
}

/// A command's standard input, fed by the SSH channel.
pub struct Input {
    chunks: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    closed: tokio_util::sync::CancellationToken,
}

impl Input {
    /// The sending side (for the channel reader) and the input.
    pub fn channel() -> (tokio::sync::mpsc::Sender<Vec<u8>>, Input) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (
            tx,
            Input {
                chunks: tokio::sync::Mutex::new(rx),
                closed: tokio_util::sync::CancellationToken::new(),
            },
        )
    }

    /// An input with nothing in it (commands run outside SSH, tests).
    pub fn empty() -> Input {
        Input::channel().1
    }

    /// Cancelled when the client has gone away.
    pub fn closed_token(&self) -> tokio_util::sync::CancellationToken {
        self.closed.clone()
    }

    /// Reads stdin to its end; more than `limit` bytes is an error.
    pub async fn read_all(&self, limit: usize) -> Result<Vec<u8>, CommandError> {
        let mut chunks = self.chunks.lock().await;
        let mut all = Vec::new();
        loop {
            tokio::select! {
                chunk = chunks.recv() => match chunk {
                    Some(c) => {
                        all.extend_from_slice(&c);
                        if all.len() > limit {
                            return Err(CommandError::new(format!("input is larger than {limit} bytes")));
                        }
                    }
                    None => return Ok(all),
                },
                _ = self.closed.cancelled() => return Ok(all),
            }
        }
    }
}

/// A writer for a command's stdout or stderr.
pub type Out<'a> = &'a mut (dyn AsyncWrite + Unpin + Send);

/// The outcome of a command: text for stdout, or a user-facing error.
pub type CommandResult = Result<String, CommandError>;

/// A command failure shown to the caller.
#[derive(Debug)]
pub struct CommandError {
    /// The message (no trailing newline).
    pub message: String,
    /// The exit status.
    pub code: u32,
}

impl CommandError {
    /// A failure with exit status 1.
    pub fn new(message: impl Into<String>) -> CommandError {
        CommandError {
            message: message.into(),
            code: 1,
        }
    }

    /// An internal failure: logged in full, shown with a reference.
    pub fn internal(what: &str, error: impl std::fmt::Display) -> CommandError {
        let reference = format!("{:08x}", rand::random::<u32>());
        tracing::error!(%reference, %error, "{what}");
        CommandError::new(format!(
            "internal error while {what} (ref {reference}); the server log has details"
        ))
    }
}

#[derive(Parser)]
#[command(
    name = "ssh git@HOST",
    about = "slipway: a self-hosted, git-native CI/CD server",
    disable_version_flag = true,
    help_template = "{about}\n\nUsage: {usage}\n\n{all-args}"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show who you are authenticated as.
    Whoami(whoami::Args),
    /// Create, list, inspect and delete repositories.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Explain access decisions.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Read the audit log (administrators).
    Audit(audit::Args),
    /// Show the event log; --follow streams new events live.
    Events(events::Args),
    /// Builds of buildspec.yml.
    #[command(subcommand)]
    Build(build::BuildCommand),
    /// Branch housekeeping.
    #[command(subcommand)]
    Branch(branch::BranchCommand),
    /// The parameter store (values for builds and webhook secrets).
    #[command(subcommand)]
    Param(param::ParamCommand),
    /// Deployments of a build's artifact to a deployment group's agents.
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
    /// Deploy agents: registration tokens, the registered agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Pipelines of pipeline.yml: status, approvals, stop, retry, rollback.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
}

/// A short, bounded label for metrics: the command word, or `unknown`.
pub fn metric_name(argv: &[String]) -> &'static str {
    match argv.first().map(String::as_str) {
        Some("help") | Some("--help") | Some("-h") => "help",
        Some("whoami") => "whoami",
        Some("repo") => "repo",
        Some("policy") => "policy",
        Some("audit") => "audit",
        Some("events") => "events",
        Some("branch") => "branch",
        Some("build") => "build",
        Some("param") => "param",
        Some("pipeline") => "pipeline",
        Some("agent") => "agent",
        Some("deploy") => "deploy",
        _ => "unknown",
    }
}

/// Runs `argv` and returns the exit status.
pub async fn run(ctx: &CommandContext<'_>, argv: Vec<String>, out: Out<'_>, err: Out<'_>) -> u32 {
    // `help` is the documented entry point; clap spells it `--help` at the top level.
    let argv: Vec<String> = if argv.first().map(String::as_str) == Some("help") && argv.len() == 1 {
        vec!["--help".into()]
    } else {
        argv
    };
    let cli = match Cli::try_parse_from(std::iter::once("ssh git@HOST".to_string()).chain(argv)) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = out.write_all(text.as_bytes()).await;
                    if e.kind() == clap::error::ErrorKind::DisplayHelp {
                        0
                    } else {
                        2
                    }
                }
                _ => {
                    let _ = err.write_all(text.as_bytes()).await;
                    2
                }
            };
        }
    };
    let result = match cli.command {
        Command::Whoami(args) => whoami::run(ctx, args).await,
        Command::Repo(cmd) => repo::run(ctx, cmd).await,
        Command::Policy(cmd) => policy::run(ctx, cmd).await,
        Command::Audit(args) => audit::run(ctx, args).await,
        Command::Events(args) => events::run(ctx, args, out).await.map(|()| String::new()),
        Command::Branch(cmd) => branch::run(ctx, cmd).await,
        Command::Build(cmd) => build::run(ctx, cmd, out).await,
        Command::Param(cmd) => param::run(ctx, cmd).await,
        Command::Pipeline(cmd) => pipeline::run(ctx, cmd, out).await,
        Command::Agent(cmd) => agent::run(ctx, cmd).await,
        Command::Deploy(cmd) => deploy::run(ctx, cmd, out).await,
    };
    match result {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes()).await;
            0
        }
        Err(e) => {
            let _ = err
                .write_all(format!("slipway: {}\n", e.message).as_bytes())
                .await;
            e.code
        }
    }
}

/// Renders `value` as pretty JSON followed by a newline.
pub fn json<T: serde::Serialize>(value: &T) -> CommandResult {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CommandError::internal("encoding JSON", e))
}
