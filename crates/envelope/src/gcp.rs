//! The `gcp-kms` key-encryption key: Google Cloud KMS through the official
//! `google-cloud-kms-v1` client (REST). Feature `gcp-kms`.
//!
//! * **Wrap:** one `encrypt` of the data key with the canonical encryption context as
//!   `additionalAuthenticatedData`. **Unwrap:** one `decrypt` with the same AAD.
//! * **Integrity (CRC32C) both ways**, as Google's data-integrity guide asks: the request
//!   carries `plaintextCrc32c` / `ciphertextCrc32c` and `additionalAuthenticatedDataCrc32c`; an
//!   encrypt response must say it verified both (`verifiedPlaintextCrc32c`,
//!   `verifiedAdditionalAuthenticatedDataCrc32c`), and the returned `ciphertextCrc32c` /
//!   `plaintextCrc32c` must match what arrived. A mismatched checksum is
//!   [`KmsError::Unavailable`] (corruption in transit: retry); a missing verification flag is
//!   [`KmsError::Backend`].
//! * **Key reference:** the `…/cryptoKeyVersions/N` name the response returns, after checking
//!   that it belongs to the configured key, so an envelope records the key version that wrapped
//!   it. Unwrapping calls `decrypt` on the crypto key (KMS finds the version in its ciphertext).
//! * **Current key:** [`current_key_ref`](KeyEncryptionKey::current_key_ref) of a crypto key is
//!   its primary version, read with one `GetCryptoKey` (`GET /v1/{cryptoKey}`) per call, so a
//!   rotation sees a primary that moved; of a pinned version, that version (no call).
//!
//! **IAM permissions.** Sealing needs `cloudkms.cryptoKeyVersions.useToEncrypt`, opening
//! `cloudkms.cryptoKeyVersions.useToDecrypt` (both in `roles/cloudkms.cryptoKeyEncrypterDecrypter`).
//! Rotating to an unpinned crypto key (and [`RewrapMode::Add`](crate::RewrapMode::Add)) also
//! reads the key's primary version, which needs `cloudkms.cryptoKeys.get` on the key: that
//! permission is *not* in the encrypter/decrypter role; grant `roles/cloudkms.viewer` on the
//! key, or a custom role with `cloudkms.cryptoKeys.get`, to the identity that rotates.
//!
//! Credentials come from Application Default Credentials ([`GcpKmsBuilder::build`]) or from a
//! client you hand in ([`GcpKmsBuilder::with_client`]), which also sets retries and endpoints.
//! The client's response buffers are not zeroized; the data key is copied out at once.
//!
//! ```no_run
//! # #[cfg(feature = "gcp-kms")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use envelope::{Keyring, gcp::GcpKmsBuilder};
//!
//! let kek = GcpKmsBuilder::new()
//!     .with_key_name("projects/p/locations/global/keyRings/r/cryptoKeys/backups")
//!     .build()
//!     .await?;
//! let keyring = Keyring::new().with(Arc::new(kek));
//! # Ok(()) }
//! ```

use std::fmt;

use google_cloud_gax::error::rpc::Code;
use google_cloud_kms_v1::client::KeyManagementService;
use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::{BoxError, KmsError};
use crate::kek::{KeyEncryptionKey, KeyRef, WrappedKey};
use crate::secret::{DATA_KEY_LEN, DataKey};

/// The provider name recorded in envelopes.
pub const PROVIDER: &str = "gcp-kms";
/// Environment variable [`GcpKmsBuilder::from_env`] reads for the key name
/// (`projects/…/locations/…/keyRings/…/cryptoKeys/…`).
pub const ENV_KEY_NAME: &str = "PORTAL_BACKUP_GCP_KMS_KEY";

const VERSIONS: &str = "/cryptoKeyVersions/";

/// Why a [`GcpKms`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No key was configured.
    #[error("missing Google Cloud KMS key name (set it with `with_key_name` or {ENV_KEY_NAME})")]
    MissingKeyName,
    /// The key name is not `projects/*/locations/*/keyRings/*/cryptoKeys/*` (optionally with
    /// `/cryptoKeyVersions/N`).
    #[error("invalid Google Cloud KMS key name {0:?}")]
    InvalidKeyName(String),
    /// The client could not be built (for example, no Application Default Credentials).
    #[error("cannot build the Google Cloud KMS client")]
    Client(#[source] BoxError),
}

