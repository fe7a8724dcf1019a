//! Sealing: one data key per [`Sealer`], any number of envelopes under it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::context::EncryptionContext;
use crate::crypto::KeySchedule;
use crate::error::{Error, Result};
use crate::format::{self, HeaderParts, MAX_PLAINTEXT_LEN, MAX_WRAPPED_KEYS};
use crate::kek::{Keyring, WrappedKey};
use crate::secret::DataKey;

/// Most envelopes one sealer may seal (its nonce counter never wraps).
const MAX_SEALS: u64 = 1 << 32;

/// A data key wrapped under every KEK of a keyring, ready to seal envelopes.
///
/// Sealing several shares of one backup with one `Sealer` costs one KMS round trip per KEK in
/// all, not one per share, and one key derivation. Each envelope gets its own nonce (a
/// counter over a nonce base derived from the data key), so no key and nonce pair repeats.
///
/// The `kek_context` is what the KMS sees and logs; every envelope sealed by this `Sealer` must
/// have a context that contains it (for a backup: the client id and purpose in the KEK context,
/// plus the share pair id and curve in each envelope's context).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use envelope::{EncryptionContext, Keyring, Sealer, local::LocalKek};
///
/// let keyring = Keyring::new().with(Arc::new(LocalKek::generate()?));
/// let client = EncryptionContext::new().with("client-id", "cl_1")?;
/// let sealer = Sealer::new(&keyring, client.clone()).await?;
/// let secp = client.clone().with("curve", "SECP256K1")?;
/// let ed = client.clone().with("curve", "ED25519")?;
/// let a = sealer.seal(&secp, b"share one")?;
/// let b = sealer.seal(&ed, b"share two")?;
/// assert_eq!(envelope::open(&keyring, &secp, &a).await?.expose_secret(), b"share one");
/// assert_eq!(envelope::open(&keyring, &ed, &b).await?.expose_secret(), b"share two");
/// # Ok::<_, envelope::Error>(()) }).unwrap();
/// ```
pub struct Sealer {
    keys: KeySchedule,
    kek_context: EncryptionContext,
    wrapped: Vec<WrappedKey>,
    sealed: AtomicU64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("kek_context", &self.kek_context)
            .field("wrapped", &self.wrapped)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Makes a data key with the keyring's first KEK (one round trip where the KMS generates
    /// keys, as AWS does) and wraps it under each other KEK.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring or one with more than 16 KEKs;
    /// [`Error::Kms`] when a KEK fails.
    pub async fn new(keyring: &Keyring, kek_context: EncryptionContext) -> Result<Self> {
        let (first, rest) = keyring.keks().split_first().ok_or_else(|| {
            Error::Invalid("sealing needs at least one key-encryption key".into())
        })?;
        if keyring.keks().len() > MAX_WRAPPED_KEYS {
            return Err(Error::Invalid(format!(
                "an envelope holds at most {MAX_WRAPPED_KEYS} wrapped keys"
            )));
        }
        let (key, wrapped) = first.generate_data_key(&kek_context).await?;
        let mut all = Vec::with_capacity(keyring.keks().len());
        all.push(wrapped);
        for kek in rest {
            all.push(kek.wrap(&key, &kek_context).await?);
        }
        Ok(Self::from_parts(key, kek_context, all))
    }

    pub(crate) fn from_parts(
        key: DataKey,
        kek_context: EncryptionContext,
        wrapped: Vec<WrappedKey>,
    ) -> Self {
        Self {
            keys: KeySchedule::derive(&key),
            kek_context,
            wrapped,
            sealed: AtomicU64::new(0),
        }
    }

    /// The part of each envelope's context that the KEKs saw.
    #[must_use]
    pub fn kek_context(&self) -> &EncryptionContext {
        &self.kek_context
    }

    /// The wrapped data keys this sealer writes into each envelope.
    #[must_use]
    pub fn wrapped_keys(&self) -> &[WrappedKey] {
        &self.wrapped
    }

    /// Seals `plaintext` bound to `context`, returning the binary envelope.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `context` does not contain the sealer's KEK context, the
    /// plaintext is over 16 MiB, or the sealer has sealed 2^32 envelopes.
    pub fn seal(&self, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>> {
        let index = self.sealed.fetch_add(1, Ordering::Relaxed);
        if index >= MAX_SEALS {
            return Err(Error::Invalid(
                "a sealer seals at most 2^32 envelopes; make a new one".into(),
            ));
        }
        self.seal_at(index, context, plaintext)
    }

    pub(crate) fn seal_at(
        &self,
        index: u64,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        if !self.kek_context.is_subset_of(context) {
            return Err(Error::Invalid(
                "the envelope context must contain the sealer's KEK context".into(),
            ));
        }
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::Invalid(format!(
                "plaintext of {} bytes is over the limit of {MAX_PLAINTEXT_LEN}",
                plaintext.len()
            )));
        }
        let nonce = self.keys.nonce(index);
        let parts = HeaderParts {
            nonce: &nonce,
            context,
            kek_context: &self.kek_context,
        };
        let mut out = Vec::with_capacity(format::encoded_len_hint(
            context,
            &self.kek_context,
            &self.wrapped,
            plaintext.len(),
        ));
        let fixed_len = format::write_fixed_header(&mut out, &parts);
        format::write_wrapped_keys(&mut out, &self.wrapped);
        let tag = self.keys.header_tag(&out);
        out.extend_from_slice(&tag);
        format::write_payload_len(&mut out, plaintext.len());
        self.keys
            .seal_payload(&nonce, &mut out, fixed_len, plaintext)?;
        Ok(out)
    }
}

/// Seals `plaintext` bound to `context` under every KEK of `keyring`, with a fresh data key.
///
/// The whole context goes into each KEK wrap. To seal several related plaintexts under one
/// data key, use a [`Sealer`].
///
/// # Errors
/// As [`Sealer::new`] and [`Sealer::seal`].
pub async fn seal(
    keyring: &Keyring,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    Sealer::new(keyring, context.clone())
        .await?
        .seal(context, plaintext)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::local::LocalKek;

    #[test]
    fn one_allocation_of_the_exact_size_per_seal() {
        let keyring = Keyring::new().with(Arc::new(LocalKek::generate().unwrap()));
        let ctx = EncryptionContext::new().with("client-id", "c").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sealer = rt.block_on(Sealer::new(&keyring, ctx.clone())).unwrap();
        for len in [0, 1, 4096, 12288] {
            let out = sealer.seal(&ctx, &vec![0; len]).unwrap();
            assert_eq!(out.capacity(), out.len(), "plaintext of {len} bytes");
        }
    }
}
