//! The git transport over SSH: protocol versions, path forms, shallow and partial
//! clones, atomic pushes and push options, upload-archive, large transfers, relayed
//! errors and concurrent clones — all with the real `git` and `ssh` clients.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// `git -c protocol.version=N args…` as `key` in `dir`, with `GIT_TRACE_PACKET=1`
/// (the packet trace goes to stderr).
fn git_v(s: &Server, key: &Key, dir: &Path, version: u8, args: &[&str]) -> Out {
    let mut cmd = s.git_cmd(key, dir);
    cmd.args(["-c", &format!("protocol.version={version}")])
        .env("GIT_TRACE_PACKET", "1")
        .args(args);
    run(&mut cmd)
}

/// The object id `rev` names in the repository at `dir`.
fn rev_parse(s: &Server, key: &Key, dir: &Path, rev: &str) -> String {
    s.git(key, dir, &["rev-parse", rev])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// Every path under `dir` (recursively), sorted: what exists on disk.
fn list_tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Whether the packet trace shows the server announcing `version N`.
fn server_announced(trace: &str, version: u8) -> bool {
    let needle = format!("< version {version}");
    trace.lines().any(|l| l.trim_end().ends_with(&needle))
}

#[test]
fn clone_fetch_and_push_with_protocol_v0_v1_and_v2() {
    let s = Server::start();
    for version in [0u8, 1, 2] {
        let repo = format!("app-v{version}");
        let url = s.url(&repo);
        let work = s.local_repo(&s.alice, &format!("work-v{version}"));

        // Push (creates the repository). Push never speaks v2: git falls back to v0
        // for anything but upload-pack (connect.c), so only v1 announces a version.
        let push = git_v(&s, &s.alice, &work, version, &["push", &url, "main"]).ok();
        assert!(
            !server_announced(&push.stderr, 2),
            "v{version} push:\n{push}"
        );
        assert_eq!(
            server_announced(&push.stderr, 1),
            version == 1,
            "v{version} push should announce version 1 iff v1 was asked:\n{push}"
        );
        assert!(
            push.stderr.contains("push< "),
            "the packet trace is on:\n{push}"
        );

        // Clone.
        let base = s.scratch(&format!("clones-v{version}"));
        let clone = git_v(&s, &s.bob, &base, version, &["clone", &url, "c"]).ok();
        match version {
            2 => assert!(server_announced(&clone.stderr, 2), "v2 clone:\n{clone}"),
            1 => {
                assert!(server_announced(&clone.stderr, 1), "v1 clone:\n{clone}");
                assert!(!server_announced(&clone.stderr, 2), "v1 clone:\n{clone}");
            }
            _ => {
                assert!(!server_announced(&clone.stderr, 2), "v0 clone:\n{clone}");
                assert!(!server_announced(&clone.stderr, 1), "v0 clone:\n{clone}");
            }
        }
        let clone_dir = base.join("c");
        assert_eq!(
            std::fs::read_to_string(clone_dir.join("README.md")).unwrap(),
            "hello\n"
        );

        // A second push (fast-forward), then fetch it into the clone.
        commit_file(&s, &s.alice, &work, "more.txt", "more\n", "second commit");
        git_v(&s, &s.alice, &work, version, &["push", &url, "main"]).ok();
        let fetch = git_v(&s, &s.bob, &clone_dir, version, &["fetch", "origin"]).ok();
        assert_eq!(
            server_announced(&fetch.stderr, 2),
            version == 2,
            "v{version} fetch:\n{fetch}"
        );
        assert_eq!(
            rev_parse(&s, &s.bob, &clone_dir, "origin/main"),
            rev_parse(&s, &s.alice, &work, "HEAD"),
            "v{version}: fetch brings the pushed commit"
        );

        // ls-remote speaks the same version.
        let ls = git_v(&s, &s.bob, &clone_dir, version, &["ls-remote", &url]).ok();
        assert_eq!(
            server_announced(&ls.stderr, 2),
            version == 2,
            "v{version} ls-remote:\n{ls}"
        );
        assert!(ls.stdout.contains("refs/heads/main"), "{ls}");
    }
}

#[test]
fn every_client_path_form_reaches_the_same_repository() {
    let s = Server::start();
    let port = s.ssh_port;
    let work = s.local_repo(&s.admin, "w");
    s.git(&s.admin, &work, &["push", &s.url("app"), "main"])
        .ok();
    s.git(&s.admin, &work, &["push", &s.url("team/app"), "main"])
        .ok();
    assert!(s.repo_path("team/app").is_dir());
    let head = rev_parse(&s, &s.admin, &work, "HEAD");
    let scratch = s.scratch("forms");

    // The scp form has no port: pass it to ssh.
    let scp_ssh = format!("{} -p {port}", s.git_ssh_command(&s.admin));
    let ls_remote = |url: &str, scp: bool| -> Out {
        let mut cmd = s.git_cmd(&s.admin, &scratch);
        if scp {
            cmd.env("GIT_SSH_COMMAND", &scp_ssh);
        }
        // GIT_TRACE shows the exec line git hands to ssh.
        cmd.env("GIT_TRACE", "1").args(["ls-remote", url]);
        run(&mut cmd)
    };
    let forms: [(&str, String, bool, &str); 10] = [
        (
            "app",
            format!("ssh://git@127.0.0.1:{port}/app.git"),
            false,
            "'/app.git'",
        ),
        (
            "app",
            format!("ssh://git@127.0.0.1:{port}/app"),
            false,
            "'/app'",
        ),
        (
            "app",
            format!("ssh://git@127.0.0.1:{port}/app.git/"),
            false,
            "'/app.git/'",
        ),
        (
            "app",
            format!("ssh://git@127.0.0.1:{port}/~/app.git"),
            false,
            "'~/app.git'",
        ),
        (
            "app",
            "git@127.0.0.1:app.git".to_string(),
            true,
            "'app.git'",
        ),
        (
            "app",
            "git@127.0.0.1:/app.git".to_string(),
            true,
            "'/app.git'",
        ),
        (
            "app",
            "git@127.0.0.1:~/app.git".to_string(),
            true,
            "'~/app.git'",
        ),
        ("app", "git@127.0.0.1:app".to_string(), true, "'app'"),
        (
            "team/app",
            format!("ssh://git@127.0.0.1:{port}/team/app.git"),
            false,
            "'/team/app.git'",
        ),
        (
            "team/app",
            "git@127.0.0.1:team/app.git".to_string(),
            true,
            "'team/app.git'",
        ),
    ];
    for (repo, url, scp, sent) in &forms {
        let out = ls_remote(url, *scp).ok();
        // git quotes the path for a shell: 'x' appears as '\''x'\'' in the trace.
        let quoted = sent.replace('\'', "'\\''");
        assert!(
            out.stderr.contains(&format!("git-upload-pack {sent}"))
                || out.stderr.contains(&format!("git-upload-pack {quoted}")),
            "{url}: expected git to send {sent}:\n{out}"
        );
        assert!(
            out.stdout.contains(&format!("{head}\trefs/heads/main")),
            "{url} ({repo}) must list main at {head}:\n{out}"
        );
    }
    // A clone through the scp form works end to end, and a push through `~/` lands in app.
    let mut cmd = s.git_cmd(&s.admin, &scratch);
    cmd.env("GIT_SSH_COMMAND", &scp_ssh).args([
        "clone",
        "-q",
        "git@127.0.0.1:team/app.git",
        "scp-clone",
    ]);
    run(&mut cmd).ok();
    assert_eq!(
        std::fs::read_to_string(scratch.join("scp-clone/README.md")).unwrap(),
        "hello\n"
    );
    commit_file(&s, &s.admin, &work, "two.txt", "2\n", "two");
    s.git(
        &s.admin,
        &work,
        &[
            "push",
            &format!("ssh://git@127.0.0.1:{port}/~/app.git"),
            "main",
        ],
    )
    .ok();
    let new_head = rev_parse(&s, &s.admin, &work, "HEAD");
    let remote = s
        .git(
            &s.admin,
            &scratch,
            &["ls-remote", &s.url("app"), "refs/heads/main"],
        )
        .ok();
    assert!(remote.stdout.starts_with(&new_head), "{remote}");
    assert_eq!(
        s.ssh(&s.admin, "repo list").ok().stdout,
        "admin\napp\nteam/app\n",
        "every form named the same two repositories"
    );

    // Bad paths: refused with a reason, and nothing appears under DATA/repos.
    let repos_dir = s.data.join("repos");
    let before = list_tree(&repos_dir);
    let long = "a".repeat(101);
    let bad: Vec<(String, &str)> = vec![
        ("../etc/passwd".into(), "invalid repository name"),
        ("/etc/passwd/..".into(), "invalid repository name"),
        ("a/../b".into(), "invalid repository name"),
        ("../../../../tmp/pwned".into(), "invalid repository name"),
        ("app name".into(), "invalid repository name"),
        ("app;touch x".into(), "invalid repository name"),
        ("app$(id)".into(), "invalid repository name"),
        (long.clone(), "longer than 100 characters"),
        ("-upload".into(), "invalid repository name"),
        ("--upload-pack=touch".into(), "invalid repository name"),
        (".hidden".into(), "invalid repository name"),
        ("a//b".into(), "invalid repository name"),
        ("a/b/c/d".into(), "invalid repository name"),
    ];
    for (path, reason) in &bad {
        // Straight over ssh, as a hand-made client would send it.
        for verb in ["git-receive-pack", "git-upload-pack", "git-upload-archive"] {
            let quoted = path.replace('\'', "'\\''");
            let out = s.ssh(&s.admin, &format!("{verb} '{quoted}'")).fails();
            assert!(
                out.stderr.contains("slipway: ") && out.stderr.contains(reason),
                "{verb} {path:?}: expected {reason:?} on stderr:\n{out}"
            );
        }
        // Through git (push could create a repository), where git itself sends it.
        if !path.starts_with('-') {
            let url = if path.starts_with('/') {
                format!("ssh://git@127.0.0.1:{port}{path}")
            } else {
                format!("git@127.0.0.1:{path}")
            };
            let mut cmd = s.git_cmd(&s.admin, &work);
            cmd.env("GIT_SSH_COMMAND", &scp_ssh)
                .args(["push", &url, "main"]);
            let out = run(&mut cmd).fails();
            assert!(
                out.stderr.contains(reason),
                "git push to {url:?}: expected {reason:?}:\n{out}"
            );
        }
    }
    // git refuses to run `-upload` style paths itself; the server is the second wall.
    s.git(&s.admin, &work, &["push", "git@127.0.0.1:-upload", "main"])
        .fails();
    assert_eq!(
        before,
        list_tree(&repos_dir),
        "bad paths must create nothing"
    );
    assert!(!s.dir.path().join("pwned").exists());
    assert_eq!(
        s.ssh(&s.admin, "repo list").ok().stdout,
        "admin\napp\nteam/app\n"
    );
}

#[test]
fn shallow_and_partial_clones() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    for i in 1..=3 {
        commit_file(
            &s,
            &s.alice,
            &work,
            "data.txt",
            &format!("version {i}\n"),
            &format!("version {i}"),
        );
    }
    s.git(&s.alice, &work, &["push", &s.url("app-hist"), "main"])
        .ok();
    let base = s.scratch("clones");
    let count = |dir: &Path| -> usize {
        s.git(&s.bob, dir, &["rev-list", "--count", "HEAD"])
            .ok()
            .stdout
            .trim()
            .parse()
            .unwrap()
    };

    // Shallow: one commit, then deepen by one, then the rest.
    s.git(
        &s.bob,
        &base,
        &["clone", "-q", "--depth", "1", &s.url("app-hist"), "shallow"],
    )
    .ok();
    let shallow = base.join("shallow");
    assert!(shallow.join(".git/shallow").exists());
    assert_eq!(count(&shallow), 1);
    s.git(&s.bob, &shallow, &["fetch", "-q", "--deepen", "1"])
        .ok();
    assert_eq!(count(&shallow), 2);
    s.git(&s.bob, &shallow, &["fetch", "-q", "--unshallow"])
        .ok();
    assert_eq!(count(&shallow), 4);
    assert!(!shallow.join(".git/shallow").exists());

    // Partial: no blobs but those checked out; older versions come on demand.
    s.git(
        &s.bob,
        &base,
        &[
            "clone",
            "-q",
            "--filter=blob:none",
            &s.url("app-hist"),
            "partial",
        ],
    )
    .ok();
    let partial = base.join("partial");
    assert_eq!(
        std::fs::read_to_string(partial.join("data.txt")).unwrap(),
        "version 3\n"
    );
    let missing = |dir: &Path| -> Vec<String> {
        s.git(
            &s.bob,
            dir,
            &["rev-list", "--objects", "--all", "--missing=print"],
        )
        .ok()
        .stdout
        .lines()
        .filter(|l| l.starts_with('?'))
        .map(str::to_string)
        .collect()
    };
    let before = missing(&partial);
    assert_eq!(
        before.len(),
        2,
        "version 1 and 2 of data.txt are not here: {before:?}"
    );
    let v1_blob = s
        .git(&s.alice, &work, &["rev-parse", "HEAD~2:data.txt"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(before.contains(&format!("?{v1_blob}")), "{before:?}");
    // Checking out an old commit fetches its blob from the server.
    s.git(&s.bob, &partial, &["checkout", "-q", "HEAD~2"]).ok();
    assert_eq!(
        std::fs::read_to_string(partial.join("data.txt")).unwrap(),
        "version 1\n"
    );
    let after = missing(&partial);
    assert_eq!(after.len(), 1, "only version 2 is still missing: {after:?}");
    assert!(!after.contains(&format!("?{v1_blob}")));
}

#[test]
fn atomic_push_with_a_denied_ref_changes_nothing_and_push_options_are_accepted() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    let url = s.url("app-atomic");
    s.git(
        &s.alice,
        &work,
        &["push", &url, "main", "main:refs/heads/feature/x"],
    )
    .ok();
    s.git(&s.alice, &work, &["remote", "add", "origin", &url])
        .ok();
    s.git(&s.alice, &work, &["fetch", "-q", "origin"]).ok();
    let scratch = s.scratch("ls");
    let refs = || s.git(&s.admin, &scratch, &["ls-remote", &url]).ok().stdout;
    let before = refs();

    // feature/x: a plain new commit (allowed); main: a rewrite (force-push denied).
    s.git(&s.alice, &work, &["checkout", "-q", "-b", "feature/x"])
        .ok();
    commit_file(&s, &s.alice, &work, "f.txt", "feature\n", "feature work");
    s.git(&s.alice, &work, &["checkout", "-q", "main"]).ok();
    s.git(
        &s.alice,
        &work,
        &["commit", "-q", "--amend", "-m", "rewritten"],
    )
    .ok();
    let out = s
        .git(
            &s.alice,
            &work,
            &["push", "--atomic", "--force", "origin", "main", "feature/x"],
        )
        .fails()
        .says("DENIED force-update of refs/heads/main")
        .never_says("does not support --atomic")
        .never_says("of refs/heads/feature/x in");
    assert_eq!(
        refs(),
        before,
        "an atomic push with a denied ref changes nothing:\n{out}"
    );

    // The allowed ref alone goes through.
    s.git(
        &s.alice,
        &work,
        &["push", "--atomic", "origin", "feature/x"],
    )
    .ok();
    assert_ne!(refs(), before);

    // Push options are advertised and accepted.
    s.git(&s.alice, &work, &["reset", "-q", "--hard", "origin/main"])
        .ok();
    commit_file(&s, &s.alice, &work, "g.txt", "g\n", "with options");
    s.git(
        &s.alice,
        &work,
        &["push", "-o", "ci.skip", "-o", "foo=bar", "origin", "main"],
    )
    .ok()
    .never_says("does not support push options");
    let main = rev_parse(&s, &s.alice, &work, "HEAD");
    assert!(refs().contains(&format!("{main}\trefs/heads/main")));
    // Also with protocol v0 and --atomic together.
    commit_file(&s, &s.alice, &work, "h.txt", "h\n", "again");
    run(s
        .git_cmd(&s.alice, &work)
        .args(["-c", "protocol.version=0"])
        .args(["push", "--atomic", "-o", "ci.skip", "origin", "main"]))
    .ok()
    .never_says("does not support");
}

#[test]
fn upload_archive_serves_readable_repositories_only() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    commit_file(&s, &s.alice, &work, "src/lib.rs", "// lib\n", "lib");
    s.git(&s.alice, &work, &["push", &s.url("app-arch"), "main"])
        .ok();
    s.ssh(&s.admin, "repo create secret").ok();
    let dir = s.scratch("arch");

    for (who, key) in [("alice", &s.alice), ("bob", &s.bob)] {
        let tar = dir.join(format!("{who}.tar"));
        s.git(
            key,
            &dir,
            &[
                "archive",
                "--remote",
                &s.url("app-arch"),
                "--format=tar",
                "-o",
                tar.to_str().unwrap(),
                "HEAD",
            ],
        )
        .ok();
        let list = run(Command::new("tar").arg("-tf").arg(&tar)).ok();
        assert!(
            list.stdout.lines().any(|l| l == "README.md"),
            "{who}: {list}"
        );
        assert!(
            list.stdout.lines().any(|l| l == "src/lib.rs"),
            "{who}: {list}"
        );
    }
    // A sub-path archive works too.
    let out = s
        .git(
            &s.bob,
            &dir,
            &[
                "archive",
                "--remote",
                &s.url("app-arch"),
                "--format=tar",
                "HEAD",
                "src",
            ],
        )
        .ok();
    assert!(out.stdout.contains("// lib"), "{out}");

    // Forbidden and missing repositories: "not found", the same way.
    s.git(
        &s.alice,
        &dir,
        &["archive", "--remote", &s.url("secret"), "HEAD"],
    )
    .fails()
    .says("not found");
    s.git(
        &s.bob,
        &dir,
        &["archive", "--remote", &s.url("admin"), "HEAD"],
    )
    .fails()
    .says("not found");
    s.git(
        &s.alice,
        &dir,
        &["archive", "--remote", &s.url("app-none"), "HEAD"],
    )
    .fails()
    .says("not found");
    // mallory is not let in at all.
    s.git(
        &s.mallory,
        &dir,
        &["archive", "--remote", &s.url("app-arch"), "HEAD"],
    )
    .fails();
}

