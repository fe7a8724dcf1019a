//! Opening and rewrapping: both unwrap the data key through a keyring and check the header
//! tag before they trust it.

use std::sync::{Arc, Mutex, PoisonError};

use crate::context::EncryptionContext;
use crate::crypto::KeySchedule;
use crate::error::{Error, KmsError, Result};
use crate::format::{self, MAX_WRAPPED_KEYS, Parsed};
use crate::kek::{KeyEncryptionKey, Keyring, WrappedKey};
use crate::secret::{DataKey, Plaintext};

/// Opens an envelope sealed under `context` with any KEK of `keyring`.
///
/// To open several envelopes that share a data key (the shares of one backup) with one KMS
/// call, use an [`Opener`].
///
/// # Errors
/// [`Error::Format`] for bytes that are not a well-formed v1 envelope;
/// [`Error::NoMatchingKek`] when no KEK of the keyring matches a wrapped key;
/// [`Error::Kms`] when the only matching KEKs failed for a non-cryptographic reason (worth a
/// retry if [`Error::is_retryable`]); [`Error::Decrypt`] for a wrong context, a wrong key or
/// tampered bytes, with no detail on which.
pub async fn open(
    keyring: &Keyring,
    context: &EncryptionContext,
    envelope: &[u8],
) -> Result<Plaintext> {
    let parsed = format::parse(envelope)?;
    if !context.matches(parsed.context) {
        return Err(Error::Decrypt);
    }
    let (_, (_, keys)) = unwrap_verified(keyring.keks(), &parsed).await?;
    open_payload(&keys, &parsed)
}

/// Opens envelopes, remembering the data keys it has unwrapped (as derived keys, zeroized on
/// drop) so that envelopes sealed under one data key, such as the two shares of a backup, cost
/// one KMS unwrap in all.
///
/// A remembered key is used only for an envelope that carries the very same wrapped key under
/// the very same KEK context, and only after the envelope's header tag verifies under it.
///
/// # Who sealed it?
/// The header tag commits an envelope to its data key; it does not say *who* sealed it.
/// Whoever can wrap a data key under **any** KEK of the keyring (hold a local key file, be
/// allowed `kms:Encrypt` on one of the keys) and write to the store can seal a whole envelope
/// of their choosing, and it opens. [`require_primary`](Self::require_primary) narrows that
/// to the keyring's first KEK: see `docs/threat-model.md`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use envelope::{EncryptionContext, Keyring, Opener, Sealer, local::LocalKek};
///
/// let keyring = Keyring::new().with(Arc::new(LocalKek::generate()?));
/// let client = EncryptionContext::new().with("client-id", "cl_1")?;
/// let sealer = Sealer::new(&keyring, client.clone()).await?;
/// let (secp, ed) = (client.clone().with("curve", "SECP256K1")?, client.with("curve", "ED25519")?);
/// let (a, b) = (sealer.seal(&secp, b"one")?, sealer.seal(&ed, b"two")?);
///
/// let opener = Opener::new(&keyring);
/// assert_eq!(opener.open(&secp, &a).await?.expose_secret(), b"one");
/// assert_eq!(opener.open(&ed, &b).await?.expose_secret(), b"two"); // no second unwrap
/// # Ok::<_, envelope::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Opener<'k> {
    keyring: &'k Keyring,
    remembered: Mutex<Vec<Remembered>>,
    primary_only: bool,
}

/// How many unwrapped data keys an [`Opener`] keeps.
const REMEMBERED_KEYS: usize = 32;

struct Remembered {
    wrapped: WrappedKey,
    /// Canonical bytes of the KEK context the key was unwrapped under.
    kek_context: Vec<u8>,
    keys: Arc<KeySchedule>,
}

impl std::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered")
            .field("wrapped", &self.wrapped.key_ref())
            .finish_non_exhaustive()
    }
}

impl<'k> Opener<'k> {
    /// An opener over a keyring.
    #[must_use]
    pub fn new(keyring: &'k Keyring) -> Self {
        Self {
            keyring,
            remembered: Mutex::new(Vec::new()),
            primary_only: false,
        }
    }

