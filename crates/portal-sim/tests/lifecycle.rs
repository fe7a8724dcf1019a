//! Every endpoint through `portal_api`'s client and custodian roles against the simulator,
//! the whole lifecycle, the custodian and eject routes, and the admin routes.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use portal_api::client_api::{EjectClientRequest, PrepareEjectRequest, SharePairStatusUpdate};
use portal_api::custodian_api::{CreateClientRequest, CreateSessionRequest, ListClientsQuery};
use portal_api::{BackupMethod, Curve, SharePairStatus, SharePairUpdateStatus};
use portal_sim::{PortalSim, SimConfig, StatusView, ViolationKind};
use serde_json::{Value, json};
use support::{
    assert_bare_401, backed_up, client_for, decode_share, enable_eject, error_message, http,
    mark_backup, send_json, send_text, start, start_with_client, wallet,
};

#[tokio::test]
async fn full_lifecycle_generate_backup_store_complete_recover() {
    let (sim, keys, client) = start_with_client(SimConfig::new().with_seed(1)).await;

    // generate: both curves, Portal-shaped shares, signing pairs STORED_DATABASE (incomplete).
    let generated = client.generate().await.unwrap();
    assert_eq!(generated.ids().len(), 2);
    for (curve, entry) in generated.iter() {
        let text = entry.share.expose_secret();
        assert!(!text.contains('='), "unpadded");
        assert!(text.len() > 4096, "{curve}: {} bytes", text.len());
        let share = decode_share(text);
        assert_eq!(share["clientId"], keys.client_id.as_str());
        assert_eq!(share["signingSharePairId"], entry.id.as_str());
        assert!(
            share["share"]
                .as_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
        assert!(share["ssid"].is_string() && share["pubkey"]["X"].is_string());
    }
    let me = client.client_me().await.unwrap();
    assert_eq!(me.id, keys.client_id);
    assert!(me.backup_with_portal_enabled());
    assert_eq!(me.wallets.len(), 2);
    let secp = me.wallet(&Curve::Secp256k1).unwrap();
    assert_eq!(
        secp.signing_share_pairs[0].status,
        SharePairStatus::Incomplete
    );
    assert!(secp.public_key.as_deref().unwrap().contains("\"X\""));
    assert!(
        me.metadata
            .as_ref()
            .unwrap()
            .namespaces
            .contains_key("eip155")
    );
    assert!(
        me.metadata
            .as_ref()
            .unwrap()
            .namespaces
            .contains_key("solana")
    );

    // confirm STORED_CLIENT (twice: retries are harmless).
    for _ in 0..2 {
        client
            .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generated.ids()))
            .await
            .unwrap();
    }
    let me = client.client_me().await.unwrap();
    for w in &me.wallets {
        assert_eq!(w.signing_share_pairs[0].status, SharePairStatus::Completed);
    }

    // backup: backup pair ids, fresh shares carrying backupSharePairId.
    let backup = client.backup(&generated).await.unwrap();
    for (curve, entry) in backup.iter() {
        let share = decode_share(entry.share.expose_secret());
        assert_eq!(share["backupSharePairId"], entry.id.as_str());
        assert_ne!(
            entry.share,
            generated.get(&curve).unwrap().share,
            "backup shares differ from signing shares"
        );
    }
    let me = client.client_me().await.unwrap();
    let pair = &me.wallet(&Curve::Ed25519).unwrap().backup_share_pairs[0];
    assert_eq!(pair.status, SharePairStatus::Incomplete);
    assert_eq!(pair.backup_method, Some(BackupMethod::Custom));

    // store the ciphertexts, read them back, then mark KEY and SHARE.
    for (_, entry) in backup.iter() {
        client
            .store_cipher_text(&entry.id, &format!("ct-{}", entry.id))
            .await
            .unwrap();
        assert_eq!(
            client.cipher_text(&entry.id).await.unwrap(),
            format!("ct-{}", entry.id)
        );
        assert_eq!(
            sim.stored_cipher_text(&entry.id).unwrap(),
            format!("ct-{}", entry.id)
        );
    }
    for status in [
        SharePairUpdateStatus::StoredClientBackupShareKey,
        SharePairUpdateStatus::StoredClientBackupShare,
        SharePairUpdateStatus::StoredClientBackupShare,
    ] {
        mark_backup(&client, &backup, status).await.unwrap();
    }
    let me = client.client_me().await.unwrap();
    for w in &me.wallets {
        let latest = w.latest_completed_backup_pair().unwrap();
        assert_eq!(&latest.id, &backup.get(&w.curve).unwrap().id);
    }

    // wallet-scoped listings.
    let wallet_id = &me.wallet(&Curve::Secp256k1).unwrap().id;
    let pairs = client.wallet_backup_share_pairs(wallet_id).await.unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].status, SharePairStatus::Completed);
    assert_eq!(pairs[0].backup_method, None);
    let signing = client.wallet_signing_share_pairs(wallet_id).await.unwrap();
    assert_eq!(signing.len(), 1);

    // recover: new signing pairs, STORED_DATABASE until confirmed.
    let recovered = client.recover(&backup).await.unwrap();
    let new_ids: HashSet<_> = recovered.ids().into_iter().collect();
    assert!(new_ids.is_disjoint(&generated.ids().into_iter().collect()));
    for (curve, entry) in recovered.iter() {
        let share = decode_share(entry.share.expose_secret());
        assert_eq!(share["signingSharePairId"], entry.id.as_str());
        // Same wallet, same public key.
        let old = decode_share(generated.get(&curve).unwrap().share.expose_secret());
        assert_eq!(share["pubkey"], old["pubkey"]);
    }
    let signing = client.wallet_signing_share_pairs(wallet_id).await.unwrap();
    assert_eq!(signing.len(), 2);
    assert_eq!(signing[1].status, SharePairStatus::Incomplete);
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(recovered.ids()))
        .await
        .unwrap();
    let signing = client.wallet_signing_share_pairs(wallet_id).await.unwrap();
    assert_eq!(signing[1].status, SharePairStatus::Completed);

    // A second backup from the recovered shares works; the old signing shares no longer do.
    let again = backed_up(&client, &recovered).await;
    assert_eq!(again.ids().len(), 2);
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
    assert!(client.backup(&generated).await.is_err());
    assert_eq!(
        sim.report().rejected("/v1/backup", "DKG_REFRESH_MISMATCH"),
        1
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn shares_differ_on_every_call_and_seeds_repeat_ids() {
    let run = |seed| async move {
        let (sim, keys, client) = start_with_client(SimConfig::new().with_seed(seed)).await;
        let generated = wallet(&client).await;
        let b1 = client.backup(&generated).await.unwrap();
        let b2 = client.backup(&generated).await.unwrap();
        assert_ne!(b1.ids(), b2.ids());
        assert_ne!(
            b1.secp256k1.as_ref().unwrap().share,
            b2.secp256k1.as_ref().unwrap().share
        );
        sim.shutdown().await.unwrap();
        (keys.client_id, generated.ids(), b1.ids())
    };
    assert_eq!(run(9).await, run(9).await);
    assert_ne!(run(9).await, run(10).await);
}

#[tokio::test]
async fn raw_status_view_shows_lifecycle_states() {
    let (sim, _keys, client) =
        start_with_client(SimConfig::new().with_status_view(StatusView::Raw)).await;
    let generated = client.generate().await.unwrap();
    let me = client.client_me().await.unwrap();
    assert_eq!(
        me.wallets[0].signing_share_pairs[0].status,
        SharePairStatus::StoredDatabase
    );
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generated.ids()))
        .await
        .unwrap();
    let backup = client.backup(&generated).await.unwrap();
    let me = client.client_me().await.unwrap();
    assert_eq!(
        me.wallets[0].backup_share_pairs[0].status,
        SharePairStatus::StoredCustodianBackupShare
    );
    assert_eq!(
        me.wallets[0].signing_share_pairs[0].status,
        SharePairStatus::StoredClient
    );
    mark_backup(
        &client,
        &backup,
        SharePairUpdateStatus::StoredClientBackupShareKey,
    )
    .await
    .unwrap();
    let me = client.client_me().await.unwrap();
    assert_eq!(
        me.wallets[0].backup_share_pairs[0].status,
        SharePairStatus::StoredClientBackupShareKey
    );
    assert!(sim.report().is_clean(), "{}", sim.report());
}

