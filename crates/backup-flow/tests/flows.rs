//! Backup, verify, recover and rotate end to end against `portal-sim`, Portal-managed and
//! self-stored, with the simulator's invariant report clean after each (eject: `eject.rs`).

mod support;

use std::sync::Arc;

use backup_flow::portal_api::Curve;
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions};
use backup_flow::{Error, Finding};
use portal_sim::FaultRule;
use support::{assert_clean, flow, fs_store, generated_client, keyring, sim};

#[tokio::test]
async fn portal_managed_backup_verify_recover() {
    let sim = sim(false).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let flow = flow(client, keyring(), support::portal_managed(), state.path());

    let outcome = flow.backup(&generate).await.unwrap();
    assert_eq!(outcome.status, "confirmed");
    assert_eq!(outcome.store, "portal");
    assert_eq!(outcome.backup_share_pair_ids.len(), 2);
    assert_eq!(outcome.backup_requests, 1);
    for pair in outcome.backup_share_pair_ids.values() {
        let stored = sim.stored_cipher_text(pair).unwrap();
        assert!(
            stored.starts_with("pbe1."),
            "Portal holds our envelope, not plaintext"
        );
    }
    let details = sim.client_details(&keys.client_id).unwrap();
    for wallet in &details.wallets {
        let latest = wallet.latest_completed_backup_pair().unwrap();
        assert!(
            outcome
                .backup_share_pair_ids
                .values()
                .any(|id| *id == latest.id)
        );
    }
    assert_clean(&sim);

    let report = flow.verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checked.len(), 2);

    let recovered = flow.recover().await.unwrap();
    assert!(recovered.shares.get(&Curve::Secp256k1).is_some());
    assert!(recovered.shares.get(&Curve::Ed25519).is_some());
    assert!(
        !format!("{recovered:?}").contains(
            recovered
                .shares
                .get(&Curve::Secp256k1)
                .unwrap()
                .share
                .expose_secret()
        )
    );
    assert_clean(&sim);

    // Running the same backup again finds it confirmed and asks Portal for nothing new.
    let again = flow.backup(&generate).await.unwrap();
    assert!(again.already_confirmed);
    assert_eq!(again.backup_requests, 1);
    assert_eq!(again.backup_share_pair_ids, outcome.backup_share_pair_ids);
}

