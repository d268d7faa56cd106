//! Notifications: rules.yaml, mail through a real SMTP server (aiosmtpd), the durable
//! outbox across SMTP outages and server crashes, and signed webhooks.

use std::time::Duration;

use crate::harness::*;
use crate::peers::*;

/// slipway.yaml with mail going to `smtp_port` and quick retries.
pub fn mail_settings(smtp_port: u16, max_attempts: u32) -> String {
    format!(
        "{}smtp:\n  host: 127.0.0.1\n  port: {smtp_port}\n  tls: none\nnotify:\n  from: slipway@ci.example\n  max_attempts: {max_attempts}\n  first_retry: 200ms\n  max_retry: 1s\nwebhooks:\n  allow: [127.0.0.1]\n  timeout: 3s\n",
        settings_yaml(&[])
    )
}

/// rules.yaml mailing every push to team@example.com and to alice.
pub const MAIL_PUSHES: &str = r#"rules:
  - name: tell-the-team
    match: { source: git, type: push, repo: "app-*" }
    targets:
      - email: [team@example.com, "user:alice"]
"#;

#[test]
fn a_push_is_mailed_through_smtp_to_addresses_and_users() {
    let Some(python) = python_with_aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(&python, dir.path(), 0, 0);
    let s = Server::start_with(Options {
        settings: Some(mail_settings(sink.port, 5)),
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    let work = s.local_repo(&s.alice, "w");
    commit_file(
        &s,
        &s.alice,
        &work,
        "src/login.rs",
        "fn main() {}\n",
        "Fix the login page",
    );
    s.git(&s.alice, &work, &["push", &s.url("app-web"), "main"])
        .ok();
    let mails = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2, "one per recipient: {mails:?}");
    let mut to: Vec<String> = mails.iter().filter_map(|m| m.header("To")).collect();
    to.sort();
    assert_eq!(to, vec!["alice@example.com", "team@example.com"]);
    let m = &mails[0];
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("[slipway] alice pushed 2 commits to app-web main")
    );
    assert_eq!(m.header("From").as_deref(), Some("slipway@ci.example"));
    let id = m.header("Message-ID").unwrap();
    assert!(
        id.starts_with("<slipway.") && id.ends_with("@ci.example>"),
        "{id}"
    );
    let body = m.body();
    assert!(
        body.contains("alice pushed 2 commits to branch main in app-web."),
        "{body}"
    );
    assert!(body.contains("Fix the login page"), "{body}");
    assert!(
        body.contains(&format!(
            "ssh -p {} git@127.0.0.1 events --repo app-web",
            s.ssh_port
        )),
        "{body}"
    );
    // The sink stores a mail before it answers 250, so the count may lag a moment.
    wait_metric(
        &s,
        r#"slipway_deliveries_total{kind="email",result="sent"}"#,
        2.0,
    );
    // Nothing for the admin repository's own push: the rule matches app-* only.
    assert!(mails
        .iter()
        .all(|m| !m.header("Subject").unwrap().contains(" admin ")));
}

// ---- helpers --------------------------------------------------------------------------

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// alice creates `repo` (app-*) with two commits on main and pushes it.
fn push_as_alice(s: &Server, repo: &str) {
    let work = s.local_repo(&s.alice, &format!("w-{repo}"));
    commit_file(
        s,
        &s.alice,
        &work,
        "src/lib.rs",
        "pub fn f() {}\n",
        "Add the library",
    );
    s.git(&s.alice, &work, &["push", &s.url(repo), "main"]).ok();
}

/// Whether `/metrics` has the sample `name{labels}` (whatever its value).
fn has_sample(s: &Server, sample: &str) -> bool {
    s.metrics()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.rsplit_once(' ').is_some_and(|(name, _)| name == sample))
}

/// Polls a metric until it reaches `at_least` (generous bound); panics with the log if not.
#[track_caller]
fn wait_metric(s: &Server, sample: &str, at_least: f64) {
    if !eventually(Duration::from_secs(60), || s.metric(sample) >= at_least) {
        panic!(
            "{sample} never reached {at_least} (now {}); server log:\n{}",
            s.metric(sample),
            s.log_text()
        );
    }
}

