//! The webhook contract, request by request, including every rejection (which must leave the
//! store and the KMS untouched).

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use custodian_webhook::envelope::Keyring;
use custodian_webhook::storage::memory::MemoryStore;
use custodian_webhook::storage::{BackupKey, BackupStore, Capabilities, PutOptions};
use custodian_webhook::{Allowlist, Error, WebhookServer, WriteStrategy};
use serde_json::{Value, json};
use support::{
    CountingStore, FlakyKek, NEXT_SECRET, SECRET, backup, builder, fetch, http, post,
    share_like_portal, start,
};

#[tokio::test]
async fn backup_then_fetch_returns_the_share_byte_for_byte() {
    let store = Arc::new(MemoryStore::new());
    let running = start(builder(Arc::clone(&store)).build().unwrap()).await;
    let base = running.url("");
    let http = http();

    // Escapes, non-ASCII and JSON-looking content all come back exactly.
    let odd = "{\"a\":\"quote \\\" backslash \\\\ tab\t nl\n \u{2028} é 😀\"}".to_owned();
    let shares = [share_like_portal("cl_1"), odd];
    assert_eq!(
        backup(&http, &base, "cl_1", "GDRIVE-SECP256K1", &shares[0]).await,
        200
    );
    assert_eq!(
        backup(&http, &base, "cl_1", "GDRIVE-ED25519", &shares[1]).await,
        200
    );
    let mut got = fetch(&http, &base, "cl_1").await;
    got.sort();
    let mut want = shares.to_vec();
    want.sort();
    assert_eq!(got, want);

    // Encrypted at rest: the stored bytes contain no share.
    for key in store.keys() {
        let body = store.get(&key).await.unwrap();
        for share in &shares {
            let needle = &share.as_bytes()[share.len() / 2..share.len() / 2 + 16];
            assert!(!body.windows(16).any(|w| w == needle));
        }
    }
    // One object per client and method, under the documented key.
    assert_eq!(
        store.keys(),
        vec![
            BackupKey::custodian_backup("cl_1", "GDRIVE-ED25519").unwrap(),
            BackupKey::custodian_backup("cl_1", "GDRIVE-SECP256K1").unwrap(),
        ]
    );
    running.stop().await;
}

#[tokio::test]
async fn a_new_share_replaces_the_one_of_the_same_method_only() {
    let running = start(builder(Arc::new(MemoryStore::new())).build().unwrap()).await;
    let base = running.url("");
    let http = http();
    assert_eq!(backup(&http, &base, "cl_1", "PASSWORD", "old").await, 200);
    assert_eq!(
        backup(&http, &base, "cl_1", "GDRIVE", "other-method").await,
        200
    );
    assert_eq!(
        backup(&http, &base, "cl_10", "PASSWORD", "other-client").await,
        200
    );
    assert_eq!(backup(&http, &base, "cl_1", "PASSWORD", "new").await, 200);
    let mut got = fetch(&http, &base, "cl_1").await;
    got.sort();
    assert_eq!(got, ["new", "other-method"]);
    assert_eq!(fetch(&http, &base, "cl_10").await, ["other-client"]);
    assert!(fetch(&http, &base, "cl_unknown").await.is_empty());
    running.stop().await;
}

