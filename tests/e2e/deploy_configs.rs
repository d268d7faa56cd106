//! Deployment configurations with four real agents: how many hosts each one deploys at
//! once, and when the deployment succeeds or fails (reference §3.5).
//!
//! One server, one revision and one deployment group per case, all selecting the same
//! four agents `h1`..`h4`; the cases run one after another. Each group's first
//! deployment finds every host healthy and without a revision, so hosts go in name
//! order. ApplicationStart sleeps a second, so hosts deployed together really overlap;
//! ValidateService fails on a host whose root holds the marker `fail-GROUP`. How many
//! hosts ran at once is read from what `deploy status ID --json` reports: each host's
//! start and end, and the times its agent took and finished each lifecycle event.

use serde_json::Value;

use crate::deployments::{create_deployment, first_build, start_agent, wait_deployment, Agent};
use crate::harness::*;

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

const BUILDSPEC: &str = "version: 0.2\nphases:\n  build:\n    commands: [\"chmod +x scripts/*.sh\"]\nartifacts:\n  files: ['appspec.yml', 'scripts/*']\n";

const APPSPEC: &str = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n      timeout: 60\n  ValidateService:\n    - location: scripts/validate.sh\n      timeout: 60\n";

const START: &str = "#!/bin/sh\nsleep 1\necho started $DEPLOYMENT_ID\n";

const VALIDATE: &str = "#!/bin/sh\nif [ -e \"$SLIPWAY_AGENT_ROOT/fail-$DEPLOYMENT_GROUP_NAME\" ]; then\n  echo \"$DEPLOYMENT_GROUP_NAME is unhealthy here on purpose\"\n  exit 1\nfi\necho healthy\n";

/// One deployment: a group with `config`, the hosts whose ValidateService fails, and
/// what the user sees afterwards.
struct Case {
    group: &'static str,
    config: &'static str,
    failing: &'static [&'static str],
    status: &'static str,
    /// The most hosts deployed at once (and the first this many start together).
    batch: usize,
    /// Hosts never started because the deployment failed first.
    skipped: &'static [&'static str],
    /// Words of the deployment's reason (failures only).
    reason: &'static str,
}

const CASES: &[Case] = &[
    // One at a time: all hosts but one stay healthy, so a failure of the last host is
    // tolerated, and a failure of any other stops the deployment.
    Case {
        group: "one-last-fails",
        config: "one-at-a-time",
        failing: &["h4"],
        status: "SUCCEEDED",
        batch: 1,
        skipped: &[],
        reason: "",
    },
    Case {
        group: "one-second-fails",
        config: "one-at-a-time",
        failing: &["h2"],
        status: "FAILED",
        batch: 1,
        skipped: &["h3", "h4"],
        reason: "1 of 4 hosts failed; at least 3 must stay healthy",
    },
    // Half at a time: at most 2 of 4 at once; succeeds when at least 2 succeed.
    Case {
        group: "half-last-two-fail",
        config: "half-at-a-time",
        failing: &["h3", "h4"],
        status: "SUCCEEDED",
        batch: 2,
        skipped: &[],
        reason: "",
    },
    Case {
        group: "half-first-two-fail",
        config: "half-at-a-time",
        failing: &["h1", "h2"],
        status: "FAILED",
        batch: 2,
        skipped: &["h3", "h4"],
        reason: "2 of 4 hosts failed; at least 2 must stay healthy",
    },
    // All at once: every host together; one success is enough.
    Case {
        group: "all-one-succeeds",
        config: "all-at-once",
        failing: &["h1", "h2", "h3"],
        status: "SUCCEEDED",
        batch: 4,
        skipped: &[],
        reason: "",
    },
    Case {
        group: "all-fail",
        config: "all-at-once",
        failing: &["h1", "h2", "h3", "h4"],
        status: "FAILED",
        batch: 4,
        skipped: &[],
        reason: "4 of 4 hosts failed; at least 1 must succeed",
    },
    // At least 1 healthy host: 3 at a time; one success is enough, but once the first
    // three failed, starting the fourth would leave no healthy host.
    Case {
        group: "hosts-1-one-succeeds",
        config: "{ min-healthy: { hosts: 1 } }",
        failing: &["h2", "h3", "h4"],
        status: "SUCCEEDED",
        batch: 3,
        skipped: &[],
        reason: "",
    },
    Case {
        group: "hosts-1-first-three-fail",
        config: "{ min-healthy: { hosts: 1 } }",
        failing: &["h1", "h2", "h3"],
        status: "FAILED",
        batch: 3,
        skipped: &["h4"],
        reason: "3 of 4 hosts failed; at least 1 must stay healthy",
    },
    // 30% of 4 hosts is 1.2, rounded up to 2 healthy hosts: 2 at a time, and 2 failures
    // leave too few (rounded down, 3 would run at once and 1 success would do).
    Case {
        group: "percent-30",
        config: "{ min-healthy: { percent: 30 } }",
        failing: &["h2", "h3"],
        status: "FAILED",
        batch: 2,
        skipped: &["h4"],
        reason: "2 of 4 hosts failed; at least 2 must stay healthy",
    },
];

