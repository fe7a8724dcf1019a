//! Store-wide work at KMS speed on every kind of store: `verify --store-wide`
//! (`Flow::verify_store_wide`) and `rotate` (`Flow::rotate_with`) of [`BACKUPS`] backups (one
//! client each, two shares sealed under one data key; [`S3_BACKUPS`] on moto's S3) on the file
//! store, PostgreSQL and S3 (moto), behind local KEKs with [`LATENCY_MS`] ms added to every
//! call, at concurrency 1 and 64; the same on the file store behind moto's KMS (aws-sdk-kms),
//! for information; `migrate` file → PostgreSQL at concurrency 64; and the peak RSS of a
//! store-wide verify of 10,000 and 100,000 backups (seeded on tmpfs, each measured in a
//! child process).
//!
//! Each level is set against its ideal, min(KMS alone, store alone), both measured alone in
//! the same run at the same concurrency:
//!
//! * KMS alone: backups a second of the KMS calls alone (verify and migrate: one unwrap;
//!   rotate: an unwrap, then a wrap under another key), next to the nominal bound
//!   concurrency / 5 ms (/ 10 ms to rotate);
//! * store alone, as the issue defines it: verify lists each client and reads its two
//!   objects; rotate overwrites each client's two objects (writes only); migrate reads the
//!   file store and creates in a fresh PostgreSQL database;
//! * the command's whole store work alone, beside it: rotate also lists, reads each object
//!   with its version, writes it back compare-and-swap, and its proof lists and reads every
//!   object again; migrate also reads back what it created.
//!
//! Concurrency 1 runs on the first [`C1_BACKUPS`] backups (a rate; 10,000 at 5 ms a call would
//! take minutes per store), concurrency 64 on all of them. PostgreSQL and moto are started on
//! loopback (`test-services`); moto is a Python development server, so its rows measure the
//! client plus an emulator, not S3 or KMS.
//!
//! Prints a Markdown table (lines starting with `|`) and one JSON line for `cargo xtask bench
//! fleet`. `cargo test --benches` runs a smoke-sized pass. To measure a part while
//! profiling: `FLEET_BENCH_PARTS=file,postgres` and `FLEET_BENCH_BACKUPS=N`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::print_stdout,
    missing_docs
)] // a benchmark program: a broken fixture should panic; counts are small

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::envelope::aws::AwsKms;
use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::testing::{CallCounter, HookedKek, Latency};
use backup_flow::envelope::{EncryptionContext, KeyEncryptionKey, Keyring};
use backup_flow::migrate::{Migration, Moved};
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::object::ObjectStoreStore;
use backup_flow::storage::postgres::PostgresStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions};
use backup_flow::{Finding, Flow};
use futures_util::StreamExt as _;
use futures_util::stream;

// One backup as `backup` stores it; shared with the tests.
#[path = "../tests/support/backups.rs"]
mod backups;
use backups::{CURVES, store_backup};

const LATENCY_MS: u64 = 5;
/// The CLI's bound on Tokio's blocking threads (`crates/cli/src/main.rs`).
const MAX_BLOCKING_THREADS: usize = 64;
const BACKUPS: usize = 10_000;
const C1_BACKUPS: usize = 1_000;
/// Runs of each concurrency-64 level on the file store, PostgreSQL and moto's S3, whose rates
/// vary from run to run on a shared machine (checkpoints, writeback, a Python server's
/// pauses): the median is reported.
const C64_RUNS: usize = 3;
/// Backups on moto's S3, whose listing of a prefix walks every key of the bucket (a client's
/// listing takes about 30 ms at 10,000 backups): the measurements that list one client at a
/// time (the store alone, as the issue defines it) would take most of an hour at 10,000.
const S3_BACKUPS: usize = 2_000;
const RSS_SIZES: [usize; 2] = [10_000, 100_000];
/// Set in the child process that measures peak RSS: `<store dir>`.
const RSS_CHILD_ENV: &str = "FLEET_BENCH_RSS_STORE";
/// The key file of the RSS child.
const RSS_KEY_ENV: &str = "FLEET_BENCH_RSS_KEY";
/// Optional, to measure a part while profiling: the parts to run, comma-separated, of
/// `file`, `postgres`, `s3`, `moto-kms`, `migrate`, `rss` (all when unset).
const PARTS_ENV: &str = "FLEET_BENCH_PARTS";
/// Optional: backups per store instead of [`BACKUPS`].
const BACKUPS_ENV: &str = "FLEET_BENCH_BACKUPS";
/// Optional: backups on moto's S3 instead of [`S3_BACKUPS`] (at most the backups per store),
/// to measure S3 at the 10,000 once.
const S3_BACKUPS_ENV: &str = "FLEET_BENCH_S3_BACKUPS";
/// Optional: runs of each concurrency-64 level instead of [`C64_RUNS`] (1 to 3).
const RUNS_ENV: &str = "FLEET_BENCH_RUNS";

