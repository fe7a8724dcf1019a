//! The client against a small axum server on loopback that records every request.
#![cfg(feature = "client")]
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use portal_api::client_api::{EjectClientRequest, PrepareEjectRequest, SharePairStatusUpdate};
use portal_api::custodian_api::{
    CreateClientRequest, CreateSessionRequest, EnableEjectRequest, ListClientsQuery,
};
use portal_api::mpc::{CurveShare, CurveShares};
use portal_api::{
    ApiKey, BackupMethod, ClientApi, CustodianApi, Error, PortalBuilder, RateLimit, RetryConfig,
    SharePairUpdateStatus, TransportKind,
};
use serde_json::{Value, json};
use tokio::time::Instant;

const CLIENT_KEY: &str = "client-key-0123456789-secret";
const CUSTODIAN_KEY: &str = "custodian-key-9876543210-secret";
const SHARE: &str = "eyJjbGllbnRJZCI6ImNsXzEiLCJzaGFyZSI6IjQyIiwic3NpZCI6IllXSmoifQ";

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    auth: Option<String>,
    body: Vec<u8>,
    at: Instant,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Recorder {
    seen: Vec<Seen>,
    scripted: HashMap<String, VecDeque<Reply>>,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Recorder>>);

impl Server {
    /// Queues replies for a path; when the queue is empty the path answers 200 with `{}`.
    fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.0
            .lock()
            .unwrap()
            .scripted
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    fn seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.0.lock().unwrap().seen)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().seen.len()
    }
}

async fn handle(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut state = server.0.lock().unwrap();
        state.seen.push(Seen {
            method,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            auth: headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: body.to_vec(),
            at: Instant::now(),
        });
        state
            .scripted
            .get_mut(uri.path())
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| Reply::json(200, &json!({})))
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn serve_on(listener: tokio::net::TcpListener) -> Server {
    let server = Server::default();
    let app = Router::new().fallback(handle).with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    server
}

async fn start() -> (Server, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (serve_on(listener).await, addr)
}

fn fast_retry() -> RetryConfig {
    RetryConfig::default()
        .with_max_retries(3)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
}

fn builder(addr: SocketAddr) -> PortalBuilder {
    PortalBuilder::new()
        .with_api_base_url(format!("http://{addr}"))
        .with_mpc_base_url(format!("http://localhost:{}/", addr.port()))
        .with_retry(fast_retry())
        .without_rate_limits()
}

/// The client role over the transport `builder` makes.
fn client(builder: PortalBuilder) -> ClientApi {
    builder
        .build()
        .unwrap()
        .client_with_api_key(&ApiKey::from(CLIENT_KEY))
        .unwrap()
}

/// The custodian role over the same transport as `client`.
fn custodian(client: &ClientApi) -> CustodianApi {
    client
        .portal()
        .custodian(&ApiKey::from(CUSTODIAN_KEY))
        .unwrap()
}

fn envelope(prefix: &str) -> Value {
    json!({
        "SECP256K1": { "share": SHARE, "id": format!("{prefix}-secp") },
        "ED25519": { "share": SHARE, "id": format!("{prefix}-ed") }
    })
}

fn client_json(id: &str) -> Value {
    json!({
        "id": id,
        "ejectedAt": null,
        "environment": { "id": "env", "backupWithPortalEnabled": true },
        "wallets": [{
            "id": "w-secp", "curve": "SECP256K1", "ejectableUntil": null,
            "backupSharePairs": [{ "id": "b-secp", "backupMethod": "CUSTOM", "status": "completed" }],
            "signingSharePairs": [{ "id": "s-secp", "status": "completed" }]
        }]
    })
}