/// Writes `bytes` random (incompressible) bytes to `path`.
fn random_file(path: &Path, bytes: u64) {
    let mut src = std::fs::File::open("/dev/urandom").unwrap();
    let mut dst = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let copied = std::io::copy(&mut std::io::Read::take(&mut src, bytes), &mut dst).unwrap();
    assert_eq!(copied, bytes);
}

#[test]
fn large_push_and_clone() {
    let slow = std::env::var("SLIPWAY_SLOW_TESTS").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    let total_mb: u64 = if slow { 300 } else { 40 };
    let files = 4u64;
    println!(
        "large_push_and_clone: {total_mb} MB in {files} files{}",
        if slow {
            ""
        } else {
            " (set SLIPWAY_SLOW_TESTS=1 for 300 MB)"
        }
    );
    eprintln!("large_push_and_clone: running with {total_mb} MB");
    let s = Server::start();
    let work = s.local_repo(&s.alice, "big");
    for i in 0..files {
        random_file(
            &work.join(format!("blob-{i}.bin")),
            total_mb * 1024 * 1024 / files,
        );
    }
    s.git(&s.alice, &work, &["add", "."]).ok();
    s.git(&s.alice, &work, &["commit", "-q", "-m", "big"]).ok();
    s.git(&s.alice, &work, &["push", "-q", &s.url("app-big"), "main"])
        .ok();

    let base = s.scratch("clone");
    s.git(&s.bob, &base, &["clone", "-q", &s.url("app-big"), "c"])
        .ok();
    let clone = base.join("c");
    assert_eq!(
        rev_parse(&s, &s.bob, &clone, "HEAD^{tree}"),
        rev_parse(&s, &s.alice, &work, "HEAD^{tree}")
    );
    s.git(&s.bob, &clone, &["fsck", "--no-progress"]).ok();
    let size = std::fs::metadata(clone.join("blob-0.bin")).unwrap().len();
    assert_eq!(size, total_mb * 1024 * 1024 / files);
}

