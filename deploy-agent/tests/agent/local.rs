//! `slipway-agent local`: the in-place lifecycle on one host.

use std::os::unix::fs::PermissionsExt;

use crate::{alive, Host};

/// A script that appends its event and deployment variables to the host's record.
fn recorder(host: &Host, tag: &str) -> String {
    format!(
        "#!/bin/sh\necho \"{tag} $LIFECYCLE_EVENT|$DEPLOYMENT_ID|$APPLICATION_NAME|$DEPLOYMENT_GROUP_NAME|$DEPLOYMENT_GROUP_ID|$BUNDLE_COMMIT\" >> {}\n",
        host.record().display()
    )
}

/// An appspec running `scripts/NAME.sh` at every in-place event (NAME = the event).
const ALL_HOOKS: &str = r#"version: 0.0
os: linux
files:
  - source: app
    destination: /srv/web
hooks:
  ApplicationStop: [{ location: scripts/ApplicationStop.sh }]
  BeforeInstall: [{ location: scripts/BeforeInstall.sh }]
  AfterInstall: [{ location: scripts/AfterInstall.sh, timeout: 60 }]
  ApplicationStart: [{ location: scripts/ApplicationStart.sh }]
  ValidateService: [{ location: scripts/ValidateService.sh }]
"#;

fn all_hooks_bundle(host: &Host, name: &str, tag: &str, validate: &str) -> std::path::PathBuf {
    let script = recorder(host, tag);
    let validate = format!("{script}{validate}\n");
    host.bundle(
        name,
        ALL_HOOKS,
        &[
            ("app/index.html", tag),
            ("scripts/ApplicationStop.sh", &script),
            ("scripts/BeforeInstall.sh", &script),
            ("scripts/AfterInstall.sh", &script),
            ("scripts/ApplicationStart.sh", &script),
            ("scripts/ValidateService.sh", &validate),
        ],
    )
}

