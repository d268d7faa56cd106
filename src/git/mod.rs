//! Everything that touches repositories on disk.
//!
//! Invariant: this is the only module that runs `git` or opens repositories. Names from
//! clients are validated by [`RepoName`] before any path is built from them.

mod history;
mod objects;
mod repo_name;
mod repos;
mod service;

pub use history::new_commits;
pub use objects::{read_file_at, Quarantine};
pub use repo_name::{RepoName, RepoNameError};
pub use repos::{RepoInfo, RepoStore, RepoStoreError};
pub use service::{git_command, Service};

/// The branch new repositories point HEAD at.
pub const DEFAULT_BRANCH: &str = "main";
