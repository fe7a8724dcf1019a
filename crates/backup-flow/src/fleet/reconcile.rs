//! Reconcile: finish, for one client, what can be finished without a new `/v1/backup`, and
//! report what cannot. Nothing is deleted unless asked, and then only orphans a dry run
//! showed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envelope::Opener;
use portal_api::client_api::ClientDetails;
use serde::Serialize;
use storage::{BackupKey, StorageError};

use super::assess::{ClientAssessment, CurveAssessment, Orphan, assess, custodian_share_held};
use crate::error::{Error, Result};
use crate::flow::ClientFlow;
use crate::journal::{BackupRecord, Step};
use crate::verify::Finding;

/// What reconcile may do with orphan ciphertexts (stored for no completed pair).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum OrphanPruning {
    /// Report them; delete nothing (the default).
    #[default]
    Keep,
    /// Report which of them a pruning run would delete (`wouldPrune`); delete nothing.
    DryRun,
    /// Delete the orphans of this plan (store keys, path form, as a dry run listed them in
    /// `wouldPrune`) that are, when reconcile looks again, still orphans older than the
    /// newest completed pair of their curve. Nothing outside the plan is deleted, and
    /// nothing from a store that cannot delete (Portal's keeps its ciphertexts).
    Planned(Arc<BTreeSet<String>>),
}

/// One client's reconciliation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientReconcile {
    /// The Portal client id.
    pub client_id: String,
    /// What this run finished.
    pub done: Vec<Done>,
    /// What is still not whole and cannot be finished without a new backup or a person.
    pub open: Vec<Open>,
    /// Stored ciphertexts of no completed pair, left in place.
    pub orphans: Vec<Orphan>,
    /// Of the orphans, the keys a pruning run would delete ([`OrphanPruning::DryRun`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_prune: Vec<String>,
}

impl ClientReconcile {
    /// Whether nothing is left open.
    #[must_use]
    pub fn is_whole(&self) -> bool {
        self.open.is_empty()
    }
}

/// Something reconcile finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Done {
    /// A stored ciphertext that opens as its pair's share (and, with Self-Managed Backups,
    /// whose custodian share the webhook holds) was confirmed to Portal.
    #[serde(rename_all = "camelCase")]
    Confirmed {
        /// The curve.
        curve: String,
        /// The backup share pair id.
        backup_share_pair_id: String,
    },
    /// A backup the journal held sealed was stored, drilled and confirmed.
    #[serde(rename_all = "camelCase")]
    Resumed {
        /// The journal's backup id.
        backup_id: String,
        /// The step it had reached.
        from_step: &'static str,
        /// Its backup share pair ids by curve.
        backup_share_pair_ids: BTreeMap<String, String>,
    },
    /// An orphan of the plan was deleted.
    Pruned {
        /// Its store key.
        key: String,
    },
}

/// Something reconcile could not finish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Open {
    /// The wallet has no completed backup and nothing stored that could complete one: it
    /// needs a new backup (`bulk backup`).
    NotBackedUp {
        /// The curve.
        curve: String,
    },
    /// The newest completed pair has no ciphertext in the store, and nothing newer can
    /// replace it: the wallet needs a new backup.
    #[serde(rename_all = "camelCase")]
    NotStored {
        /// The curve.
        curve: String,
        /// The newest completed pair.
        backup_share_pair_id: String,
    },
    /// A stored, unconfirmed ciphertext does not open as its pair's share; it was not
    /// confirmed.
    #[serde(rename_all = "camelCase")]
    DoesNotOpen {
        /// The curve.
        curve: String,
        /// The pair.
        backup_share_pair_id: String,
        /// Why it did not open.
        detail: String,
    },
    /// Self-Managed Backups: the webhook's store holds no custodian share for the pair, so
    /// confirming it would mark a backup that cannot be restored.
    #[serde(rename_all = "camelCase")]
    NoCustodianShare {
        /// The curve.
        curve: String,
        /// The pair.
        backup_share_pair_id: String,
    },
    /// Self-Managed Backups, but no webhook store was given to check the custodian share:
    /// the pair was left unconfirmed.
    #[serde(rename_all = "camelCase")]
    CustodianShareUnchecked {
        /// The curve.
        curve: String,
        /// The pair.
        backup_share_pair_id: String,
    },
    /// The journal holds a sealed backup whose pairs Portal does not list: it cannot be
    /// confirmed.
    #[serde(rename_all = "camelCase")]
    JournalPairsUnknown {
        /// The journal's backup id.
        backup_id: String,
    },
}

/// A pair that passed every check and is confirmed in one update.
struct ToConfirm {
    curve: String,
    pair_id: String,
}

