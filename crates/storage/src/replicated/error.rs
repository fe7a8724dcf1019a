//! What goes wrong across replicas: [`ReplicationError`] and its parts.

use std::fmt;

use super::NAME;
use crate::error::{Report, StorageError};

/// Which replica: its position in the builder's order and its store's
/// [`name`](crate::BackupStore::name). Displays as `replica 1 (s3)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct ReplicaId {
    /// Position, from 0, in the order the replicas were given to the builder.
    pub index: usize,
    /// The replica store's name.
    pub name: &'static str,
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replica {} ({})", self.index, self.name)
    }
}

/// A configuration that [`ReplicatedStoreBuilder::build`](super::ReplicatedStoreBuilder::build) refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No replica was given.
    #[error("a replicated store needs at least one replica")]
    NoReplicas,
    /// The write quorum is 0 or more than the number of replicas.
    #[error("write quorum {quorum} is outside 1..={replicas} (the number of replicas)")]
    QuorumOutOfRange {
        /// The quorum asked for.
        quorum: usize,
        /// How many replicas there are.
        replicas: usize,
    },
}

/// One replica's error in a [`ReplicationError`] or a [`RepairReport`](super::RepairReport)(super::RepairReport).
#[derive(Debug)]
#[non_exhaustive]
pub struct ReplicaFailure {
    /// The replica.
    pub replica: ReplicaId,
    /// Its error.
    pub error: StorageError,
}

/// Why an operation of a [`ReplicatedStore`](super::ReplicatedStore) failed across its replicas: which replicas
/// failed and how, and which hold conflicting content.
///
/// It reaches the caller inside [`StorageError::Unavailable`] (when every failure was
/// retryable and there is no conflict) or [`StorageError::Backend`]; get it back with
/// [`ReplicationError::of`]. Its `Display` lists every replica's error with its causes,
/// since there are several; it has no single [`source`](std::error::Error::source).
#[derive(Debug)]
#[non_exhaustive]
pub struct ReplicationError {
    /// The operation: `"put (create only)"`, `"put (overwrite)"`, `"get"`, `"delete"`,
    /// `"list"`.
    pub operation: &'static str,
    /// What it was applied to: a key's path form, or `client <id>` for a list.
    pub target: String,
    /// How many replicas succeeded (for a put: hold the body afterwards).
    pub succeeded: usize,
    /// How many had to (for a put: the write quorum).
    pub required: usize,
    /// The replicas that failed, in order.
    pub failures: Vec<ReplicaFailure>,
    /// The replicas found holding a different body under the key, which were left as they
    /// were.
    pub conflicts: Vec<ReplicaId>,
    /// Why the operation stopped early, if it did.
    pub note: Option<&'static str>,
}

impl ReplicationError {
    /// Whether repeating the operation may succeed: no conflict, and every failure retryable.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.conflicts.is_empty() && self.failures.iter().all(|f| f.error.is_retryable())
    }

    /// The [`ReplicationError`] inside a [`StorageError`] returned by a [`ReplicatedStore`](super::ReplicatedStore),
    /// if it is one.
    ///
    /// ```
    /// use storage::StorageError;
    /// use storage::replicated::ReplicationError;
    /// let e = StorageError::Backend { backend: "fs", source: "disk full".into() };
    /// assert!(ReplicationError::of(&e).is_none());
    /// ```
    #[must_use]
    pub fn of(error: &StorageError) -> Option<&Self> {
        match error {
            StorageError::Unavailable { backend, source }
            | StorageError::Backend { backend, source }
                if *backend == NAME =>
            {
                source.downcast_ref()
            }
            _ => None,
        }
    }

    pub(super) fn into_storage_error(self) -> StorageError {
        if self.is_retryable() {
            StorageError::Unavailable {
                backend: NAME,
                source: Box::new(self),
            }
        } else {
            StorageError::Backend {
                backend: NAME,
                source: Box::new(self),
            }
        }
    }
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {}: {} of the {} replicas required succeeded",
            self.operation, self.target, self.succeeded, self.required
        )?;
        if let Some(note) = self.note {
            write!(f, " ({note})")?;
        }
        for failure in &self.failures {
            write!(
                f,
                "; {} failed: {}",
                failure.replica,
                Report(&failure.error)
            )?;
        }
        for replica in &self.conflicts {
            write!(f, "; {replica} holds a different body, left as it is")?;
        }
        Ok(())
    }
}

impl std::error::Error for ReplicationError {}
