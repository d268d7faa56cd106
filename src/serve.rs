//! `slipway serve`: wiring the listeners together, and the shutdown order.
//!
//! Order on shutdown: stop accepting SSH; let running sessions finish (their hooks still
//! need the hook socket, so it stays up meanwhile) under a deadline; then stop the hook
//! socket and HTTP. sqlite closes when the last handle drops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slipway_actors::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adminconfig::AdminState;
use crate::datadir::DataDir;
use crate::git::RepoStore;
use crate::hookrpc::PushRegistry;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::state::ServerState;

/// Where the server listens, after binding (port 0 resolved).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BoundAddresses {
    /// The SSH listener.
    pub ssh: SocketAddr,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// Its base URL (`https://` when `http.tls` is set), as agents are given it.
    pub http_url: String,
    /// The server's process id.
    pub pid: u32,
}

/// Serves until `shutdown` completes. `on_bound` is called once the listeners are up.
pub async fn run(
    data: DataDir,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(&BoundAddresses),
) -> anyhow::Result<()> {
    if !data.database().exists() || !data.host_key().exists() {
        anyhow::bail!(
            "{} is not a slipway data directory; create it with `slipway init --data {} --admin-key KEY.pub`",
            data.root().display(),
            data.root().display()
        );
    }
    // Settings that cannot work stop the start before anything listens.
    let settings_file = data.settings();
    settings
        .http
        .check_exposure()
        .map_err(|e| anyhow::anyhow!("{}: {e}", settings_file.display()))?;
    let tls = match &settings.http.tls {
        Some(tls) => {
            let config = crate::http::tls::server_config(tls)
                .map_err(|e| anyhow::anyhow!("{}: http.tls: {e}", settings_file.display()))?;
            crate::http::tls::warn_if_key_is_exposed(tls);
            Some(config)
        }
        None => None,
    };
    // One server per data directory: a second one would steal the hook socket.
    std::fs::create_dir_all(data.run())?;
    let lock_path = data.run().join("serve.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another slipway server is already serving {}; stop it first (its addresses are in {})",
            data.root().display(),
            data.addresses().display()
        );
    }
    secure_permissions(&data)?;
    if slipway_actors::build::builder::running_as_root() {
        if let Err(blocked) =
            slipway_actors::build::builder::reachable_by_others(&data.builds().join("x"))
        {
            tracing::warn!(
                blocked = %blocked.display(),
                "builds run as user nobody, which cannot pass through this directory: server builds will fail until it has o+x or the data directory moves"
            );
        }
    }
    let host_key = crate::ssh::load_host_key(&data.host_key())?;
    let store = Store::open(&data.database())?;
    let repos = RepoStore::new(data.repos());
    let admin_path = data.repos().join("admin.git");
    let admin = crate::adminconfig::load_current(&settings.git.binary, &admin_path)
        .await
        .context("the admin configuration is invalid; fix it with `slipway check` and a push to admin (or repair the admin repository on disk)")?;
    install_hooks(&data)?;
    let master = slipway_actors::secrets::MasterKey::load_or_create(&data.master_key())?;
    let metrics = Metrics::new();
    let mailer = slipway_actors::notify::Mailer::new(settings.smtp.as_ref(), data.mail())
        .map_err(|e| anyhow::anyhow!("{}: {e}", data.settings().display()))?;

    // Hook socket.
    std::fs::create_dir_all(data.run())?;
    set_mode(&data.run(), 0o700)?;
    let sock = data.hook_socket();
    let _ = std::fs::remove_file(&sock);
    let hook_listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("cannot listen on {}", sock.display()))?;
    set_mode(&sock, 0o600)?;

    let ssh_listener = tokio::net::TcpListener::bind(settings.ssh.listen)
        .await
        .with_context(|| format!("cannot listen for SSH on {}", settings.ssh.listen))?;
    let http_listener = std::net::TcpListener::bind(settings.http.listen)
        .with_context(|| format!("cannot listen for HTTP on {}", settings.http.listen))?;
    http_listener.set_nonblocking(true)?;
    let http_addr = http_listener.local_addr()?;
    let bound = BoundAddresses {
        ssh: ssh_listener.local_addr()?,
        http: http_addr,
        http_url: format!("{}://{http_addr}", settings.http.scheme()),
        pid: std::process::id(),
    };
    // Commands and mail print clone URLs and commands with the real port.
    let mut settings = settings;
    settings.ssh.listen = bound.ssh;
    let runtime = slipway_actors::Runtime::start(slipway_actors::RuntimeDeps {
        store: store.clone(),
        registry: metrics.registry().clone(),
        mailer,
        notify: settings.notify.clone(),
        webhooks: settings.webhooks.clone(),
        builds: settings.builds.clone(),
        master: master.clone(),
        server: slipway_actors::compose::ServerInfo {
            ssh_host: settings
                .ssh
                .public_host
                .clone()
                .unwrap_or_else(|| bound.ssh.ip().to_string()),
            ssh_port: bound.ssh.port(),
        },
        message_domain: settings
            .notify
            .from
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| "slipway.local".into()),
        catalog: Arc::new(crate::state::Catalog(repos.clone())),
        builds_dir: data.builds(),
        artifacts_dir: data.artifacts(),
        deploy: settings.deploy.clone(),
    });
    runtime.set_rules(admin.rules.clone(), Arc::new(admin.emails()));
    runtime.set_builds(admin.builds.clone(), Arc::new(admin.emails()));
    runtime.set_people(admin.people());
    runtime.set_deploy(admin.deploy.clone());
    let state = Arc::new(ServerState {
        settings: settings.clone(),
        data: data.clone(),
        repos,
        store,
        admin: AdminState::new(admin),
        metrics,
        pushes: Arc::new(PushRegistry::default()),
        runtime,
        master,
    });
    std::fs::write(data.addresses(), serde_json::to_vec_pretty(&bound)?)?;

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let hooks_cancel = CancellationToken::new();
    let hook_task = tokio::spawn(crate::hookrpc::serve(
        state.clone(),
        hook_listener,
        hooks_cancel.clone(),
    ));
    let ssh_task = tokio::spawn(crate::ssh::run(
        state.clone(),
        ssh_listener,
        host_key,
        cancel.clone(),
        tracker.clone(),
    ));
    self_test_hook(&data).await?;
    let http = crate::http::start(state.clone(), http_listener, tls)?;
    let http_handle = http.handle();
    let http_task = tokio::spawn(http);
    tracing::info!(ssh = %bound.ssh, http = %bound.http_url, data = %data.root().display(), "slipway is serving");
    on_bound(&bound);

    shutdown.await;
    tracing::info!("shutting down: no new connections; waiting for running sessions");
    cancel.cancel();
    let _ = ssh_task.await;
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(35), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still running after 35 s; stopping anyway");
    }
    hooks_cancel.cancel();
    let _ = hook_task.await;
    http_handle.stop(true).await;
    let _ = http_task.await;
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(data.addresses());
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

