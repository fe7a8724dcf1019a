//! The crate's error type.

use std::path::PathBuf;

/// Everything this crate can report. `Display` says what failed at this layer; causes travel
/// in [`source()`](std::error::Error::source). No variant ever holds a share or a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server configuration was rejected.
    #[error("invalid webhook configuration: {reason}")]
    InvalidConfig {
        /// Why.
        reason: String,
    },
    /// A webhook secret set was rejected (the message never contains a secret).
    #[error("invalid webhook secret: {reason}")]
    InvalidSecret {
        /// Why.
        reason: &'static str,
    },
    /// The secret file could not be read.
    #[error("failed to read the webhook secret file {path:?}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The secret file can be read or written by its group or others.
    #[error(
        "the webhook secret file {path:?} has mode {mode:o}; it must not be accessible to group or others (chmod 600)"
    )]
    SecretFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("invalid TLS configuration: {reason}")]
    Tls {
        /// What was wrong.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// A client id or backup method cannot name a stored object (see
    /// [`storage::BackupKey`]'s rules).
    #[error("invalid {field}")]
    InvalidId {
        /// `clientId` or `backupMethod`.
        field: &'static str,
        /// Why.
        #[source]
        source: Box<storage::StorageError>,
    },
    /// The store cannot list, and the backup method is not one the server probes when
    /// fetching, so a share stored under it could never be fetched back.
    #[error("backup method cannot be fetched back from a store that cannot list")]
    UnfetchableMethod,
    /// Sealing a share failed.
    #[error("failed to encrypt the custodian share")]
    Seal(#[source] envelope::Error),
    /// Opening a stored share failed because of the KMS (not because the ciphertext is bad).
    #[error("failed to decrypt a custodian share")]
    Open(#[source] envelope::Error),
    /// The store failed.
    #[error("{operation} failed in the {store} store")]
    Store {
        /// `put`, `get`, `list`, `delete`.
        operation: &'static str,
        /// The store's name.
        store: &'static str,
        /// The store's error (boxed: it is large).
        #[source]
        source: Box<storage::StorageError>,
    },
    /// Another share of this client and backup method was stored while this request was
    /// under way (after it arrived): this one changed nothing, so the share stored meanwhile
    /// stays. Retryable: sending the request again stores its share over the one stored now.
    #[error(
        "another share of this client and backup method was stored while this one was under \
         way; this one was not stored"
    )]
    Superseded {
        /// The store's name.
        store: &'static str,
    },
    /// The listener or a socket failed.
    #[error("webhook server I/O error")]
    Io(#[source] std::io::Error),
}

impl Error {
    /// Whether retrying later may succeed (a store or KMS that is unavailable or throttled).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store { source, .. } => source.is_retryable(),
            Self::Seal(e) | Self::Open(e) => e.is_retryable(),
            // A new request reads the share stored now and replaces it.
            Self::Superseded { .. } => true,
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
