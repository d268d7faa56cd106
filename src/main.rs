//! The `slipway` binary: flags, logging, and the runtime. Everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use slipway::cli;
use slipway::datadir::DataDir;
use slipway::settings::Settings;

#[derive(Parser)]
#[command(
    name = "slipway",
    version,
    about = "A self-hosted, git-native CI/CD server"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory with NAME (the owner of KEY) as administrator.
    Init {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The administrator's SSH public key file, e.g. ~/.ssh/id_ed25519.pub.
        #[arg(long)]
        admin_key: PathBuf,
        /// The administrator's user name.
        #[arg(long, default_value = "admin")]
        admin_name: String,
    },
    /// Serve SSH (git and commands) and HTTP (metrics, health).
    Serve {
        /// The data directory (default with --dev: ./.slipway).
        #[arg(long, required_unless_present = "dev")]
        data: Option<PathBuf>,
        /// Override ssh.listen from slipway.yaml.
        #[arg(long)]
        ssh_listen: Option<SocketAddr>,
        /// Override http.listen from slipway.yaml.
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// Development mode: create the data directory on first run, with your own SSH
        /// key (or a generated one) as administrator, and print how to start.
        #[arg(long)]
        dev: bool,
    },
    /// Run ./buildspec.yml here, as the server would (like CodeBuild's local agent).
    Build {
        /// Run locally (the only mode today; server builds start with `ssh … build start`).
        #[arg(long)]
        local: bool,
        /// The source directory.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The buildspec, relative to PATH.
        #[arg(long, default_value = "buildspec.yml")]
        buildspec: String,
        /// NAME=VALUE set for every command (repeatable); also gives parameter-store values.
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// The build's time limit.
        #[arg(long, default_value = "60m", value_parser = parse_timeout)]
        timeout: std::time::Duration,
    },
    /// Validate slipway.yaml and the admin configuration.
    Check {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Run as a git hook (git does this; you do not).
    #[command(hide = true)]
    Hook {
        /// pre-receive or post-receive.
        phase: String,
    },
}

fn main() -> ExitCode {
    // Installed as DATA/hooks/pre-receive and post-receive, this binary is the hook.
    let arg0 = std::env::args().next().unwrap_or_default();
    match std::path::Path::new(&arg0)
        .file_name()
        .and_then(|n| n.to_str())
    {
        Some("pre-receive") => return hook(slipway_hook::wire::Phase::PreReceive),
        Some("post-receive") => return hook(slipway_hook::wire::Phase::PostReceive),
        _ => {}
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,russh=warn,actix_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("slipway: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn hook(phase: slipway_hook::wire::Phase) -> ExitCode {
    ExitCode::from(slipway_hook::client::run(phase) as u8)
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Init {
            data,
            admin_key,
            admin_name,
        } => {
            let data = DataDir::new(&data)?;
            let report = cli::init::init(&data, &admin_key, &admin_name)?;
            for line in report.lines {
                println!("{line}");
            }
            println!(
                "\nStart the server with: slipway serve --data {}",
                data.root().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { data } => {
            let data = DataDir::new(&data)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (lines, ok) = rt.block_on(cli::check::check(&data));
            for line in lines {
                println!("{line}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Build {
            local,
            path,
            buildspec,
            env,
            timeout,
        } => {
            if !local {
                anyhow::bail!("`slipway build` runs builds locally: add --local (server builds start with `ssh … build start REPO`)");
            }
            // One thread: a command's end wakes one thread, which reads the marker and
            // starts the next command without handing over between workers.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let ok = rt.block_on(cli::build_local::build_local(
                cli::build_local::LocalBuild {
                    path,
                    buildspec,
                    env,
                    timeout,
                },
            ))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Hook { phase } => match phase.as_str() {
            "pre-receive" => Ok(hook(slipway_hook::wire::Phase::PreReceive)),
            "post-receive" => Ok(hook(slipway_hook::wire::Phase::PostReceive)),
            _ => anyhow::bail!("unknown hook `{phase}`: use pre-receive or post-receive"),
        },
        Command::Serve {
            data,
            ssh_listen,
            http_listen,
            dev,
        } => {
            let data = DataDir::new(&data.unwrap_or_else(|| PathBuf::from(".slipway")))?;
            let dev_key = if dev { cli::dev::prepare(&data)? } else { None };
            let mut settings = Settings::load(&data.settings())?;
            if let Some(a) = ssh_listen {
                settings.ssh.listen = a;
            }
            if let Some(a) = http_listen {
                settings.http.listen = a;
            }
            let private = dev_key.and_then(|k| k.generated_private).or_else(|| {
                let generated = data.dev_admin_key();
                (dev && generated.exists()).then_some(generated)
            });
            let system = actix_web::rt::System::with_tokio_rt(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("the tokio runtime can be built")
            });
            system
                .block_on(slipway::serve::run(
                    data.clone(),
                    settings,
                    shutdown_signal(),
                    |bound| {
                        // Tests and scripts read this line to learn the ports.
                        println!("slipway: listening ssh={} http={}", bound.ssh, bound.http);
                        if dev {
                            println!("{}", cli::dev::quick_start(&data, bound, private.as_ref()));
                        }
                    },
                ))
                .context("slipway serve failed")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` must be NAME=VALUE"))?;
    slipway_actors::build::spec::check_var_name(k)?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    slipway_actors::config::parse_duration(s)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
