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
    (
        6,
        r#"
    -- What a pipeline's build action asks of the builder (JSON: buildspec path, inputs,
    -- extra environment, the execution it belongs to); NULL for other builds.
    ALTER TABLE builds ADD COLUMN plan TEXT;
    -- Which repository owns each pipeline name (the first to push it).
    CREATE TABLE pipelines (
        name    TEXT PRIMARY KEY,
        repo    TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE pipeline_executions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline    TEXT    NOT NULL,
        repo        TEXT    NOT NULL,
        commit_id   TEXT    NOT NULL,
        refname     TEXT,
        event_id    INTEGER UNIQUE,         -- the push that started it (at most one execution each)
        trigger     TEXT    NOT NULL,       -- push | manual-rollback | automated-rollback
        initiator   TEXT    NOT NULL,
        kind        TEXT    NOT NULL,       -- STANDARD | ROLLBACK
        rollback_of INTEGER,                -- a rollback's target execution
        mode        TEXT    NOT NULL,       -- superseded | queued | parallel
        definition  TEXT    NOT NULL,       -- pipeline.yml as it was at the commit
        status      TEXT    NOT NULL,       -- IN_PROGRESS | STOPPING | STOPPED | SUCCEEDED | FAILED | SUPERSEDED
        stage       INTEGER NOT NULL,       -- the stage it is in or waits to enter
        entered     INTEGER NOT NULL,       -- 0: waiting to enter `stage`; 1: in it
        only_stage  INTEGER,                -- a rollback runs just this stage
        variables   TEXT    NOT NULL,       -- JSON {namespace: {name: value}}
        artifacts   TEXT    NOT NULL,       -- JSON {name: {commit} | {sha256, build_id}}
        created     REAL    NOT NULL,
        ended       REAL,
        reason      TEXT
    );
    CREATE INDEX pipeline_executions_status ON pipeline_executions(status, pipeline);
    CREATE INDEX pipeline_executions_pipeline ON pipeline_executions(pipeline, id);
    CREATE TABLE pipeline_stages (
        execution_id INTEGER NOT NULL REFERENCES pipeline_executions(id),
        idx          INTEGER NOT NULL,
        name         TEXT    NOT NULL,
        attempt      INTEGER NOT NULL,
        status       TEXT    NOT NULL,      -- IN_PROGRESS | STOPPING | STOPPED | SUCCEEDED | FAILED
        started      REAL    NOT NULL,
        ended        REAL,
        reason       TEXT,
        PRIMARY KEY (execution_id, idx)
    );
    CREATE TABLE pipeline_actions (
        execution_id INTEGER NOT NULL REFERENCES pipeline_executions(id),
        stage        INTEGER NOT NULL,
        name         TEXT    NOT NULL,
        kind         TEXT    NOT NULL,      -- build | approval | deploy
        run_order    INTEGER NOT NULL,
        attempt      INTEGER NOT NULL,
        status       TEXT    NOT NULL,      -- PENDING | IN_PROGRESS | SUCCEEDED | FAILED | ABANDONED
        build_id     INTEGER,
        started      REAL,
        ended        REAL,
        reason       TEXT,
        detail       TEXT    NOT NULL DEFAULT '{}',   -- approvals: approvers, message, expires, decision
        PRIMARY KEY (execution_id, stage, name)
    );
    -- A row is a disabled transition (into `stage` of `pipeline`).
    CREATE TABLE pipeline_transitions (
        pipeline TEXT NOT NULL,
        stage    TEXT NOT NULL,
        reason   TEXT NOT NULL,
        by_user  TEXT NOT NULL,
        time     REAL NOT NULL,
        PRIMARY KEY (pipeline, stage)
    );
    "#,
    ),
    (
        7,
        r#"
    -- One-time registration tokens for deploy agents (only their SHA-256 is kept).
    CREATE TABLE agent_tokens (
        token_sha256 TEXT PRIMARY KEY,
        tags         TEXT NOT NULL,         -- JSON {key: value} the agent gets
        created      REAL NOT NULL,
        created_by   TEXT NOT NULL,
        expires      REAL NOT NULL,
        used         REAL,
        used_by      TEXT                   -- the agent that registered with it
    );
    -- Registered deploy agents; the credential is kept as its SHA-256.
    CREATE TABLE agents (
        name              TEXT PRIMARY KEY,
        credential_sha256 TEXT NOT NULL UNIQUE,
        tags              TEXT NOT NULL,    -- JSON {key: value}
        version           TEXT NOT NULL,
        registered        REAL NOT NULL,
        last_seen         REAL NOT NULL
    );
    "#,
    ),
    (
        8,
        r#"
    CREATE TABLE deployments (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        application   TEXT    NOT NULL,
        group_name    TEXT    NOT NULL,
        build_id      INTEGER,
        artifact      TEXT,
        bundle_sha256 TEXT    NOT NULL,       -- the revision (a sealed artifact zip)
        commit_id     TEXT    NOT NULL,
        status        TEXT    NOT NULL,       -- QUEUED | IN_PROGRESS | BAKING | SUCCEEDED | FAILED | STOPPED
        creator       TEXT    NOT NULL,       -- a user, `rollback`, `pipeline/NAME`
        rollback_of   INTEGER,                -- the deployment this one rolls back
        rollback_id   INTEGER,                -- the deployment that rolled this one back
        settings      TEXT    NOT NULL,       -- JSON: the group's settings when it was created
        created       REAL    NOT NULL,
        started       REAL,
        ended         REAL,
        bake_until    REAL,
        reason        TEXT
    );
    CREATE INDEX deployments_group ON deployments(application, group_name, id);
    CREATE INDEX deployments_status ON deployments(status);
    -- The hosts (agents) of a deployment.
    CREATE TABLE deployment_hosts (
        deployment_id  INTEGER NOT NULL REFERENCES deployments(id),
        agent          TEXT    NOT NULL,
        status         TEXT    NOT NULL,      -- PENDING | IN_PROGRESS | SUCCEEDED | FAILED | SKIPPED
        healthy_before INTEGER NOT NULL,
        revision_before TEXT,
        started        REAL,
        ended          REAL,
        reason         TEXT,
        PRIMARY KEY (deployment_id, agent)
    );
    -- One lifecycle event on one host; its id is the command id agents see.
    CREATE TABLE host_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment_id INTEGER NOT NULL REFERENCES deployments(id),
        agent         TEXT    NOT NULL,
        event         TEXT    NOT NULL,
        seq           INTEGER NOT NULL,
        status        TEXT    NOT NULL,       -- PENDING | READY | DISPATCHED | IN_PROGRESS | SUCCEEDED | FAILED | SKIPPED | CANCELLED
        dispatched    REAL,
        started       REAL,
        ended         REAL,
        error_code    INTEGER,
        script        TEXT,
        message       TEXT,
        log           TEXT,
        UNIQUE (deployment_id, agent, event)
    );
    CREATE INDEX host_events_agent ON host_events(agent, status);
    -- Each group's hosts: healthy after their last deployment, and the revision they run.
    CREATE TABLE group_hosts (
        application   TEXT    NOT NULL,
        group_name    TEXT    NOT NULL,
        agent         TEXT    NOT NULL,
        healthy       INTEGER NOT NULL,
        revision      TEXT,
        deployment_id INTEGER,
        PRIMARY KEY (application, group_name, agent)
    );
    "#,
    ),
    (
        9,
        r#"
    -- Alerts Alertmanager posted to the webhook, by fingerprint; a resolved alert is
    -- deleted. Deployment alarms of kind `alertmanager` read the firing ones by name.
    CREATE TABLE alerts (
        fingerprint TEXT PRIMARY KEY,
        alertname   TEXT NOT NULL,
        labels      TEXT NOT NULL,            -- JSON object
        starts_at   TEXT,
        received    REAL NOT NULL
    );
    CREATE INDEX alerts_name ON alerts(alertname);
    "#,
    ),
    (
        10,
        r#"
    -- When a lifecycle event last became READY (dispatch latency: ready -> dispatched -> started).
    ALTER TABLE host_events ADD COLUMN ready REAL;
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
