//! The builder: queues builds (by hand, or for every pushed branch head of a repository
//! that has a `buildspec.yml` and no `pipeline.yml`), runs them with the engine, keeps
//! their logs, and publishes their state changes as `build` events.
//!
//! Builds interrupted by a server stop are marked FAULT on the next start; queued ones
//! run. Triggering reads the event log from its own cursor (`builder`), and a push event
//! queues at most one build, so a crash cannot lose or double a build.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio_util::sync::CancellationToken;

use super::artifacts::{package, ArtifactStore};
use super::checkout::read_file;
use super::engine::{run_build, BuildContext, BuildStatus, LogSink, PhaseReport};
use super::shell::{BuildShell, DockerSpec, Executor};
use super::spec::{parse_buildspec, BuildSpec};
use crate::bus::{EventBus, EventsAvailable, Publish, Stored};
use crate::compose::ServerInfo;
use crate::config::builds::{BuildsConfig, ExecutorKind, RepoBuilds};
use crate::metrics::RuntimeMetrics;
use crate::notify::DeliveriesQueued;
use crate::reaper::RepoCatalog;
use crate::secrets::MasterKey;
use crate::store::{
    ArtifactRow, AuditEntry, AuditKind, BuildRow, EventFilter, NewBuild, NewDelivery, NewEvent,
    Store,
};

/// The consumer name (cursor key) of the builder.
pub const CONSUMER: &str = "builder";

/// Queue a build; answers the queued build.
#[derive(Message)]
#[rtype(result = "Result<BuildRow, String>")]
pub struct StartBuild(pub NewBuild);

/// Stop a running or queued build; answers whether there was one to stop.
#[derive(Message)]
#[rtype(result = "Result<bool, String>")]
pub struct StopBuild(pub i64);

/// New build settings (builds.yaml), and user → email address (access.yaml).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBuilds {
    /// builds.yaml.
    pub config: Arc<BuildsConfig>,
    /// Where pushers are mailed.
    pub emails: Arc<HashMap<String, String>>,
}

/// How the builder mails people (a pusher whose guarded branch was moved back).
#[derive(Clone)]
pub struct MailOut {
    /// Told about queued deliveries.
    pub notifier: Recipient<DeliveriesQueued>,
    /// The domain of Message-IDs.
    pub domain: String,
}

/// Wakes the builder to start queued builds.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
struct Kick;

/// Builds were queued elsewhere (a pipeline's action): start what can start.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct QueueChanged;

/// The builder actor.
pub struct Builder {
    store: Store,
    catalog: Arc<dyn RepoCatalog>,
    bus: Addr<EventBus>,
    builds_dir: PathBuf,
    server: ServerInfo,
    master: MasterKey,
    artifacts: ArtifactStore,
    metrics: RuntimeMetrics,
    settings: Arc<BuildsConfig>,
    running: HashMap<i64, CancellationToken>,
    /// Builds at once (slipway.yaml `builds.parallel`).
    parallel: usize,
    /// Niceness of local builds (slipway.yaml `builds.nice`).
    nice: i32,
    emails: Arc<HashMap<String, String>>,
    mail: MailOut,
    scanning: bool,
    /// Names this server's build containers apart from another server's on the same
    /// Docker engine (a hash of the builds directory).
    instance: String,
}