#[test]
fn exit_status_and_stderr_are_relayed() {
    let s = Server::start();
    let dir = s.scratch("c");
    // A repository that does not exist.
    let out = s
        .git(&s.alice, &dir, &["clone", &s.url("app-nothing")])
        .fails()
        .says("slipway: repository `app-nothing` not found");
    assert!(out.stderr.contains("not found"), "{out}");
    assert!(
        !dir.join("app-nothing").exists(),
        "a failed clone leaves no directory"
    );
    // The same straight over ssh: the exit status of the refusal reaches the client.
    let out = s.ssh(&s.alice, "git-upload-pack 'app-nothing.git'");
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("not found"), "{out}");

    // A push the pre-receive check rejects: the hook's lines reach the pusher.
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-x"), "main"])
        .ok();
    s.git(
        &s.alice,
        &work,
        &["commit", "-q", "--amend", "-m", "rewritten"],
    )
    .ok();
    let out = s
        .git(
            &s.alice,
            &work,
            &["push", "--force", &s.url("app-x"), "main"],
        )
        .fails()
        .says("remote: slipway: DENIED force-update of refs/heads/main in app-x for alice")
        .says("remote: slipway: push refused; nothing was changed");
    assert!(out.stderr.contains("pre-receive hook declined"), "{out}");
    // A successful admin command exits 0; a failed one exits with its own status.
    assert_eq!(s.ssh(&s.alice, "whoami").code, 0);
    let out = s.ssh(&s.alice, "repo info nothing-here");
    assert_eq!(out.code, 1, "{out}");
}