/// An optional count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |n| {
        n.parse()
            .unwrap_or_else(|_| panic!("{name} is not a count: {n:?}"))
    })
}

/// Whether `part` is to run (see [`PARTS_ENV`]).
fn part(name: &str) -> bool {
    std::env::var(PARTS_ENV).map_or(true, |parts| parts.split(',').any(|p| p.trim() == name))
}

/// Three KEKs: the one the backups are sealed under, and two to rotate to; one count of their
/// calls, and one latency added to every call of each (a KMS round trip) while the KMS is
/// being measured (`latency_ms`: 5 for the local KEKs, 0 for moto's KMS, which has its own).
struct Keks {
    all: [Arc<HookedKek>; 3],
    latency: Arc<Latency>,
    latency_ms: u64,
    calls: Arc<CallCounter>,
}

impl Keks {
    /// Local KEKs with [`LATENCY_MS`] added to each call.
    fn local() -> Self {
        let keks =
            [0, 1, 2].map(|_| Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
        Self::hooked(keks, LATENCY_MS)
    }

    /// Three keys of moto's KMS through `envelope::aws::AwsKms` (aws-sdk-kms), nothing added.
    async fn moto(endpoint: &str) -> Self {
        let client = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new("us-east-1"))
                .endpoint_url(endpoint)
                .credentials_provider(aws_sdk_kms::config::Credentials::new(
                    "testing", "testing", None, None, "bench",
                ))
                .build(),
        );
        let mut keks = Vec::new();
        for _ in 0..3 {
            let created = client.create_key().send().await.unwrap();
            let arn = created.key_metadata().unwrap().arn().unwrap().to_owned();
            let kek = AwsKms::builder()
                .with_key_id(arn)
                .with_client(client.clone())
                .build()
                .await
                .unwrap();
            keks.push(Arc::new(kek) as Arc<dyn KeyEncryptionKey>);
        }
        let keks: [Arc<dyn KeyEncryptionKey>; 3] = keks.try_into().unwrap();
        Self::hooked(keks, 0)
    }

    fn hooked(keks: [Arc<dyn KeyEncryptionKey>; 3], latency_ms: u64) -> Self {
        let (latency, calls) = (
            Arc::new(Latency::default()),
            Arc::new(CallCounter::default()),
        );
        let all = keks.map(|kek| {
            let kek = HookedKek::new(kek)
                .with_hook(Arc::clone(&calls))
                .with_hook(Arc::clone(&latency));
            Arc::new(kek)
        });
        Self {
            all,
            latency,
            latency_ms,
            calls,
        }
    }

    /// Every call takes the KMS's latency from now on.
    fn latency_on(&self) {
        self.latency.set(Duration::from_millis(self.latency_ms));
    }
    /// No latency added (to seed, or to measure the store alone).
    fn latency_off(&self) {
        self.latency.set(Duration::ZERO);
    }
    /// concurrency ÷ the latency added to each of `calls_in_turn` calls (`None` for a KMS
    /// with its own latency).
    fn nominal(&self, concurrency: usize, calls_in_turn: u64) -> Option<f64> {
        (self.latency_ms > 0)
            .then(|| concurrency as f64 * 1000.0 / (calls_in_turn * self.latency_ms) as f64)
    }
    fn ring(&self, which: &[usize]) -> Keyring {
        which.iter().fold(Keyring::new(), |ring, &i| {
            ring.with(Arc::clone(&self.all[i]) as Arc<dyn KeyEncryptionKey>)
        })
    }
    /// Calls since the last reset, and resets.
    fn take_calls(&self) -> usize {
        let calls = self.calls.total();
        self.calls.reset();
        calls
    }
}

/// `backups` clients of one backup each, sealed with `keyring` at concurrency 64.
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

