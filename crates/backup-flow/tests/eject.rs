//! Eject end to end against `portal-sim` (whose shares are mathematically real): through
//! Portal as the custodian, the pair choice with two backup methods, marking ejected only when
//! asked and only after every wallet verified, and offline eject of a Self-Managed client from
//! our store and the real webhook's vault with Portal stopped.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // a broken fixture should panic

mod support;

use std::sync::Arc;

use backup_flow::portal_api::client_api::ClientDetails;
use backup_flow::portal_api::{ApiKey, BackupMethod, Curve, SecretShare, paths};
use backup_flow::storage::memory::MemoryStore;
use backup_flow::{EjectOptions, EjectReport, Error};
use custodian_webhook::{ShareVault, WebhookSecrets, WebhookServer};
use envelope::{EncryptionContext, Keyring};
use portal_sim::{BackupMode, PortalSim, SimConfig, WebhookConfig};
use storage::ShareKind;
use storage::context::{BACKUP_SHARE_PAIR_ID, CLIENT_ID, CURVE, PURPOSE};
use support::{assert_clean, custodian_client, flow, fs_store, generated_client, keyring, sim};

/// Every wallet of the report carries the key the simulator dealt, verified.
fn assert_true_keys(sim: &PortalSim, details: &ClientDetails, report: &EjectReport) {
    assert_eq!(report.wallets.len(), details.wallets.len());
    for wallet in &details.wallets {
        let ejected = report
            .wallets
            .iter()
            .find(|w| w.curve == wallet.curve)
            .unwrap();
        assert_eq!(
            ejected.key.private_key_hex(),
            sim.wallet_private_key_hex(&wallet.id).unwrap(),
            "{}",
            wallet.curve
        );
        assert!(
            !format!("{ejected:?}").contains(ejected.key.private_key_hex().as_str()),
            "Debug shows no key"
        );
    }
}

#[tokio::test]
async fn portal_managed_eject_rebuilds_every_wallets_verified_key_and_marks_nothing() {
    let sim = sim(false).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let keyring = keyring();
    let outcome = flow(
        client,
        keyring.clone(),
        support::portal_managed(),
        state.path(),
    )
    .backup(&generate)
    .await
    .unwrap();
    let custodian = support::custodian_flow(
        custodian_client(&sim, &keys),
        keyring,
        support::portal_managed(),
        state.path(),
    );
    // Portal keeps the client ciphertexts (the store factory says so), so the custodian's
    // ejectable-shares answer carries them: no client session is opened and no ciphertext is
    // read through the Client API. Both routes fail here, and the eject still succeeds.
    sim.set_faults(vec![
        format!(
            "POST {}: error=1, status=500",
            paths::CUSTODIAN_CLIENT_SESSIONS
        )
        .parse()
        .unwrap(),
        format!(
            "GET {}: error=1, status=500",
            paths::BACKUP_SHARE_PAIR_CIPHER_TEXT
        )
        .parse()
        .unwrap(),
    ])
    .unwrap();
    let report = custodian
        .eject(&keys.client_id, &EjectOptions::new())
        .await
        .unwrap();
    sim.set_faults(Vec::new()).unwrap();
    let details = sim.client_details(&keys.client_id).unwrap();
    assert_true_keys(&sim, &details, &report);
    for w in &report.wallets {
        assert_eq!(w.key.portal_wallet_key(), eject::PortalKeyCheck::Matched);
        assert!(
            outcome
                .backup_share_pair_ids
                .values()
                .any(|id| *id == w.backup_share_pair_id)
        );
    }
    assert!(!report.marked_ejected);
    assert!(
        details.ejected_at.is_none(),
        "never marked without the flag"
    );
    assert_clean(&sim);

    // With the flag, after every wallet verified: marked, and the report stays clean (every
    // wallet's shares were fetched first).
    let marked = custodian
        .eject(&keys.client_id, &EjectOptions::new().marking_ejected())
        .await
        .unwrap();
    assert!(marked.marked_ejected);
    assert!(
        sim.client_details(&keys.client_id)
            .unwrap()
            .ejected_at
            .is_some()
    );
    assert_clean(&sim);
}

fn share_context(client_id: &str, pair: &str, curve: &Curve) -> EncryptionContext {
    EncryptionContext::new()
        .with(CLIENT_ID, client_id)
        .unwrap()
        .with(PURPOSE, ShareKind::ClientBackup.as_str())
        .unwrap()
        .with(BACKUP_SHARE_PAIR_ID, pair)
        .unwrap()
        .with(CURVE, curve.as_str())
        .unwrap()
}