impl ClientFlow {
    /// Reconciles the client this session acts as: resumes the journal's sealed backups whose
    /// pairs Portal still has incomplete; confirms, per curve, the newest unconfirmed pair
    /// newer than the newest completed one whose ciphertext is stored and opens (with
    /// Self-Managed Backups only when the webhook's store holds its custodian share); and
    /// reports what is left, orphans included. Orphans are deleted only as `pruning` says.
    ///
    /// # Errors
    /// Portal, the store or the KMS failing (retry the client); a check that fails is an
    /// [`Open`] item, not an error.
    pub async fn reconcile(&self, pruning: &OrphanPruning) -> Result<ClientReconcile> {
        let journal = self.on.flow.journal.unfinished().await?;
        self.reconcile_with(pruning, &journal, &mut None).await
    }

    /// [`reconcile`](Self::reconcile) with the journal's unfinished records read already
    /// (records of other clients are ignored).
    pub(crate) async fn reconcile_with(
        &self,
        pruning: &OrphanPruning,
        journal: &[BackupRecord],
        client_id: &mut Option<String>,
    ) -> Result<ClientReconcile> {
        let mut me = self.me().await?;
        *client_id = Some(me.id.clone());
        let mut done = Vec::new();
        let mut open = Vec::new();

        let mine = journal.iter().filter(|r| r.client_id == me.id);
        let mut resumed = false;
        for record in mine {
            let mut record = record.clone();
            match journal_pairs_at_portal(&me, &record) {
                PairsAtPortal::Unknown => open.push(Open::JournalPairsUnknown {
                    backup_id: record.backup_id.clone(),
                }),
                PairsAtPortal::AllCompleted => {}
                PairsAtPortal::SomeIncomplete => {
                    let from_step = record.step.as_str();
                    self.finish(&mut record, None).await?;
                    resumed = true;
                    done.push(Done::Resumed {
                        backup_id: record.backup_id.clone(),
                        from_step,
                        backup_share_pair_ids: record
                            .shares
                            .iter()
                            .map(|s| (s.curve.as_str().to_owned(), s.backup_share_pair_id.clone()))
                            .collect(),
                    });
                }
            }
        }
        if resumed {
            me = self.me().await?;
        }

        let stored = self.stored_keys(&me).await?;
        let seen = assess(&me, &stored);
        let custodian_keys = match (&self.on.flow.custodian_store, seen.ciphertexts_with_portal) {
            (Some(store), false) => Some(list(store.as_ref(), &me.id).await?),
            _ => None,
        };

        let opener = Opener::new(&self.on.flow.keyring);
        let mut confirm = Vec::new();
        for curve in &seen.curves {
            let outcome = self
                .finishable(&opener, &seen, curve, custodian_keys.as_deref())
                .await?;
            match outcome {
                Finishable::Confirm(pair) => confirm.push(pair),
                Finishable::Open(item) => open.push(item),
                Finishable::Whole => {}
            }
        }
        if !confirm.is_empty() {
            self.confirm_stored(confirm.iter().map(|p| p.pair_id.clone()).collect())
                .await?;
            done.extend(confirm.iter().map(|p| Done::Confirmed {
                curve: p.curve.clone(),
                backup_share_pair_id: p.pair_id.clone(),
            }));
        }

        // A pair confirmed just now is no orphan any more.
        let mut orphans: Vec<Orphan> = seen
            .orphans
            .into_iter()
            .filter(|o| {
                !confirm
                    .iter()
                    .any(|p| p.pair_id == o.backup_share_pair_id && p.curve == o.curve)
            })
            .collect();
        let mut would_prune = Vec::new();
        // A store that cannot delete (Portal's) keeps its orphans whatever is asked.
        let can_delete = self.on.store.capabilities().delete;
        match pruning {
            OrphanPruning::Keep => {}
            _ if !can_delete => {}
            OrphanPruning::DryRun => {
                would_prune = orphans
                    .iter()
                    .filter(|o| o.older_than_newest_completed)
                    .map(|o| o.key.clone())
                    .collect();
            }
            OrphanPruning::Planned(plan) => {
                let mut kept = Vec::with_capacity(orphans.len());
                for orphan in orphans {
                    if orphan.older_than_newest_completed && plan.contains(&orphan.key) {
                        let key = BackupKey::from_path(&orphan.key).map_err(|e| {
                            Error::Unexpected(format!("an assessed key does not parse: {e}"))
                        })?;
                        self.delete_orphan(&key).await?;
                        done.push(Done::Pruned { key: orphan.key });
                    } else {
                        kept.push(orphan);
                    }
                }
                orphans = kept;
            }
        }
        Ok(ClientReconcile {
            client_id: me.id,
            done,
            open,
            orphans,
            would_prune,
        })
    }

    async fn me(&self) -> Result<ClientDetails> {
        self.client
            .client_me()
            .await
            .map_err(Error::portal("GET", portal_api::paths::CLIENT_ME))
    }

