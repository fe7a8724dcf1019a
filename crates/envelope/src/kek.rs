//! The key-encryption-key trait that every KMS backend implements, and the keyring that
//! picks one when opening.

use std::fmt;
use std::sync::Arc;

use crate::context::EncryptionContext;
use crate::error::{Error, FormatError, KmsError};
use crate::secret::DataKey;

/// Longest provider name, in bytes.
pub const MAX_PROVIDER_LEN: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 2048;
/// Longest wrapped data key, in bytes.
pub const MAX_WRAPPED_LEN: usize = 8192;

/// Which key wrapped a data key: the provider (`local`, `aws-kms`, `gcp-kms`, `pkcs11`, or an
/// integrator's own) and the key id, including the key version where the KMS does not embed it
/// in its ciphertext (for example a GCP `cryptoKeyVersions/N` name or an AWS key ARN).
///
/// Recorded in the clear in every envelope: it must never contain secret material.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    provider: String,
    key_id: String,
}

impl KeyRef {
    /// A key reference.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless the provider is 1 to 32 bytes of `a-z`, `0-9` and `-`, and the
    /// key id is 1 to 2048 bytes.
    pub fn new(provider: impl Into<String>, key_id: impl Into<String>) -> Result<Self, Error> {
        let (provider, key_id) = (provider.into(), key_id.into());
        check_key_ref(&provider, &key_id).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Self { provider, key_id })
    }

    pub(crate) fn check(provider: &str, key_id: &str) -> Result<(), FormatError> {
        check_key_ref(provider, key_id)
    }

    /// From fields already checked with [`KeyRef::check`].
    pub(crate) fn validated(provider: &str, key_id: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            key_id: key_id.to_owned(),
        }
    }

    /// The provider name.
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.key_id)
    }
}

fn check_key_ref(provider: &str, key_id: &str) -> Result<(), FormatError> {
    let valid_provider = !provider.is_empty()
        && provider.len() <= MAX_PROVIDER_LEN
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_provider {
        return Err(FormatError::Invalid {
            field: "provider",
            reason: "must be 1 to 32 bytes of a-z, 0-9 and '-'",
        });
    }
    if key_id.is_empty() || key_id.len() > MAX_KEY_ID_LEN {
        return Err(FormatError::Invalid {
            field: "key id",
            reason: "must be 1 to 2048 bytes",
        });
    }
    Ok(())
}

/// A data key wrapped (encrypted) by a key-encryption key, with the reference of that key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    key_ref: KeyRef,
    bytes: Vec<u8>,
}

impl WrappedKey {
    /// A wrapped key.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `bytes` is empty or longer than [`MAX_WRAPPED_LEN`].
    pub fn new(key_ref: KeyRef, bytes: Vec<u8>) -> Result<Self, Error> {
        check_wrapped(&bytes).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Self { key_ref, bytes })
    }

    pub(crate) fn check(bytes: &[u8]) -> Result<(), FormatError> {
        check_wrapped(bytes)
    }

    /// From bytes already checked with [`WrappedKey::check`].
    pub(crate) fn validated(key_ref: KeyRef, bytes: Vec<u8>) -> Self {
        Self { key_ref, bytes }
    }

    /// The key that wrapped it.
    #[must_use]
    pub fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    /// The wrapped bytes, as the KMS returned them.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn check_wrapped(bytes: &[u8]) -> Result<(), FormatError> {
    if bytes.is_empty() || bytes.len() > MAX_WRAPPED_LEN {
        return Err(FormatError::Invalid {
            field: "wrapped key",
            reason: "must be 1 to 8192 bytes",
        });
    }
    Ok(())
}

