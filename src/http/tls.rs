//! `http.tls`: the certificate chain and private key the HTTP listener serves HTTPS with.
//!
//! Loading happens once, at start (and in `slipway check`), so that a missing file, a
//! file that is not PEM, or a key that does not belong to the certificate stops the
//! server with the file's name instead of failing every handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::TlsSettings;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {source}; fix http.tls.{key} in slipway.yaml (relative paths are relative to the data directory)")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// `cert` or `key`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("{path} holds no PEM certificate ({detail}); http.tls.cert must be the server's certificate followed by any intermediates, each as -----BEGIN CERTIFICATE-----")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The key file holds no usable PEM private key.
    #[error("{path} holds no PEM private key ({detail}); http.tls.key must be an unencrypted PKCS#8 (-----BEGIN PRIVATE KEY-----), RSA or EC private key")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The key does not belong to the certificate, or is of a kind rustls cannot use.
    #[error("the private key in {key} cannot serve the certificate in {cert} ({detail}); the key must be the one the certificate was made for, and the server's own certificate must come first in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// rustls refused its own defaults (a build problem, not a configuration one).
    #[error("cannot set up TLS: {0}")]
    Provider(String),
}

/// Reads the certificate chain and key of `tls` and builds the listener's TLS settings
/// (TLS 1.2 and 1.3, rustls's safe defaults, no client certificates).
pub fn server_config(tls: &TlsSettings) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_chain(&tls.cert)?;
    let key = read_key(&tls.key)?;
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        detail: e.to_string(),
    };
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Provider(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(mismatch)
}

fn read(path: &Path, what: &'static str, key: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, "certificate", "cert")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: path.to_path_buf(),
            detail: "no CERTIFICATE section found".into(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "private key", "key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section found".into()
            }
            other => other.to_string(),
        },
    })
}

/// Warns when the private key file can be read by other users than the server's.
pub fn warn_if_key_is_exposed(tls: &TlsSettings) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(&tls.key) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                key = %tls.key.display(),
                mode = format!("{:o}", mode & 0o777),
                "the TLS private key can be read by other users; make it readable only by the server: chmod 600"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn a_missing_file_is_named_with_the_setting_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = server_config(&settings(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the TLS certificate"), "{err}");
        assert!(err.contains("cert.pem"), "{err}");
        assert!(err.contains("http.tls.cert"), "{err}");
    }

    #[test]
    fn files_that_are_not_pem_say_what_they_must_hold() {
        let dir = tempfile::tempdir().unwrap();
        let tls = settings(dir.path());
        std::fs::write(&tls.cert, "not a certificate\n").unwrap();
        std::fs::write(&tls.key, "not a key\n").unwrap();
        let err = server_config(&tls).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains("cert.pem"), "{err}");
        // A certificate section that is there but broken is reported too.
        std::fs::write(
            &tls.cert,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = server_config(&tls).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        // With a (syntactically) PEM certificate, the key is the next problem.
        std::fs::write(
            &tls.cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = server_config(&tls).unwrap_err().to_string();
        assert!(err.contains("key.pem holds no PEM private key"), "{err}");
        assert!(err.contains("PKCS#8"), "{err}");
    }
}
