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