/// A key-encryption key (KEK) held by a KMS, an HSM or a local key file. It wraps and unwraps
/// the data keys that encrypt each envelope, under an encryption context.
///
/// # Contract
/// * `unwrap(&wrap(&key, ctx)?, ctx)?` returns the same key.
/// * Unwrapping under a different context, a tampered [`WrappedKey`], or another KEK's
///   [`WrappedKey`] fails, with [`KmsError::UnwrapFailed`] when the failure is cryptographic
///   (opaque on purpose).
/// * `wrap` records a [`KeyRef`] with this KEK's [`provider`](Self::provider) for which
///   [`can_unwrap`](Self::can_unwrap) is true; it may add the key version.
/// * [`current_key_ref`](Self::current_key_ref) is the [`KeyRef`] that `wrap` and
///   `generate_data_key` record today, and nothing else: a key that this KEK can still open
///   (an older version, the key an alias pointed at before) is not current.
/// * The context goes into the KMS's own authenticated data (AWS `EncryptionContext`, GCP
///   `additionalAuthenticatedData`, PKCS#11 GCM AAD), never only into a local check.
/// * Safe to use from many tasks at once through `Arc<dyn KeyEncryptionKey>`.
///
/// # Implementing
/// Prove a backend with [`conformance::check_kek`](crate::conformance) (feature
/// `conformance`), or one test per check with [`kek_conformance_tests!`](crate::kek_conformance_tests).
/// Map the KMS's errors onto [`KmsError`] so that callers can tell an outage
/// ([`KmsError::Unavailable`], retried) from a wrong key.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use envelope::{EncryptionContext, KeyEncryptionKey, Keyring, local::LocalKek};
///
/// # async fn demo() -> Result<(), envelope::Error> {
/// let kek: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate()?);
/// let ctx = EncryptionContext::new().with("client-id", "cl_1")?;
/// let (key, wrapped) = kek.generate_data_key(&ctx).await?;
/// let again = kek.unwrap(&wrapped, &ctx).await?;
/// assert_eq!(key.expose_secret(), again.expose_secret());
/// # Ok(()) }
/// # futures_executor(demo());
/// # fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait::async_trait]
pub trait KeyEncryptionKey: fmt::Debug + Send + Sync + 'static {
    /// The provider name recorded in envelopes: `local`, `aws-kms`, `gcp-kms`, `pkcs11`, or
    /// an integrator's own (1 to 32 bytes of `a-z`, `0-9`, `-`).
    fn provider(&self) -> &str;

    /// The key as configured: a fingerprint, ARN, alias or resource name. Never secret.
    fn key_id(&self) -> &str;

    /// Whether this KEK can unwrap a data key recorded under `key_ref`: "could it open it",
    /// which includes keys it no longer wraps with (older versions, the key an alias pointed
    /// at before). The default matches provider and key id exactly; a backend that records the
    /// key version (or resolves an alias to an ARN) overrides it.
    ///
    /// Never use it to decide whether a wrapped key is *current*: that is
    /// [`current_key_ref`](Self::current_key_ref).
    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        key_ref.provider() == self.provider() && key_ref.key_id() == self.key_id()
    }

    /// The [`KeyRef`] that [`wrap`](Self::wrap) and
    /// [`generate_data_key`](Self::generate_data_key) would record if called now: the key this
    /// KEK wraps with today (the primary version of a versioned key, the key an alias points
    /// at now). Rotation compares an envelope's wrapped keys with it to decide whether the
    /// envelope is already under the current keys, so it must be exact: a KEK that answers
    /// with a key it merely *can* open would leave envelopes under a retired key.
    ///
    /// There is deliberately no default (a default of [`can_unwrap`](Self::can_unwrap) would
    /// make every wrapper that forgets to forward it call a retired key current). A backend
    /// whose current key can move (AWS alias, Cloud KMS primary version) asks its KMS; one
    /// whose key cannot (a local key, a PKCS#11 label) answers without a call.
    ///
    /// # Errors
    /// A [`KmsError`] from the backend (for example when the alias cannot be resolved).
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError>;

    /// Wraps `key` under `context`.
    ///
    /// # Errors
    /// A [`KmsError`] from the backend.
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError>;

    /// Unwraps a data key that [`wrap`](Self::wrap) (or
    /// [`generate_data_key`](Self::generate_data_key)) made under `context`.
    ///
    /// # Errors
    /// [`KmsError::UnwrapFailed`] for a wrong context, a tampered or foreign wrapped key;
    /// other [`KmsError`]s for backend failures.
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError>;

    /// A fresh data key and its wrapped form. The default draws the key locally and calls
    /// [`wrap`](Self::wrap); a KMS that can do both in one round trip (AWS `GenerateDataKey`)
    /// overrides it.
    ///
    /// # Errors
    /// A [`KmsError`] from the backend or the random number generator.
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        let key = DataKey::generate().map_err(|e| KmsError::Backend {
            backend: "os-rng",
            source: Box::new(e),
        })?;
        let wrapped = self.wrap(&key, context).await?;
        Ok((key, wrapped))
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: KeyEncryptionKey + ?Sized> KeyEncryptionKey for Arc<T> {
    fn provider(&self) -> &str {
        (**self).provider()
    }
    fn key_id(&self) -> &str {
        (**self).key_id()
    }
    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        (**self).can_unwrap(key_ref)
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        (**self).current_key_ref().await
    }
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        (**self).wrap(key, context).await
    }
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        (**self).unwrap(wrapped, context).await
    }
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        (**self).generate_data_key(context).await
    }
}

/// An ordered set of key-encryption keys.
///
/// Sealing wraps the data key under every KEK of the keyring (any one of them can open the
/// envelope later); the first KEK generates the data key. Opening picks, for each wrapped key
/// recorded in the envelope, a KEK of the keyring that [can unwrap](KeyEncryptionKey::can_unwrap) it.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keks: Vec<Arc<dyn KeyEncryptionKey>>,
}

impl Keyring {
    /// An empty keyring.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a KEK.
    #[must_use]
    pub fn with(mut self, kek: Arc<dyn KeyEncryptionKey>) -> Self {
        self.keks.push(kek);
        self
    }

    /// Adds a KEK.
    pub fn push(&mut self, kek: Arc<dyn KeyEncryptionKey>) {
        self.keks.push(kek);
    }

    /// The KEKs, in order.
    #[must_use]
    pub fn keks(&self) -> &[Arc<dyn KeyEncryptionKey>] {
        &self.keks
    }

    /// Whether the keyring has no KEK.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keks.is_empty()
    }

    /// The key reference each KEK wraps with now
    /// ([`current_key_ref`](KeyEncryptionKey::current_key_ref)), in keyring order: one lookup
    /// per KEK (a KMS call for a KEK whose current key can move). Resolve them once at the start
    /// of a rotation and compare envelopes with [`wrapped_only_by`](crate::wrapped_only_by).
    ///
    /// # Errors
    /// The [`KmsError`] of the first KEK that fails.
    pub async fn current_key_refs(&self) -> Result<Vec<KeyRef>, KmsError> {
        let mut refs = Vec::with_capacity(self.keks.len());
        for kek in &self.keks {
            refs.push(kek.current_key_ref().await?);
        }
        Ok(refs)
    }
}

impl FromIterator<Arc<dyn KeyEncryptionKey>> for Keyring {
    fn from_iter<I: IntoIterator<Item = Arc<dyn KeyEncryptionKey>>>(iter: I) -> Self {
        Self {
            keks: iter.into_iter().collect(),
        }
    }
}

impl From<Arc<dyn KeyEncryptionKey>> for Keyring {
    fn from(kek: Arc<dyn KeyEncryptionKey>) -> Self {
        Self { keks: vec![kek] }
    }
}
