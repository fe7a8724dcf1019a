//! Rotation: rewrap every sealed object a store holds (client backup, client signing and
//! custodian backup shares) under a new keyring, without re-encrypting a share and without a
//! plaintext ever leaving the envelope code; then prove from the envelope headers alone that
//! nothing is left under a key other than the new keyring's current ones.
//!
//! "Current" is what each target KEK says it wraps with *today*
//! ([`KeyEncryptionKey::current_key_ref`](envelope::KeyEncryptionKey::current_key_ref),
//! resolved once per rotation: an AWS alias to its key ARN, a Cloud KMS key to its primary
//! version), never what it merely could open. An alias can open the key it pointed to
//! yesterday; skipping on that would leave every backup under the key being retired.

use bytes::Bytes;
use envelope::{KeyRef, Keyring, Rewrapper};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::Serialize;
use storage::batch::StoredObject;
use storage::{BackupKey, PutOptions, ShareKind, StorageError};

use crate::error::{Error, Result};
use crate::flow::{Flow, OnStore};
use crate::identity::expected_context;
use crate::stages::Stages;

/// How many clients a rotation works on at once, unless told otherwise: enough to keep a
/// KMS with a few milliseconds of latency busy, few enough for its default quotas.
pub const DEFAULT_ROTATE_CONCURRENCY: usize = 16;

/// How many times one object is re-read and rewrapped after a concurrent writer replaced it
/// between our read and our write.
const MAX_CONFLICT_RETRIES: u32 = 3;

/// What [`Flow::rotate`] did.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RotateReport {
    /// Objects rewrapped under the new keyring in this run.
    pub rewrapped: usize,
    /// Objects already wrapped exactly under the new keyring's current keys (an earlier,
    /// interrupted run did them, or a live webhook stored them with the new keys): left alone.
    pub already_current: usize,
    /// Rewrites that found the object replaced since it was read (a live webhook stored a
    /// newer share), and were redone from the newer object.
    pub conflicts_redone: usize,
    /// Sealed shares of unfinished backups in the journal brought under the new keyring, so
    /// that those backups still finish after the rotation.
    pub journal_rewrapped: usize,
    /// Objects that could not be rotated, with why (the rest went on).
    pub failed: Vec<RotateFailure>,
    /// The proof, counted after the rewrap from the envelope headers alone (no KMS call):
    /// objects in the store and sealed shares in the journal that still carry a wrapped key
    /// other than the new keyring's current keys. Zero when the rotation is complete.
    pub not_under_target: usize,
    /// The key references the new keyring wraps with, as resolved at the start.
    pub target_keys: Vec<String>,
}

impl RotateReport {
    /// Whether every object is under the new keyring's current keys and nothing failed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.not_under_target == 0
    }
}

/// One object [`Flow::rotate`] could not rotate.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RotateFailure {
    /// The store key's path form (or the journal record).
    pub key: String,
    /// Why.
    pub reason: String,
}

/// What became of one object of a [`Rotation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Rotated {
    /// Rewrapped under the new keyring in this run.
    #[serde(rename_all = "camelCase")]
    Rewrapped {
        /// Rewrites redone because a concurrent writer replaced the object meanwhile.
        conflicts_redone: u32,
    },
    /// Already wrapped exactly under the new keyring's current keys: left alone.
    #[serde(rename_all = "camelCase")]
    AlreadyCurrent {
        /// Rewrites redone because a concurrent writer replaced the object meanwhile.
        conflicts_redone: u32,
    },
}

/// One client of a [`Rotation`].
#[derive(Debug)]
#[non_exhaustive]
pub struct RotatedClient {
    /// The Portal client id; empty for a failure of the client listing itself.
    pub client_id: String,
    /// What became of each of the client's objects, in the store's listing order; or why
    /// they could not be listed.
    pub objects: Result<Vec<RotatedObject>>,
    /// The proof for this client, counted after its rewrap from the envelope headers alone
    /// (no KMS call): how many of its objects still carry a wrapped key other than the new
    /// keyring's current ones; or why they could not be read again.
    pub not_under_target: Result<usize>,
}

/// One object of a [`RotatedClient`].
#[derive(Debug)]
#[non_exhaustive]
pub struct RotatedObject {
    /// The store key's path form.
    pub key: String,
    /// What became of it, or why it could not be rotated (the others go on).
    pub result: Result<Rotated>,
}