/// Only the server's user may read the data directory; builds (which run as another user
/// when the server is root) may only pass through it to their own workspace.
fn secure_permissions(data: &DataDir) -> anyhow::Result<()> {
    std::fs::create_dir_all(data.builds())?;
    set_mode(data.root(), 0o711)?;
    set_mode(&data.builds(), 0o711)?;
    for dir in [
        data.keys(),
        data.repos(),
        data.run(),
        data.mail(),
        data.artifacts(),
    ] {
        std::fs::create_dir_all(&dir)?;
        set_mode(&dir, 0o700)?;
    }
    for file in [
        data.settings(),
        data.database(),
        data.root().join("slipway.db-wal"),
        data.root().join("slipway.db-shm"),
    ] {
        if file.exists() {
            set_mode(&file, 0o600)?;
        }
    }
    Ok(())
}

fn set_mode(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions on {}", path.display()))
}

/// Points `DATA/hooks/{pre,post}-receive` at this executable, which runs the
/// `slipway-hook` crate's code when called under a hook's name. Using the running
/// binary (rather than a `slipway-hook` file found nearby) means the hook can never be
/// an older build than the server it talks to.
fn install_hooks(data: &DataDir) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the slipway executable")?;
    let dir = data.hooks();
    std::fs::create_dir_all(&dir)?;
    for name in ["pre-receive", "post-receive"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot install the {name} hook at {}", link.display()))?;
    }
    Ok(())
}

/// Runs the installed pre-receive hook against the live socket with a token that
/// cannot be valid. It must refuse: a hook that accepts here would let every push
/// bypass the policy check, so the server does not start.
async fn self_test_hook(data: &DataDir) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(data.hooks().join("pre-receive"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SLIPWAY_HOOK_SOCKET", data.hook_socket())
        .env("SLIPWAY_PUSH_TOKEN", "self-test")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("cannot run the installed pre-receive hook")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) || !stderr.contains("push token") {
        anyhow::bail!(
            "the pre-receive hook at {} does not refuse an invalid push (exit {:?}: {}); pushes would bypass access control",
            data.hooks().join("pre-receive").display(),
            out.status.code(),
            stderr.trim()
        );
    }
    Ok(())
}
