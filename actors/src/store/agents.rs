//! Deploy agents: one-time registration tokens and the registered agents.
//!
//! Secrets are never stored: a token or credential is kept as its SHA-256 (both are
//! 32 random bytes, so a plain hash is enough), and looked up by it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{now, Store, StoreError};

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Its name (unique).
    pub name: String,
    /// Tags from its registration token (deployment groups select agents by them).
    pub tags: BTreeMap<String, String>,
    /// The agent's version, as it last said.
    pub version: String,
    /// Unix seconds.
    pub registered: f64,
    /// When it last polled (unix seconds).
    pub last_seen: f64,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterRefused {
    /// No such token (or it was mistyped).
    #[error("the registration token is not known; create one with `agent token create`")]
    UnknownToken,
    /// The token was used already.
    #[error("the registration token was already used (by agent `{0}`); create a new one with `agent token create`")]
    TokenUsed(String),
    /// The token expired.
    #[error("the registration token expired; create a new one with `agent token create`")]
    TokenExpired,
    /// The name is taken.
    #[error("an agent named `{0}` is registered already; choose another name, or remove it with `agent remove {0}`")]
    NameTaken(String),
}

/// How a token or credential is kept and looked up: the hex SHA-256 of its text.
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok(AgentRow {
        name: r.get(0)?,
        tags: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
        version: r.get(2)?,
        registered: r.get(3)?,
        last_seen: r.get(4)?,
    })
}

const AGENT_COLUMNS: &str = "name, tags, version, registered, last_seen";

impl Store {
    /// Stores a registration token (by its hash) giving `tags`, valid until `expires`.
    pub fn agent_token_create(
        &self,
        token_sha256: &str,
        tags: &BTreeMap<String, String>,
        created_by: &str,
        expires: f64,
    ) -> Result<(), StoreError> {
        let tags = serde_json::to_string(tags).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.lock().execute(
            "INSERT INTO agent_tokens (token_sha256, tags, created, created_by, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![token_sha256, tags, now(), created_by, expires],
        )?;
        Ok(())
    }

    /// Registers agent `name` with a token: in one transaction the token is used up and
    /// the agent stored with the token's tags and its credential's hash.
    pub fn agent_register(
        &self,
        token_sha256: &str,
        name: &str,
        credential_sha256: &str,
        version: &str,
    ) -> Result<Result<AgentRow, RegisterRefused>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let token: Option<(String, f64, Option<String>)> = tx
            .query_row(
                "SELECT tags, expires, used_by FROM agent_tokens WHERE token_sha256 = ?1",
                [token_sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        let Some((tags, expires, used_by)) = token else {
            return Ok(Err(RegisterRefused::UnknownToken));
        };
        if let Some(by) = used_by {
            return Ok(Err(RegisterRefused::TokenUsed(by)));
        }
        let now = now();
        if now > expires {
            return Ok(Err(RegisterRefused::TokenExpired));
        }
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM agents WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if taken {
            return Ok(Err(RegisterRefused::NameTaken(name.to_string())));
        }
        tx.execute(
            "UPDATE agent_tokens SET used = ?2, used_by = ?3 WHERE token_sha256 = ?1",
            rusqlite::params![token_sha256, now, name],
        )?;
        tx.execute(
            "INSERT INTO agents (name, credential_sha256, tags, version, registered, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            rusqlite::params![name, credential_sha256, tags, version, now],
        )?;
        let row = tx.query_row(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"),
            [name],
            agent_row,
        )?;
        tx.commit()?;
        Ok(Ok(row))
    }

    /// The agent holding the credential with this hash.
    pub fn agent_by_credential(
        &self,
        credential_sha256: &str,
    ) -> Result<Option<AgentRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE credential_sha256 = ?1"
        ))?;
        let mut rows = stmt.query_map([credential_sha256], agent_row)?;
        Ok(rows.next().transpose()?)
    }

    /// Records that agent `name` (at `version`) was heard from now.
    pub fn agent_seen(&self, name: &str, version: &str) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached("UPDATE agents SET last_seen = ?2, version = ?3 WHERE name = ?1")?
            .execute(rusqlite::params![name, now(), version])?;
        Ok(())
    }

    /// Every registered agent, by name.
    pub fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"))?;
        let rows = stmt.query_map([], agent_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Removes agent `name` (its credential stops working); answers whether it existed.
    pub fn agent_remove(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM agents WHERE name = ?1", [name])?
            > 0)
    }
}
