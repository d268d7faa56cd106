use super::*;
use crate::store::NewEvent;

fn context() -> RulesContext {
    RulesContext {
        users: [("alice".to_string(), true), ("bob".to_string(), false)].into(),
    }
}

const SAMPLE: &str = r#"rules:
  - name: tell-the-team
    match: { source: git, type: push, repo: "app-*", ref: "refs/heads/*" }
    targets:
      - email: [team@example.com, "user:alice"]
      - webhook: { url: "https://hooks.example.com/slipway", secret-param: /hooks/secret }
  - name: tidy-branches
    schedule: "every 6h"
    action:
      delete-stale-branches: { repo: "*", older-than: 30d, merged-only: true, keep: [main, "release/*"] }
"#;

fn parse(text: &str) -> Result<RulesConfig, ConfigError> {
    parse_rules_yaml("rules.yaml", text, &context())
}

fn event(source: &str, kind: &str, repo: &str, refname: &str) -> Event {
    Event {
        id: 1,
        time: String::new(),
        event: NewEvent {
            source: source.into(),
            kind: kind.into(),
            actor: Some("alice".into()),
            repo: Some(repo.into()),
            refname: Some(refname.into()),
            state: None,
            detail: serde_json::Value::Null,
        },
    }
}

#[test]
fn the_sample_parses() {
    let config = parse(SAMPLE).unwrap();
    assert_eq!(config.rules.len(), 2);
    let tell = &config.rules[0];
    assert!(
        matches!(&tell.targets[0], Target::Email(r) if r == &vec![Recipient::Address("team@example.com".into()), Recipient::User("alice".into())])
    );
    assert!(
        matches!(&tell.targets[1], Target::Webhook { secret_param: Some(p), .. } if p == "/hooks/secret")
    );
    let tidy = &config.rules[1];
    assert_eq!(tidy.schedule, Some(Duration::from_secs(6 * 3600)));
    let Some(Action::DeleteStaleBranches(s)) = &tidy.action else {
        panic!()
    };
    assert_eq!(s.older_than, Duration::from_secs(30 * 86400));
    assert!(s.merged_only && s.keeps("main") && s.keeps("release/1.0") && !s.keeps("feature/x"));
}

#[test]
fn matching_is_by_glob_and_missing_fields_match_anything() {
    let config = parse(SAMPLE).unwrap();
    let m = config.rules[0].matcher.as_ref().unwrap();
    assert!(m.matches(&event("git", "push", "app-web", "refs/heads/main")));
    assert!(!m.matches(&event("git", "push", "web", "refs/heads/main")));
    assert!(!m.matches(&event("git", "push", "app-web", "refs/tags/v1")));
    assert!(!m.matches(&event("build", "push", "app-web", "refs/heads/main")));
    assert!(Matcher::default().matches(&event("deploy", "x", "y", "z")));
}

fn error(text: &str) -> ConfigError {
    parse(text).expect_err("must be refused")
}

#[test]
fn errors_point_at_the_bad_value() {
    let cases = [
        ("\"user:alice\"", "\"user:carol\"", "unknown user `carol`"),
        ("\"user:alice\"", "\"user:bob\"", "has no `email`"),
        (
            "team@example.com",
            "not-an-address",
            "neither an email address",
        ),
        (
            "https://hooks.example.com/slipway",
            "ftp://x/y",
            "must be http:// or https://",
        ),
        (
            "/hooks/secret",
            "hooks/secret",
            "must look like `/team/name`",
        ),
        ("\"every 6h\"", "\"each 6h\"", "must read `every DURATION`"),
        ("older-than: 30d", "older-than: soon", "is not a duration"),
        ("\"app-*\"", "\"app-[\"", "not a valid pattern"),
    ];
    for (from, to, message) in cases {
        let text = SAMPLE.replace(from, to);
        let err = error(&text);
        assert!(err.message.contains(message), "{from} → {to}: {err}");
        let line = text.lines().nth(err.line - 1).unwrap();
        let bad = to.trim_matches('"');
        let bad = bad.split(": ").last().unwrap();
        assert!(
            line.contains(bad),
            "{err} should point at the line with {bad}: {line}"
        );
        // The column is where the scalar starts: its opening quote when it has one.
        let value = to.split(": ").last().unwrap();
        let mut start = line.find(value).unwrap();
        if !value.starts_with('"') && line[..start].ends_with('"') {
            start -= 1;
        }
        assert_eq!(err.column, start + 1, "{err} column");
    }
}

#[test]
fn shape_errors_name_the_rule() {
    let err = error("rules:\n  - name: a\n    schedule: every 1h\n");
    assert!(err.message.contains("needs an `action`"), "{err}");
    assert_eq!(err.line, 2);
    let err = error("rules:\n  - name: a\n    match: {}\n");
    assert!(
        err.message.contains("needs `targets` or an `action`"),
        "{err}"
    );
    let err = error("rules:\n  - name: a\n    targets: []\n");
    assert!(err.message.contains("needs `match`"), "{err}");
    let err = error("rules:\n  - name: a\n    match: {}\n    targets: [{email: [a@b.c]}]\n  - name: a\n    match: {}\n    targets: [{email: [a@b.c]}]\n");
    assert!(err.message.contains("already a rule named `a`"), "{err}");
    assert_eq!(err.line, 5);
    let err = error("rules:\n  - name: a\n    mtch: {}\n");
    assert!(err.message.contains("unknown field `mtch`"), "{err}");
}

#[test]
fn an_empty_file_means_no_rules() {
    assert!(parse("").unwrap().rules.is_empty());
    assert!(parse("rules: []\n").unwrap().rules.is_empty());
}