#[test]
fn hooks_run_in_order_with_the_deployment_variables() {
    let host = Host::new();
    let bundle = all_hooks_bundle(&host, "v1", "v1", "");
    let run = host.local(
        &bundle,
        &[
            "--application",
            "web",
            "--group",
            "prod",
            "--commit",
            "0123abcd",
        ],
    );
    run.assert_ok();
    let id = run.deployment_id();
    let expected: Vec<String> = [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    .iter()
    .map(|event| format!("v1 {event}|{id}|web|prod|local-prod|0123abcd"))
    .collect();
    assert_eq!(
        host.recorded(),
        expected,
        "no ApplicationStop on the first deployment"
    );
    assert_eq!(run.status("ApplicationStop"), Some("Skipped"));
    for event in [
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ] {
        assert_eq!(
            run.status(event),
            Some("Succeeded"),
            "{event}\n{}",
            run.stdout
        );
    }
    assert_eq!(
        std::fs::read_to_string(host.installed("/srv/web/index.html"))
            .ok()
            .as_deref(),
        Some("v1")
    );
    assert!(run
        .stdout
        .contains("it is now the last successful revision of group prod"));
}

#[test]
fn application_stop_runs_the_last_successful_revisions_script() {
    let host = Host::new();
    let a = all_hooks_bundle(&host, "a", "A", "");
    let b = all_hooks_bundle(&host, "b", "B", "exit 7");
    let c = all_hooks_bundle(&host, "c", "C", "");

    host.local(&a, &[]).assert_ok();
    let run_b = host.local(&b, &[]);
    run_b.assert_failed();
    assert_eq!(run_b.status("ValidateService"), Some("Failed"));
    assert!(
        run_b.stdout.contains("SCRIPT_FAILED (4)"),
        "{}",
        run_b.stdout
    );
    assert!(
        run_b.stdout.contains(
            "Script at specified location: scripts/ValidateService.sh failed with exit code 7"
        ),
        "{}",
        run_b.stdout
    );
    host.local(&c, &[]).assert_ok();

    let stops: Vec<String> = host
        .recorded()
        .into_iter()
        .filter(|l| l.contains(" ApplicationStop|"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    // B's stop ran A's script (A was the last success); C's too, since B failed.
    assert_eq!(stops, ["A", "A"]);

    // Another group has no previous revision (and does not own group one's files).
    let other = host.local(&c, &["--group", "other"]);
    assert_eq!(other.status("ApplicationStop"), Some("Skipped"));
    assert_eq!(other.status("Install"), Some("Failed"), "{}", other.stdout);
}

#[test]
fn install_removes_the_previous_files_and_honours_file_exists_behavior() {
    let host = Host::new();
    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv/web\n";
    let v1 = host.bundle("v1", spec, &[("app/a.html", "a1"), ("app/b.html", "b1")]);
    let v2 = host.bundle("v2", spec, &[("app/a.html", "a2")]);
    host.local(&v1, &[]).assert_ok();
    host.local(&v2, &[]).assert_ok();
    let read = |p: &str| std::fs::read_to_string(host.installed(p)).ok();
    assert_eq!(read("/srv/web/a.html").as_deref(), Some("a2"));
    assert_eq!(read("/srv/web/b.html"), None, "v1's file went with v1");

    // A file the agent did not install.
    std::fs::write(host.installed("/srv/web/c.html"), "hand-made")
        .unwrap_or_else(|e| panic!("{e}"));
    let v3 = host.bundle("v3", spec, &[("app/a.html", "a3"), ("app/c.html", "c3")]);
    let run = host.local(&v3, &[]);
    run.assert_failed();
    assert_eq!(run.status("Install"), Some("Failed"));
    assert_eq!(run.status("AfterInstall"), Some("Skipped"));
    assert!(run.stdout.contains("UNKNOWN_ERROR (5)"), "{}", run.stdout);
    let named = format!(
        "a file already exists at {}",
        host.installed("/srv/web/c.html").display()
    );
    assert!(run.stdout.contains(&named), "{}", run.stdout);
    assert_eq!(read("/srv/web/c.html").as_deref(), Some("hand-made"));

    let retain = format!("{spec}file_exists_behavior: RETAIN\n");
    let v4 = host.bundle("v4", &retain, &[("app/a.html", "a4"), ("app/c.html", "c4")]);
    host.local(&v4, &[]).assert_ok();
    assert_eq!(read("/srv/web/c.html").as_deref(), Some("hand-made"));
    assert_eq!(read("/srv/web/a.html").as_deref(), Some("a4"));

    let overwrite = format!(
        "{spec}file_exists_behavior: OVERWRITE\npermissions:\n  - object: /srv/web\n    pattern: \"*.html\"\n    mode: \"0640\"\n"
    );
    let v5 = host.bundle(
        "v5",
        &overwrite,
        &[("app/a.html", "a5"), ("app/c.html", "c5")],
    );
    host.local(&v5, &[]).assert_ok();
    assert_eq!(read("/srv/web/c.html").as_deref(), Some("c5"));
    let mode = std::fs::metadata(host.installed("/srv/web/c.html"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o640);
}

#[test]
fn bad_appspecs_fail_with_clear_reasons_before_anything_runs() {
    let host = Host::new();
    let cases = [
        ("version", "version: 1.0\nos: linux\n", "appspec.yml:1:10: version: `1.0` is not supported; slipway-agent supports only appspec version 0.0"),
        ("event", "version: 0.0\nos: linux\nhooks:\n  AfterStart:\n    - location: a.sh\n", "appspec.yml:4:3: hooks: unknown lifecycle event `AfterStart`; the events that take scripts are: "),
        ("escape", "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: ../../etc/evil.sh\n", "appspec.yml:5:17: hooks.AfterInstall[0].location: `../../etc/evil.sh` leaves the bundle"),
    ];
    for (name, spec, message) in cases {
        let bundle = host.bundle(name, spec, &[]);
        let run = host.local(&bundle, &[]);
        run.assert_failed();
        assert!(run.stderr.contains(message), "{name}: {}", run.stderr);
        assert!(
            run.stdout.is_empty(),
            "{name}: nothing runs: {}",
            run.stdout
        );
    }
    let run = host.local(&host.path("bundles/none"), &[]);
    run.assert_failed();
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
}

#[test]
fn a_missing_script_or_a_source_escaping_through_a_symlink_fails_its_event() {
    let host = Host::new();
    let spec =
        "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: scripts/nope.sh\n";
    let bundle = host.bundle("missing", spec, &[]);
    let run = host.local(&bundle, &[]);
    run.assert_failed();
    assert_eq!(run.status("BeforeInstall"), Some("Failed"));
    assert_eq!(run.status("Install"), Some("Skipped"));
    assert!(run.stdout.contains("SCRIPT_MISSING (1)"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Script does not exist at specified location: scripts/nope.sh"),
        "{}",
        run.stdout
    );

    let outside = host.path("outside");
    std::fs::create_dir(&outside).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(outside.join("secret"), "s").unwrap_or_else(|e| panic!("{e}"));
    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: link/secret\n    destination: /srv\n";
    let bundle = host.bundle("escape", spec, &[]);
    std::os::unix::fs::symlink(&outside, bundle.join("link")).unwrap_or_else(|e| panic!("{e}"));
    let run = host.local(&bundle, &[]);
    run.assert_failed();
    assert_eq!(run.status("Install"), Some("Failed"));
    assert!(
        run.stdout.contains(
            "files source `link/secret`: `link/secret` leads out of the bundle through a symlink"
        ),
        "{}",
        run.stdout
    );
    assert!(!host.installed("/srv/secret").exists());
}

#[test]
fn a_timed_out_script_is_killed_with_its_background_children() {
    let host = Host::new();
    let pidfile = host.path("child.pid");
    let spec = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: start.sh\n      timeout: 1\n";
    let script = format!(
        "#!/bin/sh\nsleep 300 &\necho $! > {}\necho waiting\nsleep 300\n",
        pidfile.display()
    );
    let bundle = host.bundle("hang", spec, &[("start.sh", &script)]);
    let run = host.local(&bundle, &[]);
    run.assert_failed();
    assert_eq!(run.status("ApplicationStart"), Some("Failed"));
    assert!(
        run.stdout.contains("SCRIPT_TIMED_OUT (3)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Script at specified location: start.sh failed to complete in 1 seconds"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("[stdout]waiting"),
        "log tail: {}",
        run.stdout
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("the script wrote no pid"));
    for _ in 0..100 {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the timed-out script's background child {pid} is still alive");
}

#[test]
fn separate_roots_keep_agents_on_one_machine_apart() {
    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv/web\nhooks:\n  AfterInstall:\n    - location: where.sh\n";
    let (one, two) = (Host::new(), Host::new());
    for host in [&one, &two] {
        let script = format!(
            "#!/bin/sh\necho \"root=$SLIPWAY_AGENT_ROOT\" >> {}\n",
            host.record().display()
        );
        let bundle = host.bundle(
            "v1",
            spec,
            &[("app/index.html", "hi"), ("where.sh", &script)],
        );
        host.local(&bundle, &[]).assert_ok();
        assert!(host.installed("/srv/web/index.html").is_file());
        let root = host
            .path("root")
            .canonicalize()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(host.recorded(), [format!("root={}", root.display())]);
    }
}
