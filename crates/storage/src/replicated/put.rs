//! Puts across replicas: create-only in three steps, and overwrite.

use bytes::Bytes;
use futures_util::future::join_all;

use super::ReplicatedStore;
use super::error::{ReplicaFailure, ReplicationError};
use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{BackupStore, PutMode, PutOptions};

/// What a replica holds under a key, compared with a body.
pub(super) enum Probe {
    Missing,
    Same,
    Different,
    Failed(StorageError),
}

/// Where a replica stands in a put.
pub(super) enum Outcome {
    /// Not written yet.
    Pending,
    /// This put stored the body there.
    Stored,
    /// It already held the same body.
    Held,
    /// It holds a different body, of this length.
    Conflict(usize),
    /// It refused a create-only put (something is stored), then failed to be read.
    Unreadable(StorageError),
    Failed(StorageError),
}

impl ReplicatedStore {
    /// Stores `body` under `key` with [`PutMode::Create`], in the three steps of the module
    /// documentation.
    pub(super) async fn put_create(
        &self,
        key: &BackupKey,
        body: &Bytes,
    ) -> Result<(), StorageError> {
        let probes = join_all(self.replicas.iter().map(|r| probe(r.as_ref(), key, body))).await;
        if probes.iter().any(|p| matches!(p, Probe::Different)) {
            return Err(StorageError::AlreadyExists { key: key.clone() });
        }
        let mut outcomes: Vec<Outcome> = probes
            .into_iter()
            .zip(&self.replicas)
            .map(|(probe, r)| match probe {
                Probe::Missing => Outcome::Pending,
                Probe::Same => Outcome::Held,
                Probe::Failed(_) if r.capabilities().conditional_create => Outcome::Pending,
                Probe::Failed(e) => Outcome::Failed(e),
                Probe::Different => Outcome::Conflict(0),
            })
            .collect();

        // Decide: an earlier put of this body already won a create-only replica, or the
        // first create-only replica lacking the key decides now.
        let decided = outcomes
            .iter()
            .zip(&self.replicas)
            .any(|(o, r)| matches!(o, Outcome::Held) && r.capabilities().conditional_create);
        if !decided {
            let mut decided_now = false;
            for (outcome, replica) in outcomes.iter_mut().zip(&self.replicas) {
                if !matches!(outcome, Outcome::Pending)
                    || !replica.capabilities().conditional_create
                {
                    continue;
                }
                *outcome = write_new(replica.as_ref(), key, body).await;
                match outcome {
                    Outcome::Stored | Outcome::Held => {
                        decided_now = true;
                        break;
                    }
                    // Another writer won the race; nothing of ours is stored anywhere.
                    Outcome::Conflict(_) => {
                        return Err(StorageError::AlreadyExists { key: key.clone() });
                    }
                    // Something is stored there, and maybe not our body: trying the next
                    // replica could make two replicas disagree.
                    Outcome::Unreadable(_) => break,
                    Outcome::Pending | Outcome::Failed(_) => {}
                }
            }
            if !decided_now {
                return Err(self.put_error(
                    PutMode::Create,
                    key,
                    outcomes,
                    Some("no replica that can create only decided the write, so none was written"),
                ));
            }
        }

        // Fill every other replica lacking the key.
        let fills = outcomes
            .iter()
            .zip(&self.replicas)
            .map(|(outcome, replica)| async move {
                match outcome {
                    Outcome::Pending => Some(write_new(replica.as_ref(), key, body).await),
                    _ => None,
                }
            });
        let filled = join_all(fills).await;
        for (outcome, fill) in outcomes.iter_mut().zip(filled) {
            if let Some(fill) = fill {
                *outcome = fill;
            }
        }

        let held = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Stored | Outcome::Held))
            .count();
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Stored))
            .count();
        let conflict = outcomes.iter().any(|o| matches!(o, Outcome::Conflict(_)));
        if conflict || held < self.quorum {
            return Err(self.put_error(PutMode::Create, key, outcomes, None));
        }
        if stored == 0 {
            return Err(StorageError::AlreadyExists { key: key.clone() });
        }
        Ok(())
    }

    pub(super) async fn put_overwrite(
        &self,
        key: &BackupKey,
        body: &Bytes,
    ) -> Result<(), StorageError> {
        let puts = self
            .replicas
            .iter()
            .map(|r| r.put(key, body.clone(), PutOptions::overwrite()));
        let outcomes: Vec<Outcome> = join_all(puts)
            .await
            .into_iter()
            .map(|r| r.map_or_else(Outcome::Failed, |()| Outcome::Stored))
            .collect();
        let held = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Stored))
            .count();
        if held < self.quorum {
            return Err(self.put_error(PutMode::Overwrite, key, outcomes, None));
        }
        Ok(())
    }

    pub(super) fn put_error(
        &self,
        mode: PutMode,
        key: &BackupKey,
        outcomes: Vec<Outcome>,
        note: Option<&'static str>,
    ) -> StorageError {
        let mut error = ReplicationError {
            operation: mode.operation(),
            target: key.to_path(),
            succeeded: 0,
            required: self.quorum,
            failures: Vec::new(),
            conflicts: Vec::new(),
            note,
        };
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Outcome::Stored | Outcome::Held => {
                    error.succeeded = error.succeeded.saturating_add(1);
                }
                Outcome::Conflict(_) => error.conflicts.push(self.id(index)),
                Outcome::Failed(e) | Outcome::Unreadable(e) => {
                    error.failures.push(ReplicaFailure {
                        replica: self.id(index),
                        error: e,
                    })
                }
                Outcome::Pending => {}
            }
        }
        error.into_storage_error()
    }
}

pub(super) async fn probe(replica: &dyn BackupStore, key: &BackupKey, body: &Bytes) -> Probe {
    match replica.get(key).await {
        Ok(held) if held == *body => Probe::Same,
        Ok(_) => Probe::Different,
        Err(StorageError::NotFound { .. } | StorageError::NotSupported { .. }) => Probe::Missing,
        Err(e) => Probe::Failed(e),
    }
}

/// Writes `body` under `key` on a replica that held nothing there when last read, without
/// replacing anything: a create-only put where the replica can, else an overwriting put.
pub(super) async fn write_new(replica: &dyn BackupStore, key: &BackupKey, body: &Bytes) -> Outcome {
    if !replica.capabilities().conditional_create {
        return match replica
            .put(key, body.clone(), PutOptions::overwrite())
            .await
        {
            Ok(()) => Outcome::Stored,
            Err(e) => Outcome::Failed(e),
        };
    }
    match replica.put(key, body.clone(), PutOptions::create()).await {
        Ok(()) => Outcome::Stored,
        Err(StorageError::AlreadyExists { .. }) => match replica.get(key).await {
            Ok(held) if held == *body => Outcome::Held,
            Ok(held) => Outcome::Conflict(held.len()),
            Err(e) => Outcome::Unreadable(e),
        },
        Err(e) => Outcome::Failed(e),
    }
}
