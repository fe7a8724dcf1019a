//! Backup: `/v1/backup`, seal, store, restore drill, and only then confirm to Portal.

use bytes::Bytes;
use envelope::{Opener, Sealer};
use portal_api::SharePairUpdateStatus;
use portal_api::client_api::SharePairStatusUpdate;
use portal_api::mpc::GenerateResponse;
use serde::Serialize;
use storage::{BackupStoreExt as _, PutOptions, ShareKind, StorageError};

use crate::error::{Error, Result};
use crate::flow::ClientFlow;
use crate::identity::ShareId;
use crate::journal::{BackupRecord, Journal, SealedShare, Step};

/// What a backup did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BackupOutcome {
    /// The Portal client id.
    pub client_id: String,
    /// The journal's id of this backup (the same generate response gives the same id).
    pub backup_id: String,
    /// The backup share pair ids, keyed by curve (`SECP256K1`, `ED25519`).
    pub backup_share_pair_ids: std::collections::BTreeMap<String, String>,
    /// The store's name (`portal`, `fs`, …).
    pub store: &'static str,
    /// `confirmed`.
    pub status: &'static str,
    /// The step this run resumed after, when an earlier run was interrupted.
    pub resumed_after: Option<&'static str>,
    /// Whether an earlier run had already confirmed this backup (nothing was done).
    pub already_confirmed: bool,
    /// Whether that was learnt from Portal and the store rather than from the journal (a
    /// fresh state directory): the client's newest completed backup of every curve is stored
    /// and opens as itself, so no new `/v1/backup` was asked for.
    pub found_at_portal: bool,
    /// How many times `/v1/backup` was called for this backup in all runs.
    pub backup_requests: u32,
}

impl ClientFlow {
    /// Backs up the client's shares from `generate` (the `/v1/generate` response of the
    /// client's current signing shares).
    ///
    /// Never marks a pair stored before its ciphertext is durably stored and has been read
    /// back, opened and compared (the restore drill). Every step is journaled: running the
    /// same backup again after a failure or a crash continues it, without a new `/v1/backup`
    /// unless the previous answer was never recorded.
    ///
    /// # Errors
    /// The failing step's [`Error`]; what was done so far stays in the journal.
    pub async fn backup(&self, generate: &GenerateResponse) -> Result<BackupOutcome> {
        self.backup_tracked(generate, &mut None).await
    }

    /// [`backup`](Self::backup), telling `client_id` who the client is as soon as Portal
    /// says, so that a failure after that point can still be reported with the client's id.
    pub(crate) async fn backup_tracked(
        &self,
        generate: &GenerateResponse,
        client_id: &mut Option<String>,
    ) -> Result<BackupOutcome> {
        let me = self
            .client
            .client_me()
            .await
            .map_err(Error::portal("GET", portal_api::paths::CLIENT_ME))?;
        *client_id = Some(me.id.clone());
        let signing_ids = generate.ids();
        if signing_ids.is_empty() {
            return Err(Error::Invalid(
                "the generate response holds no share".into(),
            ));
        }
        let backup_id = Journal::backup_id(&me.id, &signing_ids);
        let mut record = match self.on.flow.journal.load(&backup_id).await? {
            Some(record) => record,
            None => BackupRecord {
                version: 1,
                client_id: me.id.clone(),
                backup_id: backup_id.clone(),
                step: Step::Requested,
                backup_requests: 0,
                shares: Vec::new(),
            },
        };
        if record.backup_requests == 0
            && !self.on.flow.force_new_backup
            && let Some(found) = self.backed_up_at_portal(&me, generate, &backup_id).await?
        {
            tracing::info!(client = %me.id, "already backed up: Portal and the store agree");
            return Ok(found);
        }
        let resumed_after = (record.backup_requests > 0).then_some(record.step.as_str());
        let already_confirmed = record.step == Step::Confirmed;
        tracing::info!(client = %me.id, backup = %backup_id, step = record.step.as_str(), "backup");

        // The plaintext shares stay in memory only during this run, for the drill.
        let mut fresh = None;
        if record.step == Step::Requested {
            // The KMS round trip comes first: if the KMS is down, Portal is not asked for a
            // backup whose shares could not then be sealed (their pairs would be orphaned).
            // After `/v1/backup` answers, sealing is local and cannot be unavailable.
            let sealer = Sealer::new(
                &self.on.flow.keyring,
                ShareId::kek_context(&me.id, ShareKind::ClientBackup)?,
            )
            .await
            .map_err(Error::envelope("wrapping the backup's data key"))?;
            record.backup_requests = record.backup_requests.saturating_add(1);
            self.on.flow.journal.record(&record).await?;
            let shares = self
                .client
                .backup(generate)
                .await
                .map_err(Error::portal("POST", portal_api::paths::MPC_BACKUP))?;
            record.shares = seal_backup(&sealer, &me.id, &shares)?;
            record.step = Step::Sealed;
            self.on.flow.journal.record(&record).await?;
            fresh = Some(shares);
        }
        self.finish(&mut record, fresh.as_ref()).await?;
        Ok(BackupOutcome {
            client_id: record.client_id.clone(),
            backup_id,
            backup_share_pair_ids: record
                .shares
                .iter()
                .map(|s| (s.curve.as_str().to_owned(), s.backup_share_pair_id.clone()))
                .collect(),
            store: self.on.store.name(),
            status: Step::Confirmed.as_str(),
            resumed_after: if already_confirmed {
                None
            } else {
                resumed_after
            },
            already_confirmed,
            found_at_portal: false,
            backup_requests: record.backup_requests,
        })
    }

