//! Requests Portal would refuse: refused here too, and listed in the invariant report.

mod support;

use base64::Engine as _;
use portal_api::client_api::SharePairStatusUpdate;
use portal_api::custodian_api::ListClientsQuery;
use portal_api::mpc::{CurveShare, CurveShares};
use portal_api::{Curve, SecretShare, SharePairUpdateStatus, paths};
use portal_sim::{SimConfig, ViolationKind};
use serde_json::{Value, json};
use support::{
    assert_bare_401, backed_up, client_for, client_with_key, complete_backup, error_message, http,
    mark_backup, start, start_with_client, wallet,
};

#[tokio::test]
async fn wrong_credentials_are_401_of_the_right_kind() {
    let sim = start(SimConfig::new()).await;
    let keys = sim.create_client();

    let err = client_with_key(&sim, "not-a-key")
        .client_me()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.error_id(), Some("AUTH_FAILED"));

    let custodian_as_client = client_with_key(&sim, keys.custodian_api_key.expose_secret());
    assert_eq!(
        custodian_as_client.generate().await.unwrap_err().status(),
        Some(401)
    );

    let client_as_custodian = client_with_key(&sim, keys.client_api_key.expose_secret());
    let err = client_as_custodian
        .custodian
        .list_clients(&ListClientsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    // Custodian API errors are {"error": "..."}.
    assert!(error_message(&err).contains("client credential"));

    let raw = http()
        .get(format!("{}{}", sim.base_url(), paths::CLIENT_ME))
        .header("authorization", "Token abc")
        .send()
        .await
        .unwrap();
    assert_bare_401(raw, "Incorrect API key format").await;

    let report = sim.report();
    assert!(!report.is_clean());
    assert_eq!(report.rejected(paths::CLIENT_ME, "AUTH_FAILED"), 2);
    assert_eq!(
        report.rejected(
            paths::MPC_GENERATE,
            "AUTH_FAILED: a custodian api key cannot"
        ),
        1
    );
    assert_eq!(report.rejected(paths::CUSTODIAN_CLIENTS, "AUTH_FAILED"), 1);
    assert!(report.violations.is_empty());
}

