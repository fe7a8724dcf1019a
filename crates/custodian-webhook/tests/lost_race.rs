//! Two backups of one client and method racing over a store that compares and swaps: the one
//! stored first stands, the other is answered 503 `superseded` (Portal sends it again) and is
//! logged and counted as a lost race, not as a store or KMS outage. Two that carry the same
//! share (a retry meeting its own first attempt's late write) are both answered 200.

mod support;

use std::sync::Arc;

use custodian_webhook::envelope::testing::{HookedKek, KekCall, KekHook};
use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, KmsError, local::LocalKek};
use custodian_webhook::storage::Capabilities;
use custodian_webhook::storage::memory::MemoryStore;
use serde_json::{Value, json};
use support::{LogBuffer, SECRET, builder, fetch, http, post, sample, scrape, start_with_metrics};

/// Holds each seal until both backups are sealing: both read the store before either wrote.
#[derive(Debug)]
struct BothSealing(tokio::sync::Barrier);

#[async_trait::async_trait]
impl KekHook for BothSealing {
    async fn before(&self, call: KekCall) -> Result<(), KmsError> {
        if call.wraps() {
            self.0.wait().await;
        }
        Ok(())
    }
}

// One thread: the server's tasks run where the test's log subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn the_loser_of_a_race_is_answered_superseded_and_logged_as_no_outage() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);

    let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
        .with_hook(Arc::new(BothSealing(tokio::sync::Barrier::new(2))));
    let server = builder(Arc::new(MemoryStore::new()))
        .with_keyring(Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>))
        .build()
        .unwrap();
    let (running, metrics) = start_with_metrics(server).await;
    let base = running.url("");
    let http = http();
    let url = format!("{base}/backup");
    let body =
        |share: &str| json!({"backupMethod": "GDRIVE", "clientId": "cl_race", "share": share});
    let (one, two) = (body("share one"), body("share two"));
    let (first, second) = tokio::join!(
        post(&http, &url, Some(SECRET), &one),
        post(&http, &url, Some(SECRET), &two),
    );

    let (won, lost) = if first.0 == 200 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(won.0, 200, "{won:?}");
    assert_eq!(lost.0, 503, "{lost:?}");
    let answer: Value = serde_json::from_str(&lost.1).unwrap();
    assert_eq!(answer["error"], "superseded", "{answer}");
    // The winner's share stands.
    let stored = fetch(&http, &base, "cl_race").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(["share one", "share two"].contains(&stored[0].as_str()));
    let text = scrape(metrics).await;
    assert_eq!(
        sample(&text, "custodian_webhook_writes_superseded_total", &[]),
        Some(1.0)
    );
    running.stop().await;

    let logs = buffer.text();
    let line = logs
        .lines()
        .find(|l| l.contains("backup superseded"))
        .unwrap_or_else(|| panic!("no superseded line: {logs}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(!logs.contains("store or KMS unavailable"), "{logs}");
    assert!(!logs.contains(" ERROR "), "{logs}");
}

/// A retry whose first attempt got no answer can meet that attempt's write landing after it
/// read the store. Both carry the same share: the retry is answered 200, not `superseded`,
/// and one share is stored. With compare and swap, and with generations.
#[tokio::test]
async fn a_retry_that_meets_its_own_first_attempts_write_is_answered_200() {
    let mut no_overwrite = Capabilities::all();
    no_overwrite.overwrite = false;
    for store in [
        MemoryStore::new(),
        MemoryStore::with_capabilities(no_overwrite),
    ] {
        let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
            .with_hook(Arc::new(BothSealing(tokio::sync::Barrier::new(2))));
        let server = builder(Arc::new(store))
            .with_keyring(Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>))
            .build()
            .unwrap();
        let strategy = server.vault().strategy();
        let (running, metrics) = start_with_metrics(server).await;
        let base = running.url("");
        let http = http();
        let url = format!("{base}/backup");
        let body = json!({"backupMethod": "GDRIVE", "clientId": "cl_retry", "share": "same"});
        let (first, second) = tokio::join!(
            post(&http, &url, Some(SECRET), &body),
            post(&http, &url, Some(SECRET), &body),
        );
        assert_eq!(
            (first.0, second.0),
            (200, 200),
            "{strategy:?}: {first:?} {second:?}"
        );
        assert_eq!(
            fetch(&http, &base, "cl_retry").await,
            ["same"],
            "{strategy:?}"
        );
        let text = scrape(metrics).await;
        assert_eq!(
            sample(&text, "custodian_webhook_writes_superseded_total", &[]).unwrap_or(0.0),
            0.0,
            "{strategy:?}"
        );
        running.stop().await;
    }
}
