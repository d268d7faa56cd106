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

/// Waits until build `id` runs.
#[track_caller]
fn wait_running(s: &Server, id: i64) {
    assert!(
        eventually(std::time::Duration::from_secs(20), || {
            build_json(s, id)["status"] == "IN_PROGRESS"
        }),
        "build {id} did not start"
    );
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
    wait_running(&s, 1);
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
fn a_build_interrupted_by_a_restart_is_marked_fault_and_the_queue_runs() {
    // One build at a time: the second push waits in the queue.
    let mut s = Server::start_with(Options {
        settings: Some(format!("{}builds:\n  parallel: 1\n", settings_yaml(&[]))),
        ..Options::default()
    });
    let work = s.local_repo(&s.admin, "w");
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: ['if [ \"$CODEBUILD_WEBHOOK_HEAD_REF\" = refs/heads/main ]; then sleep 30; fi']\n",
        "slow on main",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-r"), "main"])
        .ok();
    wait_running(&s, 1);
    s.git(&s.admin, &work, &["push", &s.url("app-r"), "main:other"])
        .ok();
    assert!(eventually(std::time::Duration::from_secs(20), || {
        s.ssh(&s.admin, "build list --json")
            .ok()
            .stdout
            .contains("refs/heads/other")
    }));
    assert_eq!(build_json(&s, 2)["status"], "QUEUED");
    assert_eq!(s.metric("slipway_build_queue_depth"), 1.0);
    s.kill9();
    s.spawn();
    let b = build_json(&s, 1);
    assert_eq!(b["status"], "FAULT", "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("server stopped"),
        "{b}"
    );
    // The queued build was not lost: it runs after the restart.
    assert_eq!(wait_done(&s, 2)["status"], "SUCCEEDED");
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
      - echo "nice=$(nice)"
      - if cat {data}/keys/master.key; then echo LEAK-KEY; fi
      - if cat {data}/slipway.db > /dev/null; then echo LEAK-DB; fi
      - if ls {data}/repos; then echo LEAK-REPOS; fi
      - if ls {data}/run; then echo LEAK-SOCKET; fi
      - if cat {data}/slipway.yaml; then echo LEAK-SETTINGS; fi
      - if ln -sf {data}/keys/master.key {data}/builds/1/state/load.sh; then echo LEAK-STATE; fi
      - if echo x >> {data}/builds/1/state/session.sh; then echo LEAK-STATE; fi
      - if ls -A {data}/builds/1/state/shell; then echo own-report-directory; fi
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
    // Builds are bulk work: they run at builds.nice (default 15) like git's pack work.
    let base: i32 = String::from_utf8(Command::new("nice").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        log.lines()
            .any(|l| l == format!("nice={}", (base + 15).min(19))),
        "{log}"
    );
    assert!(log.contains("wrote workspace"), "{log}");
    assert!(log.contains("own-report-directory"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("LEAK")),
        "the build read the data directory or could write the server's files:\n{log}"
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
        "repos:\n  \"app-*\":\n    executor: podman\n",
    )
    .fails()
    .says("builds.yaml:3:15:")
    .says("must be `local` or `docker`");
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

/// The container a Docker build ran in, from its log.
fn container_of(log: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix("[slipway] Running in container "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no container line in:\n{log}"))
        .to_string()
}

fn container_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["container", "inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn docker_builds_run_in_a_container_of_the_configured_image() {
    let Some(image) = crate::peers::docker_build_image() else {
        return;
    };
    let s = Server::start();
    s.push_admin_file(
        "builds.yaml",
        &format!("repos:\n  \"app-d*\":\n    executor: docker\n    image: {image}\n  \"app-missing\":\n    executor: docker\n    image: slipway-test/absent:1\n"),
    )
    .ok();
    let data = s.data.display().to_string();
    let spec = format!(
        r#"version: 0.2
env:
  variables: {{ GREETING: hello }}
  exported-variables: [WHERE]
phases:
  install:
    commands:
      - test -f /.dockerenv && echo "in a container"
      - echo "default user=$(id -un)"
      - if ls {data}/keys; then echo LEAK-KEYS; fi
      - if echo x >> {data}/builds/1/state/command.sh; then echo LEAK-STATE; fi
      - if mknod node c 1 3; then echo LEAK-MKNOD; fi
  build:
    run-as: builder
    commands:
      - cd sub && export WHERE=$(pwd)
      - echo "$GREETING as $(id -un) in $(basename $WHERE), build $CODEBUILD_BUILD_NUMBER"
      - echo made-inside > made.txt
      - sleep 300 &
artifacts:
  files: [sub/made.txt]
"#
    );
    let work = s.local_repo(&s.admin, "w");
    commit_file(&s, &s.admin, &work, "sub/keep.txt", "keep\n", "sub");
    commit_file(&s, &s.admin, &work, "buildspec.yml", &spec, "docker");
    s.git(&s.admin, &work, &["push", &s.url("app-docker"), "main"])
        .ok();
    let b = wait_done(&s, 1);
    let log = s.ssh(&s.admin, "build logs 1").ok().stdout;
    assert_eq!(b["status"], "SUCCEEDED", "{b}\n{log}");
    for line in [
        "in a container",
        "default user=root",
        "hello as builder in sub, build 1",
    ] {
        assert!(log.lines().any(|l| l == line), "missing {line:?}:\n{log}");
    }
    assert!(
        !log.lines().any(|l| l.starts_with("LEAK")),
        "the container saw the data directory or could write the server's files:\n{log}"
    );
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(
        b["exported"]["WHERE"].as_str().unwrap().ends_with("/sub"),
        "{b}"
    );
    s.ssh(&s.admin, "build info 1")
        .ok()
        .says("artifact primary: 1 files");
    // The container (and the process left in it) is gone with the build.
    assert!(
        !container_exists(&container_of(&log)),
        "container left behind"
    );

    // A stopped build's container is killed and removed.
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"echo started\", \"sleep 300\"]\n",
        "slow",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-docker"), "main"])
        .ok();
    assert!(eventually(std::time::Duration::from_secs(30), || {
        s.ssh(&s.admin, "build logs 2").stdout.contains("started")
    }));
    let log = s.ssh(&s.admin, "build logs 2").ok().stdout;
    let name = container_of(&log);
    assert!(container_exists(&name));
    s.ssh(&s.admin, "build stop 2").ok();
    let b = wait_done(&s, 2);
    assert_eq!(b["status"], "STOPPED", "{b}");
    assert!(
        !container_exists(&name),
        "stopped build's container left behind"
    );

    // An image that is not on the server: a FAULT that says slipway never pulls.
    let other = s.local_repo(&s.admin, "m");
    commit_file(
        &s,
        &s.admin,
        &other,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n",
        "m",
    );
    s.git(&s.admin, &other, &["push", &s.url("app-missing"), "main"])
        .ok();
    let b = wait_done(&s, 3);
    assert_eq!(b["status"], "FAULT", "{b}");
    s.ssh(&s.admin, "build logs 3")
        .ok()
        .says("never pulls images");
}

#[test]
fn local_builds_honour_run_as_but_never_run_as_root() {
    if !slipway_actors::build::builder::running_as_root() {
        eprintln!("SKIPPED: run-as other users needs the server to run as root");
        return;
    }
    let s = Server::start();
    let work = s.local_repo(&s.admin, "w");
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nrun-as: daemon\nphases:\n  install:\n    commands: [\"echo install as $(id -un)\", \"touch mine\"]\n  build:\n    run-as: nobody\n    commands: [\"echo build as $(id -un)\"]\n",
        "run-as",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-runas"), "main"])
        .ok();
    let b = wait_done(&s, 1);
    let log = s.ssh(&s.admin, "build logs 1").ok().stdout;
    assert_eq!(b["status"], "SUCCEEDED", "{b}\n{log}");
    assert!(log.lines().any(|l| l == "install as daemon"), "{log}");
    assert!(log.lines().any(|l| l == "build as nobody"), "{log}");
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nrun-as: root\nphases:\n  build:\n    commands: [\"id\"]\n",
        "root",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-runas"), "main"])
        .ok();
    let b = wait_done(&s, 2);
    assert_eq!(b["status"], "FAILED", "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("local builds never run as"),
        "{b}"
    );
}

#[test]
fn the_cache_is_kept_per_branch_and_falls_back_to_the_default_branch() {
    let s = Server::start();
    let spec = r#"version: 0.2
phases:
  install:
    commands:
      - 'if [ -f deps/lib.txt ]; then echo "cache hit: $(cat deps/lib.txt)"; else echo "cache miss"; fi'
      - mkdir -p deps && echo "built by $CODEBUILD_BUILD_NUMBER" > deps/lib.txt
  build:
    commands: [ "test ! -f fail-me" ]
cache:
  paths: [ 'deps/**/*' ]
"#;
    let work = s.local_repo(&s.admin, "w");
    commit_file(&s, &s.admin, &work, "buildspec.yml", spec, "cache");
    let push = |refspec: &str| {
        s.git(&s.admin, &work, &["push", &s.url("app-cache"), refspec])
            .ok();
    };
    let log_of = |n: i64| s.ssh(&s.admin, &format!("build logs {n}")).ok().stdout;
    let has = |log: &str, line: &str| log.lines().any(|l| l == line);

    push("main");
    let b = wait_done(&s, 1);
    assert_eq!(b["status"], "SUCCEEDED", "{b}\n{}", log_of(1));
    let log = log_of(1);
    assert!(has(&log, "cache miss"), "{log}");
    assert!(log.contains("[slipway] Cache saved: 1 files"), "{log}");

    commit_file(&s, &s.admin, &work, "a.txt", "a\n", "a");
    push("main");
    assert_eq!(wait_done(&s, 2)["status"], "SUCCEEDED");
    let log = log_of(2);
    assert!(has(&log, "cache hit: built by 1"), "{log}");
    assert!(log.contains("Cache restored from branch main"), "{log}");

    // A new branch starts from the default branch's cache, then keeps its own.
    commit_file(&s, &s.admin, &work, "b.txt", "b\n", "b");
    push("main:feature");
    assert_eq!(wait_done(&s, 3)["status"], "SUCCEEDED");
    assert!(has(&log_of(3), "cache hit: built by 2"), "{}", log_of(3));
    assert!(log_of(3).contains("Cache restored from branch main"));
    commit_file(&s, &s.admin, &work, "c.txt", "c\n", "c");
    push("main:feature");
    assert_eq!(wait_done(&s, 4)["status"], "SUCCEEDED");
    assert!(has(&log_of(4), "cache hit: built by 3"), "{}", log_of(4));
    assert!(log_of(4).contains("Cache restored from branch feature"));

    // A failed build does not replace the cache.
    s.git(&s.admin, &work, &["reset", "-q", "--hard", "HEAD~2"])
        .ok();
    commit_file(&s, &s.admin, &work, "fail-me", "x\n", "fail");
    push("main");
    assert_eq!(wait_done(&s, 5)["status"], "FAILED");
    assert!(!log_of(5).contains("Cache saved"), "{}", log_of(5));
    s.git(&s.admin, &work, &["rm", "-q", "fail-me"]).ok();
    s.git(&s.admin, &work, &["commit", "-q", "-m", "unfail"])
        .ok();
    push("main");
    assert_eq!(wait_done(&s, 6)["status"], "SUCCEEDED");
    assert!(has(&log_of(6), "cache hit: built by 2"), "{}", log_of(6));
}

#[test]
fn a_guarded_branch_is_moved_back_when_its_pushed_commit_fails() {
    let Some(python) = crate::peers::python_with_aiosmtpd() else {
        return;
    };
    let mail_dir = tempfile::tempdir().unwrap();
    let sink = crate::peers::SmtpSink::start(&python, mail_dir.path(), 0, 0);
    let s = Server::start_with(Options {
        settings: Some(crate::notify::mail_settings(sink.port, 5)),
        ..Options::default()
    });
    s.push_admin_file("builds.yaml", "repos:\n  \"app-*\":\n    guard: [main]\n")
        .ok();
    s.push_admin_file(
        "rules.yaml",
        "rules:\n  - name: failed-builds\n    match: { source: build, type: build-state-change, state: FAILED }\n    targets:\n      - email: [team@example.com]\n",
    )
    .ok();
    let spec = "version: 0.2\nphases:\n  build:\n    commands: [\"echo checking\", \"test ! -f broken\"]\n";
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "buildspec.yml", spec, "good");
    s.git(&s.alice, &work, &["push", &s.url("app-g"), "main"])
        .ok();
    assert_eq!(wait_done(&s, 1)["status"], "SUCCEEDED");
    let rev = |r: &str| {
        s.git(&s.alice, &work, &["rev-parse", r])
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    let good = rev("HEAD");
    commit_file(&s, &s.alice, &work, "broken", "x\n", "Break the build");
    let bad = rev("HEAD");
    s.git(
        &s.alice,
        &work,
        &["push", &s.url("app-g"), "main", "main:feature"],
    )
    .ok();
    assert_eq!(wait_done(&s, 2)["status"], "FAILED");
    assert_eq!(wait_done(&s, 3)["status"], "FAILED");
    // main (guarded) went back, with the failed commit kept; feature (not guarded) stays.
    let remote = |r: &str| {
        let out = s
            .git(&s.alice, &work, &["ls-remote", &s.url("app-g"), r])
            .ok();
        out.stdout
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let builds = [
        build_json(&s, 2)["ref"].as_str().unwrap().to_string(),
        build_json(&s, 3)["ref"].as_str().unwrap().to_string(),
    ];
    let main_build = if builds[0] == "refs/heads/main" { 2 } else { 3 };
    assert!(eventually(std::time::Duration::from_secs(10), || remote(
        "refs/heads/main"
    ) == good));
    assert_eq!(remote("refs/heads/feature"), bad);
    assert_eq!(
        remote(&format!("refs/slipway/rejected/main/{main_build}")),
        bad
    );
    let log = s
        .ssh(&s.alice, &format!("build logs {main_build}"))
        .ok()
        .stdout;
    assert!(log.contains("Guarded branch main moved back to"), "{log}");
    // The pusher is told why, with the log's last lines and how to get the commit back.
    let mails = sink.wait_for(3, std::time::Duration::from_secs(30));
    assert_eq!(
        mails.len(),
        3,
        "guard mail + a rule mail per failed build: {mails:?}"
    );
    // The rule's mail says where the build failed, with the end of its log.
    let team: Vec<_> = mails
        .iter()
        .filter(|m| m.header("To").as_deref() == Some("team@example.com"))
        .collect();
    assert_eq!(team.len(), 2, "{mails:?}");
    let main_mail = team
        .iter()
        .find(|m| {
            m.header("Subject")
                .unwrap_or_default()
                .contains(" of main ")
        })
        .expect("a mail about main's build");
    assert_eq!(
        main_mail.header("Subject").as_deref(),
        Some(format!("[slipway] build app-g:{main_build} of main failed in phase build").as_str())
    );
    assert!(
        main_mail.body().contains("test ! -f broken"),
        "{}",
        main_mail.body()
    );
    let m = mails
        .iter()
        .find(|m| m.header("To").as_deref() == Some("alice@example.com"))
        .expect("a mail to the pusher");
    let subject = m.header("Subject").unwrap_or_default();
    assert!(subject.contains("main moved back"), "{subject}");
    let body = m.body();
    assert!(body.contains("test ! -f broken"), "{body}");
    assert!(
        body.contains(&format!("refs/slipway/rejected/main/{main_build}")),
        "{body}"
    );
    // The event and the audit line record it; nobody can push under refs/slipway/.
    s.ssh(&s.admin, "events --type guard-rollback")
        .ok()
        .says("MOVED_BACK");
    s.git(
        &s.admin,
        &work,
        &[
            "push",
            &s.url("app-g"),
            &format!("{good}:refs/slipway/rejected/main/99"),
        ],
    )
    .fails()
    .says("refs/slipway/ belongs to the server");
}

#[test]
fn test_reports_statuses_and_build_metrics() {
    let s = Server::start();
    let spec = r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p target/reports
      - printf '%s\n' '<testsuite name="unit" tests="3" failures="1" skipped="1" time="0.5">' '<testcase name="a" time="0.1"/>' '<testcase name="b"><failure message="boom"/></testcase>' '<testcase name="c"><skipped/></testcase>' '</testsuite>' > target/reports/unit.xml
      - echo 'not xml <' > target/reports/broken.xml
reports:
  unit-tests:
    files: ['**/*.xml']
    base-directory: target/reports
"#;
    let work = s.local_repo(&s.admin, "w");
    commit_file(&s, &s.admin, &work, "buildspec.yml", spec, "reports");
    s.git(&s.admin, &work, &["push", &s.url("app-rep"), "main"])
        .ok();
    let b = wait_done(&s, 1);
    assert_eq!(b["status"], "SUCCEEDED", "{b}");
    let r = &b["reports"][0];
    assert_eq!(r["name"], "unit-tests", "{b}");
    assert_eq!(
        (&r["total"], &r["passed"], &r["failed"], &r["skipped"]),
        (&3.into(), &1.into(), &1.into(), &1.into()),
        "{b}"
    );
    let info = s.ssh(&s.admin, "build info 1").ok();
    info.says("report unit-tests: 3 tests, 1 passed, 1 failed, 0 errors, 1 skipped (1 files)")
        .says("broken.xml");
    // A second build that fails, to filter by status.
    commit_file(
        &s,
        &s.admin,
        &work,
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [\"false\"]\n",
        "fail",
    );
    s.git(&s.admin, &work, &["push", &s.url("app-rep"), "main"])
        .ok();
    assert_eq!(wait_done(&s, 2)["status"], "FAILED");
    let ids = |status: &str| -> Vec<i64> {
        let out = s
            .ssh(&s.admin, &format!("build list --status {status} --json"))
            .ok()
            .stdout;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids("SUCCEEDED"), vec![1]);
    assert_eq!(ids("failed"), vec![2]);
    s.ssh(&s.admin, "build list --status DONE")
        .fails()
        .says("unknown status `DONE`");
    // Metrics: builds by status, durations, push -> start latency.
    assert_eq!(s.metric("slipway_builds_total{status=\"SUCCEEDED\"}"), 1.0);
    assert_eq!(s.metric("slipway_builds_total{status=\"FAILED\"}"), 1.0);
    assert_eq!(
        s.metric("slipway_build_duration_seconds_count{status=\"FAILED\"}"),
        1.0
    );
    assert_eq!(
        s.metric(
            "slipway_build_phase_duration_seconds_count{phase=\"BUILD\",status=\"SUCCEEDED\"}"
        ),
        1.0
    );
    assert_eq!(s.metric("slipway_push_to_build_start_seconds_count"), 2.0);
    assert_eq!(s.metric("slipway_build_queue_depth"), 0.0);
    let metrics = s.metrics();
    assert!(metrics.contains("slipway_builds_running"), "{metrics}");
}
