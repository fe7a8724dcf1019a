//! Put/get latency and throughput of every store in this crate, on this machine, in one
//! table with the file-system store as the baseline:
//!
//! ```text
//! cargo run --release -p portal-backup-storage --example store_latency --features fs
//! cargo run --release -p portal-backup-storage --example store_latency \
//!     --features fs,postgres,s3,azure,gcs,replicated      # every row; `cargo xtask bench stores`
//! ```
//!
//! Rows, each behind its feature: `fs` (a temporary directory; the baseline) and `memory`;
//! `postgres` (a throwaway PostgreSQL on loopback, or the one in `PORTAL_BACKUP_PG_URL`; its
//! defaults `fsync = on`, `synchronous_commit = on`, so every put waits for a WAL flush);
//! `s3` on moto and `azure` on Azurite (started on loopback as the tests do, see the
//! `test-services` crate); `gcs` on the in-process fake of `tests/object_support/gcs_fake.rs`;
//! `replicated` over fs + memory (and fs + postgres with `postgres`), quorum 2. A missing
//! service skips its row loudly, or fails under `cargo xtask` (`PORTAL_BACKUP_XTASK=1`).
//!
//! Per store: `OPS` sequential 1 KiB create-only puts, overwrites and gets (p50/p99), then
//! `OPS` create-only puts and gets of other keys from `CONCURRENT` tasks (operations per
//! second), then `LARGE_OPS` puts and gets of a 5 MiB body (MiB/s); afterwards every key is
//! deleted and the store must list nothing (`left`, which must be 0). The emulators' figures
//! measure the client plus the emulator on loopback (moto is a Python dev server), not the
//! clouds.
//!
//! Output: a Markdown table, each cell with `×` = time ÷ the fs store's time (for a rate,
//! the fs rate ÷ this rate; 2.0 means half as fast), then one JSON line with the raw figures,
//! which `cargo xtask bench stores` keeps in `docs/benchmarks.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a benchmark program: a panic is a failed run"
)]

#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
#[path = "../tests/object_support/mod.rs"]
mod object_support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::{BackupKey, BackupStore, PutOptions, fs::FsStore, memory::MemoryStore};

const SMALL: usize = 1024;
const OPS: usize = 300;
const CONCURRENT: usize = 16;
const LARGE: usize = 5 * 1024 * 1024;
const LARGE_OPS: usize = 6;
const CLIENT: &str = "cl_bench";

fn key(i: usize) -> BackupKey {
    BackupKey::client_backup(CLIENT, format!("bsp_{i}"), "SECP256K1").expect("a valid key")
}

/// One store's figures: latencies in milliseconds, rates per second.
#[derive(Debug, Clone)]
struct Row {
    store: String,
    create_p50: f64,
    create_p99: f64,
    overwrite_p50: f64,
    get_p50: f64,
    get_p99: f64,
    puts_s: f64,
    gets_s: f64,
    put_mib_s: f64,
    get_mib_s: f64,
    left: usize,
}

/// The p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: usize| samples[(samples.len() - 1) * q / 100].as_secs_f64() * 1000.0;
    (at(50), at(99))
}

async fn timed<F: Future<Output = Result<(), storage::StorageError>>>(f: F) -> Duration {
    let started = Instant::now();
    f.await.expect("store operation");
    started.elapsed()
}

