use std::collections::BTreeMap;

use super::*;
use crate::config::deploy::parse_deploy_yaml;

use DeploymentConfig::*;

/// `n` healthy hosts with an old revision, named h01, h02, ….
fn hosts(n: usize) -> Vec<HostInfo> {
    (1..=n)
        .map(|i| HostInfo {
            name: format!("h{i:02}"),
            healthy: true,
            revision: RevisionHealth::Old,
        })
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs a deployment in rounds: each round starts what the plan says, then every host in
/// progress finishes, succeeding unless `fails` names it. Returns the hosts started in
/// each round and the final decision.
fn run(plan: &Plan, fails: &[&str]) -> (Vec<Vec<String>>, Decision) {
    let mut progress = BTreeMap::new();
    let mut rounds = Vec::new();
    for _ in 0..=plan.hosts().len() {
        match plan.step(&progress) {
            Decision::Continue { start } => {
                assert!(
                    !start.is_empty(),
                    "a round with nothing running must start a host"
                );
                for name in &start {
                    assert_eq!(
                        progress.insert(name.clone(), HostProgress::InProgress),
                        None
                    );
                }
                for name in &start {
                    let result = if fails.contains(&name.as_str()) {
                        HostProgress::Failed
                    } else {
                        HostProgress::Succeeded
                    };
                    progress.insert(name.clone(), result);
                }
                rounds.push(start);
            }
            done => return (rounds, done),
        }
    }
    panic!("the deployment never ended: {rounds:?}");
}

fn sizes(rounds: &[Vec<String>]) -> Vec<usize> {
    rounds.iter().map(Vec::len).collect()
}

fn failed(reason: &str) -> Decision {
    Decision::Failed {
        reason: reason.to_string(),
    }
}

#[test]
fn requirements_of_every_configuration() {
    // (config, hosts) → (min healthy, batch, successes needed)
    for (config, n, want) in [
        (MinHealthyHosts(6), 9, (6, 3, 6)),
        (MinHealthyPercent(40), 9, (4, 5, 4)),
        (OneAtATime, 5, (4, 1, 4)),
        (OneAtATime, 1, (0, 1, 1)),
        (HalfAtATime, 9, (5, 4, 5)),
        (HalfAtATime, 10, (5, 5, 5)),
        (HalfAtATime, 2, (1, 1, 1)),
        (AllAtOnce, 9, (0, 9, 1)),
        (AllAtOnce, 1, (0, 1, 1)),
        (MinHealthyHosts(0), 4, (0, 4, 1)),
        (MinHealthyPercent(1), 9, (1, 8, 1)),
        (MinHealthyPercent(75), 4, (3, 1, 3)),
        (MinHealthyPercent(99), 200, (198, 2, 198)),
    ] {
        let r = Requirement::new(config, n).unwrap();
        assert_eq!(
            (r.min_healthy, r.batch, r.required_successes),
            want,
            "{config} on {n}"
        );
    }
}

#[test]
fn a_minimum_of_the_whole_group_fails_at_once() {
    for (config, n) in [
        (MinHealthyHosts(9), 9),
        (MinHealthyHosts(10), 9),
        (MinHealthyPercent(100), 3),
        (MinHealthyPercent(75), 1),
        (HalfAtATime, 1),
    ] {
        assert!(
            matches!(
                Plan::new(config, hosts(n)),
                Err(PlanError::Unsatisfiable { .. })
            ),
            "{config} on {n}"
        );
    }
    let err = Plan::new(HalfAtATime, hosts(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "half-at-a-time keeps at least 1 of the group's 1 host healthy, so no host can be deployed; add hosts or choose a configuration that keeps fewer healthy"
    );
    assert_eq!(
        Plan::new(AllAtOnce, vec![]).unwrap_err(),
        PlanError::NoHosts
    );
}

/// Reference §3.5: 9 hosts, HOST_COUNT 6 → batches of 3, at least 6 must succeed.
#[test]
fn nine_hosts_keeping_six_healthy() {
    let plan = Plan::new(MinHealthyHosts(6), hosts(9)).unwrap();
    let (rounds, end) = run(&plan, &[]);
    assert_eq!((sizes(&rounds), end), (vec![3, 3, 3], Decision::Succeeded));

    // The last three fail: six succeeded, which is enough.
    let (_, end) = run(&plan, &["h07", "h08", "h09"]);
    assert_eq!(end, Decision::Succeeded);

    // The first three fail: deploying to any other host would leave fewer than six.
    let (rounds, end) = run(&plan, &["h01", "h02", "h03"]);
    assert_eq!(sizes(&rounds), vec![3]);
    assert_eq!(
        end,
        failed("3 of 9 hosts failed; at least 6 must stay healthy (min-healthy hosts 6)")
    );

    // One failure in the first batch shrinks the next batch to two.
    let (rounds, end) = run(&plan, &["h01"]);
    assert_eq!(
        (sizes(&rounds), end),
        (vec![3, 2, 2, 2], Decision::Succeeded)
    );

    // Four failures: at most five could succeed.
    let (_, end) = run(&plan, &["h03", "h06", "h07", "h08"]);
    assert!(matches!(end, Decision::Failed { .. }), "{end:?}");
}

/// Reference §3.5: 9 hosts, FLEET_PERCENT 40 → at least 4 (3.6 rounded up) healthy,
/// batches of 5, at least 4 must succeed.
#[test]
fn nine_hosts_keeping_forty_percent_healthy() {
    let plan = Plan::new(MinHealthyPercent(40), hosts(9)).unwrap();
    let (rounds, end) = run(&plan, &[]);
    assert_eq!((sizes(&rounds), end), (vec![5, 4], Decision::Succeeded));

    let (_, end) = run(&plan, &["h06", "h07", "h08", "h09"]);
    assert_eq!(end, Decision::Succeeded);

    let (_, end) = run(&plan, &["h01", "h02", "h03", "h04", "h05"]);
    assert_eq!(
        end,
        failed("5 of 9 hosts failed; at least 4 must stay healthy (min-healthy percent 40)")
    );
}

#[test]
fn one_at_a_time_succeeds_when_only_the_last_host_fails() {
    let plan = Plan::new(OneAtATime, hosts(4)).unwrap();
    let (rounds, end) = run(&plan, &["h04"]);
    assert_eq!(
        (sizes(&rounds), end),
        (vec![1, 1, 1, 1], Decision::Succeeded)
    );

    let (rounds, end) = run(&plan, &["h02"]);
    assert_eq!(sizes(&rounds), vec![1, 1]);
    assert_eq!(
        end,
        failed("1 of 4 hosts failed; at least 3 must stay healthy (one-at-a-time)")
    );
}

#[test]
fn a_single_host_group_must_succeed_on_its_host() {
    let plan = Plan::new(OneAtATime, hosts(1)).unwrap();
    assert_eq!(run(&plan, &[]).1, Decision::Succeeded);
    assert_eq!(
        run(&plan, &["h01"]).1,
        failed("1 of 1 host failed; at least 1 must succeed (one-at-a-time)")
    );
}

#[test]
fn all_at_once_needs_one_success() {
    let plan = Plan::new(AllAtOnce, hosts(4)).unwrap();
    let (rounds, end) = run(&plan, &["h01", "h02", "h03"]);
    assert_eq!((sizes(&rounds), end), (vec![4], Decision::Succeeded));
    assert_eq!(
        run(&plan, &["h01", "h02", "h03", "h04"]).1,
        failed("4 of 4 hosts failed; at least 1 must succeed (all-at-once)")
    );
}

#[test]
fn half_at_a_time() {
    let plan = Plan::new(HalfAtATime, hosts(5)).unwrap();
    let (rounds, end) = run(&plan, &["h05"]);
    assert_eq!((sizes(&rounds), end), (vec![2, 2, 1], Decision::Succeeded));
}

/// Hosts whose last deployment failed go first, then never-deployed, old, current.
#[test]
fn hosts_are_ordered_by_health_then_revision() {
    let host = |name: &str, healthy, revision| HostInfo {
        name: name.to_string(),
        healthy,
        revision,
    };
    let plan = Plan::new(
        AllAtOnce,
        vec![
            host("a-current", true, RevisionHealth::Current),
            host("b-old", true, RevisionHealth::Old),
            host("c-unknown", true, RevisionHealth::Unknown),
            host("d-failed", false, RevisionHealth::Old),
            host("e-failed-new", false, RevisionHealth::Unknown),
            host("a-old", true, RevisionHealth::Old),
        ],
    )
    .unwrap();
    let order: Vec<_> = plan.hosts().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "e-failed-new",
            "d-failed",
            "c-unknown",
            "a-old",
            "b-old",
            "a-current"
        ]
    );
}

