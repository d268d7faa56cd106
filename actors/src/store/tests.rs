use super::*;

#[test]
fn open_twice_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slipway.db");
    let store = Store::open(&path).unwrap();
    let mut entry = AuditEntry::new(AuditKind::Auth, "ok");
    entry.user = Some("alice".into());
    store.audit(&entry).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 10);
    let rows = store.audit_list(&AuditFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user.as_deref(), Some("alice"));
    assert_eq!(rows[0].kind, "auth");
}

#[test]
fn audit_filters_by_user_repo_and_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    for (user, repo) in [("alice", "a"), ("bob", "a"), ("alice", "b")] {
        let mut e = AuditEntry::new(AuditKind::Command, "ok");
        e.user = Some(user.into());
        e.repo = Some(repo.into());
        store.audit(&e).unwrap();
    }
    let by_user = store
        .audit_list(&AuditFilter {
            user: Some("alice".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_user.len(), 2);
    assert!(by_user[0].id < by_user[1].id, "oldest first");
    let by_repo = store
        .audit_list(&AuditFilter {
            repo: Some("a".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_repo.len(), 2);
    let future = store
        .audit_list(&AuditFilter {
            since: Some("2999-01-01T00:00:00Z".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(future.is_empty());
}

#[test]
fn refuses_a_database_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    Store::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, applied) VALUES (99, 'x')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&path).err().expect("must refuse");
    assert!(err.to_string().contains("newer than this slipway"), "{err}");
}

fn event(kind: &str, repo: &str) -> NewEvent {
    NewEvent {
        source: "git".into(),
        kind: kind.into(),
        actor: Some("alice".into()),
        repo: Some(repo.into()),
        refname: Some("refs/heads/main".into()),
        state: None,
        detail: serde_json::json!({"commits": 1}),
    }
}

#[test]
fn events_get_increasing_ids_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let ids = store
        .insert_events(&[
            event("push", "a"),
            event("ref-created", "a"),
            event("push", "b"),
        ])
        .unwrap();
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);
    let all = store.events(&EventFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].event.detail["commits"], 1);
    let pushes_a = store
        .events(&EventFilter {
            repo: Some("a".into()),
            kind: Some("push".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pushes_a.len(), 1);
    let after = store
        .events(&EventFilter {
            after: ids[1],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[2]]);
    assert_eq!(store.last_event_id().unwrap(), ids[2]);
}

#[test]
fn cursors_start_where_asked_and_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    assert_eq!(store.cursor("rules", 7).unwrap(), 7);
    assert_eq!(
        store.cursor("rules", 0).unwrap(),
        7,
        "start applies only once"
    );
    store.advance_cursor("rules", 9).unwrap();
    store.advance_cursor("rules", 3).unwrap();
    assert_eq!(store.cursor("rules", 0).unwrap(), 9);
}

#[test]
fn outbox_enqueue_moves_the_cursor_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let d = NewDelivery {
        event_id: Some(5),
        rule: "r".into(),
        kind: "email".into(),
        target: "a@example.com".into(),
        payload: serde_json::json!({"subject": "s"}),
    };
    let queued = store
        .enqueue_and_advance("rules", 5, &[d.clone(), d], "example.com")
        .unwrap();
    let ids: Vec<i64> = queued.iter().map(|q| q.id).collect();
    assert_eq!(store.cursor("rules", 0).unwrap(), 5);
    let due = store.due_deliveries(10, &[]).unwrap();
    assert_eq!(due.len(), 2);
    assert!(due[0].message_id.starts_with("<slipway.5."));
    assert!(due[0].message_id.ends_with("@example.com>"));
    assert_ne!(due[0].message_id, due[1].message_id);
    // What enqueueing answers is what the outbox holds.
    assert_eq!(due[0].message_id, queued[0].message_id);
    assert_eq!(due[1].delivery.target, queued[1].delivery.target);
    assert_eq!(store.due_deliveries(10, &[ids[0]]).unwrap().len(), 1);
    assert_eq!(store.outbox_stats().unwrap().pending, 2);

    store
        .delivery_retry(ids[0], 3600.0, "421 try later")
        .unwrap();
    let retried = store.delivery(ids[0]).unwrap().unwrap();
    assert_eq!((retried.attempts, retried.state.as_str()), (1, "pending"));
    assert_eq!(
        retried.message_id, due[0].message_id,
        "stable across retries"
    );
    assert_eq!(
        store.due_deliveries(10, &[]).unwrap().len(),
        1,
        "not due yet"
    );
    store.delivery_sent(ids[1]).unwrap();
    store.delivery_failed(ids[0], "gave up").unwrap();
    assert_eq!(store.outbox_stats().unwrap().pending, 0);
    assert_eq!(store.next_delivery_in().unwrap(), None);
}

