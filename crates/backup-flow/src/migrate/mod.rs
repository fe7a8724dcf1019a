//! Migration of client ciphertexts: every one copied create-only, and counted as moved only
//! after the restore drill on the target.
//!
//! * [`Migration`]: between two stores of one's own (files, PostgreSQL, S3/GCS/Azure, in any
//!   pair). A store-only operation: it takes a keyring and two stores, and no Portal client.
//! * [`PortalMigration`]: between Portal-Managed Backups and a store of one's own, either
//!   way, one client session (from its credential line) at a time.
//!
//! What moves: the client's sealed shares (client backup shares, the `clientCipherText` of
//! Portal's pairs, and client signing shares where a signing store keeps them). Custodian
//! backup shares do not move: they stay where Portal's backup mode put them (with Portal,
//! or in the Self-Managed Backups webhook's store), and are reported as skipped.
//!
//! Resumable without local state: the target is the record. A rerun finds what an earlier run
//! copied (an identical object on the target), drills it again and reports it as already
//! moved; a *different* object on the target is a conflict and is never replaced. The source
//! is only read.

use std::sync::Arc;

use bytes::Bytes;
use envelope::{Keyring, Opener};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::Serialize;
use storage::batch::{ClientObjects, Put};
use storage::portal::PortalStore;
use storage::{BackupKey, BackupStore, PutOptions, ShareKind, StorageError};

use crate::backup::open_text;
use crate::error::{Error, Result};
use crate::identity::ShareId;
use crate::stages::Stages;

mod portal;

pub use portal::{PortalMigration, SessionLine};

/// How many clients a migration works on at once unless told otherwise: enough to keep a
/// store and a KMS with a few milliseconds of latency busy, few enough for their quotas.
pub const DEFAULT_MIGRATE_CONCURRENCY: usize = 16;

/// Why a custodian backup share is not moved.
const CUSTODIAN_STAYS: &str =
    "a custodian backup share: it stays where Portal's backup mode keeps it";

/// A migration from one store of one's own to another, opened with one keyring.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use backup_flow::migrate::{Migration, Moved};
/// use envelope::{Keyring, local::LocalKek};
/// use futures_util::StreamExt as _;
/// use storage::memory::MemoryStore;
///
/// let keyring = Keyring::new().with(Arc::new(LocalKek::generate()?));
/// let (from, to) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
/// let migration = Migration::new(keyring, from, to)?;
/// let clients = futures_util::stream::iter(vec![Ok("cl_1".to_owned())]);
/// let done: Vec<_> = migration.run(clients, 4).collect().await;
/// // `cl_1` has nothing stored: one client, no object.
/// assert!(done[0].as_ref().unwrap().objects.as_ref().unwrap().is_empty());
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Migration {
    keyring: Keyring,
    from: Arc<dyn BackupStore>,
    to: Arc<dyn BackupStore>,
}

/// One client of a migration ([`Migration::run`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct MigratedClient {
    /// The Portal client id; empty when a credential line could not be used or Portal did
    /// not say whose it is ([`PortalMigration`]).
    pub client_id: String,
    /// The credential line of the client ([`PortalMigration`]); `None` between two stores of
    /// one's own.
    pub line: Option<u64>,
    /// What became of each object the source holds for the client, in the source's listing
    /// order; or why the client's objects could not be listed.
    pub objects: Result<Vec<MigratedObject>>,
}

/// One object of a migration.
#[derive(Debug)]
#[non_exhaustive]
pub struct MigratedObject {
    /// The store key's path form (the same on both stores).
    pub key: String,
    /// The status Portal lists for the object's backup share pair (`completed`,
    /// `incomplete`, …) when Portal is one side ([`PortalMigration`]).
    pub pair_status: Option<String>,
    /// What became of it, or why it could not be moved (a store or the KMS failed, or the
    /// copy on the target failed its drill); the other objects go on.
    pub result: Result<Moved>,
}

