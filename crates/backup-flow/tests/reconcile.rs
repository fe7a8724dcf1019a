//! Reconcile against `portal-sim` in Self-Managed mode, with the real custodian webhook:
//! what can be finished without a new `/v1/backup` is finished (a stored, drilled, never
//! confirmed ciphertext is confirmed; a journaled sealed backup is resumed), what cannot is
//! reported, and orphans are deleted only when a dry run listed them and they are older than
//! the newest completed pair.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test helpers: a broken fixture should panic

mod support;

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_flow::envelope::Keyring;
use backup_flow::fleet::{
    ClientReconcile, Done, Open, OrphanPruning, ReconcileOptions, ReconcileStatus,
};
use backup_flow::portal_api::mpc::GenerateResponse;
use backup_flow::portal_api::{ClientApi, SharePairStatus};
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{BackupKey, BackupStore, BackupStoreExt as _, ShareKind};
use backup_flow::{ClientFlow, Flow};
use portal_sim::{FaultRule, PortalSim, SimClient};
use serde_json::{Value, json};
use support::{FlakyStore, assert_clean, generated_client, keyring, own, self_managed_sim};

/// A custodian's setup: the simulator with the webhook keeping its shares in `webhook`, the
/// client ciphertexts in `store`, one keyring for both.
struct Fleet {
    sim: PortalSim,
    webhook: Arc<MemoryStore>,
    store: Arc<MemoryStore>,
    keyring: Keyring,
}

impl Fleet {
    async fn new() -> Self {
        let webhook = Arc::new(MemoryStore::new());
        let sim = self_managed_sim(Arc::clone(&webhook) as Arc<dyn BackupStore>).await;
        Self {
            sim,
            webhook,
            store: Arc::new(MemoryStore::new()),
            keyring: keyring(),
        }
    }

    /// A flow over the client store, checking custodian shares in the webhook's store.
    fn flow(&self, state: &Path) -> Flow {
        Flow::new(
            self.keyring.clone(),
            own(Arc::clone(&self.store) as Arc<dyn BackupStore>),
            state,
        )
        .unwrap()
        .with_custodian_store(Arc::clone(&self.webhook) as Arc<dyn BackupStore>)
    }

    fn session(&self, client: &ClientApi, state: &Path) -> ClientFlow {
        self.flow(state).session(client.clone())
    }

    /// A client backed up with Portal refusing the confirmation: its ciphertext is stored
    /// and drilled, its pairs stay incomplete.
    async fn unconfirmed(&self, state: &Path) -> (SimClient, ClientApi, GenerateResponse) {
        let (keys, client, generate) = generated_client(&self.sim).await;
        self.refused(&self.session(&client, state), &generate).await;
        (keys, client, generate)
    }

    /// Backs up through `session` while Portal refuses the confirmation.
    async fn refused(&self, session: &ClientFlow, generate: &GenerateResponse) {
        self.sim
            .add_fault(
                "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
                    .parse::<FaultRule>()
                    .unwrap(),
            )
            .unwrap();
        let failed = session.backup(generate).await;
        self.sim.clear_faults();
        assert!(failed.is_err(), "the confirmation was refused");
    }

    /// A client fully backed up.
    async fn backed_up(&self, state: &Path) -> (SimClient, ClientApi, GenerateResponse) {
        let (keys, client, generate) = generated_client(&self.sim).await;
        self.session(&client, state)
            .backup(&generate)
            .await
            .unwrap();
        (keys, client, generate)
    }

    /// Backup pair statuses of a client, by pair id.
    fn pairs(&self, client_id: &str) -> Vec<(String, SharePairStatus)> {
        self.sim
            .client_details(client_id)
            .unwrap()
            .wallets
            .iter()
            .flat_map(|w| w.backup_share_pairs.iter())
            .map(|p| (p.id.clone(), p.status.clone()))
            .collect()
    }

    fn completed(&self, client_id: &str) -> usize {
        self.pairs(client_id)
            .iter()
            .filter(|(_, s)| *s == SharePairStatus::Completed)
            .count()
    }