/// Waits until what earlier measurements wrote is on disk (`sync`), so that a measurement
/// does not pay for the writeback of the one before it.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Items a second of `work` over each item, `concurrency` items at once.
async fn rate<'a, T: Sync, F, Fut>(clients: &'a [T], concurrency: usize, work: F) -> f64
where
    F: FnMut(&'a T) -> Fut,
    Fut: Future<Output = ()>,
{
    settle();
    let started = Instant::now();
    stream::iter(clients)
        .for_each_concurrent(concurrency, work)
        .await;
    clients.len() as f64 / started.elapsed().as_secs_f64()
}

/// The store alone, reading: list each client and read its objects.
async fn read_rate(store: &dyn BackupStore, clients: &[String], concurrency: usize) -> f64 {
    rate(clients, concurrency, |client| async move {
        for key in store.list(client).await.unwrap() {
            store.get(&key).await.unwrap();
        }
    })
    .await
}

/// The store alone, writing: overwrite each client's objects with what they hold.
async fn write_rate(store: &dyn BackupStore, clients: &[String], concurrency: usize) -> f64 {
    let bodies: Vec<(BackupKey, bytes::Bytes)> = stream::iter(clients)
        .then(|client| async move {
            let mut out = Vec::new();
            for key in store.list(client).await.unwrap() {
                let body = store.get(&key).await.unwrap();
                out.push((key, body));
            }
            out
        })
        .flat_map(stream::iter)
        .collect()
        .await;
    let per_client = CURVES.len();
    settle();
    let started = Instant::now();
    stream::iter(bodies.chunks(per_client))
        .for_each_concurrent(concurrency, |chunk| async move {
            for (key, body) in chunk {
                store
                    .put(key, body.clone(), PutOptions::overwrite())
                    .await
                    .unwrap();
            }
        })
        .await;
    clients.len() as f64 / started.elapsed().as_secs_f64()
}

/// The store alone, doing a rotation's store work as rotate does it: list each client, read
/// each object with its version, write it back in its place (compare-and-swap where the store
/// can), then the proof (list again, read each object again). Where the store takes batches
/// (`batch_size` > 1: PostgreSQL), a batch of clients at a time through `read_clients` and
/// `put_many`, with as many batches in flight as rotate keeps.
async fn rotate_store_rate(store: &dyn BackupStore, clients: &[String], concurrency: usize) -> f64 {
    let cas = store.capabilities().compare_and_swap;
    batched_rate(store.batch_size(), clients, concurrency, |ids| async move {
        let mut puts = Vec::new();
        for objects in store.read_clients(ids).await {
            for (key, object) in objects.unwrap() {
                let object = object.unwrap();
                let options = match (cas, object.version) {
                    (true, Some(version)) => PutOptions::update(version),
                    _ => PutOptions::overwrite(),
                };
                puts.push((key, object.body, options));
            }
        }
        for put in store.put_many(puts).await {
            put.unwrap();
        }
        // The proof, as rotate reads it: one client at a time, or the batch in one call.
        if store.batch_size() <= 1 {
            for client in ids {
                for key in store.list(client).await.unwrap() {
                    store.get(&key).await.unwrap();
                }
            }
        } else {
            for objects in store.read_clients(ids).await {
                for (_, object) in objects.unwrap() {
                    object.unwrap();
                }
            }
        }
    })
    .await
}

/// The store alone, doing the least store work any rotation must: find each client's objects,
/// read each once, write it back once (an overwrite: no compare-and-swap, no proof), in the
/// store's batches where it takes them. A rotation has to read an object before it can
/// rewrap it, so this, not the writes alone, is the most any rotation can reach.
async fn least_rotation_rate(
    store: &dyn BackupStore,
    clients: &[String],
    concurrency: usize,
) -> f64 {
    batched_rate(store.batch_size(), clients, concurrency, |ids| async move {
        let mut puts = Vec::new();
        if store.batch_size() <= 1 {
            for client in ids {
                for key in store.list(client).await.unwrap() {
                    let body = store.get(&key).await.unwrap();
                    puts.push((key, body, PutOptions::overwrite()));
                }
            }
        } else {
            for objects in store.read_clients(ids).await {
                for (key, object) in objects.unwrap() {
                    puts.push((key, object.unwrap().body, PutOptions::overwrite()));
                }
            }
        }
        for put in store.put_many(puts).await {
            put.unwrap();
        }
    })
    .await
}

/// The store alone, doing a drill's store work as verify does it: [`read_rate`], or where
/// the store takes batches, a batch of clients at a time through `read_clients`.
async fn drill_store_rate(store: &dyn BackupStore, clients: &[String], concurrency: usize) -> f64 {
    if store.batch_size() <= 1 {
        return read_rate(store, clients, concurrency).await;
    }
    batched_rate(store.batch_size(), clients, concurrency, |ids| async move {
        for objects in store.read_clients(ids).await {
            for (_, object) in objects.unwrap() {
                object.unwrap();
            }
        }
    })
    .await
}

/// Clients a second of `work` over batches of the store's `batch_size` clients, with as many
/// batches in flight as store-wide commands keep.
async fn batched_rate<'a, F, Fut>(
    batch: usize,
    clients: &'a [String],
    concurrency: usize,
    mut work: F,
) -> f64
where
    F: FnMut(&'a [String]) -> Fut,
    Fut: Future<Output = ()>,
{
    let batch = batch.clamp(1, concurrency);
    let in_flight = match batch {
        1 => concurrency,
        _ => (2 * concurrency).div_ceil(batch) + 1,
    };
    let batches: Vec<&[String]> = clients.chunks(batch).collect();
    let achieved = rate(&batches, in_flight, |ids: &&'a [String]| work(ids)).await;
    achieved * clients.len() as f64 / batches.len() as f64
}

/// The KMS alone, with its latency: backups a second of one unwrap each (and, to rotate, a
/// wrap under another key after it), `concurrency` backups at once, nothing else.
async fn kms_rate(keks: &Keks, backups: usize, concurrency: usize, rotate: bool) -> f64 {
    let context = EncryptionContext::new();
    keks.latency_off();
    let (_, wrapped) = keks.all[0].generate_data_key(&context).await.unwrap();
    keks.latency_on();
    let items: Vec<usize> = (0..backups).collect();
    let (wrapped, context) = (&wrapped, &context);
    let achieved = rate(&items, concurrency, |_| async move {
        let key = keks.all[0].unwrap(wrapped, context).await.unwrap();
        if rotate {
            keks.all[1].wrap(&key, context).await.unwrap();
        }
    })
    .await;
    keks.take_calls();
    achieved
}

fn flow(store: Arc<dyn BackupStore>, keyring: Keyring, state: &Path) -> Flow {
    // Store-wide work takes no Portal role.
    Flow::new(keyring, store, state).unwrap()
}

/// One measured level.
struct Level {
    store: &'static str,
    command: &'static str,
    concurrency: usize,
    backups: usize,
    achieved: f64,
    /// concurrency ÷ the nominal latency (÷ twice it to rotate: an unwrap, then a wrap);
    /// `None` for moto's KMS.
    kms_nominal: Option<f64>,
    /// The KMS alone at the same concurrency, measured in the same run.
    kms_alone: f64,
    /// The store alone as the issue defines it: reads for verify, writes for rotate.
    store_alone: f64,
    /// The store alone doing all of the command's store work (for rotate: the reads, the
    /// writes and the proof's reads; for verify the same as `store_alone`).
    store_work_alone: f64,
    /// Rotate only: the store alone doing the least any rotation must (each object read
    /// once and written once).
    least_rotation_alone: Option<f64>,
    kms_calls_per_backup: f64,
    /// Runs this level is the median of (each run measures the KMS alone, the store alone
    /// and the command in turn).
    runs: usize,
}

impl Level {
    /// The median of each rate of `runs` (measured in turn, of one command, store and
    /// concurrency).
    fn median(mut runs: Vec<Self>) -> Self {
        fn median(values: impl Iterator<Item = f64>) -> f64 {
            let mut values: Vec<f64> = values.collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        }
        let n = runs.len();
        let achieved = median(runs.iter().map(|l| l.achieved));
        let kms_alone = median(runs.iter().map(|l| l.kms_alone));
        let store_alone = median(runs.iter().map(|l| l.store_alone));
        let store_work_alone = median(runs.iter().map(|l| l.store_work_alone));
        let least = runs[0]
            .least_rotation_alone
            .map(|_| median(runs.iter().filter_map(|l| l.least_rotation_alone)));
        let calls = median(runs.iter().map(|l| l.kms_calls_per_backup));
        let mut level = runs.swap_remove(0);
        level.achieved = achieved;
        level.kms_alone = kms_alone;
        level.store_alone = store_alone;
        level.store_work_alone = store_work_alone;
        level.least_rotation_alone = least;
        level.kms_calls_per_backup = calls;
        level.runs = n;
        level
    }

    /// min(KMS alone, store alone): the ideal, with the KMS measured alone.
    fn ideal(&self) -> f64 {
        self.kms_alone.min(self.store_alone)
    }
    /// min(KMS alone, the store alone doing all of the command's store work).
    fn work_ideal(&self) -> f64 {
        self.kms_alone.min(self.store_work_alone)
    }
    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.0}{} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} |",
            self.command,
            self.store,
            self.concurrency,
            self.backups,
            self.runs,
            self.kms_calls_per_backup,
            self.kms_alone,
            self.kms_nominal
                .map_or(String::new(), |nominal| format!(" ({nominal:.0})")),
            self.store_alone,
            self.store_work_alone,
            self.achieved,
            self.ideal(),
            self.achieved / self.ideal(),
            self.achieved / self.work_ideal(),
        )
    }
    /// The row of the table of what any rotation can reach; `None` but for rotate.
    fn least_row(&self) -> Option<String> {
        let least = self.least_rotation_alone?;
        Some(format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} |",
            self.store,
            self.concurrency,
            self.store_alone,
            least,
            least / self.store_alone,
            self.achieved,
            self.achieved / self.ideal(),
            self.achieved / self.kms_alone.min(least),
        ))
    }
    fn json(&self) -> String {
        format!(
            "{{\"command\":\"{}\",\"store\":\"{}\",\"concurrency\":{},\"backups\":{},\"runs\":{},\"kmsCallsPerBackup\":{:.3},\"kmsNominal\":{:.1},\"kmsAlone\":{:.1},\"storeAlone\":{:.1},\"storeWorkAlone\":{:.1},\"leastRotationAlone\":{},\"achieved\":{:.1},\"ideal\":{:.1},\"ratio\":{:.3},\"workRatio\":{:.3}}}",
            self.command,
            self.store,
            self.concurrency,
            self.backups,
            self.runs,
            self.kms_calls_per_backup,
            self.kms_nominal.unwrap_or(0.0),
            self.kms_alone,
            self.store_alone,
            self.store_work_alone,
            self.least_rotation_alone
                .map_or("null".to_owned(), |least| format!("{least:.1}")),
            self.achieved,
            self.ideal(),
            self.achieved / self.ideal(),
            self.achieved / self.work_ideal(),
        )
    }
}

