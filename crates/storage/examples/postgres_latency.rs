//! Put/get latency and throughput of the PostgreSQL store on loopback, next to the memory and
//! file-system baselines:
//! `cargo run --release -p storage --example postgres_latency --features postgres,fs`.
//!
//! It starts a throwaway PostgreSQL itself (Debian's server binaries; see
//! `tests/support/postgres.rs`), or uses the one in `PORTAL_BACKUP_PG_URL`. The server runs
//! with its defaults (`fsync = on`, `synchronous_commit = on`): every put waits for a WAL
//! flush, as the store's durability claim requires.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a benchmark program: a panic is a failed run"
)]

#[path = "../tests/support/postgres.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::postgres::PostgresStore;
use storage::{BackupKey, BackupStore, PutOptions, fs::FsStore, memory::MemoryStore};

const SMALL: usize = 1024;
const OPS: usize = 500;
const CONCURRENT: usize = 16;
const LARGE: usize = 5 * 1024 * 1024;
const LARGE_OPS: usize = 8;

fn key(i: usize) -> BackupKey {
    BackupKey::client_backup("cl_bench", format!("bsp_{i}"), "SECP256K1").expect("a valid key")
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: usize| samples[(samples.len() - 1) * q / 100].as_secs_f64() * 1000.0;
    format!("p50 {:>7.3} ms  p99 {:>7.3} ms", at(50), at(99))
}

async fn timed<F: Future<Output = Result<(), storage::StorageError>>>(f: F) -> Duration {
    let started = Instant::now();
    f.await.expect("store operation");
    started.elapsed()
}

/// Puts (create only) of 1 KiB bodies from `CONCURRENT` tasks; operations per second.
async fn concurrent_puts(store: &Arc<dyn BackupStore>, offset: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CONCURRENT {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(vec![3u8; SMALL]);
            for i in (t..OPS).step_by(CONCURRENT) {
                store
                    .put(&key(offset + i), body.clone(), PutOptions::create())
                    .await
                    .expect("concurrent put");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

async fn concurrent_gets(store: &Arc<dyn BackupStore>, offset: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CONCURRENT {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            for i in (t..OPS).step_by(CONCURRENT) {
                store.get(&key(offset + i)).await.expect("concurrent get");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
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
    let put_ops = concurrent_puts(&store, OPS).await;
    let get_ops = concurrent_gets(&store, OPS).await;
    let large = Bytes::from(vec![9u8; LARGE]);
    let big = key(3 * OPS);
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
    for i in 0..2 * OPS {
        store.delete(&key(i)).await.expect("delete");
    }
    store.delete(&big).await.expect("delete");
    let left = store.list("cl_bench").await.expect("list").len();
    println!(
        "{label:<9} put 1 KiB create     {}\n\
         {:<9} put 1 KiB overwrite  {}\n\
         {:<9} get 1 KiB            {}\n\
         {:<9} {CONCURRENT} tasks, 1 KiB: {put_ops:>6.0} puts/s, {get_ops:>6.0} gets/s\n\
         {:<9} 5 MiB bodies: put {put_mib_s:.0} MiB/s, get {get_mib_s:.0} MiB/s; objects left: {left}",
        summary(create),
        "",
        summary(overwrite),
        "",
        summary(get),
        "",
        "",
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "{OPS} sequential operations per row, {} CPUs, loopback",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    bench("memory", Arc::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    bench("fs", Arc::new(FsStore::new(dir.path()).expect("a store"))).await;
    let Some(pg) = support::shared() else {
        return;
    };
    let store = PostgresStore::connect(&pg.url).await.expect("connect");
    bench("postgres", Arc::new(store.clone())).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM portal_backup_objects")
        .fetch_one(store.pool())
        .await
        .expect("count");
    println!("postgres  rows in the table afterwards: {rows}");
}