    async fn client_keys(&self, client_id: &str) -> Vec<BackupKey> {
        self.store.list(client_id).await.unwrap()
    }
}

fn done_kinds(result: &ClientReconcile) -> Vec<&'static str> {
    result
        .done
        .iter()
        .map(|d| match d {
            Done::Confirmed { .. } => "confirmed",
            Done::Resumed { .. } => "resumed",
            Done::Pruned { .. } => "pruned",
            _ => "other",
        })
        .collect()
}

#[tokio::test]
async fn a_stored_drilled_unconfirmed_backup_is_confirmed_without_the_journal() {
    let fleet = Fleet::new().await;
    let first_state = tempfile::tempdir().unwrap();
    let (keys, client, _) = fleet.unconfirmed(first_state.path()).await;
    assert_eq!(fleet.completed(&keys.client_id), 0);
    let mpc_before = fleet.sim.report().traffic.mpc.requests;

    // The state directory is lost (a new container): Portal and the store decide.
    let fresh = tempfile::tempdir().unwrap();
    let result = fleet
        .session(&client, fresh.path())
        .reconcile(&OrphanPruning::Keep)
        .await
        .unwrap();
    assert_eq!(
        done_kinds(&result),
        ["confirmed", "confirmed"],
        "{result:?}"
    );
    assert!(result.is_whole(), "{result:?}");
    assert!(result.orphans.is_empty(), "confirmed pairs are no orphans");
    assert_eq!(fleet.completed(&keys.client_id), 2, "both curves' pairs");
    assert_eq!(
        fleet.sim.report().traffic.mpc.requests,
        mpc_before,
        "no new /v1/backup, no MPC call at all"
    );

    // Run again: nothing left to do.
    let again = fleet
        .session(&client, fresh.path())
        .reconcile(&OrphanPruning::Keep)
        .await
        .unwrap();
    assert!(again.done.is_empty() && again.is_whole(), "{again:?}");
    assert_clean(&fleet.sim);
}

#[tokio::test]
async fn a_sealed_backup_in_the_journal_is_resumed_and_confirmed() {
    let fleet = Fleet::new().await;
    let state = tempfile::tempdir().unwrap();
    let (keys, client, generate) = generated_client(&fleet.sim).await;
    // The store is down when the backup would be stored: the journal keeps it sealed.
    let flaky = Arc::new(FlakyStore::new(
        Arc::clone(&fleet.store) as Arc<dyn BackupStore>
    ));
    flaky.fail_puts(true);
    let failing = Flow::new(
        fleet.keyring.clone(),
        own(Arc::clone(&flaky) as Arc<dyn BackupStore>),
        state.path(),
    )
    .unwrap()
    .session(client.clone());
    assert!(failing.backup(&generate).await.is_err());
    assert!(fleet.client_keys(&keys.client_id).await.is_empty());

    let result = fleet
        .session(&client, state.path())
        .reconcile(&OrphanPruning::Keep)
        .await
        .unwrap();
    assert_eq!(done_kinds(&result), ["resumed"], "{result:?}");
    match &result.done[0] {
        Done::Resumed { from_step, .. } => assert_eq!(*from_step, "sealed"),
        other => panic!("{other:?}"),
    }
    assert!(result.is_whole(), "{result:?}");
    assert_eq!(fleet.completed(&keys.client_id), 2);
    assert_eq!(fleet.client_keys(&keys.client_id).await.len(), 2);
    assert_clean(&fleet.sim);
}

