//! The `slipway-agent` command: flags, logging and the runtime; the work is in the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use slipway_agent::executor::Executor;
use slipway_agent::local::{self, LocalRequest};
use slipway_agent::paths::HostRoot;
use slipway_agent::script::ScriptOptions;
use slipway_agent::state::StateDir;

/// The slipway deploy agent: runs appspec.yml lifecycle events on this host.
#[derive(Debug, Parser)]
#[command(name = "slipway-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a bundle directory through the in-place lifecycle on this host (ApplicationStop,
    /// DownloadBundle, BeforeInstall, Install, AfterInstall, ApplicationStart,
    /// ValidateService), to troubleshoot an appspec and its scripts without a server.
    Local(LocalArgs),
}

#[derive(Debug, clap::Args)]
struct LocalArgs {
    /// The revision: a directory with appspec.yml (or appspec.yaml) at its root.
    #[arg(long, value_name = "DIR")]
    bundle: PathBuf,
    /// Put every absolute destination under DIR instead of / (for tests, or several
    /// agents on one machine).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// The agent's state directory (archives, cleanup lists, last successful revisions,
    /// logs) [default: /var/lib/slipway-agent as root, else ~/.local/state/slipway-agent].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The deployment group: ApplicationStop runs its last successful revision's script,
    /// and Install removes what its previous deployment installed.
    #[arg(long, value_name = "NAME", default_value = "default")]
    group: String,
    /// The application name scripts see in APPLICATION_NAME.
    #[arg(long, value_name = "NAME", default_value = "local")]
    application: String,
    /// The commit scripts see in BUNDLE_COMMIT.
    #[arg(long, value_name = "SHA", default_value = "")]
    commit: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when it ran and failed (already reported).
fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Local(args) => run_local(args),
    }
}

fn run_local(args: LocalArgs) -> anyhow::Result<bool> {
    let root = HostRoot::new(&args.root)?;
    let state_dir = match args.state {
        Some(dir) => dir,
        None => local::default_state_dir()
            .context("cannot tell where the state directory goes (no HOME); pass --state DIR")?,
    };
    let state = StateDir::open(&state_dir)?;
    let executor = Executor::new(root, state, ScriptOptions::default());
    let request = LocalRequest {
        bundle: args.bundle.clone(),
        group: args.group,
        application: args.application,
        commit: args.commit,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut out = std::io::stdout().lock();
    let run = runtime
        .block_on(local::run_local(&executor, &request, &mut out))
        .with_context(|| format!("cannot deploy the bundle {}", args.bundle.display()))?;
    Ok(run.succeeded())
}
