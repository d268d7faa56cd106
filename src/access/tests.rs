use super::*;

const ADMIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClNSwlLOKV1n7gN5ORwrQv0ItlVvibQURHxkB4k8rLr admin@test";
const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMyyxyN+EPXeRvEtPB5AdQc8Uks1NRfTD6YioV5Iu8T7 alice@test";

fn sample() -> String {
    format!(
        r#"users:
  admin: {{ keys: ["{ADMIN_KEY}"], groups: [admins] }}
  alice: {{ keys: ["{ALICE_KEY}"], email: alice@example.com, groups: [dev] }}
groups:
  admins: {{ policies: [administrator] }}
  dev:    {{ policies: [developer] }}
policies:
  administrator:
    - {{ effect: allow, actions: ["*"], resources: ["*"] }}
  developer:
    - {{ effect: allow, actions: ["git:pull", "git:push", "git:create-ref", "repo:create"], resources: ["repo:app-*"] }}
    - {{ effect: deny,  actions: ["git:force-push", "git:delete-ref"], resources: ["repo:*:refs/heads/main"] }}
    - {{ effect: allow, actions: ["git:force-push", "git:delete-ref"], resources: ["repo:app-*:refs/heads/feature/*"] }}
"#
    )
}

/// One table row: user, action, resource, expected allowed, expected deciding statement prefix.
fn check(yaml: &str, rows: &[(&str, &str, &str, bool, &str)]) {
    let config = parse_access_yaml("access.yaml", yaml).expect("sample parses");
    for (user, action, resource, allowed, by) in rows {
        let resource = Resource::parse(resource).unwrap();
        let decision = config.evaluate(user, action, &resource);
        assert_eq!(
            decision.allowed(),
            *allowed,
            "{user} {action} {resource}: {decision:?}"
        );
        assert!(
            decision.reason().starts_with(by),
            "{user} {action} {resource}: decided by {:?}, expected {by}",
            decision.reason()
        );
    }
}

#[test]
fn decisions_follow_deny_then_allow_then_implicit_deny() {
    check(
        &sample(),
        &[
            (
                "admin",
                "repo:delete",
                "repo:anything",
                true,
                "administrator[0]",
            ),
            ("alice", "git:pull", "repo:app-web", true, "developer[0]"),
            (
                "alice",
                "git:push",
                "repo:app-web:refs/heads/main",
                true,
                "developer[0]",
            ),
            (
                "alice",
                "git:force-push",
                "repo:app-web:refs/heads/main",
                false,
                "developer[1]",
            ),
            (
                "alice",
                "git:delete-ref",
                "repo:app-web:refs/heads/main",
                false,
                "developer[1]",
            ),
            (
                "alice",
                "git:force-push",
                "repo:app-web:refs/heads/feature/x",
                true,
                "developer[2]",
            ),
            (
                "alice",
                "git:force-push",
                "repo:app-web:refs/heads/other",
                false,
                "no statement",
            ),
            ("alice", "git:pull", "repo:admin", false, "no statement"),
            (
                "alice",
                "repo:delete",
                "repo:app-web",
                false,
                "no statement",
            ),
            ("nobody", "git:pull", "repo:app-web", false, "no statement"),
        ],
    );
}

#[test]
fn ref_level_statements_do_not_grant_repo_level_actions() {
    let yaml = sample().replace(
        "policies:\n  administrator:",
        "policies:\n  narrow:\n    - { effect: allow, actions: [\"git:pull\"], resources: [\"repo:x:refs/heads/main\"] }\n  administrator:",
    );
    let yaml = yaml.replace(
        "dev:    { policies: [developer] }",
        "dev:    { policies: [narrow] }",
    );
    check(
        &yaml,
        &[("alice", "git:pull", "repo:x", false, "no statement")],
    );
}

#[test]
fn may_push_somewhere_respects_repo_wide_denies() {
    let config = parse_access_yaml("access.yaml", &sample()).unwrap();
    assert!(config.may_push_somewhere("alice", "app-web"));
    assert!(!config.may_push_somewhere("alice", "admin"));
    assert!(config.may_push_somewhere("admin", "admin"));
    assert!(!config.may_push_somewhere("nobody", "app-web"));
}

