//! Access control: the policy model of `access.yaml` and the one function that decides.
//!
//! Invariant: pure. No I/O, no async, no sqlite. The SSH front door, the admin commands
//! and the hook endpoint all ask [`AccessConfig::evaluate`]; nothing else decides
//! permissions.
//!
//! A request is an action (`git:push`, `repo:create`, …) on a resource: `repo:NAME` or
//! `repo:NAME:REF` for repositories, `audit:log`, `policy:USER`. A statement's resource
//! `repo:GLOB` covers the repository and every ref in it; `repo:GLOB:REF_GLOB` covers
//! only matching refs. An explicit deny wins, then any allow, else the request is denied.

mod config;
mod evaluate;
mod pattern;

pub use config::{
    check_name as config_check_name, parse_access_yaml, AccessConfig, ConfigError, User, UserKey,
};
pub use evaluate::{Decision, Resource, StatementTrace, Trace};
pub use pattern::{Effect, Statement};

/// Every action slipway knows today, for validation and `help`.
pub const KNOWN_ACTIONS: &[&str] = &[
    "git:pull",
    "git:push",
    "git:create-ref",
    "git:delete-ref",
    "git:force-push",
    "repo:create",
    "repo:delete",
    "audit:read",
    "policy:simulate",
    "events:read",
    "branch:reap",
    "build:start",
    "build:stop",
    "param:read",
    "param:write",
    "deploy:create",
    "deploy:stop",
    "deploy:read",
    "agent:manage",
    "agent:read",
    "pipeline:start",
    "pipeline:approve",
    "pipeline:stop",
    "pipeline:retry",
    "pipeline:rollback",
    "pipeline:transition",
];

/// Action families reserved for services that arrive later (builds, pipelines, …);
/// statements may already name them.
pub const RESERVED_FAMILIES: &[&str] = &[
    "build", "pipeline", "deploy", "agent", "param", "events", "branch",
];

/// The actions that modify refs; holding any of them on a repository lets a user start
/// a push there (each ref is then decided on its own).
pub const PUSH_ACTIONS: &[&str] = &[
    "git:push",
    "git:create-ref",
    "git:delete-ref",
    "git:force-push",
];

#[cfg(test)]
mod tests;
