//! Store-wide verify (`Flow::verify_store_wide`) of [`BACKUPS`] backups (one client each, two
//! shares sealed under one data key) on the file store, behind a local KEK with
//! [`LATENCY_MS`] ms added to every call (a latency-injecting wrapper, as a KMS round trip),
//! at concurrency 1 and 64, against the ideal
//!
//! ideal backups/s = min(concurrency / latency, the store's own read rate),
//!
//! where the store's read rate is measured alone in the same run (list each client and read
//! its two objects, at the same concurrency, no KMS call). KMS calls per backup are counted
//! (1: both shares open with one unwrap).
//!
//! Not a criterion bench (one timed run per level says more than criterion's sampling of
//! it): like `bulk_throughput`, it writes its results in criterion's file layout under
//! `CRITERION_HOME` when set, group `verify_store_wide_5ms`, so that `baseline_ideal/cNNN`
//! (the ideal time per backup) stands next to `verify/cNNN` (the achieved one).
//!
//! Run: `cargo bench -p portal-backup-flow --bench store_wide_verify` (prints the table);
//! `cargo test --benches` runs a smoke-sized pass.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss
)] // a benchmark program: a broken fixture should panic; counts are small

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::testing::{CallCounter, HookedKek, Latency};
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::storage::BackupStore;
use backup_flow::storage::fs::FsStore;
use backup_flow::{Finding, Flow};
use futures_util::StreamExt as _;
use futures_util::stream;

// One backup as `backup` stores it; shared with the tests.
#[path = "../tests/support/backups.rs"]
mod backups;
use backups::{CURVES, store_backup};
use serde_json::json;

const LATENCY_MS: u64 = 5;
const BACKUPS: usize = 2_000;
const LEVELS: [usize; 2] = [1, 64];
const GROUP: &str = "verify_store_wide_5ms";

/// A local KEK with a latency added to every call (none while seeding), counting the calls.
struct Kek {
    kek: Arc<HookedKek>,
    latency: Arc<Latency>,
    calls: Arc<CallCounter>,
}

impl Kek {
    fn new() -> Self {
        let (latency, calls) = (Arc::new(Latency::default()), Arc::default());
        let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
            .with_hook(Arc::clone(&calls))
            .with_hook(Arc::clone(&latency));
        Self {
            kek: Arc::new(kek),
            latency,
            calls,
        }
    }
}

/// `backups` clients, each one backup of two shares sealed under one data key, as a backup
/// stores them. Sealed with the KEK's latency set aside (seeding is not the benchmark).
async fn seed(store: &dyn BackupStore, keyring: &Keyring, backups: usize) -> Vec<String> {
    let ids: Vec<String> = (0..backups).map(|i| format!("client-{i:06}")).collect();
    stream::iter(&ids)
        .for_each_concurrent(64, |client_id| async move {
            let pair = |curve: &str| format!("{client_id}-{curve}");
            store_backup(store, keyring, client_id, pair, &[7; 64]).await;
        })
        .await;
    ids
}

/// The store alone: list each client and read its objects, `concurrency` clients at once.
/// Backups per second.
async fn store_read_rate(store: &dyn BackupStore, clients: &[String], concurrency: usize) -> f64 {
    let started = Instant::now();
    stream::iter(clients)
        .for_each_concurrent(concurrency, |client_id| async move {
            for key in store.list(client_id).await.unwrap() {
                store.get(&key).await.unwrap();
            }
        })
        .await;
    clients.len() as f64 / started.elapsed().as_secs_f64()
}

struct Level {
    concurrency: usize,
    achieved: f64,
    kms_bound: f64,
    store_rate: f64,
    kms_calls_per_backup: f64,
    /// What a KEK call took on average, measured (nominal: [`LATENCY_MS`]).
    kek_ms_per_call: f64,
}

impl Level {
    fn ideal(&self) -> f64 {
        self.kms_bound.min(self.store_rate)
    }
}

async fn level(
    flow: &Flow,
    store: &dyn BackupStore,
    kek: &Kek,
    clients: &[String],
    concurrency: usize,
) -> Level {
    let store_rate = store_read_rate(store, clients, concurrency).await;
    kek.calls.reset();
    kek.latency.reset_waited();
    let started = Instant::now();
    let mut shares = 0usize;
    let mut drill = std::pin::pin!(flow.verify_store_wide(clients, concurrency));
    while let Some(client) = drill.next().await {
        for share in client.shares.unwrap() {
            assert_eq!(share.result.unwrap().finding, Finding::Ok);
            shares += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(shares, clients.len() * CURVES.len());
    Level {
        concurrency,
        achieved: clients.len() as f64 / elapsed.as_secs_f64(),
        kms_bound: concurrency as f64 * 1000.0 / LATENCY_MS as f64,
        store_rate,
        kms_calls_per_backup: kek.calls.total() as f64 / clients.len() as f64,
        kek_ms_per_call: kek.latency.waited().as_secs_f64() * 1e3 / kek.calls.total().max(1) as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: a smoke pass.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let backups = if smoke { 16 } else { BACKUPS };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = std::env::var_os("CRITERION_HOME").map(std::path::PathBuf::from);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let kek = Kek::new();
    let flow = flow(Arc::clone(&store), &kek, state.path());
    let clients = runtime.block_on(seed(store.as_ref(), flow.keyring(), backups));
    kek.latency.set(Duration::from_millis(LATENCY_MS));

    println!(
        "store-wide verify, file store, {backups} backups (2 shares each), local KEK + {LATENCY_MS} ms per call; \
         ideal = min(concurrency / latency, store read rate alone)"
    );
    println!(
        "concurrency  KMS calls/backup  KEK ms/call (measured)  store alone/s  KMS bound/s  achieved/s  ideal/s  achieved/ideal"
    );
    for concurrency in LEVELS {
        let result = runtime.block_on(level(&flow, store.as_ref(), &kek, &clients, concurrency));
        println!(
            "{:>11}  {:>16.2}  {:>22.2}  {:>13.0}  {:>11.0}  {:>10.1}  {:>7.1}  {:>14.3}",
            result.concurrency,
            result.kms_calls_per_backup,
            result.kek_ms_per_call,
            result.store_rate,
            result.kms_bound,
            result.achieved,
            result.ideal(),
            result.achieved / result.ideal()
        );
        if let (Some(home), false) = (home.as_deref(), smoke) {
            let parameter = format!("c{concurrency:03}");
            write_result(home, "baseline_ideal", &parameter, 1e9 / result.ideal());
            write_result(home, "verify", &parameter, 1e9 / result.achieved);
        }
    }
}

fn flow(store: Arc<dyn BackupStore>, kek: &Kek, state: &Path) -> Flow {
    // The store-wide drill never calls Portal: the flow has no Portal role at all.
    let keyring = Keyring::new().with(Arc::clone(&kek.kek) as Arc<dyn KeyEncryptionKey>);
    Flow::new(keyring, store, state).unwrap()
}

/// One result in criterion's layout: `<home>/<group>/<function>/<parameter>/new/`.
fn write_result(home: &Path, function: &str, parameter: &str, median_ns: f64) {
    let id = format!("{GROUP}/{function}/{parameter}");
    let dir = home.join(GROUP).join(function).join(parameter).join("new");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("benchmark.json"),
        json!({
            "group_id": GROUP,
            "function_id": function,
            "value_str": parameter,
            "throughput": {"Elements": 1},
            "full_id": id,
            "directory_name": id,
            "title": id,
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("estimates.json"),
        json!({"median": {"point_estimate": median_ns}, "mean": {"point_estimate": median_ns}})
            .to_string(),
    )
    .unwrap();
}
