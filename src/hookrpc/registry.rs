//! Pushes in progress, each known by a random token that only its own git process has.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rand::RngCore;

use crate::git::RepoName;

/// Who is pushing where.
#[derive(Debug)]
pub struct PushContext {
    /// The authenticated user.
    pub user: String,
    /// The key they authenticated with.
    pub key_fp: String,
    /// Their address.
    pub peer: Option<SocketAddr>,
    /// The repository.
    pub repo: RepoName,
    /// Its path.
    pub repo_path: PathBuf,
}

/// Live push tokens.
#[derive(Default)]
pub struct PushRegistry {
    pushes: Mutex<HashMap<String, Arc<PushContext>>>,
}

/// Removes its token from the registry when dropped (the push is over).
pub struct PushToken {
    registry: Arc<PushRegistryInner>,
    token: String,
}

type PushRegistryInner = PushRegistry;

impl PushRegistry {
    /// Registers a push and returns its token guard.
    pub fn register(self: &Arc<Self>, ctx: PushContext) -> PushToken {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        self.lock().insert(token.clone(), Arc::new(ctx));
        PushToken {
            registry: self.clone(),
            token,
        }
    }

    /// The push a token belongs to, if it is still in progress.
    pub fn lookup(&self, token: &str) -> Option<Arc<PushContext>> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PushContext>>> {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PushToken {
    /// The token value to hand to git's environment.
    pub fn value(&self) -> &str {
        &self.token
    }
}

impl Drop for PushToken {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.token);
    }
}
