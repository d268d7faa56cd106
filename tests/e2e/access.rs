//! Access control as a user meets it: every ref of a push decided on its own, denials
//! that name the statement, and `policy simulate` to explain a decision.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// `git ls-remote` of `repo` as `key`: the server's refs, for before/after comparisons.
fn ls_remote(s: &Server, key: &Key, repo: &str) -> String {
    let dir = s.scratch("ls-remote");
    s.git(key, &dir, &["ls-remote", &s.url(repo)]).ok().stdout
}

/// The object id `rev` names in the local repository `dir`.
fn rev_parse(s: &Server, dir: &Path, rev: &str) -> String {
    s.git(&s.admin, dir, &["rev-parse", rev])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// The `slipway: DENIED …` lines of a push's output.
fn denied_lines(out: &Out) -> Vec<String> {
    out.stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("slipway: DENIED"))
        .map(str::to_string)
        .collect()
}

/// A local repository of `key` with two commits on main and `origin` pointing at `repo`.
/// Returns the directory and the id of the first commit (for rewinds).
fn two_commits(s: &Server, key: &Key, name: &str, repo: &str) -> (PathBuf, String) {
    let dir = s.local_repo(key, name);
    let first = rev_parse(s, &dir, "HEAD");
    commit_file(s, key, &dir, "second.txt", "two\n", "second commit");
    s.git(key, &dir, &["remote", "add", "origin", &s.url(repo)])
        .ok();
    (dir, first)
}

/// The team policy with `statement` appended to alice's `developer` policy.
fn team_with_developer_statement(s: &Server, statement: &str) -> String {
    let yaml = team_access_yaml(&s.admin, &s.alice, &s.bob);
    let marker = "  reader:\n";
    assert!(yaml.contains(marker));
    yaml.replacen(marker, &format!("    - {statement}\n{marker}"), 1)
}

#[test]
fn ref_updates_are_classified_and_decided_per_ref() {
    let s = Server::start();
    let (w, first) = two_commits(&s, &s.alice, "w", "app-x");
    let alice = &s.alice;

    // Create: the first push creates the repository and main.
    s.git(alice, &w, &["push", "origin", "main"])
        .ok()
        .never_says("DENIED");
    // Create a branch.
    s.git(alice, &w, &["push", "origin", "main:refs/heads/topic"])
        .ok()
        .never_says("DENIED");
    // Fast-forward main.
    commit_file(&s, alice, &w, "third.txt", "three\n", "third commit");
    s.git(alice, &w, &["push", "origin", "main"])
        .ok()
        .never_says("DENIED");
    let tip = rev_parse(&s, &w, "HEAD");

    // Force-push main: denied by the developer policy's second statement.
    let out = s
        .git(
            alice,
            &w,
            &["push", "origin", &format!("+{first}:refs/heads/main")],
        )
        .fails()
        .says("slipway: DENIED force-update of refs/heads/main in app-x for alice: developer[1]");
    assert_eq!(denied_lines(&out).len(), 1, "{out}");

    // Delete main: main is app-x's default branch, which nobody may delete.
    s.git(alice, &w, &["push", "origin", ":refs/heads/main"])
        .fails()
        .says("slipway: DENIED delete of refs/heads/main in app-x for alice:");
    assert!(ls_remote(&s, alice, "app-x").contains(&format!("{tip}\trefs/heads/main")));

    // Delete main where it is not the default branch: the policy decides (developer[1]).
    s.git(
        alice,
        &w,
        &["push", &s.url("app-y"), "main:refs/heads/develop"],
    )
    .ok();
    s.git(alice, &w, &["push", &s.url("app-y"), "main"]).ok();
    s.git(alice, &w, &["push", &s.url("app-y"), ":refs/heads/main"])
        .fails()
        .says("slipway: DENIED delete of refs/heads/main in app-y for alice: developer[1]");
    assert!(ls_remote(&s, alice, "app-y").contains("refs/heads/main"));

    // feature/* may be created, rewritten and deleted (developer[2]).
    s.git(alice, &w, &["push", "origin", "main:refs/heads/feature/x"])
        .ok();
    s.git(
        alice,
        &w,
        &["push", "origin", &format!("+{first}:refs/heads/feature/x")],
    )
    .ok()
    .never_says("DENIED");
    assert!(ls_remote(&s, alice, "app-x").contains(&format!("{first}\trefs/heads/feature/x")));
    s.git(alice, &w, &["push", "origin", ":refs/heads/feature/x"])
        .ok()
        .never_says("DENIED");
    assert!(!ls_remote(&s, alice, "app-x").contains("refs/heads/feature/x"));

    // Tags: allowed by developer[0] (git:create-ref on repo:app-*) ...
    s.git(alice, &w, &["tag", "v1"]).ok();
    s.git(alice, &w, &["push", "origin", "refs/tags/v1"])
        .ok()
        .never_says("DENIED");
    // ... until a statement denies creating tags.
    let yaml = team_with_developer_statement(
        &s,
        r#"{ effect: deny, actions: ["git:create-ref"], resources: ["repo:*:refs/tags/*"] }"#,
    );
    s.set_access(&yaml).ok();
    s.git(alice, &w, &["tag", "v2"]).ok();
    s.git(alice, &w, &["push", "origin", "refs/tags/v2"])
        .fails()
        .says("slipway: DENIED create of refs/tags/v2 in app-x for alice: developer[3]");
    // Branches are still allowed.
    s.git(alice, &w, &["push", "origin", "main:refs/heads/topic2"])
        .ok();
    let refs = ls_remote(&s, alice, "app-x");
    assert!(refs.contains("refs/tags/v1"), "{refs}");
    assert!(!refs.contains("refs/tags/v2"), "{refs}");
    assert!(refs.contains("refs/heads/topic2"), "{refs}");
}