    /// Takes a sealed backup the rest of the way: store, restore drill, confirm to Portal.
    /// Each step runs only if the record has not passed it, and is journaled when done.
    pub(crate) async fn finish(
        &self,
        record: &mut BackupRecord,
        fresh: Option<&portal_api::mpc::BackupResponse>,
    ) -> Result<()> {
        if record.step == Step::Sealed {
            self.store_sealed(record).await?;
            record.step = Step::Stored;
            self.on.flow.journal.record(record).await?;
        }
        if record.step == Step::Stored {
            self.restore_drill(record, fresh).await?;
            record.step = Step::Verified;
            self.on.flow.journal.record(record).await?;
        }
        if record.step == Step::Verified {
            let ids = record
                .shares
                .iter()
                .map(|s| s.backup_share_pair_id.clone())
                .collect();
            self.confirm_stored(ids).await?;
            record.step = Step::Confirmed;
            self.on.flow.journal.record(record).await?;
        }
        Ok(())
    }

    /// Tells Portal the client ciphertexts of these pairs are durably stored
    /// (`STORED_CLIENT_BACKUP_SHARE`): only after they were stored and drilled.
    pub(crate) async fn confirm_stored(&self, backup_share_pair_ids: Vec<String>) -> Result<()> {
        self.client
            .update_backup_share_pairs(&SharePairStatusUpdate::backup(
                backup_share_pair_ids,
                SharePairUpdateStatus::StoredClientBackupShare,
            ))
            .await
            .map_err(Error::portal(
                "PATCH",
                portal_api::paths::BACKUP_SHARE_PAIRS,
            ))
    }

    /// What the systems of record say when the journal knows nothing of this backup (a
    /// fresh state directory): if, for every curve of `generate`, the client's newest
    /// completed backup pair has a ciphertext in the store that opens as that share (and,
    /// with a custodian store, a custodian share is there), the backup is done already.
    /// `None` when anything is missing: then a new backup is the way to make it whole.
    async fn backed_up_at_portal(
        &self,
        me: &portal_api::client_api::ClientDetails,
        generate: &GenerateResponse,
        backup_id: &str,
    ) -> Result<Option<BackupOutcome>> {
        let opener = Opener::new(&self.on.flow.keyring);
        let mut pairs = std::collections::BTreeMap::new();
        for (curve, _) in generate.iter() {
            let Some(pair) = me
                .wallets
                .iter()
                .filter(|w| w.curve == curve)
                .find_map(|w| w.latest_completed_backup_pair())
            else {
                return Ok(None);
            };
            // The restore drill `verify` runs: stored, and opens as this very share.
            let check = self.on.check(&opener, &me.id, &curve, &pair.id).await?;
            if check.finding != crate::verify::Finding::Ok {
                return Ok(None);
            }
            pairs.insert(curve.as_str().to_owned(), pair.id.clone());
        }
        if let Some(custodian) = &self.on.flow.custodian_store {
            let held = custodian
                .list(&me.id)
                .await
                .map_err(|e| Error::store_listing(&me.id, e))?
                .iter()
                .any(|k| k.kind() == ShareKind::CustodianBackup);
            if !held {
                return Ok(None);
            }
        }
        Ok(Some(BackupOutcome {
            client_id: me.id.clone(),
            backup_id: backup_id.to_owned(),
            backup_share_pair_ids: pairs,
            store: self.on.store.name(),
            status: Step::Confirmed.as_str(),
            resumed_after: None,
            already_confirmed: true,
            found_at_portal: true,
            backup_requests: 0,
        }))
    }

