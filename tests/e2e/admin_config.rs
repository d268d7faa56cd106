//! The admin configuration: `access.yaml` in the `admin` repository, changed by a push,
//! validated before it is accepted, applied without a restart; `slipway check` and
//! `slipway init` on the data directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// `git ls-remote` of `repo` as `key`.
fn ls_remote(s: &Server, key: &Key, repo: &str) -> String {
    let dir = s.scratch("ls-remote");
    s.git(key, &dir, &["ls-remote", &s.url(repo)]).ok().stdout
}

/// The 1-based number of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{needle:?} must be on exactly one line of:\n{text}"
    );
    found[0]
}

/// Finds `PREFIX:LINE:COL: ` in `out` and returns (line, column, the rest of the line).
#[track_caller]
fn located_error(out: &Out, prefix: &str) -> (usize, usize, String) {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let rest = text
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no {prefix:?} in the output:\n{out}"));
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|p| p.parse().ok());
    let column = parts.next().and_then(|p| p.parse().ok());
    match (line, column, parts.next()) {
        (Some(line), Some(column), Some(message)) => (line, column, message.trim().to_string()),
        _ => panic!("{prefix:?} is not followed by LINE:COL: in:\n{out}"),
    }
}

/// The id of `rev` in the bare repository at `git_dir`.
fn bare_rev(git_dir: &Path, rev: &str) -> String {
    run(Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["rev-parse", "--verify", rev]))
    .ok()
    .stdout
    .trim()
    .to_string()
}

/// The team policy with one more user line after bob's.
fn team_plus_user(s: &Server, user_line: &str) -> String {
    let yaml = team_access_yaml(&s.admin, &s.alice, &s.bob);
    let marker = "groups:\n  admins:";
    assert!(yaml.contains(marker));
    yaml.replacen(marker, &format!("{user_line}\n{marker}"), 1)
}

#[test]
fn access_changes_apply_to_the_next_request_without_a_restart() {
    let s = Server::start();
    let pid = s.pid();
    let carol = Key::generate(&s.dir.path().join("keys"), "carol", "ed25519");
    s.ssh(&carol, "whoami").fails().says("Permission denied");

    // Add carol: her very next login works.
    let with_carol = team_plus_user(
        &s,
        &format!("  carol: {{ keys: [\"{}\"], groups: [dev] }}", carol.line),
    );
    s.set_access(&with_carol).ok().says("configuration applied");
    s.ssh(&carol, "whoami")
        .ok()
        .says("user:   carol")
        .says(&carol.fingerprint());

    // Remove her: her next login is refused.
    s.set_access(&team_access_yaml(&s.admin, &s.alice, &s.bob))
        .ok();
    s.ssh(&carol, "whoami").fails().says("Permission denied");

    // Give alice repo:delete: she can delete at once.
    s.ssh(&s.admin, "repo create app-x").ok();
    s.ssh(&s.alice, "repo delete app-x")
        .fails()
        .says("repo:delete");
    assert!(s.repo_path("app-x").exists());
    let yaml = team_access_yaml(&s.admin, &s.alice, &s.bob).replacen(
        "\"repo:create\"]",
        "\"repo:create\", \"repo:delete\"]",
        1,
    );
    assert!(yaml.contains("\"repo:delete\""));
    s.set_access(&yaml).ok();
    s.ssh(&s.alice, "repo delete app-x")
        .ok()
        .says("deleted app-x");
    assert!(!s.repo_path("app-x").exists());

    // All of it without a restart.
    assert_eq!(s.pid(), pid);
}