#[tokio::test]
async fn every_endpoint_sends_auth_path_and_body() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    let client_auth = format!("Bearer {CLIENT_KEY}");
    let custodian_auth = format!("Bearer {CUSTODIAN_KEY}");

    // MPC API
    server.script("/v1/generate", [Reply::json(200, &envelope("sp"))]);
    server.script("/v1/backup", [Reply::json(200, &envelope("bp"))]);
    server.script("/v1/recover", [Reply::json(200, &envelope("sp2"))]);
    let generated = client.generate().await.unwrap();
    assert_eq!(generated.ids(), ["sp-secp", "sp-ed"]);
    let backup = client.backup(&generated).await.unwrap();
    assert_eq!(backup.ids(), ["bp-secp", "bp-ed"]);
    let recovered = client.recover(&backup).await.unwrap();
    assert_eq!(recovered.ed25519.unwrap().share.expose_secret(), SHARE);

    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.method == Method::POST));
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some(client_auth.as_str()))
    );
    assert_eq!(seen[0].path, "/v1/generate");
    assert_eq!(seen[0].json(), json!({}));
    assert_eq!(seen[1].path, "/v1/backup");
    let inner: Value =
        serde_json::from_str(seen[1].json()["generateResponse"].as_str().unwrap()).unwrap();
    assert_eq!(inner, envelope("sp"));
    assert_eq!(seen[2].path, "/v1/recover");
    let inner: Value =
        serde_json::from_str(seen[2].json()["backupResponse"].as_str().unwrap()).unwrap();
    assert_eq!(inner, envelope("bp"));

    // Client API
    server.script("/api/v3/clients/me", [Reply::json(200, &client_json("c1"))]);
    let me = client.client_me().await.unwrap();
    assert!(me.backup_with_portal_enabled());
    server.script(
        "/api/v3/clients/me/backup-share-pairs/b-secp",
        [Reply::raw(200, "")],
    );
    client
        .store_cipher_text("b-secp", "0351cf2baa")
        .await
        .unwrap();
    server.script(
        "/api/v3/clients/me/backup-share-pairs/b%20ed",
        [Reply::raw(204, "")],
    );
    client.store_cipher_text("b ed", "77aa").await.unwrap();
    server.script(
        "/api/v3/clients/me/backup-share-pairs/b-secp/cipher-text",
        [Reply::json(200, &json!({ "cipherText": "0351cf2baa" }))],
    );
    assert_eq!(client.cipher_text("b-secp").await.unwrap(), "0351cf2baa");
    server.script(
        "/api/v3/clients/me/backup-share-pairs",
        [Reply::raw(204, "")],
    );
    client
        .update_backup_share_pairs(&SharePairStatusUpdate::backup(
            backup.ids(),
            SharePairUpdateStatus::StoredClientBackupShare,
        ))
        .await
        .unwrap();
    server.script(
        "/api/v3/clients/me/signing-share-pairs",
        [Reply::raw(204, "")],
    );
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(recovered_ids()))
        .await
        .unwrap();
    server.script(
        "/api/v3/clients/me/wallets/w-secp/backup-share-pairs",
        [Reply::json(
            200,
            &json!([{ "id": "b-secp", "status": "completed" }]),
        )],
    );
    assert_eq!(
        client
            .wallet_backup_share_pairs("w-secp")
            .await
            .unwrap()
            .len(),
        1
    );
    server.script(
        "/api/v3/clients/me/wallets/w-secp/signing-share-pairs",
        [Reply::json(
            200,
            &json!([{ "id": "s-secp", "status": "STORED_CLIENT" }]),
        )],
    );
    assert_eq!(
        client.wallet_signing_share_pairs("w-secp").await.unwrap()[0].id,
        "s-secp"
    );
    server.script(
        "/api/v3/clients/me/wallets/w-secp/prepare-eject",
        [Reply::json(200, &json!({ "share": "{\"share\":\"1\"}" }))],
    );
    let prepared = client
        .prepare_eject(
            "w-secp",
            &PrepareEjectRequest {
                backup_method: BackupMethod::Password,
            },
        )
        .await
        .unwrap();
    assert_eq!(prepared.share.expose_secret(), "{\"share\":\"1\"}");
    server.script(
        "/api/v3/clients/me/wallets/w-secp/ejectable-backup-shares",
        [Reply::json(
            200,
            &json!({ "encryptedClientBackupShare": "0351", "custodianBackupShare": "{}" }),
        )],
    );
    let shares = client.ejectable_backup_shares("w-secp").await.unwrap();
    assert_eq!(
        shares.encrypted_client_backup_share.as_deref(),
        Some("0351")
    );
    client.complete_eject("w-secp").await.unwrap();
    server.script("/api/v3/clients/me/eject", [Reply::raw(200, "\"ok\"")]);
    client
        .eject_client(&EjectClientRequest {
            client_platform: "SERVER".into(),
            client_platform_version: "1".into(),
        })
        .await
        .unwrap();

    let seen = server.seen();
    let expect: &[(Method, &str, Option<Value>)] = &[
        (Method::GET, "/api/v3/clients/me", None),
        (
            Method::PATCH,
            "/api/v3/clients/me/backup-share-pairs/b-secp",
            Some(json!({ "clientCipherText": "0351cf2baa" })),
        ),
        (
            Method::PATCH,
            "/api/v3/clients/me/backup-share-pairs/b%20ed",
            Some(json!({ "clientCipherText": "77aa" })),
        ),
        (
            Method::GET,
            "/api/v3/clients/me/backup-share-pairs/b-secp/cipher-text",
            None,
        ),
        (
            Method::PATCH,
            "/api/v3/clients/me/backup-share-pairs",
            Some(json!({
                "backupSharePairIds": ["bp-secp", "bp-ed"],
                "status": "STORED_CLIENT_BACKUP_SHARE"
            })),
        ),
        (
            Method::PATCH,
            "/api/v3/clients/me/signing-share-pairs",
            Some(
                json!({ "signingSharePairIds": ["sp2-secp", "sp2-ed"], "status": "STORED_CLIENT" }),
            ),
        ),
        (
            Method::GET,
            "/api/v3/clients/me/wallets/w-secp/backup-share-pairs",
            None,
        ),
        (
            Method::GET,
            "/api/v3/clients/me/wallets/w-secp/signing-share-pairs",
            None,
        ),
        (
            Method::POST,
            "/api/v3/clients/me/wallets/w-secp/prepare-eject",
            Some(json!({ "backupMethod": "PASSWORD" })),
        ),
        (
            Method::GET,
            "/api/v3/clients/me/wallets/w-secp/ejectable-backup-shares",
            None,
        ),
        (
            Method::PATCH,
            "/api/v3/clients/me/wallets/w-secp/complete-eject",
            None,
        ),
        (
            Method::POST,
            "/api/v3/clients/me/eject",
            Some(json!({ "clientPlatform": "SERVER", "clientPlatformVersion": "1" })),
        ),
    ];
    check(&seen, expect, &client_auth);

    // Custodian API, on the same transport
    let custodian = custodian(&client);
    server.script(
        "/api/v3/custodians/me/clients",
        [
            Reply::json(
                200,
                &json!({ "id": "c2", "clientApiKey": "k", "clientSessionToken": "t", "isAccountAbstracted": false }),
            ),
            Reply::json(
                200,
                &json!({ "results": [client_json("c1")], "metadata": { "cursor": "c1", "take": 10, "total": 3 } }),
            ),
        ],
    );
    let created = custodian
        .create_client(&CreateClientRequest::default())
        .await
        .unwrap();
    assert_eq!(created.client_session_token.expose_secret(), "t");
    let page = custodian
        .list_clients(&ListClientsQuery {
            cursor: Some("c 0&x".into()),
            take: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(page.metadata.cursor.as_deref(), Some("c1"));
    server.script(
        "/api/v3/custodians/me/clients/c1",
        [Reply::json(200, &client_json("c1"))],
    );
    assert_eq!(custodian.get_client("c1").await.unwrap().id, "c1");
    server.script(
        "/api/v3/custodians/me/clients/c1/sessions",
        [Reply::json(
            200,
            &json!({ "id": "c1", "clientSessionToken": "cst-new" }),
        )],
    );
    let session = custodian
        .create_client_session(
            "c1",
            &CreateSessionRequest {
                is_account_abstracted: Some(false),
            },
        )
        .await
        .unwrap();
    server.script(
        "/api/v3/custodians/me/clients/c1/enable-eject",
        [Reply::json(
            200,
            &json!({ "ejectableUntil": "2030-01-01T00:00:00.000Z" }),
        )],
    );
    let window = custodian
        .enable_eject(
            "c1",
            &EnableEjectRequest {
                wallet_id: "w-secp".into(),
                ejectable_until: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(window.ejectable_until, "2030-01-01T00:00:00.000Z");
    server.script(
        "/api/v3/custodians/me/clients/c1/wallets/w-secp/ejectable-backup-shares",
        [Reply::json(
            200,
            &json!({ "encryptedClientBackupShare": null, "custodianBackupShare": "{}" }),
        )],
    );
    let shares = custodian
        .ejectable_backup_shares("c1", "w-secp")
        .await
        .unwrap();
    assert_eq!(shares.encrypted_client_backup_share, None);

    let seen = server.seen();
    assert_eq!(seen[1].query.as_deref(), Some("cursor=c+0%26x&take=10"));
    let expect: &[(Method, &str, Option<Value>)] = &[
        (
            Method::POST,
            "/api/v3/custodians/me/clients",
            Some(json!({})),
        ),
        (Method::GET, "/api/v3/custodians/me/clients", None),
        (Method::GET, "/api/v3/custodians/me/clients/c1", None),
        (
            Method::POST,
            "/api/v3/custodians/me/clients/c1/sessions",
            Some(json!({ "isAccountAbstracted": false })),
        ),
        (
            Method::PATCH,
            "/api/v3/custodians/me/clients/c1/enable-eject",
            Some(json!({ "walletId": "w-secp" })),
        ),
        (
            Method::GET,
            "/api/v3/custodians/me/clients/c1/wallets/w-secp/ejectable-backup-shares",
            None,
        ),
    ];
    check(&seen, expect, &custodian_auth);

    // A client role made with the new session token authenticates with it.
    let as_session = custodian
        .portal()
        .client_with_session_token(&session.client_session_token)
        .unwrap();
    server.script("/api/v3/clients/me", [Reply::json(200, &client_json("c1"))]);
    as_session.client_me().await.unwrap();
    assert_eq!(server.seen()[0].auth.as_deref(), Some("Bearer cst-new"));

    // The custodian opens a session and gets the client role on it in one step.
    server.script(
        "/api/v3/custodians/me/clients/c1/sessions",
        [Reply::json(
            200,
            &json!({ "id": "c1", "clientSessionToken": "cst-opened" }),
        )],
    );
    server.script("/api/v3/clients/me", [Reply::json(200, &client_json("c1"))]);
    let opened = custodian.client_session("c1").await.unwrap();
    opened.client_me().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].path, "/api/v3/custodians/me/clients/c1/sessions");
    assert_eq!(seen[0].auth.as_deref(), Some(custodian_auth.as_str()));
    assert_eq!(seen[1].path, "/api/v3/clients/me");
    assert_eq!(seen[1].auth.as_deref(), Some("Bearer cst-opened"));
}

fn recovered_ids() -> Vec<String> {
    vec!["sp2-secp".into(), "sp2-ed".into()]
}

fn check(seen: &[Seen], expect: &[(Method, &str, Option<Value>)], auth: &str) {
    assert_eq!(seen.len(), expect.len(), "{seen:#?}");
    for (s, (method, path, body)) in seen.iter().zip(expect) {
        assert_eq!(&s.method, method, "{path}");
        assert_eq!(s.path, *path);
        assert_eq!(s.auth.as_deref(), Some(auth), "{path}");
        match body {
            Some(b) => assert_eq!(&s.json(), b, "{path}"),
            None => assert!(s.body.is_empty(), "{path}"),
        }
    }
}

#[tokio::test]
async fn safe_requests_are_retried_on_503() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    server.script(
        "/api/v3/clients/me",
        [
            Reply::raw(503, "unavailable"),
            Reply::raw(502, ""),
            Reply::json(200, &client_json("c1")),
        ],
    );
    assert_eq!(client.client_me().await.unwrap().id, "c1");
    assert_eq!(server.count(), 3);

    // Status PATCHes and ciphertext PATCHes are safe to repeat too.
    server.script(
        "/api/v3/clients/me/backup-share-pairs/b1",
        [Reply::raw(503, ""), Reply::raw(200, "")],
    );
    client.store_cipher_text("b1", "cc").await.unwrap();
    server.script(
        "/api/v3/clients/me/signing-share-pairs",
        [Reply::raw(500, ""), Reply::raw(204, "")],
    );
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(vec!["s".into()]))
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 7);
    // Both attempts sent the same body.
    assert_eq!(seen[3].body, seen[4].body);
}