/// `OPS` operations on keys `offset..offset + OPS` from `CONCURRENT` tasks; operations per
/// second. `put`: create-only puts of 1 KiB; else gets.
async fn concurrent(store: &Arc<dyn BackupStore>, offset: usize, put: bool) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|t| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let body = Bytes::from(vec![3u8; SMALL]);
                for i in (t..OPS).step_by(CONCURRENT) {
                    if put {
                        let options = PutOptions::create();
                        store.put(&key(offset + i), body.clone(), options).await
                    } else {
                        store.get(&key(offset + i)).await.map(drop)
                    }
                    .expect("concurrent operation");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

async fn bench(label: &str, store: Arc<dyn BackupStore>) -> Row {
    eprintln!("measuring {label}");
    let small = Bytes::from(vec![7u8; SMALL]);
    let (mut create, mut overwrite, mut get) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..OPS {
        create.push(timed(store.put(&key(i), small.clone(), PutOptions::create())).await);
    }
    for i in 0..OPS {
        overwrite.push(timed(store.put(&key(i), small.clone(), PutOptions::overwrite())).await);
    }
    for i in 0..OPS {
        get.push(timed(async { store.get(&key(i)).await.map(drop) }).await);
    }
    let puts_s = concurrent(&store, OPS, true).await;
    let gets_s = concurrent(&store, OPS, false).await;
    let large = Bytes::from(vec![9u8; LARGE]);
    let big = key(2 * OPS);
    let mib = (LARGE * LARGE_OPS) as f64 / 1_048_576.0;
    let started = Instant::now();
    for _ in 0..LARGE_OPS {
        store
            .put(&big, large.clone(), PutOptions::overwrite())
            .await
            .expect("large put");
    }
    let put_mib_s = mib / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..LARGE_OPS {
        store.get(&big).await.expect("large get");
    }
    let get_mib_s = mib / started.elapsed().as_secs_f64();
    for i in 0..=2 * OPS {
        store.delete(&key(i)).await.expect("delete");
    }
    let (create_p50, create_p99) = percentiles(create);
    let (overwrite_p50, _) = percentiles(overwrite);
    let (get_p50, get_p99) = percentiles(get);
    Row {
        store: label.to_owned(),
        create_p50,
        create_p99,
        overwrite_p50,
        get_p50,
        get_p99,
        puts_s,
        gets_s,
        put_mib_s,
        get_mib_s,
        left: store.list(CLIENT).await.expect("list").len(),
    }
}

#[cfg(feature = "replicated")]
fn replicated(replicas: Vec<Arc<dyn BackupStore>>) -> Arc<dyn BackupStore> {
    Arc::new(
        storage::replicated::ReplicatedStore::builder()
            .with_replicas(replicas)
            .with_quorum(2)
            .build()
            .expect("a replicated store"),
    )
}

/// Milliseconds as `12.3 ms` or, below 1 ms, `45.6 µs`.
fn duration(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} µs", ms * 1000.0)
    }
}

/// ` ×r` with two significant digits below 1 (×0.0021), two decimals above.
fn ratio(r: f64) -> String {
    if r >= 1.0 || !r.is_finite() || r <= 0.0 {
        format!(" ×{r:.2}")
    } else {
        let digits = (1.0 - r.log10().floor()).clamp(2.0, 9.0) as usize;
        format!(" ×{r:.digits$}")
    }
}

/// The table: every cell but the baseline's with its `×` (time ÷ the baseline's time).
fn table(rows: &[Row]) -> String {
    let base = &rows[0];
    let mut out = String::from(
        "| store | put create p50 | put create p99 | overwrite p50 | get p50 | get p99 \
         | 16 tasks: puts/s | 16 tasks: gets/s | 5 MiB put | 5 MiB get | left |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let is_base = std::ptr::eq(row, base);
        let ms = |v: f64, b: f64| {
            let ratio = if is_base { String::new() } else { ratio(v / b) };
            format!("{}{ratio}", duration(v))
        };
        let rate = |v: f64, b: f64, unit: &str| {
            let ratio = if is_base { String::new() } else { ratio(b / v) };
            format!("{v:.0}{unit}{ratio}")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.store,
            ms(row.create_p50, base.create_p50),
            ms(row.create_p99, base.create_p99),
            ms(row.overwrite_p50, base.overwrite_p50),
            ms(row.get_p50, base.get_p50),
            ms(row.get_p99, base.get_p99),
            rate(row.puts_s, base.puts_s, ""),
            rate(row.gets_s, base.gets_s, ""),
            rate(row.put_mib_s, base.put_mib_s, " MiB/s"),
            rate(row.get_mib_s, base.get_mib_s, " MiB/s"),
            row.left,
        );
    }
    out
}

