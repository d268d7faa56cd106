//! `slipway-actors`: the runtime half of slipway.
//!
//! Today it holds the durable store ([`store::Store`]): the sqlite database with its
//! schema migrations and the audit log. The actors that act on pushes (event bus, rules,
//! notifier, builder, …) join this crate as their issues land; they own their state here,
//! so the front doors in the `slipway` crate only ever talk to this crate's API.
#![deny(missing_docs)]

pub mod store;

pub use store::{AuditEntry, AuditFilter, AuditKind, Store, StoreError};