#[test]
fn explain_lists_every_statement() {
    let config = parse_access_yaml("access.yaml", &sample()).unwrap();
    let trace = config.explain(
        "alice",
        "git:force-push",
        &Resource::repo_ref("app-web", "refs/heads/main"),
    );
    assert_eq!(trace.statements.len(), 3);
    assert_eq!(trace.statements[0].outcome, "action does not match");
    assert_eq!(trace.statements[1].outcome, "matched");
    assert_eq!(trace.statements[2].outcome, "resource does not match");
    assert!(matches!(trace.decision, Decision::ExplicitDeny(_)));
}

fn error_of(yaml: &str) -> ConfigError {
    parse_access_yaml("access.yaml", yaml).expect_err("must be refused")
}

#[test]
fn unknown_group_is_reported_at_its_position() {
    let yaml = sample().replace("groups: [dev]", "groups: [devs]");
    let err = error_of(&yaml);
    assert_eq!((err.line, err.file.as_str()), (3, "access.yaml"), "{err}");
    assert!(err.message.contains("unknown group `devs`"), "{err}");
    let line = yaml.lines().nth(err.line - 1).unwrap();
    assert_eq!(
        err.column,
        line.find("devs").unwrap() + 1,
        "column points at the name: {err}"
    );
}

#[test]
fn unknown_policy_invalid_key_and_action_are_located() {
    let err = error_of(&sample().replace("policies: [developer]", "policies: [dveloper]"));
    assert_eq!(err.line, 6, "{err}");
    assert!(err.message.contains("unknown policy `dveloper`"), "{err}");

    let err = error_of(&sample().replace("AAAAC3NzaC1lZDI1NTE5AAAAIMyy", "AAAAC3Nz!!"));
    assert_eq!(err.line, 3, "{err}");
    assert!(err.message.contains("invalid SSH public key"), "{err}");

    let yaml = sample().replace("\"git:push\", \"git:create-ref\"", "\"git:pushh\"");
    let err = error_of(&yaml);
    assert_eq!(err.line, 11, "{err}");
    let line = yaml.lines().nth(err.line - 1).unwrap();
    assert_eq!(err.column, line.find("\"git:pushh\"").unwrap() + 1, "{err}");
    assert!(err.message.contains("unknown action `git:pushh`"), "{err}");
}

#[test]
fn syntax_errors_and_unknown_fields_are_located() {
    let err = error_of("users:\n  admin: { keys: [\n");
    assert!(err.line >= 2, "{err}");
    let err = error_of(&sample().replace("email: alice", "mail: alice"));
    assert_eq!(err.line, 3, "{err}");
    assert!(err.message.contains("unknown field `mail`"), "{err}");
}

#[test]
fn refuses_a_config_without_an_administrator() {
    let err = error_of(&sample().replace("groups: [admins]", "groups: [dev]"));
    assert_eq!(err.line, 1);
    assert!(
        err.message.contains("no user with a key could administer"),
        "{err}"
    );
    // An administrator without keys does not count either.
    let no_key = sample().replace(&format!("keys: [\"{ADMIN_KEY}\"], "), "");
    assert!(error_of(&no_key).message.contains("no user with a key"));
}

#[test]
fn duplicate_keys_are_refused() {
    let err = error_of(&sample().replace(ALICE_KEY, ADMIN_KEY));
    assert!(err.message.contains("listed more than once"), "{err}");
}

#[test]
fn yaml_bombs_and_huge_files_are_refused() {
    // Billion laughs: nine levels of nine-fold aliases, used where names are expected.
    let mut bomb = String::from(
        "users:\n  x:\n    groups: &l0 [\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  y{i}:\n    groups: &l{i} [*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p}]\n"
        ));
    }
    let err = error_of(&bomb);
    assert!(err.message.contains("invalid type"), "{err}");

    let huge = format!("users:\n  x: {{ email: \"{}\" }}\n", "a".repeat(2 << 20));
    let err = error_of(&huge);
    assert!(err.message.contains("the limit is"), "{err}");

    let deep = format!(
        "users:\n  x:\n    groups: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = error_of(&deep);
    assert!(
        err.message.contains("recursion limit") || err.message.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn fingerprints_find_users() {
    let config = parse_access_yaml("access.yaml", &sample()).unwrap();
    let fp = config.users["alice"].keys[0].fingerprint.clone();
    assert!(fp.starts_with("SHA256:"));
    assert_eq!(config.user_by_fingerprint(&fp), Some("alice"));
    assert_eq!(config.user_by_fingerprint("SHA256:nope"), None);
}