/// What [`Rotation::finish`] did with the journal's unfinished backups.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct JournalRotation {
    /// Sealed shares brought under the new keyring.
    pub rewrapped: usize,
    /// Shares that could not be.
    pub failed: Vec<RotateFailure>,
    /// Sealed shares of the journal still not under the new keyring's current keys.
    pub not_under_target: usize,
}

/// A rotation under way: the new keyring, with the keys it wraps with resolved once. Made by
/// [`Flow::rotation`]; [`run`](Self::run) it over a client listing (streamed), then
/// [`finish`](Self::finish) it.
#[derive(Debug)]
pub struct Rotation {
    on: OnStore,
    to: Keyring,
    current: Vec<KeyRef>,
}

impl Rotation {
    /// The key references the new keyring wraps with, as resolved at the start.
    #[must_use]
    pub fn target_keys(&self) -> Vec<String> {
        self.current.iter().map(ToString::to_string).collect()
    }

    /// Rotates every client of `clients` (a listing, possibly streamed: work starts with the
    /// first client and only the clients in flight are held), as a stream of one result per
    /// client in the order they finish. Each client's objects go in turn through one
    /// [`Rewrapper`], so the shares sealed under one data key are rewrapped with one unwrap
    /// and one wrap and keep one wrapped key; then the client's proof is counted. A failed
    /// object, client or listing item is reported in its item and the others go on.
    ///
    /// At most `concurrency` clients are at the KMS at once (`0` counts as 1), and meanwhile
    /// at most `concurrency` store steps (a client's reads, its writes, its proof) of other
    /// clients are in flight: twice `concurrency` clients in all, so that the store works on
    /// some while the KMS works on others.
    pub fn run<'a, S>(
        &'a self,
        clients: S,
        concurrency: usize,
    ) -> impl Stream<Item = RotatedClient> + Send + 'a
    where
        S: Stream<Item = std::result::Result<String, StorageError>> + Send + 'a,
    {
        let batch = self.on.store.batch_size();
        Stages::run_batches(
            concurrency,
            batch,
            clients,
            move |listed, stages| async move { self.batch(listed, &stages).await },
        )
        .flat_map(stream::iter)
    }

    /// Rewraps the sealed shares of every unfinished backup in the journal (after the store:
    /// a share the store holds is taken from there, so that the resumed backup finds the same
    /// bytes), and counts those still not under the new keys.
    ///
    /// # Errors
    /// The journal could not be read or written, or the store failed.
    pub async fn finish(&self) -> Result<JournalRotation> {
        let mut done = JournalRotation::default();
        self.on
            .rotate_journal(&self.to, &self.current, &mut done)
            .await?;
        done.not_under_target = self.on.count_journal_not_under(&self.current).await?;
        Ok(done)
    }

    /// A batch of clients ([`BackupStore::batch_size`](storage::BackupStore::batch_size) of
    /// them; one where the store gains nothing from batches): their objects read in one
    /// store call (a store step); each client's rewrapped through one [`Rewrapper`] (a KMS
    /// step per client, so the shares sealed under one data key are rewrapped with one
    /// unwrap and one wrap and keep one wrapped key); then written back in one store call
    /// and read again for the proof (one more store step). See [`Stages`].
    async fn batch(
        &self,
        listed: Vec<std::result::Result<String, StorageError>>,
        stages: &Stages,
    ) -> Vec<RotatedClient> {
        let (ids, failed) = crate::stages::split_listed(listed);
        let mut done: Vec<RotatedClient> = failed
            .into_iter()
            .map(|source| RotatedClient {
                client_id: String::new(),
                objects: Err(Error::client_listing(source)),
                not_under_target: Ok(0),
            })
            .collect();
        if ids.is_empty() {
            return done;
        }
        let read = stages.store(self.on.store.read_clients(&ids)).await;
        let planned = futures_util::future::join_all(
            ids.into_iter()
                .zip(read)
                .map(|(client_id, objects)| self.plan_client(client_id, objects, stages)),
        )
        .await;
        let (written, proofs) = stages.store(self.write_and_prove(planned)).await;
        for (client, proof) in written.into_iter().zip(proofs) {
            done.push(self.settle(client, proof, stages).await);
        }
        done
    }

    /// One client's objects as read, each planned through one [`Rewrapper`] (a KMS step).
    async fn plan_client<'s>(
        &'s self,
        client_id: String,
        objects: storage::batch::ClientObjects,
        stages: &Stages,
    ) -> PlannedClient<'s> {
        let rewrapper = Rewrapper::new(&self.on.flow.keyring, &self.to);
        let objects = match objects {
            Ok(objects) => objects,
            // Nothing was listed, so nothing was rotated: the proof would fail the same way.
            Err(e) => {
                return PlannedClient {
                    client_id: client_id.clone(),
                    rewrapper,
                    steps: Err(Error::store_listing(&client_id, e)),
                };
            }
        };
        let steps = stages
            .kms(async {
                let mut steps = Vec::with_capacity(objects.len());
                for (key, object) in objects {
                    let step = match object
                        .map_err(Error::store("get", &key))
                        .and_then(|object| Versioned::of(&key, object))
                    {
                        Ok(object) => plan(&key, object, &rewrapper, &self.current).await,
                        Err(e) => Err(e),
                    };
                    steps.push((key, step));
                }
                steps
            })
            .await;
        PlannedClient {
            client_id,
            rewrapper,
            steps: Ok(steps),
        }
    }

    /// Writes back every planned rewrap of a batch in one store call, replacing only the
    /// versions that were read; then reads again, in one call, the clients whose every object
    /// is settled (none to be redone after a conflict), and counts their proof.
    async fn write_and_prove<'s>(
        &self,
        planned: Vec<PlannedClient<'s>>,
    ) -> (Vec<WrittenClient<'s>>, Vec<Option<Result<usize>>>) {
        let puts: Vec<storage::batch::Put> = planned
            .iter()
            .filter_map(|client| client.steps.as_ref().ok())
            .flatten()
            .filter_map(|(key, step)| match step {
                Ok(Step::Write { body, options }) => {
                    Some((key.clone(), body.clone(), options.clone()))
                }
                _ => None,
            })
            .collect();
        // One result per put, in the order the puts were taken from the steps.
        let mut results = self.on.store.put_many(puts).await.into_iter();
        let written: Vec<WrittenClient<'s>> = planned
            .into_iter()
            .map(|client| WrittenClient {
                client_id: client.client_id,
                rewrapper: client.rewrapper,
                objects: client.steps.map(|steps| {
                    steps
                        .into_iter()
                        .map(|(key, step)| {
                            let outcome = match step {
                                Ok(Step::Current) => Ok(Written::current()),
                                Ok(Step::Write { .. }) => match results.next() {
                                    Some(result) => Written::of(&key, result),
                                    None => Err(Error::unanswered_put(self.on.store.name())),
                                },
                                Err(e) => Err(e),
                            };
                            (key, outcome)
                        })
                        .collect()
                }),
            })
            .collect();
        // The proof comes after every object of a client is settled: not yet if one is to be
        // redone.
        let proofs = if self.on.store.batch_size() <= 1 {
            let mut proofs = Vec::with_capacity(written.len());
            for client in &written {
                proofs.push(match client.is_settled() {
                    true => Some(self.count_not_under(&client.client_id).await),
                    false => None,
                });
            }
            proofs
        } else {
            self.prove_batch(&written).await
        };
        (written, proofs)
    }

    /// The proof of every settled client of a batch, read again in one store call.
    async fn prove_batch(&self, written: &[WrittenClient<'_>]) -> Vec<Option<Result<usize>>> {
        let settled: Vec<String> = written
            .iter()
            .filter(|client| client.is_settled())
            .map(|client| client.client_id.clone())
            .collect();
        let mut reread = self.on.store.read_clients(&settled).await.into_iter();
        written
            .iter()
            .map(|client| {
                if !client.is_settled() {
                    return None;
                }
                Some(match reread.next() {
                    Some(objects) => count_not_under(&client.client_id, objects, &self.current),
                    None => Err(Error::Invalid(format!(
                        "the {} store answered fewer clients than it was asked",
                        self.on.store.name()
                    ))),
                })
            })
            .collect()
    }

    /// One client of a batch, finished: the objects a concurrent writer replaced since they
    /// were read are redone from the newer object (rare enough to go in turn), then its proof
    /// is counted if the batch could not.
    async fn settle(
        &self,
        client: WrittenClient<'_>,
        proof: Option<Result<usize>>,
        stages: &Stages,
    ) -> RotatedClient {
        let WrittenClient {
            client_id,
            rewrapper,
            objects,
        } = client;
        let written = match objects {
            Ok(written) => written,
            Err(e) => {
                return RotatedClient {
                    client_id,
                    objects: Err(e),
                    not_under_target: Ok(0),
                };
            }
        };
        let mut objects = Vec::with_capacity(written.len());
        for (key, outcome) in written {
            let result = match outcome {
                Ok(Written::Done(rotated)) => Ok(rotated),
                Ok(Written::Conflict) => {
                    stages
                        .kms(self.on.rotate_one(&key, &rewrapper, &self.current, 1))
                        .await
                }
                Err(e) => Err(e),
            };
            objects.push(RotatedObject {
                key: key.to_string(),
                result,
            });
        }
        let not_under_target = match proof {
            Some(proof) => proof,
            None => stages.store(self.count_not_under(&client_id)).await,
        };
        RotatedClient {
            client_id,
            objects: Ok(objects),
            not_under_target,
        }
    }

    /// The proof for one client (see [`RotatedClient::not_under_target`]).
    async fn count_not_under(&self, client_id: &str) -> Result<usize> {
        self.on
            .count_client_not_under(client_id, &self.current)
            .await
    }
}