#[tokio::test]
async fn retries_give_up_after_max_retries() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    server.script("/api/v3/clients/me", (0..10).map(|_| Reply::raw(503, "")));
    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.is_retryable());
    assert_eq!(server.count(), 4, "one attempt and three retries");
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    server.script(
        "/api/v3/clients/me",
        [
            Reply::json(429, &json!({ "error": { "id": "RATE_LIMITED" } }))
                .header("retry-after", "1"),
            Reply::json(200, &client_json("c1")),
        ],
    );
    client.client_me().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    // The backoff alone would be at most 20 ms; the server asked for one second.
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_returned_not_waited() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    server.script(
        "/api/v3/clients/me",
        [Reply::raw(429, "").header("retry-after", "3600")],
    );
    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn mpc_backup_is_not_retried_once_the_server_saw_it() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    let generated = generate_response();
    server.script(
        "/v1/backup",
        [Reply::raw(503, ""), Reply::json(200, &envelope("bp"))],
    );
    let err = client.backup(&generated).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.count(), 1);

    server.script(
        "/v1/recover",
        [
            Reply::raw(429, "").header("retry-after", "0"),
            Reply::json(200, &envelope("sp")),
        ],
    );
    let err = client.recover(&generated).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(server.count(), 2);

    server.script("/v1/generate", [Reply::raw(500, "")]);
    assert!(client.generate().await.is_err());
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn mpc_backup_is_not_retried_after_a_timeout() {
    let (server, addr) = start().await;
    let client = client(builder(addr).with_timeout(Duration::from_millis(200)));
    server.script(
        "/v1/backup",
        [Reply::json(200, &envelope("bp")).delayed(Duration::from_secs(2))],
    );
    let err = client.backup(&generate_response()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.count(), 1);

    // The same timeout on a GET is retried.
    server.script(
        "/api/v3/clients/me",
        [
            Reply::json(200, &client_json("c1")).delayed(Duration::from_secs(2)),
            Reply::json(200, &client_json("c1")),
        ],
    );
    client.client_me().await.unwrap();
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn mpc_backup_is_not_retried_after_the_connection_dropped() {
    // A server that accepts, reads the request, and hangs up without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0usize));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            *counter.lock().unwrap() += 1;
            let mut buf = vec![0u8; 65536];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            drop(stream);
        }
    });
    let client = client(builder(addr));
    let err = client.backup(&generate_response()).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        !matches!(
            err,
            Error::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*accepted.lock().unwrap(), 1);
}

