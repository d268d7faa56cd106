//! The engine against real shells: CodeBuild's transitions and state carry-over.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;

#[derive(Default)]
struct Lines(Vec<String>);
impl LogSink for Lines {
    fn line(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
}

struct Run {
    report: BuildReport,
    log: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Run {
    fn has(&self, line: &str) -> bool {
        self.log.iter().any(|l| l == line)
    }
    fn phases(&self) -> Vec<(String, BuildStatus)> {
        self.report
            .phases
            .iter()
            .map(|p| (p.name.clone(), p.status))
            .collect()
    }
}

async fn build_with(
    yaml: &str,
    timeout: Duration,
    secrets: Vec<String>,
    stop: CancellationToken,
) -> Run {
    let spec = parse_buildspec("buildspec.yml", yaml).expect("valid buildspec");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let ctx = BuildContext {
        src_dir: src,
        state_dir: dir.path().join("state"),
        env: vec![
            ("CODEBUILD_BUILD_ID".into(), "demo:1".into()),
            ("TOKEN".into(), "hunter2".into()),
        ],
        secrets,
        timeout,
        executor: super::shell::Executor::Local {
            run_as: None,
            nice: 0,
        },
    };
    let mut log = Lines::default();
    let report = run_build(&spec, &ctx, &mut log, stop).await;
    Run {
        report,
        log: log.0,
        _dir: dir,
    }
}

async fn build(yaml: &str) -> Run {
    build_with(
        yaml,
        Duration::from_secs(60),
        Vec::new(),
        CancellationToken::new(),
    )
    .await
}

use BuildStatus::*;

fn s(v: &[(&str, BuildStatus)]) -> Vec<(String, BuildStatus)> {
    v.iter().map(|(n, st)| (n.to_string(), *st)).collect()
}

#[tokio::test]
async fn a_failed_install_goes_straight_to_finalizing() {
    let r = build("version: 0.2\nphases:\n  install: { commands: [\"false\"] }\n  pre_build: { commands: [\"echo pre\"] }\n  build: { commands: [\"echo build\"] }\n  post_build: { commands: [\"echo post\"] }\n").await;
    assert_eq!(r.report.status, Failed);
    assert_eq!(r.phases(), s(&[("INSTALL", Failed)]));
    assert!(!r.has("pre"));
}

#[tokio::test]
async fn a_failed_build_still_runs_post_build_which_sees_it() {
    let r = build("version: 0.2\nphases:\n  build: { commands: [\"exit 3\", \"echo never\"], finally: [\"echo finally ran\"] }\n  post_build: { commands: [\"echo succeeding=$CODEBUILD_BUILD_SUCCEEDING\"] }\n").await;
    assert_eq!(r.report.status, Failed);
    assert_eq!(
        r.phases(),
        s(&[("BUILD", Failed), ("POST_BUILD", Succeeded)])
    );
    assert!(
        r.has("[slipway] Command did not exit successfully exit 3 exit status 3"),
        "{:?}",
        r.log
    );
    assert!(!r.has("never"), "commands after a failure are skipped");
    assert!(r.has("finally ran"));
    assert!(r.has("succeeding=0"));
}

#[tokio::test]
async fn on_failure_overrides_the_default_transitions() {
    let r = build("version: 0.2\nphases:\n  pre_build: { on-failure: CONTINUE, commands: [\"false\"] }\n  build: { commands: [\"echo build ran\"] }\n").await;
    assert_eq!(
        r.phases(),
        s(&[("PRE_BUILD", Failed), ("BUILD", Succeeded)])
    );
    assert_eq!(
        r.report.status, Failed,
        "CONTINUE does not make the build pass"
    );
    let r = build("version: 0.2\nphases:\n  build: { on-failure: ABORT, commands: [\"false\"] }\n  post_build: { commands: [\"echo post\"] }\n").await;
    assert_eq!(r.phases(), s(&[("BUILD", Failed)]));
    assert!(!r.has("post"));
}

#[tokio::test]
async fn directory_and_variables_carry_over_and_are_exported() {
    let r = build(concat!(
        "version: 0.2\n",
        "env:\n  variables: { GREETING: \"hello world\" }\n  exported-variables: [IMAGE_TAG, GREETING]\n",
        "phases:\n",
        "  install: { commands: [\"cd sub\", \"IMAGE_TAG=v1\", \"export OTHER='a b'\"] }\n",
        "  build: { commands: [\"echo dir=$(basename $PWD) tag=$IMAGE_TAG other=$OTHER id=$CODEBUILD_BUILD_ID\", \"IMAGE_TAG=v2\"] }\n",
    ))
    .await;
    assert_eq!(r.report.status, Succeeded, "{:?}", r.log);
    assert!(r.has("dir=sub tag=v1 other=a b id=demo:1"), "{:?}", r.log);
    assert_eq!(
        r.report.exported,
        vec![
            ("IMAGE_TAG".to_string(), "v2".to_string()),
            ("GREETING".into(), "hello world".into())
        ]
    );
}

#[tokio::test]
async fn secrets_are_masked_in_every_line() {
    let r = build_with(
        "version: 0.2\nphases:\n  build: { commands: [\"echo token is $TOKEN\", \"echo $TOKEN >&2\"] }\n",
        Duration::from_secs(60),
        vec!["hunter2".into()],
        CancellationToken::new(),
    )
    .await;
    assert!(r.has("token is ***"), "{:?}", r.log);
    assert!(r.has("***"));
    assert!(r.log.iter().all(|l| !l.contains("hunter2")), "{:?}", r.log);
    assert!(r.has("[slipway] Running command echo token is $TOKEN"));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let yaml = format!(
        "version: 0.2\nphases:\n  build: {{ commands: [\"(sleep 3; touch {}) &\", \"sleep 30\"] }}\n  post_build: {{ commands: [\"echo post\"] }}\n",
        marker.display()
    );
    let r = build_with(
        &yaml,
        Duration::from_millis(700),
        Vec::new(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.report.status, TimedOut);
    assert_eq!(r.phases(), s(&[("BUILD", TimedOut)]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !marker.exists(),
        "the background child was killed with its group"
    );
}

#[tokio::test]
async fn a_stop_ends_the_build() {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let r = build_with(
        "version: 0.2\nphases:\n  build: { commands: [\"sleep 30\"] }\n",
        Duration::from_secs(60),
        Vec::new(),
        stop,
    )
    .await;
    assert_eq!(r.report.status, Stopped);
}

/// What carries over is what the last command left: an `unset` is carried like an
/// `export`, values may span lines or hold quotes, and `cd -` goes back across commands.
/// The same in bash and sh.
#[tokio::test]
async fn unset_variables_and_awkward_values_carry_over() {
    for shell in ["bash", "sh"] {
        let yaml = format!(
            concat!(
                "version: 0.2\n",
                "env: {{ shell: {shell}, variables: {{ FROM_SPEC: spec }} }}\n",
                "phases:\n",
                "  install:\n",
                "    commands:\n",
                "      - \"export ML=\\\"$(printf 'one\\\\ntwo')\\\" GONE=1 Q=\\\"it's \\\\\\\"q\\\\\\\" $\\\"\"\n",
                "      - \"unset GONE FROM_SPEC\"\n",
                "      - \"cd sub\"\n",
                "  build:\n",
                "    commands:\n",
                "      - \"echo gone=${{GONE-none}} spec=${{FROM_SPEC-none}} lines=$(printf '%s\\\\n' \\\"$ML\\\" | wc -l) q=$Q\"\n",
                "      - \"cd - >/dev/null; echo back=$(basename $PWD)\"\n",
            ),
            shell = shell,
        );
        let r = build(&yaml).await;
        assert_eq!(r.report.status, Succeeded, "{shell}: {:?}", r.log);
        for line in ["gone=none spec=none lines=2 q=it's \"q\" $", "back=src"] {
            assert!(r.has(line), "{shell}: missing {line:?} in {:?}", r.log);
        }
    }
}

/// A plain program run is `exec`ed by its subshell (one fork less); it behaves as any
/// other command: its status, its environment (CODEBUILD_BUILD_SUCCEEDING included), a
/// missing program, and the state around it carry on.
#[tokio::test]
async fn programs_run_directly_behave_like_any_command() {
    for shell in ["bash", "sh"] {
        let yaml = format!(
            concat!(
                "version: 0.2\n",
                "env: {{ shell: {shell} }}\n",
                "phases:\n",
                "  install:\n",
                "    commands: [\"cd sub\", \"export BEFORE=yes\"]\n",
                "  build:\n",
                "    on-failure: CONTINUE\n",
                "    commands: [\"printenv BEFORE\", \"sh -c 'pwd; exit 4'\"]\n",
                "  post_build:\n",
                "    on-failure: CONTINUE\n",
                "    commands: [\"printenv CODEBUILD_BUILD_SUCCEEDING\", \"no-such-program-here\"]\n",
            ),
            shell = shell,
        );
        let r = build(&yaml).await;
        assert_eq!(
            r.phases(),
            s(&[
                ("INSTALL", Succeeded),
                ("BUILD", Failed),
                ("POST_BUILD", Failed)
            ]),
            "{shell}: {:?}",
            r.log
        );
        assert!(r.has("yes"), "{shell}: {:?}", r.log);
        assert!(
            r.log.iter().any(|l| l.ends_with("/src/sub")),
            "{shell}: {:?}",
            r.log
        );
        assert!(
            r.has("[slipway] Command did not exit successfully sh -c 'pwd; exit 4' exit status 4"),
            "{shell}: {:?}",
            r.log
        );
        assert!(
            r.has("0"),
            "{shell}: post_build saw the failure: {:?}",
            r.log
        );
        assert!(
            r.log
                .iter()
                .any(|l| l.contains("no-such-program-here") && l.contains("not found")),
            "{shell}: {:?}",
            r.log
        );
        assert!(
            r.has(
                "[slipway] Command did not exit successfully no-such-program-here exit status 127"
            ),
            "{shell}: {:?}",
            r.log
        );
    }
}

/// The log keeps the order in which a command wrote to stdout and stderr, and output that
/// is not UTF-8 is shown with replacement characters rather than breaking the build.
#[tokio::test]
async fn output_keeps_its_order_and_survives_binary_bytes() {
    let r = build(concat!(
        "version: 0.2\n",
        "phases:\n  build:\n    commands:\n",
        "      - \"echo out1; echo err1 >&2; echo out2; echo err2 >&2\"\n",
        "      - \"printf 'bin \\\\377\\\\376 end\\\\n'\"\n",
        "      - \"echo after\"\n",
    ))
    .await;
    assert_eq!(r.report.status, Succeeded, "{:?}", r.log);
    let pos = |l: &str| r.log.iter().position(|x| x == l).unwrap_or(usize::MAX);
    assert!(
        pos("out1") < pos("err1") && pos("err1") < pos("out2") && pos("out2") < pos("err2"),
        "{:?}",
        r.log
    );
    assert!(r.has("bin \u{fffd}\u{fffd} end"), "{:?}", r.log);
    assert!(r.has("after"), "{:?}", r.log);
}

/// What the shell process starts with (here LANG; in Docker the image's ENV) can be
/// unset like anything else, and a directory that vanished under the build is not
/// silently swapped for another: the commands that should run there fail, saying why.
#[tokio::test]
async fn inherited_variables_unset_and_a_vanished_directory_fails() {
    for shell in ["bash", "sh"] {
        let yaml = format!(
            concat!(
                "version: 0.2\n",
                "env: {{ shell: {shell} }}\n",
                "phases:\n",
                "  install:\n",
                "    commands: [\"unset LANG\", \"echo lang=${{LANG-none}}\"]\n",
                "  build:\n",
                "    commands: [\"mkdir t && cd t && rmdir ../t\", \"echo never-here\"]\n",
            ),
            shell = shell,
        );
        let r = build(&yaml).await;
        assert!(r.has("lang=none"), "{shell}: {:?}", r.log);
        assert_eq!(
            r.phases(),
            s(&[("INSTALL", Succeeded), ("BUILD", Failed)]),
            "{shell}: {:?}",
            r.log
        );
        assert!(!r.has("never-here"), "{shell}: {:?}", r.log);
        assert!(
            r.log.iter().any(|l| l.contains(
                "[slipway] Command did not exit successfully echo never-here exit status 1"
            )),
            "{shell}: {:?}",
            r.log
        );
    }
}

#[tokio::test]
async fn sh_is_available_as_the_shell() {
    let r = build("version: 0.2\nenv: { shell: sh }\nphases:\n  build: { commands: [\"cd sub\", \"echo in $(basename $(pwd))\"] }\n").await;
    assert_eq!(r.report.status, Succeeded, "{:?}", r.log);
    assert!(r.has("in sub"));
}

/// Each command is on its own: `exit` ends only that command, it cannot read the
/// executor's input, a last line without a newline is kept, and a syntax error fails just
/// that command. As in CodeBuild, a process a command starts in the background keeps
/// running for later commands and phases (a daemon started in `install`), and is killed
/// when the build ends. The same in bash and sh.
#[tokio::test]
async fn commands_are_isolated_but_background_processes_live_until_the_build_ends() {
    for shell in ["bash", "sh"] {
        let dir = tempfile::tempdir().unwrap();
        let daemon = dir.path().join("daemon-ran");
        let late = dir.path().join("late-ran");
        let yaml = format!(
            concat!(
                "version: 0.2\n",
                "env: {{ shell: {shell} }}\n",
                "phases:\n",
                "  install:\n",
                "    on-failure: CONTINUE\n",
                "    commands: [\"(sleep 1; touch {daemon}) &\", \"export KEPT=yes\", \"exit 3\"]\n",
                "  pre_build:\n",
                "    on-failure: CONTINUE\n",
                "    commands: [\"if then fi\"]\n",
                "  build:\n",
                "    commands:\n",
                "      - \"cat; echo read-nothing\"\n",
                "      - \"printf no-newline\"\n",
                "      - \"echo kept=$KEPT\"\n",
                "      - \"sleep 2; test -f {daemon} && echo the-daemon-kept-running\"\n",
                "      - \"(sleep 2; touch {late}) &\"\n",
            ),
            shell = shell,
            daemon = daemon.display(),
            late = late.display(),
        );
        let r = build(&yaml).await;
        assert_eq!(
            r.phases(),
            s(&[
                ("INSTALL", Failed),
                ("PRE_BUILD", Failed),
                ("BUILD", Succeeded)
            ]),
            "{shell}: {:?}",
            r.log
        );
        for line in [
            "[slipway] Command did not exit successfully exit 3 exit status 3",
            "read-nothing",
            "no-newline",
            "kept=yes",
            "the-daemon-kept-running",
        ] {
            assert!(r.has(line), "{shell}: missing {line:?} in {:?}", r.log);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !late.exists(),
            "{shell}: a background process outlived the build"
        );
    }
}
