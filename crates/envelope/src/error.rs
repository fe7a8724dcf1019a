//! The crate's error types.

use std::fmt;

/// A boxed error from a KMS client or other backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while sealing, opening, rewrapping or inspecting an envelope.
///
/// Cryptographic failures are deliberately opaque: a wrong key, a wrong context and a flipped
/// bit all read as [`Error::Decrypt`], so that an attacker learns nothing from which one it was.
/// Only the structure of the bytes ([`FormatError`]) and the KMS ([`KmsError`]) are specific.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed envelope of a version and suite this build knows.
    #[error("malformed envelope")]
    Format(#[from] FormatError),
    /// A key-encryption key failed.
    #[error("key-encryption key failed")]
    Kms(#[from] KmsError),
    /// The envelope did not open: wrong key, wrong context or tampered bytes.
    #[error("envelope could not be opened (wrong key, wrong context or tampered data)")]
    Decrypt,
    /// No key-encryption key in the keyring can unwrap any of the envelope's data keys.
    #[error("no key-encryption key in the keyring matches the envelope's wrapped keys {wrapped:?}")]
    NoMatchingKek {
        /// The key references recorded in the envelope.
        wrapped: Vec<crate::KeyRef>,
    },
    /// An [`Opener`](crate::Opener) that [requires the primary
    /// KEK](crate::Opener::require_primary) met an envelope with no wrapped key for it: sealed
    /// before a rotation to the primary, or by someone holding only another KEK of the keyring.
    #[error(
        "the envelope is not wrapped by the primary key-encryption key {primary} (it has {wrapped:?}); it was sealed before a rotation, or forged"
    )]
    NotWrappedByPrimary {
        /// The primary KEK, as `provider:key id`.
        primary: String,
        /// The key references recorded in the envelope.
        wrapped: Vec<crate::KeyRef>,
    },
    /// An encryption context, key reference or argument breaks a documented rule.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The operating system could not supply randomness.
    #[error("operating system random number generator failed")]
    Random(#[source] BoxError),
}

/// Why bytes are not a well-formed envelope. Says where, never what secret was there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes do not start with the envelope magic.
    #[error("not an envelope (bad magic)")]
    BadMagic,
    /// The envelope has a version this build does not know.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The envelope names an algorithm suite this build does not know.
    #[error("unsupported algorithm suite {0:#06x}")]
    UnsupportedSuite(u16),
    /// The bytes end before the field does.
    #[error("envelope truncated in {0}")]
    Truncated(&'static str),
    /// Bytes follow the end of the envelope.
    #[error("{0} unexpected bytes after the envelope")]
    TrailingBytes(usize),
    /// A length or count is beyond the format's caps.
    #[error("{field} is {actual}, over the limit of {limit}")]
    LimitExceeded {
        /// The field.
        field: &'static str,
        /// Its length or count.
        actual: usize,
        /// The cap.
        limit: usize,
    },
    /// A field's value breaks a rule of the format.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The text form is not `pbe1.` followed by canonical unpadded base64url.
    #[error("invalid text form: {0}")]
    Text(&'static str),
}

/// What a [`KeyEncryptionKey`](crate::KeyEncryptionKey) backend reports.
///
/// Integrators writing their own backend construct these variants directly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The key does not exist (or is disabled or scheduled for deletion).
    #[error("KMS key {key:?} not found or not usable")]
    KeyNotFound {
        /// The key as configured or recorded.
        key: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The caller may not use the key.
    #[error("access to KMS key {key:?} denied")]
    PermissionDenied {
        /// The key as configured or recorded.
        key: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The KMS could not be reached, timed out or throttled: worth retrying.
    #[error("KMS unavailable or throttled")]
    Unavailable {
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The envelope names a key this KEK is configured never to use (for example, for an AWS
    /// alias, a key of another account or region that was not listed to open as well). Refused
    /// before any call to the KMS: the key reference comes from the unauthenticated header.
    #[error("KMS key {key:?} is not one this key-encryption key may open: {allowed}")]
    KeyNotAllowed {
        /// The key the envelope names.
        key: String,
        /// What the KEK may open instead.
        allowed: String,
    },
    /// The wrapped key did not unwrap: wrong key, wrong context or tampered bytes. Opaque on
    /// purpose.
    #[error("wrapped data key could not be unwrapped")]
    UnwrapFailed,
    /// Any other backend failure.
    #[error("{backend} KMS error")]
    Backend {
        /// The backend's provider name.
        backend: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl KmsError {
    /// Whether the same call may succeed if retried later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl Error {
    /// Whether the same call may succeed if retried later (a KMS outage or throttling).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Kms(kms) if kms.is_retryable())
    }
}

/// Prints an error with its whole chain of causes, `: `-separated, for logs and CLIs.
#[derive(Debug)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
