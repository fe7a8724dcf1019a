//! Logs (at every level) and `Debug` output never contain a share or a webhook secret.
//! A test binary of its own, because it installs the global tracing subscriber.

mod support;

use std::sync::Arc;

use custodian_webhook::storage::memory::MemoryStore;
use custodian_webhook::{Allowlist, TlsConfig, WebhookSecrets};
use serde_json::json;
use support::{LogBuffer, NEXT_SECRET, SECRET, backup, builder, fetch, http, post, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_debug_never_show_shares_or_secrets() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let share = "SHARE-MATERIAL that must never be logged {\"k\": 42}";
    let server = builder(Arc::new(MemoryStore::new()))
        .with_allowlist(Allowlist::parse(["loopback"]).unwrap())
        .build()
        .unwrap();
    let debug = format!("{server:?} {server:#?} {:?}", server.vault());
    let running = start(server).await;
    let base = running.url("");
    let http = http();
    assert_eq!(backup(&http, &base, "cl_logs", "GDRIVE", share).await, 200);
    assert_eq!(fetch(&http, &base, "cl_logs").await, [share]);
    // Rejections log too: a wrong secret that looks like the real one, a malformed body that
    // holds the share, a mistyped field holding the share.
    let url = format!("{base}/backup");
    let wrong = format!("{SECRET}-wrong");
    assert_eq!(post(&http, &url, Some(&wrong), &json!({})).await.0, 401);
    let resp = http
        .post(&url)
        .header("X-Webhook-Secret", SECRET)
        .body(format!("{{\"share\": \"{share}\", oops"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = json!({"backupMethod": "GDRIVE", "clientId": 5, "share": share});
    assert_eq!(post(&http, &url, Some(SECRET), &body).await.0, 400);
    // An id that is not storable is not logged either (it could be anything).
    let body = json!({"backupMethod": share, "clientId": "cl_logs", "share": share});
    assert_eq!(post(&http, &url, Some(SECRET), &body).await.0, 400);
    running.stop().await;

    let logs = buffer.text();
    assert!(logs.contains("custodian share stored"), "{logs}");
    assert!(logs.contains("cl_logs"), "{logs}");
    assert!(logs.contains("wrong X-Webhook-Secret"), "{logs}");
    for text in [&logs, &debug] {
        assert!(!text.contains("SHARE-MATERIAL"), "share leaked: {text}");
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains(NEXT_SECRET), "secret leaked: {text}");
    }

    // Debug of the other secret-holding types.
    let secrets = WebhookSecrets::parse(SECRET).unwrap();
    let share = portal_api::SecretShare::new(share.to_owned());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key_pem = cert.signing_key.serialize_pem();
    let tls = TlsConfig::from_pem(cert.cert.pem().as_bytes(), key_pem.as_bytes()).unwrap();
    let builder_debug = format!(
        "{:?}",
        builder(Arc::new(MemoryStore::new())).with_tls(tls.clone())
    );
    for text in [
        format!("{secrets:?}"),
        format!("{secrets:#?}"),
        format!("{share:?}"),
        format!("{share:#?}"),
        format!("{tls:?}"),
        builder_debug,
    ] {
        assert!(!text.contains("SHARE-MATERIAL"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let key_body: String = key_pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!text.contains(&key_body), "{text}");
    }
}