/// What became of one object of the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Moved {
    /// Copied to the target in this run, read back and opened there as its share.
    Moved,
    /// The target already held these very bytes (an earlier run copied them), and they open
    /// there as the share.
    AlreadyMoved,
    /// The target holds a different object under this key: left alone, and this object not
    /// copied. Someone must decide which one is right.
    Conflict,
    /// The source object does not open as the share its key names (tampered, another share's
    /// or client's, or sealed under keys this keyring lacks): not copied.
    BadSource {
        /// Why it did not open.
        reason: String,
    },
    /// Not a client ciphertext, or gone from the source since it was listed: not copied.
    Skipped {
        /// Why.
        reason: &'static str,
    },
}

impl Moved {
    /// Whether the object is on the target and proven there (moved in this run or earlier).
    #[must_use]
    pub fn is_on_target(&self) -> bool {
        matches!(self, Self::Moved | Self::AlreadyMoved)
    }
}

impl Migration {
    /// A migration from `from` to `to`, whose ciphertexts `keyring` opens.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring, a source that cannot list or a target that
    /// cannot create only (a migration never overwrites).
    pub fn new(
        keyring: Keyring,
        from: Arc<dyn BackupStore>,
        to: Arc<dyn BackupStore>,
    ) -> Result<Self> {
        if keyring.is_empty() {
            return Err(Error::Invalid(
                "at least one key-encryption key is needed to drill what is moved".into(),
            ));
        }
        if !from.capabilities().list {
            return Err(Error::Invalid(format!(
                "the {} store cannot list its objects, so it cannot be migrated from",
                from.name()
            )));
        }
        if !to.capabilities().conditional_create {
            return Err(Error::Invalid(format!(
                "the {} store cannot create an object only if none is there, so it cannot be migrated to (a migration never overwrites)",
                to.name()
            )));
        }
        Ok(Self { keyring, from, to })
    }

