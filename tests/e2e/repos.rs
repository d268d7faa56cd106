//! Repository commands over SSH and create-on-push.

use crate::harness::*;

#[test]
fn create_list_info_delete() {
    let s = Server::start();
    s.ssh(&s.admin, "repo create app-web")
        .ok()
        .says("created app-web");
    s.ssh(&s.admin, "repo create app-web")
        .fails()
        .says("already exists");
    s.ssh(&s.admin, "repo create team/app-api").ok();
    let list = s.ssh(&s.admin, "repo list").ok();
    assert_eq!(list.stdout, "admin\napp-web\nteam/app-api\n");
    let json = s.ssh(&s.admin, "repo list --json").ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[1]["name"], "app-web");
    assert!(v[1]["url"].as_str().unwrap().ends_with("/app-web.git"));

    let info = s.ssh(&s.admin, "repo info app-web --json").ok();
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(v["default_branch"], "main");
    assert_eq!(v["head_commit"], serde_json::Value::Null);

    s.ssh(&s.admin, "repo delete app-web")
        .ok()
        .says("deleted app-web");
    assert!(!s.repo_path("app-web").exists());
    s.ssh(&s.admin, "repo info app-web")
        .fails()
        .says("not found");
    s.ssh(&s.admin, "repo delete admin")
        .fails()
        .says("cannot be deleted");
}

#[test]
fn list_shows_only_what_the_caller_may_read() {
    let s = Server::start();
    s.ssh(&s.admin, "repo create app-one").ok();
    s.ssh(&s.admin, "repo create secret").ok();
    // alice (developer) reads app-* only; bob (reader) reads everything but admin.
    assert_eq!(s.ssh(&s.alice, "repo list").ok().stdout, "app-one\n");
    assert_eq!(s.ssh(&s.bob, "repo list").ok().stdout, "app-one\nsecret\n");
}

#[test]
fn unknown_and_forbidden_repositories_look_the_same() {
    let s = Server::start();
    s.ssh(&s.admin, "repo create secret").ok();
    let forbidden = s.ssh(&s.alice, "repo info secret").fails();
    let missing = s.ssh(&s.alice, "repo info nothing-here").fails();
    assert_eq!(
        forbidden.stderr.replace("secret", "X"),
        missing.stderr.replace("nothing-here", "X")
    );
    let dir = s.scratch("c");
    let forbidden = s.git(&s.alice, &dir, &["clone", &s.url("secret")]).fails();
    let missing = s
        .git(&s.alice, &dir, &["clone", &s.url("nothing-here")])
        .fails();
    assert!(forbidden.stderr.contains("not found"), "{forbidden}");
    assert_eq!(
        forbidden.stderr.replace("secret", "X"),
        missing.stderr.replace("nothing-here", "X")
    );
    // Deleting is answered the same way too.
    s.ssh(&s.alice, "repo delete secret")
        .fails()
        .says("not found");
    assert!(s.repo_path("secret").exists());
}

#[test]
fn push_creates_a_repository_when_allowed() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-new"), "main"])
        .ok();
    assert!(s.repo_path("app-new").exists());
    let info = s.ssh(&s.alice, "repo info app-new --json").ok();
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(v["head_summary"], "first commit");
    // Outside app-*, alice may not create: same answer as a missing repository.
    s.git(&s.alice, &work, &["push", &s.url("other"), "main"])
        .fails()
        .says("not found");
    assert!(!s.repo_path("other").exists());
}

#[test]
fn a_failed_push_leaves_no_repository_behind() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    // alice may create the repo but not this ref: the pre-receive check denies it.
    let yaml = team_access_yaml(&s.admin, &s.alice, &s.bob).replace(
        "  reader:",
        "  nope:\n    - { effect: deny, actions: [\"git:create-ref\"], resources: [\"repo:*:refs/heads/blocked\"] }\n  reader:",
    ).replace("dev:     { policies: [developer] }", "dev:     { policies: [developer, nope] }");
    s.set_access(&yaml).ok();
    s.git(
        &s.alice,
        &work,
        &["push", &s.url("app-fail"), "main:blocked"],
    )
    .fails()
    .says("DENIED");
    assert!(
        !s.repo_path("app-fail").exists(),
        "failed push must not leave a repo"
    );
    // A push that leaves no ref (deleting one that is not there) leaves nothing either.
    s.git(
        &s.alice,
        &work,
        &["push", &s.url("app-empty"), ":refs/heads/none"],
    );
    assert!(!s.repo_path("app-empty").exists());
    s.ssh(&s.admin, "repo list").ok().never_says("app-fail");
}

#[test]
fn first_push_of_another_branch_points_head_at_it() {
    let s = Server::start();
    let work = s.local_repo(&s.alice, "w");
    s.git(&s.alice, &work, &["push", &s.url("app-x"), "main:develop"])
        .ok();
    let clone = s.scratch("clone");
    s.git(&s.alice, &clone, &["clone", "-q", &s.url("app-x"), "x"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(clone.join("x/README.md")).unwrap(),
        "hello\n"
    );
}