/// Polls until the outbox is empty.
#[track_caller]
fn wait_outbox_empty(s: &Server) {
    if !eventually(Duration::from_secs(60), || {
        s.metric("slipway_outbox_depth") == 0.0
    }) {
        panic!(
            "the outbox never emptied (depth {}); server log:\n{}",
            s.metric("slipway_outbox_depth"),
            s.log_text()
        );
    }
}

/// The events of `kind` as the admin sees them (`events --json --type KIND`).
fn events_of_type(s: &Server, kind: &str) -> Vec<serde_json::Value> {
    let out = s
        .ssh(&s.admin, &format!("events --json --type {kind}"))
        .ok();
    match serde_json::from_str::<serde_json::Value>(&out.stdout) {
        Ok(serde_json::Value::Array(events)) => events,
        _ => panic!("events --json did not print a JSON array:\n{out}"),
    }
}

/// Waits for at least `n` `notify/delivery-failed` events; returns them.
#[track_caller]
fn wait_delivery_failed(s: &Server, n: usize) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let found = eventually(Duration::from_secs(60), || {
        events = events_of_type(s, "delivery-failed");
        events.len() >= n
    });
    assert!(
        found,
        "expected {n} delivery-failed events, got {events:#?}; server log:\n{}",
        s.log_text()
    );
    events
}

