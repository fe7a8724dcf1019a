//! The flow's error type: which step failed, with the cause chain in `source()`.

use storage::StorageError;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and at which step. `Display` names the step; the cause (Portal's error
/// with its `id`, the store's, the envelope's) is in [`source`](std::error::Error::source).
/// Never carries a share, a key or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Portal call failed (after the retries `portal-api` allows).
    #[error("Portal call `{method} {route}` failed")]
    Portal {
        /// The HTTP method, e.g. `POST`.
        method: &'static str,
        /// The route template, one of [`portal_api::paths`], e.g. `/v1/backup`.
        route: &'static str,
        /// Portal's error, with its status and error id.
        #[source]
        source: Box<portal_api::Error>,
    },
    /// Sealing, opening or rewrapping failed.
    #[error("{operation} failed")]
    Envelope {
        /// What was being done, e.g. `sealing the backup shares`.
        operation: &'static str,
        /// The envelope error (cryptographic failures are opaque on purpose).
        #[source]
        source: envelope::Error,
    },
    /// The ciphertext store failed.
    #[error("store {operation} of {key} failed")]
    Store {
        /// `put`, `get`, `list`, …
        operation: &'static str,
        /// The object's path form.
        key: String,
        /// The store's error.
        #[source]
        source: Box<StorageError>,
    },
    /// A different ciphertext is already stored where this backup's ciphertext goes; it is
    /// left untouched.
    #[error("a different ciphertext is already stored under {key}; refusing to overwrite it")]
    Conflict {
        /// The object's path form.
        key: String,
    },
    /// The restore drill found that a stored ciphertext does not give back the share.
    #[error("restore drill failed for {key}: {reason}")]
    Drill {
        /// The object's path form.
        key: String,
        /// What did not match.
        reason: &'static str,
    },
    /// A stored ciphertext does not open under the identity it is stored for: swapped with
    /// another share, another client's, tampered, or sealed under keys this keyring lacks.
    #[error("the ciphertext stored under {key} does not open as that share")]
    WrongIdentity {
        /// The object's path form.
        key: String,
        /// Why it did not open.
        #[source]
        source: envelope::Error,
    },
    /// Portal's answer lacks something the flow needs.
    #[error("unexpected Portal state: {0}")]
    Unexpected(String),
    /// The journal in the state directory could not be read or written.
    #[error("journal {path}")]
    Journal {
        /// The journal file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An input (a generate response, a bulk line, an option) is not usable.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Eject: the two backup shares of a wallet did not rebuild a key verified against its
    /// public key (or were not in Portal's format). No key was returned.
    #[error("eject of the {curve} wallet (backup share pair {pair_id}) refused")]
    Eject {
        /// The wallet's curve.
        curve: String,
        /// The backup share pair opened.
        pair_id: String,
        /// Why (`portal-backup-eject`'s error; never a share or key value).
        #[source]
        source: eject::Error,
    },
    /// Eject: the custodian share Portal handed out belongs to another pair than the one
    /// being opened.
    #[error(
        "the custodian backup share of the {curve} wallet belongs to backup share pair {custodian}, but pair {opened} is being opened"
    )]
    PairMismatch {
        /// The wallet's curve.
        curve: String,
        /// The pair being opened.
        opened: String,
        /// The pair the custodian share names (`none` when it names none).
        custodian: String,
    },
    /// Offline eject: no custodian share has a client half in the store.
    #[error(
        "offline eject of client {client_id}: no custodian backup share in the webhook's store has a client half in this store{}",
        if pairs.is_empty() { String::new() } else { format!(" (custodian shares of pairs {} have no stored client ciphertext: those backups' client halves were never stored)", pairs.join(", ")) }
    )]
    NoClientHalf {
        /// The client.
        client_id: String,
        /// The pairs of the custodian shares found.
        pairs: Vec<String>,
    },
}

impl Error {
    /// Whether re-running the same operation later may succeed: Portal or the KMS was down or
    /// throttling, or the store had a transport failure. The journal makes re-running safe.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Portal { source, .. } => source.is_retryable(),
            Self::Envelope { source, .. } => source.is_retryable(),
            Self::Store { source, .. } => source.is_retryable(),
            Self::Journal { .. } => true,
            _ => false,
        }
    }

    /// Portal's error id, when Portal refused.
    #[must_use]
    pub fn portal_error_id(&self) -> Option<&str> {
        match self {
            Self::Portal { source, .. } => source.error_id(),
            _ => None,
        }
    }

    /// A failed call of `method` on `route` (a [`portal_api::paths`] template).
    pub(crate) fn portal(
        method: &'static str,
        route: &'static str,
    ) -> impl FnOnce(portal_api::Error) -> Self {
        move |source| Self::Portal {
            method,
            route,
            source: Box::new(source),
        }
    }

    pub(crate) fn envelope(operation: &'static str) -> impl FnOnce(envelope::Error) -> Self {
        move |source| Self::Envelope { operation, source }
    }

    pub(crate) fn store<'k>(
        operation: &'static str,
        key: &'k storage::BackupKey,
    ) -> impl FnOnce(StorageError) -> Self + 'k {
        move |source| Self::Store {
            operation,
            key: key.to_string(),
            source: Box::new(source),
        }
    }

    /// Listing the store's clients failed (an item of a streamed listing).
    pub(crate) fn client_listing(source: StorageError) -> Self {
        Self::Store {
            operation: "list clients",
            key: "the store".to_owned(),
            source: Box::new(source),
        }
    }

    /// A store's batch call answered fewer items than it was given (a store bug): the item
    /// left without an answer.
    pub(crate) fn unanswered_put(store: &str) -> Self {
        Self::Invalid(format!(
            "the {store} store answered fewer puts than it was given"
        ))
    }

    /// Listing a client's objects failed.
    pub(crate) fn store_listing(client_id: &str, source: StorageError) -> Self {
        Self::Store {
            operation: "list",
            key: client_id.to_owned(),
            source: Box::new(source),
        }
    }
}

/// `error: cause: cause …`, the whole `source()` chain on one line ([`storage::Report`]).
pub(crate) fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    storage::Report(error).to_string()
}