impl Flow {
    /// Rewraps every sealed object the store holds for `client_ids` (client backup, client
    /// signing and custodian backup shares, each checked against its own identity first) so
    /// that exactly the KEKs of `to` can open them; this flow's keyring opens the old ones.
    /// Then rewraps the journal's unfinished backups, and counts what is still not under
    /// `to`'s current keys ([`RotateReport::not_under_target`]).
    ///
    /// Resumable: an object already wrapped exactly by `to`'s current keys is skipped, so
    /// running it again after an interruption finishes the rest. Where the store can compare
    /// (`Capabilities::compare_and_swap`), a rewrite replaces only the object that was read,
    /// so a share a live webhook stored meanwhile is never replaced by the older one; on a
    /// store that cannot, stop the webhook during the rotation.
    ///
    /// # Errors
    /// [`Error::Invalid`] without a store of your own; a store that cannot list or
    /// overwrite, a KEK of `to` that cannot say which key it wraps with. A single object that fails is reported in [`RotateReport::failed`] and
    /// the others go on.
    pub async fn rotate(&self, to: &Keyring, client_ids: &[String]) -> Result<RotateReport> {
        self.rotate_with(to, client_ids, DEFAULT_ROTATE_CONCURRENCY)
            .await
    }

    /// [`rotate`](Self::rotate) with up to `concurrency` clients at the KMS and `concurrency`
    /// store steps of other clients in flight (see [`Rotation::run`]; each client's objects
    /// in turn, so that the shares sealed under one data key are rewrapped with one unwrap
    /// and one wrap, and keep one wrapped key).
    ///
    /// # Errors
    /// As [`rotate`](Self::rotate).
    pub async fn rotate_with(
        &self,
        to: &Keyring,
        client_ids: &[String],
        concurrency: usize,
    ) -> Result<RotateReport> {
        let rotation = self.rotation(to).await?;
        let mut report = RotateReport {
            target_keys: rotation.target_keys(),
            ..RotateReport::default()
        };
        let listing = stream::iter(client_ids.iter().cloned().map(Ok));
        let mut clients = std::pin::pin!(rotation.run(listing, concurrency));
        while let Some(client) = clients.next().await {
            report.add(client);
        }
        let journal = rotation.finish().await?;
        report.journal_rewrapped = journal.rewrapped;
        report.failed.extend(journal.failed);
        report.not_under_target = report
            .not_under_target
            .saturating_add(journal.not_under_target);
        Ok(report)
    }

