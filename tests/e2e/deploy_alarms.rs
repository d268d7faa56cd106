//! Deployment alarms with real peers: a real Prometheus server scraping an endpoint the
//! test controls, an HTTP health check, Alertmanager's webhook, and alarms that cannot
//! be read. A firing alarm stops the deployment; the group rolls back when it says
//! `auto-rollback: [alarm]`.

use std::path::Path;
use std::time::Duration;

use crate::deployments::{
    app_work, build_done, revision, server_with_deploy_settings, start_agent, wait_deployment,
};
use crate::harness::*;
use crate::peers::{MetricsEndpoint, Prometheus, WebhookReceiver};

const TOKEN: &str = "alertmanager-test-token-0123456789";

fn server() -> Server {
    server_with_deploy_settings(&format!(
        "  alarm_interval: 1s\n  alertmanager_token: {TOKEN}\n"
    ))
}

/// Pushes the app repository and waits for build `id`.
fn push_and_build(s: &Server, work: &Path, id: i64) {
    s.git(&s.admin, work, &["push", "-q", &s.url("app-site"), "main"])
        .ok();
    assert_eq!(build_done(s, id)["status"], "SUCCEEDED");
}

fn reason(d: &serde_json::Value) -> String {
    d["deployment"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A POST of `body` to the server's HTTP port; answers (status, body).
fn post(s: &Server, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    http_post(s.http_port, path, token, body)
}

/// `deploy create APP GROUP --build BUILD`, waited for to the end.
fn deploy(s: &Server, app: &str, group: &str, build: i64) -> serde_json::Value {
    let out = s
        .ssh(
            &s.admin,
            &format!("deploy create {app} {group} --build {build}"),
        )
        .ok()
        .stdout;
    let id: i64 = out
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no deployment id in {out}"));
    wait_deployment(s, id)
}

/// An Alertmanager webhook notification (version 4) with one alert.
fn notification(status: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"HighLatency\"}}","truncatedAlerts":0,"status":"{status}","receiver":"slipway","groupLabels":{{"alertname":"HighLatency"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://127.0.0.1:9093","alerts":[{{"status":"{status}","labels":{{"alertname":"HighLatency","instance":"web-1"}},"annotations":{{}},"startsAt":"2026-12-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"c0ffee"}}]}}"#
    )
}

/// The error ratio a real Prometheus scrapes from the test crosses the threshold while
/// deployment 2's ValidateService runs: the deployment is stopped, the group rolls back
/// to revision one, and the rollback itself is not stopped by the alarm (it is the cure).
#[test]
fn a_prometheus_alarm_crossing_its_threshold_stops_and_rolls_back() {
    let Some(prometheus) = require_peer("prometheus", "apt-get install prometheus") else {
        return;
    };
    let s = server();
    let app = MetricsEndpoint::start("# TYPE app_error_ratio gauge\napp_error_ratio 0\n");
    let prom = Prometheus::start(&prometheus, &s.scratch("prometheus"), &[app.port]);
    let scraped = eventually(Duration::from_secs(60), || {
        prom.query("app_error_ratio").contains(r#""0"]"#)
    });
    assert!(
        scraped,
        "prometheus never scraped the test's endpoint: {}",
        prom.query("up")
    );
    s.push_admin_file(
        "deploy.yaml",
        &format!(
            "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n        config: all-at-once\n        alarms:\n          - {{ name: errors, prometheus: {{ url: \"{}\", query: \"max(app_error_ratio)\", condition: \"> 0.5\" }} }}\n        auto-rollback: [alarm]\n        bake: 2s\n",
            prom.url()
        ),
    )
    .ok();
    let a = start_agent(&s, "web-1", &["role=web"]);
    let b = start_agent(&s, "web-2", &["role=web"]);
    let work = app_work(&s);
    revision(&s, &work, "version one", true);
    push_and_build(&s, &work, 1);
    let first = deploy(&s, "web", "prod", 1);
    assert_eq!(first["deployment"]["status"], "SUCCEEDED", "{first:#}");

    // Revision two validates slowly, so the deployment is still running when the
    // errors rise.
    commit_file(
        &s,
        &s.admin,
        &work,
        "site/index.html",
        "version two\n",
        "two",
    );
    commit_file(
        &s,
        &s.admin,
        &work,
        "scripts/validate.sh",
        "#!/bin/sh\ntouch \"$SLIPWAY_AGENT_ROOT/validating\"\nsleep 6\nexit 0\n",
        "slow validate",
    );
    push_and_build(&s, &work, 2);
    s.ssh(&s.admin, "deploy create web prod --build 2").ok();
    let validating = eventually(Duration::from_secs(60), || {
        a.root.join("validating").exists() || b.root.join("validating").exists()
    });
    assert!(
        validating,
        "no host reached ValidateService\n{}",
        s.log_text()
    );
    app.set("# TYPE app_error_ratio gauge\napp_error_ratio 0.9\n");
    let stopped = wait_deployment(&s, 2);
    assert_eq!(stopped["deployment"]["status"], "STOPPED", "{stopped:#}");
    let why = reason(&stopped);
    assert!(why.contains("alarm `errors` is firing"), "{why}");
    assert!(why.contains("max(app_error_ratio) = 0.9 (> 0.5)"), "{why}");
    assert!(why.contains("rolling back"), "{why}");
    let rollback = stopped["deployment"]["rollback_id"].as_i64().unwrap();
    let rolled = wait_deployment(&s, rollback);
    assert_eq!(rolled["deployment"]["status"], "SUCCEEDED", "{rolled:#}");
    assert_eq!(rolled["deployment"]["rollback_of"], 2);
    for agent in [&a, &b] {
        let page = std::fs::read_to_string(agent.root.join("srv/web/index.html")).unwrap();
        assert_eq!(page, "version one\n");
    }
    assert!(
        s.metric(r#"slipway_deploy_alarm_readings_total{kind="prometheus",result="firing"}"#)
            >= 1.0
    );
    assert!(
        s.metric(r#"slipway_deploy_alarm_readings_total{kind="prometheus",result="ok"}"#) >= 1.0
    );
    let events = s
        .ssh(&s.admin, "events --type deployment-state-change --json")
        .ok()
        .stdout;
    assert!(events.contains("alarm `errors` is firing"), "{events}");
}

/// An HTTP health check and an Alertmanager alert each stop a deployment; an alarm that
/// cannot be read stops it unless the group ignores poll failures; the webhook wants
/// its token.
#[test]
fn http_and_alertmanager_alarms_and_alarms_that_cannot_be_read() {
    let s = server();
    let health = WebhookReceiver::start();
    s.push_admin_file(
        "deploy.yaml",
        &format!(
            r#"applications:
  web:
    groups:
      prod:
        tags: [["role=web"]]
        alarms:
          - {{ name: health, http: {{ url: "{}", expect: 200, timeout: 2s }} }}
          - {{ name: paged, alertmanager: {{ alert: HighLatency }} }}
        auto-rollback: [alarm]
        bake: 1s
      blind:
        tags: [["role=canary"]]
        alarms:
          - {{ name: gone, prometheus: {{ url: "http://127.0.0.1:1", query: up, condition: "< 1" }} }}
        auto-rollback: [alarm]
      tolerant:
        tags: [["role=canary"]]
        file-exists-behavior: OVERWRITE
        alarms:
          - {{ name: gone, prometheus: {{ url: "http://127.0.0.1:1", query: up, condition: "< 1" }} }}
        ignore-alarm-poll-failure: true
"#,
            health.url("/healthz")
        ),
    )
    .ok();
    let web = start_agent(&s, "web-1", &["role=web"]);
    let _canary = start_agent(&s, "canary-1", &["role=canary"]);
    let work = app_work(&s);
    revision(&s, &work, "version one", true);
    push_and_build(&s, &work, 1);
    commit_file(
        &s,
        &s.admin,
        &work,
        "site/index.html",
        "version two\n",
        "two",
    );
    push_and_build(&s, &work, 2);

    let first = deploy(&s, "web", "prod", 1);
    assert_eq!(first["deployment"]["status"], "SUCCEEDED", "{first:#}");
    let checks = health.requests();
    assert!(
        checks
            .iter()
            .any(|r| r.method == "GET" && r.path == "/healthz"),
        "the health check was never read: {checks:?}"
    );

    // The webhook: off without the token, on with it.
    let (code, body) = post(&s, "/alertmanager", None, &notification("firing"));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    let (code, body) = post(
        &s,
        "/alertmanager",
        Some("wrong-token-0123456789"),
        &notification("firing"),
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&s, "/alertmanager", Some(TOKEN), "{not json");
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&s, "/alertmanager", Some(TOKEN), &notification("firing"));
    assert_eq!(code, 200, "{body}");

    let paged = deploy(&s, "web", "prod", 2);
    assert_eq!(paged["deployment"]["status"], "STOPPED", "{paged:#}");
    let why = reason(&paged);
    assert!(
        why.contains(
            "alarm `paged` is firing: Alertmanager reports 1 firing alert(s) named HighLatency"
        ),
        "{why}"
    );
    assert!(why.contains(r#"instance="web-1""#), "{why}");
    let rollback = paged["deployment"]["rollback_id"].as_i64().unwrap();
    assert_eq!(
        wait_deployment(&s, rollback)["deployment"]["status"],
        "SUCCEEDED"
    );

    // Resolved: the alert no longer counts; now the health check fails.
    let (code, _) = post(&s, "/alertmanager", Some(TOKEN), &notification("resolved"));
    assert_eq!(code, 200);
    health.answer(503);
    let unhealthy = deploy(&s, "web", "prod", 2);
    assert_eq!(
        unhealthy["deployment"]["status"], "STOPPED",
        "{unhealthy:#}"
    );
    let why = reason(&unhealthy);
    assert!(why.contains("alarm `health` is firing"), "{why}");
    assert!(why.contains("/healthz answered 503, expected 200"), "{why}");
    assert!(!why.contains("HighLatency"), "{why}");
    let rollback = unhealthy["deployment"]["rollback_id"].as_i64().unwrap();
    assert_eq!(
        wait_deployment(&s, rollback)["deployment"]["status"],
        "SUCCEEDED"
    );
    let page = std::fs::read_to_string(web.root.join("srv/web/index.html")).unwrap();
    assert_eq!(
        page, "version one\n",
        "the stopped deployments were rolled back"
    );

    // Prometheus is not there: the alarm cannot be read.
    let blind = deploy(&s, "web", "blind", 1);
    assert_eq!(blind["deployment"]["status"], "STOPPED", "{blind:#}");
    let why = reason(&blind);
    assert!(why.contains("alarm `gone` could not be read"), "{why}");
    assert!(why.contains("ignore-alarm-poll-failure"), "{why}");
    assert!(why.contains("nothing to roll back to"), "{why}");
    let tolerant = deploy(&s, "web", "tolerant", 1);
    assert_eq!(
        tolerant["deployment"]["status"], "SUCCEEDED",
        "{tolerant:#}"
    );
    assert!(
        s.metric(r#"slipway_deploy_alarm_readings_total{kind="prometheus",result="unreadable"}"#)
            >= 1.0
    );
}

/// Without `deploy.alertmanager_token` the webhook is off and says how to turn it on.
#[test]
fn the_alertmanager_webhook_is_off_without_a_token() {
    let s = Server::start();
    let (code, body) = post(&s, "/alertmanager", Some(TOKEN), &notification("firing"));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("deploy.alertmanager_token"), "{body}");
}
