//! Builds: `slipway build --local` runs a buildspec as the server would.

use std::process::Command;

use crate::harness::*;

fn local_build(dir: &std::path::Path, extra: &[&str]) -> Out {
    run(Command::new(SLIPWAY)
        .args(["build", "--local"])
        .arg(dir)
        .args(extra))
}

#[test]
fn build_local_runs_the_phases_like_codebuild() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildspec.yml"),
        r#"version: 0.2
env:
  variables: { NAME: world }
  parameter-store: { TOKEN: /ci/token }
  exported-variables: [IMAGE_TAG]
phases:
  pre_build:
    commands: [ "mkdir -p out && cd out", "export IMAGE_TAG=v7" ]
  build:
    commands:
      - echo "hello $NAME in $(basename $PWD), token $TOKEN"
      - test "$CODEBUILD_SRC_DIR" = "$SLIPWAY_SRC_DIR"
      - exit 4
      - echo never
    finally: [ "echo finally" ]
  post_build:
    commands: [ "echo succeeding=$CODEBUILD_BUILD_SUCCEEDING" ]
"#,
    )
    .unwrap();
    // The parameter store lives on the server: locally its values must be given.
    local_build(dir.path(), &[])
        .fails()
        .says("pass --env TOKEN=VALUE");
    let out = local_build(dir.path(), &["--env", "TOKEN=s3cret"]).fails();
    assert_eq!(out.code, 1);
    for line in [
        "hello world in out, token ***",
        "[slipway] Command did not exit successfully exit 4 exit status 4",
        "finally",
        "succeeding=0",
        "exported IMAGE_TAG=v7",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line:?}:\n{out}"
        );
    }
    assert!(
        !out.stdout.contains("never") && !out.stdout.contains("s3cret"),
        "{out}"
    );
    assert!(out.stdout.contains("BUILD       FAILED"), "{out}");
    assert!(out.stdout.contains("POST_BUILD  SUCCEEDED"), "{out}");
    assert!(out.stdout.trim_end().ends_with(": FAILED"), "{out}");
}

#[test]
fn build_local_refuses_a_bad_buildspec_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildspec.yml"),
        "version: 0.1\nphases: {}\n",
    )
    .unwrap();
    local_build(dir.path(), &[])
        .fails()
        .says("buildspec.yml:1:10: version: `0.1` is not supported");
    std::fs::write(
        dir.path().join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n",
    )
    .unwrap();
    local_build(dir.path(), &[]).ok().says(": SUCCEEDED");
    let empty = tempfile::tempdir().unwrap();
    local_build(empty.path(), &[])
        .fails()
        .says("needs a buildspec.yml");
}

const SPEC: &str = r#"version: 0.2
env:
  exported-variables: [TAG]
phases:
  build:
    commands:
      - echo "building $CODEBUILD_RESOLVED_SOURCE_VERSION for $CODEBUILD_INITIATOR on $CODEBUILD_WEBHOOK_TRIGGER"
      - test -f README.md
      - export TAG=v-$CODEBUILD_BUILD_NUMBER
  post_build:
    commands: [ "echo post ran" ]
"#;

fn build_json(s: &Server, id: i64) -> serde_json::Value {
    serde_json::from_str(
        &s.ssh(&s.admin, &format!("build info {id} --json"))
            .ok()
            .stdout,
    )
    .unwrap()
}

fn wait_done(s: &Server, id: i64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = eventually(std::time::Duration::from_secs(60), || {
        last = build_json(s, id);
        !matches!(
            last["status"].as_str(),
            Some("QUEUED") | Some("IN_PROGRESS")
        )
    });
    assert!(done, "build {id} did not finish: {last}");
    last
}

#[test]
fn a_push_with_a_buildspec_builds_the_pushed_head() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "buildspec.yml", SPEC, "add buildspec");
    s.git(&s.alice, &work, &["push", &s.url("app-b"), "main"])
        .ok();
    let head = s
        .git(&s.alice, &work, &["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let b = wait_done(&s, 1);
    assert_eq!(b["status"], "SUCCEEDED", "{b}");
    assert_eq!(b["repo"], "app-b");
    assert_eq!(b["commit"], head.as_str());
    assert_eq!(b["initiator"], "alice");
    assert_eq!(b["exported"]["TAG"], "v-1");
    assert_eq!(b["phases"][0]["name"], "BUILD");
    let log = s.ssh(&s.alice, "build logs 1").ok().stdout;
    assert!(
        log.contains(&format!("building {head} for alice on branch/main")),
        "{log}"
    );
    assert!(log.contains("post ran"), "{log}");
    // Build state changes are events (rules can mail them).
    let events = s
        .ssh(&s.admin, "events --type build-state-change --json")
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&events).unwrap();
    let states: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, vec!["IN_PROGRESS", "SUCCEEDED"]);
    // A repository without buildspec.yml does not build.
    let plain = s.local_repo(&s.alice, "plain");
    s.git(&s.alice, &plain, &["push", &s.url("app-plain"), "main"])
        .ok();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let list = s.ssh(&s.admin, "build list --json").ok().stdout;
    assert!(!list.contains("app-plain"), "{list}");
}