#[test]
fn params_and_schedules_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.param_put("/a/b", false, b"one", "alice").unwrap();
    store.param_put("/a/b", true, b"sealed", "bob").unwrap();
    let p = store.param_get("/a/b").unwrap().unwrap();
    assert!(p.secure);
    assert_eq!(p.value, b"sealed");
    assert_eq!(p.updated_by.as_deref(), Some("bob"));
    assert_eq!(store.param_list().unwrap().len(), 1);
    assert!(store.param_delete("/a/b").unwrap());
    assert!(!store.param_delete("/a/b").unwrap());
    assert_eq!(store.schedule_last_run("tidy").unwrap(), None);
    store.schedule_ran("tidy", 12.5).unwrap();
    assert_eq!(store.schedule_last_run("tidy").unwrap(), Some(12.5));
}

fn new_execution(event_id: Option<i64>) -> NewExecution {
    NewExecution {
        pipeline: "web".into(),
        repo: "app".into(),
        commit: "c".repeat(40),
        refname: Some("refs/heads/main".into()),
        event_id,
        trigger: "push".into(),
        initiator: "alice".into(),
        kind: "STANDARD".into(),
        rollback_of: None,
        mode: "superseded".into(),
        definition: "name: web\n".into(),
        stage: 0,
        only_stage: None,
        variables: serde_json::json!({}),
        artifacts: serde_json::json!({}),
    }
}

/// A pipeline step is all or nothing: an error inside the transaction leaves no
/// execution, event or build behind; one push event starts at most one execution.
#[test]
fn pipeline_transactions_commit_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let failed: Result<(), StoreError> = store.pipeline_tx(|t| {
        t.insert_execution(&new_execution(Some(1)))?;
        t.insert_events(&[NewEvent {
            source: "pipeline".into(),
            kind: "execution-state-change".into(),
            ..Default::default()
        }])?;
        t.queue_build(&NewBuild {
            repo: "app".into(),
            commit: "c".repeat(40),
            initiator: "pipeline/web".into(),
            ..Default::default()
        })?;
        Err(StoreError::Encode("stop here".into()))
    });
    assert!(failed.is_err());
    assert!(store.executions("web", 10).unwrap().is_empty());
    assert_eq!(store.last_event_id().unwrap(), 0);
    assert!(store.builds_recent(None, None, 10).unwrap().is_empty());

    let first = store
        .pipeline_tx(|t| t.insert_execution(&new_execution(Some(1))))
        .unwrap();
    assert!(first.is_some());
    let again = store
        .pipeline_tx(|t| t.insert_execution(&new_execution(Some(1))))
        .unwrap();
    assert!(again.is_none(), "a second execution for the same push");
    assert_eq!(store.executions("web", 10).unwrap().len(), 1);
}

/// Abandoning an action stops its build in the same transaction when it has not
/// started (so it can never start), and leaves a running one to the builder.
#[test]
fn only_queued_builds_are_stopped_in_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let request = NewBuild {
        repo: "app".into(),
        commit: "c".repeat(40),
        initiator: "pipeline/web".into(),
        ..Default::default()
    };
    let queued = store.build_queue(&request).unwrap().unwrap();
    let running = store.build_queue(&request).unwrap().unwrap();
    store.build_started(running.id).unwrap();
    let stopped = store
        .pipeline_tx(|t| {
            Ok::<_, StoreError>((
                t.stop_queued_build(queued.id, "abandoned")?,
                t.stop_queued_build(running.id, "abandoned")?,
            ))
        })
        .unwrap();
    assert_eq!(stopped, (true, false));
    assert_eq!(store.build(queued.id).unwrap().unwrap().status, "STOPPED");
    assert_eq!(
        store.build(running.id).unwrap().unwrap().status,
        "IN_PROGRESS"
    );
}

/// A registration token works once, before it expires, and gives its tags; the agent
/// is then found by its credential's hash, and removing it ends that.
#[test]
fn agent_tokens_register_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let tags: std::collections::BTreeMap<String, String> =
        [("role".to_string(), "web".to_string())].into();
    let future = now() + 3600.0;
    store
        .agent_token_create("t1", &tags, "admin", future)
        .unwrap();
    store
        .agent_token_create("t2", &tags, "admin", now() - 1.0)
        .unwrap();
    let a = store
        .agent_register("t1", "web-1", "c1", "0.1")
        .unwrap()
        .unwrap();
    assert_eq!(a.tags, tags);
    assert_eq!(
        store.agent_register("t1", "web-2", "c2", "0.1").unwrap(),
        Err(RegisterRefused::TokenUsed("web-1".into()))
    );
    assert_eq!(
        store.agent_register("t2", "web-2", "c2", "0.1").unwrap(),
        Err(RegisterRefused::TokenExpired)
    );
    assert_eq!(
        store.agent_register("nope", "web-2", "c2", "0.1").unwrap(),
        Err(RegisterRefused::UnknownToken)
    );
    store
        .agent_token_create("t3", &tags, "admin", future)
        .unwrap();
    assert_eq!(
        store.agent_register("t3", "web-1", "c3", "0.1").unwrap(),
        Err(RegisterRefused::NameTaken("web-1".into()))
    );
    assert_eq!(
        store.agent_by_credential("c1").unwrap().unwrap().name,
        "web-1"
    );
    assert!(store.agent_remove("web-1").unwrap());
    assert!(store.agent_by_credential("c1").unwrap().is_none());
}
