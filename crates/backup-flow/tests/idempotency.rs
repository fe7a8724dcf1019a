//! "Already backed up" is known from Portal and the store, not only from the journal: a run
//! with a fresh state directory (a restarted container, a job moved to another machine) does
//! not ask Portal for a second backup of a client whose newest completed backup is stored and
//! opens, unless forced.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failure

mod support;

use std::sync::Arc;

use backup_flow::portal_api::SharePairStatus;
use backup_flow::storage::BackupStore;
use backup_flow::storage::memory::MemoryStore;
use portal_sim::PortalSim;
use support::{assert_clean, flow, fs_store, generated_client, keyring, portal_client, sim};

/// Completed backup pairs per wallet, summed.
fn completed(sim: &PortalSim, client_id: &str) -> usize {
    sim.client_details(client_id)
        .unwrap()
        .wallets
        .iter()
        .flat_map(|w| &w.backup_share_pairs)
        .filter(|p| p.status == SharePairStatus::Completed)
        .count()
}

#[tokio::test]
async fn a_fresh_state_directory_finds_the_backup_at_portal_and_in_the_store() {
    for self_managed in [false, true] {
        let sim = sim(self_managed).await;
        let (keys, client, generate) = generated_client(&sim).await;
        let data = tempfile::tempdir().unwrap();
        let target = if self_managed {
            fs_store(data.path())
        } else {
            support::portal_managed()
        };
        let keyring = keyring();
        let first = tempfile::tempdir().unwrap();
        let outcome = flow(client, keyring.clone(), Arc::clone(&target), first.path())
            .backup(&generate)
            .await
            .unwrap();
        assert!(!outcome.found_at_portal);
        assert_eq!(completed(&sim, &keys.client_id), 2);

        // Another machine: the journal is gone, Portal and the store are not.
        let fresh = tempfile::tempdir().unwrap();
        let client = portal_client(&sim, &keys.client_api_key);
        let again = flow(
            client.clone(),
            keyring.clone(),
            Arc::clone(&target),
            fresh.path(),
        )
        .backup(&generate)
        .await
        .unwrap();
        assert!(
            again.already_confirmed && again.found_at_portal,
            "{again:?}"
        );
        assert_eq!(again.backup_requests, 0);
        assert_eq!(again.backup_share_pair_ids, outcome.backup_share_pair_ids);
        assert_eq!(completed(&sim, &keys.client_id), 2, "no second backup");

        // Asked for explicitly, a new backup is made.
        let forced_dir = tempfile::tempdir().unwrap();
        let forced = support::stored(keyring.clone(), target, forced_dir.path())
            .forcing_new_backups(true)
            .session(client)
            .backup(&generate)
            .await
            .unwrap();
        assert!(!forced.found_at_portal && forced.backup_requests == 1);
        assert_eq!(completed(&sim, &keys.client_id), 4);
        assert_clean(&sim);
    }
}

/// Portal lists a completed backup, but what would restore it is not there (another store,
/// another keyring, or no custodian share): a new backup is made, since only that makes the
/// client restorable again.
#[tokio::test]
async fn a_backup_that_would_not_restore_is_made_again() {
    let sim = sim(true).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let data = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    flow(client, keyring(), fs_store(data.path()), first.path())
        .backup(&generate)
        .await
        .unwrap();
    let client = portal_client(&sim, &keys.client_api_key);

    // The store holds the ciphertexts, but this keyring cannot open them.
    let dir = tempfile::tempdir().unwrap();
    let other_key = flow(client.clone(), keyring(), fs_store(data.path()), dir.path())
        .backup(&generate)
        .await
        .unwrap();
    assert!(!other_key.found_at_portal && other_key.backup_requests == 1);
    assert_eq!(completed(&sim, &keys.client_id), 4);

    // The ciphertexts are there and open, but the webhook's store has no custodian share.
    let keyring = keyring();
    let store = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    flow(
        client.clone(),
        keyring.clone(),
        fs_store(store.path()),
        dir.path(),
    )
    .backup(&generate)
    .await
    .unwrap();
    assert_eq!(completed(&sim, &keys.client_id), 6);
    let empty: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let without_custodian = support::stored(keyring, fs_store(store.path()), dir.path())
        .with_custodian_store(empty)
        .session(client)
        .backup(&generate)
        .await
        .unwrap();
    assert!(!without_custodian.found_at_portal);
    assert_eq!(completed(&sim, &keys.client_id), 8);
    assert_clean(&sim);
}