/// The raw figures as one JSON line (the names are plain text, so no escaping is needed).
fn json(rows: &[Row]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"store\":\"{}\",\"createP50Ms\":{},\"createP99Ms\":{},\"overwriteP50Ms\":{},\
                 \"getP50Ms\":{},\"getP99Ms\":{},\"concurrentPutsPerSecond\":{},\
                 \"concurrentGetsPerSecond\":{},\"largePutMibPerSecond\":{},\
                 \"largeGetMibPerSecond\":{},\"left\":{}}}",
                r.store,
                r.create_p50,
                r.create_p99,
                r.overwrite_p50,
                r.get_p50,
                r.get_p99,
                r.puts_s,
                r.gets_s,
                r.put_mib_s,
                r.get_mib_s,
                r.left
            )
        })
        .collect();
    format!(
        "{{\"ops\":{OPS},\"concurrency\":{CONCURRENT},\"largeBytes\":{LARGE},\"largeOps\":{LARGE_OPS},\
         \"release\":{},\"rows\":[{}]}}",
        !cfg!(debug_assertions),
        rows.join(",")
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fs = |name: &str| -> Arc<dyn BackupStore> {
        Arc::new(FsStore::new(dir.path().join(name)).expect("an fs store"))
    };
    rows.push(bench("fs (tmpdir; baseline)", fs("fs")).await);
    rows.push(bench("memory", Arc::new(MemoryStore::new())).await);
    #[cfg(feature = "postgres")]
    let pg = test_services::postgres::shared();
    #[cfg(feature = "postgres")]
    if let Some(pg) = pg {
        let (_, url) = pg.create_database("bench");
        let store = storage::postgres::PostgresStore::connect(&url)
            .await
            .expect("connect");
        rows.push(bench("postgres (loopback, fsync on)", Arc::new(store)).await);
    }
    #[cfg(feature = "s3")]
    if let Some(moto) = object_support::moto::shared() {
        use object_support::moto::MotoS3 as _;
        rows.push(bench("s3 (moto, loopback)", Arc::new(moto.store("bench"))).await);
    }
    #[cfg(feature = "azure")]
    if let Some(azurite) = object_support::azurite::shared() {
        use object_support::azurite::AzuriteBlobs as _;
        rows.push(
            bench(
                "azure (Azurite, loopback)",
                Arc::new(azurite.store("bench")),
            )
            .await,
        );
    }
    #[cfg(feature = "gcs")]
    {
        let store = object_support::gcs_fake::shared().store("bench");
        rows.push(bench("gcs (in-process fake)", Arc::new(store)).await);
    }
    #[cfg(feature = "replicated")]
    {
        let store = replicated(vec![fs("replicated"), Arc::new(MemoryStore::new())]);
        rows.push(bench("replicated: fs + memory", store).await);
    }
    #[cfg(all(feature = "replicated", feature = "postgres"))]
    if let Some(pg) = pg {
        let (_, url) = pg.create_database("bench_replicated");
        let postgres = storage::postgres::PostgresStore::connect(&url)
            .await
            .expect("connect");
        let store = replicated(vec![fs("replicated-pg"), Arc::new(postgres)]);
        rows.push(bench("replicated: fs + postgres", store).await);
    }
    println!(
        "{OPS} sequential 1 KiB operations of each kind per store, {CONCURRENT} tasks for the \
         rates, {LARGE_OPS} × 5 MiB; {} build, {} CPUs; × = time ÷ the fs store's\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    );
    println!("{}", table(&rows));
    println!("{}", json(&rows));
    let left: usize = rows.iter().map(|r| r.left).sum();
    assert_eq!(left, 0, "objects were left behind");
}
