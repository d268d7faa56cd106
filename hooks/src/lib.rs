//! `slipway-hook`: the program git runs as `pre-receive` and `post-receive`.
//!
//! It does no work of its own. It reads git's `old new ref` lines, classifies each
//! update (create, fast-forward, force, delete — the only step that needs the pushed
//! objects, which sit in git's quarantine where the server cannot see them), forwards
//! them to the server over the unix socket named in `SLIPWAY_HOOK_SOCKET` with the
//! per-push token from `SLIPWAY_PUSH_TOKEN`, prints the server's messages (git shows
//! them to the pusher as `remote: …` lines) and exits with the verdict.
//!
//! Invariant: no sqlite, no YAML, no policy here. [`wire`] is the whole contract with
//! the server, and the server links this crate only for those types.

pub mod client;
pub mod wire;
