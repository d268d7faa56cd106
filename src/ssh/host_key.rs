//! The server's SSH host key.

use std::path::Path;

use anyhow::Context;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{ssh_key::LineEnding, PrivateKey};

/// Creates an ed25519 host key at `path` (mode 0600) unless one exists.
pub fn generate_host_key(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let key = random_ed25519();
    let text = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the SSH host key")?;
    write_private(path, text.as_bytes())?;
    Ok(true)
}

/// Loads the host key.
pub fn load_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    russh::keys::load_secret_key(path, None).with_context(|| {
        format!(
            "cannot load the SSH host key {}; run `slipway init` to create it",
            path.display()
        )
    })
}

/// Writes a secret file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A fresh ed25519 key from the operating system's random source.
pub fn random_ed25519() -> PrivateKey {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}