#[tokio::test]
async fn custodian_routes_clients_sessions_and_paging() {
    let (sim, keys, both) = start_with_client(SimConfig::new()).await;
    let custodian = both.custodian;

    let created = custodian
        .create_client(&CreateClientRequest {
            is_account_abstracted: Some(true),
        })
        .await
        .unwrap();
    assert_eq!(created.is_account_abstracted, Some(true));
    let as_new = custodian
        .portal()
        .client_with_api_key(&created.client_api_key)
        .unwrap();
    assert_eq!(as_new.client_me().await.unwrap().id, created.id);
    let with_token = custodian
        .portal()
        .client_with_session_token(&created.client_session_token)
        .unwrap();
    assert_eq!(with_token.client_me().await.unwrap().id, created.id);

    let session = custodian
        .create_client_session(&created.id, &CreateSessionRequest::default())
        .await
        .unwrap();
    assert_eq!(session.id, created.id);
    let with_session = custodian
        .portal()
        .client_with_session_token(&session.client_session_token)
        .unwrap();
    assert_eq!(with_session.client_me().await.unwrap().id, created.id);

    let details = custodian.get_client(&created.id).await.unwrap();
    assert_eq!(details.id, created.id);
    assert_eq!(details.is_account_abstracted, Some(true));

    for _ in 0..3 {
        custodian
            .create_client(&CreateClientRequest::default())
            .await
            .unwrap();
    }
    // 5 clients in all (one from create_client above the loop, plus keys' own).
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = custodian
            .list_clients(&ListClientsQuery {
                cursor: cursor.clone(),
                take: Some(2),
            })
            .await
            .unwrap();
        assert_eq!(page.metadata.total, Some(5));
        assert!(page.results.len() <= 2);
        seen.extend(page.results.into_iter().map(|c| c.id));
        match page.metadata.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    assert_eq!(seen[0], keys.client_id);

    // Another custodian sees none of them.
    let other = sim.create_custodian("other");
    let other_client = sim.create_client_for(&other.id).unwrap();
    let other = client_for(&sim, &other_client);
    let list = other
        .custodian
        .list_clients(&ListClientsQuery::default())
        .await
        .unwrap();
    assert_eq!(list.results.len(), 1);
    assert_eq!(list.results[0].id, other_client.client_id);
    assert!(sim.report().is_clean(), "{}", sim.report());

    // Session tokens expire after 24 h idle; API keys do not.
    sim.advance_clock(Duration::from_secs(25 * 3600));
    assert_eq!(
        with_session.client_me().await.unwrap_err().status(),
        Some(401)
    );
    assert!(as_new.client_me().await.is_ok());
    assert_eq!(
        sim.report().rejected(
            portal_api::paths::CLIENT_ME,
            "AUTH_FAILED: client session token expired"
        ),
        1
    );
}