impl Builder {
    /// A builder keeping workspaces and logs under `builds_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        catalog: Arc<dyn RepoCatalog>,
        bus: Addr<EventBus>,
        builds_dir: PathBuf,
        server: ServerInfo,
        master: MasterKey,
        artifacts: ArtifactStore,
        metrics: RuntimeMetrics,
        queue: crate::config::settings::BuildSettings,
        mail: MailOut,
    ) -> Builder {
        Builder {
            store,
            catalog,
            bus,
            server,
            master,
            artifacts,
            metrics,
            settings: Arc::new(BuildsConfig::default()),
            running: HashMap::new(),
            parallel: queue.parallel.max(1),
            nice: queue.nice,
            emails: Arc::new(HashMap::new()),
            mail,
            scanning: false,
            instance: instance_name(&builds_dir),
            builds_dir,
        }
    }

    /// The log file of build `id`.
    pub fn log_path(builds_dir: &std::path::Path, id: i64) -> PathBuf {
        builds_dir.join(id.to_string()).join("build.log")
    }

    /// Starts queued builds, oldest first, up to the concurrency limit; builds that
    /// waited longer than their queued timeout end as TIMED_OUT.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        let queued = match self.store.builds_with_status("QUEUED") {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the build queue");
                return;
            }
        };
        let now = unix_seconds();
        let mut waiting = 0;
        for build in queued {
            if self.running.contains_key(&build.id) {
                continue;
            }
            let limit = self.settings.for_repo(&build.repo).queued_timeout;
            if queue_expired(build.queued, now, limit) {
                let why = format!(
                    "waited in the queue longer than its queued-timeout ({}); raise queued-timeout in builds.yaml or builds.parallel in slipway.yaml",
                    humantime::format_duration(limit)
                );
                tracing::warn!(build = build.id, repo = %build.repo, "build timed out in the queue");
                if let Err(e) = self.store.build_finished(
                    build.id,
                    "TIMED_OUT",
                    &build.phases,
                    &build.exported,
                    Some(&why),
                ) {
                    tracing::error!(build = build.id, error = %e, "cannot end a queued build");
                    continue;
                }
                self.metrics
                    .builds_total
                    .with_label_values(&["TIMED_OUT"])
                    .inc();
                let bus = self.bus.clone();
                ctx.spawn(
                    async move {
                        publish_state(
                            &bus,
                            &build,
                            "TIMED_OUT",
                            serde_json::json!({ "reason": why }),
                        )
                        .await
                    }
                    .into_actor(self),
                );
                continue;
            }
            if self.running.len() >= self.parallel {
                waiting += 1;
                continue;
            }
            let stop = CancellationToken::new();
            self.running.insert(build.id, stop.clone());
            let id = build.id;
            let settings = self.settings.for_repo(&build.repo);
            let job = run_one(
                build,
                settings,
                self.master.clone(),
                self.artifacts.clone(),
                self.store.clone(),
                self.catalog.clone(),
                self.bus.clone(),
                self.builds_dir.clone(),
                self.server.clone(),
                self.instance.clone(),
                self.metrics.clone(),
                self.nice,
                Guard {
                    emails: self.emails.clone(),
                    mail: self.mail.clone(),
                },
                stop,
            );
            ctx.spawn(job.into_actor(self).map(move |(), act, ctx| {
                act.running.remove(&id);
                act.kick(ctx);
            }));
        }
        self.metrics.build_queue_depth.set(waiting);
        self.metrics.builds_running.set(self.running.len() as i64);
    }

    /// Queues builds for new push events (branch heads with a buildspec and no pipeline).
    fn scan_events(&mut self, ctx: &mut Context<Self>) {
        if self.scanning {
            return;
        }
        self.scanning = true;
        let (store, catalog) = (self.store.clone(), self.catalog.clone());
        let job = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let cursor = store.cursor(CONSUMER, 0).map_err(|e| e.to_string())?;
            let events = store
                .events(&EventFilter {
                    after: cursor,
                    limit: 500,
                    ..Default::default()
                })
                .map_err(|e| e.to_string())?;
            let mut queued = 0;
            for e in &events {
                let ev = &e.event;
                let (Some(repo), Some(refname)) = (&ev.repo, &ev.refname) else {
                    continue;
                };
                let Some(new) = ev.detail["new"].as_str() else {
                    continue;
                };
                if ev.source != "git" || ev.kind != "push" || !refname.starts_with("refs/heads/") {
                    continue;
                }
                let Some(path) = catalog.path(repo) else {
                    continue;
                };
                let has = |file: &str| read_file(&path, new, file).ok().flatten().is_some();
                if !has("buildspec.yml") || has("pipeline.yml") {
                    continue;
                }
                let request = NewBuild {
                    repo: repo.clone(),
                    commit: new.to_string(),
                    refname: Some(refname.clone()),
                    prev_commit: ev.detail["old"].as_str().map(str::to_string),
                    event_id: Some(e.id),
                    initiator: ev.actor.clone().unwrap_or_else(|| "push".into()),
                    plan: None,
                };
                if store
                    .build_queue(&request)
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    queued += 1;
                }
            }
            if let Some(last) = events.last() {
                store
                    .advance_cursor(CONSUMER, last.id)
                    .map_err(|e| e.to_string())?;
            }
            Ok(queued)
        });
        ctx.spawn(job.into_actor(self).map(|result, act, ctx| {
            act.scanning = false;
            match result {
                Ok(Ok(n)) if n > 0 => act.kick(ctx),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot queue builds for pushes"),
                Err(e) => tracing::error!(error = %e, "build trigger task failed"),
            }
        }));
    }
}

/// Appends masked lines to the build log.
struct FileLog(std::io::BufWriter<std::fs::File>);
impl LogSink for FileLog {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.0, "{text}");
        let _ = self.0.flush();
    }
}

/// Whether every directory above `path` lets other users pass (`o+x`); the first one
/// that does not is the error.
pub fn reachable_by_others(path: &std::path::Path) -> Result<(), PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o001 != 0 => {}
            _ => return Err(dir.to_path_buf()),
        }
    }
    Ok(())
}

/// `nobody:nogroup` when the server runs as root; otherwise builds run as the server's
/// own (already unprivileged) user.
fn unprivileged_user() -> Option<(u32, u32)> {
    running_as_root().then_some((65534, 65534))
}

pub use super::shell::running_as_root;

/// Makes `path` and everything below it readable and writable by every user (`a+rwX`),
/// without following symlinks. Used for Docker builds, whose container user is not a
/// host user; the build's directory itself is closed to other host users (0700).
fn open_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    let extra = if meta.is_dir() || mode & 0o111 != 0 {
        0o777
    } else {
        0o666
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | extra))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            open_tree(&entry?.path())?;
        }
    }
    Ok(())
}

