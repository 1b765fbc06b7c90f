//! The coordinator's TLS: its certificate and key, and optionally the CA whose client
//! certificates it requires (mutual TLS).

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// PEM files of a TLS-serving coordinator.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server certificate (chain), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// With a CA here, every caller must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the {what} {path}: {message}")]
pub struct TlsFileError {
    what: &'static str,
    path: String,
    message: String,
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsFileError> {
    let error = |message: String| TlsFileError {
        what,
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    if !bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        return Err(error("it is not a PEM file (no `-----BEGIN` line)".into()));
    }
    Ok(bytes)
}

impl ServerTls {
    /// The server's TLS configuration, read from the files now.
    pub fn config(&self) -> Result<ServerTlsConfig, TlsFileError> {
        let identity = Identity::from_pem(
            read_pem(&self.cert, "TLS certificate (--tls-cert)")?,
            read_pem(&self.key, "TLS key (--tls-key)")?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read_pem(
                ca,
                "client CA certificate (--client-ca)",
            )?));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_non_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("cert.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let tls = ServerTls {
            cert: junk.clone(),
            key: dir.path().join("missing.key"),
            client_ca: None,
        };
        let error = tls.config().unwrap_err().to_string();
        assert!(error.contains("--tls-cert"), "{error}");
        assert!(error.contains("not a PEM file"), "{error}");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let error = tls.config().unwrap_err().to_string();
        assert!(
            error.contains("--tls-key") && error.contains("missing.key"),
            "{error}"
        );
    }
}
