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
    assert!(s.metric(r#"slipway_deliveries_total{kind="email",result="sent"}"#) >= 2.0);
    // Nothing for the admin repository's own push: the rule matches app-* only.
    assert!(mails
        .iter()
        .all(|m| !m.header("Subject").unwrap().contains(" admin ")));
}