/// The values of `env.parameter-store` and `env.secrets-manager`, read from slipway's
/// parameter store; each must be allowed by builds.yaml `params` for the repository.
/// A secrets-manager id `NAME:json-key` takes one key of a JSON value.
fn resolve_params(
    store: &Store,
    spec: &BuildSpec,
    settings: &RepoBuilds,
    master: &MasterKey,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let entries = spec
        .env
        .parameter_store
        .iter()
        .map(|(v, p)| (v, p.as_str(), None))
        .chain(spec.env.secrets_manager.iter().map(|(v, id)| {
            let mut parts = id.splitn(3, ':');
            let name = parts.next().unwrap_or("");
            (v, name, parts.next().filter(|k| !k.is_empty()))
        }));
    for (var, name, key) in entries {
        let name = if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/{name}")
        };
        if !settings.may_read(&name) {
            return Err(format!(
                "{var} reads parameter {name}, which builds of this repository may not read; allow it under `params` in builds.yaml"
            ));
        }
        let row = store
            .param_get(&name)
            .map_err(|e| format!("cannot read parameter {name}: {e}"))?
            .ok_or_else(|| format!("{var} reads parameter {name}, which does not exist; create it with `param put {name}`"))?;
        let bytes = if row.secure {
            master
                .open(&row.value)
                .map_err(|e| format!("parameter {name}: {e}"))?
        } else {
            row.value
        };
        let text =
            String::from_utf8(bytes).map_err(|_| format!("parameter {name} is not UTF-8 text"))?;
        let value = match key {
            None => text,
            Some(k) => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get(k).map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                })
                .ok_or_else(|| {
                    format!("{var}: parameter {name} is not a JSON object with key `{k}`")
                })?,
        };
        out.push((var.clone(), value));
    }
    Ok(out)
}

/// The first phase that did not succeed.
fn failed_phase(phases: &[PhaseReport]) -> Option<String> {
    phases
        .iter()
        .find(|p| p.status != BuildStatus::Succeeded)
        .map(|p| p.name.clone())
}

