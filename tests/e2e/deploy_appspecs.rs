//! Bad appspecs deployed through the server to a real agent: each deployment fails, and
//! `deploy status` names the host, the lifecycle event that failed and what is wrong.
//!
//! One build makes every revision: each case is a directory under `cases/` packaged as
//! its own artifact (`base-directory`), deployed to its own group so that no case sees
//! another's history. A good revision first shows that the agent and the group work.

use crate::deployments::{
    build_done, create_deployment, deployment_json, start_agent, wait_deployment,
};
use crate::harness::*;

/// One revision: its files, where it fails and what the user is told.
struct Case {
    /// The artifact and the group (`_` in the artifact, `-` in the group).
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// The event that fails; empty when the deployment succeeds.
    event: &'static str,
    /// CodeDeploy's error code of the failed event.
    code: i64,
    /// Words of the failed event's message, in order of appearance.
    says: &'static [&'static str],
}

const OK_SCRIPT: &str = "#!/bin/sh\necho installed $DEPLOYMENT_ID\n";

const CASES: &[Case] = &[
    Case {
        name: "good",
        files: &[
            ("appspec.yml", "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/good\nhooks:\n  AfterInstall:\n    - location: scripts/ok.sh\n"),
            ("site/index.html", "good\n"),
            ("scripts/ok.sh", OK_SCRIPT),
        ],
        event: "",
        code: 0,
        says: &[],
    },
    // A misspelt event would silently never run; the agent refuses it.
    Case {
        name: "unknown_event",
        files: &[
            ("appspec.yml", "version: 0.0\nos: linux\nhooks:\n  BeforeInstal:\n    - location: scripts/ok.sh\n"),
            ("scripts/ok.sh", OK_SCRIPT),
        ],
        event: "BeforeInstall",
        code: 5,
        says: &["appspec.yml:4:", "unknown lifecycle event `BeforeInstal`", "the events that take scripts are"],
    },
    Case {
        name: "wrong_version",
        files: &[
            ("appspec.yml", "version: 1.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: scripts/ok.sh\n"),
            ("scripts/ok.sh", OK_SCRIPT),
        ],
        event: "BeforeInstall",
        code: 5,
        says: &["appspec.yml:1:", "is not supported", "only appspec version 0.0"],
    },
    // The appspec is fine; the script it names is not in the bundle. The events before
    // it run.
    Case {
        name: "missing_script",
        files: &[
            ("appspec.yml", "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: scripts/ok.sh\n  AfterInstall:\n    - location: scripts/migrate.sh\n"),
            ("scripts/ok.sh", OK_SCRIPT),
        ],
        event: "AfterInstall",
        code: 1,
        says: &["Script does not exist at specified location: scripts/migrate.sh", "add it to the bundle"],
    },
    Case {
        name: "files_escape",
        files: &[
            ("appspec.yml", "version: 0.0\nos: linux\nfiles:\n  - source: ../../etc\n    destination: /srv/stolen\n"),
            ("scripts/ok.sh", OK_SCRIPT),
        ],
        event: "BeforeInstall",
        code: 5,
        says: &["appspec.yml:4:", "`../../etc` leaves the bundle through `..`"],
    },
    Case {
        name: "hook_escape",
        files: &[
            ("appspec.yml", "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: ../../../bin/true\n"),
            ("scripts/ok.sh", OK_SCRIPT),
        ],
        event: "BeforeInstall",
        code: 5,
        says: &["appspec.yml:5:", "`../../../bin/true` leaves the bundle through `..`"],
    },
];

/// Every bad appspec fails its deployment with the failing event and a reason that says
/// what to fix; nothing is installed from it.
#[test]
fn bad_appspecs_fail_with_the_event_and_the_reason() {
    let s = Server::start();
    let mut deploy = String::from("applications:\n  spec:\n    groups:\n");
    let mut buildspec = String::from("version: 0.2\nphases:\n  build:\n    commands: [\"chmod +x cases/*/scripts/*\"]\nartifacts:\n  files: ['**/*']\n  base-directory: cases/good\n  secondary-artifacts:\n");
    for case in CASES {
        deploy.push_str(&format!(
            "      {}:\n        tags: [[\"role=spec\"]]\n",
            case.name.replace('_', "-")
        ));
        if case.name != "good" {
            buildspec.push_str(&format!(
                "    {0}:\n      files: ['**/*']\n      base-directory: cases/{0}\n",
                case.name
            ));
        }
    }
    s.push_admin_file("deploy.yaml", &deploy).ok();
    let agent = start_agent(&s, "a1", &["role=spec"]);
    let work = s.local_repo(&s.admin, "w");
    for case in CASES {
        for (file, text) in case.files {
            let path = format!("cases/{}/{file}", case.name);
            commit_file(&s, &s.admin, &work, &path, text, &path);
        }
    }
    commit_file(&s, &s.admin, &work, "buildspec.yml", &buildspec, "spec");
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-spec"), "main"])
        .ok();
    let build = build_done(&s, 1);
    assert_eq!(build["status"], "SUCCEEDED", "{build:#}");

    for case in CASES {
        let group = case.name.replace('_', "-");
        let artifact = if case.name == "good" {
            "primary"
        } else {
            case.name
        };
        let id = create_deployment(&s, "spec", &group, 1, Some(artifact));
        let done = wait_deployment(&s, id);
        let context = format!("{}: {done:#}", case.name);
        if case.event.is_empty() {
            assert_eq!(done["deployment"]["status"], "SUCCEEDED", "{context}");
            let page = std::fs::read_to_string(agent.root.join("srv/good/index.html"));
            assert_eq!(page.ok().as_deref(), Some("good\n"), "{context}");
            continue;
        }
        assert_eq!(done["deployment"]["status"], "FAILED", "{context}");
        let host = &done["hosts"][0];
        assert_eq!(host["agent"], "a1", "{context}");
        assert_eq!(host["status"], "FAILED", "{context}");
        let reason = host["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("{} failed: ", case.event)),
            "{context}"
        );
        let mut rest = reason;
        for words in case.says {
            let at = rest
                .find(words)
                .unwrap_or_else(|| panic!("{words:?} missing in {reason:?}"));
            rest = &rest[at + words.len()..];
        }
        // Exactly that event failed; the ones before it succeeded (or were skipped),
        // the ones after it were skipped.
        let events = done["events"].as_array().cloned().unwrap_or_default();
        let failed: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["status"] == "FAILED").collect();
        assert_eq!(failed.len(), 1, "{context}");
        assert_eq!(failed[0]["event"], case.event, "{context}");
        assert_eq!(failed[0]["error_code"], case.code, "{context}");
        let mut seen_failure = false;
        for e in &events {
            if e["status"] == "FAILED" {
                seen_failure = true;
            } else if seen_failure {
                assert_eq!(e["status"], "SKIPPED", "{context}");
            } else {
                assert!(
                    e["status"] == "SUCCEEDED" || e["status"] == "SKIPPED",
                    "{context}"
                );
            }
        }
        // The text names the host, the event and the reason.
        let text = s.ssh(&s.admin, &format!("deploy status {id}")).ok();
        let line = format!("a1 {} failed (code {}", case.event, case.code);
        let text = text.says("FAILED").says(&line);
        assert!(
            !text.stdout.contains(", )"),
            "an empty script name is shown: {text}"
        );
        for words in case.says {
            assert!(text.stdout.contains(words), "{words:?}: {text}");
        }
    }
    // Nothing of the escaping revision reached the host.
    assert!(!agent.root.join("srv/stolen").exists());
    assert_eq!(deployment_json(&s, 1)["deployment"]["status"], "SUCCEEDED");
}