/// The header of the table [`Level::least_row`] prints.
const LEAST_HEADER: &str = "| rotate on | concurrency | writes alone/s (the issue's store alone) | least rotation store work alone/s | the most any rotation can reach, vs the issue's ideal (least / writes) | achieved/s | achieved/ideal | achieved/min(KMS alone, least rotation store work alone) |\n|---|---:|---:|---:|---:|---:|---:|---:|";

/// The header of the table [`Level::row`] prints.
const TABLE_HEADER: &str = "| command | store | concurrency | backups | runs (median) | KMS calls/backup | KMS alone/s (nominal) | store alone/s | command's store work alone/s | achieved/s | ideal/s | achieved/ideal | achieved/min(KMS alone, store work alone) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

async fn verify_level(
    name: &'static str,
    store: &Arc<dyn BackupStore>,
    keks: &Keks,
    keyring: Keyring,
    clients: &[String],
    concurrency: usize,
    state: &Path,
) -> Level {
    let store_alone = read_rate(store.as_ref(), clients, concurrency).await;
    let store_work_alone = drill_store_rate(store.as_ref(), clients, concurrency).await;
    let kms_alone = kms_rate(keks, clients.len(), concurrency, false).await;
    let flow = flow(Arc::clone(store), keyring, state);
    keks.take_calls();
    settle();
    let started = Instant::now();
    let mut shares = 0usize;
    let mut drill = std::pin::pin!(flow.verify_store_wide(clients, concurrency));
    while let Some(client) = drill.next().await {
        for share in client.shares.unwrap() {
            assert_eq!(share.result.unwrap().finding, Finding::Ok);
            shares += 1;
        }
    }
    let achieved = clients.len() as f64 / started.elapsed().as_secs_f64();
    assert_eq!(shares, clients.len() * CURVES.len());
    Level {
        store: name,
        command: "verify",
        concurrency,
        backups: clients.len(),
        achieved,
        kms_nominal: keks.nominal(concurrency, 1),
        kms_alone,
        store_alone,
        store_work_alone,
        least_rotation_alone: None,
        kms_calls_per_backup: keks.take_calls() as f64 / clients.len() as f64,
        runs: 1,
    }
}