/// Why a response was refused. The source of the [`KmsError`] it becomes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The response's checksum does not match the bytes that arrived.
    #[error("{0} checksum does not match the response")]
    ChecksumMismatch(&'static str),
    /// The service did not confirm that it verified a request checksum.
    #[error("Cloud KMS did not confirm verifying the {0} checksum")]
    NotVerified(&'static str),
    /// The response names a key that is not the one requested.
    #[error("Cloud KMS answered with key {returned:?}, not a version of {requested:?}")]
    WrongKey {
        /// The key requested.
        requested: String,
        /// The key the response named.
        returned: String,
    },
}

/// Builds a [`GcpKms`].
#[must_use]
#[derive(Default)]
pub struct GcpKmsBuilder {
    key_name: Option<String>,
    client: Option<KeyManagementService>,
    endpoint: Option<String>,
}

impl fmt::Debug for GcpKmsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsBuilder")
            .field("key_name", &self.key_name)
            .field("client", &self.client.as_ref().map(|_| "<provided>"))
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl GcpKmsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder with the key name from [`ENV_KEY_NAME`] (if set). Credentials come from
    /// Application Default Credentials at [`build`](Self::build).
    pub fn from_env() -> Self {
        Self {
            key_name: std::env::var(ENV_KEY_NAME).ok().filter(|v| !v.is_empty()),
            ..Self::default()
        }
    }

    /// The crypto key (`projects/*/locations/*/keyRings/*/cryptoKeys/*`: wraps with its primary
    /// version, unwraps any of its versions) or one crypto key version
    /// (`…/cryptoKeyVersions/N`: wraps and unwraps with that version only).
    pub fn with_key_name(mut self, name: impl Into<String>) -> Self {
        self.key_name = Some(name.into());
        self
    }

    /// Uses this client (credentials, endpoint, retry policy) instead of building one with
    /// Application Default Credentials.
    pub fn with_client(mut self, client: KeyManagementService) -> Self {
        self.client = Some(client);
        self
    }

    /// The endpoint for a client built here (default `https://cloudkms.googleapis.com`);
    /// ignored with [`with_client`](Self::with_client).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Builds the KEK, and a client with Application Default Credentials unless one was given.
    /// Makes no KMS call.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing or malformed key name, or a client that cannot be built.
    pub async fn build(self) -> Result<GcpKms, ConfigError> {
        let key_name = self.key_name.ok_or(ConfigError::MissingKeyName)?;
        let (crypto_key, pinned) = parse_key_name(&key_name)
            .ok_or_else(|| ConfigError::InvalidKeyName(key_name.clone()))?;
        let client = match self.client {
            Some(client) => client,
            None => {
                let mut builder = KeyManagementService::builder();
                if let Some(url) = self.endpoint {
                    builder = builder.with_endpoint(url);
                }
                builder
                    .build()
                    .await
                    .map_err(|e| ConfigError::Client(Box::new(e)))?
            }
        };
        Ok(GcpKms {
            client,
            crypto_key: crypto_key.to_owned(),
            pinned,
            key_name,
        })
    }
}

/// Splits a key name into the crypto key and whether a version is pinned; `None` when it is not
/// a crypto key or crypto key version name.
fn parse_key_name(name: &str) -> Option<(&str, bool)> {
    let (crypto_key, pinned) = match name.split_once(VERSIONS) {
        Some((key, version)) => {
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (key, true)
        }
        None => (name, false),
    };
    let parts: Vec<&str> = crypto_key.split('/').collect();
    let valid = matches!(
        parts.as_slice(),
        ["projects", p, "locations", l, "keyRings", r, "cryptoKeys", k]
            if [p, l, r, k].iter().all(|s| !s.is_empty())
    );
    (valid && KeyRef::new(PROVIDER, name).is_ok()).then_some((crypto_key, pinned))
}

fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

/// A key-encryption key in Google Cloud KMS (a symmetric `ENCRYPT_DECRYPT` crypto key).
///
/// Build it with [`GcpKmsBuilder`]. Key references record the crypto key version;
/// [`can_unwrap`](KeyEncryptionKey::can_unwrap) accepts every version of the configured crypto
/// key (or only the pinned version).
pub struct GcpKms {
    client: KeyManagementService,
    key_name: String,
    crypto_key: String,
    pinned: bool,
}

impl fmt::Debug for GcpKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKms")
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

fn backend(source: impl Into<BoxError>) -> KmsError {
    KmsError::Backend {
        backend: PROVIDER,
        source: source.into(),
    }
}

fn integrity(error: IntegrityError) -> KmsError {
    match error {
        IntegrityError::ChecksumMismatch(_) => KmsError::Unavailable {
            source: Box::new(error),
        },
        other => backend(other),
    }
}

impl GcpKms {
    /// A builder.
    pub fn builder() -> GcpKmsBuilder {
        GcpKmsBuilder::new()
    }

    /// Whether `name` is a version of the configured key (the pinned version, if one is).
    fn is_own_version(&self, name: &str) -> bool {
        if self.pinned {
            return name == self.key_name;
        }
        name.strip_prefix(self.crypto_key.as_str())
            .and_then(|rest| rest.strip_prefix(VERSIONS))
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    }

