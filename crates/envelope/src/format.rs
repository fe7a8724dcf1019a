//! Format v1: encoding and strict parsing. The byte-by-byte specification is
//! `docs/ciphertext-format.md`; this module is its reference implementation.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::context::{CanonicalContext, EncryptionContext, put_u16};
use crate::crypto::{GCM_TAG_LEN, HEADER_TAG_LEN, NONCE_LEN};
use crate::error::FormatError;
use crate::kek::{KeyRef, MAX_KEY_ID_LEN, MAX_PROVIDER_LEN, MAX_WRAPPED_LEN, WrappedKey};
use crate::wire::Reader;

/// The four bytes every envelope starts with: `PBEV`.
pub const MAGIC: [u8; 4] = *b"PBEV";
/// The format version this build writes.
pub const VERSION: u8 = 1;
/// Suite 1: AES-256-GCM payload, HKDF-SHA-256 key derivation, HMAC-SHA-256 header tag
/// (which commits to the data key).
pub const SUITE_AES256GCM_HKDF_SHA256: u16 = 0x0001;
/// Most wrapped data keys one envelope may carry.
pub const MAX_WRAPPED_KEYS: usize = 16;
/// Largest plaintext an envelope may hold: 16 MiB.
pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;
/// The prefix of the text form.
pub const TEXT_PREFIX: &str = "pbe1.";

/// Largest context section (the caps on entries make larger ones impossible).
const MAX_CONTEXT_SECTION: usize = u16::MAX as usize;
/// Largest binary envelope accepted: the header caps plus the payload cap, rounded up.
const MAX_ENVELOPE_LEN: usize = MAX_PLAINTEXT_LEN + 1024 * 1024;

/// A parsed envelope, borrowing every field from the input bytes: parsing allocates only the
/// list of wrapped keys.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) context: CanonicalContext<'a>,
    pub(crate) kek_context: CanonicalContext<'a>,
    pub(crate) wrapped: Vec<WrappedRef<'a>>,
    /// The fixed header: everything before the wrapped-key count. The payload's AAD.
    pub(crate) fixed_header: &'a [u8],
    /// Everything before the header tag: what the tag covers.
    pub(crate) tagged_header: &'a [u8],
    pub(crate) header_tag: &'a [u8],
    /// Ciphertext and GCM tag.
    pub(crate) payload: &'a [u8],
}

/// A wrapped data key as it stands in an envelope, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WrappedRef<'a> {
    pub(crate) provider: &'a str,
    pub(crate) key_id: &'a str,
    pub(crate) bytes: &'a [u8],
}

impl WrappedRef<'_> {
    pub(crate) fn key_ref(&self) -> KeyRef {
        KeyRef::validated(self.provider, self.key_id)
    }

    pub(crate) fn to_wrapped_key(self) -> WrappedKey {
        WrappedKey::validated(self.key_ref(), self.bytes.to_vec())
    }

    pub(crate) fn is(&self, owned: &WrappedKey) -> bool {
        self.bytes == owned.bytes()
            && self.key_id == owned.key_ref().key_id()
            && self.provider == owned.key_ref().provider()
    }
}

/// The parts of a new envelope's header.
pub(crate) struct HeaderParts<'a> {
    pub(crate) nonce: &'a [u8; NONCE_LEN],
    pub(crate) context: &'a EncryptionContext,
    pub(crate) kek_context: &'a EncryptionContext,
}

/// Writes the fixed header; returns its length.
pub(crate) fn write_fixed_header(out: &mut Vec<u8>, parts: &HeaderParts<'_>) -> usize {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&SUITE_AES256GCM_HKDF_SHA256.to_be_bytes());
    out.push(0); // flags: reserved
    out.extend_from_slice(parts.nonce);
    for ctx in [parts.context, parts.kek_context] {
        put_u16(out, ctx.encoded_len());
        ctx.encode_into(out);
    }
    out.len()
}