/// Each configuration's batch size and success rule on four hosts, then a
/// configuration that cannot be met fails before any host starts.
#[test]
fn deployment_configurations_decide_batches_and_success() {
    let s = Server::start();
    let mut yaml = String::from("applications:\n  cfg:\n    groups:\n");
    for case in CASES {
        yaml.push_str(&format!(
            "      {}:\n        tags: [[\"role=cfg\"]]\n        config: {}\n",
            case.group, case.config
        ));
    }
    yaml.push_str("      keep-all-4:\n        tags: [[\"role=cfg\"]]\n        config: { min-healthy: { hosts: 4 } }\n");
    s.push_admin_file("deploy.yaml", &yaml).ok();
    let agents: Vec<Agent> = HOSTS
        .iter()
        .map(|name| start_agent(&s, name, &["role=cfg"]))
        .collect();
    first_build(
        &s,
        "app-cfg",
        &[
            ("buildspec.yml", BUILDSPEC),
            ("appspec.yml", APPSPEC),
            ("scripts/start.sh", START),
            ("scripts/validate.sh", VALIDATE),
        ],
    );

    for case in CASES {
        for (name, agent) in HOSTS.iter().zip(&agents) {
            if case.failing.contains(name) {
                std::fs::write(agent.root.join(format!("fail-{}", case.group)), "").unwrap();
            }
        }
        let id = create_deployment(&s, "cfg", case.group, 1, None);
        let done = wait_deployment(&s, id);
        check(&s, case, id, &done);
    }

    // Keeping all 4 of 4 hosts healthy leaves none to deploy: it fails at once.
    let id = create_deployment(&s, "cfg", "keep-all-4", 1, None);
    let done = wait_deployment(&s, id);
    assert_eq!(done["deployment"]["status"], "FAILED", "{done:#}");
    let reason = done["deployment"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(
            "keeps at least 4 of the group's 4 hosts healthy, so no host can be deployed"
        ),
        "{done:#}"
    );
    assert_eq!(done["events"].as_array().map(Vec::len), Some(0), "{done:#}");
    s.ssh(&s.admin, &format!("deploy status {id}"))
        .ok()
        .says("FAILED")
        .says("no host can be deployed");
    drop(agents);
}