#[test]
fn a_denied_push_changes_nothing_and_lists_every_denied_ref() {
    let s = Server::start();
    let (w, first) = two_commits(&s, &s.alice, "w", "app-x");
    let alice = &s.alice;
    s.git(
        alice,
        &w,
        &["push", "origin", "main", "main:refs/heads/develop"],
    )
    .ok();
    let before = ls_remote(&s, alice, "app-x");

    // Two rewrites (main: explicit deny; develop: nothing allows it) and one allowed
    // creation, in one push.
    let out = s
        .git(
            alice,
            &w,
            &[
                "push",
                "origin",
                &format!("+{first}:refs/heads/main"),
                &format!("+{first}:refs/heads/develop"),
                "main:refs/heads/new-branch",
            ],
        )
        .fails();
    let denied = denied_lines(&out);
    assert_eq!(denied.len(), 2, "{out}");
    assert!(
        denied.iter().any(|l| l
            .contains("DENIED force-update of refs/heads/main in app-x for alice: developer[1]")),
        "{out}"
    );
    assert!(
        denied.iter().any(|l| l.contains(
            "DENIED force-update of refs/heads/develop in app-x for alice: no statement allows it"
        )),
        "{out}"
    );
    assert!(
        !denied.iter().any(|l| l.contains("new-branch")),
        "an allowed ref is not listed as denied:\n{out}"
    );
    out.says("nothing was changed");
    // Nothing changed: not even the ref that alone would have been allowed.
    assert_eq!(ls_remote(&s, alice, "app-x"), before);
}

#[test]
fn the_default_branch_cannot_be_deleted_even_by_the_administrator() {
    let s = Server::start();
    let (w, _) = two_commits(&s, &s.admin, "w", "app-x");
    s.git(
        &s.admin,
        &w,
        &["push", "origin", "main", "main:refs/heads/develop"],
    )
    .ok();
    let before = ls_remote(&s, &s.admin, "app-x");
    s.git(&s.admin, &w, &["push", "origin", ":refs/heads/main"])
        .fails()
        .says("DENIED delete of refs/heads/main in app-x for admin")
        .says("default branch cannot be deleted");
    assert_eq!(ls_remote(&s, &s.admin, "app-x"), before);

    // The same holds for the admin repository.
    let admin_before = ls_remote(&s, &s.admin, "admin");
    let clone = s.scratch("admin");
    s.git(&s.admin, &clone, &["clone", "-q", &s.url("admin"), "a"])
        .ok();
    s.git(
        &s.admin,
        &clone.join("a"),
        &["push", "origin", ":refs/heads/main"],
    )
    .fails()
    .says("default branch cannot be deleted");
    assert_eq!(ls_remote(&s, &s.admin, "admin"), admin_before);

    // Other branches the administrator deletes as usual.
    s.git(&s.admin, &w, &["push", "origin", ":refs/heads/develop"])
        .ok()
        .never_says("DENIED");
    assert!(!ls_remote(&s, &s.admin, "app-x").contains("refs/heads/develop"));
}

#[test]
fn explicit_deny_wins_and_no_statement_means_deny() {
    let s = Server::start();
    let (w, first) = two_commits(&s, &s.alice, "w", "app-x");
    let alice = &s.alice;
    s.git(
        alice,
        &w,
        &["push", "origin", "main", "main:refs/heads/develop"],
    )
    .ok();

    // Implicit deny: no statement allows alice to rewrite develop.
    s.git(alice, &w, &["push", "origin", &format!("+{first}:refs/heads/develop")])
        .fails()
        .says("DENIED force-update of refs/heads/develop in app-x for alice: no statement allows it (implicit deny)");

    // alice joins a second group whose policy allows force-pushes everywhere.
    let yaml = team_access_yaml(&s.admin, &s.alice, &s.bob)
        .replace(
            "email: alice@example.com, groups: [dev]",
            "email: alice@example.com, groups: [dev, ops]",
        )
        .replace(
            "  readers: { policies: [reader] }\n",
            "  readers: { policies: [reader] }\n  ops:     { policies: [operator] }\n",
        )
        .replace(
            "  reader:\n",
            "  operator:\n    - { effect: allow, actions: [\"git:force-push\", \"git:delete-ref\"], resources: [\"repo:*\"] }\n  reader:\n",
        );
    assert!(yaml.contains("groups: [dev, ops]") && yaml.contains("operator:"));
    s.set_access(&yaml).ok();
    s.ssh(alice, "whoami").ok().says("dev, ops");

    // The allow from ops now lets develop be rewritten ...
    s.git(
        alice,
        &w,
        &["push", "origin", &format!("+{first}:refs/heads/develop")],
    )
    .ok()
    .never_says("DENIED");
    // ... but developer[1]'s explicit deny on main still wins over it.
    let before = ls_remote(&s, alice, "app-x");
    s.git(
        alice,
        &w,
        &["push", "origin", &format!("+{first}:refs/heads/main")],
    )
    .fails()
    .says("DENIED force-update of refs/heads/main in app-x for alice: developer[1]");
    assert_eq!(ls_remote(&s, alice, "app-x"), before);
    s.ssh(
        &s.admin,
        "policy simulate alice git:force-push repo:app-x:refs/heads/main",
    )
    .ok()
    .says("decision: DENY (explicit) by developer[1]")
    .says("operator[0]");
}

