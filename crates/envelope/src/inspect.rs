//! Header facts of an envelope, without any key.

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
