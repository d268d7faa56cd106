use super::*;

fn parse(text: &str) -> Result<DeployConfig, ConfigError> {
    parse_deploy_yaml("deploy.yaml", text)
}

/// The error for `text`, with its position.
fn error(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

fn group(body: &str) -> String {
    format!("applications:\n  web:\n    groups:\n      prod:\n{body}")
}

const SKETCH: &str = r#"applications:
  web:
    groups:
      prod:
        tags:
          - ["role=web", "role=api"]
          - ["env=prod"]
        config: half-at-a-time
        alarms:
          - { name: errors, prometheus: { url: "http://127.0.0.1:9090", query: "sum(rate(http_errors_total[1m]))", condition: "> 0.05" } }
          - { name: health, http: { url: "http://127.0.0.1:8080/healthz", expect: 200, timeout: 5s } }
          - { name: page, alertmanager: { alert: HighErrorRate } }
        ignore-alarm-poll-failure: false
        auto-rollback: [failure, alarm, stop]
        bake: 2m
        file-exists-behavior: DISALLOW
      staging:
        tags: [["env=staging", "=canary", "spare"]]
"#;

#[test]
fn the_sketch_parses_into_its_meaning() {
    let c = parse(SKETCH).unwrap();
    let g = c.group("web", "prod").unwrap();
    assert_eq!(g.tags.len(), 2);
    assert_eq!(
        g.tags[0].filters,
        vec![
            TagFilter::KeyAndValue {
                key: "role".into(),
                value: "web".into()
            },
            TagFilter::KeyAndValue {
                key: "role".into(),
                value: "api".into()
            }
        ]
    );
    assert_eq!(g.config, DeploymentConfig::HalfAtATime);
    assert_eq!(g.alarms.len(), 3);
    match &g.alarm("errors").unwrap().kind {
        AlarmKind::Prometheus {
            url,
            query,
            condition,
        } => {
            assert_eq!(url.as_str(), "http://127.0.0.1:9090/");
            assert_eq!(query, "sum(rate(http_errors_total[1m]))");
            assert_eq!(condition.op, Comparison::Gt);
            assert!(condition.holds(0.06) && !condition.holds(0.05));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        g.alarm("health").unwrap().kind,
        AlarmKind::Http {
            url: Url::parse("http://127.0.0.1:8080/healthz").unwrap(),
            expect: 200,
            timeout: Duration::from_secs(5)
        }
    );
    assert_eq!(
        g.alarm("page").unwrap().kind,
        AlarmKind::Alertmanager {
            alert: "HighErrorRate".into()
        }
    );
    assert!(!g.ignore_alarm_poll_failure);
    assert_eq!(
        g.auto_rollback,
        AutoRollback {
            on_failure: true,
            on_alarm: true,
            on_stop: true
        }
    );
    assert_eq!(g.bake, Some(Duration::from_secs(120)));
    assert_eq!(g.file_exists_behavior, Some(FileExistsBehavior::Disallow));

    let s = c.group("web", "staging").unwrap();
    assert_eq!(
        s.tags[0].filters,
        vec![
            TagFilter::KeyAndValue {
                key: "env".into(),
                value: "staging".into()
            },
            TagFilter::ValueOnly("canary".into()),
            TagFilter::KeyOnly("spare".into()),
        ]
    );
    // Defaults.
    assert_eq!(s.config, DeploymentConfig::OneAtATime);
    assert!(s.alarms.is_empty());
    assert_eq!(s.auto_rollback, AutoRollback::default());
    assert_eq!((s.bake, s.file_exists_behavior), (None, None));
    assert!(c.group("web", "nope").is_none() && c.group("api", "prod").is_none());
    let names: Vec<_> = c.groups().map(|(a, g, _)| format!("{a}/{g}")).collect();
    assert_eq!(names, ["web/prod", "web/staging"]);
}

#[test]
fn the_example_file_parses() {
    let c = parse_deploy_yaml("deploy.yaml", include_str!("../../../../etc/deploy.yaml"))
        .expect("etc/deploy.yaml parses");
    let g = c.group("web", "prod").expect("web/prod in etc/deploy.yaml");
    assert_eq!(g.config, DeploymentConfig::MinHealthyPercent(75));
    assert!(g.auto_rollback.on_alarm && !g.alarms.is_empty());
}

#[test]
fn empty_and_commented_files_are_empty_configurations() {
    for text in [
        "",
        "# nothing yet\n",
        "applications: {}\n",
        "applications:\n  web: {}\n",
    ] {
        let c = parse(text).unwrap();
        assert!(c.groups().next().is_none(), "{text:?}");
    }
}

#[test]
fn every_configuration_form() {
    for (text, want) in [
        ("one-at-a-time", DeploymentConfig::OneAtATime),
        ("half-at-a-time", DeploymentConfig::HalfAtATime),
        ("all-at-once", DeploymentConfig::AllAtOnce),
        (
            "{ min-healthy: { hosts: 0 } }",
            DeploymentConfig::MinHealthyHosts(0),
        ),
        (
            "{ min-healthy: { hosts: 6 } }",
            DeploymentConfig::MinHealthyHosts(6),
        ),
        (
            "{ min-healthy: { percent: 1 } }",
            DeploymentConfig::MinHealthyPercent(1),
        ),
        (
            "{ min-healthy: { percent: 100 } }",
            DeploymentConfig::MinHealthyPercent(100),
        ),
        (
            "\n          min-healthy:\n            percent: 40",
            DeploymentConfig::MinHealthyPercent(40),
        ),
    ] {
        let c = parse(&group(&format!(
            "        tags: [[a]]\n        config: {text}\n"
        )))
        .unwrap();
        assert_eq!(c.group("web", "prod").unwrap().config, want, "{text}");
    }
}

#[test]
fn conditions() {
    for (text, op, t) in [
        ("> 0.05", Comparison::Gt, 0.05),
        (">=1", Comparison::Ge, 1.0),
        ("< -2", Comparison::Lt, -2.0),
        ("<= 1e3", Comparison::Le, 1000.0),
        ("== 0", Comparison::Eq, 0.0),
        (" != 3 ", Comparison::Ne, 3.0),
    ] {
        let c = Condition::parse(text).unwrap();
        assert_eq!((c.op, c.threshold), (op, t), "{text}");
    }
    for bad in ["0.05", "> ", "> x", "=> 1", "> inf", "> NaN", "~ 1"] {
        assert!(Condition::parse(bad).is_err(), "{bad}");
    }
    let ne = Condition::parse("!= 0").unwrap();
    assert!(ne.holds(1.0) && !ne.holds(0.0) && !ne.holds(f64::NAN));
    assert_eq!(Condition::parse(">=0.5").unwrap().to_string(), ">= 0.5");
}

/// Each mistake is reported at the value that causes it.
#[test]
fn mistakes_are_located() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        // Names.
        ("applications:\n  \"web app\": {}\n", (2, 3), "not a valid name"),
        ("applications:\n  web:\n    groups:\n      -prod:\n        tags: [[a]]\n", (4, 7), "not a valid name"),
        ("applications:\n  web:\n    groups:\n      a:\n        tags: [[a]]\n      a:\n        tags: [[b]]\n", (6, 7), "appears twice"),
        ("applications:\n  web:\n    grups: {}\n", (3, 5), "unknown field `grups`"),
        ("aplications: {}\n", (1, 1), "unknown field `aplications`"),
        // Group keys.
        (&group("        tags: [[a]]\n        confg: all-at-once\n"), (6, 9), "unknown field `confg`"),
        (&group("        config: all-at-once\n"), (5, 9), "needs `tags`"),
        (&group("        tags: [[a]]\n        bake: 2m\n        bake: 3m\n"), (5, 9), "given twice"),
        // Tags.
        (&group("        tags: []\n"), (5, 15), "at least one tag set"),
        (&group("        tags: [[]]\n"), (5, 16), "at least one filter"),
        (&group("        tags: [[a], [b], [c], [d]]\n"), (5, 31), "at most 3 tag sets"),
        (&group("        tags: [[a, b, c, d, e, f, g, h, i, j, k]]\n"), (5, 47), "at most 10 filters"),
        (&group("        tags: [[\"role=\"]]\n"), (5, 17), "write `role` to match the key alone"),
        (&group("        tags: [[\"=\"]]\n"), (5, 17), "tag value"),
        (&group("        tags: [[\"ro le=web\"]]\n"), (5, 17), "tag key"),
        // Configuration.
        (&group("        tags: [[a]]\n        config: two-at-a-time\n"), (6, 17), "must be one-at-a-time"),
        (&group("        tags: [[a]]\n        config: { min-healthy: { percent: 0 } }\n"), (6, 43), "from 1 to 100"),
        (&group("        tags: [[a]]\n        config: { min-healthy: { percent: 101 } }\n"), (6, 43), "from 1 to 100"),
        (&group("        tags: [[a]]\n        config: { min-healthy: { hosts: -1 } }\n"), (6, 41), "u32"),
        (&group("        tags: [[a]]\n        config: { min-healthy: { fraction: 2 } }\n"), (6, 34), "unknown key `fraction`"),
        (&group("        tags: [[a]]\n        config: { max-unhealthy: 2 }\n"), (6, 19), "unknown key `max-unhealthy`"),
        // Alarms.
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, http: { url: \"http://h\" } }\n          - { name: x, http: { url: \"http://h\" } }\n"), (8, 21), "alarm `x` appears twice"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x }\n"), (7, 13), "watches nothing"),
        (&group("        tags: [[a]]\n        alarms:\n          - { http: { url: \"http://h\" } }\n"), (7, 13), "needs a `name`"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, http: { url: \"http://h\" }, alertmanager: { alert: A } }\n"), (7, 13), "more than one type"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, sms: {} }\n"), (7, 24), "unknown field `sms`"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, http: { url: \"ftp://h\" } }\n"), (7, 37), "http:// or https://"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, http: { url: \"not a url\" } }\n"), (7, 37), "not a URL"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, http: { url: \"http://h\", expect: 99 } }\n"), (7, 57), "not an HTTP status"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, http: { url: \"http://h\", timeout: 5m } }\n"), (7, 58), "between 1s and 60s"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, prometheus: { url: \"http://h\", query: up, condition: \"up > 1\" } }\n"), (7, 77), "must start with >"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, prometheus: { url: \"http://h\", query: \" \", condition: \"> 1\" } }\n"), (7, 62), "query` is empty"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, prometheus: { url: \"http://h\", query: up } }\n"), (7, 36), "missing field `condition`"),
        (&group("        tags: [[a]]\n        alarms:\n          - { name: x, alertmanager: { alert: \"\" } }\n"), (7, 47), "alert name"),
        // Rollback, bake, file-exists-behavior.
        (&group("        tags: [[a]]\n        auto-rollback: [failure, failure]\n"), (6, 34), "lists `failure` twice"),
        (&group("        tags: [[a]]\n        auto-rollback: [crash]\n"), (6, 25), "must be `failure`, `alarm` or `stop`"),
        (&group("        tags: [[a]]\n        auto-rollback: [alarm]\n"), (5, 9), "needs at least one alarm"),
        (&group("        tags: [[a]]\n        bake: 2d\n"), (6, 15), "at most 24h"),
        (&group("        tags: [[a]]\n        bake: soon\n"), (6, 15), "not a duration"),
        (&group("        tags: [[a]]\n        file-exists-behavior: overwrite\n"), (6, 31), "DISALLOW, OVERWRITE or RETAIN"),
        (&group("        tags: [[a]]\n        ignore-alarm-poll-failure: maybe\n"), (6, 36), "expected a boolean"),
    ];
    let mut wrong = Vec::new();
    for (text, at, msg) in cases {
        let err = error(text);
        if (err.line, err.column) != *at || !err.message.contains(msg) {
            wrong.push(format!(
                "{text:?}\n  want {}:{}: …{msg}…\n  got  {err}",
                at.0, at.1
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn eleven_alarms_are_refused_at_the_eleventh() {
    let mut body = String::from("        tags: [[a]]\n        alarms:\n");
    for i in 0..11 {
        body.push_str(&format!(
            "          - {{ name: a{i}, alertmanager: {{ alert: A{i} }} }}\n"
        ));
    }
    let err = error(&group(&body));
    assert_eq!((err.line, err.column), (17, 13), "{err}");
    assert!(err.message.contains("at most 10 alarms"), "{err}");
}

#[test]
fn oversized_files_are_refused() {
    let text = format!("# {}\n", "x".repeat(super::super::MAX_FILE_BYTES));
    assert!(error(&text).message.contains("the limit is"));
}

#[test]
fn tag_keys_and_values() {
    assert!(check_tag_key("aws:autoscaling/group-name@x+1").is_ok());
    assert!(check_tag_key("").is_err() && check_tag_key("a b").is_err());
    assert!(check_tag_key(&"k".repeat(129)).is_err());
    assert!(check_tag_value("a value = with equals").is_ok());
    assert!(check_tag_value(" x").is_err() && check_tag_value("a\nb").is_err());
    assert_eq!(
        TagFilter::parse("k=v=w").unwrap(),
        TagFilter::KeyAndValue {
            key: "k".into(),
            value: "v=w".into()
        }
    );
    assert_eq!(TagFilter::parse("=v").unwrap().to_string(), "=v");
}