#[allow(clippy::too_many_arguments)]
async fn rotate_level(
    name: &'static str,
    store: &Arc<dyn BackupStore>,
    keks: &Keks,
    from: Keyring,
    to: Keyring,
    clients: &[String],
    concurrency: usize,
    state: &Path,
) -> Level {
    let store_alone = write_rate(store.as_ref(), clients, concurrency).await;
    let least = least_rotation_rate(store.as_ref(), clients, concurrency).await;
    let store_work_alone = rotate_store_rate(store.as_ref(), clients, concurrency).await;
    let kms_alone = kms_rate(keks, clients.len(), concurrency, true).await;
    let flow = flow(Arc::clone(store), from, state);
    keks.take_calls();
    settle();
    let started = Instant::now();
    let report = flow.rotate_with(&to, clients, concurrency).await.unwrap();
    let achieved = clients.len() as f64 / started.elapsed().as_secs_f64();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.rewrapped, clients.len() * CURVES.len());
    // One call resolves the target's current key, once per run.
    let calls = keks.take_calls().saturating_sub(to.keks().len());
    Level {
        store: name,
        command: "rotate",
        concurrency,
        backups: clients.len(),
        achieved,
        kms_nominal: keks.nominal(concurrency, 2),
        kms_alone,
        store_alone,
        store_work_alone,
        least_rotation_alone: Some(least),
        kms_calls_per_backup: calls as f64 / clients.len() as f64,
        runs: 1,
    }
}