    /// Opens only envelopes whose data key unwraps, and verifies against the header tag, under
    /// the keyring's **primary** KEK: its first, the one that draws each data key when sealing.
    /// The other KEKs of the keyring are never used to open; an envelope with no wrapped key
    /// for the primary is refused with [`Error::NotWrappedByPrimary`], one whose entry for the
    /// primary does not unwrap with [`Error::Decrypt`].
    ///
    /// This narrows forgery: with it, sealing an envelope that opens takes the primary KEK
    /// itself, not any KEK of the keyring (for example a break-glass key file kept with the
    /// keyring only for recovery, or a key other teams may encrypt under). Envelopes that are
    /// not (yet) wrapped by the primary, such as those sealed before a rotation to it, are
    /// refused too: use it once a rotation has finished, and a plain [`Opener`] (or
    /// [`open`]) for break-glass recovery.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use envelope::{EncryptionContext, Error, Keyring, Opener, local::LocalKek};
    ///
    /// let (primary, break_glass) = (Arc::new(LocalKek::generate()?), Arc::new(LocalKek::generate()?));
    /// let keyring = Keyring::new().with(primary).with(break_glass.clone());
    /// let ctx = EncryptionContext::new().with("client-id", "cl_1")?;
    /// // Someone with only the break-glass key and write access to the store:
    /// let forged = envelope::seal(&Keyring::new().with(break_glass), &ctx, b"theirs").await?;
    /// assert!(Opener::new(&keyring).open(&ctx, &forged).await.is_ok());
    /// let strict = Opener::new(&keyring).require_primary();
    /// assert!(matches!(strict.open(&ctx, &forged).await, Err(Error::NotWrappedByPrimary { .. })));
    /// # Ok::<_, envelope::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn require_primary(mut self) -> Self {
        self.primary_only = true;
        self
    }

    /// The KEKs this opener may open with.
    fn openers(&self) -> &'k [Arc<dyn KeyEncryptionKey>] {
        let keks = self.keyring.keks();
        if self.primary_only {
            keks.get(..1).unwrap_or_default()
        } else {
            keks
        }
    }

    /// Opens an envelope sealed under `context`.
    ///
    /// # Errors
    /// As [`open`].
    pub async fn open(&self, context: &EncryptionContext, envelope: &[u8]) -> Result<Plaintext> {
        let parsed = format::parse(envelope)?;
        if !context.matches(parsed.context) {
            return Err(Error::Decrypt);
        }
        if let Some(keys) = self.recall(&parsed) {
            return open_payload(&keys, &parsed);
        }
        let (index, keys) = match unwrap_verified(self.openers(), &parsed).await {
            Err(Error::NoMatchingKek { wrapped }) if self.primary_only => {
                let primary = self
                    .openers()
                    .first()
                    .map(|k| format!("{}:{}", k.provider(), k.key_id()))
                    .unwrap_or_default();
                return Err(Error::NotWrappedByPrimary { primary, wrapped });
            }
            other => other?,
        };
        let keys = Arc::new(keys.1);
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if remembered.len() >= REMEMBERED_KEYS {
            remembered.remove(0);
        }
        if let Some(wrapped) = parsed.wrapped.get(index) {
            remembered.push(Remembered {
                wrapped: wrapped.to_wrapped_key(),
                kek_context: parsed.kek_context.bytes().to_vec(),
                keys: Arc::clone(&keys),
            });
        }
        drop(remembered);
        open_payload(&keys, &parsed)
    }

    fn recall(&self, parsed: &Parsed<'_>) -> Option<Arc<KeySchedule>> {
        let remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        remembered
            .iter()
            .filter(|r| {
                r.kek_context == parsed.kek_context.bytes()
                    && parsed.wrapped.iter().any(|w| w.is(&r.wrapped))
            })
            .find(|r| {
                r.keys
                    .verify_header_tag(parsed.tagged_header, parsed.header_tag)
            })
            .map(|r| Arc::clone(&r.keys))
    }
}

pub(crate) fn open_payload(keys: &KeySchedule, parsed: &Parsed<'_>) -> Result<Plaintext> {
    let plaintext = keys.open_payload(&parsed.nonce, parsed.fixed_header, parsed.payload)?;
    Ok(Plaintext::new(plaintext))
}

/// What [`rewrap`] does with the wrapped keys already in the envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewrapMode {
    /// Drop them: afterwards the data key is wrapped once under the key each KEK of the new
    /// keyring wraps with now, and under nothing else.
    Replace,
    /// Keep them and add a wrap under each KEK of the new keyring, skipping a KEK whose
    /// [current key](crate::KeyEncryptionKey::current_key_ref) already has an entry (one
    /// lookup per KEK per call; an entry the KEK can only *open*, such as an older version,
    /// does not count).
    Add,
}

