//! Deploy agents: registration tokens, registration over HTTP, polling, listing and
//! removal.

use std::time::Duration;

use crate::deployments::agent_binary;
use crate::harness::*;

fn post(port: u16, path: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    http_post(port, path, bearer, body)
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

/// The real agent registers with a token, keeps its credential private, polls (so it
/// shows as connected), and stops with a clear message once it is removed.
#[test]
fn the_agent_registers_polls_and_stops_when_removed() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let token = s
        .ssh(&s.admin, "agent token create --tag role=api")
        .ok()
        .stdout
        .lines()
        .next()
        .unwrap()
        .to_string();
    let state = s.scratch("agent-state");
    let server = format!("http://127.0.0.1:{}", s.http_port);
    let register = |token: &str| {
        run(std::process::Command::new(agent_binary())
            .args([
                "register", "--server", &server, "--token", token, "--name", "api-1",
            ])
            .arg("--state")
            .arg(&state))
    };
    register(&token)
        .ok()
        .says("registered as api-1 with tags [role=api]");
    let mode = std::fs::metadata(state.join("agent.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    register(&token).fails().says("already used");

    let mut agent = std::process::Command::new(agent_binary())
        .args(["run", "--state"])
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the agent starts");
    let connected = eventually(Duration::from_secs(30), || {
        let list = s.ssh(&s.admin, "agent list --json").ok().stdout;
        list.contains("\"api-1\"") && list.contains("\"connected\": true")
    });
    assert!(connected, "{}", s.log_text());
    s.ssh(&s.admin, "agent remove api-1").ok();
    // The poll in flight ends within its 20 s; the next one is refused.
    let ended = eventually(Duration::from_secs(60), || {
        agent.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = agent.kill();
    }
    let out = agent.wait_with_output().unwrap();
    assert!(ended, "the agent kept running after its removal");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no longer accepts this agent's credential"),
        "{err}"
    );
}