#[tokio::test]
async fn foreign_ids_are_not_found() {
    let sim = start(SimConfig::new()).await;
    let (ka, kb) = (sim.create_client(), sim.create_client());
    let (a, b) = (client_for(&sim, &ka), client_for(&sim, &kb));
    let gen_a = wallet(&a).await;
    let gen_b = wallet(&b).await;
    let backup_b = b.backup(&gen_b).await.unwrap();
    let b_pair = &backup_b.secp256k1.as_ref().unwrap().id;

    assert_eq!(
        a.store_cipher_text(b_pair, "x").await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(a.cipher_text(b_pair).await.unwrap_err().status(), Some(404));
    let err = a
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(gen_b.ids()))
        .await
        .unwrap_err();
    assert_eq!(err.error_id(), Some("NOT_FOUND"));
    let err = complete_backup(&a, &backup_b).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    // B's generate response under A's key.
    assert_eq!(a.backup(&gen_b).await.unwrap_err().status(), Some(404));
    assert_eq!(a.recover(&backup_b).await.unwrap_err().status(), Some(404));
    let b_wallet = b.client_me().await.unwrap().wallets[0].id.clone();
    assert_eq!(
        a.wallet_backup_share_pairs(&b_wallet)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    // Another custodian's client.
    let other = sim.create_custodian("other");
    let other_keys = sim.create_client_for(&other.id).unwrap();
    let other_client = client_for(&sim, &other_keys);
    assert_eq!(
        other_client
            .custodian
            .get_client(&ka.client_id)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );

    // A's own ids still work, B's pair is untouched.
    assert!(a.backup(&gen_a).await.is_ok());
    assert_eq!(sim.stored_cipher_text(b_pair), None);

    let report = sim.report();
    assert_eq!(report.rejected_requests(), 8, "{report}");
    assert_eq!(report.rejected(paths::BACKUP_SHARE_PAIR, "NOT_FOUND"), 1);
    assert_eq!(report.rejected(paths::MPC_BACKUP, "NOT_FOUND"), 1);
    assert_eq!(report.rejected(paths::CUSTODIAN_CLIENT, "NOT_FOUND"), 1);
}

#[tokio::test]
async fn forged_and_malformed_shares_are_refused() {
    let (sim, keys, client) = start_with_client(SimConfig::new()).await;
    let generated = wallet(&client).await;
    let secp_id = generated.secp256k1.as_ref().unwrap().id.clone();

    // Right id, a well-formed share Portal never issued.
    let forged_text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(
        json!({"clientId": keys.client_id, "share": "12345", "ssid": "YWJj", "signingSharePairId": secp_id})
            .to_string(),
    );
    let forged = CurveShares {
        secp256k1: Some(CurveShare::new(
            SecretShare::new(forged_text),
            secp_id.clone(),
        )),
        ed25519: None,
    };
    let err = client.backup(&forged).await.unwrap_err();
    assert_eq!(err.error_id(), Some("DKG_REFRESH_MISMATCH"));

    // Not a share at all.
    let garbage = CurveShares {
        secp256k1: Some(CurveShare::new(SecretShare::from("%%%"), secp_id.clone())),
        ed25519: None,
    };
    assert_eq!(
        client.backup(&garbage).await.unwrap_err().error_id(),
        Some("SHARE_PARSING_FAILED")
    );

    // The ED25519 share under the SECP256K1 key.
    let swapped = CurveShares {
        secp256k1: Some(CurveShare::new(
            SecretShare::from(generated.ed25519.as_ref().unwrap().share.expose_secret()),
            generated.ed25519.as_ref().unwrap().id.clone(),
        )),
        ed25519: None,
    };
    assert_eq!(
        client.backup(&swapped).await.unwrap_err().error_id(),
        Some("BAD_REQUEST")
    );
    assert_eq!(
        client
            .backup(&CurveShares::default())
            .await
            .unwrap_err()
            .error_id(),
        Some("BAD_REQUEST")
    );

    // A backup share for recover that was never issued.
    let backup = backed_up(&client, &generated).await;
    let bp = backup.ed25519.as_ref().unwrap().id.clone();
    let forged_backup = CurveShares {
        secp256k1: None,
        ed25519: Some(CurveShare::new(
            SecretShare::from(generated.ed25519.as_ref().unwrap().share.expose_secret()),
            bp,
        )),
    };
    assert_eq!(
        client.recover(&forged_backup).await.unwrap_err().error_id(),
        Some("DKG_REFRESH_MISMATCH")
    );

    // Malformed bodies, by hand.
    let http = http();
    let base = sim.base_url();
    let key = keys.client_api_key.expose_secret();
    for (path, body) in [
        (paths::MPC_BACKUP, json!({"generateResponse": "not json"})),
        (
            paths::MPC_BACKUP,
            json!({"generateResponse": {"SECP256K1": {}}}),
        ),
        (paths::MPC_RECOVER, json!({})),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["id"], "BAD_REQUEST");
        assert!(body["message"].is_string());
    }
    let r = http
        .patch(format!("{base}{}", paths::SIGNING_SHARE_PAIRS))
        .bearer_auth(key)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .patch(format!("{base}{}", paths::SIGNING_SHARE_PAIRS))
        .bearer_auth(key)
        .json(&json!({"signingSharePairIds": [secp_id], "status": "STORED_CLIENT_BACKUP_SHARE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{base}/api/v3/clients/me/nothing-here"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let report = sim.report();
    assert_eq!(
        report.rejected(paths::MPC_BACKUP, "DKG_REFRESH_MISMATCH"),
        1
    );
    assert_eq!(
        report.rejected(paths::MPC_BACKUP, "SHARE_PARSING_FAILED"),
        1
    );
    assert_eq!(
        report.rejected(paths::MPC_RECOVER, "DKG_REFRESH_MISMATCH"),
        1
    );
    assert_eq!(report.rejected(paths::MPC_BACKUP, "BAD_REQUEST"), 4);
    assert_eq!(
        report.rejected(paths::SIGNING_SHARE_PAIRS, "BAD_REQUEST"),
        2
    );
    assert_eq!(
        report.rejected("/api/v3/clients/me/nothing-here", "NOT_FOUND"),
        1
    );
    let text = report.to_string();
    assert!(!text.contains(generated.secp256k1.as_ref().unwrap().share.expose_secret()));
}

#[tokio::test]
async fn out_of_order_and_premature_steps_are_reported() {
    let (sim, keys, client) = start_with_client(SimConfig::new()).await;

    // Backup before the signing share is confirmed.
    let generated = client.generate().await.unwrap();
    assert_eq!(
        client.backup(&generated).await.unwrap_err().error_id(),
        Some("STATE_INVALID")
    );
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generated.ids()))
        .await
        .unwrap();
    // A second generate for the same client.
    assert_eq!(
        client.generate().await.unwrap_err().error_id(),
        Some("STATE_INVALID")
    );

    // Recover before the backup is completed.
    let backup = client.backup(&generated).await.unwrap();
    assert_eq!(
        client.recover(&backup).await.unwrap_err().error_id(),
        Some("STATE_INVALID")
    );

    // Marked stored without a ciphertext (accepted, as Portal would, but reported).
    complete_backup(&client, &backup).await.unwrap();
    // Back to _KEY: refused and reported.
    let err = mark_backup(
        &client,
        &backup,
        SharePairUpdateStatus::StoredClientBackupShareKey,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_id(), Some("STATE_INVALID"));
    // Ciphertext stored late, then replaced.
    let secp_pair = backup.get(&Curve::Secp256k1).unwrap().id.clone();
    client.store_cipher_text(&secp_pair, "late").await.unwrap();
    client.store_cipher_text(&secp_pair, "late").await.unwrap();
    client.store_cipher_text(&secp_pair, "other").await.unwrap();

    let report = sim.report();
    assert!(!report.is_clean());
    let missing: Vec<_> = report
        .violations_of(ViolationKind::StoredWithoutCipherText)
        .map(|v| v.pair_id.clone().unwrap())
        .collect();
    assert_eq!(missing, backup.ids());
    let out_of_order: Vec<_> = report
        .violations_of(ViolationKind::OutOfOrderStatus)
        .collect();
    assert_eq!(out_of_order.len(), 1);
    assert!(
        out_of_order[0]
            .detail
            .contains("STORED_CLIENT_BACKUP_SHARE -> STORED_CLIENT_BACKUP_SHARE_KEY")
    );
    assert_eq!(
        report
            .violations_of(ViolationKind::CipherTextReplacedAfterCompletion)
            .count(),
        1
    );
    assert!(
        report
            .violations
            .iter()
            .all(|v| v.client_id == keys.client_id)
    );
    assert_eq!(report.rejected(paths::MPC_BACKUP, "STATE_INVALID"), 1);
    assert_eq!(report.rejected(paths::MPC_GENERATE, "STATE_INVALID"), 1);
    assert_eq!(report.rejected(paths::MPC_RECOVER, "STATE_INVALID"), 1);
    assert_eq!(
        report.rejected(paths::BACKUP_SHARE_PAIRS, "STATE_INVALID"),
        1
    );

    let text = report.to_string();
    assert!(
        text.contains("backup pair marked stored without a stored ciphertext"),
        "{text}"
    );
    assert!(
        text.contains("share pair status changed out of order"),
        "{text}"
    );
    assert!(
        text.contains("POST /v1/backup -> 400 STATE_INVALID"),
        "{text}"
    );
    sim.reset_report();
    assert!(sim.report().is_clean());
}
