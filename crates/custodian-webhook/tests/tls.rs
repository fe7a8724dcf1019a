//! HTTPS with rustls when a certificate is configured.

mod support;

use std::sync::Arc;
use std::time::Duration;

use custodian_webhook::TlsConfig;
use custodian_webhook::storage::memory::MemoryStore;
use serde_json::json;
use support::{SECRET, builder, start};

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = TlsConfig::from_pem_files(&cert_path, &key_path).unwrap();

    let server = builder(Arc::new(MemoryStore::new()))
        .with_tls(tls)
        .build()
        .unwrap();
    assert!(server.is_tls());
    let running = start(server).await;
    let port = running.addr.port();

    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .resolve("localhost", running.addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let resp = https
        .post(format!("{base}/backup"))
        .header("X-Webhook-Secret", SECRET)
        .json(&json!({"backupMethod": "GDRIVE", "clientId": "cl_tls", "share": "over-tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = https
        .post(format!("{base}/backup/fetch"))
        .header("X-Webhook-Secret", SECRET)
        .json(&json!({"clientId": "cl_tls"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"backupShares": ["over-tls"]}));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(
        plain
            .get(format!("http://{}/healthz", running.addr))
            .send()
            .await
            .is_err()
    );
    running.stop().await;
}

#[test]
fn bad_certificates_are_refused() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    assert!(TlsConfig::from_pem(pem.as_bytes(), b"not a key").is_err());
    assert!(TlsConfig::from_pem(b"", other.signing_key.serialize_pem().as_bytes()).is_err());
    let err = TlsConfig::from_pem(pem.as_bytes(), other.signing_key.serialize_pem().as_bytes())
        .unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    assert!(TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").is_err());
}
