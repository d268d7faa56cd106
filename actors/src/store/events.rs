//! The event log: every state change, stored before anything acts on it, and the
//! per-consumer cursors that make delivery at-least-once across crashes.

use rusqlite::types::ToSql;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// An event about to be stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// `git`, `build`, `pipeline`, `deploy`, `alarm`, `admin`.
    pub source: String,
    /// `push`, `ref-created`, `ref-deleted`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Who caused it (a user, or `slipway` for the server itself).
    pub actor: Option<String>,
    /// The repository concerned.
    pub repo: Option<String>,
    /// The ref concerned.
    #[serde(rename = "ref")]
    pub refname: Option<String>,
    /// A state, for sources that have them (`SUCCEEDED`, …).
    pub state: Option<String>,
    /// Everything else, as a JSON object.
    pub detail: serde_json::Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing id.
    pub id: i64,
    /// RFC 3339 UTC time it was stored.
    pub time: String,
    /// The event itself.
    #[serde(flatten)]
    pub event: NewEvent,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this repository.
    pub repo: Option<String>,
    /// Only this type.
    pub kind: Option<String>,
    /// Only events with a larger id.
    pub after: i64,
    /// At most this many (oldest first).
    pub limit: usize,
}

/// Appends `events` inside a transaction; returns their ids.
pub(super) fn insert_in(
    conn: &rusqlite::Connection,
    events: &[NewEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (time, source, type, actor, repo, refname, state, detail)
         VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for e in events {
        stmt.execute(rusqlite::params![
            e.source,
            e.kind,
            e.actor,
            e.repo,
            e.refname,
            e.state,
            e.detail.to_string()
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

impl Store {
    /// Appends `events` in one transaction and returns their ids, in order.
    pub fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let ids = insert_in(&tx, events)?;
        tx.commit()?;
        Ok(ids)
    }

    /// Events matching `filter`, oldest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.query_events(filter, "id > ?", filter.after, "ORDER BY id")
    }

    /// Events matching `filter`'s repo and type with an id below `before`, newest first.
    pub fn events_before(
        &self,
        filter: &EventFilter,
        before: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.query_events(filter, "id < ?", before, "ORDER BY id DESC")
    }

    fn query_events(
        &self,
        filter: &EventFilter,
        bound: &str,
        id: i64,
        order: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let mut sql = format!(
            "SELECT id, time, source, type, actor, repo, refname, state, detail FROM events WHERE {bound}"
        );
        let mut args: Vec<&dyn ToSql> = vec![&id];
        if let Some(repo) = &filter.repo {
            sql.push_str(" AND repo = ?");
            args.push(repo);
        }
        if let Some(kind) = &filter.kind {
            sql.push_str(" AND type = ?");
            args.push(kind);
        }
        let limit = if filter.limit == 0 {
            1000
        } else {
            filter.limit
        } as i64;
        sql.push_str(&format!(" {order} LIMIT ?"));
        args.push(&limit);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(args.as_slice(), row_to_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest event id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Where `consumer` stopped; a new consumer starts at `start` (and is recorded there).
    pub fn cursor(&self, consumer: &str, start: i64) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO cursors (consumer, last_id) VALUES (?1, ?2)",
            rusqlite::params![consumer, start],
        )?;
        Ok(conn.query_row(
            "SELECT last_id FROM cursors WHERE consumer = ?1",
            [consumer],
            |r| r.get(0),
        )?)
    }

    /// Moves `consumer`'s cursor to `last_id` (never backwards).
    pub fn advance_cursor(&self, consumer: &str, last_id: i64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE cursors SET last_id = MAX(last_id, ?2) WHERE consumer = ?1",
            rusqlite::params![consumer, last_id],
        )?;
        Ok(())
    }

    /// Records that `consumer` gave up on `event_id`.
    pub fn dead_letter(
        &self,
        consumer: &str,
        event_id: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO dead_letters (consumer, event_id, time, error) VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?3)",
            rusqlite::params![consumer, event_id, error],
        )?;
        Ok(())
    }
}

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let detail: String = r.get(8)?;
    Ok(Event {
        id: r.get(0)?,
        time: r.get(1)?,
        event: NewEvent {
            source: r.get(2)?,
            kind: r.get(3)?,
            actor: r.get(4)?,
            repo: r.get(5)?,
            refname: r.get(6)?,
            state: r.get(7)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        },
    })
}
