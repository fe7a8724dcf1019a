//! One [`BackupStore`] over several: [`ReplicatedStore`] writes every backup to a number of
//! replicas (for example Portal plus your own bucket), succeeds only when a write quorum of
//! them hold it, reads from the first replica that has it, and [repairs](ReplicatedStore::repair)
//! what a replica lacks without ever overwriting what one holds.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use storage::{BackupKey, BackupStore, PutOptions, memory::MemoryStore};
//! use storage::replicated::ReplicatedStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (a, b) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
//! let store = ReplicatedStore::builder()
//!     .with_replica(a.clone())
//!     .with_replica(b.clone())
//!     .with_quorum(2)
//!     .build()?;
//!
//! let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1")?;
//! store.put(&key, Bytes::from_static(b"ciphertext"), PutOptions::create()).await?;
//! assert_eq!(a.get(&key).await?, "ciphertext");
//! assert_eq!(b.get(&key).await?, "ciphertext");
//!
//! // create-only holds across the replicas
//! let again = store.put(&key, Bytes::from_static(b"other"), PutOptions::create()).await;
//! assert!(again.unwrap_err().is_already_exists());
//!
//! // a replica that lost its copy gets it back, and nothing else is touched
//! b.delete(&key).await?;
//! let report = store.repair(&key).await;
//! assert_eq!((report.copied, report.already_present), (1, 1));
//! assert_eq!(b.get(&key).await?, "ciphertext");
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # Create-only across replicas
//! A create-only put ([`PutMode::Create`], the default) must never replace a backup on any
//! replica, and of several racing create-only puts of one key exactly one may win. The store
//! does it in three steps:
//!
//! 1. **Probe.** It reads the key from every replica at once. If any replica holds a
//!    *different* body, the put fails with [`StorageError::AlreadyExists`] and nothing is
//!    written anywhere. A replica holding the *same* body already holds the write (an earlier
//!    put of this body that reached only some replicas): the put completes it.
//! 2. **Decide.** The first replica, in the order given to the builder, that can create only
//!    ([`Capabilities::conditional_create`]) and lacks the key gets a create-only put. It is
//!    the arbiter: if another writer won it first, the put fails with
//!    [`StorageError::AlreadyExists`] before anything else is written. If it does not answer,
//!    the next such replica decides. If none answers (or one refuses the put and then cannot
//!    be read, so that what it holds is unknown), nothing more is written and the put fails
//!    (retryable if the failures were). Put the replica you trust most first.
//! 3. **Fill.** Every other replica lacking the key gets the body at once: a create-only
//!    put where the replica can, otherwise (a Portal-managed store, which cannot create
//!    only) an overwriting put — the probe of step 1 found nothing there, and only the
//!    winner of step 2 gets this far. A replica whose probe failed is written in this step
//!    only if it can create only (a create-only put is safe without knowing what is there);
//!    otherwise it counts as failed.
//!
//! The put returns `Ok` when at least `quorum` replicas hold the body afterwards, and
//! [`StorageError::AlreadyExists`] when they all held it already (nothing was stored).
//! Otherwise it fails with a [`ReplicationError`] naming every replica that failed, wrapped in
//! [`StorageError::Unavailable`] when all those failures were retryable and in
//! [`StorageError::Backend`] otherwise. Replicas that were written stay written; repeating the
//! put (same body) completes it. If a replica is found holding a different body *during*
//! step 3 (a writer that bypassed this store, or two writers that saw different arbiters
//! while one was failing) the put fails with a non-retryable [`ReplicationError`] listing
//! that replica in [`conflicts`](ReplicationError::conflicts): nothing is overwritten, and
//! [`repair`](ReplicatedStore::repair) reports the key until someone resolves it.
//!
//! What this cannot promise without a consensus protocol: a replica that holds an earlier,
//! partial write of a *different* body and is down during both the probe and the decision
//! is not seen, so the replicas may end up disagreeing. Nothing is overwritten even then,
//! and `repair` reports the key. With a majority quorum (`2 × quorum > replicas`) at most one
//! body per key is ever acknowledged to create-only puts (a property test checks it).
//!
//! # Overwrite, get, delete, list
//! * An overwriting put goes to every replica at once and succeeds when `quorum` of them
//!   succeed. A replica that failed keeps the old body; `repair` reports it as a conflict.
//! * `get` asks the replicas one after another, in order, and returns the first body found.
//!   It falls through on [`StorageError::NotFound`], on [`StorageError::NotSupported`] (a
//!   replica that cannot keep this kind of share) and on failures. It returns `NotFound`
//!   only when every replica said so; when some failed and none had the key, it fails with
//!   a [`ReplicationError`] instead, because a failed replica may hold it.
//! * `delete` goes to every replica and succeeds only when all of them succeed. A delete that
//!   reached only some replicas must be repeated: a `repair` in between copies the object back.
//! * `list` is the union of what the replicas that can list return. It tolerates failed
//!   replicas only as long as every object written at quorum is still on an answering
//!   replica.
//!
//! # Capabilities
//! With `n` replicas and write quorum `q`, the replicated store reports:
//!
//! | capability | when |
//! |---|---|
//! | `conditional_create` | at least one replica can create only (the arbiter), and at least `q` replicas can be written at all |
//! | `overwrite` | every replica can overwrite (otherwise an overwrite would leave old bodies behind) |
//! | `delete` | every replica can delete |
//! | `list` | fewer than `q` replicas cannot list (so every write reaches one that can) |
//! | `durable` | fewer than `q` replicas are not durable (so every write reaches a durable one) |
//! | `compare_and_swap` | never |
//!
//! Compare and swap ([`PutMode::Update`]) is not offered: each replica has its own versions,
//! and a swap that won on some replicas and lost on others would leave them holding
//! different bodies with nothing to say which is right — deciding that needs a consensus
//! protocol this store does not have. [`BackupStore::get_versioned`] and `Update` puts
//! return [`StorageError::NotSupported`]; run compare-and-swap writers (the custodian
//! webhook) on a single store with it instead (PostgreSQL, a bucket).
//!
//! So Portal (no create-only, delete or list) plus a bucket at quorum 2 can create only,
//! overwrite and list, but not delete; Portal alone, or several Portal-like stores, cannot
//! create only, and a create-only put then fails with [`StorageError::NotSupported`].
//!
//! # Slow replicas
//! Writes wait for every replica to answer, so a slow replica slows every put; give the
//! replicas' clients their own timeouts. Reads stop at the first replica with the object, so
//! put the fastest first.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::error::{Report, StorageError};
use crate::key::BackupKey;
use crate::store::{
    BackupStore, Capabilities, GET_VERSIONED_OPERATION, ObjectVersion, PutMode, PutOptions,
};

