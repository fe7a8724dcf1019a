//! TLS with rustls (aws-lc-rs), from PEM files.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// A server certificate chain and its private key, ready to serve TLS 1.3 and 1.2 with
/// rustls and the aws-lc-rs provider (the one TLS stack of the workspace). HTTP/1.1 is
/// offered by ALPN.
///
/// `Debug` shows only how many certificates the chain has; the key never prints.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
    chain_len: usize,
}

impl TlsConfig {
    /// From a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1).
    ///
    /// # Errors
    /// [`Error::Tls`] when either does not parse, holds nothing, or the key does not fit the
    /// certificate.
    pub fn from_pem(cert_chain: &[u8], private_key: &[u8]) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("the certificate PEM does not parse", e))?;
        let key = PrivateKeyDer::from_pem_slice(private_key)
            .map_err(|e| tls_error("the private key PEM does not parse", e))?;
        Self::from_der(chain, key)
    }

    /// From PEM files: a certificate chain (leaf first) and its private key.
    ///
    /// # Errors
    /// [`Error::Tls`] when a file cannot be read, or as [`from_pem`](Self::from_pem).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| {
                    tls_error(
                        &format!("the {what} file {} cannot be read", path.display()),
                        e,
                    )
                })
        };
        let chain = read(cert_chain.as_ref(), "certificate")?;
        let key = read(private_key.as_ref(), "private key")?;
        Self::from_pem(&chain, &key)
    }

    /// From DER certificates (leaf first) and a private key.
    ///
    /// # Errors
    /// [`Error::Tls`] when the chain is empty or the key does not fit.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        if chain.is_empty() {
            return Err(Error::Tls {
                reason: "the certificate chain is empty".into(),
                source: None,
            });
        }
        let chain_len = chain.len();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("no TLS protocol version available", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls_error("the private key does not fit the certificate", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            chain_len,
        })
    }

    /// The rustls configuration.
    #[must_use]
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("chain_len", &self.chain_len)
            .finish_non_exhaustive()
    }
}

fn tls_error(reason: &str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Tls {
        reason: reason.to_owned(),
        source: Some(Box::new(source)),
    }
}