    fn classify(&self, err: google_cloud_kms_v1::Error, unwrapping: bool) -> KmsError {
        let key = self.key_name.clone();
        if let Some(status) = err.status() {
            return match status.code {
                Code::NotFound | Code::FailedPrecondition => KmsError::KeyNotFound {
                    key,
                    source: Box::new(err),
                },
                Code::PermissionDenied | Code::Unauthenticated => KmsError::PermissionDenied {
                    key,
                    source: Box::new(err),
                },
                Code::Unavailable
                | Code::ResourceExhausted
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::Aborted => KmsError::Unavailable {
                    source: Box::new(err),
                },
                Code::InvalidArgument if unwrapping => KmsError::UnwrapFailed,
                _ => backend(err),
            };
        }
        if err.is_authentication() {
            return KmsError::PermissionDenied {
                key,
                source: Box::new(err),
            };
        }
        let transient = err.is_timeout()
            || err.is_exhausted()
            || err.is_io()
            || err.is_connect()
            || err.is_transport()
            || err.http_status_code().is_some_and(|c| c >= 500 || c == 429);
        if transient {
            return KmsError::Unavailable {
                source: Box::new(err),
            };
        }
        backend(err)
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for GcpKms {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn key_id(&self) -> &str {
        &self.key_name
    }

    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        key_ref.provider() == PROVIDER && self.is_own_version(key_ref.key_id())
    }

    /// The pinned version, or else the crypto key's primary version now (one `GetCryptoKey`,
    /// which needs `cloudkms.cryptoKeys.get`).
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        if self.pinned {
            return KeyRef::new(PROVIDER, &self.key_name).map_err(backend);
        }
        let key = self
            .client
            .get_crypto_key()
            .set_name(&self.crypto_key)
            .send()
            .await
            .map_err(|e| self.classify(e, false))?;
        let primary = key.primary.ok_or_else(|| {
            backend(format!(
                "crypto key {:?} has no primary version (is it an ENCRYPT_DECRYPT key?)",
                self.crypto_key
            ))
        })?;
        if !self.is_own_version(&primary.name) {
            return Err(integrity(IntegrityError::WrongKey {
                requested: self.key_name.clone(),
                returned: primary.name,
            }));
        }
        KeyRef::new(PROVIDER, &primary.name).map_err(backend)
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        let aad = context.canonical_bytes();
        let plaintext = key.expose_secret();
        let out = self
            .client
            .encrypt()
            .set_name(&self.key_name)
            .set_plaintext(bytes_of(plaintext))
            .set_plaintext_crc32c(crc32c(plaintext))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .set_additional_authenticated_data(aad)
            .send()
            .await
            .map_err(|e| self.classify(e, false))?;
        if !out.verified_plaintext_crc32c {
            return Err(integrity(IntegrityError::NotVerified("plaintext")));
        }
        if !out.verified_additional_authenticated_data_crc32c {
            return Err(integrity(IntegrityError::NotVerified(
                "additional authenticated data",
            )));
        }
        if out.ciphertext_crc32c != Some(crc32c(&out.ciphertext)) {
            return Err(integrity(IntegrityError::ChecksumMismatch("ciphertext")));
        }
        if !self.is_own_version(&out.name) {
            return Err(integrity(IntegrityError::WrongKey {
                requested: self.key_name.clone(),
                returned: out.name,
            }));
        }
        let key_ref = KeyRef::new(PROVIDER, &out.name).map_err(backend)?;
        WrappedKey::new(key_ref, out.ciphertext.to_vec()).map_err(backend)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        if !self.can_unwrap(wrapped.key_ref()) {
            return Err(KmsError::UnwrapFailed);
        }
        let aad = context.canonical_bytes();
        let ciphertext = wrapped.bytes();
        let out = self
            .client
            .decrypt()
            .set_name(&self.crypto_key)
            .set_ciphertext(bytes_of(ciphertext))
            .set_ciphertext_crc32c(crc32c(ciphertext))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .set_additional_authenticated_data(aad)
            .send()
            .await
            .map_err(|e| self.classify(e, true))?;
        let plaintext = Zeroizing::new(out.plaintext.to_vec());
        if out.plaintext_crc32c != Some(crc32c(&plaintext)) {
            return Err(integrity(IntegrityError::ChecksumMismatch("plaintext")));
        }
        drop(out);
        if plaintext.len() != DATA_KEY_LEN {
            return Err(KmsError::UnwrapFailed);
        }
        DataKey::from_slice(&plaintext).ok_or(KmsError::UnwrapFailed)
    }
}

/// Bytes for a request field. The client takes `bytes::Bytes` by value; this copy is not
/// zeroized (see the module docs).
fn bytes_of(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
        assert_eq!(parse_key_name(key), Some((key, false)));
        let version = format!("{key}/cryptoKeyVersions/3");
        assert_eq!(parse_key_name(&version), Some((key, true)));
        for bad in [
            "",
            "projects/p/locations/global/keyRings/r",
            "projects//locations/global/keyRings/r/cryptoKeys/k",
            "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/",
            "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/x",
            "projects/p/locations/global/keyRings/r/cryptoKeys/k/extra",
        ] {
            assert_eq!(parse_key_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }
}
