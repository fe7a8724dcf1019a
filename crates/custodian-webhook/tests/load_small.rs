//! A small version of the load test (`cargo run --release -p portal-backup-custodian-webhook --example
//! load` runs the full one from a separate process): 500 backup+fetch pairs at 50 concurrent
//! connections against the file store, no errors, every share fetchable afterwards, nothing
//! plaintext on disk.

mod support;

use std::sync::Arc;
use std::time::Duration;

use custodian_webhook::storage::fs::FsStore;
use support::load::{LoadConfig, identity, run};
use support::{SECRET, builder, scan, share_like_portal, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_pairs_at_fifty_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path().join("store")).unwrap());
    let running = start(builder(store).build().unwrap()).await;
    let config = LoadConfig {
        base_url: running.url(""),
        secret: SECRET.to_owned(),
        pairs: 500,
        concurrency: 50,
        deadline: Duration::from_secs(120),
    };
    let shares: Arc<Vec<String>> = Arc::new(
        (0..config.pairs)
            .map(|i| share_like_portal(&identity(i).0))
            .collect(),
    );
    let mut report = run(&config, Arc::clone(&shares)).await;
    println!("{}", report.summary());
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    assert_eq!(report.pairs, 500);
    assert_eq!(report.missing_after, 0);
    running.stop().await;

    assert_eq!(scan::count_files(&dir.path().join("store")), 500);
    let hits = scan::scan(dir.path(), &shares);
    assert!(hits.is_empty(), "plaintext on disk: {hits:?}");
}