#[tokio::test]
async fn what_cannot_be_finished_is_reported_and_left_unconfirmed() {
    let fleet = Fleet::new().await;
    let state = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();

    // Never backed up.
    let (_, never, _) = generated_client(&fleet.sim).await;
    let result = fleet
        .session(&never, fresh.path())
        .reconcile(&OrphanPruning::Keep)
        .await
        .unwrap();
    let reasons: BTreeSet<&str> = result.open.iter().map(reason).collect();
    assert_eq!(reasons, BTreeSet::from(["not-backed-up"]), "{result:?}");
    assert_eq!(result.open.len(), 2, "one per wallet");

    // Backed up, then its ciphertexts lost.
    let (keys, lost, _) = fleet.backed_up(state.path()).await;
    for key in fleet.client_keys(&keys.client_id).await {
        fleet.store.delete(&key).await.unwrap();
    }
    let (result, reasons) = open_reasons(&fleet.session(&lost, fresh.path())).await;
    assert_eq!(reasons, ["not-stored", "not-stored"], "{result:?}");

    // Stored unconfirmed, but the ciphertexts were swapped for another client's.
    let (keys, swapped, _) = fleet.unconfirmed(state.path()).await;
    let (other, _, _) = fleet.backed_up(state.path()).await;
    let foreign = fleet.client_keys(&other.client_id).await;
    for key in fleet.client_keys(&keys.client_id).await {
        let body = fleet
            .store
            .get(foreign.iter().find(|k| k.curve() == key.curve()).unwrap())
            .await
            .unwrap();
        fleet.store.put_overwrite(&key, body).await.unwrap();
    }
    let (result, reasons) = open_reasons(&fleet.session(&swapped, fresh.path())).await;
    assert_eq!(reasons, ["does-not-open", "does-not-open"], "{result:?}");
    assert!(result.done.is_empty());
    assert_eq!(fleet.completed(&keys.client_id), 0, "nothing confirmed");

    // Stored unconfirmed, but the webhook lost the custodian shares.
    let (keys, no_custodian, _) = fleet.unconfirmed(state.path()).await;
    for key in fleet.webhook.list(&keys.client_id).await.unwrap() {
        assert_eq!(key.kind(), ShareKind::CustodianBackup);
        fleet.webhook.delete(&key).await.unwrap();
    }
    let (result, reasons) = open_reasons(&fleet.session(&no_custodian, fresh.path())).await;
    assert_eq!(
        reasons,
        ["no-custodian-share", "no-custodian-share"],
        "{result:?}"
    );
    assert_eq!(fleet.completed(&keys.client_id), 0, "nothing confirmed");

    // Stored unconfirmed, and no webhook store to check: left for a run that can check.
    let (keys, unchecked, _) = fleet.unconfirmed(state.path()).await;
    let without_webhook = Flow::new(
        fleet.keyring.clone(),
        own(Arc::clone(&fleet.store) as Arc<dyn BackupStore>),
        fresh.path(),
    )
    .unwrap()
    .session(unchecked.clone());
    let (result, reasons) = open_reasons(&without_webhook).await;
    assert_eq!(
        reasons,
        ["custodian-share-unchecked", "custodian-share-unchecked"],
        "{result:?}"
    );
    assert_eq!(fleet.completed(&keys.client_id), 0, "nothing confirmed");
}

/// Reconciles the client of `session`, keeping orphans; the result and its open reasons.
async fn open_reasons(session: &ClientFlow) -> (ClientReconcile, Vec<&'static str>) {
    let result = session.reconcile(&OrphanPruning::Keep).await.unwrap();
    let reasons = result.open.iter().map(reason).collect();
    (result, reasons)
}

fn reason(open: &Open) -> &'static str {
    match open {
        Open::NotBackedUp { .. } => "not-backed-up",
        Open::NotStored { .. } => "not-stored",
        Open::DoesNotOpen { .. } => "does-not-open",
        Open::NoCustodianShare { .. } => "no-custodian-share",
        Open::CustodianShareUnchecked { .. } => "custodian-share-unchecked",
        Open::JournalPairsUnknown { .. } => "journal-pairs-unknown",
        _ => "other",
    }
}

