//! Put/get latency and throughput of the stores in this crate, on this machine:
//! `cargo run --release -p storage --example store_latency --features fs`.
//! (Loopback figures for networked stores come with their backends.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::{BackupKey, BackupStore, PutOptions, fs::FsStore, memory::MemoryStore};

const SMALL: usize = 1024;
const OPS: usize = 300;
const LARGE: usize = 5 * 1024 * 1024;
const LARGE_OPS: usize = 8;

fn key(i: usize) -> BackupKey {
    BackupKey::client_backup("cl_bench", format!("bsp_{i}"), "SECP256K1").expect("a valid key")
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: usize| {
        let i = (samples.len().saturating_sub(1)).saturating_mul(q) / 100;
        samples.get(i).copied().unwrap_or_default()
    };
    format!("p50 {:>9.1?}  p99 {:>9.1?}", at(50), at(99))
}

async fn timed<F: Future<Output = Result<(), storage::StorageError>>>(f: F) -> Duration {
    let started = Instant::now();
    f.await.expect("store operation");
    started.elapsed()
}

async fn bench(store: &dyn BackupStore) {
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
    let large = Bytes::from(vec![9u8; LARGE]);
    let big = key(OPS);
    let started = Instant::now();
    for _ in 0..LARGE_OPS {
        store
            .put(&big, large.clone(), PutOptions::overwrite())
            .await
            .expect("large put");
    }
    let put_mib_s = (LARGE * LARGE_OPS) as f64 / 1048576.0 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..LARGE_OPS {
        store.get(&big).await.expect("large get");
    }
    let get_mib_s = (LARGE * LARGE_OPS) as f64 / 1048576.0 / started.elapsed().as_secs_f64();
    for i in 0..=OPS {
        store.delete(&key(i)).await.expect("delete");
    }
    println!(
        "{:<7} put 1 KiB create  {}\n{:<7} put 1 KiB overwr. {}\n{:<7} get 1 KiB         {}\n\
         {:<7} 5 MiB bodies: put {put_mib_s:.0} MiB/s, get {get_mib_s:.0} MiB/s; left behind: {}",
        store.name(),
        summary(create),
        "",
        summary(overwrite),
        "",
        summary(get),
        "",
        store.list("cl_bench").await.expect("list").len(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench(&MemoryStore::new()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    bench(&FsStore::new(dir.path()).expect("a store")).await;
}
