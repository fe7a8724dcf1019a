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
use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;
use storage::{BackupKey, PutOptions};

use crate::error::{Error, Result};
use crate::flow::{Flow, OnStore};
use crate::identity::expected_context;

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

/// What happened to one object.
enum Outcome {
    Rewrapped { conflicts: u32 },
    AlreadyCurrent { conflicts: u32 },
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

    /// [`rotate`](Self::rotate) with up to `concurrency` clients in flight (each client's
    /// objects in turn, so that the shares sealed under one data key are rewrapped with one
    /// unwrap and one wrap, and keep one wrapped key).
    ///
    /// # Errors
    /// As [`rotate`](Self::rotate).
    pub async fn rotate_with(
        &self,
        to: &Keyring,
        client_ids: &[String],
        concurrency: usize,
    ) -> Result<RotateReport> {
        self.on_own_store("rotate")?
            .rotate_with(to, client_ids, concurrency)
            .await
    }
}

impl OnStore {
    async fn rotate_with(
        &self,
        to: &Keyring,
        client_ids: &[String],
        concurrency: usize,
    ) -> Result<RotateReport> {
        let caps = self.store.capabilities();
        if !caps.overwrite && !caps.compare_and_swap {
            return Err(Error::Invalid(format!(
                "the {} store cannot replace an object, so it cannot be rotated",
                self.store.name()
            )));
        }
        let current = current_refs(to).await?;
        let concurrency = concurrency.max(1);
        let mut report = RotateReport {
            target_keys: current.iter().map(ToString::to_string).collect(),
            ..RotateReport::default()
        };

        // One client at a time per task: its objects share data keys (the two shares of a
        // backup were sealed under one), which the client's rewrapper unwraps and wraps once.
        let mut clients = std::pin::pin!(
            stream::iter(client_ids)
                .map(|client_id| self.rotate_client(client_id, to, &current))
                .buffer_unordered(concurrency)
        );
        while let Some(done) = clients.next().await {
            for (key, outcome) in done? {
                match outcome {
                    Ok(Outcome::Rewrapped { conflicts }) => {
                        report.rewrapped = report.rewrapped.saturating_add(1);
                        report.conflicts_redone = add(report.conflicts_redone, conflicts);
                    }
                    Ok(Outcome::AlreadyCurrent { conflicts }) => {
                        report.already_current = report.already_current.saturating_add(1);
                        report.conflicts_redone = add(report.conflicts_redone, conflicts);
                    }
                    Err(e) => report.failed.push(RotateFailure {
                        key: key.to_string(),
                        reason: crate::error::cause_chain(&e),
                    }),
                }
            }
        }

        self.rotate_journal(to, &current, &mut report).await?;
        report.not_under_target = self
            .count_not_under(client_ids, &current, concurrency)
            .await?;
        Ok(report)
    }

    /// Every object of one client, in turn, through one [`Rewrapper`].
    async fn rotate_client(
        &self,
        client_id: &str,
        to: &Keyring,
        current: &[KeyRef],
    ) -> Result<Vec<(BackupKey, Result<Outcome>)>> {
        let rewrapper = Rewrapper::new(&self.flow.keyring, to);
        let mut done = Vec::new();
        for key in self.list_client(client_id).await? {
            let outcome = self.rotate_one(&key, &rewrapper, current).await;
            done.push((key, outcome));
        }
        Ok(done)
    }

    async fn rotate_one(
        &self,
        key: &BackupKey,
        rewrapper: &Rewrapper<'_>,
        current: &[KeyRef],
    ) -> Result<Outcome> {
        let context = expected_context(key)?;
        let mut conflicts = 0;
        loop {
            let (stored, form, version) = self.read_versioned(key).await?;
            let info = envelope::inspect(&stored).map_err(|e| Error::WrongIdentity {
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
                return Ok(Outcome::AlreadyCurrent { conflicts });
            }
            let rewrapped = rewrapper
                .rewrap(&stored)
                .await
                .map_err(Error::envelope("rewrapping a stored share"))?;
            let body = encode(&rewrapped, form);
            let options = match version {
                Some(version) => PutOptions::update(version),
                None => PutOptions::overwrite(),
            };
            match self.store.put(key, body, options).await {
                Ok(()) => return Ok(Outcome::Rewrapped { conflicts }),
                Err(e) if e.is_conflict() && conflicts < MAX_CONFLICT_RETRIES => {
                    conflicts = conflicts.saturating_add(1);
                }
                Err(e) => return Err(Error::store("put", key)(e)),
            }
        }
    }

    /// The stored envelope, the form it is stored in, and the version to compare against
    /// when writing it back (where the store can compare).
    async fn read_versioned(
        &self,
        key: &BackupKey,
    ) -> Result<(Vec<u8>, Form, Option<storage::ObjectVersion>)> {
        let (body, version) = if self.store.capabilities().compare_and_swap {
            let (body, version) = self
                .store
                .get_versioned(key)
                .await
                .map_err(Error::store("get", key))?;
            (body, Some(version))
        } else {
            let body = self
                .store
                .get(key)
                .await
                .map_err(Error::store("get", key))?;
            (body, None)
        };
        let (sealed, form) = decode(key, &body)?;
        Ok((sealed, form, version))
    }

    /// Rewraps the sealed shares of every unfinished backup in the journal. A share the store
    /// already holds is taken from the store (rotated above), so that the resumed backup finds
    /// the same bytes there; the others are rewrapped where they are.
    async fn rotate_journal(
        &self,
        to: &Keyring,
        current: &[KeyRef],
        report: &mut RotateReport,
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
                    signing: false,
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
                report.journal_rewrapped = report.journal_rewrapped.saturating_add(1);
            }
            if changed {
                self.flow.journal.replace_shares(&record).await?;
            }
        }
        Ok(())
    }

    /// The proof: how many objects of `client_ids` in the store, and sealed shares in the
    /// journal, carry a wrapped key that is not exactly `current`. Headers only, no KMS call.
    async fn count_not_under(
        &self,
        client_ids: &[String],
        current: &[KeyRef],
        concurrency: usize,
    ) -> Result<usize> {
        // As many clients at once as the rewrap: the proof reads every object again, and one
        // client at a time it would take longer than the rotation itself.
        let mut count = 0usize;
        let mut clients = std::pin::pin!(
            stream::iter(client_ids)
                .map(|client_id| self.count_client_not_under(client_id, current))
                .buffer_unordered(concurrency)
        );
        while let Some(client) = clients.next().await {
            count = count.saturating_add(client?);
        }
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
            let under_target = match self.store.get(&key).await {
                Ok(body) => decode(&key, &body).is_ok_and(|(sealed, _)| {
                    envelope::inspect(&sealed).is_ok_and(|info| info.is_wrapped_only_by(current))
                }),
                // Deleted meanwhile (an older generation of a custodian share): nothing left.
                Err(e) if e.is_not_found() => true,
                Err(e) => return Err(Error::store("get", &key)(e)),
            };
            if !under_target {
                count = count.saturating_add(1);
            }
        }
        Ok(count)
    }
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