/// The decoded `MpcShare` JSON of a client share (base64 without padding).
fn decode_share(text: &str) -> serde_json::Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_wallet_that_fails_its_check_stops_the_eject_before_anything_is_marked() {
    let sim = sim(false).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let keyring = keyring();
    let outcome = flow(
        client,
        keyring.clone(),
        support::portal_managed(),
        state.path(),
    )
    .backup(&generate)
    .await
    .unwrap();
    // Portal's copy of the ed25519 client share replaced by the same share with one digit of
    // its value changed, sealed as itself (as someone holding the KMS could): it opens, so
    // only the public key check can refuse it.
    let pair = outcome
        .backup_share_pair_ids
        .get("ED25519")
        .unwrap()
        .clone();
    let stored = sim.stored_cipher_text(&pair).unwrap();
    let opened = envelope::open(
        &keyring,
        &share_context(&keys.client_id, &pair, &Curve::Ed25519),
        &envelope::from_text(&stored).unwrap(),
    )
    .await
    .unwrap();
    let mut share = decode_share(std::str::from_utf8(opened.expose_secret()).unwrap());
    let value = share["share"].as_str().unwrap().to_owned();
    let last = value.as_bytes()[value.len() - 1] - b'0';
    share["share"] = format!("{}{}", &value[..value.len() - 1], (last + 1) % 10).into();
    let forged = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(share.to_string())
    };
    let sealed = envelope::seal(
        &keyring,
        &share_context(&keys.client_id, &pair, &Curve::Ed25519),
        forged.as_bytes(),
    )
    .await
    .unwrap();
    let client = support::portal_client(&sim, &keys.client_api_key);
    client
        .store_cipher_text(&pair, &envelope::to_text(&sealed))
        .await
        .unwrap();

    let custodian = support::custodian_flow(
        custodian_client(&sim, &keys),
        keyring,
        support::portal_managed(),
        state.path(),
    );
    let err = custodian
        .eject(&keys.client_id, &EjectOptions::new().marking_ejected())
        .await
        .unwrap_err();
    match &err {
        Error::Eject {
            curve,
            pair_id,
            source,
        } => {
            assert_eq!(curve, "ED25519");
            assert_eq!(*pair_id, pair);
            assert!(
                matches!(source, eject::Error::PublicKeyMismatch { .. }),
                "{source}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(
        sim.client_details(&keys.client_id)
            .unwrap()
            .ejected_at
            .is_none(),
        "never marked after a wallet failed"
    );
    // Only the replaced ciphertext shows (this test did it); no early eject.
    let report = sim.report();
    assert_eq!(report.violations.len(), 1, "{report}");
    assert_eq!(
        report.violations[0].kind,
        portal_sim::ViolationKind::CipherTextReplacedAfterCompletion
    );
}

#[tokio::test]
async fn pair_choice_with_two_backup_methods() {
    let sim = sim(false).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let keyring = keyring();
    let owner = flow(
        client,
        keyring.clone(),
        support::portal_managed(),
        state.path(),
    );
    let first = owner.backup(&generate).await.unwrap();
    // A second backup under another method (Portal's multi-backup): a new pair per wallet.
    sim.set_backup_method(BackupMethod::Password);
    let state2 = tempfile::tempdir().unwrap();
    let client = support::portal_client(&sim, &keys.client_api_key);
    let second = support::stored(keyring.clone(), support::portal_managed(), state2.path())
        .forcing_new_backups(true)
        .session(client)
        .backup(&generate)
        .await
        .unwrap();
    assert_ne!(first.backup_share_pair_ids, second.backup_share_pair_ids);

    let custodian = support::custodian_flow(
        custodian_client(&sim, &keys),
        keyring.clone(),
        support::portal_managed(),
        state.path(),
    );
    let details = sim.client_details(&keys.client_id).unwrap();
    // Default: the newest completed pair (PASSWORD).
    let newest = custodian
        .eject(&keys.client_id, &EjectOptions::new())
        .await
        .unwrap();
    assert_true_keys(&sim, &details, &newest);
    for w in &newest.wallets {
        assert_eq!(
            w.backup_share_pair_id,
            second.backup_share_pair_ids[w.curve.as_str()]
        );
        assert_eq!(w.backup_method, Some(BackupMethod::Password));
    }
    // --backup-method CUSTOM: the older pair, its custodian share from prepare-eject.
    let custom = custodian
        .eject(
            &keys.client_id,
            &EjectOptions::new().with_backup_method(BackupMethod::Custom),
        )
        .await
        .unwrap();
    assert_true_keys(&sim, &details, &custom);
    for w in &custom.wallets {
        assert_eq!(
            w.backup_share_pair_id,
            first.backup_share_pair_ids[w.curve.as_str()]
        );
    }
    // A method with no completed pair names the ones there are.
    let err = custodian
        .eject(
            &keys.client_id,
            &EjectOptions::new().with_backup_method(BackupMethod::Gdrive),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("completed backup methods: CUSTOM, PASSWORD"),
        "{err}"
    );
    // Recover takes the method too.
    let client = support::portal_client(&sim, &keys.client_api_key);
    let recovered = flow(client, keyring, support::portal_managed(), state.path())
        .recover_using(Some(&BackupMethod::Custom))
        .await
        .unwrap();
    assert_eq!(recovered.shares.iter().count(), 2);
    assert_clean(&sim);
}

/// A Self-Managed simulator whose webhook is the real `custodian-webhook` server over a vault
/// this test can read afterwards.
async fn self_managed_sim(vault_keyring: Keyring, vault_store: Arc<MemoryStore>) -> PortalSim {
    let server = WebhookServer::builder()
        .with_keyring(vault_keyring)
        .with_store(vault_store)
        .with_secrets(WebhookSecrets::parse(support::WEBHOOK_SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
    let config = SimConfig::new()
        .with_seed(11)
        .with_mode(BackupMode::SelfManaged(WebhookConfig::new(
            url,
            ApiKey::from(support::WEBHOOK_SECRET),
        )));
    PortalSim::start(config).await.unwrap()
}

#[tokio::test]
async fn offline_eject_of_a_self_managed_client_with_portal_stopped() {
    let vault_keyring = keyring();
    let vault_store = Arc::new(MemoryStore::new());
    let sim = self_managed_sim(vault_keyring.clone(), Arc::clone(&vault_store)).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keyring = keyring();
    let outcome = flow(client, keyring.clone(), fs_store(data.path()), state.path())
        .backup(&generate)
        .await
        .unwrap();
    let details = sim.client_details(&keys.client_id).unwrap();
    let truth: Vec<(Curve, String)> = details
        .wallets
        .iter()
        .map(|w| {
            (
                w.curve.clone(),
                sim.wallet_private_key_hex(&w.id).unwrap().to_string(),
            )
        })
        .collect();
    assert_clean(&sim);
    let addr = sim.local_addr();
    sim.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "Portal is gone"
    );

    let vault = ShareVault::new(vault_keyring, vault_store).unwrap();
    let custodian_shares: Vec<SecretShare> = vault
        .fetch(&keys.client_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| SecretShare::new(s.expose_secret().to_owned()))
        .collect();
    assert_eq!(custodian_shares.len(), 2);
    // No Portal role at all: the flow cannot reach the (stopped) simulator.
    let report = support::stored(keyring, fs_store(data.path()), state.path())
        .eject_offline(&keys.client_id, &custodian_shares)
        .await
        .unwrap();
    assert_eq!(report.wallets.len(), 2);
    assert!(report.unmatched_custodian_pairs.is_empty());
    for (curve, key) in truth {
        let w = report.wallets.iter().find(|w| w.curve == curve).unwrap();
        assert_eq!(w.key.private_key_hex().as_str(), key);
        assert_eq!(
            w.backup_share_pair_id,
            outcome.backup_share_pair_ids[curve.as_str()]
        );
        assert_eq!(
            w.key.portal_wallet_key(),
            eject::PortalKeyCheck::NotAvailable
        );
    }
}

#[tokio::test]
async fn offline_eject_names_the_pair_whose_client_half_was_never_stored() {
    let vault_keyring = keyring();
    let vault_store = Arc::new(MemoryStore::new());
    let sim = self_managed_sim(vault_keyring.clone(), Arc::clone(&vault_store)).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keyring = keyring();
    flow(client, keyring.clone(), fs_store(data.path()), state.path())
        .backup(&generate)
        .await
        .unwrap();
    // Another backup whose client half is never stored (the app called /v1/backup and lost
    // the answer): the webhook now keeps only its custodian shares, one per method.
    let orphan = support::portal_client(&sim, &keys.client_api_key)
        .backup(&generate)
        .await
        .unwrap();
    sim.shutdown().await.unwrap();

    let vault = ShareVault::new(vault_keyring, vault_store).unwrap();
    let custodian_shares: Vec<SecretShare> = vault
        .fetch(&keys.client_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| SecretShare::new(s.expose_secret().to_owned()))
        .collect();
    let err = support::stored(keyring, fs_store(data.path()), state.path())
        .eject_offline(&keys.client_id, &custodian_shares)
        .await
        .unwrap_err();
    let text = err.to_string();
    for (_, share) in orphan.iter() {
        assert!(text.contains(&share.id), "{text}");
    }
    assert!(text.contains("never stored"), "{text}");
    assert!(matches!(err, Error::NoClientHalf { .. }));
}