#[tokio::test]
async fn orphans_are_deleted_only_when_planned_by_a_dry_run_and_older_than_the_newest_pair() {
    let fleet = Fleet::new().await;
    let state = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    // An old backup stored and never confirmed, then a newer one completed.
    let (keys, client, generate) = fleet.unconfirmed(state.path()).await;
    let old: BTreeSet<String> = fleet
        .client_keys(&keys.client_id)
        .await
        .iter()
        .map(BackupKey::to_path)
        .collect();
    fleet.sim.advance_clock(Duration::from_secs(60));
    fleet
        .flow(fresh.path())
        .forcing_new_backups(true)
        .session(client.clone())
        .backup(&generate)
        .await
        .unwrap();
    assert_eq!(fleet.client_keys(&keys.client_id).await.len(), 4);
    let session = fleet.session(&client, fresh.path());

    let kept = session.reconcile(&OrphanPruning::Keep).await.unwrap();
    let orphans: BTreeSet<String> = kept.orphans.iter().map(|o| o.key.clone()).collect();
    assert_eq!(orphans, old, "{kept:?}");
    assert!(kept.orphans.iter().all(|o| o.older_than_newest_completed));
    assert!(kept.done.is_empty() && kept.would_prune.is_empty());
    assert!(
        kept.is_whole(),
        "orphans alone leave the client whole: {kept:?}"
    );

    let dry = session.reconcile(&OrphanPruning::DryRun).await.unwrap();
    let planned: BTreeSet<String> = dry.would_prune.iter().cloned().collect();
    assert_eq!(planned, old);
    assert_eq!(
        fleet.client_keys(&keys.client_id).await.len(),
        4,
        "a dry run deletes nothing"
    );

    // A plan that names one orphan and a live ciphertext: only the orphan goes.
    let live = fleet
        .client_keys(&keys.client_id)
        .await
        .iter()
        .map(BackupKey::to_path)
        .find(|k| !old.contains(k))
        .unwrap();
    let one = old.iter().next().unwrap().clone();
    let plan = Arc::new(BTreeSet::from([one.clone(), live.clone()]));
    let pruned = session
        .reconcile(&OrphanPruning::Planned(plan))
        .await
        .unwrap();
    assert_eq!(pruned.done, [Done::Pruned { key: one.clone() }]);
    let left: BTreeSet<String> = fleet
        .client_keys(&keys.client_id)
        .await
        .iter()
        .map(BackupKey::to_path)
        .collect();
    assert_eq!(left.len(), 3);
    assert!(!left.contains(&one) && left.contains(&live));
    assert_eq!(
        fleet.completed(&keys.client_id),
        2,
        "the newest backup still completed"
    );

    // A newer backup stored and never confirmed, which cannot be confirmed now (its
    // custodian shares are gone): an orphan, but newer than the completed pair, so a plan
    // naming it deletes nothing.
    fleet.sim.advance_clock(Duration::from_secs(60));
    let third = tempfile::tempdir().unwrap();
    let forced = fleet
        .flow(third.path())
        .forcing_new_backups(true)
        .session(client.clone());
    fleet.refused(&forced, &generate).await;
    for key in fleet.webhook.list(&keys.client_id).await.unwrap() {
        fleet.webhook.delete(&key).await.unwrap();
    }
    let newer: BTreeSet<String> = fleet
        .client_keys(&keys.client_id)
        .await
        .iter()
        .map(BackupKey::to_path)
        .filter(|k| !left.contains(k))
        .collect();
    assert_eq!(newer.len(), 2);
    let fresher = tempfile::tempdir().unwrap();
    let result = fleet
        .session(&client, fresher.path())
        .reconcile(&OrphanPruning::Planned(Arc::new(newer.clone())))
        .await
        .unwrap();
    assert!(result.done.is_empty(), "{result:?}");
    let newer_orphans: BTreeSet<String> = result
        .orphans
        .iter()
        .filter(|o| !o.older_than_newest_completed)
        .map(|o| o.key.clone())
        .collect();
    assert_eq!(newer_orphans, newer);
    assert_eq!(
        fleet.client_keys(&keys.client_id).await.len(),
        5,
        "nothing deleted"
    );
}

