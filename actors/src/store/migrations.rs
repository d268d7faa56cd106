//! Numbered schema migrations. Append new ones; never edit one that has shipped.

use super::StoreError;

/// Each entry is (version, SQL). Applied in order inside one transaction each.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        time      TEXT    NOT NULL,          -- RFC 3339, UTC
        kind      TEXT    NOT NULL,          -- auth | command | ref-update | config
        user      TEXT,                      -- NULL when the key was unknown
        key_fp    TEXT,
        peer      TEXT,
        repo      TEXT,
        refname   TEXT,
        action    TEXT,                      -- the command line or the policy action
        old_id    TEXT,
        new_id    TEXT,
        result    TEXT    NOT NULL,          -- ok | denied | failed | error
        statement TEXT,                      -- the policy statement that decided
        detail    TEXT
    );
    CREATE INDEX audit_user ON audit(user, id);
    CREATE INDEX audit_repo ON audit(repo, id);
    CREATE INDEX audit_time ON audit(time);
    "#,
)];

pub(super) fn apply(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied) VALUES (?1, datetime('now'))",
            [version],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
