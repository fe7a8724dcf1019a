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

mod error;
mod put;
mod repair;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{
    BackupStore, Capabilities, GET_VERSIONED_OPERATION, ObjectVersion, PutMode, PutOptions,
};

pub use error::{BuildError, ReplicaFailure, ReplicaId, ReplicationError};
pub use repair::{Conflict, RepairFailure, RepairReport, Version};

const NAME: &str = "replicated";

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

    /// One at a time: each read and put goes through the quorum logic above.
    fn batch_size(&self) -> usize {
        1
    }

    async fn read_clients(&self, client_ids: &[String]) -> Vec<crate::batch::ClientObjects> {
        crate::batch::read_clients_one_by_one(self, client_ids).await
    }

    async fn put_many(&self, puts: Vec<crate::batch::Put>) -> Vec<Result<(), StorageError>> {
        crate::batch::put_one_by_one(self, puts).await
    }
}