/// Whether the process `pid` (a child of this test) has exited (gone or a zombie).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// The `.eml` files written under DATA/mail, by name.
fn mail_files(s: &Server) -> Vec<Mail> {
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(s.data.join("mail"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.retain(|p| {
        p.extension().is_some_and(|e| e == "eml")
            && !p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
    });
    names.sort();
    names
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|raw| Mail {
            raw: String::from_utf8_lossy(&raw).into_owned(),
        })
        .collect()
}

/// Sorted `To:` headers.
fn recipients(mails: &[Mail]) -> Vec<String> {
    let mut to: Vec<String> = mails.iter().filter_map(|m| m.header("To")).collect();
    to.sort();
    to
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// rules.yaml sending every app-* push to one webhook.
fn webhook_rules(url: &str, secret_param: Option<&str>) -> String {
    let secret = secret_param
        .map(|p| format!(", secret-param: {p}"))
        .unwrap_or_default();
    format!(
        "rules:\n  - name: hook\n    match: {{ source: git, type: push, repo: \"app-*\" }}\n    targets:\n      - webhook: {{ url: \"{url}\"{secret} }}\n"
    )
}

/// slipway.yaml with quick retries, mail to files, and no `webhooks.allow`.
fn settings_without_allow(max_attempts: u32) -> String {
    format!(
        "{}notify:\n  from: slipway@ci.example\n  max_attempts: {max_attempts}\n  first_retry: 200ms\n  max_retry: 1s\nwebhooks:\n  timeout: 3s\n",
        settings_yaml(&[])
    )
}

// ---- the outbox and SMTP ----------------------------------------------------------------

#[test]
fn mail_queued_while_smtp_is_down_is_delivered_once_it_is_up() {
    let Some(python) = python_with_aiosmtpd() else {
        return;
    };
    let port = free_port();
    let s = Server::start_with(Options {
        settings: Some(mail_settings(port, 20)),
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    wait_metric(
        &s,
        r#"slipway_deliveries_total{kind="email",result="retry"}"#,
        1.0,
    );
    wait_metric(&s, "slipway_outbox_depth", 1.0);

    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(&python, dir.path(), port, 0);
    let mails = sink.wait_for(2, Duration::from_secs(60));
    assert_eq!(
        recipients(&mails),
        vec!["alice@example.com", "team@example.com"],
        "{mails:?}\n{}",
        s.log_text()
    );
    wait_outbox_empty(&s);
    assert_eq!(sink.mails().len(), 2, "{:?}", sink.mails());
    assert!(s.metric(r#"slipway_deliveries_total{kind="email",result="sent"}"#) >= 2.0);
    assert_eq!(
        s.metric(r#"slipway_deliveries_total{kind="email",result="failed"}"#),
        0.0
    );
    sink.stop();
}

#[test]
fn temporary_smtp_errors_are_retried_until_the_mail_is_accepted() {
    let Some(python) = python_with_aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(&python, dir.path(), 0, 2);
    let s = Server::start_with(Options {
        settings: Some(mail_settings(sink.port, 20)),
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    let mails = sink.wait_for(2, Duration::from_secs(60));
    assert_eq!(
        recipients(&mails),
        vec!["alice@example.com", "team@example.com"],
        "{mails:?}\n{}",
        s.log_text()
    );
    wait_outbox_empty(&s);
    assert_eq!(sink.mails().len(), 2);
    assert!(
        s.metric(r#"slipway_deliveries_total{kind="email",result="retry"}"#) >= 2.0,
        "two 451 answers mean two retries:\n{}",
        s.metrics()
    );
    assert!(s.metric(r#"slipway_deliveries_total{kind="email",result="sent"}"#) >= 2.0);
    assert_eq!(
        s.metric(r#"slipway_deliveries_total{kind="email",result="failed"}"#),
        0.0
    );
}

#[test]
fn mail_is_given_up_after_max_attempts_with_a_delivery_failed_event() {
    let port = free_port();
    let s = Server::start_with(Options {
        settings: Some(mail_settings(port, 2)),
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    let events = wait_delivery_failed(&s, 2);
    let mut targets = Vec::new();
    for e in &events {
        assert_eq!(e["source"], "notify", "{e:#}");
        assert_eq!(e["type"], "delivery-failed", "{e:#}");
        let d = &e["detail"];
        assert_eq!(d["kind"], "email", "{e:#}");
        assert_eq!(d["rule"], "tell-the-team", "{e:#}");
        assert_eq!(d["attempts"], 2, "{e:#}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains("SMTP"), "the error says what failed: {e:#}");
        assert!(
            d["message_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("<slipway.")),
            "{e:#}"
        );
        targets.push(d["target"].as_str().unwrap_or_default().to_string());
    }
    targets.sort();
    assert_eq!(targets, vec!["alice@example.com", "team@example.com"]);
    // The human form names the error too.
    s.ssh(&s.admin, "events --type delivery-failed")
        .ok()
        .says("notify/delivery-failed")
        .says("SMTP");
    assert!(s.metric(r#"slipway_deliveries_total{kind="email",result="failed"}"#) >= 1.0);
    wait_outbox_empty(&s);
}

#[test]
fn mail_in_the_outbox_survives_kill_9_and_is_delivered_once_per_recipient() {
    let Some(python) = python_with_aiosmtpd() else {
        return;
    };
    let port = free_port();
    let mut s = Server::start_with(Options {
        settings: Some(mail_settings(port, 1000)),
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    wait_metric(
        &s,
        r#"slipway_deliveries_total{kind="email",result="retry"}"#,
        1.0,
    );
    s.kill9();

    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(&python, dir.path(), port, 0);
    s.spawn();
    let mails = sink.wait_for(2, Duration::from_secs(60));
    assert_eq!(
        recipients(&mails),
        vec!["alice@example.com", "team@example.com"],
        "{mails:?}\n{}",
        s.log_text()
    );
    wait_outbox_empty(&s);
    // Nothing more comes: one message per recipient.
    std::thread::sleep(Duration::from_secs(2));
    let mails = sink.mails();
    assert_eq!(
        recipients(&mails),
        vec!["alice@example.com", "team@example.com"],
        "{mails:?}"
    );
}

#[test]
fn a_crash_between_sending_and_recording_resends_with_the_same_message_id() {
    let Some(python) = python_with_aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(&python, dir.path(), 0, 0);
    let mut s = Server::start_with(Options {
        settings: Some(mail_settings(sink.port, 5)),
        env: vec![("SLIPWAY_FAILPOINTS", "notify-abort-after-send".into())],
        ..Options::default()
    });
    let rules = r#"rules:
  - name: tell-the-team
    match: { source: git, type: push, repo: "app-*" }
    targets:
      - email: [team@example.com]
"#;
    s.push_admin_file("rules.yaml", rules)
        .ok()
        .says("configuration applied");
    // The server aborts right after sending, which on a busy machine can happen before
    // this push's SSH session has closed: the push itself may then report a disconnect
    // (its refs were already updated, as the mail proves).
    let work = s.local_repo(&s.alice, "w-app-web");
    commit_file(
        &s,
        &s.alice,
        &work,
        "src/lib.rs",
        "pub fn f() {}\n",
        "Add the library",
    );
    s.git(&s.alice, &work, &["push", &s.url("app-web"), "main"]);
    let first = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(first.len(), 1, "{}", s.log_text());
    let pid = s.pid();
    assert!(
        eventually(Duration::from_secs(30), || exited(pid)),
        "the server did not abort after sending; log:\n{}",
        s.log_text()
    );
    s.kill9();
    assert!(
        s.log_text().contains("notify-abort-after-send"),
        "{}",
        s.log_text()
    );

    s.spawn();
    sink.wait_for(2, Duration::from_secs(60));
    wait_outbox_empty(&s);
    // Nothing more comes: exactly one extra copy.
    std::thread::sleep(Duration::from_secs(2));
    let mails = sink.mails();
    assert_eq!(
        mails.len(),
        2,
        "sent again once after the crash: {mails:?}\n{}",
        s.log_text()
    );
    let ids: Vec<Option<String>> = mails.iter().map(|m| m.header("Message-ID")).collect();
    assert!(ids[0].is_some(), "{mails:?}");
    assert_eq!(ids[0], ids[1], "the resent copy keeps its Message-ID");
    assert_eq!(
        recipients(&mails),
        vec!["team@example.com", "team@example.com"]
    );
    assert_eq!(mails[0].header("Subject"), mails[1].header("Subject"));
}

#[test]
fn without_smtp_mail_is_written_as_eml_files() {
    let s = Server::start();
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    assert!(
        eventually(Duration::from_secs(60), || mail_files(&s).len() >= 2),
        "no .eml files under {}; log:\n{}",
        s.data.join("mail").display(),
        s.log_text()
    );
    let mails = mail_files(&s);
    assert_eq!(
        recipients(&mails),
        vec!["alice@example.com", "team@example.com"],
        "{mails:?}"
    );
    for m in &mails {
        assert_eq!(
            m.header("Subject").as_deref(),
            Some("[slipway] alice pushed 2 commits to app-web main"),
            "{}",
            m.raw
        );
        let id = m.header("Message-ID").unwrap_or_default();
        assert!(
            id.starts_with("<slipway.") && id.ends_with("@localhost>"),
            "{id}"
        );
        assert_eq!(m.header("From").as_deref(), Some("slipway@localhost"));
        let body = m.body();
        assert!(
            body.contains("alice pushed 2 commits to branch main in app-web."),
            "{body}"
        );
        assert!(body.contains("Add the library"), "{body}");
    }
    assert_ne!(
        mails[0].header("Message-ID"),
        mails[1].header("Message-ID"),
        "each recipient's message has its own id"
    );
    wait_outbox_empty(&s);
}

// ---- webhooks ---------------------------------------------------------------------------

#[test]
fn the_test_hmac_matches_rfc_4231() {
    // Test case 2 of RFC 4231, and a key longer than a block (test case 6).
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn a_webhook_is_a_signed_json_post_of_the_event() {
    let receiver = WebhookReceiver::start();
    let s = Server::start_with(Options {
        settings: Some(mail_settings(free_port(), 5)),
        ..Options::default()
    });
    s.ssh_with_stdin(&s.admin, "param put /hooks/secret --secure", b"s3cret")
        .ok()
        .says("stored /hooks/secret (secure)");
    s.push_admin_file(
        "rules.yaml",
        &webhook_rules(&receiver.url("/slipway"), Some("/hooks/secret")),
    )
    .ok()
    .says("configuration applied");
    push_as_alice(&s, "app-web");
    assert!(
        eventually(Duration::from_secs(60), || !receiver.requests().is_empty()),
        "no webhook arrived; log:\n{}",
        s.log_text()
    );
    wait_outbox_empty(&s);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/slipway");
    assert_eq!(r.header("X-Slipway-Event"), Some("push"));
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    assert!(
        r.header("X-Slipway-Delivery")
            .is_some_and(|d| d.starts_with("<slipway.")),
        "{r:?}"
    );
    let expected = format!("sha256={}", hex(&hmac_sha256(b"s3cret", &r.body)));
    assert_eq!(
        r.header("X-Slipway-Signature-256"),
        Some(expected.as_str()),
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    let event: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
    assert_eq!(event["source"], "git", "{event:#}");
    assert_eq!(event["type"], "push", "{event:#}");
    assert_eq!(event["repo"], "app-web", "{event:#}");
    assert_eq!(event["ref"], "refs/heads/main", "{event:#}");
    assert_eq!(event["actor"], "alice", "{event:#}");
    assert_eq!(event["detail"]["commits"], 2, "{event:#}");
    assert!(event["id"].is_i64(), "{event:#}");
    assert!(s.metric(r#"slipway_deliveries_total{kind="webhook",result="sent"}"#) >= 1.0);
}

#[test]
fn a_webhook_answered_with_500_is_retried_until_it_succeeds() {
    let receiver = WebhookReceiver::start();
    receiver.answer(500);
    let s = Server::start_with(Options {
        settings: Some(mail_settings(free_port(), 1000)),
        ..Options::default()
    });
    s.push_admin_file("rules.yaml", &webhook_rules(&receiver.url("/h"), None))
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    assert!(
        eventually(Duration::from_secs(60), || receiver.requests().len() >= 2),
        "the webhook was not retried: {:?}; log:\n{}",
        receiver.requests(),
        s.log_text()
    );
    assert!(s.metric(r#"slipway_deliveries_total{kind="webhook",result="retry"}"#) >= 1.0);
    assert_eq!(
        s.metric(r#"slipway_deliveries_total{kind="webhook",result="sent"}"#),
        0.0
    );
    receiver.answer(200);
    wait_metric(
        &s,
        r#"slipway_deliveries_total{kind="webhook",result="sent"}"#,
        1.0,
    );
    wait_outbox_empty(&s);
    let requests = receiver.requests();
    assert!(requests.len() >= 3, "{requests:?}");
    // Every attempt is the same delivery of the same body.
    let first = &requests[0];
    for r in &requests {
        assert_eq!(
            r.header("X-Slipway-Delivery"),
            first.header("X-Slipway-Delivery")
        );
        assert_eq!(r.body, first.body);
    }
    // Once answered 200, it is not sent again.
    let after = receiver.requests().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.requests().len(), after);
    assert!(events_of_type(&s, "delivery-failed").is_empty());
}

#[test]
fn a_webhook_answered_with_404_is_given_up_at_once() {
    let receiver = WebhookReceiver::start();
    receiver.answer(404);
    let s = Server::start_with(Options {
        settings: Some(mail_settings(free_port(), 10)),
        ..Options::default()
    });
    let url = receiver.url("/gone");
    s.push_admin_file("rules.yaml", &webhook_rules(&url, None))
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    let events = wait_delivery_failed(&s, 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    let d = &events[0]["detail"];
    assert_eq!(d["kind"], "webhook", "{d:#}");
    assert_eq!(d["target"], url.as_str(), "{d:#}");
    assert_eq!(d["attempts"], 1, "given up at the first answer: {d:#}");
    assert!(
        d["error"].as_str().is_some_and(|e| e.contains("404")),
        "{d:#}"
    );
    assert_eq!(receiver.requests().len(), 1, "{:?}", receiver.requests());
    assert_eq!(
        s.metric(r#"slipway_deliveries_total{kind="webhook",result="retry"}"#),
        0.0
    );
    assert!(s.metric(r#"slipway_deliveries_total{kind="webhook",result="failed"}"#) >= 1.0);
    wait_outbox_empty(&s);
}

#[test]
fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
    let receiver = WebhookReceiver::start();
    let s = Server::start_with(Options {
        settings: Some(settings_without_allow(3)),
        ..Options::default()
    });
    let url = receiver.url("/internal");
    s.push_admin_file("rules.yaml", &webhook_rules(&url, None))
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    let events = wait_delivery_failed(&s, 1);
    let d = &events[0]["detail"];
    assert_eq!(d["target"], url.as_str(), "{d:#}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused"), "{d:#}");
    assert!(error.contains("webhooks.allow"), "{d:#}");
    assert!(error.contains("127.0.0.1"), "{d:#}");
    wait_outbox_empty(&s);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        receiver.requests().is_empty(),
        "the receiver was reached: {:?}",
        receiver.requests()
    );
}

// ---- rules.yaml validation ----------------------------------------------------------------

#[test]
fn bad_rules_yaml_is_refused_with_its_line_and_the_old_rules_stay() {
    let s = Server::start();
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    let rule = |targets: &str| {
        format!(
            "rules:\n  - name: tell-the-team\n    match: {{ source: git, type: push, repo: \"app-*\" }}\n    targets:\n{targets}"
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "an unknown user",
            rule("      - email: [team@example.com, \"user:carol\"]\n"),
            "\"user:carol\"",
            "unknown user `carol`",
        ),
        (
            "a user without email",
            rule("      - email:\n          - team@example.com\n          - \"user:bob\"\n"),
            "\"user:bob\"",
            "no `email`",
        ),
        (
            "a bad URL",
            rule("      - webhook: { url: \"not a url\" }\n"),
            "\"not a url\"",
            "not a URL",
        ),
        (
            "a bad schedule",
            format!(
                "{MAIL_PUSHES}  - name: tidy\n    schedule: \"each 6h\"\n    action:\n      delete-stale-branches: {{ older-than: 30d }}\n"
            ),
            "\"each 6h\"",
            "every DURATION",
        ),
        (
            "a duplicate rule name",
            format!(
                "{MAIL_PUSHES}  - name: tell-the-team\n    match: {{ source: git }}\n    targets:\n      - email: [ops@example.com]\n"
            ),
            "tell-the-team\n    match: { source: git }",
            "already a rule named `tell-the-team`",
        ),
        (
            "an unknown field",
            format!("{MAIL_PUSHES}    colour: blue\n"),
            "colour:",
            "unknown field `colour`",
        ),
    ];
    for (what, yaml, offending, words) in cases {
        let at = yaml
            .find(offending)
            .unwrap_or_else(|| panic!("{what}: {offending:?} is not in the file"));
        // Where the offending value starts: LINE and COL, both from 1.
        let line = yaml[..at].matches('\n').count() + 1;
        let col = at - yaml[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
        let out = s.push_admin_file("rules.yaml", &yaml).fails();
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let rest = text
            .lines()
            .find_map(|l| l.split_once("remote: slipway: rules.yaml:").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("{what}: no `rules.yaml:LINE:COL:` in:\n{out}"));
        let mut parts = rest.splitn(3, ':');
        let got_line: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let column: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let message = parts.next().unwrap_or("");
        assert_eq!(
            got_line, line,
            "{what}: wrong line in:\n{out}\n--- file ---\n{yaml}"
        );
        assert_eq!(
            column, col,
            "{what}: the column does not point at the value in:\n{out}\n--- file ---\n{yaml}"
        );
        assert!(
            message.contains(words),
            "{what}: the message lacks {words:?}:\n{out}"
        );
        out.says("the configuration was not changed")
            .never_says("configuration applied");
    }
    // The rules in force are still the first ones: a push is mailed to both.
    push_as_alice(&s, "app-web");
    assert!(
        eventually(Duration::from_secs(60), || mail_files(&s).len() >= 2),
        "the old rules no longer mail; log:\n{}",
        s.log_text()
    );
    wait_outbox_empty(&s);
    let mails = mail_files(&s);
    assert_eq!(
        recipients(&mails),
        vec!["alice@example.com", "team@example.com"],
        "{mails:?}"
    );
}

// ---- parameters -------------------------------------------------------------------------

#[test]
fn secure_parameters_are_sealed_at_rest_and_need_param_permissions() {
    let s = Server::start();
    let secret = "pa55-Wurd-7f3c91e2-never-in-plaintext";
    s.ssh_with_stdin(
        &s.admin,
        "param put /hooks/secret --secure",
        format!("{secret}\n").as_bytes(),
    )
    .ok()
    .says("stored /hooks/secret (secure)");
    s.ssh_with_stdin(&s.admin, "param put /team/plain", b"visible")
        .ok()
        .says("stored /team/plain");

    let got = s.ssh(&s.admin, "param get /hooks/secret").ok();
    assert_eq!(got.stdout, format!("{secret}\n"), "{got}");
    s.ssh(&s.admin, "param get /team/plain")
        .ok()
        .says("visible");
    let list = s.ssh(&s.admin, "param list").ok();
    let secure_line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("/hooks/secret"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(secure_line.contains("(secure)"), "{list}");
    let plain_line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("/team/plain"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(!plain_line.contains("(secure)"), "{list}");
    list.never_says(secret);

    // Not in the database (nor its write-ahead log) in plaintext.
    for name in ["slipway.db", "slipway.db-wal", "slipway.db-journal"] {
        let path = s.data.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            assert_ne!(name, "slipway.db", "no database at {}", path.display());
            continue;
        };
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret in plaintext",
            path.display()
        );
    }
    assert!(!s.log_text().contains(secret), "the log holds the secret");

    // alice, a developer, may neither read nor write parameters.
    s.ssh(&s.alice, "param get /hooks/secret")
        .fails()
        .says("param:read")
        .never_says(secret);
    s.ssh_with_stdin(&s.alice, "param put /hooks/secret --secure", b"mine")
        .fails()
        .says("param:write");
    s.ssh_with_stdin(&s.alice, "param delete /hooks/secret", b"")
        .fails()
        .says("param:write");
    s.ssh(&s.alice, "param list")
        .ok()
        .never_says("/hooks/secret");
    // Still the admin's value.
    let got = s.ssh(&s.admin, "param get /hooks/secret").ok();
    assert_eq!(got.stdout, format!("{secret}\n"), "{got}");

    s.ssh(&s.admin, "param delete /hooks/secret")
        .ok()
        .says("deleted /hooks/secret");
    s.ssh(&s.admin, "param get /hooks/secret")
        .fails()
        .says("no parameter `/hooks/secret`");
    s.ssh(&s.admin, "param list")
        .ok()
        .never_says("/hooks/secret")
        .says("/team/plain");
}

// ---- metrics ----------------------------------------------------------------------------

#[test]
fn metrics_count_events_and_show_the_outbox_after_mail() {
    let s = Server::start();
    s.push_admin_file("rules.yaml", MAIL_PUSHES)
        .ok()
        .says("configuration applied");
    push_as_alice(&s, "app-web");
    wait_metric(
        &s,
        r#"slipway_deliveries_total{kind="email",result="sent"}"#,
        2.0,
    );
    assert_eq!(mail_files(&s).len(), 2);
    assert!(s.metric(r#"slipway_events_total{source="git",type="push"}"#) >= 1.0);
    for sample in [
        "slipway_outbox_depth",
        "slipway_outbox_oldest_age_seconds",
        r#"slipway_actor_mailbox_depth{actor="bus"}"#,
    ] {
        assert!(has_sample(&s, sample), "{sample} missing:\n{}", s.metrics());
    }
    wait_outbox_empty(&s);
    assert_eq!(s.metric("slipway_outbox_oldest_age_seconds"), 0.0);
}