#[tokio::test]
async fn every_rejection_has_its_status_and_touches_nothing() {
    let store = Arc::new(CountingStore::new());
    let kek = FlakyKek::new();
    let server = builder(Arc::clone(&store))
        .with_keyring(kek.keyring())
        .with_body_limit(16 * 1024)
        .with_base_path("/portal/")
        .build()
        .unwrap();
    let running = start(server).await;
    let base = running.url("/portal");
    let http = http();
    let good = json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": "s"});
    let backup_url = format!("{base}/backup");
    let fetch_url = format!("{base}/backup/fetch");

    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("no secret", http.post(&backup_url).json(&good), 401),
        (
            "wrong secret",
            http.post(&backup_url).header("X-Webhook-Secret", "wrong").json(&good),
            401,
        ),
        (
            "secret with a suffix",
            http.post(&backup_url)
                .header("X-Webhook-Secret", format!("{SECRET}x"))
                .json(&good),
            401,
        ),
        (
            "fetch without secret",
            http.post(&fetch_url).json(&json!({"clientId": "cl_1"})),
            401,
        ),
        (
            "body over the limit",
            http.post(&backup_url).header("X-Webhook-Secret", SECRET).json(
                &json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": "x".repeat(17 * 1024)}),
            ),
            413,
        ),
        (
            "malformed json",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .body("{\"backupMethod\": \"GDRIVE\", "),
            400,
        ),
        (
            "empty body",
            http.post(&backup_url).header("X-Webhook-Secret", SECRET),
            400,
        ),
        (
            "missing share",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"backupMethod": "GDRIVE", "clientId": "cl_1"})),
            400,
        ),
        (
            "missing clientId",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"backupMethod": "GDRIVE", "share": "s"})),
            400,
        ),
        (
            "missing backupMethod",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"clientId": "cl_1", "share": "s"})),
            400,
        ),
        (
            "share not a string",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": {"a": 1}})),
            400,
        ),
        (
            "empty share",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": ""})),
            400,
        ),
        (
            "client id with a path",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"backupMethod": "GDRIVE", "clientId": "../etc", "share": "s"})),
            400,
        ),
        (
            "backup method with a slash",
            http.post(&backup_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"backupMethod": "A/B", "clientId": "cl_1", "share": "s"})),
            400,
        ),
        (
            "fetch missing clientId",
            http.post(&fetch_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"client": "cl_1"})),
            400,
        ),
        (
            "fetch malformed",
            http.post(&fetch_url).header("X-Webhook-Secret", SECRET).body("[1,2"),
            400,
        ),
        (
            "unknown path",
            http.post(format!("{base}/backups"))
                .header("X-Webhook-Secret", SECRET)
                .json(&good),
            404,
        ),
        (
            "route outside the base path",
            http.post(running.url("/backup"))
                .header("X-Webhook-Secret", SECRET)
                .json(&good),
            404,
        ),
        (
            "GET on backup",
            http.get(&backup_url).header("X-Webhook-Secret", SECRET),
            405,
        ),
        (
            "PUT on fetch",
            http.put(&fetch_url)
                .header("X-Webhook-Secret", SECRET)
                .json(&json!({"clientId": "cl_1"})),
            405,
        ),
        ("DELETE on backup without secret", http.delete(&backup_url), 405),
    ];
    for (name, request, want) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, want, "{name}: {text}");
        if want != 405 {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert!(body["error"].is_string(), "{name}: {text}");
        }
        assert_eq!(store.calls(), 0, "{name} touched the store");
        assert_eq!(kek.calls(), 0, "{name} reached the KMS");
    }

    // A chunked body (no Content-Length) over the limit.
    let mut request = format!(
        "POST /portal/backup HTTP/1.1\r\nHost: localhost\r\nX-Webhook-Secret: {SECRET}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b' '; 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(support::raw_status(running.addr, &request).await, 413);
    assert_eq!(store.calls(), 0);

    // Both secrets of a rotation are accepted.
    for secret in [SECRET, NEXT_SECRET] {
        let (status, _) = post(&http, &backup_url, Some(secret), &good).await;
        assert_eq!(status, 200);
    }
    assert!(store.calls() > 0);
    running.stop().await;
}

