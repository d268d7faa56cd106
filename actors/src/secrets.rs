//! The master key and sealing: XChaCha20-Poly1305 with a random nonce per value.
//!
//! A sealed value is `nonce (24 bytes) || ciphertext+tag`. Tampering with any byte makes
//! [`MasterKey::open`] fail.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Sealing failures.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or written.
    #[error("master key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error("master key {0} is damaged (it must be 32 bytes); restore it from a backup")]
    BadKey(String),
    /// A sealed value was altered, or sealed with another key.
    #[error(
        "a sealed value failed its integrity check (altered, or sealed with another master key)"
    )]
    Tampered,
}

/// The server's master key.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Loads the key at `path`, creating it (mode 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(&key).map_err(io)?;
                f.sync_all().map_err(io)?;
                key.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        MasterKey::from_bytes(&bytes).ok_or_else(|| SecretError::BadKey(path.display().to_string()))
    }

    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        (bytes.len() == 32).then(|| MasterKey {
            cipher: XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(bytes)),
        })
    }

    /// Seals `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value sealed by [`MasterKey::seal`].
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 24 + 16 {
            return Err(SecretError::Tampered);
        }
        let (nonce, body) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| SecretError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_detect_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let sealed = key.seal(b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "not plaintext");
        assert_eq!(key.open(&sealed).unwrap(), b"hunter2");
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            again.open(&sealed).unwrap(),
            b"hunter2",
            "same key after reload"
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(key.open(&bad), Err(SecretError::Tampered)));
        let other = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        assert!(other.open(&sealed).is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
