//! The audit log: who did what, from where, and what slipway decided.

use rusqlite::types::ToSql;
use serde::Serialize;

use super::{Store, StoreError};

/// What an audit line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// An SSH authentication attempt.
    Auth,
    /// An SSH command (git service or admin command).
    Command,
    /// One ref update of a push, with the decision on it.
    RefUpdate,
    /// A change to the admin configuration.
    Config,
    /// A decision on a pipeline: an approval, a stop, a retry, a rollback, a transition.
    Pipeline,
}

impl AuditKind {
    fn as_str(self) -> &'static str {
        match self {
            AuditKind::Auth => "auth",
            AuditKind::Command => "command",
            AuditKind::RefUpdate => "ref-update",
            AuditKind::Config => "config",
            AuditKind::Pipeline => "pipeline",
        }
    }
}

/// One audit line. `id` and `time` are filled in by the store on insert.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEntry {
    /// Increasing id, assigned on insert.
    pub id: i64,
    /// RFC 3339 UTC timestamp, assigned on insert.
    pub time: String,
    /// `auth`, `command`, `ref-update`, `config` or `pipeline`.
    pub kind: String,
    /// The user, when known.
    pub user: Option<String>,
    /// SHA256 fingerprint of the key used.
    pub key_fp: Option<String>,
    /// The peer address.
    pub peer: Option<String>,
    /// The repository concerned.
    pub repo: Option<String>,
    /// The ref concerned (ref updates).
    #[serde(rename = "ref")]
    pub refname: Option<String>,
    /// The command line, or the policy action for ref updates.
    pub action: Option<String>,
    /// Old object id (ref updates).
    pub old_id: Option<String>,
    /// New object id (ref updates).
    pub new_id: Option<String>,
    /// `ok`, `denied`, `failed` or `error`.
    pub result: String,
    /// The policy statement that decided, e.g. `developer[1]`.
    pub statement: Option<String>,
    /// Free text.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// A new entry of `kind` with `result`; fill in the other fields as needed.
    pub fn new(kind: AuditKind, result: &str) -> AuditEntry {
        AuditEntry {
            kind: kind.as_str().to_string(),
            result: result.to_string(),
            ..AuditEntry::default()
        }
    }
}

/// Which audit lines to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this user's lines.
    pub user: Option<String>,
    /// Only lines about this repository.
    pub repo: Option<String>,
    /// Only lines at or after this RFC 3339 time.
    pub since: Option<String>,
    /// At most this many lines (the newest).
    pub limit: usize,
}

impl Store {
    /// Appends one audit line and returns its id.
    pub fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let conn = self.lock();
        insert_in(&conn, entry)?;
        Ok(conn.last_insert_rowid())
    }

    /// Lists audit lines matching `filter`, oldest first.
    pub fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from(
            "SELECT id, time, kind, user, key_fp, peer, repo, refname, action, old_id, new_id, result, statement, detail
             FROM audit WHERE 1=1",
        );
        let mut args: Vec<&dyn ToSql> = Vec::new();
        if let Some(user) = &filter.user {
            sql.push_str(" AND user = ?");
            args.push(user);
        }
        if let Some(repo) = &filter.repo {
            sql.push_str(" AND repo = ?");
            args.push(repo);
        }
        if let Some(since) = &filter.since {
            sql.push_str(" AND time >= ?");
            args.push(since);
        }
        let limit = if filter.limit == 0 {
            1000
        } else {
            filter.limit
        } as i64;
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(&limit);
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(args.as_slice(), |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                time: r.get(1)?,
                kind: r.get(2)?,
                user: r.get(3)?,
                key_fp: r.get(4)?,
                peer: r.get(5)?,
                repo: r.get(6)?,
                refname: r.get(7)?,
                action: r.get(8)?,
                old_id: r.get(9)?,
                new_id: r.get(10)?,
                result: r.get(11)?,
                statement: r.get(12)?,
                detail: r.get(13)?,
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }
}

/// Writes an audit line on `conn` (inside a caller's transaction, or not).
pub(super) fn insert_in(conn: &rusqlite::Connection, entry: &AuditEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit (time, kind, user, key_fp, peer, repo, refname, action, old_id, new_id, result, statement, detail)
         VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        rusqlite::params![
            entry.kind,
            entry.user,
            entry.key_fp,
            entry.peer,
            entry.repo,
            entry.refname,
            entry.action,
            entry.old_id,
            entry.new_id,
            entry.result,
            entry.statement,
            entry.detail
        ],
    )?;
    Ok(())
}