/// Checks one case's deployment as `deploy status` shows it.
fn check(s: &Server, case: &Case, id: i64, done: &Value) {
    let context = format!("{} ({}): {done:#}", case.group, case.config);
    assert_eq!(done["deployment"]["status"], case.status, "{context}");
    let reason = done["deployment"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(case.reason), "{context}");

    // Every host's fate.
    for name in HOSTS {
        let host = host(done, name);
        let expected = if case.skipped.contains(&name) {
            "SKIPPED"
        } else if case.failing.contains(&name) {
            "FAILED"
        } else {
            "SUCCEEDED"
        };
        assert_eq!(host["status"], expected, "{name} in {context}");
        let ran = events_of(done, name)
            .iter()
            .filter(|e| !e["started"].is_null())
            .count();
        if expected == "SKIPPED" {
            assert_eq!(ran, 0, "{name} ran events in {context}");
            continue;
        }
        assert_eq!(ran, 7, "{name} in {context}");
        if expected == "FAILED" {
            let why = host["reason"].as_str().unwrap_or_default();
            assert!(why.starts_with("ValidateService failed"), "{name}: {why}");
            let failed = events_of(done, name)
                .into_iter()
                .find(|e| e["status"] == "FAILED")
                .unwrap_or_else(|| panic!("{name} has no failed event in {context}"));
            assert_eq!(failed["event"], "ValidateService", "{context}");
            let log = failed["log"].as_str().unwrap_or_default();
            assert!(log.contains("unhealthy here on purpose"), "{context}");
        }
    }

    // How many ran at once: by the server's account (hosts) and by the agents' (the
    // span from a host's first event taken to its last event reported).
    let started: Vec<&str> = order_started(done);
    let expected_order: Vec<&str> = HOSTS
        .iter()
        .copied()
        .filter(|h| !case.skipped.contains(h))
        .collect();
    assert_eq!(started, expected_order, "hosts go in name order: {context}");
    let host_spans: Vec<(&str, f64, f64)> = HOSTS
        .iter()
        .filter_map(|name| {
            let h = host(done, name);
            Some((*name, h["started"].as_f64()?, h["ended"].as_f64()?))
        })
        .collect();
    let event_spans: Vec<(&str, f64, f64)> = HOSTS
        .iter()
        .filter_map(|name| {
            let events = events_of(done, name);
            let first = events
                .iter()
                .filter_map(|e| e["started"].as_f64())
                .reduce(f64::min)?;
            let last = events
                .iter()
                .filter_map(|e| e["ended"].as_f64())
                .reduce(f64::max)?;
            Some((*name, first, last))
        })
        .collect();
    for (what, spans) in [("hosts", &host_spans), ("agents' events", &event_spans)] {
        assert_eq!(
            most_at_once(spans),
            case.batch,
            "{what} at once {spans:?} in {context}"
        );
        // The first batch starts together: each of its hosts overlaps every other.
        let first: Vec<&(&str, f64, f64)> = spans.iter().take(case.batch).collect();
        for a in &first {
            for b in &first {
                assert!(
                    a.0 == b.0 || (a.1 < b.2 && b.1 < a.2),
                    "{} and {} should overlap ({what}) in {context}",
                    a.0,
                    b.0
                );
            }
        }
    }

    // The text shows the same.
    let text = s.ssh(&s.admin, &format!("deploy status {id}")).ok();
    let text = text.says(case.status).says(case.reason);
    for name in case.failing.iter().filter(|h| !case.skipped.contains(h)) {
        assert!(
            text.stdout.contains(&format!(
                "{name} ValidateService failed (code 4, scripts/validate.sh)"
            )),
            "{name}: {text}"
        );
    }
}

fn host<'a>(done: &'a Value, name: &str) -> &'a Value {
    done["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["agent"] == name))
        .unwrap_or_else(|| panic!("no host {name}: {done:#}"))
}

fn events_of<'a>(done: &'a Value, name: &str) -> Vec<&'a Value> {
    done["events"]
        .as_array()
        .map(|events| events.iter().filter(|e| e["agent"] == name).collect())
        .unwrap_or_default()
}

/// The hosts that started, by start time (ties by name).
fn order_started(done: &Value) -> Vec<&str> {
    let mut started: Vec<(f64, &str)> = done["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .filter_map(|h| Some((h["started"].as_f64()?, h["agent"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    started.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    started.into_iter().map(|(_, name)| name).collect()
}

/// The most spans `(name, start, end)` open at one time; a span ending when another
/// starts does not overlap it.
fn most_at_once(spans: &[(&str, f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = spans
        .iter()
        .flat_map(|(_, start, end)| [(*start, 1), (*end, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut open, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        open += delta;
        most = most.max(open);
    }
    most as usize
}