/// The last `n` lines of a build log (none if it cannot be read).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// A short stable name for this server's builds directory.
fn instance_name(builds_dir: &Path) -> String {
    use sha2::Digest;
    let canonical = std::fs::canonicalize(builds_dir).unwrap_or_else(|_| builds_dir.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}

/// Whether a build queued at `queued` (unix seconds) has waited past `limit` at `now`.
fn queue_expired(queued: f64, now: f64, limit: Duration) -> bool {
    now - queued > limit.as_secs_f64()
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The `build-state-change` event of `build` entering `state`.
fn state_event(build: &BuildRow, state: &str, detail: serde_json::Value) -> NewEvent {
    NewEvent {
        source: "build".into(),
        kind: "build-state-change".into(),
        actor: Some(build.initiator.clone()),
        repo: Some(build.repo.clone()),
        refname: build.refname.clone(),
        state: Some(state.into()),
        detail: serde_json::json!({
            "build_id": build.id,
            "build_number": build.number,
            "commit": build.commit,
            "detail": detail,
        }),
    }
}

async fn publish_state(
    bus: &Addr<EventBus>,
    build: &BuildRow,
    state: &str,
    detail: serde_json::Value,
) {
    let event = state_event(build, state, detail);
    if let Err(e) = bus.send(Publish(vec![event])).await {
        tracing::error!(error = %e, "cannot publish a build event");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    build: BuildRow,
    settings: RepoBuilds,
    master: MasterKey,
    artifacts: ArtifactStore,
    store: Store,
    catalog: Arc<dyn RepoCatalog>,
    bus: Addr<EventBus>,
    builds_dir: PathBuf,
    server: ServerInfo,
    instance: String,
    metrics: RuntimeMetrics,
    nice: i32,
    guard: Guard,
    stop: CancellationToken,
) {
    let id = build.id;
    let started_at = std::time::Instant::now();
    let dir = builds_dir.join(id.to_string());
    let finish = |status: BuildStatus,
                  phases: Vec<PhaseReport>,
                  exported: serde_json::Value,
                  detail: Option<String>| {
        let store = store.clone();
        let bus = bus.clone();
        let build = build.clone();
        let metrics = metrics.clone();
        let log_path = dir.join("build.log");
        async move {
            let s = status.as_str();
            metrics.builds_total.with_label_values(&[s]).inc();
            metrics
                .build_duration_seconds
                .with_label_values(&[s])
                .observe(started_at.elapsed().as_secs_f64());
            for p in &phases {
                metrics
                    .build_phase_duration_seconds
                    .with_label_values(&[p.name.as_str(), p.status.as_str()])
                    .observe(p.duration_ms as f64 / 1000.0);
            }
            // What a person needs to see in a mail about a failure: where, and the end
            // of the log.
            let failed = failed_phase(&phases);
            let last_lines = if status == BuildStatus::Succeeded {
                Vec::new()
            } else {
                log_tail(&log_path, 15)
            };
            let phases = serde_json::to_value(&phases).unwrap_or_default();
            let d = detail.clone();
            let (p, x) = (phases.clone(), exported.clone());
            let st = store.clone();
            let event = state_event(
                &build,
                s,
                serde_json::json!({
                    "phases": phases,
                    "exported": exported,
                    "reason": detail,
                    "failed_phase": failed,
                    "last_lines": last_lines,
                }),
            );
            let stored = tokio::task::spawn_blocking(move || {
                st.build_finished_with_event(id, s, &p, &x, d.as_deref(), &event)
            })
            .await;
            match stored {
                Ok(Ok(event_id)) => bus.do_send(Stored(vec![(
                    event_id,
                    "build".into(),
                    "build-state-change".into(),
                )])),
                Ok(Err(e)) => {
                    tracing::error!(build = id, error = %e, "cannot record the end of a build")
                }
                Err(e) => tracing::error!(build = id, error = %e, "build end task failed"),
            }
            tracing::info!(build = id, repo = %build.repo, status = s, "build finished");
        }
    };
    // The source could not be fetched or its buildspec read: CodeBuild's DOWNLOAD_SOURCE.
    let source_failed = |why: String| {
        let phases = vec![PhaseReport {
            name: "DOWNLOAD_SOURCE".into(),
            status: BuildStatus::Failed,
            duration_ms: 0,
        }];
        finish(
            BuildStatus::Failed,
            phases,
            serde_json::json!([]),
            Some(why),
        )
    };
    // A build that ends before any phase ran: no phases, nothing exported.
    let fail_early = |status: BuildStatus, why: String| {
        finish(status, Vec::new(), serde_json::json!([]), Some(why))
    };
    {
        let st = store.clone();
        let event_id = build.event_id;
        let started = tokio::task::spawn_blocking(move || {
            // Only a build still queued starts (a pipeline may have stopped it meanwhile).
            if !st.build_started(id).unwrap_or(true) {
                return None;
            }
            // When the push that triggered it was stored, for the latency metric.
            let event = event_id.and_then(|e| {
                st.events(&EventFilter {
                    after: e - 1,
                    limit: 1,
                    ..Default::default()
                })
                .ok()
                .and_then(|v| v.into_iter().next())
                .filter(|ev| ev.id == e)
            });
            Some(event.and_then(|ev| {
                time::OffsetDateTime::parse(
                    &ev.time,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            }))
        })
        .await
        .unwrap_or(Some(None));
        let Some(pushed) = started else {
            tracing::info!(build = id, "the build was stopped before it started");
            return;
        };
        if let Some(t) = pushed {
            let waited = (time::OffsetDateTime::now_utc() - t).as_seconds_f64();
            metrics.push_to_build_start_seconds.observe(waited.max(0.0));
        }
    }
    publish_state(&bus, &build, "IN_PROGRESS", serde_json::Value::Null).await;
    let log_file = match std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::File::create(dir.join("build.log")))
    {
        Ok(f) => f,
        Err(e) => {
            fail_early(
                BuildStatus::Fault,
                format!("cannot create the build directory: {e}"),
            )
            .await;
            return;
        }
    };
    let mut log = FileLog(std::io::BufWriter::new(log_file));
    if let Some(why) = &build.plan_error {
        let msg =
            format!("the pipeline's plan for this build cannot be read ({why}); retry the stage");
        log.line(&format!("[slipway] {msg}"));
        fail_early(BuildStatus::Fault, msg).await;
        return;
    }
    let Some(repo_path) = catalog.path(&build.repo) else {
        log.line("[slipway] The repository no longer exists");
        fail_early(BuildStatus::Fault, "repository not found".into()).await;
        return;
    };
    log.line(&format!(
        "[slipway] Build {}:{} of {} at {}",
        build.repo,
        build.number,
        build.refname.as_deref().unwrap_or("-"),
        build.commit
    ));
    if let Some(p) = &build.plan {
        log.line(&format!(
            "[slipway] For pipeline {} execution {}, stage {}, action {}",
            p.pipeline, p.execution, p.stage, p.action
        ));
    }
    log.line("[slipway] Entering phase DOWNLOAD_SOURCE");
    let src = dir.join("src");
    let (rp, commit, s2, d2, plan, arts) = (
        repo_path.clone(),
        build.commit.clone(),
        src.clone(),
        dir.clone(),
        build.plan.clone(),
        artifacts.clone(),
    );
    let prepared = tokio::task::spawn_blocking(move || {
        super::inputs::prepare(&rp, &commit, plan.as_ref(), &d2, &s2, &arts)
    })
    .await
    .unwrap_or_else(|e| Err(format!("checkout task failed: {e}")));
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            log.line(&format!("[slipway] DOWNLOAD_SOURCE failed: {e}"));
            source_failed(e).await;
            return;
        }
    };
    let spec = match parse_buildspec(&prepared.buildspec, &prepared.text) {
        Ok(s) => s,
        Err(e) => {
            log.line(&format!("[slipway] {e}"));
            source_failed(e.to_string()).await;
            return;
        }
    };
    let params = {
        let (st, sp, set, m) = (
            store.clone(),
            spec.clone(),
            settings.clone(),
            master.clone(),
        );
        tokio::task::spawn_blocking(move || resolve_params(&st, &sp, &set, &m))
            .await
            .unwrap_or_else(|e| Err(format!("parameter task failed: {e}")))
    };
    let params = match params {
        Ok(p) => p,
        Err(msg) => {
            log.line(&format!("[slipway] {msg}"));
            fail_early(BuildStatus::Failed, msg).await;
            return;
        }
    };
    let branch = build
        .refname
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/heads/"));
    // The cache of this branch (or of the default branch) goes in before install.
    if !spec.cache_paths.is_empty() {
        if let Err(e) = super::cache::check_paths(&spec.cache_paths) {
            log.line(&format!("[slipway] buildspec.yml: {e}"));
            source_failed(e).await;
            return;
        }
        if let Some(b) = branch {
            let (st, arts, repo, b, rp, s2) = (
                store.clone(),
                artifacts.clone(),
                build.repo.clone(),
                b.to_string(),
                repo_path.clone(),
                src.clone(),
            );
            let restored = tokio::task::spawn_blocking(move || {
                let default = super::checkout::default_branch(&rp);
                super::cache::restore(&st, &arts, &repo, &b, default.as_deref(), &s2, None)
            })
            .await
            .unwrap_or_else(|e| Err(format!("cache task failed: {e}")));
            match restored {
                Ok(Some(c)) => log.line(&format!(
                    "[slipway] Cache restored from branch {}: {} files, {} bytes",
                    c.from_branch, c.files, c.size
                )),
                Ok(None) => log.line("[slipway] No cache to restore for this branch yet"),
                // A cache is an optimisation: the build goes on without it.
                Err(e) => log.line(&format!("[slipway] {e}")),
            }
        }
    }
    let build_id = format!("{}:{}", build.repo, build.number);
    let mut env = Vec::new();
    for (name, value) in [
        ("BUILD_ID", build_id.clone()),
        ("BUILD_NUMBER", build.number.to_string()),
        ("INITIATOR", build.initiator.clone()),
        ("RESOLVED_SOURCE_VERSION", build.commit.clone()),
        (
            "SOURCE_VERSION",
            build
                .refname
                .clone()
                .unwrap_or_else(|| build.commit.clone()),
        ),
        (
            "SOURCE_REPO_URL",
            format!(
                "ssh://git@{}:{}/{}.git",
                server.ssh_host, server.ssh_port, build.repo
            ),
        ),
        ("SRC_DIR", src.display().to_string()),
        ("START_TIME", unix_ms().to_string()),
        (
            "WEBHOOK_HEAD_REF",
            build.refname.clone().unwrap_or_default(),
        ),
        (
            "WEBHOOK_PREV_COMMIT",
            build.prev_commit.clone().unwrap_or_default(),
        ),
        (
            "WEBHOOK_TRIGGER",
            branch.map(|b| format!("branch/{b}")).unwrap_or_default(),
        ),
    ] {
        env.push((format!("CODEBUILD_{name}"), value.clone()));
        env.push((format!("SLIPWAY_{name}"), value));
    }
    for (suffix, path) in &prepared.secondary {
        env.push((
            format!("CODEBUILD_SRC_DIR_{suffix}"),
            path.display().to_string(),
        ));
    }
    let home = dir.join("home");
    let state_dir = dir.join("state");
    env.push(("HOME".into(), home.display().to_string()));
    // A pipeline action's variables win over everything but secrets (as start-build
    // overrides do in CodeBuild).
    if let Some(p) = &build.plan {
        env.extend(p.env.iter().cloned());
    }
    let workspace: Vec<PathBuf> = [src.clone(), home.clone()]
        .into_iter()
        .chain(prepared.secondary.iter().map(|(_, p)| p.clone()))
        .collect();
    let _ = std::fs::create_dir_all(&home);
    let _ = std::fs::create_dir_all(&state_dir);
    let executor = match &settings.executor {
        ExecutorKind::Local => {
            // A server running as root never runs a build as root: the build gets an
            // unprivileged user (nobody, or the buildspec's run-as), owns only its own
            // workspace, and cannot read the data directory.
            let run_as = match spec.run_as.as_deref() {
                Some(name) => match super::shell::resolve_local_user(name) {
                    Ok(ids) => running_as_root().then_some(ids),
                    Err(msg) => {
                        log.line(&format!("[slipway] {msg}"));
                        fail_early(BuildStatus::Failed, msg).await;
                        return;
                    }
                },
                None => unprivileged_user(),
            };
            if let (Some(_), Err(blocked)) = (run_as, reachable_by_others(&dir)) {
                let msg = format!(
                    "builds run as an unprivileged user, which cannot pass through {} (no execute permission for others); give it o+x or move the data directory",
                    blocked.display()
                );
                log.line(&format!("[slipway] {msg}"));
                fail_early(BuildStatus::Fault, msg).await;
                return;
            }
            if let Some((uid, gid)) = run_as {
                let owned = workspace
                    .iter()
                    .try_for_each(|p| super::shell::chown_tree(p, uid, gid));
                if let Err(e) = owned {
                    log.line(&format!(
                        "[slipway] cannot hand the workspace to the build user: {e}"
                    ));
                    fail_early(BuildStatus::Fault, e.to_string()).await;
                    return;
                }
            }
            Executor::Local { run_as, nice }
        }
        ExecutorKind::Docker { image } => {
            use std::os::unix::fs::PermissionsExt;
            // The container's users are not host users: the workspace is open to all of
            // them, and the build's directory is closed to everyone else on the host.
            let opened = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .and_then(|()| workspace.iter().try_for_each(|p| open_tree(p)));
            if let Err(e) = opened {
                log.line(&format!("[slipway] cannot prepare the workspace: {e}"));
                fail_early(BuildStatus::Fault, e.to_string()).await;
                return;
            }
            let container = format!("slipway-{instance}-build-{id}");
            log.line(&format!(
                "[slipway] Running in container {container} of image {image}"
            ));
            Executor::Docker(DockerSpec {
                image: image.clone(),
                container,
                mounts: workspace.clone(),
            })
        }
    };
    let secrets: Vec<String> = params.iter().map(|(_, v)| v.clone()).collect();
    env.extend(params);
    let ctx = BuildContext {
        src_dir: src,
        state_dir,
        env,
        secrets,
        timeout: settings.timeout,
        executor,
    };
    let mut report = run_build(&spec, &ctx, &mut log, stop).await;
    // Test reports are read whatever the outcome, as CodeBuild does.
    if !spec.reports.is_empty() && !report.phases.is_empty() {
        let (groups, src_dir, st) = (spec.reports.clone(), ctx.src_dir.clone(), store.clone());
        let summaries = tokio::task::spawn_blocking(move || {
            let list: Vec<_> = groups
                .iter()
                .map(|g| super::reports::collect(&src_dir, g))
                .collect();
            let value = serde_json::to_value(&list).unwrap_or_default();
            let _ = st.build_reports(id, &value);
            list
        })
        .await
        .unwrap_or_default();
        for r in summaries {
            log.line(&format!(
                "[slipway] Report {}: {} tests, {} passed, {} failed, {} errors, {} skipped",
                r.name, r.total, r.passed, r.failed, r.errors, r.skipped
            ));
            for p in &r.problems {
                log.line(&format!("[slipway] Report {}: {p}", r.name));
            }
        }
    }
    // UPLOAD_ARTIFACTS is attempted even after a failed build phase, but not after a
    // failed install or pre_build, a timeout or a stop.
    let ended_early = report.phases.last().is_some_and(|p| {
        p.status != BuildStatus::Succeeded && matches!(p.name.as_str(), "INSTALL" | "PRE_BUILD")
    });
    if let (Some(a), false, true) = (
        spec.artifacts.clone(),
        ended_early,
        matches!(report.status, BuildStatus::Succeeded | BuildStatus::Failed),
    ) {
        log.line("[slipway] Entering phase UPLOAD_ARTIFACTS");
        let started = std::time::Instant::now();
        let (src_dir, store2, artifacts2) = (ctx.src_dir.clone(), store.clone(), artifacts.clone());
        let uploaded = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
            let mut lines = Vec::new();
            let mut all = vec![("primary".to_string(), a.clone())];
            all.extend(a.secondary.clone());
            for (name, spec) in all {
                let (zip, files) =
                    package(&src_dir, &spec).map_err(|e| format!("artifact `{name}`: {e}"))?;
                let sha = artifacts2.put(&zip)?;
                store2
                    .artifact_add(
                        id,
                        &ArtifactRow {
                            name: name.clone(),
                            sha256: sha.clone(),
                            size: zip.len() as i64,
                            files: files as i64,
                        },
                    )
                    .map_err(|e| e.to_string())?;
                lines.push(format!(
                    "[slipway] Artifact {name}: {files} files, {} bytes, sha256 {sha}",
                    zip.len()
                ));
            }
            Ok(lines)
        })
        .await
        .unwrap_or_else(|e| Err(format!("artifact task failed: {e}")));
        let status = match uploaded {
            Ok(lines) => {
                lines.iter().for_each(|l| log.line(l));
                BuildStatus::Succeeded
            }
            Err(e) => {
                log.line(&format!("[slipway] {e}"));
                report.status = BuildStatus::Failed;
                BuildStatus::Failed
            }
        };
        log.line(&format!(
            "[slipway] Phase complete: UPLOAD_ARTIFACTS State: {}",
            status.as_str()
        ));
        report.phases.push(super::engine::PhaseReport {
            name: "UPLOAD_ARTIFACTS".into(),
            status,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    if let (BuildStatus::Succeeded, false, Some(b)) =
        (report.status, spec.cache_paths.is_empty(), branch)
    {
        let (st, arts, repo, b, s2, paths) = (
            store.clone(),
            artifacts.clone(),
            build.repo.clone(),
            b.to_string(),
            ctx.src_dir.clone(),
            spec.cache_paths.clone(),
        );
        let saved = tokio::task::spawn_blocking(move || {
            super::cache::save(&st, &arts, &repo, &b, id, &s2, &paths)
        })
        .await
        .unwrap_or_else(|e| Err(format!("cache task failed: {e}")));
        match saved {
            Ok(c) => log.line(&format!(
                "[slipway] Cache saved: {} files, {} bytes{}",
                c.files,
                c.size,
                if c.skipped > 0 {
                    format!(" ({} links or foreign files left out)", c.skipped)
                } else {
                    String::new()
                }
            )),
            Err(e) => log.line(&format!("[slipway] {e}")),
        }
    }
    // A guarded branch whose pushed commit failed to build goes back where it was.
    if let (BuildStatus::Failed, Some(b), Some(_)) = (report.status, branch, build.event_id) {
        if settings.guards(b) {
            let failed_phase = failed_phase(&report.phases);
            guard_branch(
                &build,
                b,
                &repo_path,
                failed_phase.as_deref(),
                &dir.join("build.log"),
                &mut log,
                &store,
                &bus,
                &metrics,
                &guard,
                &server,
            )
            .await;
        }
    }
    // The last line, once artifacts, reports, cache and guard are done (an artifact that
    // cannot be stored still fails the build).
    log.line(&format!(
        "[slipway] Build complete: {}",
        report.status.as_str()
    ));
    let exported: serde_json::Value = report
        .exported
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    finish(report.status, report.phases, exported, report.fault).await;
}

/// What moving a guarded branch back needs besides the build.
struct Guard {
    emails: Arc<HashMap<String, String>>,
    mail: MailOut,
}

/// Moves guarded branch `branch` back from the build's failed commit (compare-and-swap),
/// keeps the commit under `refs/slipway/rejected/…`, and tells everyone: the build log,
/// an event, an audit line, a metric, and a mail to the pusher.
#[allow(clippy::too_many_arguments)]
async fn guard_branch(
    build: &BuildRow,
    branch: &str,
    repo_path: &Path,
    failed_phase: Option<&str>,
    log_path: &Path,
    log: &mut FileLog,
    store: &Store,
    bus: &Addr<EventBus>,
    metrics: &RuntimeMetrics,
    guard: &Guard,
    server: &ServerInfo,
) {
    use super::guard::{mail, rejected_ref, roll_back, RollBack};
    let (rp, b, failed, prev, number) = (
        repo_path.to_path_buf(),
        branch.to_string(),
        build.commit.clone(),
        build.prev_commit.clone(),
        build.number,
    );
    let outcome =
        tokio::task::spawn_blocking(move || roll_back(&rp, &b, &failed, prev.as_deref(), number))
            .await
            .unwrap_or_else(|e| Err(format!("guard task failed: {e}")));
    let rejected = rejected_ref(branch, build.number);
    let (label, state, line) = match &outcome {
        Ok(RollBack::MovedBack { to }) => (
            "moved-back",
            "MOVED_BACK",
            format!("[slipway] Guarded branch {branch} moved back to {to}; the failed commit is kept as {rejected}"),
        ),
        Ok(RollBack::Deleted) => (
            "deleted",
            "DELETED",
            format!("[slipway] Guarded branch {branch} was created by this push and is deleted again; the failed commit is kept as {rejected}"),
        ),
        Ok(RollBack::LeftAlone { now_at }) => (
            "left-alone",
            "LEFT_ALONE",
            format!("[slipway] Guarded branch {branch} was pushed to meanwhile (now at {now_at}); left alone. The failed commit is kept as {rejected}"),
        ),
        Err(e) => (
            "error",
            "ERROR",
            format!("[slipway] Guarded branch {branch} could not be moved back: {e}"),
        ),
    };
    log.line(&line);
    metrics
        .guard_rollbacks_total
        .with_label_values(&[label])
        .inc();
    tracing::warn!(build = build.id, repo = %build.repo, branch, outcome = label, "guarded branch after a failed build");
    let detail = serde_json::json!({
        "build_id": build.id,
        "build_number": build.number,
        "failed": build.commit,
        "previous": build.prev_commit,
        "rejected_ref": rejected,
        "result": line.trim_start_matches("[slipway] "),
    });
    let event = NewEvent {
        source: "build".into(),
        kind: "guard-rollback".into(),
        actor: Some("slipway".into()),
        repo: Some(build.repo.clone()),
        refname: build.refname.clone(),
        state: Some(state.into()),
        detail: detail.clone(),
    };
    let event_id = match bus.send(Publish(vec![event])).await {
        Ok(Ok(ids)) => ids.first().copied(),
        _ => None,
    };
    let mut entry = AuditEntry::new(
        AuditKind::RefUpdate,
        if label == "error" { "failed" } else { "ok" },
    );
    entry.user = Some("slipway".into());
    entry.repo = Some(build.repo.clone());
    entry.refname = build.refname.clone();
    entry.detail = Some(detail.to_string());
    let _ = store.audit(&entry);
    // The pusher hears why, with the last lines of the log.
    let Ok(outcome) = outcome else { return };
    let Some(to) = guard.emails.get(&build.initiator).cloned() else {
        tracing::info!(user = %build.initiator, "the pusher has no email address; not mailed");
        return;
    };
    let last = log_tail(log_path, 20);
    let (subject, body) = mail(
        &build.repo,
        branch,
        build.number,
        build.id,
        &build.commit,
        &outcome,
        failed_phase,
        &last,
        server,
    );
    let delivery = NewDelivery {
        event_id,
        rule: "guard".into(),
        kind: "email".into(),
        target: to,
        payload: serde_json::json!({ "subject": subject, "body": body }),
    };
    let (st, domain) = (store.clone(), guard.mail.domain.clone());
    match tokio::task::spawn_blocking(move || st.enqueue(&[delivery], &domain)).await {
        Ok(Ok(queued)) => {
            let _ = guard.mail.notifier.try_send(DeliveriesQueued(queued));
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot queue the guard mail"),
        Err(e) => tracing::error!(error = %e, "guard mail task failed"),
    }
}

impl Actor for Builder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.scanning = false;
        // Builds that were running when the server stopped cannot be resumed.
        if let Ok(interrupted) = self.store.builds_with_status("IN_PROGRESS") {
            for b in interrupted {
                if !self.running.contains_key(&b.id) {
                    let state = self.builds_dir.join(b.id.to_string()).join("state");
                    tokio::spawn(async move { BuildShell::kill_leftover(&state).await });
                    let _ = self.store.build_finished(
                        b.id,
                        "FAULT",
                        &b.phases,
                        &b.exported,
                        Some("the server stopped while this build ran; start it again"),
                    );
                }
            }
        }
        ctx.notify(Kick);
        ctx.notify(EventsAvailable);
        ctx.run_interval(Duration::from_secs(2), |act, ctx| {
            act.scan_events(ctx);
            act.kick(ctx);
        });
    }
}

impl Supervised for Builder {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor_restarts_total
            .with_label_values(&[CONSUMER])
            .inc();
    }
}

