//! Deploy agents: registration tokens, registration over HTTP, polling, listing and
//! removal.

use std::io::{Read, Write};
use std::time::Duration;

use crate::harness::*;

/// A minimal HTTP/1.0 POST of JSON over loopback: (status, body).
fn post(port: u16, path: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A one-time token registers one agent with the token's tags; the credential it gets
/// lets it poll until it is removed; only holders of agent:manage create tokens.
#[test]
fn agents_register_with_one_time_tokens() {
    let s = Server::start();
    s.ssh(&s.alice, "agent token create --tag role=web")
        .fails()
        .says("agent:manage on agent:all is needed");
    s.ssh(&s.admin, "agent token create --tag 'role web'")
        .fails()
        .says("must be KEY=VALUE");
    let out = s
        .ssh(
            &s.admin,
            "agent token create --tag role=web --tag env=prod --expires 10m",
        )
        .ok()
        .stdout;
    let token = out.lines().next().unwrap().to_string();
    assert!(token.starts_with("slwa_"), "{out}");
    assert!(out.contains("valid for 10m"), "{out}");

    let register = |name: &str, token: &str| {
        post(
            s.http_port,
            "/api/agent/register",
            None,
            &format!(r#"{{"token":"{token}","name":"{name}","version":"0.1.0"}}"#),
        )
    };
    let (status, body) = register("web 1", &token);
    assert_eq!(status, 400, "{body}");
    let (status, body) = register("web-1", &token);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let credential = v["credential"].as_str().unwrap().to_string();
    assert_eq!(v["tags"]["role"], "web");
    assert_eq!(v["tags"]["env"], "prod");
    let (status, body) = register("web-2", &token);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("already used"), "{body}");

    let (status, _) = post(
        s.http_port,
        "/api/agent/poll?wait=0",
        Some(&credential),
        "{\"version\":\"0.1.1\"}",
    );
    assert_eq!(status, 204);
    let (status, body) = post(
        s.http_port,
        "/api/agent/poll?wait=0",
        Some("slwc_nope"),
        "{}",
    );
    assert_eq!(status, 401, "{body}");

    s.ssh(&s.bob, "agent list")
        .fails()
        .says("agent:read on agent:all is needed");
    let list = s.ssh(&s.admin, "agent list --json").ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["name"], "web-1", "{list}");
    assert_eq!(v[0]["version"], "0.1.1", "{list}");
    assert_eq!(v[0]["connected"], true, "{list}");
    assert_eq!(v[0]["tags"]["env"], "prod", "{list}");
    s.ssh(&s.admin, "agent list").ok().says("env=prod,role=web");

    s.ssh(&s.admin, "agent remove web-1")
        .ok()
        .says("removed agent web-1");
    let (status, _) = post(
        s.http_port,
        "/api/agent/poll?wait=0",
        Some(&credential),
        "{}",
    );
    assert_eq!(status, 401);
    s.ssh(&s.admin, "agent remove web-1")
        .fails()
        .says("no agent named");
}
