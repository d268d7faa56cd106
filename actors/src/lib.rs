//! `slipway-actors`: the runtime half of slipway.
//!
//! - [`store`]: the sqlite database (migrations, audit log, events, cursors, outbox,
//!   parameters). Everything durable lives here.
//! - [`config`]: the config files that drive the actors (`rules.yaml`) and their server
//!   settings, parsed with file:line:column errors.
//! - the actors ([`runtime`] starts them): [`bus::EventBus`] stores and fans out events,
//!   [`rules::RulesEngine`] matches them against `rules.yaml`, [`notify::Notifier`]
//!   delivers mail and webhooks from a durable outbox, [`reaper::BranchReaper`] deletes
//!   stale branches.
//!
//! Invariant: no actor sees russh or HTTP-server types; the front doors talk to this
//! crate through messages and the store's API.
#![deny(missing_docs)]

pub mod build;
pub mod bus;
pub mod compose;
pub mod config;
pub mod deploy;
pub mod failpoints;
pub mod metrics;
pub mod notify;
pub mod pattern;
pub mod pipeline;
pub mod reaper;
pub mod rules;
pub mod runtime;
pub mod secrets;
pub mod store;

pub use runtime::{Runtime, RuntimeDeps};
pub use store::{AuditEntry, AuditFilter, AuditKind, Store, StoreError};
