//! The `slipway-agent` command: flags, logging and the runtime; the work is in the
//! library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use slipway_agent::commands;
use slipway_agent::executor::Executor;
use slipway_agent::local::{self, LocalRequest};
use slipway_agent::paths::HostRoot;
use slipway_agent::script::ScriptOptions;
use slipway_agent::server;
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
    /// Registers this host with a slipway server using a one-time token from
    /// `ssh … agent token create`; keeps the credential in the state directory.
    Register(RegisterArgs),
    /// Connects to the server and carries out its lifecycle commands one at a time
    /// (long-polling) until stopped (SIGTERM or Ctrl-C).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// The agent's state directory (registration, archives, logs)
    /// [default: /var/lib/slipway-agent as root, else ~/.local/state/slipway-agent].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Allow plain http:// to a server that is not on loopback (the credential then
    /// crosses the network unencrypted).
    #[arg(long)]
    allow_insecure_http: bool,
    /// An extra CA certificate (PEM) to trust for the server's https:// certificate
    /// (given to `register`, it is remembered for `run`).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RegisterArgs {
    /// The server's HTTP address, e.g. https://ci.example.com:8443.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The one-time registration token.
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// This agent's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    common: ServerArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Put every absolute destination under DIR instead of / (for tests, or several
    /// agents on one machine).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    #[command(flatten)]
    common: ServerArgs,
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
        Command::Register(args) => register(args),
        Command::Run(args) => run_agent(args),
    }
}

fn state_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match arg {
        Some(dir) => Ok(dir),
        None => local::default_state_dir()
            .context("cannot tell where the state directory goes (no HOME); pass --state DIR"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn client(base: &str, ca: Option<&Path>) -> anyhow::Result<server::Client> {
    let ca = match ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    Ok(server::Client::new(base, ca.as_deref())?)
}

fn register(args: RegisterArgs) -> anyhow::Result<bool> {
    let state = state_dir(args.common.state.clone())?;
    let base = server::check_url(&args.server, args.common.allow_insecure_http)?;
    let name = match args.name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .context("cannot read the host name; pass --name NAME")?,
    };
    let client = client(&base, args.common.ca.as_deref())?;
    let mut registration = runtime()?.block_on(client.register(args.token.trim(), &name))?;
    // `run` uses the same CA and the same permission without being told again.
    registration.ca = match &args.common.ca {
        Some(ca) => Some(
            std::fs::canonicalize(ca)
                .with_context(|| format!("cannot resolve {}", ca.display()))?,
        ),
        None => None,
    };
    registration.allow_insecure_http = args.common.allow_insecure_http;
    registration.save(&state)?;
    let tags: Vec<String> = registration
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "registered as {} with tags [{}]; start it with: slipway-agent run --state {}",
        registration.name,
        tags.join(", "),
        state.display()
    );
    Ok(true)
}

fn run_agent(args: RunArgs) -> anyhow::Result<bool> {
    let state = state_dir(args.common.state.clone())?;
    let registration = server::Registration::load(&state)?;
    let base = server::check_url(
        &registration.server,
        args.common.allow_insecure_http || registration.allow_insecure_http,
    )?;
    let ca = args.common.ca.as_deref().or(registration.ca.as_deref());
    let client = client(&base, ca)?;
    let root = HostRoot::new(&args.root)?;
    let executor = Executor::new(root, StateDir::open(&state)?, ScriptOptions::default());
    let rt = runtime()?;
    rt.block_on(async {
        let stop = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        eprintln!(
            "slipway-agent {} polling {} as {}",
            env!("CARGO_PKG_VERSION"),
            base,
            registration.name
        );
        commands::run(&client, &registration, &executor, stop).await
    })?;
    Ok(true)
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