#[tokio::test]
async fn mpc_backup_is_retried_when_the_connection_was_refused() {
    // Find a free port, leave it closed, and open it only after the first attempt failed.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let client = client(
        builder(addr).with_retry(
            RetryConfig::default()
                .with_max_retries(5)
                .with_initial_backoff(Duration::from_millis(600))
                .with_max_backoff(Duration::from_millis(600)),
        ),
    );
    let call = tokio::spawn(async move { client.backup(&generate_response()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = serve_on(listener).await;
    server.script("/v1/backup", [Reply::json(200, &envelope("bp"))]);
    let backup = call.await.unwrap().unwrap();
    assert_eq!(backup.ids(), ["bp-secp", "bp-ed"]);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn connect_errors_surface_as_connect_without_the_url() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let client = client(builder(addr).with_retry(RetryConfig::disabled()));
    let err = client
        .cipher_text("pair-id-visible-only-in-url")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    assert!(!chain.contains("pair-id-visible-only-in-url"), "{chain}");
    assert!(!chain.contains(CLIENT_KEY));
}

#[tokio::test]
async fn error_bodies_are_parsed() {
    let (server, addr) = start().await;
    let client = client(builder(addr).with_retry(RetryConfig::disabled()));
    server.script(
        "/api/v3/clients/me",
        [
            Reply::json(401, &json!("Incorrect API key format")),
            Reply::json(
                400,
                &json!({ "error": { "id": "BAD_REQUEST", "message": "nope", "code": 201 } }),
            ),
            Reply::json(400, &json!({ "id": "DKG_FAILED" })),
            Reply::raw(502, "<html>bad gateway</html>"),
            Reply::raw(404, ""),
            Reply::json(200, &json!({ "unexpected": true })),
        ],
    );
    let err = client.client_me().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(
        err.body().unwrap().message.as_deref(),
        Some("Incorrect API key format")
    );

    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.error_id(), Some("BAD_REQUEST"));
    assert_eq!(err.body().unwrap().code.as_deref(), Some("201"));
    assert!(!err.is_retryable());

    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.error_id(), Some("DKG_FAILED"));

    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(
        err.body()
            .unwrap()
            .raw
            .as_deref()
            .unwrap()
            .contains("bad gateway")
    );

    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.error_id(), None);

    let err = client.client_me().await.unwrap_err();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
}