/// Deploying to a host that is already unhealthy costs no health: such hosts are held
/// back only by the batch size.
#[test]
fn unhealthy_hosts_go_first_without_costing_health() {
    let mut list = hosts(9);
    list[7].healthy = false;
    list[8].healthy = false;
    let plan = Plan::new(MinHealthyHosts(6), list).unwrap();
    assert_eq!(
        plan.step(&BTreeMap::new()),
        Decision::Continue {
            start: names(&["h08", "h09", "h01"])
        }
    );

    // One at a time over hosts that all failed last time: a failure costs nothing, so
    // the deployment goes on and succeeds with the two others.
    let mut list = hosts(3);
    list.iter_mut().for_each(|h| h.healthy = false);
    let plan = Plan::new(OneAtATime, list).unwrap();
    let (rounds, end) = run(&plan, &["h01"]);
    assert_eq!((sizes(&rounds), end), (vec![1, 1, 1], Decision::Succeeded));
}

/// A host that finishes makes room for the next one at once (no waiting for the whole
/// batch); nothing starts while the minimum would be broken.
#[test]
fn hosts_start_as_others_finish() {
    let plan = Plan::new(MinHealthyHosts(6), hosts(9)).unwrap();
    let mut progress: BTreeMap<String, HostProgress> = ["h01", "h02", "h03"]
        .iter()
        .map(|n| (n.to_string(), HostProgress::InProgress))
        .collect();
    assert_eq!(plan.step(&progress), Decision::Continue { start: vec![] });
    progress.insert("h02".into(), HostProgress::Succeeded);
    assert_eq!(
        plan.step(&progress),
        Decision::Continue {
            start: names(&["h04"])
        }
    );
    // Names the plan does not know are ignored.
    progress.insert("stranger".into(), HostProgress::Failed);
    assert_eq!(
        plan.step(&progress),
        Decision::Continue {
            start: names(&["h04"])
        }
    );
}