#[test]
fn many_clones_at_once() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    for i in 0..5 {
        commit_file(
            &s,
            &s.alice,
            &work,
            &format!("f{i}.txt"),
            &"x".repeat(10_000 + i),
            "more",
        );
    }
    s.git(&s.alice, &work, &["push", &s.url("app-many"), "main"])
        .ok();
    let head = rev_parse(&s, &s.alice, &work, "HEAD");
    let base = s.scratch("clones");
    let results: Vec<Out> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (s, base) = (&s, &base);
                let key = if i % 2 == 0 { &s.alice } else { &s.bob };
                scope.spawn(move || {
                    s.git(
                        key,
                        base,
                        &["clone", "-q", &s.url("app-many"), &format!("c{i}")],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in results.into_iter().enumerate() {
        let out = out.ok();
        let clone = base.join(format!("c{i}"));
        assert_eq!(
            rev_parse(&s, &s.bob, &clone, "HEAD"),
            head,
            "clone {i}: {out}"
        );
    }
    s.ssh(&s.alice, "whoami").ok();
}

/// git (and the hooks it runs) serve clones and pushes at the configured niceness, so
/// pack work yields the CPU to the server; `git.nice: 0` leaves them at its priority.
#[test]
fn git_runs_at_the_configured_niceness() {
    let base: i32 = String::from_utf8(Command::new("nice").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for (setting, expected) in [(None, (base + 15).min(19)), (Some(0), base)] {
        // git.binary pointing at a wrapper that records its niceness, then runs git.
        let wrap = tempfile::tempdir().unwrap();
        let record = wrap.path().join("nice.txt");
        let script = wrap.path().join("git-wrapper");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$(nice) $*\" >> '{}'\nexec git \"$@\"\n",
                record.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut yaml = settings_yaml(&[]).replace(
            "  binary: git\n",
            &format!("  binary: {}\n", script.display()),
        );
        if let Some(n) = setting {
            yaml.push_str(&format!("  nice: {n}\n"));
        }
        let s = Server::start_with(Options {
            settings: Some(yaml),
            ..Default::default()
        });
        let work = s.local_repo(&s.alice, "w");
        s.git(&s.alice, &work, &["push", &s.url("app-nice"), "main"])
            .ok();
        let dir = s.scratch("clone");
        s.git(&s.alice, &dir, &["clone", "-q", &s.url("app-nice")])
            .ok();
        // The server runs git for other work too (reading history); the transport
        // processes are the ones that matter here.
        let seen = std::fs::read_to_string(&record).unwrap();
        let values: Vec<&str> = seen
            .lines()
            .filter(|l| l.contains("-pack ") && l.contains("app-nice.git"))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(values.len(), 2, "one push, one clone: {seen}");
        assert!(
            values.iter().all(|v| *v == expected.to_string()),
            "git.nice {setting:?}: git ran at {values:?}, expected {expected}"
        );
    }
}