    /// A rotation of this flow's store to `to`, to [`run`](Rotation::run) over a streamed
    /// listing (see [`rotate`](Self::rotate)); this flow's keyring opens the old objects.
    ///
    /// # Errors
    /// [`Error::Invalid`] without a store of your own, or a store that cannot replace an
    /// object; a KEK of `to` that cannot say which key it wraps with.
    pub async fn rotation(&self, to: &Keyring) -> Result<Rotation> {
        let on = self.on_own_store("rotate")?;
        let caps = on.store.capabilities();
        if !caps.overwrite && !caps.compare_and_swap {
            return Err(Error::Invalid(format!(
                "the {} store cannot replace an object, so it cannot be rotated",
                on.store.name()
            )));
        }
        let current = current_refs(to).await?;
        Ok(Rotation {
            on,
            to: to.clone(),
            current,
        })
    }
}

impl RotateReport {
    /// Counts one client of a [`Rotation`] in.
    fn add(&mut self, client: RotatedClient) {
        let failure = |key: String, e: &Error| RotateFailure {
            key,
            reason: crate::error::cause_chain(e),
        };
        match client.objects {
            Ok(objects) => {
                for object in objects {
                    match object.result {
                        Ok(Rotated::Rewrapped { conflicts_redone }) => {
                            self.rewrapped = self.rewrapped.saturating_add(1);
                            self.conflicts_redone = add(self.conflicts_redone, conflicts_redone);
                        }
                        Ok(Rotated::AlreadyCurrent { conflicts_redone }) => {
                            self.already_current = self.already_current.saturating_add(1);
                            self.conflicts_redone = add(self.conflicts_redone, conflicts_redone);
                        }
                        Err(e) => self.failed.push(failure(object.key, &e)),
                    }
                }
            }
            Err(e) => self.failed.push(failure(client.client_id.clone(), &e)),
        }
        match client.not_under_target {
            Ok(count) => self.not_under_target = self.not_under_target.saturating_add(count),
            Err(e) => self.failed.push(failure(client.client_id, &e)),
        }
    }
}

