//! slipway: a self-hosted, git-native CI/CD server.
//!
//! Layout (see ARCHITECTURE.md): `ssh` is the front door, `access` decides, `git` runs
//! git and owns the repositories on disk, `hookrpc` answers the hooks git runs during a
//! push, `commands` are the admin commands over SSH, `adminconfig` loads the YAML in the
//! `admin` repository, `http` serves metrics and health, `serve` wires them together.

pub mod access;
pub mod adminconfig;
pub mod cli;
pub mod commands;
pub mod datadir;
pub mod git;
pub mod hookrpc;
pub mod http;
pub mod metrics;
pub mod serve;
pub mod settings;
pub mod ssh;
pub mod state;