/// The deployment fails as soon as the successes needed are out of reach, even with
/// hosts still in progress.
#[test]
fn failure_is_decided_as_soon_as_success_is_out_of_reach() {
    let mut list = hosts(5);
    list.iter_mut().for_each(|h| h.healthy = false);
    let plan = Plan::new(MinHealthyHosts(3), list).unwrap();
    let progress: BTreeMap<String, HostProgress> = [
        ("h01", HostProgress::Failed),
        ("h02", HostProgress::InProgress),
        ("h03", HostProgress::Failed),
        ("h04", HostProgress::Failed),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p))
    .collect();
    assert_eq!(
        plan.step(&progress),
        failed("3 of 5 hosts failed; at least 3 must succeed (min-healthy hosts 3)")
    );
}

#[test]
fn duplicate_hosts_are_refused() {
    let mut list = hosts(2);
    list[1].name = "h01".into();
    assert_eq!(
        Plan::new(AllAtOnce, list).unwrap_err(),
        PlanError::DuplicateHost("h01".into())
    );
}

#[test]
fn health_after_the_deployment() {
    assert!(HostProgress::Succeeded.health_after(false));
    assert!(!HostProgress::Failed.health_after(true));
    assert!(HostProgress::Pending.health_after(true));
    assert!(!HostProgress::InProgress.health_after(false));
}

#[test]
fn requirement_reads_well() {
    let r = Requirement::new(HalfAtATime, 9).unwrap();
    assert_eq!(
        r.to_string(),
        "half-at-a-time on 9 hosts: at most 4 at a time, at least 5 kept healthy, 5 must succeed"
    );
}

fn agent(tags: &[(&str, &str)]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// OR within a set, AND across sets; key-only, value-only and key-and-value filters.
#[test]
fn agents_are_selected_by_tags() {
    let config = parse_deploy_yaml(
        "deploy.yaml",
        r#"applications:
  web:
    groups:
      prod:
        tags: [["role=web", "role=api"], ["env=prod"]]
      canaries:
        tags: [["canary"], ["=eu-west"]]
  db:
    groups:
      all:
        tags: [["role=db", "role=web"]]
"#,
    )
    .unwrap();
    let prod = &config.group("web", "prod").unwrap().tags;
    assert!(tags_match(
        prod,
        &agent(&[("role", "web"), ("env", "prod")])
    ));
    assert!(tags_match(
        prod,
        &agent(&[("role", "api"), ("env", "prod"), ("x", "y")])
    ));
    assert!(!tags_match(
        prod,
        &agent(&[("role", "web"), ("env", "staging")])
    ));
    assert!(!tags_match(
        prod,
        &agent(&[("role", "db"), ("env", "prod")])
    ));
    assert!(!tags_match(prod, &agent(&[("env", "prod")])));
    assert!(!tags_match(
        prod,
        &agent(&[("Role", "web"), ("env", "prod")])
    ));

    let canaries = &config.group("web", "canaries").unwrap().tags;
    assert!(tags_match(
        canaries,
        &agent(&[("canary", ""), ("region", "eu-west")])
    ));
    assert!(tags_match(
        canaries,
        &agent(&[("canary", "yes"), ("zone", "eu-west")])
    ));
    assert!(!tags_match(canaries, &agent(&[("region", "eu-west")])));
    assert!(!tags_match(canaries, &agent(&[("canary", "yes")])));
    // A value-only filter matches the value under any key, this one included.
    assert!(tags_match(canaries, &agent(&[("canary", "eu-west")])));

    assert!(!tags_match(&[], &agent(&[("role", "web")])));

    let web_prod = agent(&[("role", "web"), ("env", "prod")]);
    let groups: Vec<_> = groups_for(&config, &web_prod)
        .map(|(a, g, _)| format!("{a}/{g}"))
        .collect();
    assert_eq!(groups, ["db/all", "web/prod"]);
}
