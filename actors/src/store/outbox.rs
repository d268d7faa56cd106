//! The outbox: mail and webhook deliveries, written in the same transaction that moves
//! the rules engine's cursor, then retried until delivered or given up.

use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// A delivery about to be queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// The event it is about.
    pub event_id: Option<i64>,
    /// The rule that asked for it.
    pub rule: String,
    /// `email` or `webhook`.
    pub kind: String,
    /// The address or URL.
    pub target: String,
    /// What to send (JSON; its shape depends on `kind`).
    pub payload: serde_json::Value,
}

/// A queued delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Increasing id.
    pub id: i64,
    /// When it was queued (unix seconds).
    pub created: f64,
    /// The delivery itself.
    #[serde(flatten)]
    pub delivery: NewDelivery,
    /// Stable across retries: a retry after a crash is recognisably the same message.
    pub message_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Counts for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxStats {
    /// Deliveries not yet sent nor given up.
    pub pending: i64,
    /// Age in seconds of the oldest pending delivery (0 when none).
    pub oldest_pending_age: f64,
}

impl Store {
    /// Queues `deliveries` and moves `consumer`'s cursor to `last_id`, atomically: after a
    /// crash either both happened or neither did, so nothing is lost or queued twice.
    pub fn enqueue_and_advance(
        &self,
        consumer: &str,
        last_id: i64,
        deliveries: &[NewDelivery],
        message_domain: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let queued = insert_deliveries(&tx, deliveries, message_domain)?;
        tx.execute(
            "INSERT INTO cursors (consumer, last_id) VALUES (?1, ?2)
             ON CONFLICT(consumer) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
            rusqlite::params![consumer, last_id],
        )?;
        tx.commit()?;
        Ok(queued)
    }

    /// Queues `deliveries` that no event consumer produced (e.g. the builder's mail to
    /// a pusher whose guarded branch was moved back).
    pub fn enqueue(
        &self,
        deliveries: &[NewDelivery],
        message_domain: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let queued = insert_deliveries(&tx, deliveries, message_domain)?;
        tx.commit()?;
        Ok(queued)
    }

    /// Pending deliveries due now, oldest first, skipping `in_flight`.
    pub fn due_deliveries(
        &self,
        limit: usize,
        in_flight: &[i64],
    ) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, created, event_id, rule, kind, target, message_id, payload, attempts, state, last_error
             FROM outbox WHERE state = 'pending' AND next_attempt <= ?1 ORDER BY next_attempt, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![now(), (limit + in_flight.len()) as i64],
            row_to_delivery,
        )?;
        let mut out = Vec::new();
        for row in rows {
            let d = row?;
            if !in_flight.contains(&d.id) && out.len() < limit {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// One delivery by id.
    pub fn delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, created, event_id, rule, kind, target, message_id, payload, attempts, state, last_error
             FROM outbox WHERE id = ?1",
        )?;
        let mut rows = stmt.query_map([id], row_to_delivery)?;
        Ok(rows.next().transpose()?)
    }

    /// Seconds until the next pending delivery is due (`None` when nothing is pending).
    pub fn next_delivery_in(&self) -> Result<Option<f64>, StoreError> {
        let conn = self.lock();
        let next: Option<f64> = conn.query_row(
            "SELECT MIN(next_attempt) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(next.map(|t| (t - now()).max(0.0)))
    }

    /// Marks a delivery sent.
    pub fn delivery_sent(&self, id: i64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done = ?2, last_error = NULL WHERE id = ?1",
            rusqlite::params![id, now()],
        )?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn delivery_retry(&self, id: i64, retry_in: f64, error: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
            rusqlite::params![id, now() + retry_in, error],
        )?;
        Ok(())
    }

    /// Gives a delivery up.
    pub fn delivery_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, done = ?2, last_error = ?3 WHERE id = ?1",
            rusqlite::params![id, now(), error],
        )?;
        Ok(())
    }

    /// Pending count and oldest pending age.
    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let conn = self.lock();
        let (pending, oldest): (i64, Option<f64>) = conn.query_row(
            "SELECT COUNT(*), MIN(created) FROM outbox WHERE state = 'pending'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(OutboxStats {
            pending,
            oldest_pending_age: oldest.map(|t| (now() - t).max(0.0)).unwrap_or(0.0),
        })
    }
}

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let payload: String = r.get(7)?;
    Ok(Delivery {
        id: r.get(0)?,
        created: r.get(1)?,
        delivery: NewDelivery {
            event_id: r.get(2)?,
            rule: r.get(3)?,
            kind: r.get(4)?,
            target: r.get(5)?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        },
        message_id: r.get(6)?,
        attempts: r.get(8)?,
        state: r.get(9)?,
        last_error: r.get(10)?,
    })
}

/// Inserts `deliveries` in `tx`, each with a fresh stable Message-ID.
pub(super) fn insert_deliveries(
    tx: &rusqlite::Transaction<'_>,
    deliveries: &[NewDelivery],
    message_domain: &str,
) -> Result<Vec<Delivery>, StoreError> {
    let mut queued = Vec::with_capacity(deliveries.len());
    let created = now();
    for d in deliveries {
        let token: u64 = rand::random();
        let message_id = format!(
            "<slipway.{}.{token:016x}@{message_domain}>",
            d.event_id.unwrap_or(0)
        );
        tx.execute(
            "INSERT INTO outbox (created, event_id, rule, kind, target, message_id, payload, next_attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1)",
            rusqlite::params![
                created,
                d.event_id,
                d.rule,
                d.kind,
                d.target,
                message_id,
                d.payload.to_string()
            ],
        )?;
        queued.push(Delivery {
            id: tx.last_insert_rowid(),
            created,
            delivery: d.clone(),
            message_id,
            attempts: 0,
            state: "pending".into(),
            last_error: None,
        });
    }
    Ok(queued)
}
