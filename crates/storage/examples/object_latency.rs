//! Put/get latency and throughput of the object-store backend on loopback, next to the
//! memory and file-system baselines:
//! `cargo run -p storage --example object_latency --features s3,fs` (add `azure` and `gcs`
//! for Azurite and the in-process GCS fake). It starts moto (and Azurite) itself, as the
//! tests do; see `tests/object_support`.
//!
//! The figures measure object_store's client plus the emulator (moto is Python's Werkzeug
//! dev server, one connection per request; the GCS fake is in-process), not the clouds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::arithmetic_side_effects,
    missing_docs,
    reason = "a benchmark program: a panic is a failed run"
)]

#[path = "../tests/object_support/mod.rs"]
mod object_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::{BackupKey, BackupStore, PutOptions, fs::FsStore, memory::MemoryStore};

const SMALL: usize = 1024;
const OPS: usize = 200;
const CONCURRENT: usize = 16;
const LARGE: usize = 5 * 1024 * 1024;
const LARGE_OPS: usize = 4;

fn key(i: usize) -> BackupKey {
    BackupKey::client_backup("cl_bench", format!("bsp_{i}"), "SECP256K1").expect("a valid key")
}

fn summary(samples: Vec<Duration>) -> String {
    let (p50, p90, mean) = object_support::stats_ms(samples);
    format!("p50 {p50:>8.3} ms  p90 {p90:>8.3} ms  mean {mean:>8.3} ms")
}

async fn timed<F: Future<Output = Result<(), storage::StorageError>>>(f: F) -> Duration {
    let started = Instant::now();
    f.await.expect("store operation");
    started.elapsed()
}

async fn bench(label: &str, store: Arc<dyn BackupStore>) {
    let small = Bytes::from(vec![7u8; SMALL]);
    let mut create = Vec::new();
    for i in 0..OPS {
        create.push(timed(store.put(&key(i), small.clone(), PutOptions::create())).await);
    }
    let mut overwrite = Vec::new();
    for i in 0..OPS {
        overwrite.push(timed(store.put(&key(i), small.clone(), PutOptions::overwrite())).await);
    }
    let mut get = Vec::new();
    for i in 0..OPS {
        get.push(timed(async { store.get(&key(i)).await.map(drop) }).await);
    }
    // Throughput with CONCURRENT writers (tasks) of distinct keys.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|t| {
            let (store, small) = (Arc::clone(&store), small.clone());
            tokio::spawn(async move {
                for i in (t..OPS).step_by(CONCURRENT) {
                    store
                        .put(&key(i), small.clone(), PutOptions::overwrite())
                        .await
                        .expect("concurrent put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent_ops_s = OPS as f64 / started.elapsed().as_secs_f64();
    let large = Bytes::from(vec![9u8; LARGE]);
    let big = key(OPS);
    let started = Instant::now();
    for _ in 0..LARGE_OPS {
        store
            .put(&big, large.clone(), PutOptions::overwrite())
            .await
            .expect("large put");
    }
    let put_mib_s = (LARGE * LARGE_OPS) as f64 / 1_048_576.0 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..LARGE_OPS {
        store.get(&big).await.expect("large get");
    }
    let get_mib_s = (LARGE * LARGE_OPS) as f64 / 1_048_576.0 / started.elapsed().as_secs_f64();
    for i in 0..=OPS {
        store.delete(&key(i)).await.expect("delete");
    }
    let left = store.list("cl_bench").await.expect("list").len();
    println!("{label}");
    println!("  put 1 KiB create-only  {}", summary(create));
    println!("  put 1 KiB overwrite    {}", summary(overwrite));
    println!("  get 1 KiB              {}", summary(get));
    println!("  1 KiB puts, {CONCURRENT} tasks: {concurrent_ops_s:.0} ops/s");
    println!(
        "  5 MiB bodies: put {put_mib_s:.0} MiB/s, get {get_mib_s:.0} MiB/s; objects left behind: {left}"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "{OPS} sequential ops of each kind; profile: {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    bench("memory", Arc::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    bench(
        "fs (tmpdir)",
        Arc::new(FsStore::new(dir.path()).expect("a store")),
    )
    .await;
    let moto = object_support::moto::start().expect("moto is needed: see tests/object_support");
    bench("s3 (moto on loopback)", Arc::new(moto.store("bench"))).await;
    #[cfg(feature = "azure")]
    {
        let azurite = object_support::azurite::start().expect("azurite is needed");
        bench(
            "azure (Azurite on loopback)",
            Arc::new(azurite.store("bench")),
        )
        .await;
    }
    #[cfg(feature = "gcs")]
    bench(
        "gcs (in-process fake of the XML API)",
        Arc::new(object_support::gcs_fake::shared().store("bench")),
    )
    .await;
}