impl OnStore {
    /// Writes back what [`plan`] decided, replacing only the version that was read.
    async fn write_planned(&self, key: &BackupKey, step: Step) -> Result<Written> {
        match step {
            Step::Current => Ok(Written::current()),
            Step::Write { body, options } => {
                Written::of(key, self.store.put(key, body, options).await)
            }
        }
    }

    /// Reads, rewraps and writes back one object until no concurrent writer replaced it
    /// meanwhile (at most [`MAX_CONFLICT_RETRIES`] redos, `conflicts_redone` of them done).
    async fn rotate_one(
        &self,
        key: &BackupKey,
        rewrapper: &Rewrapper<'_>,
        current: &[KeyRef],
        mut conflicts_redone: u32,
    ) -> Result<Rotated> {
        loop {
            let object = self.read_versioned(key).await?;
            let step = plan(key, object, rewrapper, current).await?;
            match self.write_planned(key, step).await? {
                Written::Done(rotated) => return Ok(rotated.redone(conflicts_redone)),
                Written::Conflict if conflicts_redone < MAX_CONFLICT_RETRIES => {
                    conflicts_redone = conflicts_redone.saturating_add(1);
                }
                Written::Conflict => {
                    return Err(Error::store("put", key)(StorageError::Conflict {
                        key: key.clone(),
                    }));
                }
            }
        }
    }

    /// The stored envelope, the form it is stored in, and the version to compare against
    /// when writing it back (where the store can compare).
    async fn read_versioned(&self, key: &BackupKey) -> Result<Versioned> {
        let object = if self.store.capabilities().compare_and_swap {
            let (body, version) = self
                .store
                .get_versioned(key)
                .await
                .map_err(Error::store("get", key))?;
            StoredObject::new(body, Some(version))
        } else {
            let body = self
                .store
                .get(key)
                .await
                .map_err(Error::store("get", key))?;
            StoredObject::new(body, None)
        };
        Versioned::of(key, object)
    }

    /// Rewraps the sealed shares of every unfinished backup in the journal. A share the store
    /// already holds is taken from the store (rotated above), so that the resumed backup finds
    /// the same bytes there; the others are rewrapped where they are.
    async fn rotate_journal(
        &self,
        to: &Keyring,
        current: &[KeyRef],
        report: &mut JournalRotation,
    ) -> Result<()> {
        for mut record in self.flow.journal.unfinished().await? {
            let rewrapper = Rewrapper::new(&self.flow.keyring, to);
            let mut changed = false;
            for share in &mut record.shares {
                let sealed = match envelope::from_text(&share.ciphertext) {
                    Ok(sealed) => sealed,
                    Err(e) => {
                        report
                            .failed
                            .push(journal_failure(&record.backup_id, &e.into()));
                        continue;
                    }
                };
                if envelope::inspect(&sealed).is_ok_and(|info| info.is_wrapped_only_by(current)) {
                    continue;
                }
                let key = crate::identity::ShareId {
                    client_id: &record.client_id,
                    pair_id: &share.backup_share_pair_id,
                    curve: &share.curve,
                    kind: ShareKind::ClientBackup,
                }
                .key()?;
                let in_store = match self.store.get(&key).await {
                    Ok(body) => Some(body),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(Error::store("get", &key)(e)),
                };
                let text = match in_store {
                    Some(body) => String::from_utf8(body.to_vec()).map_err(|_| Error::Drill {
                        key: key.to_string(),
                        reason: "the stored object is not an envelope",
                    })?,
                    None => match rewrapper.rewrap(&sealed).await {
                        Ok(rewrapped) => envelope::to_text(&rewrapped),
                        Err(e) => {
                            report.failed.push(journal_failure(&record.backup_id, &e));
                            continue;
                        }
                    },
                };
                share.ciphertext = text;
                changed = true;
                report.rewrapped = report.rewrapped.saturating_add(1);
            }
            if changed {
                self.flow.journal.replace_shares(&record).await?;
            }
        }
        Ok(())
    }