    /// The client backup keys the store holds for `me`: its listing, or, for a store that
    /// cannot list (Portal's), a probe of every pair Portal lists.
    async fn stored_keys(&self, me: &ClientDetails) -> Result<Vec<BackupKey>> {
        match self.on.store.list(&me.id).await {
            Ok(keys) => return Ok(keys),
            Err(StorageError::NotSupported { .. }) => {}
            Err(e) => return Err(Error::store_listing(&me.id, e)),
        }
        let mut held = Vec::new();
        for wallet in &me.wallets {
            for pair in &wallet.backup_share_pairs {
                let key = BackupKey::client_backup(&me.id, &pair.id, wallet.curve.as_str())
                    .map_err(|e| {
                        Error::Unexpected(format!("Portal id not usable as a store key: {e}"))
                    })?;
                match self.on.store.get(&key).await {
                    Ok(_) => held.push(key),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(Error::store("get", &key)(e)),
                }
            }
        }
        Ok(held)
    }

    /// What can be done for one wallet.
    async fn finishable(
        &self,
        opener: &Opener<'_>,
        seen: &ClientAssessment,
        curve: &CurveAssessment,
        custodian_keys: Option<&[BackupKey]>,
    ) -> Result<Finishable> {
        let newest_at = curve
            .newest_completed
            .as_ref()
            .map(|p| p.created_at.as_deref());
        // The newest stored, unconfirmed pair newer than the newest completed one (any, when
        // there is none; with no known times, none can be shown newer).
        let candidate = curve.incomplete.iter().find(|p| {
            p.stored
                && match newest_at {
                    None => true,
                    Some(newest) => match (p.created_at.as_deref(), newest) {
                        (Some(pair), Some(newest)) => pair > newest,
                        _ => false,
                    },
                }
        });
        let Some(candidate) = candidate else {
            return Ok(match &curve.newest_completed {
                None => Finishable::Open(Open::NotBackedUp {
                    curve: curve.curve.clone(),
                }),
                Some(pair) if !pair.stored => Finishable::Open(Open::NotStored {
                    curve: curve.curve.clone(),
                    backup_share_pair_id: pair.id.clone(),
                }),
                Some(_) => Finishable::Whole,
            });
        };
        let pair_id = candidate.id.clone();
        let wire_curve = portal_api::Curve::from_wire(&curve.curve);
        let check = self
            .on
            .check(opener, &seen.client_id, &wire_curve, &pair_id)
            .await?;
        if let Finding::WrongIdentity { reason } = check.finding {
            return Ok(Finishable::Open(Open::DoesNotOpen {
                curve: curve.curve.clone(),
                backup_share_pair_id: pair_id,
                detail: reason,
            }));
        }
        if check.finding != Finding::Ok {
            return Ok(Finishable::Open(Open::DoesNotOpen {
                curve: curve.curve.clone(),
                backup_share_pair_id: pair_id,
                detail: "nothing is stored for it any more".into(),
            }));
        }
        if !seen.ciphertexts_with_portal {
            let open = match custodian_keys {
                None => Some(Open::CustodianShareUnchecked {
                    curve: curve.curve.clone(),
                    backup_share_pair_id: pair_id.clone(),
                }),
                Some(keys)
                    if !custodian_share_held(
                        keys,
                        &seen.client_id,
                        &curve.curve,
                        candidate.backup_method.as_deref(),
                    ) =>
                {
                    Some(Open::NoCustodianShare {
                        curve: curve.curve.clone(),
                        backup_share_pair_id: pair_id.clone(),
                    })
                }
                Some(_) => None,
            };
            if let Some(open) = open {
                return Ok(Finishable::Open(open));
            }
        }
        Ok(Finishable::Confirm(ToConfirm {
            curve: curve.curve.clone(),
            pair_id,
        }))
    }

    async fn delete_orphan(&self, key: &BackupKey) -> Result<()> {
        tracing::info!(key = %key, "deleting an orphan ciphertext of the pruning plan");
        match self.on.store.delete(key).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(Error::store("delete", key)(e)),
        }
    }
}

enum Finishable {
    Whole,
    Confirm(ToConfirm),
    Open(Open),
}

enum PairsAtPortal {
    Unknown,
    AllCompleted,
    SomeIncomplete,
}

/// How Portal lists the pairs of a journal record.
fn journal_pairs_at_portal(me: &ClientDetails, record: &BackupRecord) -> PairsAtPortal {
    let mut all_completed = true;
    for share in &record.shares {
        let listed = me.wallet(&share.curve).and_then(|w| {
            w.backup_share_pairs
                .iter()
                .find(|p| p.id == share.backup_share_pair_id)
        });
        match listed {
            None => return PairsAtPortal::Unknown,
            Some(pair) => {
                all_completed &= pair.status == portal_api::SharePairStatus::Completed;
            }
        }
    }
    if all_completed && record.step >= Step::Sealed {
        PairsAtPortal::AllCompleted
    } else {
        PairsAtPortal::SomeIncomplete
    }
}

async fn list(store: &dyn storage::BackupStore, client_id: &str) -> Result<Vec<BackupKey>> {
    store
        .list(client_id)
        .await
        .map_err(|e| Error::store_listing(client_id, e))
}
