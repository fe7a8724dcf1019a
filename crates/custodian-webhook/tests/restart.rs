//! Shares stored on a file store survive the server being killed and started again on the
//! same directory (with the same key file); nothing on disk is plaintext.

mod support;

use std::sync::Arc;

use custodian_webhook::WebhookServer;
use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use custodian_webhook::storage::fs::FsStore;
use support::{backup, fetch, http, scan, secrets, share_like_portal, start};

// A helper outside #[test]: a broken fixture should panic.
#[allow(clippy::unwrap_used, reason = "test helper")]
fn server(dir: &std::path::Path) -> WebhookServer {
    let kek = LocalKek::from_file(&dir.join("kek")).unwrap();
    WebhookServer::builder()
        .with_keyring(Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>))
        .with_store(Arc::new(FsStore::new(dir.join("store")).unwrap()))
        .with_secrets(secrets())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_share_is_fetchable_after_a_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    LocalKek::generate_file(&dir.path().join("kek")).unwrap();
    let http = http();
    let methods = ["PASSWORD-SECP256K1", "PASSWORD-ED25519"];
    let mut expected = Vec::new();

    let first = start(server(dir.path())).await;
    let base = first.url("");
    for c in 0..20 {
        let client = format!("cl_restart_{c}");
        for method in methods {
            let share = share_like_portal(&client);
            assert_eq!(backup(&http, &base, &client, method, &share).await, 200);
            expected.push((client.clone(), share));
        }
    }
    // Replace some shares before the kill: the new ones must be what comes back.
    for c in 0..5 {
        let client = format!("cl_restart_{c}");
        let share = share_like_portal(&client);
        assert_eq!(backup(&http, &base, &client, methods[0], &share).await, 200);
        let slot = expected.iter().position(|(cl, _)| *cl == client).unwrap();
        expected[slot].1 = share;
    }
    first.kill().await;

    let second = start(server(dir.path())).await;
    let base = second.url("");
    for c in 0..20 {
        let client = format!("cl_restart_{c}");
        let mut got = fetch(&http, &base, &client).await;
        got.sort();
        let mut want: Vec<String> = expected
            .iter()
            .filter(|(cl, _)| *cl == client)
            .map(|(_, s)| s.clone())
            .collect();
        want.sort();
        assert_eq!(got, want, "{client}");
    }
    second.stop().await;

    let shares: Vec<String> = expected.into_iter().map(|(_, s)| s).collect();
    scan::self_check();
    let store_dir = dir.path().join("store");
    assert_eq!(scan::count_files(&store_dir), 40);
    let hits = scan::scan(&store_dir, &shares);
    assert!(hits.is_empty(), "plaintext on disk: {hits:?}");
}