#[test]
fn invalid_access_yaml_is_refused_with_its_position_and_changes_nothing() {
    let s = Server::start();
    let team = team_access_yaml(&s.admin, &s.alice, &s.bob);

    // (what, file, text on the offending line, words in the message)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "a YAML syntax error",
            team.replacen("groups: [readers] }", "groups: [readers]] }", 1),
            "[readers]]",
            "did not find expected",
        ),
        (
            "an unknown group",
            team.replacen("groups: [dev]", "groups: [dev, devs]", 1),
            "groups: [dev, devs]",
            "unknown group `devs`",
        ),
        (
            "an unknown policy",
            team.replacen(
                "{ policies: [developer] }",
                "{ policies: [developer, deployer] }",
                1,
            ),
            "[developer, deployer]",
            "unknown policy `deployer`",
        ),
        (
            "an invalid key",
            team_plus_user(
                &s,
                "  carol: { keys: [\"ssh-ed25519 AAAAnot-a-key carol@x\"], groups: [dev] }",
            ),
            "carol:",
            "invalid SSH public key",
        ),
        (
            "no administrator left (admin moved to dev)",
            team.replacen("groups: [admins]", "groups: [dev]", 1),
            "users:",
            "no user with a key could administer",
        ),
        (
            "no administrator left (admin has no key)",
            team.replacen(&format!("keys: [\"{}\"]", s.admin.line), "keys: []", 1),
            "users:",
            "no user with a key could administer",
        ),
        (
            "an unknown field",
            team.replacen("groups: [readers]", "grups: [readers]", 1),
            "grups:",
            "unknown field `grups`",
        ),
        (
            "an unknown action",
            team.replacen("\"git:push\"", "\"git:pushh\"", 1),
            "git:pushh",
            "unknown action `git:pushh`",
        ),
        (
            "a duplicate key",
            team_plus_user(&s, &format!("  carol: {{ keys: [\"{}\"] }}", s.alice.line)),
            "carol:",
            "listed more than once",
        ),
    ];
    let before = ls_remote(&s, &s.admin, "admin");
    for (what, yaml, offending, words) in cases {
        assert_ne!(yaml, team, "{what}: the case must change the file");
        let line = line_of(&yaml, offending);
        let out = s.set_access(&yaml).fails();
        let (got_line, column, message) = located_error(&out, "remote: slipway: access.yaml:");
        assert_eq!(
            got_line, line,
            "{what}: wrong line in:\n{out}\n--- file ---\n{yaml}"
        );
        let text = yaml.lines().nth(line - 1).unwrap();
        assert!(
            (1..=text.len()).contains(&column),
            "{what}: column {column} is not on line {line}:\n{out}"
        );
        assert!(
            message.contains(words),
            "{what}: message lacks {words:?}:\n{out}"
        );
        assert!(!message.is_empty(), "{what}: empty message:\n{out}");
        out.says("the configuration was not changed")
            .never_says("configuration applied");
        assert_eq!(
            ls_remote(&s, &s.admin, "admin"),
            before,
            "{what}: the admin repo changed"
        );
        // The live configuration is the old one.
        s.ssh(&s.alice, "whoami").ok().says("user:   alice");
        s.ssh(&s.bob, "whoami").ok();
    }
}

#[test]
fn admin_main_cannot_be_deleted_or_rewritten_and_other_branches_are_not_live() {
    let s = Server::start();
    let dir = s.scratch("admin");
    s.git(&s.admin, &dir, &["clone", "-q", &s.url("admin"), "a"])
        .ok();
    let clone = dir.join("a");
    let before = ls_remote(&s, &s.admin, "admin");
    let main_line = |refs: &str| {
        refs.lines()
            .find(|l| l.ends_with("\trefs/heads/main"))
            .map(str::to_string)
    };

    // Delete main.
    s.git(&s.admin, &clone, &["push", "origin", ":refs/heads/main"])
        .fails()
        .says("cannot be deleted");
    assert_eq!(ls_remote(&s, &s.admin, "admin"), before);

    // Another branch (a draft for review) is accepted as is, unvalidated, and is not
    // the live configuration.
    s.git(&s.admin, &clone, &["checkout", "-q", "-b", "draft"])
        .ok();
    commit_file(
        &s,
        &s.admin,
        &clone,
        "access.yaml",
        "userz: {}\n",
        "broken draft",
    );
    s.git(&s.admin, &clone, &["push", "origin", "draft"])
        .ok()
        .never_says("configuration applied")
        .never_says("DENIED");
    let after = ls_remote(&s, &s.admin, "admin");
    assert!(after.contains("refs/heads/draft"), "{after}");
    assert_eq!(main_line(&after), main_line(&before));
    s.ssh(&s.alice, "whoami").ok().says("user:   alice");
    s.ssh(&s.admin, "whoami").ok();

    // Promoting the draft to main is validated like any change to main.
    s.git(&s.admin, &clone, &["push", "origin", "draft:main"])
        .fails()
        .says("remote: slipway: access.yaml:1:1: unknown field `userz`");
    assert_eq!(
        main_line(&ls_remote(&s, &s.admin, "admin")),
        main_line(&before)
    );
    s.ssh(&s.alice, "whoami").ok();

    // Rewriting main's history is refused, even with the same, valid content: main's
    // history is the record of every configuration that was in force.
    let before = ls_remote(&s, &s.admin, "admin");
    s.git(&s.admin, &clone, &["checkout", "-q", "main"]).ok();
    s.git(
        &s.admin,
        &clone,
        &["commit", "-q", "--amend", "-m", "rewritten history"],
    )
    .ok();
    s.git(&s.admin, &clone, &["push", "--force", "origin", "main"])
        .fails()
        .says("force-update of refs/heads/main");
    assert_eq!(ls_remote(&s, &s.admin, "admin"), before);
    // Rewinding to an older configuration is a rewrite too.
    s.git(
        &s.admin,
        &clone,
        &["push", "--force", "origin", "origin/main~1:refs/heads/main"],
    )
    .fails()
    .says("force-update of refs/heads/main");
    assert_eq!(ls_remote(&s, &s.admin, "admin"), before);
    s.ssh(&s.alice, "whoami").ok();
}