#[tokio::test]
async fn self_stored_backup_in_files_verify_recover() {
    let sim = sim(true).await;
    let (_keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flow = flow(client, keyring(), fs_store(data.path()), state.path());

    let outcome = flow.backup(&generate).await.unwrap();
    assert_eq!(outcome.store, "fs");
    for pair in outcome.backup_share_pair_ids.values() {
        assert!(
            sim.stored_cipher_text(pair).is_none(),
            "nothing is sent to Portal"
        );
    }
    assert_clean(&sim);
    assert!(flow.verify().await.unwrap().is_ok());
    flow.recover().await.unwrap();
    assert_clean(&sim);
}

#[tokio::test]
async fn a_failure_before_confirmation_resumes_without_a_new_backup() {
    let sim = sim(false).await;
    let (_keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let flow = flow(client, keyring(), support::portal_managed(), state.path());

    // Portal refuses the status update (beyond the client's retries): nothing is confirmed.
    sim.add_fault(
        "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let err = flow.backup(&generate).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, Error::Portal { .. }));
    sim.clear_faults();

    let outcome = flow.backup(&generate).await.unwrap();
    assert_eq!(outcome.resumed_after, Some("verified"));
    assert_eq!(outcome.backup_requests, 1, "no second /v1/backup");
    assert_clean(&sim);
}

/// The journal syncs only `requested` and `sealed`; the later steps are unsynced markers that
/// a power loss may drop. With them gone, the same backup resumes from `sealed`: it stores,
/// drills and confirms again, with no new `/v1/backup`, and the simulator sees nothing wrong.
#[tokio::test]
async fn backups_whose_unsynced_steps_are_lost_resume_from_sealed() {
    for self_managed in [false, true] {
        let sim = sim(self_managed).await;
        let (_keys, client, generate) = generated_client(&sim).await;
        let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let target = if self_managed {
            fs_store(data.path())
        } else {
            support::portal_managed()
        };
        let flow = flow(client, keyring(), target, state.path());
        let first = flow.backup(&generate).await.unwrap();
        assert_eq!(first.backup_requests, 1);

        let journal = state.path().join("journal");
        let markers: Vec<_> = std::fs::read_dir(&journal)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e != "json"))
            .collect();
        assert_eq!(markers.len(), 1, "one marker per backup: {markers:?}");
        assert!(markers[0].to_string_lossy().ends_with(".confirmed"));
        std::fs::remove_file(&markers[0]).unwrap();

        let again = flow.backup(&generate).await.unwrap();
        assert!(!again.already_confirmed);
        assert_eq!(again.resumed_after, Some("sealed"));
        assert_eq!(again.backup_requests, 1, "no second /v1/backup");
        assert_eq!(again.backup_share_pair_ids, first.backup_share_pair_ids);
        assert_clean(&sim);
        assert!(flow.verify().await.unwrap().is_ok());
        let third = flow.backup(&generate).await.unwrap();
        assert!(third.already_confirmed);
    }
}

#[tokio::test]
async fn a_lost_backup_answer_is_retried_and_nothing_unsealed_is_marked_stored() {
    let sim = sim(false).await;
    let (_keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let flow = flow(client, keyring(), support::portal_managed(), state.path());

    // Portal makes the backup pairs but the answer never arrives.
    sim.add_fault(
        "POST /v1/backup: drop-after=1.0, times=1"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    assert!(flow.backup(&generate).await.is_err());
    let outcome = flow.backup(&generate).await.unwrap();
    assert_eq!(outcome.resumed_after, Some("requested"));
    assert_eq!(outcome.backup_requests, 2);
    assert_clean(&sim);
}

#[tokio::test]
async fn swapped_or_foreign_ciphertexts_fail_before_recover_reaches_portal() {
    let sim = sim(true).await;
    let store = Arc::new(MemoryStore::new());
    let own = support::own(Arc::clone(&store) as Arc<dyn BackupStore>);
    let keyring = keyring();
    let (keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let flow = flow(client, keyring.clone(), Arc::clone(&own), state.path());
    let outcome = flow.backup(&generate).await.unwrap();

    let key = |curve: &str| {
        BackupKey::client_backup(
            &keys.client_id,
            &outcome.backup_share_pair_ids[curve],
            curve,
        )
        .unwrap()
    };
    let (secp, ed) = (key("SECP256K1"), key("ED25519"));
    let (a, b) = (
        store.get(&secp).await.unwrap(),
        store.get(&ed).await.unwrap(),
    );
    store
        .put(&secp, b.clone(), PutOptions::overwrite())
        .await
        .unwrap();
    store
        .put(&ed, a.clone(), PutOptions::overwrite())
        .await
        .unwrap();

    let report = flow.verify().await.unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .checked
            .iter()
            .all(|c| matches!(c.finding, Finding::WrongIdentity { .. }))
    );
    // The store-wide drill, without Portal, finds the same two.
    let stored = flow.flow().verify_stored(&keys.client_id).await.unwrap();
    assert_eq!(stored.checked.len(), 2);
    assert!(
        stored
            .checked
            .iter()
            .all(|c| matches!(c.finding, Finding::WrongIdentity { .. }))
    );
    // Were /v1/recover reached, this fault would surface as a Portal error.
    sim.add_fault(
        "POST /v1/recover: error=1.0, status=500"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let err = flow.recover().await.unwrap_err();
    assert!(matches!(err, Error::WrongIdentity { .. }), "{err:?}");

    // Another client's ciphertext under this client's key fails the same way.
    let (other_keys, other_client, other_generate) = generated_client(&sim).await;
    let other_state = tempfile::tempdir().unwrap();
    let other_flow = support::flow(other_client, keyring, own, other_state.path());
    let other = other_flow.backup(&other_generate).await.unwrap();
    let foreign = store
        .get(
            &BackupKey::client_backup(
                &other_keys.client_id,
                &other.backup_share_pair_ids["SECP256K1"],
                "SECP256K1",
            )
            .unwrap(),
        )
        .await
        .unwrap();
    store
        .put(&secp, foreign, PutOptions::overwrite())
        .await
        .unwrap();
    store.put(&ed, b, PutOptions::overwrite()).await.unwrap();
    assert!(matches!(
        flow.recover().await,
        Err(Error::WrongIdentity { .. })
    ));
}

#[tokio::test]
async fn rotate_rewraps_every_share_and_resumes() {
    let sim = sim(true).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = keyring();
    let flow = flow(client, old.clone(), fs_store(data.path()), state.path());
    flow.backup(&generate).await.unwrap();

    let new = keyring();
    let report = flow
        .flow()
        .rotate(&new, std::slice::from_ref(&keys.client_id))
        .await
        .unwrap();
    assert_eq!((report.rewrapped, report.already_current), (2, 0));
    let again = flow
        .flow()
        .rotate(&new, std::slice::from_ref(&keys.client_id))
        .await
        .unwrap();
    assert_eq!((again.rewrapped, again.already_current), (0, 2));

    let client = support::portal_client(&sim, &keys.client_api_key);
    let with_new = support::flow(client, new, fs_store(data.path()), state.path());
    assert!(with_new.verify().await.unwrap().is_ok());
    let report = flow.verify().await.unwrap();
    assert!(!report.is_ok(), "the old keyring no longer opens anything");
    assert_clean(&sim);
}