    /// The journal's part of the proof: how many sealed shares of unfinished backups carry a
    /// wrapped key that is not exactly `current`. Headers only, no KMS call.
    async fn count_journal_not_under(&self, current: &[KeyRef]) -> Result<usize> {
        let mut count = 0usize;
        for record in self.flow.journal.unfinished().await? {
            for share in &record.shares {
                let under_target = envelope::from_text(&share.ciphertext).is_ok_and(|sealed| {
                    envelope::inspect(&sealed).is_ok_and(|info| info.is_wrapped_only_by(current))
                });
                if !under_target {
                    count = count.saturating_add(1);
                }
            }
        }
        Ok(count)
    }

    /// How many objects of one client carry a wrapped key that is not exactly `current`.
    async fn count_client_not_under(&self, client_id: &str, current: &[KeyRef]) -> Result<usize> {
        let mut count = 0usize;
        for key in self.list_client(client_id).await? {
            if !read_is_under(&key, self.store.get(&key).await, current)? {
                count = count.saturating_add(1);
            }
        }
        Ok(count)
    }
}

/// Whether what was read under `key` for the proof is wrapped exactly by `current` (headers
/// only); an object deleted meanwhile (an older generation of a custodian share) leaves
/// nothing behind, so it counts as under.
fn read_is_under(
    key: &BackupKey,
    read: std::result::Result<Bytes, StorageError>,
    current: &[KeyRef],
) -> Result<bool> {
    match read {
        Ok(body) => Ok(decode(key, &body).is_ok_and(|(sealed, _)| {
            envelope::inspect(&sealed).is_ok_and(|info| info.is_wrapped_only_by(current))
        })),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(Error::store("get", key)(e)),
    }
}

/// The proof for one client as read: how many of its objects carry a wrapped key that is
/// not exactly `current` (headers only, no KMS call).
fn count_not_under(
    client_id: &str,
    objects: storage::batch::ClientObjects,
    current: &[KeyRef],
) -> Result<usize> {
    let mut count = 0usize;
    for (key, object) in objects.map_err(|e| Error::store_listing(client_id, e))? {
        if !read_is_under(&key, object.map(|object| object.body), current)? {
            count = count.saturating_add(1);
        }
    }
    Ok(count)
}

/// One client of a batch, planned: each object's step, and the [`Rewrapper`] that made
/// them (kept to redo a conflict with the data keys it has already unwrapped).
struct PlannedClient<'s> {
    client_id: String,
    rewrapper: Rewrapper<'s>,
    steps: Result<Vec<(BackupKey, Result<Step>)>>,
}

/// One client of a batch, written back.
struct WrittenClient<'s> {
    client_id: String,
    rewrapper: Rewrapper<'s>,
    objects: Result<Vec<(BackupKey, Result<Written>)>>,
}

impl WrittenClient<'_> {
    /// Listed, and no object to be redone after a conflict.
    fn is_settled(&self) -> bool {
        self.objects.as_ref().is_ok_and(|objects| {
            !objects
                .iter()
                .any(|(_, outcome)| matches!(outcome, Ok(Written::Conflict)))
        })
    }
}

/// A stored object as read: its envelope, the form it is stored in, and the version to
/// compare against when writing it back (where the store can compare).
struct Versioned {
    sealed: Vec<u8>,
    form: Form,
    version: Option<storage::ObjectVersion>,
}

impl Versioned {
    /// The envelope of `object`, stored under `key`.
    fn of(key: &BackupKey, object: StoredObject) -> Result<Self> {
        let (sealed, form) = decode(key, &object.body)?;
        Ok(Self {
            sealed,
            form,
            version: object.version,
        })
    }
}