#[tokio::test]
async fn health_needs_no_secret_and_no_allowed_forwarded_address() {
    // Behind a trusted proxy the allowlist is per request, and the probes pass without it.
    let server = builder(Arc::new(MemoryStore::new()))
        .with_allowlist(Allowlist::parse(["192.0.2.0/24"]).unwrap())
        .with_trust_forwarded_for(true)
        .build()
        .unwrap();
    let running = start(server).await;
    let http = http();
    let resp = http.get(running.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let resp = http.get(running.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    running.stop().await;
}

#[tokio::test]
async fn allowlist_and_forwarded_for() {
    let http = http();
    let good = json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": "s"});

    // Loopback is not in the list: the connection is closed at accept, before a byte of the
    // request is read.
    let store = Arc::new(CountingStore::new());
    let server = builder(Arc::clone(&store))
        .with_allowlist(Allowlist::portal())
        .build()
        .unwrap();
    let running = start(server).await;
    let url = running.url("/backup");
    for secret in [Some(SECRET), None] {
        let mut req = http.post(&url).json(&good);
        if let Some(secret) = secret {
            req = req.header("X-Webhook-Secret", secret);
        }
        let err = req.send().await.unwrap_err();
        assert!(!err.is_status() && err.status().is_none(), "{err}");
    }
    // Without trust, a forwarded-for header changes nothing.
    let sent = http
        .post(&url)
        .header("X-Webhook-Secret", SECRET)
        .header("X-Forwarded-For", "35.203.150.117")
        .json(&good)
        .send()
        .await;
    assert!(sent.is_err());
    assert_eq!(store.calls(), 0);
    running.stop().await;

    // Loopback allowed.
    let server = builder(Arc::new(MemoryStore::new()))
        .with_allowlist(Allowlist::parse(["portal", "loopback"]).unwrap())
        .build()
        .unwrap();
    let running = start(server).await;
    assert_eq!(
        post(&http, &running.url("/backup"), Some(SECRET), &good)
            .await
            .0,
        200
    );
    running.stop().await;

    // Behind a trusted proxy: the rightmost forwarded-for entry decides.
    let store = Arc::new(CountingStore::new());
    let server = builder(Arc::clone(&store))
        .with_allowlist(Allowlist::portal())
        .with_trust_forwarded_for(true)
        .build()
        .unwrap();
    let running = start(server).await;
    let url = running.url("/backup");
    let send = |xff: Option<&'static str>| {
        let mut req = http
            .post(&url)
            .header("X-Webhook-Secret", SECRET)
            .json(&good);
        if let Some(xff) = xff {
            req = req.header("X-Forwarded-For", xff);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None).await, 403);
    assert_eq!(send(Some("198.51.100.1")).await, 403);
    assert_eq!(send(Some("35.203.150.117, 198.51.100.1")).await, 403);
    assert_eq!(store.calls(), 0);
    assert_eq!(send(Some("198.51.100.1, 104.155.171.139")).await, 200);
    assert_eq!(send(Some("35.185.20.23")).await, 200);
    running.stop().await;
}

#[tokio::test]
async fn a_store_without_atomic_overwrite_gets_generations() {
    let mut caps = Capabilities::all();
    caps.overwrite = false;
    let store = Arc::new(CountingStore::with_capabilities(caps));
    let server = builder(Arc::clone(&store)).build().unwrap();
    assert_eq!(server.vault().strategy(), WriteStrategy::Generations);
    let running = start(server).await;
    let base = running.url("");
    let http = http();
    for share in ["first", "second", "third"] {
        assert_eq!(backup(&http, &base, "cl_1", "PASSKEY", share).await, 200);
        assert_eq!(fetch(&http, &base, "cl_1").await, [share]);
    }
    // Older generations are deleted once the new one is stored.
    let keys = store.inner.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        keys[0].to_path(),
        "cl_1/custodian-backup/~/gen-00000000000000000003/PASSKEY"
    );
    running.stop().await;

    // Without delete, old generations stay but only the newest is returned.
    caps.delete = false;
    let store = Arc::new(CountingStore::with_capabilities(caps));
    let running = start(builder(Arc::clone(&store)).build().unwrap()).await;
    let base = running.url("");
    for share in ["first", "second"] {
        assert_eq!(backup(&http, &base, "cl_1", "PASSKEY", share).await, 200);
    }
    assert_eq!(fetch(&http, &base, "cl_1").await, ["second"]);
    assert_eq!(store.inner.keys().len(), 2);
    running.stop().await;
}

#[tokio::test]
async fn a_store_that_cannot_list_is_probed_for_known_methods() {
    let mut caps = Capabilities::all();
    caps.list = false;
    let store = Arc::new(CountingStore::with_capabilities(caps));
    let running = start(builder(Arc::clone(&store)).build().unwrap()).await;
    let base = running.url("");
    let http = http();
    assert_eq!(
        backup(&http, &base, "cl_1", "CUSTOM-SECP256K1", "a").await,
        200
    );
    assert_eq!(backup(&http, &base, "cl_1", "PASSWORD", "b").await, 200);
    let calls = store.calls();
    // A method it could not fetch back is refused up front.
    assert_eq!(
        backup(&http, &base, "cl_1", "MY-OWN-METHOD", "c").await,
        422
    );
    assert_eq!(store.calls(), calls);
    let mut got = fetch(&http, &base, "cl_1").await;
    got.sort();
    assert_eq!(got, ["a", "b"]);
    running.stop().await;

    // Its own list of methods.
    let store = Arc::new(CountingStore::with_capabilities(caps));
    let server = builder(store)
        .with_known_methods(["MY-OWN-METHOD"])
        .build()
        .unwrap();
    let running = start(server).await;
    let base = running.url("");
    assert_eq!(
        backup(&http, &base, "cl_1", "MY-OWN-METHOD", "c").await,
        200
    );
    assert_eq!(backup(&http, &base, "cl_1", "GDRIVE", "d").await, 422);
    assert_eq!(fetch(&http, &base, "cl_1").await, ["c"]);
    running.stop().await;
}