    /// Migrates the objects of every client of `clients` (a listing, possibly streamed), as
    /// a stream of one result per client in the order they finish; an item is `Err` when the
    /// listing itself failed. Nothing is held beyond the clients in flight.
    ///
    /// Per object: the source is read and opened as its share (the drill of the source; what
    /// does not open is [`Moved::BadSource`] and not copied), put create-only on the target,
    /// read back, compared byte for byte and opened again (the drill of the target). The
    /// objects of a client go through one [`Opener`], so the shares of a backup sealed
    /// under one data key cost one KMS call in all.
    ///
    /// At most `concurrency` clients are at the KMS at once (`0` counts as 1), and meanwhile
    /// at most `concurrency` store steps (a client's reads of the source, its writes and
    /// reads of the target) of other clients are in flight. Where both stores take batches
    /// ([`BackupStore::batch_size`] > 1), a store step carries a batch of clients: the source
    /// read in one call, the copies created in one, and read back in one.
    pub fn run<'a, S>(
        &'a self,
        clients: S,
        concurrency: usize,
    ) -> impl Stream<Item = Result<MigratedClient>> + Send + 'a
    where
        S: Stream<Item = Result<String, StorageError>> + Send + 'a,
    {
        let batch = self.from.batch_size().min(self.to.batch_size());
        if batch <= 1 {
            return Stages::run(concurrency, clients, move |listed, stages| async move {
                match listed {
                    Ok(client_id) => Ok(self.client(client_id, &stages).await),
                    Err(source) => Err(self.listing_error(source)),
                }
            })
            .left_stream();
        }
        Stages::run_batches(
            concurrency,
            batch,
            clients,
            move |listed, stages| async move { self.batch(listed, &stages).await },
        )
        .flat_map(stream::iter)
        .right_stream()
    }

    /// The error of a failed listing of the source's clients.
    fn listing_error(&self, source: StorageError) -> Error {
        Error::Store {
            operation: "list clients",
            key: format!("the {} store", self.from.name()),
            source: Box::new(source),
        }
    }

    /// A batch of clients: the source read in one store call, each client's objects drilled
    /// through one [`Opener`] (a KMS step per client), then copied create-only in one store
    /// call and read back from the target in one, and drilled there (the same wrapped keys:
    /// no KMS call).
    async fn batch(
        &self,
        listed: Vec<std::result::Result<String, StorageError>>,
        stages: &Stages,
    ) -> Vec<Result<MigratedClient>> {
        let (ids, failed) = crate::stages::split_listed(listed);
        let mut done: Vec<Result<MigratedClient>> = failed
            .into_iter()
            .map(|source| Err(self.listing_error(source)))
            .collect();
        if ids.is_empty() {
            return done;
        }
        let read = stages.store(self.from.read_clients(&ids)).await;
        let drilled = futures_util::future::join_all(
            ids.into_iter()
                .zip(read)
                .map(|(client_id, objects)| self.drill_client(client_id, objects, stages)),
        )
        .await;
        done.extend(
            stages
                .store(self.copy_batch(drilled))
                .await
                .into_iter()
                .map(Ok),
        );
        done
    }

    /// One client of a batch as the source gave it, drilled (a KMS step).
    async fn drill_client(
        &self,
        client_id: String,
        objects: ClientObjects,
        stages: &Stages,
    ) -> DrilledClient<'_> {
        let opener = Opener::new(&self.keyring);
        let objects = match objects {
            Ok(objects) => objects,
            Err(source) => {
                return DrilledClient {
                    client_id,
                    opener,
                    objects: Err(source),
                };
            }
        };
        let read = objects
            .into_iter()
            .map(|(key, object)| {
                let source = source_of(&key, object.map(|object| object.body));
                (key, source)
            })
            .collect();
        let objects = stages.kms(drill_sources(&opener, read)).await;
        DrilledClient {
            client_id,
            opener,
            objects: Ok(objects),
        }
    }

    /// Creates every drilled copy of a batch on the target in one call, reads the batch's
    /// clients back from the target in one, and drills each copy there.
    async fn copy_batch(&self, drilled: Vec<DrilledClient<'_>>) -> Vec<MigratedClient> {
        // How many copies each client has to create, in the order of `drilled`.
        let copies: Vec<usize> = drilled
            .iter()
            .map(|client| {
                client
                    .objects
                    .iter()
                    .flatten()
                    .filter(|(_, step)| matches!(step, Ok(Source::Read { .. })))
                    .count()
            })
            .collect();
        let puts: Vec<Put> = drilled
            .iter()
            .flat_map(|client| client.objects.iter().flatten())
            .filter_map(|(key, step)| match step {
                Ok(Source::Read { body, .. }) => {
                    Some((key.clone(), body.clone(), PutOptions::create()))
                }
                _ => None,
            })
            .collect();
        // One result per put, in the order the puts were taken from the clients.
        let mut created = self.to.put_many(puts).await.into_iter();
        let copied: Vec<String> = drilled
            .iter()
            .zip(&copies)
            .filter(|(_, copies)| **copies > 0)
            .map(|(client, _)| client.client_id.clone())
            .collect();
        // One entry per client asked, in order (a short answer is a missing read-back).
        let mut read_back = self.to.read_clients(&copied).await.into_iter();
        let mut out = Vec::with_capacity(drilled.len());
        for (client, copies) in drilled.into_iter().zip(copies) {
            let mut on_target = match copies {
                0 => None,
                n => read_back.next().map(|objects| OnTarget::of(objects, n)),
            };
            let objects = match client.objects {
                Ok(steps) => {
                    let opener = &client.opener;
                    Ok(settle_objects(steps, |key, kind, body| {
                        // Taken in the batch's order, before the check runs.
                        let created = created_of(&key, created.next(), self.to.name());
                        let stored = on_target.as_mut().map_or_else(
                            || Err(self.missing_read_back(&key)),
                            |target| target.take(&key),
                        );
                        async move {
                            ShareId::of_stored(&key, kind, async |id| {
                                check_target(opener, id, &key, &body, created?, stored?).await
                            })
                            .await
                        }
                    })
                    .await)
                }
                Err(source) => Err(Error::store_listing(&client.client_id, source)),
            };
            out.push(MigratedClient {
                client_id: client.client_id,
                line: None,
                objects,
            });
        }
        out
    }

    /// The error of a copy the target's read-back did not cover.
    fn missing_read_back(&self, key: &BackupKey) -> Error {
        Error::Invalid(format!(
            "the {} store read back fewer clients than it was asked for ({key})",
            self.to.name()
        ))
    }

    /// Every object of one client through one [`Opener`]: read from the source, drilled
    /// (KMS), then copied and drilled on the target, each step under its own permit.
    async fn client(&self, client_id: String, stages: &Stages) -> MigratedClient {
        let read = match stages.store(self.read_client(&client_id)).await {
            Ok(read) => read,
            Err(source) => {
                return MigratedClient {
                    line: None,
                    objects: Err(Error::store_listing(&client_id, source)),
                    client_id,
                };
            }
        };
        let opener = Opener::new(&self.keyring);
        let drilled = stages.kms(drill_sources(&opener, read)).await;
        let target = Target::Store(self.to.as_ref());
        let objects = stages
            .store(settle_objects(drilled, |key, kind, body| {
                let opener = &opener;
                async move {
                    ShareId::of_stored(&key, kind, async |id| {
                        copy_drilled(opener, id, &key, body, target).await
                    })
                    .await
                }
            }))
            .await;
        MigratedClient {
            client_id,
            line: None,
            objects: Ok(objects),
        }
    }

    /// Lists one client's objects on the source and reads each that moves.
    async fn read_client(
        &self,
        client_id: &str,
    ) -> std::result::Result<Vec<(BackupKey, Result<Source>)>, StorageError> {
        let mut read = Vec::new();
        for key in self.from.list(client_id).await? {
            let source = self.read_source(&key).await;
            read.push((key, source));
        }
        Ok(read)
    }

    /// One source object: its body to move, or what already came of it.
    async fn read_source(&self, key: &BackupKey) -> Result<Source> {
        if let Err(skipped) = movable(key) {
            return Ok(Source::Settled(skipped));
        }
        source_of(key, self.from.get(key).await)
    }
}