#[test]
fn build_start_follow_stop_and_permissions() {
    let s = Server::start();
    let work = s.local_repo(&s.admin, "w");
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"echo start\", \"sleep 30\", \"echo never\"]\n",
        "slow build",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-s"), "main:other"])
        .ok();
    // Pushed to `other`: a build of that head starts by itself; stop it.
    assert!(eventually(std::time::Duration::from_secs(20), || {
        build_json(&s, 1)["status"] == "IN_PROGRESS"
    }));
    s.ssh(&s.bob, "build stop 1").fails().says("build:stop");
    s.ssh(&s.admin, "build stop 1")
        .ok()
        .says("stopping build 1");
    let b = wait_done(&s, 1);
    assert_eq!(b["status"], "STOPPED", "{b}");
    let log = s.ssh(&s.admin, "build logs 1").ok().stdout;
    assert!(log.contains("start") && !log.contains("never"), "{log}");
    // By hand, at a ref; --follow streams until the end.
    s.ssh(&s.alice, "build start app-s --ref other")
        .fails()
        .says("build:start");
    s.ssh(&s.admin, "build start app-s --ref nope")
        .fails()
        .says("names no commit");
    s.ssh(&s.admin, "build start nothing")
        .fails()
        .says("not found");
    let out = s.ssh(&s.admin, "build start app-s --ref other").ok();
    assert!(out.stdout.contains("queued build 2"), "{out}");
    s.ssh(&s.admin, "build stop 2").ok();
    let follow = s.ssh(&s.admin, "build logs 2 --follow").ok();
    assert!(
        follow
            .stdout
            .trim_end()
            .ends_with("[slipway] build 2 STOPPED"),
        "{follow}"
    );
    // Reading builds needs read access to the repository.
    s.ssh(&s.mallory, "build list").fails();
    let yaml = team_access_yaml(&s.admin, &s.alice, &s.bob).replace(
        "    - { effect: deny,  actions: [\"git:pull\"], resources: [\"repo:admin\"] }",
        "    - { effect: deny,  actions: [\"git:pull\"], resources: [\"repo:admin\", \"repo:app-s\"] }",
    );
    s.set_access(&yaml).ok();
    s.ssh(&s.bob, "build info 1").fails().says("not found");
    assert_eq!(s.ssh(&s.bob, "build list").ok().stdout, "");
}

#[test]
fn a_build_interrupted_by_a_restart_is_marked_fault() {
    let mut s = Server::start();
    let work = s.local_repo(&s.admin, "w");
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"sleep 30\"]\n",
        "slow",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-r"), "main"])
        .ok();
    assert!(eventually(std::time::Duration::from_secs(20), || {
        build_json(&s, 1)["status"] == "IN_PROGRESS"
    }));
    s.kill9();
    s.spawn();
    let b = build_json(&s, 1);
    assert_eq!(b["status"], "FAULT", "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("server stopped"),
        "{b}"
    );
}

#[test]
fn server_builds_run_unprivileged_and_cannot_read_the_data_directory() {
    if !slipway_actors::build::builder::running_as_root() {
        eprintln!("SKIPPED: the server runs builds as another user only when it runs as root");
        return;
    }
    let s = Server::start();
    let data = s.data.display().to_string();
    let spec = format!(
        r#"version: 0.2
phases:
  build:
    commands:
      - echo "uid=$(id -u)"
      - if cat {data}/keys/master.key; then echo LEAK-KEY; fi
      - if cat {data}/slipway.db > /dev/null; then echo LEAK-DB; fi
      - if ls {data}/repos; then echo LEAK-REPOS; fi
      - if ls {data}/run; then echo LEAK-SOCKET; fi
      - if cat {data}/slipway.yaml; then echo LEAK-SETTINGS; fi
      - touch built-here && echo wrote workspace
"#
    );
    let work = s.local_repo(&s.admin, "w");
    commit_file(&s, &s.admin, &work, "buildspec.yml", &spec, "probe");
    s.git(&s.admin, &work, &["push", &s.url("app-u"), "main"])
        .ok();
    let b = wait_done(&s, 1);
    let log = s.ssh(&s.admin, "build logs 1").ok().stdout;
    assert_eq!(b["status"], "SUCCEEDED", "{b}\n{log}");
    assert!(log.contains("uid=65534"), "{log}");
    assert!(log.contains("wrote workspace"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("LEAK")),
        "the build read the data directory:\n{log}"
    );
    assert!(log.contains("Permission denied"), "{log}");
}

