//! Events per second through the bus, the rules engine and the notifier, against the
//! floor a hand-rolled hook would have: one sqlite transaction per event.
//!
//!     cargo bench -p slipway-actors --bench bus [-- EVENTS [PUBLISHERS]]
//!
//! Prints events stored per second (publishers awaiting `Publish`, i.e. with
//! backpressure), how fast the rules engine consumes them (queueing one mail each), how
//! fast the notifier delivers those mails as `.eml` files, and the ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_actors::compose::ServerInfo;
use slipway_actors::config::rules::{parse_rules_yaml, RulesContext};
use slipway_actors::config::settings::{NotifySettings, WebhookSettings};
use slipway_actors::notify::Mailer;
use slipway_actors::reaper::RepoCatalog;
use slipway_actors::secrets::MasterKey;
use slipway_actors::store::NewEvent;
use slipway_actors::{Runtime, RuntimeDeps, Store};

struct NoRepos;
impl RepoCatalog for NoRepos {
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
    fn path(&self, _repo: &str) -> Option<std::path::PathBuf> {
        None
    }
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        source: "git".into(),
        kind: "push".into(),
        actor: Some("bench".into()),
        repo: Some(format!("app-{}", i % 20)),
        refname: Some("refs/heads/main".into()),
        state: None,
        detail: serde_json::json!({"old": "0".repeat(40), "new": "1".repeat(40), "commits": 1, "summary": ["1111111 bench"]}),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let total: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let publishers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("temp dir");

    // Floor: one INSERT transaction per event, straight into sqlite.
    let floor = {
        let store = Store::open(&dir.path().join("floor.db")).expect("store");
        let start = Instant::now();
        for i in 0..total {
            store.insert_events(&[event(i)]).expect("insert");
        }
        total as f64 / start.elapsed().as_secs_f64()
    };

    let store = Store::open(&dir.path().join("slipway.db")).expect("store");
    let mail = dir.path().join("mail");
    let rules = parse_rules_yaml(
        "rules.yaml",
        "rules:\n  - name: all\n    match: { type: push }\n    targets:\n      - email: [team@example.com]\n",
        &RulesContext::default(),
    )
    .expect("rules");
    let dir_path = dir.path().to_path_buf();
    let (stored, consumed, delivered) = actix::System::new().block_on(async move {
        let runtime = Runtime::start(RuntimeDeps {
            store: store.clone(),
            registry: prometheus::Registry::new(),
            mailer: Mailer::new(None, mail.clone()).expect("mailer"),
            notify: NotifySettings::default(),
            webhooks: WebhookSettings::default(),
            master: MasterKey::from_bytes(&[1u8; 32]).expect("key"),
            server: ServerInfo {
                ssh_host: "127.0.0.1".into(),
                ssh_port: 2222,
            },
            message_domain: "bench".into(),
            catalog: Arc::new(NoRepos),
            builds_dir: dir_path.join("builds"),
            artifacts_dir: dir_path.join("artifacts"),
            deploy: Default::default(),
            builds: Default::default(),
        });
        runtime.set_rules(Arc::new(rules), Arc::new(Default::default()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..publishers {
            let runtime = runtime.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = p;
                while i < total {
                    runtime.publish(vec![event(i)]).await.expect("publish");
                    i += publishers;
                }
            }));
        }
        for t in tasks {
            t.await.expect("publisher");
        }
        let stored = start.elapsed();
        let last = store.last_event_id().expect("last id");
        loop {
            if store.cursor("rules", 0).expect("cursor") >= last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let consumed = start.elapsed();
        loop {
            if store.outbox_stats().expect("stats").pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (stored, consumed, start.elapsed())
    });
    let files = std::fs::read_dir(dir.path().join("mail"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!("{total} events from {publishers} publishers");
    println!(
        "floor: one sqlite transaction per event        {:>9.0} events/s",
        floor
    );
    println!(
        "bus: stored (Publish awaited)                  {:>9.0} events/s  ({:.2}x floor)",
        rate(stored),
        rate(stored) / floor
    );
    println!(
        "rules engine: consumed, one mail queued each   {:>9.0} events/s  ({:.2}x floor)",
        rate(consumed),
        rate(consumed) / floor
    );
    println!(
        "notifier: delivered as .eml files ({files:>5})    {:>9.0} events/s  ({:.2}x floor)",
        rate(delivered),
        rate(delivered) / floor
    );
    assert_eq!(files, total, "every event must become exactly one mail");
}
