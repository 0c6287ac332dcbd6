//! Serving HTTPS: the PEM certificate chain and private key named by `--tls-cert`/`--tls-key`
//! loaded into a rustls acceptor that `server::listener` runs each accepted socket through
//! before HTTP. `lifecycle` loads it at start, so a missing or unreadable file stops the start
//! with a message naming it. Offers HTTP/2 and HTTP/1.1 by ALPN, TLS 1.2 and 1.3 (rustls's safe
//! defaults, with the ring provider reqwest already uses).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first, in PEM.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1), in PEM.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {detail}")]
    Cert { path: PathBuf, detail: String },
    #[error("the TLS certificate file {path} holds no certificate (expected PEM)")]
    NoCert { path: PathBuf },
    #[error("cannot read the TLS private key {path}: {detail} (expected a PEM private key)")]
    Key { path: PathBuf, detail: String },
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(String),
}

/// The acceptor for `files`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let unreadable = |detail: String| TlsError::Cert {
        path: path.to_owned(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("flexiproxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let files = TlsFiles {
            cert: dir.join("missing.pem"),
            key: empty.clone(),
        };
        let error = acceptor(&files).err().unwrap().to_string();
        assert!(error.contains("missing.pem"), "{error}");
        let files = TlsFiles {
            cert: empty.clone(),
            key: empty,
        };
        assert!(matches!(acceptor(&files), Err(TlsError::NoCert { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
