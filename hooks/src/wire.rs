//! The hook ↔ server wire protocol, version 1.
//!
//! One connection per hook run. The hook writes one JSON [`HookRequest`] followed by a
//! newline; the server answers with one JSON [`HookResponse`] and a newline, then closes.
//! Both sides refuse a line longer than [`MAX_LINE`].

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;
/// The longest line either side accepts, in bytes.
pub const MAX_LINE: usize = 4 << 20;
/// The most ref updates one request may carry.
pub const MAX_UPDATES: usize = 10_000;

/// Which hook is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before any ref is updated: the server decides.
    PreReceive,
    /// After the refs were updated: the server records them.
    PostReceive,
}

/// What kind of change a ref update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateKind {
    /// The ref did not exist.
    Create,
    /// The new commit descends from the old one.
    FastForward,
    /// The new commit does not descend from the old one (a rewrite).
    Force,
    /// The ref is removed.
    Delete,
}

impl UpdateKind {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Create => "create",
            UpdateKind::FastForward => "update",
            UpdateKind::Force => "force-update",
            UpdateKind::Delete => "delete",
        }
    }
}

/// One line of git's hook input, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    /// The old object id (all zeros on create).
    pub old: String,
    /// The new object id (all zeros on delete).
    pub new: String,
    /// The full ref name.
    pub refname: String,
    /// The classification.
    pub kind: UpdateKind,
}

/// Where git keeps the pushed objects during pre-receive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// `GIT_OBJECT_DIRECTORY`.
    pub object_directory: Option<String>,
    /// `GIT_ALTERNATE_OBJECT_DIRECTORIES`.
    pub alternate_object_directories: Option<String>,
    /// `GIT_QUARANTINE_PATH`.
    pub quarantine_path: Option<String>,
}

/// The hook's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRequest {
    /// Must be [`VERSION`].
    pub version: u32,
    /// The per-push token the server gave git's environment.
    pub token: String,
    /// Which hook.
    pub phase: Phase,
    /// The ref updates, in git's order.
    pub updates: Vec<RefUpdate>,
    /// `git push -o` values.
    #[serde(default)]
    pub push_options: Vec<String>,
    /// The quarantine directories (pre-receive only).
    #[serde(default)]
    pub quarantine: Quarantine,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookResponse {
    /// Accept the push (pre-receive) or acknowledge it (post-receive).
    pub accept: bool,
    /// Lines to show the pusher.
    pub messages: Vec<String>,
}

/// The all-zero object id git uses for "no object".
pub fn is_null_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}