/// Verify and rotate at each level on one store; returns the levels.
async fn store_levels(
    name: &'static str,
    store: Arc<dyn BackupStore>,
    keks: Keks,
    backups: usize,
    c1_backups: usize,
    c64_runs: usize,
) -> (Vec<Level>, Keks, Vec<String>) {
    keks.latency_off();
    let seeded = Instant::now();
    let clients = seed(store.as_ref(), &keks.ring(&[0]), backups).await;
    eprintln!(
        "{name}: seeded {backups} backups in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let state = tempfile::tempdir().unwrap();
    let mut levels = Vec::new();
    let few = &clients[..c1_backups.min(clients.len())];
    keks.latency_on();
    let all_keys = [0, 1, 2];
    for (concurrency, subset, runs) in [(1, few, 1), (64, &clients[..], c64_runs)] {
        let mut measured = Vec::new();
        for _ in 0..runs {
            let keyring = keks.ring(&all_keys);
            let level = verify_level(
                name,
                &store,
                &keks,
                keyring,
                subset,
                concurrency,
                state.path(),
            );
            measured.push(level.await);
        }
        levels.push(Level::median(measured));
        eprintln!("{}", levels.last().unwrap().row());
    }
    // Rotate the few 0 → 1 at concurrency 1; then everything to 2, then 0, then 1 (each run
    // rewraps every backup) at 64.
    let targets_c64 = [2, 0, 1];
    for (concurrency, subset, targets) in [
        (1, few, &[1][..]),
        (64, &clients[..], &targets_c64[..c64_runs]),
    ] {
        let mut measured = Vec::new();
        for &to in targets {
            let (from, to) = (keks.ring(&all_keys), keks.ring(&[to]));
            let level = rotate_level(
                name,
                &store,
                &keks,
                from,
                to,
                subset,
                concurrency,
                state.path(),
            );
            measured.push(level.await);
        }
        levels.push(Level::median(measured));
        eprintln!("{}", levels.last().unwrap().row());
    }
    (levels, keks, clients)
}

/// The store alone, copying: each client's objects read from `from` and created in a fresh
/// database `name`, one at a time, 64 clients at once; or, when `read_back`, migrate's whole
/// store work as it makes it (in batches where both stores take them), read-back included.
async fn copy_rate(
    from: &dyn BackupStore,
    clients: &[String],
    pg: &test_services::postgres::Postgres,
    name: &str,
    read_back: bool,
) -> f64 {
    let (_, url) = pg.create_database(name);
    let to = PostgresStore::connect(&url).await.unwrap();
    if !read_back {
        return rate(clients, 64, |client| {
            let to = &to;
            async move {
                for key in from.list(client).await.unwrap() {
                    let body = from.get(&key).await.unwrap();
                    to.put(&key, body, PutOptions::create()).await.unwrap();
                }
            }
        })
        .await;
    }
    // The command's store work, made as migrate makes it where both stores take batches: a
    // batch of clients read from the source, created on the target and read back, one call
    // each.
    let batch = from.batch_size().min(to.batch_size());
    let to = &to;
    batched_rate(batch, clients, 64, |ids| async move {
        let mut puts = Vec::new();
        for objects in from.read_clients(ids).await {
            for (key, object) in objects.unwrap() {
                puts.push((key, object.unwrap().body, PutOptions::create()));
            }
        }
        for put in to.put_many(puts).await {
            put.unwrap();
        }
        for objects in to.read_clients(ids).await {
            for (_, object) in objects.unwrap() {
                object.unwrap();
            }
        }
    })
    .await
}

/// `migrate` of the file store (as the rotations left it) to a fresh PostgreSQL database,
/// against the copy alone into other fresh databases.
async fn migrate_level(
    from: &Arc<dyn BackupStore>,
    keks: &Keks,
    clients: &[String],
    pg: &test_services::postgres::Postgres,
) -> Level {
    let concurrency = 64;
    keks.latency_off();
    let copy_alone = copy_rate(from.as_ref(), clients, pg, "fleet_copy", false).await;
    // Migrate's store work: the copy, and the read-back of what was created (its drill).
    let work_alone = copy_rate(from.as_ref(), clients, pg, "fleet_copy_read_back", true).await;
    keks.latency_on();
    let kms_alone = kms_rate(keks, clients.len(), concurrency, false).await;
    let (_, url) = pg.create_database("fleet_migrate");
    let to: Arc<dyn BackupStore> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let migration = Migration::new(keks.ring(&[0, 1, 2]), Arc::clone(from), to).unwrap();
    keks.take_calls();
    settle();
    let started = Instant::now();
    let mut moved = 0usize;
    let mut done = std::pin::pin!(migration.run(from.stream_clients(), concurrency));
    while let Some(client) = done.next().await {
        for object in client.unwrap().objects.unwrap() {
            assert_eq!(object.result.unwrap(), Moved::Moved);
            moved += 1;
        }
    }
    let achieved = clients.len() as f64 / started.elapsed().as_secs_f64();
    assert_eq!(moved, clients.len() * CURVES.len());
    Level {
        store: "file → postgres",
        command: "migrate",
        concurrency,
        backups: clients.len(),
        achieved,
        kms_nominal: keks.nominal(concurrency, 1),
        kms_alone,
        store_alone: copy_alone,
        store_work_alone: work_alone,
        least_rotation_alone: None,
        kms_calls_per_backup: keks.take_calls() as f64 / clients.len() as f64,
        runs: 1,
    }
}

/// An S3 store over a new bucket on moto.
fn s3_store(moto: &test_services::moto::Moto) -> Arc<dyn BackupStore> {
    let bucket = format!("fleet-bench-{}", std::process::id());
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", moto.port)).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        moto.port
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_bucket_name(&bucket)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    // As `ObjectStoreStore::from_url` builds an `s3://` store: S3 lists in key order.
    Arc::new(
        ObjectStoreStore::new(Arc::new(s3), "backups")
            .unwrap()
            .with_name("s3")
            .with_sorted_listing(),
    )
}

/// A runtime as the CLI builds one: multi-threaded, at most
/// [`MAX_BLOCKING_THREADS`] threads for blocking file I/O.
fn cli_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .unwrap()
}