/// What to do with one object: leave it, or write this rewrap in its place.
enum Step {
    Current,
    Write { body: Bytes, options: PutOptions },
}

/// What came of writing a [`Step`].
enum Written {
    Done(Rotated),
    /// A concurrent writer replaced the object since it was read.
    Conflict,
}

impl Written {
    /// Left alone: already under the new keys.
    fn current() -> Self {
        Self::Done(Rotated::AlreadyCurrent {
            conflicts_redone: 0,
        })
    }

    /// What the put of a rewrap of `key` came to.
    fn of(key: &BackupKey, put: std::result::Result<(), StorageError>) -> Result<Self> {
        match put {
            Ok(()) => Ok(Self::Done(Rotated::Rewrapped {
                conflicts_redone: 0,
            })),
            Err(e) if e.is_conflict() => Ok(Self::Conflict),
            Err(e) => Err(Error::store("put", key)(e)),
        }
    }
}

impl Rotated {
    fn redone(self, conflicts: u32) -> Self {
        match self {
            Self::Rewrapped { .. } => Self::Rewrapped {
                conflicts_redone: conflicts,
            },
            Self::AlreadyCurrent { .. } => Self::AlreadyCurrent {
                conflicts_redone: conflicts,
            },
        }
    }
}

/// Checks that `object` is sealed for the share `key` names, and rewraps it unless it is
/// already wrapped exactly by `current` (KMS calls, through `rewrapper`).
async fn plan(
    key: &BackupKey,
    object: Versioned,
    rewrapper: &Rewrapper<'_>,
    current: &[KeyRef],
) -> Result<Step> {
    let context = expected_context(key)?;
    let info = envelope::inspect(&object.sealed).map_err(|e| Error::WrongIdentity {
        key: key.to_string(),
        source: envelope::Error::from(e),
    })?;
    if info.context != context {
        return Err(Error::Drill {
            key: key.to_string(),
            reason: "the object is sealed for another share than the one it is stored as",
        });
    }
    if info.is_wrapped_only_by(current) {
        return Ok(Step::Current);
    }
    let rewrapped = rewrapper
        .rewrap(&object.sealed)
        .await
        .map_err(Error::envelope("rewrapping a stored share"))?;
    let options = match object.version {
        Some(version) => PutOptions::update(version),
        None => PutOptions::overwrite(),
    };
    Ok(Step::Write {
        body: encode(&rewrapped, object.form),
        options,
    })
}

/// The key reference each KEK of `to` wraps with today, resolved once (an alias to its key,
/// a Cloud KMS key to its primary version).
async fn current_refs(to: &Keyring) -> Result<Vec<KeyRef>> {
    if to.is_empty() {
        return Err(Error::Invalid(
            "rotate needs at least one key-encryption key to rotate to".into(),
        ));
    }
    to.current_key_refs().await.map_err(|e| {
        Error::envelope("finding the key the new keyring wraps with")(envelope::Error::Kms(e))
    })
}

/// How an object is stored: client shares in the text form (`pbe1.…`, what Portal's
/// `clientCipherText` takes), custodian shares as the binary envelope the webhook's vault
/// writes. A rewrap is written back in the form it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Text,
    Binary,
}

/// A stored object's envelope bytes, and the form it is stored in.
fn decode(key: &BackupKey, body: &[u8]) -> Result<(Vec<u8>, Form)> {
    if !body.starts_with(envelope::TEXT_PREFIX.as_bytes()) {
        return Ok((body.to_vec(), Form::Binary));
    }
    let text = std::str::from_utf8(body).map_err(|_| Error::Drill {
        key: key.to_string(),
        reason: "the stored object is not an envelope",
    })?;
    let sealed = envelope::from_text(text).map_err(|e| Error::WrongIdentity {
        key: key.to_string(),
        source: e.into(),
    })?;
    Ok((sealed, Form::Text))
}

fn encode(sealed: &[u8], form: Form) -> Bytes {
    match form {
        Form::Text => Bytes::from(envelope::to_text(sealed).into_bytes()),
        Form::Binary => Bytes::copy_from_slice(sealed),
    }
}

fn journal_failure(backup_id: &str, e: &envelope::Error) -> RotateFailure {
    RotateFailure {
        key: format!("journal backup {backup_id}"),
        reason: e.to_string(),
    }
}

fn add(total: usize, more: u32) -> usize {
    total.saturating_add(usize::try_from(more).unwrap_or(usize::MAX))
}
