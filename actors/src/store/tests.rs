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
    assert_eq!(store.schema_version().unwrap(), 1);
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