/// Peak RSS (kB) of this process, from `/proc/self/status`.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The RSS child: a store-wide verify of the store at `dir` as the CLI runs it (clients
/// streamed from the store's listing, concurrency 64, a count kept per line), then its peak
/// RSS on stdout.
fn rss_child(dir: &str, key: &str) {
    let runtime = cli_runtime();
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(dir).unwrap());
    let keyring = Keyring::new()
        .with(Arc::new(LocalKek::from_file(Path::new(key)).unwrap()) as Arc<dyn KeyEncryptionKey>);
    let state = tempfile::tempdir().unwrap();
    let flow = flow(Arc::clone(&store), keyring, state.path());
    let ok = runtime.block_on(async {
        let mut ok = 0usize;
        let mut drill = std::pin::pin!(flow.verify_streamed(store.stream_clients(), 64));
        while let Some(client) = drill.next().await {
            for share in client.shares.unwrap() {
                if share.result.unwrap().finding == Finding::Ok {
                    ok += 1;
                }
            }
        }
        ok
    });
    println!("{ok} {}", peak_rss_kb());
}

/// Seeds `backups` on tmpfs and measures a verify child's peak RSS: `(shares ok, kB)`.
fn rss_of(runtime: &tokio::runtime::Runtime, backups: usize) -> (usize, u64) {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let key = base.path().join("kek");
    let kek = LocalKek::generate_file(&key).unwrap();
    let dir = base.path().join("store");
    let store = FsStore::new(&dir).unwrap();
    let keyring = Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>);
    runtime.block_on(seed(&store, &keyring, backups));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(RSS_CHILD_ENV, &dir)
        .env(RSS_KEY_ENV, &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace();
    let ok = parts.next().unwrap().parse().unwrap();
    let kb = parts.next().unwrap().parse().unwrap();
    (ok, kb)
}

