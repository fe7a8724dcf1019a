//! The crate's error type.

use std::fmt;

use crate::key::BackupKey;

/// A boxed error from a storage client or the operating system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result with this crate's [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything a [`BackupStore`](crate::BackupStore) can report.
///
/// Integrators writing their own store construct these variants directly. `Display` says what
/// failed at this layer only; the cause travels in [`source()`](std::error::Error::source)
/// (print the whole chain with [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Nothing is stored under the key.
    #[error("no object stored under {key}")]
    NotFound {
        /// The key.
        key: BackupKey,
    },
    /// A create-only put ([`PutMode::Create`](crate::PutMode::Create)) found an object already
    /// stored under the key, and left it as it was.
    #[error("an object is already stored under {key}")]
    AlreadyExists {
        /// The key.
        key: BackupKey,
    },
    /// A compare-and-swap put ([`PutMode::Update`](crate::PutMode::Update)) found that the
    /// object under the key is no longer the version it was given (replaced or deleted
    /// since that version was read), and changed nothing. Retrying the same put cannot
    /// succeed: read the object again and decide anew.
    #[error("the object stored under {key} changed since its version was read")]
    Conflict {
        /// The key.
        key: BackupKey,
    },
    /// The store cannot do this operation at all (see
    /// [`Capabilities`](crate::Capabilities)); retrying will not help.
    #[error("the {backend} store does not support {operation}")]
    NotSupported {
        /// The operation: `"put (create only)"`, `"put (overwrite)"`, `"delete"`, `"list"`, …
        operation: &'static str,
        /// The store's name, as in [`BackupStore::name`](crate::BackupStore::name).
        backend: &'static str,
    },
    /// The store could not be reached, timed out or throttled: the same call may succeed if
    /// retried later. A write that failed this way may or may not have been applied.
    #[error("the {backend} store is unavailable or throttled")]
    Unavailable {
        /// The store's name.
        backend: &'static str,
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// A key, or one of its parts, breaks the rules of [`BackupKey`].
    #[error("invalid backup key: {part} {reason}")]
    InvalidKey {
        /// The part: `"client id"`, `"share pair id"`, `"curve"`, `"backup method"`,
        /// `"share kind"` or `"path"`.
        part: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Any other failure of the store: permissions, a full disk, a malformed response.
    #[error("{backend} store error")]
    Backend {
        /// The store's name.
        backend: &'static str,
        /// The store's error.
        #[source]
        source: BoxError,
    },
}

impl StorageError {
    /// Whether the same call may succeed if retried later (a transport failure or
    /// throttling: [`StorageError::Unavailable`]).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Whether this is [`StorageError::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether this is [`StorageError::AlreadyExists`].
    #[must_use]
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// Whether this is [`StorageError::Conflict`]: a compare-and-swap put lost to another
    /// write.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether this is [`StorageError::NotSupported`].
    #[must_use]
    pub fn is_not_supported(&self) -> bool {
        matches!(self, Self::NotSupported { .. })
    }
}

/// Prints an error with its whole chain of causes, `: `-separated, for logs and CLIs.
///
/// ```
/// use storage::{Report, StorageError};
/// let e = StorageError::Backend { backend: "fs", source: "disk full".into() };
/// assert_eq!(Report(&e).to_string(), "fs store error: disk full");
/// ```
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
        assert!(
            StorageError::Unavailable {
                backend: "x",
                source: "timeout".into()
            }
            .is_retryable()
        );
        for e in [
            StorageError::NotFound { key: key.clone() },
            StorageError::AlreadyExists { key: key.clone() },
            StorageError::Conflict { key },
            StorageError::NotSupported {
                operation: "delete",
                backend: "portal",
            },
            StorageError::Backend {
                backend: "x",
                source: "boom".into(),
            },
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn display_names_the_layer_and_report_the_chain() {
        let e = StorageError::NotSupported {
            operation: "list",
            backend: "portal",
        };
        assert_eq!(e.to_string(), "the portal store does not support list");
        let io = std::io::Error::other("permission denied");
        let e = StorageError::Backend {
            backend: "fs",
            source: Box::new(io),
        };
        assert_eq!(e.to_string(), "fs store error");
        assert_eq!(Report(&e).to_string(), "fs store error: permission denied");
    }
}
