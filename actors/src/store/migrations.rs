//! Numbered schema migrations. Append new ones; never edit one that has shipped.

use super::StoreError;

/// Each entry is (version, SQL). Applied in order inside one transaction each.
const MIGRATIONS: &[(i64, &str)] = &[
    (
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
    ),
    (
        2,
        r#"
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        time    TEXT    NOT NULL,           -- RFC 3339, UTC, milliseconds
        source  TEXT    NOT NULL,           -- git | build | pipeline | deploy | alarm | admin
        type    TEXT    NOT NULL,           -- push | ref-created | ref-deleted | ...
        actor   TEXT,                       -- who caused it
        repo    TEXT,
        refname TEXT,
        state   TEXT,
        detail  TEXT    NOT NULL            -- JSON object
    );
    CREATE INDEX events_repo ON events(repo, id);
    CREATE INDEX events_type ON events(type, id);
    -- How far each consumer has processed the event log.
    CREATE TABLE cursors (
        consumer TEXT PRIMARY KEY,
        last_id  INTEGER NOT NULL
    );
    -- Events a consumer gave up on after repeated failures.
    CREATE TABLE dead_letters (
        consumer TEXT    NOT NULL,
        event_id INTEGER NOT NULL,
        time     TEXT    NOT NULL,
        error    TEXT    NOT NULL
    );
    -- Mail and webhook deliveries, retried until sent or given up.
    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        created      REAL    NOT NULL,      -- unix seconds
        event_id     INTEGER,
        rule         TEXT    NOT NULL,
        kind         TEXT    NOT NULL,      -- email | webhook
        target       TEXT    NOT NULL,      -- address or URL
        message_id   TEXT    NOT NULL,      -- stable across retries
        payload      TEXT    NOT NULL,      -- JSON
        state        TEXT    NOT NULL DEFAULT 'pending',   -- pending | sent | failed
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL    NOT NULL,
        last_error   TEXT,
        done         REAL
    );
    CREATE INDEX outbox_due ON outbox(state, next_attempt);
    -- The parameter store; secure values are sealed with the master key.
    CREATE TABLE params (
        name       TEXT PRIMARY KEY,
        secure     INTEGER NOT NULL,
        value      BLOB    NOT NULL,
        updated    TEXT    NOT NULL,
        updated_by TEXT
    );
    -- When each scheduled rule last ran.
    CREATE TABLE schedules (
        rule     TEXT PRIMARY KEY,
        last_run REAL NOT NULL
    );
    "#,
    ),
    (
        3,
        r#"
    CREATE TABLE builds (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        repo      TEXT    NOT NULL,
        number    INTEGER NOT NULL,         -- per repository
        commit_id TEXT    NOT NULL,
        refname   TEXT,
        prev_id   TEXT,                     -- the ref's previous commit (webhook builds)
        event_id  INTEGER UNIQUE,           -- the push that triggered it (at most one build each)
        initiator TEXT    NOT NULL,
        status    TEXT    NOT NULL,         -- QUEUED | IN_PROGRESS | SUCCEEDED | FAILED | FAULT | TIMED_OUT | STOPPED
        phases    TEXT    NOT NULL DEFAULT '[]',
        exported  TEXT    NOT NULL DEFAULT '[]',
        queued    REAL    NOT NULL,
        started   REAL,
        ended     REAL,
        detail    TEXT
    );
    CREATE UNIQUE INDEX builds_repo_number ON builds(repo, number);
    CREATE INDEX builds_status ON builds(status);
    -- Artifacts: zip files stored sealed under the master key, named by the SHA-256
    -- of their plaintext (so identical artifacts are stored once).
    CREATE TABLE artifacts (
        build_id INTEGER NOT NULL REFERENCES builds(id),
        name     TEXT    NOT NULL,          -- `primary` or the secondary identifier
        sha256   TEXT    NOT NULL,
        size     INTEGER NOT NULL,
        files    INTEGER NOT NULL,
        PRIMARY KEY (build_id, name)
    );
    "#,
    ),
    (
        4,
        r#"
    -- The build cache (`cache.paths`): one zip per repository and branch, stored like
    -- artifacts (sealed, content-addressed); a newer build's save replaces the row.
    CREATE TABLE build_cache (
        repo     TEXT    NOT NULL,
        branch   TEXT    NOT NULL,
        sha256   TEXT    NOT NULL,
        size     INTEGER NOT NULL,          -- bytes of the files, uncompressed
        files    INTEGER NOT NULL,          -- entries (files and kept symbolic links)
        build_id INTEGER NOT NULL,          -- the build that saved it
        updated  REAL    NOT NULL,          -- unix seconds
        PRIMARY KEY (repo, branch)
    );
    "#,
    ),
    (
        5,
        r#"
    -- Test report summaries of a build (JSON list), from the buildspec's `reports`.
    ALTER TABLE builds ADD COLUMN reports TEXT NOT NULL DEFAULT '[]';
    "#,
    ),
];

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