/// One client of a batch, its source read and drilled through its [`Opener`] (kept for the
/// drill of the target), or why the source could not list it.
struct DrilledClient<'k> {
    client_id: String,
    opener: Opener<'k>,
    objects: std::result::Result<Vec<(BackupKey, Result<Source>)>, StorageError>,
}

/// What the target gave back for one client of a batch, taken key by key.
enum OnTarget {
    Read(std::collections::HashMap<BackupKey, std::result::Result<Bytes, StorageError>>),
    /// The read-back of the client failed: one error for each of its copies, the first the
    /// store's own, the others saying so (retryable as it is).
    Failed(Vec<StorageError>),
}

impl OnTarget {
    /// What the target gave back for a client with `copies` copies.
    fn of(objects: ClientObjects, copies: usize) -> Self {
        match objects {
            Ok(objects) => Self::Read(
                objects
                    .into_iter()
                    .map(|(key, object)| (key, object.map(|object| object.body)))
                    .collect(),
            ),
            Err(e) => {
                let mut errors = storage::batch::spread_error(e, copies);
                errors.reverse();
                Self::Failed(errors)
            }
        }
    }

    /// The bytes the target holds under `key`.
    fn take(&mut self, key: &BackupKey) -> Result<Bytes> {
        match self {
            Self::Read(objects) => match objects.remove(key) {
                Some(object) => object.map_err(Error::store("get", key)),
                None => Err(Error::store("get", key)(StorageError::NotFound {
                    key: key.clone(),
                })),
            },
            Self::Failed(errors) => {
                let error = errors
                    .pop()
                    .unwrap_or_else(|| StorageError::NotFound { key: key.clone() });
                Err(Error::store("get", key)(error))
            }
        }
    }
}