#[tokio::test]
async fn a_run_over_many_clients_gives_one_line_each_and_never_a_secret() {
    let fleet = Fleet::new().await;
    let state = tempfile::tempdir().unwrap();
    let mut clients = Vec::new();
    let mut lines = Vec::new();
    for i in 0..9 {
        let (keys, _, _) = match i % 3 {
            0 => fleet.backed_up(state.path()).await,
            1 => fleet.unconfirmed(state.path()).await,
            _ => generated_client(&fleet.sim).await,
        };
        lines.push(
            if i % 2 == 0 {
                json!({"clientApiKey": keys.client_api_key.expose_secret()})
            } else {
                json!({"clientSessionToken": keys.client_session_token.expose_secret()})
            }
            .to_string(),
        );
        clients.push(keys);
    }
    lines.insert(
        4,
        r#"{"clientApiKey":"k","clientSessionToken":"secret-token-x"}"#.into(),
    );
    let input = lines.join("\n");

    let fresh = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let report = fleet
        .flow(fresh.path())
        .reconcile_lines(
            &support::portal(&fleet.sim),
            Cursor::new(input.into_bytes()),
            &mut out,
            ReconcileOptions::new().with_concurrency(3),
        )
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let results: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 10);
    assert_eq!(
        (
            report.whole,
            report.open,
            report.failed,
            report.confirmed_pairs
        ),
        (6, 3, 1, 6),
        "{report:?}"
    );
    assert!(!report.is_whole());
    for (i, keys) in clients.iter().enumerate() {
        let line = results
            .iter()
            .find(|r| r["clientId"] == keys.client_id.as_str())
            .unwrap();
        let expected = if i % 3 == 2 { "open" } else { "whole" };
        assert_eq!(line["status"], expected, "{line}");
        assert!(!text.contains(keys.client_api_key.expose_secret()));
        assert!(!text.contains(keys.client_session_token.expose_secret()));
    }
    let bad = results.iter().find(|r| r["line"] == 5).unwrap();
    assert_eq!(bad["status"], "failed");
    assert!(bad["error"].as_str().unwrap().contains("both"));
    assert!(!text.contains("secret-token-x"));
    assert_eq!(
        serde_json::to_value(ReconcileStatus::Whole).unwrap(),
        "whole"
    );
    assert_clean(&fleet.sim);
}

/// Portal-Managed Backups: the ciphertexts are Portal's, which reconcile reads but cannot
/// delete. A superseded unconfirmed pair is an orphan there too; a dry run plans nothing and
/// a plan naming it deletes nothing and fails nothing.
#[tokio::test]
async fn orphans_held_by_portal_are_reported_and_never_planned_for_deletion() {
    let sim = support::sim(false).await;
    let (_, client, generate) = generated_client(&sim).await;
    let (state, later) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keyring = keyring();
    let session = |dir: &Path, force: bool| {
        Flow::new(keyring.clone(), support::portal_managed(), dir)
            .unwrap()
            .forcing_new_backups(force)
            .session(client.clone())
    };
    sim.add_fault(
        "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    assert!(
        session(state.path(), false)
            .backup(&generate)
            .await
            .is_err()
    );
    sim.clear_faults();
    sim.advance_clock(Duration::from_secs(60));
    session(later.path(), true).backup(&generate).await.unwrap();

    let fresh = tempfile::tempdir().unwrap();
    let dry = session(fresh.path(), false)
        .reconcile(&OrphanPruning::DryRun)
        .await
        .unwrap();
    assert_eq!(dry.orphans.len(), 2, "{dry:?}");
    assert!(dry.orphans.iter().all(|o| o.older_than_newest_completed));
    assert!(dry.would_prune.is_empty(), "Portal's store cannot delete");
    assert!(dry.is_whole(), "{dry:?}");
    let plan = dry.orphans.iter().map(|o| o.key.clone()).collect();
    let planned = session(fresh.path(), false)
        .reconcile(&OrphanPruning::Planned(Arc::new(plan)))
        .await
        .unwrap();
    assert!(planned.done.is_empty(), "{planned:?}");
    assert_eq!(planned.orphans.len(), 2);
    for orphan in &dry.orphans {
        assert!(
            sim.stored_cipher_text(&orphan.backup_share_pair_id)
                .is_some(),
            "Portal still holds it"
        );
    }
    assert_clean(&sim);
}