#[tokio::test]
async fn eject_window_custodian_and_client_routes() {
    let (sim, keys, client) = start_with_client(SimConfig::new()).await;
    let generated = wallet(&client).await;
    let backup = backed_up(&client, &generated).await;
    let me = client.client_me().await.unwrap();
    let secp = me.wallet(&Curve::Secp256k1).unwrap();

    // Not ejectable until the custodian opens a window.
    let err = client.ejectable_backup_shares(&secp.id).await.unwrap_err();
    assert_eq!(err.error_id(), Some("STATE_INVALID"));

    let opened = enable_eject(&client, &keys.client_id, &secp.id, None)
        .await
        .unwrap();
    let me = client.client_me().await.unwrap();
    assert_eq!(
        me.wallet(&Curve::Secp256k1)
            .unwrap()
            .ejectable_until
            .as_deref(),
        Some(opened.ejectable_until.as_str())
    );

    let from_custodian = client
        .custodian
        .ejectable_backup_shares(&keys.client_id, &secp.id)
        .await
        .unwrap();
    let bp = &backup.secp256k1.as_ref().unwrap().id;
    assert_eq!(
        from_custodian.encrypted_client_backup_share.as_deref(),
        Some(format!("ciphertext-of-SECP256K1-{bp}").as_str())
    );
    let custodian_share: Value =
        serde_json::from_str(from_custodian.custodian_backup_share.expose_secret()).unwrap();
    assert_eq!(custodian_share["backupSharePairId"], bp.as_str());
    assert!(custodian_share["pedersenServer_n"].is_string());

    // The client route returns the same and closes the window.
    let from_client = client.ejectable_backup_shares(&secp.id).await.unwrap();
    assert_eq!(
        from_client.custodian_backup_share,
        from_custodian.custodian_backup_share
    );
    let me = client.client_me().await.unwrap();
    assert_eq!(me.wallet(&Curve::Secp256k1).unwrap().ejectable_until, None);
    assert!(client.ejectable_backup_shares(&secp.id).await.is_err());

    // Windows expire with (simulated) time; windows under a minute are refused.
    enable_eject(&client, &keys.client_id, &secp.id, None)
        .await
        .unwrap();
    sim.advance_clock(Duration::from_secs(6 * 60));
    assert!(
        client
            .custodian
            .ejectable_backup_shares(&keys.client_id, &secp.id)
            .await
            .is_err()
    );
    let err = enable_eject(
        &client,
        &keys.client_id,
        &secp.id,
        Some("2001-01-01T00:00:00.000Z"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(error_message(&err).contains("at least 1 minute"));

    // prepare-eject answers only inside a window, then complete-eject, eject.
    let prepare = || {
        client.prepare_eject(
            &secp.id,
            &PrepareEjectRequest {
                backup_method: BackupMethod::Custom,
            },
        )
    };
    assert_eq!(
        prepare().await.unwrap_err().error_id(),
        Some("STATE_INVALID")
    );
    enable_eject(&client, &keys.client_id, &secp.id, None)
        .await
        .unwrap();
    let prepared = prepare().await.unwrap();
    assert!(prepared.share.expose_secret().contains("backupSharePairId"));
    // The shares are real: the backup's client share and this custodian share rebuild the
    // wallet's key, which matches its publicKey at Portal.
    let rebuilt = eject::combine(
        eject::Curve::Secp256k1,
        &eject::ClientShare::parse(backup.secp256k1.as_ref().unwrap().share.expose_secret())
            .unwrap(),
        &eject::CustodianShare::parse(prepared.share.expose_secret()).unwrap(),
        &eject::Expected {
            backup_share_pair_id: Some(bp),
            portal_wallet_public_key: secp.public_key.as_deref(),
        },
    )
    .unwrap();
    assert_eq!(rebuilt.portal_wallet_key(), eject::PortalKeyCheck::Matched);
    assert_eq!(
        rebuilt.private_key_hex(),
        sim.wallet_private_key_hex(&secp.id).unwrap()
    );
    client.complete_eject(&secp.id).await.unwrap();
    client
        .eject_client(&EjectClientRequest {
            client_platform: "NATIVE_IOS".into(),
            client_platform_version: "1".into(),
        })
        .await
        .unwrap();
    assert!(client.client_me().await.unwrap().ejected_at.is_some());

    let report = sim.report();
    // The refusals above, and one tool invariant: the client was marked ejected although its
    // ed25519 wallet's shares were never fetched (Portal permits that).
    let early: Vec<_> = report
        .violations_of(ViolationKind::MarkedEjectedEarly)
        .collect();
    assert_eq!(early.len(), 1, "{report}");
    assert!(early[0].detail.contains("ED25519"), "{report}");
    assert_eq!(report.violations.len(), 1, "{report}");
    assert!(
        report
            .to_string()
            .contains("violations of this tool's invariants (Portal permits these)"),
        "{report}"
    );
    assert_eq!(report.rejected_requests(), 5, "{report}");
}

#[tokio::test]
async fn debug_output_never_shows_keys_or_shares() {
    let (sim, keys, client) = start_with_client(SimConfig::new()).await;
    let generated = wallet(&client).await;
    let share = generated
        .secp256k1
        .as_ref()
        .unwrap()
        .share
        .expose_secret()
        .to_owned();
    for text in [
        format!("{keys:?}"),
        format!("{keys:#?}"),
        format!("{sim:?}"),
        format!("{:#?}", sim.simulator()),
        format!("{:?}", sim.default_custodian()),
        sim.report().to_string(),
    ] {
        assert!(
            !text.contains(keys.client_api_key.expose_secret()),
            "{text}"
        );
        assert!(
            !text.contains(keys.client_session_token.expose_secret()),
            "{text}"
        );
        assert!(
            !text.contains(keys.custodian_api_key.expose_secret()),
            "{text}"
        );
        assert!(!text.contains(&share), "{text}");
    }
}

#[tokio::test]
async fn admin_routes_over_http() {
    let sim = start(SimConfig::new()).await;
    let base = sim.base_url();
    let http = http();
    assert_eq!(
        send_text(http.get(format!("{base}/_sim/health"))).await,
        "ok"
    );
    let keys: Value = send_json(http.post(format!("{base}/_sim/clients"))).await;
    for field in [
        "custodianId",
        "custodianApiKey",
        "clientId",
        "clientApiKey",
        "clientSessionToken",
    ] {
        assert!(
            keys[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    let me: Value = send_json(
        http.get(format!("{base}{}", portal_api::paths::CLIENT_ME))
            .bearer_auth(keys["clientApiKey"].as_str().unwrap()),
    )
    .await;
    assert_eq!(me["id"], keys["clientId"]);
    assert_eq!(me["environment"]["backupWithPortalEnabled"], true);

    let custodian: Value = send_json(
        http.post(format!("{base}/_sim/custodians"))
            .json(&json!({"name": "acme"})),
    )
    .await;
    let of_custodian: Value = send_json(
        http.post(format!("{base}/_sim/clients"))
            .json(&json!({"custodianId": custodian["id"]})),
    )
    .await;
    assert_eq!(of_custodian["custodianApiKey"], custodian["apiKey"]);
    let unknown = http
        .post(format!("{base}/_sim/clients"))
        .json(&json!({"custodianId": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Faults: add (text and JSON), list, replace, clear.
    let added: Value = send_json(
        http.post(format!("{base}/_sim/faults"))
            .json(&json!("GET *: error=0.5, status=502")),
    )
    .await;
    assert_eq!(added[0]["route"], "GET *");
    assert_eq!(added[0]["errorStatus"], 502);
    let replaced: Value = send_json(
        http.put(format!("{base}/_sim/faults"))
            .json(&json!([{"route": "POST /v1/backup", "throttleRate": 1, "times": 1}])),
    )
    .await;
    assert_eq!(replaced.as_array().unwrap().len(), 1);
    assert_eq!(sim.simulator().faults()[0].throttle_rate, 1.0);
    let bad = http
        .post(format!("{base}/_sim/faults"))
        .json(&json!("GET *: error=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    http.delete(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert!(sim.simulator().faults().is_empty());

    // Report as JSON and text; reset.
    let unauthorized = http
        .get(format!("{base}{}", portal_api::paths::CLIENT_ME))
        .send()
        .await
        .unwrap();
    assert_bare_401(unauthorized, "Authorization header is missing").await;
    let report: Value = send_json(http.get(format!("{base}/_sim/report"))).await;
    assert_eq!(report["rejections"][0]["status"], 401);
    let text = send_text(http.get(format!("{base}/_sim/report?format=text"))).await;
    assert!(text.contains("NOT clean"), "{text}");
    assert!(text.contains("Authorization header is missing"), "{text}");
    http.delete(format!("{base}/_sim/report"))
        .send()
        .await
        .unwrap();
    assert!(sim.report().is_clean());

    // Clock.
    let resp = http
        .post(format!("{base}/_sim/clock/advance"))
        .json(&json!({"seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = PortalSim::start(SimConfig::new()).await.unwrap();
    let base = sim.base_url().to_owned();
    let http = http();
    assert!(http.get(format!("{base}/_sim/health")).send().await.is_ok());
    sim.shutdown().await.unwrap();
    let fresh = reqwest::Client::new();
    assert!(
        fresh
            .get(format!("{base}/_sim/health"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn binary_help_documents_local_development() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portal-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "--mode",
        "--webhook-url",
        "--webhook-secret",
        "--seed",
        "--fault",
        "/_sim/clients",
        "/_sim/report",
        "with_api_base_url",
        "X-Webhook-Secret",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn binary_refuses_bad_arguments() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portal-sim"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "127.0.0.1:0", "--fault", "GET *: error=7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid fault rule"));
    let out = run(&["--listen", "127.0.0.1:0", "--mode", "self-managed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--webhook-url"));
}

#[tokio::test]
async fn every_portal_api_route_template_is_served() {
    let sim = start(SimConfig::new()).await;
    let http = http();
    for template in portal_api::paths::ALL {
        let path: String = template
            .split('/')
            .map(|s| if s.starts_with('{') { "some-id" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let mut statuses = Vec::new();
        for method in [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::PATCH,
        ] {
            let r = http
                .request(method, format!("{}{path}", sim.base_url()))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        // Unauthenticated: 401 on the route's own method, 405 on the others, never 404.
        assert!(statuses.contains(&401), "{template}: {statuses:?}");
        assert!(!statuses.contains(&404), "{template}: {statuses:?}");
    }
}
