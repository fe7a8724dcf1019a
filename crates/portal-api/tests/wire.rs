//! Every example body of the Portal wire reference parses into the wire types and serializes
//! back to the same JSON.

use portal_api::client_api::{
    BackupSharePair, CipherTextResponse, ClientDetails, EjectClientRequest, EjectableBackupShares,
    PrepareEjectRequest, PrepareEjectResponse, SharePairStatusUpdate, SigningSharePair,
    StoreCipherTextRequest,
};
use portal_api::custodian_api::{
    ClientList, ClientSession, CreateClientRequest, CreateSessionRequest, CreatedClient,
    EnableEjectRequest, EnableEjectResponse, ListClientsQuery,
};
use portal_api::mpc::{
    BackupRequest, BackupResponse, CurveShares, GenerateRequest, GenerateResponse, RecoverRequest,
    RecoverResponse,
};
use portal_api::{BackupMethod, Curve, SharePairStatus, SharePairUpdateStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Parses `example`, serializes the result, and checks the JSON is unchanged.
fn round_trip<T: DeserializeOwned + Serialize>(example: &Value) -> T {
    let parsed: T = serde_json::from_value(example.clone()).expect("example parses");
    let back = serde_json::to_value(&parsed).expect("serializes");
    assert_eq!(&back, example, "round trip changed the body");
    parsed
}

const SHARE_SECP: &str = "eyJjbGllbnRJZCI6ImNsX2FiYyIsInNoYXJlIjoiMTIzNDU2Nzg5MCIsInNzaWQiOiJZV0pqIiwiYmFja3VwU2hhcmVQYWlySWQiOiIiLCJzaWduaW5nU2hhcmVQYWlySWQiOiJzcF8xIn0";
const SHARE_ED: &str =
    "eyJjbGllbnRJZCI6ImNsX2FiYyIsInNoYXJlIjoiOTg3NjU0MzIxMCIsInNzaWQiOiJaR1ZtIn0";

fn envelope() -> Value {
    json!({
        "SECP256K1": { "share": SHARE_SECP, "id": "clu0signsecp0001" },
        "ED25519": { "share": SHARE_ED, "id": "clu0signed0000001" }
    })
}

#[test]
fn generate_request_bodies() {
    let empty: GenerateRequest = round_trip(&json!({}));
    assert_eq!(empty, GenerateRequest::default());
    let sdk: GenerateRequest = round_trip(&json!({
        "usePreGenerated": true,
        "metadataStr": "{\"clientPlatform\":\"NATIVE_IOS\"}"
    }));
    assert_eq!(sdk.use_pre_generated, Some(true));
}

#[test]
fn generate_backup_recover_responses() {
    let generate: GenerateResponse = round_trip(&envelope());
    assert_eq!(
        generate.secp256k1.as_ref().unwrap().share.expose_secret(),
        SHARE_SECP
    );
    let backup: BackupResponse = round_trip(&json!({
        "SECP256K1": { "share": SHARE_SECP, "id": "clu0bkpsecp0001" },
        "ED25519": { "share": SHARE_ED, "id": "clu0bkped0000001" }
    }));
    assert_eq!(backup.ids(), ["clu0bkpsecp0001", "clu0bkped0000001"]);
    let _recover: RecoverResponse = round_trip(&envelope());
}

#[test]
fn lower_case_envelope_parses_and_serializes_upper_case() {
    let lower = json!({
        "secp256k1": { "share": SHARE_SECP, "id": "a" },
        "ed25519": { "share": SHARE_ED, "id": "b" }
    });
    let parsed: CurveShares = serde_json::from_value(lower).unwrap();
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(back["SECP256K1"]["id"], "a");
    assert_eq!(back["ED25519"]["id"], "b");
}

#[test]
fn backup_and_recover_requests_carry_json_strings() {
    let text = serde_json::to_string(&envelope()).unwrap();
    let req: BackupRequest = round_trip(&json!({ "generateResponse": text }));
    let inner = req.parse_generate_response().unwrap();
    assert_eq!(inner.ed25519.unwrap().id, "clu0signed0000001");
    let req: RecoverRequest = round_trip(&json!({ "backupResponse": text }));
    assert_eq!(req.parse_backup_response().unwrap().ids().len(), 2);
    // A nested object is not what Portal takes and is rejected.
    assert!(
        serde_json::from_value::<BackupRequest>(json!({ "generateResponse": envelope() })).is_err()
    );
}

fn client_me() -> Value {
    json!({
        "id": "clu0client000001",
        "createdAt": "2024-02-07T17:31:04.474Z",
        "ejectedAt": null,
        "isAccountAbstracted": false,
        "custodian": { "id": "clu0custodian001", "name": "Portal Test Custodian" },
        "environment": {
            "id": "clu0environment1",
            "name": "development",
            "backupWithPortalEnabled": true
        },
        "metadata": {
            "namespaces": {
                "eip155": { "address": "0x73eb3f1e5cbf0aa4a0b1c6e4a0b3f9f2a0b1c6e4", "curve": "SECP256K1" },
                "solana": { "address": "5Bz3oQ9q8m7rX1vY2wZ3aB4cD5eF6gH7iJ8kL9mN0pQ", "curve": "ED25519" },
                "bip122": {
                    "address": "bc1qexampleaddress",
                    "curve": "SECP256K1",
                    "bitcoin": { "p2wpkh": { "mainnet": "bc1qexampleaddress", "testnet": "tb1qexampleaddress" } }
                }
            }
        },
        "wallets": [
            {
                "id": "clu0walletsecp01",
                "createdAt": "2024-02-07T17:31:05.000Z",
                "curve": "SECP256K1",
                "publicKey": "{\"X\":\"1\",\"Y\":\"2\"}",
                "ejectableUntil": null,
                "backupSharePairs": [
                    { "id": "clu0bkpsecp0001", "createdAt": "2024-02-07T17:32:00.000Z", "backupMethod": "CUSTOM", "status": "completed" },
                    { "id": "clu0bkpsecp0002", "createdAt": "2024-02-08T17:32:00.000Z", "backupMethod": "PASSWORD", "status": "incomplete" }
                ],
                "signingSharePairs": [
                    { "id": "clu0signsecp0001", "createdAt": "2024-02-07T17:31:05.000Z", "status": "completed" }
                ]
            },
            {
                "id": "clu0walleted0001",
                "createdAt": "2024-02-07T17:31:05.000Z",
                "curve": "ED25519",
                "publicKey": "{\"X\":\"3\",\"Y\":\"4\"}",
                "ejectableUntil": "2024-02-09T00:00:00.000Z",
                "backupSharePairs": [
                    { "id": "clu0bkped0000001", "createdAt": "2024-02-07T17:32:00.000Z", "backupMethod": "FIREBASE", "status": "STORED_CLIENT_BACKUP_SHARE_KEY" }
                ],
                "signingSharePairs": [
                    { "id": "clu0signed0000001", "createdAt": "2024-02-07T17:31:05.000Z", "status": "STORED_DATABASE" }
                ]
            }
        ]
    })
}

#[test]
fn clients_me() {
    let me: ClientDetails = round_trip(&client_me());
    assert!(me.backup_with_portal_enabled());
    let secp = me.wallet(&Curve::Secp256k1).unwrap();
    assert_eq!(
        secp.latest_completed_backup_pair().unwrap().id,
        "clu0bkpsecp0001"
    );
    assert_eq!(
        secp.backup_share_pairs[1].backup_method,
        Some(BackupMethod::Password)
    );
    let ed = me.wallet(&Curve::Ed25519).unwrap();
    assert_eq!(
        ed.ejectable_until.as_deref(),
        Some("2024-02-09T00:00:00.000Z")
    );
    assert_eq!(
        ed.backup_share_pairs[0].status,
        SharePairStatus::StoredClientBackupShareKey
    );
    assert_eq!(
        ed.signing_share_pairs[0].status,
        SharePairStatus::StoredDatabase
    );
    assert_eq!(
        me.metadata.unwrap().namespaces["solana"].curve,
        Some(Curve::Ed25519)
    );
}

#[test]
fn clients_me_with_unknown_values_and_fields() {
    let mut body = client_me();
    body["wallets"][0]["curve"] = json!("BLS12381");
    body["wallets"][0]["backupSharePairs"][0]["backupMethod"] = json!("PASSWORD-SECP256K1");
    body["wallets"][0]["backupSharePairs"][0]["status"] = json!("SOMETHING_NEW");
    body["someFutureField"] = json!({"a": 1});
    let me: ClientDetails = serde_json::from_value(body).unwrap();
    assert_eq!(me.wallets[0].curve, Curve::Other("BLS12381".into()));
    let pair = &me.wallets[0].backup_share_pairs[0];
    assert_eq!(
        pair.backup_method,
        Some(BackupMethod::Other("PASSWORD-SECP256K1".into()))
    );
    assert_eq!(pair.status, SharePairStatus::Other("SOMETHING_NEW".into()));
    let back = serde_json::to_value(&me).unwrap();
    assert_eq!(back["wallets"][0]["curve"], "BLS12381");
    assert_eq!(
        back["wallets"][0]["backupSharePairs"][0]["status"],
        "SOMETHING_NEW"
    );
}

#[test]
fn minimal_client_parses() {
    let me: ClientDetails = serde_json::from_value(json!({ "id": "c" })).unwrap();
    assert!(me.wallets.is_empty());
    assert!(!me.backup_with_portal_enabled());
}

#[test]
fn share_pair_bodies() {
    let req: StoreCipherTextRequest = round_trip(&json!({ "clientCipherText": "0351cf2baa5474" }));
    assert_eq!(req.client_cipher_text, "0351cf2baa5474");
    let resp: CipherTextResponse = round_trip(&json!({ "cipherText": "0351cf2baa5474" }));
    assert_eq!(resp.cipher_text, "0351cf2baa5474");

    let signing: SharePairStatusUpdate = round_trip(&json!({
        "signingSharePairIds": ["clu0signsecp0001", "clu0signed0000001"],
        "status": "STORED_CLIENT"
    }));
    assert_eq!(signing.status, SharePairUpdateStatus::StoredClient);
    for status in [
        "STORED_CLIENT_BACKUP_SHARE_KEY",
        "STORED_CLIENT_BACKUP_SHARE",
    ] {
        let backup: SharePairStatusUpdate = round_trip(&json!({
            "backupSharePairIds": ["clu0bkpsecp0001", "clu0bkped0000001"],
            "status": status
        }));
        assert!(backup.status.is_known());
    }

    let listed: Vec<BackupSharePair> = round_trip(&json!([
        { "id": "clu0bkpsecp0001", "createdAt": "2024-02-07T17:32:00.000Z", "status": "completed" }
    ]));
    assert_eq!(listed[0].backup_method, None);
    let listed: Vec<SigningSharePair> = round_trip(&json!([
        { "id": "clu0signsecp0001", "createdAt": "2024-02-07T17:31:05.000Z", "status": "STORED_CLIENT" }
    ]));
    assert_eq!(listed[0].status, SharePairStatus::StoredClient);
}

#[test]
fn client_eject_bodies() {
    let req: PrepareEjectRequest = round_trip(&json!({ "backupMethod": "PASSWORD" }));
    assert_eq!(req.backup_method, BackupMethod::Password);
    let custodian_share = "{\"backupSharePairId\":\"clu0bkpsecp0001\",\"clientId\":\"clu0client000001\",\"share\":\"42\",\"ssid\":\"YWJj\"}";
    let resp: PrepareEjectResponse = round_trip(&json!({ "share": custodian_share }));
    assert_eq!(resp.share.expose_secret(), custodian_share);
    let shares: EjectableBackupShares = round_trip(&json!({
        "encryptedClientBackupShare": "0351cf2baa5474",
        "custodianBackupShare": custodian_share
    }));
    assert!(!format!("{shares:?}").contains("\\\"share\\\":\\\"42"));
    let _: EjectableBackupShares = round_trip(&json!({
        "encryptedClientBackupShare": null,
        "custodianBackupShare": custodian_share
    }));
    let _: EjectClientRequest = round_trip(&json!({
        "clientPlatform": "NATIVE_IOS",
        "clientPlatformVersion": "4.2.0"
    }));
}

#[test]
fn custodian_bodies() {
    let _: CreateClientRequest = round_trip(&json!({}));
    let req: CreateClientRequest = round_trip(&json!({ "isAccountAbstracted": false }));
    assert_eq!(req.is_account_abstracted, Some(false));
    let created: CreatedClient = round_trip(&json!({
        "id": "clu0client000001",
        "clientApiKey": "00000000-0000-4000-8000-000000000001",
        "clientSessionToken": "00000000-0000-4000-8000-000000000002",
        "isAccountAbstracted": false
    }));
    let dbg = format!("{created:?}");
    assert!(!dbg.contains("00000000-0000-4000-8000-000000000001"));
    assert!(!dbg.contains("00000000-0000-4000-8000-000000000002"));
    let _: CreateSessionRequest = round_trip(&json!({ "isAccountAbstracted": false }));
    let session: ClientSession = round_trip(&json!({
        "id": "clu0client000001",
        "clientSessionToken": "00000000-0000-4000-8000-000000000003",
        "isAccountAbstracted": false
    }));
    assert_eq!(
        session.client_session_token.expose_secret(),
        "00000000-0000-4000-8000-000000000003"
    );

    let list: ClientList = round_trip(&json!({
        "results": [client_me()],
        "metadata": { "cursor": "clu0client000001", "take": 100, "total": 1 }
    }));
    assert_eq!(list.metadata.cursor.as_deref(), Some("clu0client000001"));
    let last: ClientList = round_trip(&json!({
        "results": [],
        "metadata": { "cursor": null, "take": 100, "total": 1 }
    }));
    assert_eq!(last.metadata.cursor, None);
    let numeric: ClientList = serde_json::from_value(json!({
        "results": [], "metadata": { "cursor": 42, "take": 10, "total": 0 }
    }))
    .unwrap();
    assert_eq!(numeric.metadata.cursor.as_deref(), Some("42"));
    let query = ListClientsQuery {
        cursor: Some("abc".into()),
        take: Some(50),
    };
    assert_eq!(
        serde_json::to_value(&query).unwrap(),
        json!({ "cursor": "abc", "take": 50 })
    );

    let enable: EnableEjectRequest = round_trip(&json!({
        "walletId": "clu0walletsecp01",
        "ejectableUntil": "2024-02-09T00:00:00.000Z"
    }));
    assert_eq!(enable.wallet_id, "clu0walletsecp01");
    let _: EnableEjectRequest = round_trip(&json!({ "walletId": "clu0walletsecp01" }));
    let _: EnableEjectResponse =
        round_trip(&json!({ "ejectableUntil": "2024-02-09T00:00:00.000Z" }));
    let _: ClientDetails = round_trip(&client_me());
}