const NAME: &str = "replicated";

/// Which replica: its position in the builder's order and its store's
/// [`name`](BackupStore::name). Displays as `replica 1 (s3)`.
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

/// A configuration that [`ReplicatedStoreBuilder::build`] refuses.
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

/// One replica's error in a [`ReplicationError`] or a [`RepairReport`].
#[derive(Debug)]
#[non_exhaustive]
pub struct ReplicaFailure {
    /// The replica.
    pub replica: ReplicaId,
    /// Its error.
    pub error: StorageError,
}

/// Why an operation of a [`ReplicatedStore`] failed across its replicas: which replicas
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

    /// The [`ReplicationError`] inside a [`StorageError`] returned by a [`ReplicatedStore`],
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

    fn into_storage_error(self) -> StorageError {
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

/// Builds a [`ReplicatedStore`]; made by [`ReplicatedStore::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct ReplicatedStoreBuilder {
    replicas: Vec<Arc<dyn BackupStore>>,
    quorum: Option<usize>,
}

impl ReplicatedStoreBuilder {
    /// Adds a replica, after those already added. Order matters: reads ask the replicas in
    /// this order, and the first replica that can create only decides create-only races.
    pub fn with_replica(mut self, replica: Arc<dyn BackupStore>) -> Self {
        self.replicas.push(replica);
        self
    }

    /// Adds several replicas, in order.
    pub fn with_replicas(
        mut self,
        replicas: impl IntoIterator<Item = Arc<dyn BackupStore>>,
    ) -> Self {
        self.replicas.extend(replicas);
        self
    }

    /// How many replicas must hold a write for a put to succeed: 1 to the number of
    /// replicas. Without this, every replica must.
    pub fn with_quorum(mut self, quorum: usize) -> Self {
        self.quorum = Some(quorum);
        self
    }

    /// The store.
    ///
    /// # Errors
    /// [`BuildError::NoReplicas`]; [`BuildError::QuorumOutOfRange`] for a quorum of 0 or
    /// more than the number of replicas.
    pub fn build(self) -> Result<ReplicatedStore, BuildError> {
        let n = self.replicas.len();
        if n == 0 {
            return Err(BuildError::NoReplicas);
        }
        let quorum = self.quorum.unwrap_or(n);
        if quorum == 0 || quorum > n {
            return Err(BuildError::QuorumOutOfRange {
                quorum,
                replicas: n,
            });
        }
        Ok(ReplicatedStore {
            replicas: self.replicas,
            quorum,
        })
    }
}