impl Handler<SetBuilds> for Builder {
    type Result = ();
    fn handle(&mut self, msg: SetBuilds, _ctx: &mut Self::Context) {
        self.settings = msg.config;
        self.emails = msg.emails;
    }
}

impl Handler<Kick> for Builder {
    type Result = ();
    fn handle(&mut self, _msg: Kick, ctx: &mut Self::Context) {
        self.kick(ctx);
    }
}

impl Handler<QueueChanged> for Builder {
    type Result = ();
    fn handle(&mut self, _msg: QueueChanged, ctx: &mut Self::Context) {
        self.kick(ctx);
    }
}

impl Handler<EventsAvailable> for Builder {
    type Result = ();
    fn handle(&mut self, _msg: EventsAvailable, ctx: &mut Self::Context) {
        self.scan_events(ctx);
    }
}

impl Handler<StartBuild> for Builder {
    type Result = Result<BuildRow, String>;
    fn handle(&mut self, msg: StartBuild, ctx: &mut Self::Context) -> Self::Result {
        let build = self
            .store
            .build_queue(&msg.0)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "this push already has a build".to_string())?;
        ctx.notify(Kick);
        Ok(build)
    }
}

impl Handler<StopBuild> for Builder {
    type Result = Result<bool, String>;
    fn handle(&mut self, msg: StopBuild, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(stop) = self.running.get(&msg.0) {
            stop.cancel();
            return Ok(true);
        }
        let build = self.store.build(msg.0).map_err(|e| e.to_string())?;
        match build {
            Some(b) if b.status == "QUEUED" => {
                self.store
                    .build_finished(
                        b.id,
                        "STOPPED",
                        &b.phases,
                        &b.exported,
                        Some("stopped before it started"),
                    )
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_expires_in_the_queue_only_after_its_limit() {
        let limit = Duration::from_secs(300);
        assert!(!queue_expired(1000.0, 1000.0 + 299.0, limit));
        assert!(!queue_expired(1000.0, 1000.0 + 300.0, limit));
        assert!(queue_expired(1000.0, 1000.0 + 300.5, limit));
    }

    #[test]
    fn instance_names_differ_per_builds_directory() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (na, nb) = (instance_name(a.path()), instance_name(b.path()));
        assert_eq!(na.len(), 8);
        assert_ne!(na, nb);
        assert_eq!(na, instance_name(a.path()));
    }
}