/// Whether a create-only put of a batch created the copy (`false`: something was there).
fn created_of(
    key: &BackupKey,
    result: Option<std::result::Result<(), StorageError>>,
    store: &str,
) -> Result<bool> {
    match result {
        Some(Ok(())) => Ok(true),
        Some(Err(e)) if e.is_already_exists() => Ok(false),
        Some(Err(e)) => Err(Error::store("put", key)(e)),
        None => Err(Error::unanswered_put(store)),
    }
}

/// A source object as read: its body to move, or what already came of it.
fn source_of(key: &BackupKey, read: std::result::Result<Bytes, StorageError>) -> Result<Source> {
    let kind = match movable(key) {
        Ok(kind) => kind,
        Err(skipped) => return Ok(Source::Settled(skipped)),
    };
    match read {
        Ok(body) => Ok(Source::Read { kind, body }),
        Err(e) if e.is_not_found() => Ok(Source::Settled(Moved::Skipped {
            reason: "deleted from the source since it was listed",
        })),
        Err(e) => Err(Error::store("get", key)(e)),
    }
}

/// What came of each drilled object of one client, in turn: a source still to move goes
/// through `copy` (with its key, kind and body); the others are settled as they came.
async fn settle_objects<F, Fut>(
    drilled: Vec<(BackupKey, Result<Source>)>,
    mut copy: F,
) -> Vec<MigratedObject>
where
    F: FnMut(BackupKey, ShareKind, Bytes) -> Fut,
    Fut: Future<Output = Result<Moved>>,
{
    let mut objects = Vec::with_capacity(drilled.len());
    for (key, step) in drilled {
        let name = key.to_string();
        let result = match step {
            Ok(Source::Read { kind, body }) => copy(key, kind, body).await,
            Ok(Source::Settled(moved)) => Ok(moved),
            Err(e) => Err(e),
        };
        objects.push(MigratedObject {
            key: name,
            pair_status: None,
            result,
        });
    }
    objects
}