/// Appends the wrapped-key list.
pub(crate) fn write_wrapped_keys(out: &mut Vec<u8>, wrapped: &[WrappedKey]) {
    out.push(u8::try_from(wrapped.len()).unwrap_or(u8::MAX));
    for w in wrapped {
        let provider = w.key_ref().provider().as_bytes();
        out.push(u8::try_from(provider.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(provider);
        put_u16(out, w.key_ref().key_id().len());
        out.extend_from_slice(w.key_ref().key_id().as_bytes());
        put_u16(out, w.bytes().len());
        out.extend_from_slice(w.bytes());
    }
}

/// Appends the payload length (ciphertext plus GCM tag).
pub(crate) fn write_payload_len(out: &mut Vec<u8>, plaintext_len: usize) {
    let len = plaintext_len.saturating_add(GCM_TAG_LEN);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// An upper bound of the encoded size, for one allocation per seal.
pub(crate) fn encoded_len_hint(
    context: &EncryptionContext,
    kek_context: &EncryptionContext,
    wrapped: &[WrappedKey],
    plaintext_len: usize,
) -> usize {
    let fixed = 8 + NONCE_LEN + 4;
    let keys: usize = wrapped
        .iter()
        .map(|w| {
            5usize
                .saturating_add(w.key_ref().provider().len())
                .saturating_add(w.key_ref().key_id().len())
                .saturating_add(w.bytes().len())
        })
        .fold(1, usize::saturating_add);
    [
        fixed,
        context.encoded_len(),
        kek_context.encoded_len(),
        keys,
        HEADER_TAG_LEN + 4 + GCM_TAG_LEN,
        plaintext_len,
    ]
    .into_iter()
    .fold(0, usize::saturating_add)
}

/// Parses an envelope strictly. Never panics, whatever the bytes.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, FormatError> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(FormatError::LimitExceeded {
            field: "envelope length",
            actual: bytes.len(),
            limit: MAX_ENVELOPE_LEN,
        });
    }
    let mut r = Reader::new(bytes);
    if r.array::<4>("magic").map_err(|_| FormatError::BadMagic)? != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let suite = r.u16("suite")?;
    if suite != SUITE_AES256GCM_HKDF_SHA256 {
        return Err(FormatError::UnsupportedSuite(suite));
    }
    if r.u8("flags")? != 0 {
        return Err(FormatError::Invalid {
            field: "flags",
            reason: "reserved bits set",
        });
    }
    let nonce = r.array::<NONCE_LEN>("nonce")?;
    let context = context_section(&mut r, "context")?;
    let kek_context = context_section(&mut r, "KEK context")?;
    if !kek_context.is_subset_of(context) {
        return Err(FormatError::Invalid {
            field: "KEK context",
            reason: "not a subset of the context",
        });
    }
    let fixed_end = consumed(bytes, &r);

    let count = usize::from(r.u8("wrapped key count")?);
    if count == 0 {
        return Err(FormatError::Invalid {
            field: "wrapped key count",
            reason: "zero",
        });
    }
    if count > MAX_WRAPPED_KEYS {
        return Err(FormatError::LimitExceeded {
            field: "wrapped key count",
            actual: count,
            limit: MAX_WRAPPED_KEYS,
        });
    }
    let mut wrapped = Vec::with_capacity(count);
    for _ in 0..count {
        let provider_len = usize::from(r.u8("provider")?);
        if provider_len > MAX_PROVIDER_LEN {
            return Err(FormatError::LimitExceeded {
                field: "provider",
                actual: provider_len,
                limit: MAX_PROVIDER_LEN,
            });
        }
        let provider = std::str::from_utf8(r.take(provider_len, "provider")?).map_err(|_| {
            FormatError::Invalid {
                field: "provider",
                reason: "not UTF-8",
            }
        })?;
        let key_id = r.str_u16("key id", MAX_KEY_ID_LEN)?;
        let bytes = r.bytes_u16("wrapped key", MAX_WRAPPED_LEN)?;
        KeyRef::check(provider, key_id)?;
        WrappedKey::check(bytes)?;
        wrapped.push(WrappedRef {
            provider,
            key_id,
            bytes,
        });
    }
    let tag_start = consumed(bytes, &r);
    let header_tag = r.take(HEADER_TAG_LEN, "header tag")?;

    let payload_len = usize::try_from(r.u32("payload length")?).unwrap_or(usize::MAX);
    let max_payload = MAX_PLAINTEXT_LEN + GCM_TAG_LEN;
    if payload_len > max_payload {
        return Err(FormatError::LimitExceeded {
            field: "payload length",
            actual: payload_len,
            limit: max_payload,
        });
    }
    if payload_len < GCM_TAG_LEN {
        return Err(FormatError::Invalid {
            field: "payload length",
            reason: "shorter than the GCM tag",
        });
    }
    let payload = r.take(payload_len, "payload")?;
    r.finish()?;

    Ok(Parsed {
        nonce,
        context,
        kek_context,
        wrapped,
        fixed_header: bytes.get(..fixed_end).unwrap_or_default(),
        tagged_header: bytes.get(..tag_start).unwrap_or_default(),
        header_tag,
        payload,
    })
}

fn context_section<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
) -> Result<CanonicalContext<'a>, FormatError> {
    CanonicalContext::parse(r.bytes_u16(field, MAX_CONTEXT_SECTION)?)
}

fn consumed(all: &[u8], r: &Reader<'_>) -> usize {
    all.len().saturating_sub(r.remaining())
}

/// The text form of an envelope, for string fields such as Portal's `clientCipherText`:
/// `pbe1.` followed by unpadded base64url of the binary envelope.
///
/// ```
/// let text = envelope::to_text(b"PBEV...");
/// assert!(text.starts_with("pbe1."));
/// assert_eq!(envelope::from_text(&text)?, b"PBEV...");
/// # Ok::<_, envelope::FormatError>(())
/// ```
#[must_use]
pub fn to_text(envelope: &[u8]) -> String {
    let mut out = String::with_capacity(
        envelope
            .len()
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(TEXT_PREFIX.len()),
    );
    out.push_str(TEXT_PREFIX);
    URL_SAFE_NO_PAD.encode_string(envelope, &mut out);
    out
}

/// Decodes the text form. Only canonical base64url without padding is accepted, so every
/// envelope has exactly one text form.
///
/// # Errors
/// [`FormatError::Text`] for a missing prefix or bad base64; [`FormatError::LimitExceeded`]
/// for text longer than any valid envelope.
pub fn from_text(text: &str) -> Result<Vec<u8>, FormatError> {
    let body = text
        .strip_prefix(TEXT_PREFIX)
        .ok_or(FormatError::Text("missing the pbe1. prefix"))?;
    let limit = MAX_ENVELOPE_LEN.div_ceil(3).saturating_mul(4);
    if body.len() > limit {
        return Err(FormatError::LimitExceeded {
            field: "text length",
            actual: body.len(),
            limit,
        });
    }
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| FormatError::Text("not canonical unpadded base64url"))
}
