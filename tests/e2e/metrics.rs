//! `/metrics` and `/healthz`, checked by Prometheus's own tools and scraped by a real
//! Prometheus server (Debian package `prometheus`; skipped when absent unless
//! SLIPWAY_REQUIRE_PEERS=1).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Does one of everything the metrics count, so every family has samples.
fn exercise(s: &Server) {
    s.ssh(&s.admin, "whoami").ok();
    s.ssh(&s.mallory, "whoami").fails();
    s.ssh(&s.admin, "frobnicate").fails();
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-m"), "main"])
        .ok();
    s.git(
        &s.alice,
        &work,
        &[
            "push",
            "--force",
            &s.url("app-m"),
            "HEAD~0:refs/heads/main",
            ":refs/heads/nothing",
        ],
    );
    let clone = s.scratch("c");
    s.git(&s.bob, &clone, &["clone", "-q", &s.url("app-m"), "x"])
        .ok();
}

#[test]
fn metrics_cover_sessions_auth_git_refs_and_hooks() {
    let s = Server::start();
    exercise(&s);
    let text = s.metrics();
    for family in [
        "slipway_ssh_connections_in_flight",
        "slipway_ssh_sessions_in_flight",
        "slipway_ssh_connection_duration_seconds_bucket",
        "slipway_ssh_session_duration_seconds_bucket",
        "slipway_ssh_auth_attempts_total",
        "slipway_git_operations_total",
        "slipway_git_operation_duration_seconds_bucket",
        "slipway_ref_updates_total",
        "slipway_hook_decision_duration_seconds_bucket",
        "slipway_ssh_commands_total",
    ] {
        assert!(
            text.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    assert!(s.metric(r#"slipway_ssh_auth_attempts_total{method="publickey",result="ok"}"#) >= 3.0);
    assert!(
        s.metric(r#"slipway_ssh_auth_attempts_total{method="publickey",result="unknown-key"}"#)
            >= 1.0
    );
    assert!(
        s.metric(r#"slipway_git_operations_total{result="ok",service="git-receive-pack"}"#) >= 1.0
    );
    assert!(
        s.metric(r#"slipway_git_operations_total{result="ok",service="git-upload-pack"}"#) >= 1.0
    );
    assert!(s.metric(r#"slipway_ref_updates_total{decision="allowed"}"#) >= 1.0);
    assert!(
        s.metric(r#"slipway_hook_decision_duration_seconds_count{phase="pre-receive"}"#) >= 1.0
    );
    assert!(s.metric(r#"slipway_ssh_commands_total{command="unknown",result="failed"}"#) >= 1.0);
    // Everything has ended: nothing is in flight any more.
    assert!(eventually(Duration::from_secs(10), || {
        s.metric("slipway_ssh_sessions_in_flight") == 0.0
    }));
}

#[test]
fn healthz_answers_ok() {
    let s = Server::start();
    let (status, body) = s.http_get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = s.http_get("/nope");
    assert_eq!(status, 404);
}

#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = require_peer("promtool", "apt-get install prometheus") else {
        return;
    };
    let s = Server::start();
    exercise(&s);
    let text = s.metrics();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_real_prometheus_scrapes_slipway() {
    let Some(prometheus) = require_peer("prometheus", "apt-get install prometheus") else {
        return;
    };
    let s = Server::start();
    exercise(&s);
    let dir = s.scratch("prometheus");
    let prom = crate::peers::Prometheus::start(&prometheus, &dir, &[s.http_port]);
    let port = prom.port;
    let healthy = eventually(Duration::from_secs(60), || {
        let (_, body) = http_get(port, "/api/v1/targets");
        body.contains(r#""health":"up""#)
    });
    let query = eventually(Duration::from_secs(30), || {
        let (_, body) = http_get(
            port,
            "/api/v1/query?query=slipway_ssh_auth_attempts_total%7Bresult%3D%22ok%22%7D",
        );
        body.contains(r#""status":"success""#) && body.contains("slipway_ssh_auth_attempts_total")
    });
    let (_, targets) = http_get(port, "/api/v1/targets");
    drop(prom);
    assert!(healthy, "prometheus never saw slipway up: {targets}");
    assert!(query, "prometheus has no slipway samples");
}
