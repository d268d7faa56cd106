//! The SSH front door: russh server, key authentication, connection limits, and
//! dispatch of exec requests to git services or admin commands.
//!
//! Invariant: identity comes only from a key whose signature russh verified; this
//! module decides nothing about permissions beyond asking `access`.

mod command_line;
mod cut;
mod exec;
mod handler;
mod host_key;
mod pipe;
mod server;

pub use command_line::{parse_exec, ExecCommand};
pub use host_key::{generate_host_key, load_host_key, random_ed25519, write_private};
pub use server::run;

/// Who is on the other end, once authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user name from `access.yaml`.
    pub user: String,
    /// `SHA256:…` of the verified key.
    pub fingerprint: String,
}
