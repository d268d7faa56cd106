//! The parameter store's rows. Sealing secure values is the caller's job
//! (see `crate::secrets`); the store only keeps bytes.

use serde::Serialize;

use super::{Store, StoreError};

/// One stored parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamRow {
    /// Its name, e.g. `/hooks/secret`.
    pub name: String,
    /// Whether `value` is sealed with the master key.
    pub secure: bool,
    /// The plain value, or the sealed one.
    #[serde(skip)]
    pub value: Vec<u8>,
    /// When it was last written.
    pub updated: String,
    /// Who wrote it.
    pub updated_by: Option<String>,
}

impl Store {
    /// Creates or replaces a parameter.
    pub fn param_put(
        &self,
        name: &str,
        secure: bool,
        value: &[u8],
        by: &str,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO params (name, secure, value, updated, updated_by)
             VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?4)
             ON CONFLICT(name) DO UPDATE SET secure = excluded.secure, value = excluded.value,
                 updated = excluded.updated, updated_by = excluded.updated_by",
            rusqlite::params![name, secure, value, by],
        )?;
        Ok(())
    }

    /// One parameter.
    pub fn param_get(&self, name: &str) -> Result<Option<ParamRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT name, secure, value, updated, updated_by FROM params WHERE name = ?1",
        )?;
        let mut rows = stmt.query_map([name], row_to_param)?;
        Ok(rows.next().transpose()?)
    }

    /// Every parameter, sorted by name.
    pub fn param_list(&self) -> Result<Vec<ParamRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT name, secure, value, updated, updated_by FROM params ORDER BY name",
        )?;
        let rows = stmt.query_map([], row_to_param)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Deletes a parameter; returns whether it existed.
    pub fn param_delete(&self, name: &str) -> Result<bool, StoreError> {
        let conn = self.lock();
        Ok(conn.execute("DELETE FROM params WHERE name = ?1", [name])? > 0)
    }

    /// When the scheduled rule `rule` last ran (unix seconds).
    pub fn schedule_last_run(&self, rule: &str) -> Result<Option<f64>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT last_run FROM schedules WHERE rule = ?1")?;
        let mut rows = stmt.query_map([rule], |r| r.get(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Records that `rule` ran at `at` (unix seconds).
    pub fn schedule_ran(&self, rule: &str, at: f64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO schedules (rule, last_run) VALUES (?1, ?2)
             ON CONFLICT(rule) DO UPDATE SET last_run = excluded.last_run",
            rusqlite::params![rule, at],
        )?;
        Ok(())
    }
}

fn row_to_param(r: &rusqlite::Row<'_>) -> rusqlite::Result<ParamRow> {
    Ok(ParamRow {
        name: r.get(0)?,
        secure: r.get(1)?,
        value: r.get(2)?,
        updated: r.get(3)?,
        updated_by: r.get(4)?,
    })
}