fn main() {
    if let (Ok(dir), Ok(key)) = (std::env::var(RSS_CHILD_ENV), std::env::var(RSS_KEY_ENV)) {
        return rss_child(&dir, &key);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: a smoke pass.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (backups, c1_backups, rss_sizes) = if smoke {
        (40, 8, vec![20, 40])
    } else {
        let backups = env_count(BACKUPS_ENV, BACKUPS);
        (backups, C1_BACKUPS.min(backups), RSS_SIZES.to_vec())
    };
    let s3_backups = env_count(S3_BACKUPS_ENV, S3_BACKUPS).min(backups);
    // Rotations at concurrency 64 go to keys 2, 0, 1 in turn: at most three runs.
    let c64_runs = env_count(RUNS_ENV, C64_RUNS).clamp(1, 3);
    let runtime = cli_runtime();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);

    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let mut levels = Vec::new();
    // Migrate copies the file store as its rotations left it; or, with migrate alone, as
    // seeded.
    let file_run = if part("file") {
        let (file_levels, keks, clients) = runtime.block_on(store_levels(
            "file",
            Arc::clone(&file),
            Keks::local(),
            backups,
            c1_backups,
            c64_runs,
        ));
        levels.extend(file_levels);
        Some((keks, clients))
    } else if part("migrate") {
        let keks = Keks::local();
        let clients = runtime.block_on(seed(file.as_ref(), &keks.ring(&[0]), backups));
        Some((keks, clients))
    } else {
        None
    };

    let pg = test_services::postgres::shared();
    if let Some(pg) = pg.filter(|_| part("postgres")) {
        let (_, url) = pg.create_database("fleet_store");
        let store: Arc<dyn BackupStore> =
            Arc::new(runtime.block_on(PostgresStore::connect(&url)).unwrap());
        levels.extend(
            runtime
                .block_on(store_levels(
                    "postgres",
                    store,
                    Keks::local(),
                    backups,
                    c1_backups,
                    c64_runs,
                ))
                .0,
        );
    }
    if let Some(moto) = test_services::moto::shared().filter(|_| part("s3")) {
        let store = s3_store(moto);
        // moto lists a prefix by walking every key of the bucket: fewer backups there.
        let backups = s3_backups;
        levels.extend(
            runtime
                .block_on(store_levels(
                    "s3 (moto)",
                    store,
                    Keks::local(),
                    backups,
                    c1_backups,
                    c64_runs,
                ))
                .0,
        );
    }
    if let Some(moto) = test_services::moto::shared().filter(|_| part("moto-kms")) {
        let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
        levels.extend(
            runtime
                .block_on(async {
                    let keks = Keks::moto(&moto.endpoint).await;
                    store_levels("file, moto's KMS", store, keks, backups, c1_backups, 1).await
                })
                .0,
        );
    }
    if let (Some(pg), Some((keks, clients))) = (pg.filter(|_| part("migrate")), &file_run) {
        let level = runtime.block_on(migrate_level(&file, keks, clients, pg));
        eprintln!("{}", level.row());
        levels.push(level);
    }

    let rss: Vec<(usize, usize, u64)> = rss_sizes
        .iter()
        .filter(|_| part("rss"))
        .map(|&n| {
            let (ok, kb) = rss_of(&runtime, n);
            assert_eq!(ok, n * CURVES.len());
            eprintln!("rss: {n} backups, peak {kb} kB");
            (n, ok, kb)
        })
        .collect();

    println!(
        "store-wide work, {backups} backups (2 shares each; concurrency 1 on the first {c1_backups}), \
         local KEKs + {LATENCY_MS} ms per call; {cores} cores, load average {load} at the start"
    );
    println!("{TABLE_HEADER}");
    for level in &levels {
        println!("{}", level.row());
    }
    println!();
    println!("{LEAST_HEADER}");
    for row in levels.iter().filter_map(Level::least_row) {
        println!("{row}");
    }
    println!();
    println!("| store-wide verify | backups | peak RSS | vs the smallest |");
    println!("|---|---:|---:|---:|");
    let base = rss.first().map_or(1, |r| r.2.max(1));
    for (n, _, kb) in &rss {
        println!(
            "| file store on tmpfs, concurrency 64 | {n} | {:.1} MiB | {:.2}x |",
            *kb as f64 / 1024.0,
            *kb as f64 / base as f64
        );
    }
    let json_levels: Vec<String> = levels.iter().map(Level::json).collect();
    let json_rss: Vec<String> = rss
        .iter()
        .map(|(n, _, kb)| format!("{{\"backups\":{n},\"peakRssKb\":{kb}}}"))
        .collect();
    println!(
        "{{\"backups\":{backups},\"s3Backups\":{},\"c1Backups\":{c1_backups},\"latencyMs\":{LATENCY_MS},\"cores\":{cores},\"loadAverage\":{load},\"levels\":[{}],\"rss\":[{}]}}",
        s3_backups,
        json_levels.join(","),
        json_rss.join(",")
    );
}