    /// Stores each sealed share, create-only where the store can: a ciphertext already there
    /// is accepted only if it is byte-for-byte the one recorded (a resumed run), never
    /// overwritten.
    async fn store_sealed(&self, record: &BackupRecord) -> Result<()> {
        let options = if self.on.store.capabilities().conditional_create {
            PutOptions::create()
        } else {
            PutOptions::overwrite()
        };
        for share in &record.shares {
            let key = share_id(record, share).key()?;
            let body = Bytes::from(share.ciphertext.clone().into_bytes());
            match self.on.store.put(&key, body, options.clone()).await {
                Ok(()) => {}
                Err(StorageError::AlreadyExists { .. }) => {
                    let stored = self
                        .on
                        .store
                        .get(&key)
                        .await
                        .map_err(Error::store("get", &key))?;
                    if stored != share.ciphertext.as_bytes() {
                        return Err(Error::Conflict {
                            key: key.to_string(),
                        });
                    }
                }
                Err(e) => return Err(Error::store("put", &key)(e)),
            }
        }
        Ok(())
    }

    /// Reads every stored ciphertext back, checks it is the one sealed, opens it under its
    /// identity and, when this run still holds the shares, compares them.
    async fn restore_drill(
        &self,
        record: &BackupRecord,
        fresh: Option<&portal_api::mpc::BackupResponse>,
    ) -> Result<()> {
        let opener = Opener::new(&self.on.flow.keyring);
        for share in &record.shares {
            let id = share_id(record, share);
            let key = id.key()?;
            let stored = self
                .on
                .store
                .get_opt(&key)
                .await
                .map_err(Error::store("get", &key))?
                .ok_or_else(|| Error::Drill {
                    key: key.to_string(),
                    reason: "nothing is stored",
                })?;
            if stored != share.ciphertext.as_bytes() {
                return Err(Error::Drill {
                    key: key.to_string(),
                    reason: "the stored bytes differ from the sealed ciphertext",
                });
            }
            let opened = open_text(&opener, &id, &key, &stored).await?;
            if let Some(original) = fresh.and_then(|f| f.get(&share.curve))
                && opened.expose_secret() != original.share.expose_secret().as_bytes()
            {
                return Err(Error::Drill {
                    key: key.to_string(),
                    reason: "the opened share differs from Portal's",
                });
            }
        }
        Ok(())
    }
}

/// Seals every share of a backup under the sealer's one data key (wrapped already: no KMS
/// round trip here).
fn seal_backup(
    sealer: &Sealer,
    client_id: &str,
    shares: &portal_api::mpc::BackupResponse,
) -> Result<Vec<SealedShare>> {
    if shares.iter().next().is_none() {
        return Err(Error::Unexpected("/v1/backup returned no share".into()));
    }
    shares
        .iter()
        .map(|(curve, share)| {
            let id = ShareId {
                client_id,
                pair_id: &share.id,
                curve: &curve,
                kind: ShareKind::ClientBackup,
            };
            let sealed = sealer
                .seal(&id.context()?, share.share.expose_secret().as_bytes())
                .map_err(Error::envelope("sealing a backup share"))?;
            Ok(SealedShare {
                curve: curve.clone(),
                backup_share_pair_id: share.id.clone(),
                ciphertext: envelope::to_text(&sealed),
            })
        })
        .collect()
}

pub(crate) fn share_id<'a>(record: &'a BackupRecord, share: &'a SealedShare) -> ShareId<'a> {
    ShareId {
        client_id: &record.client_id,
        pair_id: &share.backup_share_pair_id,
        curve: &share.curve,
        kind: ShareKind::ClientBackup,
    }
}

/// Opens a stored text-form envelope as the share `id`, mapping every failure to
/// [`Error::WrongIdentity`] except a KMS outage, which stays retryable.
pub(crate) async fn open_text(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &storage::BackupKey,
    stored: &[u8],
) -> Result<envelope::Plaintext> {
    let wrong = |source| Error::WrongIdentity {
        key: key.to_string(),
        source,
    };
    let text = std::str::from_utf8(stored)
        .map_err(|_| wrong(envelope::FormatError::Text("not UTF-8").into()))?;
    let bytes = envelope::from_text(text).map_err(|e| wrong(e.into()))?;
    match opener.open(&id.context()?, &bytes).await {
        Ok(plaintext) => Ok(plaintext),
        Err(e) if e.is_retryable() => Err(Error::envelope("opening a stored share")(e)),
        Err(e) => Err(wrong(e)),
    }
}