#[tokio::test]
async fn decode_errors_never_echo_shares() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    // The share sits where an object was expected.
    server.script(
        "/v1/generate",
        [Reply::json(200, &json!({ "SECP256K1": SHARE }))],
    );
    let err = client.generate().await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    let text = format!("{err} {err:?} {}", std::error::Error::source(&err).unwrap());
    assert!(!text.contains(SHARE), "{text}");
}

#[tokio::test]
async fn route_changing_ids_send_nothing() {
    let (server, addr) = start().await;
    let client = client(builder(addr));
    let err = custodian(&client).get_client("..").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let err = client.cipher_text("..").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn rate_limit_is_shared_across_clones_and_roles_and_counted_by_the_server() {
    let (server, addr) = start().await;
    // 600 a minute = one request every 100 ms, bursts of 2.
    let client =
        client(builder(addr).with_api_rate_limit(RateLimit::per_minute(600).with_burst(2)));
    // Another client role on the same transport draws from the same bucket.
    let clone = client
        .portal()
        .client_with_session_token(&ApiKey::from("cst-other"))
        .unwrap();
    server.script(
        "/api/v3/clients/me",
        (0..8).map(|_| Reply::json(200, &client_json("c1"))),
    );
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c: ClientApi = if i % 2 == 0 {
            client.clone()
        } else {
            clone.clone()
        };
        tasks.push(tokio::spawn(async move { c.client_me().await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut times: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(times.len(), 8);
    times.sort();
    // With burst 2 and interval T, any k+1 consecutive arrivals span at least (k-1)·T.
    let interval = Duration::from_millis(100);
    let slack = Duration::from_millis(30);
    for k in 2..8u32 {
        for i in 0..(8 - k as usize) {
            let span = times[i + k as usize].duration_since(times[i]);
            assert!(
                span + slack >= interval * (k - 1),
                "{k} requests after #{i}: {span:?}"
            );
        }
    }
    assert!(times[7].duration_since(times[0]) + slack >= Duration::from_millis(600));

    // The MPC host has its own bucket: an unlimited one here does not wait on the API one.
    let started = Instant::now();
    server.script("/v1/generate", [Reply::json(200, &envelope("sp"))]);
    client.generate().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn plain_http_is_refused_except_loopback() {
    for url in [
        "http://api.portalhq.io",
        "http://192.168.1.10:8080",
        "http://[2001:db8::1]",
    ] {
        let err = PortalBuilder::new()
            .with_api_base_url(url)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidBaseUrl { which: "api", .. }),
            "{url}"
        );
        let err = PortalBuilder::new()
            .with_mpc_base_url(url)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidBaseUrl { which: "mpc", .. }),
            "{url}"
        );
    }
    for url in [
        "http://127.0.0.1:1",
        "http://[::1]:1",
        "http://localhost:1",
        "https://api.portalhq.io",
    ] {
        PortalBuilder::new()
            .with_api_base_url(url)
            .with_mpc_base_url(url)
            .build()
            .unwrap();
    }
}

fn generate_response() -> CurveShares {
    CurveShares {
        secp256k1: Some(CurveShare::new(SHARE.into(), "sp-secp")),
        ed25519: Some(CurveShare::new(SHARE.into(), "sp-ed")),
    }
}
