//! Repair: copying what some replicas lack from those that hold it, never overwriting.

use bytes::Bytes;
use futures_util::future::join_all;

use super::ReplicatedStore;
use super::error::ReplicaId;
use super::put::{Outcome, write_new};
use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::BackupStore;

/// What [`ReplicatedStore::repair`] and [`ReplicatedStore::repair_client`] did. Counts are
/// of (key, replica) pairs.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RepairReport {
    /// Keys examined.
    pub keys: usize,
    /// Copies made to replicas that lacked a key.
    pub copied: usize,
    /// Replicas that already held the key with the body the others hold.
    pub already_present: usize,
    /// Replicas that cannot keep the key at all ([`StorageError::NotSupported`], for example
    /// Portal and a custodian share).
    pub not_supported: usize,
    /// Keys whose replicas hold different bodies: nothing was copied for them, nothing was
    /// overwritten. Someone must decide which body is right.
    pub conflicts: Vec<Conflict>,
    /// Replicas that failed to answer or to take a copy (for a key, or for the listing of
    /// [`repair_client`](ReplicatedStore::repair_client) when `key` is `None`).
    pub failures: Vec<RepairFailure>,
}

impl RepairReport {
    /// Whether there was neither a conflict nor a failure.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.conflicts.is_empty() && self.failures.is_empty()
    }

    fn add(&mut self, other: Self) {
        self.keys = self.keys.saturating_add(other.keys);
        self.copied = self.copied.saturating_add(other.copied);
        self.already_present = self.already_present.saturating_add(other.already_present);
        self.not_supported = self.not_supported.saturating_add(other.not_supported);
        self.conflicts.extend(other.conflicts);
        self.failures.extend(other.failures);
    }
}

/// A key whose replicas hold different bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conflict {
    /// The key.
    pub key: BackupKey,
    /// The different bodies found: which replicas hold each, and its length.
    pub versions: Vec<Version>,
}

/// One of the bodies of a [`Conflict`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Version {
    /// The replicas holding this body.
    pub replicas: Vec<ReplicaId>,
    /// Its length in bytes.
    pub len: usize,
}

/// A replica's failure during a repair.
#[derive(Debug)]
#[non_exhaustive]
pub struct RepairFailure {
    /// The replica.
    pub replica: ReplicaId,
    /// The key, or `None` for the listing of a client.
    pub key: Option<BackupKey>,
    /// Its error.
    pub error: StorageError,
}

impl ReplicatedStore {
    /// Copies `key` to every replica that lacks it, from the replicas that hold it, when they
    /// all hold the same body. Never overwrites: copies are create-only where the replica can
    /// (otherwise written only after a read found nothing there), and when replicas hold
    /// different bodies the key is reported in [`RepairReport::conflicts`] and nothing is
    /// copied. A replica that fails to answer is reported and not written.
    pub async fn repair(&self, key: &BackupKey) -> RepairReport {
        let mut report = RepairReport {
            keys: 1,
            ..RepairReport::default()
        };
        let reads = join_all(self.replicas.iter().map(|r| r.get(key))).await;
        let mut versions: Vec<(Bytes, Vec<ReplicaId>)> = Vec::new();
        let mut missing = Vec::new();
        for ((id, replica), read) in self.ids().zip(reads) {
            match read {
                Ok(body) => match versions.iter_mut().find(|(b, _)| *b == body) {
                    Some((_, holders)) => holders.push(id),
                    None => versions.push((body, vec![id])),
                },
                Err(StorageError::NotFound { .. }) => missing.push((id, replica)),
                Err(StorageError::NotSupported { .. }) => {
                    report.not_supported = report.not_supported.saturating_add(1);
                }
                Err(error) => report.failures.push(RepairFailure {
                    replica: id,
                    key: Some(key.clone()),
                    error,
                }),
            }
        }
        let body = match versions.as_slice() {
            [] => return report,
            [(body, holders)] => {
                report.already_present = holders.len();
                body.clone()
            }
            _ => {
                report.conflicts.push(conflict(key, &versions));
                return report;
            }
        };
        let copies = missing
            .iter()
            .map(|(_, replica)| write_new(replica.as_ref(), key, &body));
        let copied = join_all(copies).await;
        for ((id, _), outcome) in missing.into_iter().zip(copied) {
            match outcome {
                Outcome::Stored => report.copied = report.copied.saturating_add(1),
                Outcome::Held => {
                    report.already_present = report.already_present.saturating_add(1);
                }
                Outcome::Conflict(len) => {
                    // Written by someone else since the read: report it, leave it.
                    let mut c = conflict(key, &versions);
                    c.versions.push(Version {
                        replicas: vec![id],
                        len,
                    });
                    report.conflicts.push(c);
                }
                Outcome::Failed(StorageError::NotSupported { .. }) => {
                    report.not_supported = report.not_supported.saturating_add(1);
                }
                Outcome::Failed(error) | Outcome::Unreadable(error) => {
                    report.failures.push(RepairFailure {
                        replica: id,
                        key: Some(key.clone()),
                        error,
                    });
                }
                Outcome::Pending => {}
            }
        }
        report
    }

    /// [`repair`](Self::repair) of every key of `client_id` that a replica able to
    /// [`list`](crate::Capabilities::list) holds. Objects only on replicas that cannot list (Portal)
    /// are not found this way: repair those with [`repair`](Self::repair) and their keys.
    /// A replica whose listing fails is reported in [`RepairReport::failures`] and the
    /// others' keys are still repaired.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] for a malformed client id; [`StorageError::NotSupported`]
    /// when no replica can list.
    pub async fn repair_client(&self, client_id: &str) -> Result<RepairReport, StorageError> {
        BackupKey::check_client_id(client_id)?;
        let (keys, failures) = self.union_of_lists(client_id).await?;
        let mut report = RepairReport::default();
        report
            .failures
            .extend(failures.into_iter().map(|f| RepairFailure {
                replica: f.replica,
                key: None,
                error: f.error,
            }));
        for key in keys.values() {
            report.add(self.repair(key).await);
        }
        Ok(report)
    }

    /// [`repair_client`](Self::repair_client) of every client that
    /// [`list_clients`](BackupStore::list_clients) finds.
    ///
    /// # Errors
    /// As [`BackupStore::list_clients`] of this store.
    pub async fn repair_all(&self) -> Result<RepairReport, StorageError> {
        let mut report = RepairReport::default();
        for client in self.list_clients().await? {
            report.add(self.repair_client(&client).await?);
        }
        Ok(report)
    }
}

fn conflict(key: &BackupKey, versions: &[(Bytes, Vec<ReplicaId>)]) -> Conflict {
    Conflict {
        key: key.clone(),
        versions: versions
            .iter()
            .map(|(body, replicas)| Version {
                replicas: replicas.clone(),
                len: body.len(),
            })
            .collect(),
    }
}