/// Points the admin repository's main, on disk, at a commit whose access.yaml is
/// `contents`, without going through the server (no hooks run). Returns the old id.
fn break_admin_on_disk(s: &Server, contents: &str) -> String {
    let bare = s.repo_path("admin");
    let old = bare_rev(&bare, "refs/heads/main");
    let dir = s.scratch("disk");
    s.git(
        &s.admin,
        &dir,
        &["clone", "-q", bare.to_str().unwrap(), "a"],
    )
    .ok();
    let clone = dir.join("a");
    commit_file(
        s,
        &s.admin,
        &clone,
        "access.yaml",
        contents,
        "broken on disk",
    );
    let new = s
        .git(&s.admin, &clone, &["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    // Fetching into the bare repository runs no receive hooks; then move main by hand.
    let git_dir = |args: &[&str]| {
        run(Command::new("git")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .arg("--git-dir")
            .arg(&bare)
            .args(args))
        .ok()
    };
    git_dir(&["fetch", "-q", clone.to_str().unwrap(), "main"]);
    git_dir(&["update-ref", "refs/heads/main", &new, &old]);
    assert_eq!(bare_rev(&bare, "refs/heads/main"), new);
    old
}

/// Runs `slipway serve` on `data` and returns how it ended; a server still running
/// after a while is killed and reported as exit -1 (it should have refused to start).
fn serve_once(data: &Path) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(SLIPWAY)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args([
            "--ssh-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("slipway serve runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Out {
        code,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

fn check(data: &Path) -> Out {
    run(Command::new(SLIPWAY).arg("check").arg("--data").arg(data))
}

#[test]
fn check_validates_the_data_directory_and_serve_refuses_a_broken_one() {
    let mut s = Server::start();
    let out = check(&s.data).ok();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(lines.len() >= 2, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("ok")), "{out}");
    out.says("access.yaml").says("administrators: admin");

    s.stop();
    let broken = team_access_yaml(&s.admin, &s.alice, &s.bob).replacen(
        "groups: [readers]",
        "groups: [readers, nobody]",
        1,
    );
    let line = line_of(&broken, "[readers, nobody]");
    let good = break_admin_on_disk(&s, &broken);

    let out = check(&s.data);
    assert_eq!(out.code, 1, "{out}");
    let (got, _, message) = located_error(&out, "access.yaml:");
    assert_eq!(got, line, "{out}");
    assert!(message.contains("unknown group `nobody`"), "{out}");
    out.says("error");

    // The server does not start on a configuration it cannot load, and says why.
    let out = serve_once(&s.data);
    assert!(out.code > 0, "serve must exit with an error:\n{out}");
    out.never_says("slipway: listening")
        .says("admin configuration is invalid")
        .says(&format!("access.yaml:{line}:"))
        .says("unknown group `nobody`");

    // Repaired on disk: check is happy again and the server starts.
    run(Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(s.repo_path("admin"))
        .args(["update-ref", "refs/heads/main", &good]))
    .ok();
    check(&s.data).ok();
    s.spawn();
    s.ssh(&s.alice, "whoami").ok();
}

#[test]
fn init_again_changes_nothing() {
    let s = Server::start();
    let admin_main = bare_rev(&s.repo_path("admin"), "refs/heads/main");
    let host_key_path = s.data.join("keys").join("ssh_host_ed25519_key");
    let host_key = std::fs::read(&host_key_path).expect("host key");
    let settings = std::fs::read(s.data.join("slipway.yaml")).unwrap();

    let init = |key: &Key, name: &str| {
        run(Command::new(SLIPWAY)
            .arg("init")
            .arg("--data")
            .arg(&s.data)
            .arg("--admin-key")
            .arg(&key.public)
            .args(["--admin-name", name]))
    };
    // Same arguments, then someone else's key: neither changes anything.
    for (key, name) in [(&s.admin, "admin"), (&s.mallory, "mallory")] {
        let out = init(key, name).ok().says("kept");
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("kept") && l.contains("admin")),
            "{out}"
        );
        out.never_says("created");
        assert_eq!(
            bare_rev(&s.repo_path("admin"), "refs/heads/main"),
            admin_main
        );
        assert_eq!(std::fs::read(&host_key_path).unwrap(), host_key);
        assert_eq!(
            std::fs::read(s.data.join("slipway.yaml")).unwrap(),
            settings
        );
    }
    // The running server still knows its team and not mallory.
    s.ssh(&s.alice, "whoami").ok();
    s.ssh(&s.mallory, "whoami")
        .fails()
        .says("Permission denied");
}

/// deploy.yaml is checked like the other admin files: a mistake is refused at its
/// line and column, a valid file is applied.
#[test]
fn deploy_yaml_is_validated_on_push() {
    let s = Server::start();
    let bad = "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n        config: { min-healthy: { percent: 150 } }\n";
    let out = s.push_admin_file("deploy.yaml", bad).fails();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("deploy.yaml:6:"), "{text}");
    let good = bad.replace("150", "75");
    s.push_admin_file("deploy.yaml", &good)
        .ok()
        .says("configuration applied");
}