#[tokio::test]
async fn stores_and_configs_that_cannot_work_are_refused() {
    let mut caps = Capabilities::all();
    caps.overwrite = false;
    caps.list = false;
    let err = builder(Arc::new(MemoryStore::with_capabilities(caps)))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    let err = WebhookServer::builder()
        .with_store(Arc::new(MemoryStore::new()))
        .with_keyring(support::keyring())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    let err = builder(Arc::new(MemoryStore::new()))
        .with_keyring(Keyring::new())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("keyring"), "{err}");
    assert!(
        builder(Arc::new(MemoryStore::new()))
            .with_base_path("no-slash")
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_tampered_or_misplaced_object_is_skipped_not_served() {
    let store = Arc::new(MemoryStore::new());
    let running = start(builder(Arc::clone(&store)).build().unwrap()).await;
    let base = running.url("");
    let http = http();
    assert_eq!(
        backup(&http, &base, "cl_a", "GDRIVE", "share-of-a").await,
        200
    );
    assert_eq!(
        backup(&http, &base, "cl_a", "ICLOUD", "second-of-a").await,
        200
    );
    assert_eq!(
        backup(&http, &base, "cl_b", "GDRIVE", "share-of-b").await,
        200
    );

    // cl_a's ciphertext copied over cl_b's: it is bound to cl_a and does not open for cl_b.
    let of_a = store
        .get(&BackupKey::custodian_backup("cl_a", "GDRIVE").unwrap())
        .await
        .unwrap();
    store
        .put(
            &BackupKey::custodian_backup("cl_b", "GDRIVE").unwrap(),
            of_a.clone(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    assert!(fetch(&http, &base, "cl_b").await.is_empty());
    // ... nor under another method of the same client.
    store
        .put(
            &BackupKey::custodian_backup("cl_a", "ICLOUD").unwrap(),
            of_a.clone(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    assert_eq!(fetch(&http, &base, "cl_a").await, ["share-of-a"]);
    // A flipped bit.
    let mut bad = of_a.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    store
        .put(
            &BackupKey::custodian_backup("cl_a", "GDRIVE").unwrap(),
            Bytes::from(bad),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    assert!(fetch(&http, &base, "cl_a").await.is_empty());
    running.stop().await;
}

#[tokio::test]
async fn a_slow_store_answers_503_within_the_deadline() {
    let store = Arc::new(CountingStore::with(
        MemoryStore::new(),
        Duration::from_millis(1500),
    ));
    let server = builder(store)
        .with_request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let running = start(server).await;
    let started = std::time::Instant::now();
    assert_eq!(
        backup(&http(), &running.url(""), "cl_1", "GDRIVE", "s").await,
        503
    );
    assert!(started.elapsed() < Duration::from_millis(1200));
    running.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let store = Arc::new(CountingStore::with(
        MemoryStore::new(),
        Duration::from_millis(400),
    ));
    let running = start(builder(Arc::clone(&store)).build().unwrap()).await;
    let base = running.url("");
    let addr = running.addr;
    let http = http();
    let in_flight = {
        let http = http.clone();
        let base = base.clone();
        tokio::spawn(async move { backup(&http, &base, "cl_1", "GDRIVE", "in-flight").await })
    };
    // Let the request reach the (slow) store, then stop.
    while store.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await;
    assert_eq!(in_flight.await.unwrap(), 200);
    assert_eq!(store.inner.keys().len(), 1);
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn secrets_from_a_file_and_the_environment() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(
        &path,
        "# current and next\nfile-secret-one\nfile-secret-two\n",
    )
    .unwrap();
    // A file that its group or others can read is refused, like the KEK file.
    for mode in [0o644, 0o640, 0o604, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = custodian_webhook::WebhookSecrets::from_file(&path).unwrap_err();
        assert!(
            matches!(err, Error::SecretFilePermissions { mode: m, .. } if m == mode),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let secrets = custodian_webhook::WebhookSecrets::from_file(&path).unwrap();
    assert_eq!(secrets.len(), 2);
    assert!(secrets.verify(b"file-secret-two"));
    let err = custodian_webhook::WebhookSecrets::from_file(dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, Error::SecretFile { .. }), "{err}");
    assert!(
        custodian_webhook::WebhookSecrets::from_env("CUSTODIAN_WEBHOOK_TEST_UNSET_VAR").is_err()
    );
}