/// A [`BackupStore`] that keeps every object on several replica stores; see the
/// [module documentation](self) for what each operation does and which capabilities it
/// reports.
#[derive(Clone, Debug)]
pub struct ReplicatedStore {
    replicas: Vec<Arc<dyn BackupStore>>,
    quorum: usize,
}

/// What a replica holds under a key, compared with a body.
enum Probe {
    Missing,
    Same,
    Different,
    Failed(StorageError),
}

/// Where a replica stands in a put.
enum Outcome {
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
    /// A builder: add replicas with [`with_replica`](ReplicatedStoreBuilder::with_replica),
    /// set the write quorum, then [`build`](ReplicatedStoreBuilder::build).
    pub fn builder() -> ReplicatedStoreBuilder {
        ReplicatedStoreBuilder::default()
    }

    /// The replicas, in order.
    #[must_use]
    pub fn replicas(&self) -> &[Arc<dyn BackupStore>] {
        &self.replicas
    }

    /// The write quorum.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    fn ids(&self) -> impl Iterator<Item = (ReplicaId, &Arc<dyn BackupStore>)> {
        self.replicas.iter().enumerate().map(|(index, store)| {
            (
                ReplicaId {
                    index,
                    name: store.name(),
                },
                store,
            )
        })
    }

    fn id(&self, index: usize) -> ReplicaId {
        ReplicaId {
            index,
            name: self.replicas.get(index).map_or("?", |s| s.name()),
        }
    }

    fn unsupported(operation: &'static str) -> StorageError {
        StorageError::NotSupported {
            operation,
            backend: NAME,
        }
    }

    fn count(&self, f: impl Fn(Capabilities) -> bool) -> usize {
        self.replicas.iter().filter(|r| f(r.capabilities())).count()
    }

    /// Stores `body` under `key` with [`PutMode::Create`], in the three steps of the module
    /// documentation.
    async fn put_create(&self, key: &BackupKey, body: &Bytes) -> Result<(), StorageError> {
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

    async fn put_overwrite(&self, key: &BackupKey, body: &Bytes) -> Result<(), StorageError> {
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

    fn put_error(
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
    /// [`list`](Capabilities::list) holds. Objects only on replicas that cannot list (Portal)
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

    /// The union of the lists of every replica that can list, and the replicas that failed.
    async fn union_of_lists(
        &self,
        client_id: &str,
    ) -> Result<(BTreeMap<String, BackupKey>, Vec<ReplicaFailure>), StorageError> {
        let listers: Vec<(ReplicaId, &Arc<dyn BackupStore>)> =
            self.ids().filter(|(_, r)| r.capabilities().list).collect();
        if listers.is_empty() {
            return Err(Self::unsupported("list"));
        }
        let lists = join_all(listers.iter().map(|(_, r)| r.list(client_id))).await;
        let mut keys = BTreeMap::new();
        let mut failures = Vec::new();
        for ((replica, _), list) in listers.into_iter().zip(lists) {
            match list {
                Ok(list) => keys.extend(list.into_iter().map(|k| (k.to_path(), k))),
                Err(error) => failures.push(ReplicaFailure { replica, error }),
            }
        }
        Ok((keys, failures))
    }
}

impl ReplicatedStore {
    /// Every object written at quorum is on at least `quorum - (replicas that cannot list)`
    /// replicas that can; a union of lists is complete while fewer of those failed.
    fn union_is_complete(
        &self,
        operation: &'static str,
        target: String,
        failures: Vec<ReplicaFailure>,
    ) -> Result<(), StorageError> {
        let listing = self.count(|c| c.list);
        let must_answer = self
            .quorum
            .saturating_sub(self.replicas.len().saturating_sub(listing));
        if failures.len() < must_answer {
            return Ok(());
        }
        Err(ReplicationError {
            operation,
            target,
            succeeded: listing.saturating_sub(failures.len()),
            required: listing.saturating_sub(must_answer).saturating_add(1),
            failures,
            conflicts: Vec::new(),
            note: Some("too few replicas answered for the union to be complete"),
        }
        .into_storage_error())
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

async fn probe(replica: &dyn BackupStore, key: &BackupKey, body: &Bytes) -> Probe {
    match replica.get(key).await {
        Ok(held) if held == *body => Probe::Same,
        Ok(_) => Probe::Different,
        Err(StorageError::NotFound { .. } | StorageError::NotSupported { .. }) => Probe::Missing,
        Err(e) => Probe::Failed(e),
    }
}

/// Writes `body` under `key` on a replica that held nothing there when last read, without
/// replacing anything: a create-only put where the replica can, else an overwriting put.
async fn write_new(replica: &dyn BackupStore, key: &BackupKey, body: &Bytes) -> Outcome {
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

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl BackupStore for ReplicatedStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let q = self.quorum;
        let n = self.replicas.len();
        Capabilities {
            conditional_create: self.count(|c| c.conditional_create) > 0
                && self.count(|c| c.conditional_create || c.overwrite) >= q,
            overwrite: self.count(|c| c.overwrite) == n,
            delete: self.count(|c| c.delete) == n,
            list: self.count(|c| !c.list) < q,
            durable: self.count(|c| !c.durable) < q,
            compare_and_swap: false,
        }
    }

    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        let caps = self.capabilities();
        match options.mode {
            PutMode::Create if caps.conditional_create => self.put_create(key, &body).await,
            PutMode::Overwrite if caps.overwrite => self.put_overwrite(key, &body).await,
            mode => Err(Self::unsupported(mode.operation())),
        }
    }

    async fn get_versioned(
        &self,
        _key: &BackupKey,
    ) -> Result<(Bytes, ObjectVersion), StorageError> {
        Err(Self::unsupported(GET_VERSIONED_OPERATION))
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        let mut failures = Vec::new();
        for (replica, store) in self.ids() {
            match store.get(key).await {
                Ok(body) => return Ok(body),
                Err(StorageError::NotFound { .. } | StorageError::NotSupported { .. }) => {}
                Err(error) => failures.push(ReplicaFailure { replica, error }),
            }
        }
        if failures.is_empty() {
            return Err(StorageError::NotFound { key: key.clone() });
        }
        Err(ReplicationError {
            operation: "get",
            target: key.to_path(),
            succeeded: 0,
            required: 1,
            failures,
            conflicts: Vec::new(),
            note: Some("no replica that answered holds the key; one that failed may"),
        }
        .into_storage_error())
    }

    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        if !self.capabilities().delete {
            return Err(Self::unsupported("delete"));
        }
        let deletes = join_all(self.replicas.iter().map(|r| r.delete(key))).await;
        let failures: Vec<ReplicaFailure> = deletes
            .into_iter()
            .enumerate()
            .filter_map(|(index, r)| {
                r.err().map(|error| ReplicaFailure {
                    replica: self.id(index),
                    error,
                })
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        Err(ReplicationError {
            operation: "delete",
            target: key.to_path(),
            succeeded: self.replicas.len().saturating_sub(failures.len()),
            required: self.replicas.len(),
            failures,
            conflicts: Vec::new(),
            note: None,
        }
        .into_storage_error())
    }

    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        BackupKey::check_client_id(client_id)?;
        if !self.capabilities().list {
            return Err(Self::unsupported("list"));
        }
        let (keys, failures) = self.union_of_lists(client_id).await?;
        self.union_is_complete("list", format!("client {client_id}"), failures)?;
        Ok(keys.into_values().collect())
    }

    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        if !self.capabilities().list {
            return Err(Self::unsupported("list clients"));
        }
        let listers: Vec<(ReplicaId, &Arc<dyn BackupStore>)> =
            self.ids().filter(|(_, r)| r.capabilities().list).collect();
        let lists = join_all(listers.iter().map(|(_, r)| r.list_clients())).await;
        let mut clients = std::collections::BTreeSet::new();
        let mut failures = Vec::new();
        for ((replica, _), list) in listers.into_iter().zip(lists) {
            match list {
                Ok(list) => clients.extend(list),
                Err(error) => failures.push(ReplicaFailure { replica, error }),
            }
        }
        if clients.is_empty() && failures.iter().all(|f| f.error.is_not_supported()) {
            return Err(Self::unsupported("list clients"));
        }
        self.union_is_complete("list clients", "the store".to_owned(), failures)?;
        Ok(clients.into_iter().collect())
    }

    /// [`list_clients`](BackupStore::list_clients) (the union of the replicas' listings,
    /// complete or an error), streamed once it is known.
    fn stream_clients(&self) -> crate::ClientStream<'_> {
        crate::store::stream_of_list(self.list_clients())
    }
}
