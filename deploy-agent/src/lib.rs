//! slipway-agent: the program on each deployment host that runs what the server asks.
//!
//! The agent knows nothing about git or policy; it only runs what it is given. For one
//! deployment it stages the revision bundle, runs the appspec's hook scripts at each
//! lifecycle event and copies the revision's files at Install. The server decides the
//! order of events; [`local`] runs the in-place order on its own for troubleshooting.
//!
//! # Layout
//!
//! - [`event`]: the lifecycle events and whose scripts each runs.
//! - [`appspec`]: parsing and checking `appspec.yml` (located errors, no I/O).
//! - [`paths`]: bundle paths, host paths and the `--root` they are placed under.
//! - [`state`]: the agent's state directory (archives, cleanup lists, last successful
//!   revision per deployment group, logs).
//! - [`bundle`]: copying a bundle directory, or unpacking the server's zip file (checked
//!   against its SHA-256, size-capped, nothing leading out), into a deployment archive.
//! - [`script`]: running one hook script (process group, timeout, runas, output).
//! - [`scriptlog`]: the event's script log file and the 2 KB tail that is reported.
//! - [`install`]: the Install event; [`permissions`] applies `permissions` after it.
//! - [`executor`]: runs one lifecycle event of one deployment (what a server command
//!   asks for) and reports it as [`diagnostics::Diagnostics`].
//! - [`local`]: `slipway-agent local`, the whole in-place lifecycle on this host.
//! - [`server`]: registering with the server and the requests of the agent protocol.
//! - [`commands`]: `slipway-agent run`, the long-poll loop carrying out the server's
//!   lifecycle commands one at a time; [`tracking`] keeps the one in progress.
#![deny(missing_docs)]

pub mod appspec;
pub mod bundle;
pub mod commands;
pub mod diagnostics;
pub mod event;
pub mod executor;
mod fsutil;
pub mod install;
pub mod local;
pub mod paths;
pub mod permissions;
pub mod script;
pub mod scriptlog;
pub mod server;
pub mod state;
pub mod tracking;
