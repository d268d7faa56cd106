use std::path::Path;
use std::time::Duration;

use super::*;

fn ok(text: &str) -> AppSpec {
    parse("appspec.yml", text).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{text}"))
}

/// Parses `text`, expecting an error at `line:column` whose message contains `needle`.
fn check_err(text: &str, line: usize, column: usize, needle: &str) {
    let err = match parse("appspec.yml", text) {
        Ok(spec) => panic!("expected an error containing {needle:?}, got {spec:?}"),
        Err(e) => e,
    };
    assert!(
        err.message.contains(needle),
        "message {:?} lacks {needle:?}",
        err.message
    );
    assert_eq!(
        (err.line, err.column),
        (line, column),
        "wrong position for {err}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("appspec.yml:{line}:{column}: ")));
}

const HEAD: &str = "version: 0.0\nos: linux\n";

#[test]
fn a_full_appspec_parses() {
    let spec = ok(r#"version: 0.0
os: linux
files:
  - source: /
    destination: /srv/web-app
  - source: config/app.toml
    destination: /etc/web-app
file_exists_behavior: OVERWRITE
permissions:
  - object: /srv/web-app
    pattern: "*.sh"
    except: [tmp]
    owner: web
    group: web
    mode: "0755"
    type: [file]
hooks:
  ApplicationStop:   [{ location: scripts/stop.sh, timeout: 60, runas: root }]
  BeforeInstall:     [{ location: scripts/backup.sh }]
  AfterInstall:
    - location: scripts/migrate.sh
      timeout: 300
    - location: /scripts/warm.sh
      timeout: 30
  ValidateService:
"#);
    assert_eq!(spec.files.len(), 2);
    assert!(spec.files[0].source.is_root());
    assert_eq!(spec.files[1].destination.to_string(), "/etc/web-app");
    assert_eq!(
        spec.file_exists_behavior,
        Some(FileExistsBehavior::Overwrite)
    );
    let p = &spec.permissions[0];
    assert_eq!(p.mode, Some(Mode(0o755)));
    assert!(p.files && !p.directories);
    assert!(p.pattern.is_match(Path::new("run.sh")));
    assert!(
        !p.pattern.is_match(Path::new("bin/run.sh")),
        "`*` must not cross `/`"
    );
    assert!(p.except[0].is_match(Path::new("tmp")));
    let stop = spec.scripts(LifecycleEvent::ApplicationStop);
    assert_eq!(stop[0].timeout, Duration::from_secs(60));
    assert_eq!(stop[0].runas.as_deref(), Some("root"));
    let before = spec.scripts(LifecycleEvent::BeforeInstall);
    assert_eq!(before[0].timeout, DEFAULT_TIMEOUT);
    let after = spec.scripts(LifecycleEvent::AfterInstall);
    assert_eq!(after[1].location.to_string(), "scripts/warm.sh");
    assert!(spec.scripts(LifecycleEvent::ValidateService).is_empty());
    assert!(spec.scripts(LifecycleEvent::ApplicationStart).is_empty());
}

#[test]
fn defaults() {
    let spec = ok("version: 0.0\nos: linux\npermissions:\n  - object: /srv/app\n");
    assert_eq!(spec.file_exists_behavior, None);
    let p = &spec.permissions[0];
    assert!(p.pattern.is_everything() && p.pattern.is_match(Path::new("a/b/c")));
    assert!(p.files && p.directories && p.mode.is_none());
    // Also a string version, and an unquoted mode written with octal digits.
    let spec = ok("version: \"0.0\"\nos: linux\npermissions:\n  - object: /a\n    mode: 644\n");
    assert_eq!(spec.permissions[0].mode, Some(Mode(0o644)));
}

#[test]
fn only_version_0_0_is_supported() {
    check_err(
        "version: 1.0\nos: linux\n",
        1,
        10,
        "`1.0` is not supported; slipway-agent supports only appspec version 0.0",
    );
    check_err(
        "version: 0.0.1\nos: linux\n",
        1,
        10,
        "`0.0.1` is not supported",
    );
    check_err("- version: 0.0\n", 1, 1, "must be a map");
    check_err("version: 0.1\nos: linux\n", 1, 10, "write `version: 0.0`");
    check_err("os: linux\n", 1, 1, "missing field `version`");
    check_err("", 1, 1, "the appspec is empty");
}

#[test]
fn os_must_be_linux() {
    check_err("version: 0.0\nos: windows\n", 2, 5, "runs on Linux hosts");
    check_err("version: 0.0\nos: bsd\n", 2, 5, "write `os: linux`");
}

#[test]
fn unknown_events_are_named_with_the_valid_ones() {
    let text = format!("{HEAD}hooks:\n  AfterInstall: []\n  BeforeStart:\n    - location: a.sh\n");
    check_err(&text, 5, 3, "unknown lifecycle event `BeforeStart`");
    check_err(
        &text,
        5,
        3,
        "ApplicationStop, BeforeInstall, AfterInstall, ApplicationStart, ValidateService",
    );
    let text = format!("{HEAD}hooks:\n  applicationstart: []\n");
    check_err(&text, 4, 3, "did you mean `ApplicationStart`?");
    let text = format!("{HEAD}hooks:\n  Install: [{{location: a.sh}}]\n");
    check_err(&text, 4, 3, "`Install` is run by the agent itself");
    let text = format!("{HEAD}hooks:\n  AfterInstall: []\n  AfterInstall: []\n");
    check_err(&text, 4, 3, "duplicate entry with key \"AfterInstall\"");
    check_err(
        &format!("{HEAD}os: linux\n"),
        1,
        1,
        "duplicate entry with key \"os\"",
    );
}

#[test]
fn paths_may_not_leave_the_bundle_or_be_relative_on_the_host() {
    let text = format!("{HEAD}files:\n  - source: ../secrets\n    destination: /srv/app\n");
    check_err(&text, 4, 13, "leaves the bundle through `..`");
    let text = format!("{HEAD}files:\n  - source: app\n    destination: srv/app\n");
    check_err(&text, 5, 18, "not an absolute path");
    let text = format!("{HEAD}files:\n  - source: app\n    destination: /srv/../etc\n");
    check_err(&text, 5, 18, "contains `..`");
    let text = format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: ../../bin/evil.sh\n");
    check_err(&text, 5, 17, "leaves the bundle");
    let text = format!("{HEAD}permissions:\n  - object: relative/dir\n");
    check_err(&text, 4, 13, "not an absolute path");
}

#[test]
fn hook_timeouts_are_positive_and_at_most_an_hour_per_event() {
    let text =
        format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: a.sh\n      timeout: 0\n");
    check_err(&text, 6, 16, "above 0");
    let text =
        format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: a.sh\n      timeout: -5\n");
    check_err(&text, 6, 16, "above 0");
    let text =
        format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: a.sh\n      timeout: 3601\n");
    check_err(&text, 6, 16, "the limit for one lifecycle event");
    let text = format!(
        "{HEAD}hooks:\n  ApplicationStart:\n    - location: a.sh\n      timeout: 3000\n    - location: b.sh\n      timeout: 601\n"
    );
    check_err(&text, 5, 5, "add up to 3601 seconds");
    // A script without a timeout counts as a whole hour.
    let text =
        format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: a.sh\n    - location: b.sh\n      timeout: 1\n");
    check_err(&text, 5, 5, "add up to 3601 seconds");
    let text = format!("{HEAD}hooks:\n  ApplicationStart:\n    - timeout: 5\n");
    check_err(&text, 5, 7, "missing field `location`");
}

#[test]
fn typos_and_unsupported_keys_fail_loudly() {
    check_err(
        &format!("{HEAD}file:\n  - source: /\n"),
        3,
        1,
        "unknown field `file`",
    );
    let text =
        format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: a.sh\n      run_as: web\n");
    check_err(&text, 6, 7, "unknown field `run_as`");
    let text = format!("{HEAD}file_exists_behavior: overwrite\n");
    check_err(&text, 3, 23, "DISALLOW, OVERWRITE or RETAIN");
    let text = format!("{HEAD}permissions:\n  - object: /srv\n    acls: [\"u:bob:rw\"]\n");
    check_err(&text, 5, 11, "acls are not supported");
    let text = format!("{HEAD}permissions:\n  - object: /srv\n    mode: \"0789\"\n");
    check_err(&text, 5, 11, "not an octal mode");
    let text = format!("{HEAD}permissions:\n  - object: /srv\n    type: [file, socket]\n");
    check_err(&text, 5, 18, "type `socket` is not `file` or `directory`");
    let text = format!("{HEAD}permissions:\n  - object: /srv\n    pattern: \"[a\"\n");
    check_err(&text, 5, 14, "not a valid pattern");
    let text = format!("{HEAD}permissions:\n  - object: /srv\n    owner: \"a b\"\n");
    check_err(&text, 5, 12, "not a user or group name");
}

#[test]
fn load_finds_appspec_yml_or_yaml_and_refuses_links() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let err = load(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("there is no appspec.yml (or appspec.yaml) at the root of the bundle"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("appspec.yaml"),
        "version: 0.0\nos: linux\nhooks:\n  Bogus: []\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = load(dir.path()).unwrap_err();
    assert!(err.to_string().starts_with("appspec.yaml:4:3: "), "{err}");
    std::fs::write(dir.path().join("appspec.yaml"), HEAD).unwrap_or_else(|e| panic!("{e}"));
    assert!(load(dir.path()).is_ok());

    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(outside.path().join("spec"), HEAD).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(outside.path().join("spec"), dir.path().join("appspec.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("it is a symlink"), "{err}");
}