#[test]
fn a_reader_can_clone_but_not_push_and_an_unknown_key_gets_nothing() {
    let s = Server::start();
    let (w, _) = two_commits(&s, &s.alice, "w", "app-x");
    s.git(&s.alice, &w, &["push", "origin", "main"]).ok();
    let before = ls_remote(&s, &s.alice, "app-x");

    let dir = s.scratch("bob");
    s.git(&s.bob, &dir, &["clone", "-q", &s.url("app-x"), "x"])
        .ok();
    let clone = dir.join("x");
    assert_eq!(
        std::fs::read_to_string(clone.join("second.txt")).unwrap(),
        "two\n"
    );
    commit_file(&s, &s.bob, &clone, "bob.txt", "bob\n", "bob was here");
    s.git(&s.bob, &clone, &["push", "origin", "main"])
        .fails()
        .says("may not push")
        .never_says("not found");
    s.git(&s.bob, &clone, &["push", "origin", "main:refs/heads/bobs"])
        .fails()
        .never_says("not found");
    assert_eq!(ls_remote(&s, &s.alice, "app-x"), before);

    let dir = s.scratch("mallory");
    s.git(&s.mallory, &dir, &["clone", "-q", &s.url("app-x"), "x"])
        .fails()
        .says("Permission denied");
    assert!(!dir.join("x").join("second.txt").exists());
    s.git(&s.mallory, &dir, &["ls-remote", &s.url("app-x")])
        .fails()
        .never_says("refs/heads/main");
}

#[test]
fn policy_simulate_explains_a_decision() {
    let s = Server::start();
    let out = s
        .ssh(
            &s.admin,
            "policy simulate alice git:force-push repo:app-x:refs/heads/main",
        )
        .ok();
    let line_of = |statement: &str| -> String {
        out.stdout
            .lines()
            .find(|l| l.contains(&format!("{statement}:")))
            .unwrap_or_else(|| panic!("no line for {statement}:\n{out}"))
            .to_string()
    };
    assert!(
        line_of("developer[0]").contains("action does not match"),
        "{out}"
    );
    assert!(line_of("developer[1]").contains("matched"), "{out}");
    assert!(!line_of("developer[1]").contains("does not match"), "{out}");
    assert!(
        line_of("developer[2]").contains("resource does not match"),
        "{out}"
    );
    out.says("decision: DENY (explicit) by developer[1]");

    let json = s
        .ssh(
            &s.admin,
            "policy simulate alice git:force-push repo:app-x:refs/heads/main --json",
        )
        .ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert!(v.is_object(), "{json}");
    assert_eq!(v["decision"], "DENY (explicit)");
    assert!(
        v["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("developer[1]"),
        "{json}"
    );
    let statements = v["statements"].as_array().expect("statements");
    assert_eq!(statements.len(), 3, "{json}");
    let outcomes: Vec<&str> = statements
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "action does not match",
            "matched",
            "resource does not match"
        ]
    );

    // An allowed request says which statement allows it.
    s.ssh(
        &s.admin,
        "policy simulate alice git:push repo:app-x:refs/heads/main",
    )
    .ok()
    .says("decision: ALLOW by developer[0]");
    // Nothing applies: implicit deny.
    s.ssh(
        &s.admin,
        "policy simulate alice git:push repo:other:refs/heads/main",
    )
    .ok()
    .says("decision: DENY (implicit)");

    // alice may ask about herself, not about bob.
    s.ssh(
        &s.alice,
        "policy simulate alice git:force-push repo:app-x:refs/heads/feature/a",
    )
    .ok()
    .says("decision: ALLOW by developer[2]");
    s.ssh(&s.alice, "policy simulate bob git:pull repo:app-x")
        .fails()
        .says("may simulate only your own access")
        .never_says("decision:");

    // Unknown users and malformed resources are clear errors.
    s.ssh(&s.admin, "policy simulate nobody git:pull repo:app-x")
        .fails()
        .says("no user `nobody`");
    s.ssh(&s.admin, "policy simulate alice git:pull app-x")
        .fails()
        .says("resource `app-x` must look like")
        .never_says("decision:");
    s.ssh(&s.admin, "policy simulate alice git:pull repo:")
        .fails()
        .says("names nothing after")
        .never_says("decision:");
}
