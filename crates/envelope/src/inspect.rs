//! Header facts of an envelope, without any key.

use std::collections::BTreeSet;

use crate::context::EncryptionContext;
use crate::error::FormatError;
use crate::format;
use crate::kek::KeyRef;

/// What an envelope's header says. Holds no secret; nothing here is authenticated until the
/// envelope is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeInfo {
    /// Format version.
    pub version: u8,
    /// Algorithm suite.
    pub suite: u16,
    /// The payload's AES-GCM nonce, hex.
    pub nonce: String,
    /// The context the envelope is bound to.
    pub context: EncryptionContext,
    /// The part of the context that the KEKs saw.
    pub kek_context: EncryptionContext,
    /// The keys that wrapped the data key, in order.
    pub wrapped_keys: Vec<KeyRef>,
    /// Length of the encrypted payload, without the GCM tag.
    pub plaintext_len: usize,
}

impl EnvelopeInfo {
    /// Whether the data key is wrapped exactly once under each of the `current` key references
    /// and under nothing else (duplicates in `current` count once). With the references of
    /// [`Keyring::current_key_refs`](crate::Keyring::current_key_refs), this says from the
    /// header alone, without any KMS call, whether an envelope is already under a keyring's
    /// current keys: rotation skips it when true, and counts it as not yet rotated when false.
    ///
    /// The header is not authenticated until the envelope is opened: this is a bookkeeping
    /// fact, not a proof of who sealed the envelope.
    #[must_use]
    pub fn is_wrapped_only_by(&self, current: &[KeyRef]) -> bool {
        let wanted: BTreeSet<&KeyRef> = current.iter().collect();
        let recorded: BTreeSet<&KeyRef> = self.wrapped_keys.iter().collect();
        self.wrapped_keys.len() == wanted.len() && recorded == wanted
    }

    /// The recorded key references that are not among `current`: the wrapped keys a rotation
    /// to a keyring with these current keys still has to remove. Empty when every wrapped key
    /// is current (a current key may still be missing; see
    /// [`is_wrapped_only_by`](Self::is_wrapped_only_by)).
    #[must_use]
    pub fn wrapped_keys_not_in<'a>(&'a self, current: &[KeyRef]) -> Vec<&'a KeyRef> {
        self.wrapped_keys
            .iter()
            .filter(|r| !current.contains(r))
            .collect()
    }
}

/// Whether an envelope's data key is wrapped exactly once under each of the `current` key
/// references and under nothing else, read from its header alone (no key, no KMS call).
/// Shorthand for [`inspect`] then [`EnvelopeInfo::is_wrapped_only_by`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use envelope::{EncryptionContext, Keyring, RewrapMode, local::LocalKek};
///
/// let (old, new) = (LocalKek::generate()?, LocalKek::generate()?);
/// let old = Keyring::new().with(Arc::new(old));
/// let new = Keyring::new().with(Arc::new(new));
/// let ctx = EncryptionContext::new().with("client-id", "cl_1")?;
/// let sealed = envelope::seal(&old, &ctx, b"share").await?;
///
/// let current = new.current_key_refs().await?;
/// assert!(!envelope::wrapped_only_by(&sealed, &current)?);
/// let rotated = envelope::rewrap(&old, &sealed, &new, RewrapMode::Replace).await?;
/// assert!(envelope::wrapped_only_by(&rotated, &current)?);
/// # Ok::<_, envelope::Error>(()) }).unwrap();
/// ```
///
/// # Errors
/// [`FormatError`] for bytes that are not a well-formed v1 envelope.
pub fn wrapped_only_by(envelope: &[u8], current: &[KeyRef]) -> Result<bool, FormatError> {
    Ok(inspect(envelope)?.is_wrapped_only_by(current))
}

/// Parses an envelope's header and reports what it says, without any key.
///
/// # Errors
/// [`FormatError`] for bytes that are not a well-formed v1 envelope.
pub fn inspect(envelope: &[u8]) -> Result<EnvelopeInfo, FormatError> {
    let parsed = format::parse(envelope)?;
    Ok(EnvelopeInfo {
        version: format::VERSION,
        suite: format::SUITE_AES256GCM_HKDF_SHA256,
        nonce: hex::encode(parsed.nonce),
        context: parsed.context.to_context(),
        kek_context: parsed.kek_context.to_context(),
        wrapped_keys: parsed.wrapped.iter().map(|w| w.key_ref()).collect(),
        plaintext_len: parsed
            .payload
            .len()
            .saturating_sub(crate::crypto::GCM_TAG_LEN),
    })
}