/// Wraps the envelope's data key under the KEKs of `to`, without touching the payload: the
/// ciphertext bytes stay identical and the plaintext never leaves this function (it is
/// decrypted once, into a zeroizing buffer, to prove the envelope is intact before it is
/// rewrapped).
///
/// To tell, without any KMS call, whether an envelope needs rewrapping at all, compare its
/// header with the target's current keys: [`wrapped_only_by`](crate::wrapped_only_by).
///
/// # Errors
/// As [`open`] for the unwrap under `from`; [`Error::Kms`] when a KEK of `to` fails;
/// [`Error::Invalid`] for an empty `to` or more than 16 wrapped keys in all.
pub async fn rewrap(
    from: &Keyring,
    envelope: &[u8],
    to: &Keyring,
    mode: RewrapMode,
) -> Result<Vec<u8>> {
    if to.is_empty() {
        return Err(Error::Invalid(
            "rewrap needs at least one key-encryption key".into(),
        ));
    }
    let parsed = format::parse(envelope)?;
    let (_, (key, keys)) = unwrap_verified(from.keks(), &parsed).await?;
    drop(open_payload(&keys, &parsed)?);

    let kek_context = parsed.kek_context.to_context();
    let mut wrapped: Vec<WrappedKey> = match mode {
        RewrapMode::Replace => Vec::new(),
        RewrapMode::Add => parsed.wrapped.iter().map(|w| w.to_wrapped_key()).collect(),
    };
    // "Already there" means: under the key the KEK wraps with *now*. A wrapped key the KEK
    // merely can open (an old version, the key an alias pointed at before) does not count, or
    // the envelope would stay under a retired key.
    let current = match mode {
        RewrapMode::Add => Some(to.current_key_refs().await?),
        RewrapMode::Replace => None,
    };
    for (index, kek) in to.keks().iter().enumerate() {
        let current = current.as_ref().and_then(|refs| refs.get(index));
        if current.is_some_and(|c| wrapped.iter().any(|w| w.key_ref() == c)) {
            continue;
        }
        let fresh = kek.wrap(&key, &kek_context).await?;
        // Two KEKs of `to` that wrap with the same key (an alias and its key ARN) add one entry.
        if !wrapped.iter().any(|w| w.key_ref() == fresh.key_ref()) {
            wrapped.push(fresh);
        }
    }
    if wrapped.len() > MAX_WRAPPED_KEYS {
        return Err(Error::Invalid(format!(
            "an envelope holds at most {MAX_WRAPPED_KEYS} wrapped keys"
        )));
    }

    Ok(crate::rewrap::assemble(
        &parsed,
        &keys,
        &wrapped,
        envelope.len(),
    ))
}

/// Finds a wrapped key that one of `keks` unwraps to a data key matching the header tag, and
/// returns its index with the key. Tries every matching pair in order, so one bad or
/// unreachable entry does not stop another from opening the envelope.
pub(crate) async fn unwrap_verified(
    keks: &[Arc<dyn KeyEncryptionKey>],
    parsed: &Parsed<'_>,
) -> Result<(usize, (DataKey, KeySchedule))> {
    let mut matched = false;
    let mut backend_error: Option<KmsError> = None;
    let kek_context = parsed.kek_context.to_context();
    for (index, wrapped) in parsed.wrapped.iter().enumerate() {
        let wrapped = wrapped.to_wrapped_key();
        for kek in keks.iter().filter(|k| k.can_unwrap(wrapped.key_ref())) {
            matched = true;
            match kek.unwrap(&wrapped, &kek_context).await {
                Ok(key) => {
                    let keys = KeySchedule::derive(&key);
                    if keys.verify_header_tag(parsed.tagged_header, parsed.header_tag) {
                        return Ok((index, (key, keys)));
                    }
                }
                Err(KmsError::UnwrapFailed) => {}
                Err(other) => {
                    // Keep the most useful failure: a retryable one beats the others.
                    if backend_error.as_ref().is_none_or(|e| !e.is_retryable()) {
                        backend_error = Some(other);
                    }
                }
            }
        }
    }
    if !matched {
        return Err(Error::NoMatchingKek {
            wrapped: parsed.wrapped.iter().map(|w| w.key_ref()).collect(),
        });
    }
    Err(backend_error.map_or(Error::Decrypt, Error::Kms))
}
