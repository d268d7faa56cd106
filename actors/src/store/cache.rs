//! The build cache's rows: which stored zip is the cache of a repository's branch.
//! The zip itself lives in the artifact store (see `crate::build::cache`).

use serde::Serialize;

use super::{now, Store, StoreError};

/// The cache of one (repository, branch).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheRow {
    /// The repository.
    pub repo: String,
    /// The branch.
    pub branch: String,
    /// The SHA-256 of the zip (its name in the artifact store).
    pub sha256: String,
    /// Bytes of the cached files, uncompressed.
    pub size: i64,
    /// Entries in the zip (files and kept symbolic links).
    pub files: i64,
    /// The build that saved it.
    pub build_id: i64,
    /// When it was saved (unix seconds).
    pub updated: f64,
}

impl Store {
    /// The cache of `repo`'s `branch`, if one was saved.
    pub fn cache_get(&self, repo: &str, branch: &str) -> Result<Option<CacheRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT repo, branch, sha256, size, files, build_id, updated
             FROM build_cache WHERE repo = ?1 AND branch = ?2",
        )?;
        let mut rows = stmt.query_map([repo, branch], |r| {
            Ok(CacheRow {
                repo: r.get(0)?,
                branch: r.get(1)?,
                sha256: r.get(2)?,
                size: r.get(3)?,
                files: r.get(4)?,
                build_id: r.get(5)?,
                updated: r.get(6)?,
            })
        })?;
        Ok(rows.next().transpose()?)
    }

    /// Makes the zip `sha256` the cache of `repo`'s `branch`, replacing the one there
    /// unless that one was saved by a later build (builds of a branch can finish out of
    /// order; the cache follows the newest). Returns whether the row was written.
    pub fn cache_put(
        &self,
        repo: &str,
        branch: &str,
        sha256: &str,
        size: i64,
        files: i64,
        build_id: i64,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let changed = conn.execute(
            "INSERT INTO build_cache (repo, branch, sha256, size, files, build_id, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(repo, branch) DO UPDATE SET sha256 = excluded.sha256,
                 size = excluded.size, files = excluded.files, build_id = excluded.build_id,
                 updated = excluded.updated
             WHERE excluded.build_id >= build_cache.build_id",
            rusqlite::params![repo, branch, sha256, size, files, build_id, now()],
        )?;
        Ok(changed > 0)
    }
}