#[test]
fn builds_read_only_the_parameters_builds_yaml_allows_and_mask_them() {
    let s = Server::start();
    s.ssh_with_stdin(
        &s.admin,
        "param put /app/token --secure",
        "t0ps3cret".as_bytes(),
    )
    .ok();
    s.ssh_with_stdin(
        &s.admin,
        "param put /app/json",
        br#"{"user":"bot","pass":"j50nsecret"}"#,
    )
    .ok();
    s.ssh_with_stdin(&s.admin, "param put /ops/key", "opskey".as_bytes())
        .ok();
    s.push_admin_file(
        "builds.yaml",
        "repos:\n  \"app-*\":\n    timeout: 10m\n    params: [\"/app/*\"]\n",
    )
    .ok()
    .says("configuration applied");
    let spec = r#"version: 0.2
env:
  parameter-store: { TOKEN: /app/token }
  secrets-manager: { PASS: "app/json:pass" }
phases:
  build:
    commands:
      - echo "token=$TOKEN pass=$PASS"
      - test "$TOKEN" = t0ps3cret
"#;
    let work = s.local_repo(&s.admin, "w");
    commit_file(&s, &s.admin, &work, "buildspec.yml", spec, "uses params");
    s.git(&s.admin, &work, &["push", &s.url("app-p"), "main"])
        .ok();
    let b = wait_done(&s, 1);
    let log = s.ssh(&s.admin, "build logs 1").ok().stdout;
    assert_eq!(b["status"], "SUCCEEDED", "{b}\n{log}");
    assert!(log.contains("token=*** pass=***"), "{log}");
    assert!(
        !log.contains("t0ps3cret") && !log.contains("j50nsecret"),
        "{log}"
    );
    // A parameter outside builds.yaml `params` fails the build with the reason.
    let spec = spec.replace("/app/token", "/ops/key");
    commit_file(&s, &s.admin, &work, "buildspec.yml", &spec, "reads ops");
    s.git(&s.admin, &work, &["push", &s.url("app-p"), "main"])
        .ok();
    let b = wait_done(&s, 2);
    assert_eq!(b["status"], "FAILED", "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("allow it under `params` in builds.yaml"),
        "{b}"
    );
    // builds.yaml is validated on push like the other admin files.
    s.push_admin_file(
        "builds.yaml",
        "repos:\n  \"app-*\":\n    executor: docker\n",
    )
    .fails()
    .says("builds.yaml:3:15:");
}

#[test]
fn artifacts_are_zipped_sealed_at_rest_and_downloadable() {
    let s = Server::start();
    let spec = r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p out/lib docs
      - echo binary > out/app && echo lib > out/lib/a.so && echo map > out/lib/a.so.map
      - echo manual > docs/guide.md
artifacts:
  files: ['**/*']
  base-directory: out
  exclude-paths: ['**/*.map']
  secondary-artifacts:
    docs: { files: ['docs/*'], discard-paths: yes }
"#;
    let work = s.local_repo(&s.admin, "w");
    commit_file(&s, &s.admin, &work, "buildspec.yml", spec, "artifacts");
    s.git(&s.admin, &work, &["push", &s.url("app-a"), "main"])
        .ok();
    let b = wait_done(&s, 1);
    assert_eq!(b["status"], "SUCCEEDED", "{b}");
    let phases: Vec<&str> = b["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, vec!["BUILD", "UPLOAD_ARTIFACTS"]);
    let download = |name: &str| {
        Command::new("ssh")
            .args(s.ssh_base(&s.admin))
            .arg("git@127.0.0.1")
            .arg(format!("build artifact 1 {name}"))
            .output()
            .unwrap()
    };
    let dir = s.scratch("zips");
    let list = |bytes: &[u8], file: &str| {
        let path = dir.join(file);
        std::fs::write(&path, bytes).unwrap();
        run(Command::new("/usr/bin/python3").args([
            "-c",
            "import sys, zipfile; print('\\n'.join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))",
        ]).arg(&path))
        .ok()
        .stdout
    };
    let primary = download("primary");
    assert!(primary.status.success());
    assert_eq!(list(&primary.stdout, "primary.zip"), "app\nlib/a.so\n");
    let docs = download("docs");
    assert_eq!(list(&docs.stdout, "docs.zip"), "guide.md\n");
    s.ssh(&s.admin, "build artifact 1 nope")
        .fails()
        .says("has no artifact `nope`");
    s.ssh(&s.admin, "build info 1")
        .ok()
        .says("artifact primary: 2 files");
    // On disk the blobs are sealed: the zip's own bytes do not appear; altering one
    // makes it refused.
    let blobs: Vec<std::path::PathBuf> = walk_files(&s.data.join("artifacts"));
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    for blob in &blobs {
        let bytes = std::fs::read(blob).unwrap();
        assert!(
            !bytes.windows(4).any(|w| w == b"PK\x03\x04"),
            "a zip header is visible in {blob:?}"
        );
    }
    for blob in &blobs {
        let mut bytes = std::fs::read(blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(blob, bytes).unwrap();
    }
    s.ssh(&s.admin, "build artifact 1").fails().says("refused");
    // Reading artifacts needs read access to the repository.
    s.ssh(&s.mallory, "build artifact 1").fails();
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