/// The drill of the source of each object read (the KMS step of a client): what does not
/// open as its share is settled as [`Moved::BadSource`].
async fn drill_sources(
    opener: &Opener<'_>,
    read: Vec<(BackupKey, Result<Source>)>,
) -> Vec<(BackupKey, Result<Source>)> {
    let mut drilled = Vec::with_capacity(read.len());
    for (key, source) in read {
        let step = match source {
            Ok(Source::Read { kind, body }) => {
                match ShareId::of_stored(&key, kind, async |id| {
                    drill_source(opener, id, &key, &body).await
                })
                .await
                {
                    Ok(None) => Ok(Source::Read { kind, body }),
                    Ok(Some(bad)) => Ok(Source::Settled(bad)),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        drilled.push((key, step));
    }
    drilled
}

/// One object of a [`Migration`] on its way: read from the source and still to move, or
/// settled (skipped, or a bad source).
enum Source {
    Read { kind: ShareKind, body: Bytes },
    Settled(Moved),
}

/// Whether the object under `key` is a client ciphertext that moves (`Ok(its kind)`), or why
/// it stays (`Err` with the [`Moved::Skipped`] to report).
fn movable(key: &BackupKey) -> std::result::Result<ShareKind, Moved> {
    match key.kind() {
        kind @ (ShareKind::ClientBackup | ShareKind::ClientSigning) => Ok(kind),
        ShareKind::CustodianBackup => Err(Moved::Skipped {
            reason: CUSTODIAN_STAYS,
        }),
        _ => Err(Moved::Skipped {
            reason: "a kind of object this version does not know",
        }),
    }
}

/// Where a migration's copies go.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A store of one's own that creates only (atomically).
    Store(&'a dyn BackupStore),
    /// Portal, whose `PATCH` of a `clientCipherText` always replaces: looked at first, and
    /// written only where it holds nothing.
    Portal(&'a PortalStore),
}

impl Target<'_> {
    /// Creates `key` with `body` unless something is there: whether it was created.
    async fn create(self, key: &BackupKey, body: Bytes) -> Result<bool> {
        match self {
            Self::Store(store) => match store.put(key, body, PutOptions::create()).await {
                Ok(()) => Ok(true),
                Err(e) if e.is_already_exists() => Ok(false),
                Err(e) => Err(Error::store("put", key)(e)),
            },
            // Not atomic (Portal has no conditional write): a writer between the look and the
            // write would be replaced. Nothing else writes a migrated client's pairs while its
            // migration runs; the drill after the write checks that our bytes are the ones
            // there.
            Self::Portal(portal) => match portal.get(key).await {
                Ok(_) => Ok(false),
                Err(e) if e.is_not_found() => {
                    portal
                        .put(key, body, PutOptions::overwrite())
                        .await
                        .map_err(Error::store("put", key))?;
                    Ok(true)
                }
                Err(e) => Err(Error::store("get", key)(e)),
            },
        }
    }

    async fn get(self, key: &BackupKey) -> Result<Bytes> {
        let got = match self {
            Self::Store(store) => store.get(key).await,
            Self::Portal(portal) => portal.get(key).await,
        };
        got.map_err(Error::store("get", key))
    }
}

/// Moves `body`, read from the source under `key` for share `id`: the drill of the source
/// (what does not open as its share is [`Moved::BadSource`] and not copied), a create-only
/// write to the target, and the drill of the target (read back, compared byte for byte,
/// opened again).
async fn copy(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    body: Bytes,
    target: Target<'_>,
) -> Result<Moved> {
    match drill_source(opener, id, key, &body).await? {
        Some(bad) => Ok(bad),
        None => copy_drilled(opener, id, key, body, target).await,
    }
}

/// The drill of the source: `None` when `body` opens as its share, else the
/// [`Moved::BadSource`] to report instead of a copy.
async fn drill_source(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    body: &Bytes,
) -> Result<Option<Moved>> {
    match open_text(opener, id, key, body).await {
        Ok(_) => Ok(None),
        Err(Error::WrongIdentity { source, .. }) => Ok(Some(Moved::BadSource {
            reason: crate::error::cause_chain(&source),
        })),
        Err(e) => Err(e),
    }
}

/// The copy of a source that opened: a create-only write to the target, then the drill of
/// the target (its opening of the same wrapped key hits `opener`'s cache: no KMS call).
async fn copy_drilled(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    body: Bytes,
    target: Target<'_>,
) -> Result<Moved> {
    let created = target.create(key, body.clone()).await?;
    drill_target(opener, id, key, &body, created, target).await
}

/// The drill of the target: it must give back `body` and open as the share.
async fn drill_target(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    body: &Bytes,
    created: bool,
    target: Target<'_>,
) -> Result<Moved> {
    let stored = target.get(key).await?;
    check_target(opener, id, key, body, created, stored).await
}

/// The drill of the target on what it gave back (`stored`): `body`, opening as the share.
async fn check_target(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    body: &Bytes,
    created: bool,
    stored: Bytes,
) -> Result<Moved> {
    if stored != *body {
        if created {
            return Err(Error::Drill {
                key: key.to_string(),
                reason: "the target store gave back other bytes than were written to it",
            });
        }
        return Ok(Moved::Conflict);
    }
    match open_text(opener, id, key, &stored).await {
        Ok(_) => Ok(if created {
            Moved::Moved
        } else {
            Moved::AlreadyMoved
        }),
        Err(Error::WrongIdentity { .. }) => Err(Error::Drill {
            key: key.to_string(),
            reason: "the copy on the target does not open as its share",
        }),
        Err(e) => Err(e),
    }
}
