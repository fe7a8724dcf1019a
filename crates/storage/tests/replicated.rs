//! `ReplicatedStore`: the conformance kit over memory, file-system and Portal-like replicas
//! (directly and through `Arc<dyn BackupStore>`), quorum writes with a failing, flaky or slow
//! replica, read fall-through, create-only across replicas, repair and its conflicts, and a
//! property test of the create-only guarantees under random faults.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::clone_on_ref_ptr,
    reason = "test fixtures and helpers outside #[test] fns; Arc clones of stores are plain here"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use storage::conformance::check_store;
use storage::memory::MemoryStore;
use storage::replicated::{BuildError, ReplicatedStore, ReplicationError};
use storage::{BackupKey, BackupStore, BackupStoreExt, Capabilities, PutOptions, StorageError};

/// What a [`Faulty`] store does to each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Forwards every call.
    Healthy,
    /// Fails every call, retryably (`Unavailable`), before reaching the inner store.
    Down,
    /// Fails every call, not retryably (`Backend`).
    Broken,
    /// Fails puts only (reads work): a replica that lags behind.
    RefusesWrites,
    /// Sleeps before each call.
    Slow(Duration),
}

/// A fault-injecting wrapper: a fixed [`Fault`] that can be changed at run time, or a
/// pattern of which calls fail (call `i` fails when `pattern[i % len]`).
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn BackupStore>,
    fault: Mutex<Fault>,
    pattern: Vec<bool>,
    calls: AtomicUsize,
    /// Calls in their `Slow` sleep now, and the most at once; may be shared by several.
    gauge: Arc<Gauge>,
}

#[derive(Debug, Default)]
struct Gauge {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Faulty {
    fn new(inner: Arc<dyn BackupStore>, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fault: Mutex::new(fault),
            pattern: Vec::new(),
            calls: AtomicUsize::new(0),
            gauge: Arc::default(),
        })
    }

    fn flaky(inner: Arc<dyn BackupStore>, pattern: Vec<bool>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fault: Mutex::new(Fault::Healthy),
            pattern,
            calls: AtomicUsize::new(0),
            gauge: Arc::default(),
        })
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Heals a flaky store too: from now on only the fixed fault counts.
    fn heal(&self) {
        self.set(Fault::Healthy);
        self.calls.store(usize::MAX / 2, Ordering::SeqCst);
    }

    async fn enter(&self, write: bool) -> Result<(), StorageError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < usize::MAX / 2
            && !self.pattern.is_empty()
            && self.pattern[call % self.pattern.len()]
        {
            return Err(down());
        }
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::Healthy => Ok(()),
            Fault::Down => Err(down()),
            Fault::Broken => Err(StorageError::Backend {
                backend: "faulty",
                source: "injected: permission denied".into(),
            }),
            Fault::RefusesWrites if write => Err(down()),
            Fault::RefusesWrites => Ok(()),
            Fault::Slow(delay) => {
                let now = self.gauge.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.gauge.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                self.gauge.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

fn down() -> StorageError {
    StorageError::Unavailable {
        backend: "faulty",
        source: "injected: connection refused".into(),
    }
}

#[async_trait::async_trait]
impl BackupStore for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, k: &BackupKey, b: Bytes, o: PutOptions) -> Result<(), StorageError> {
        self.enter(true).await?;
        self.inner.put(k, b, o).await
    }
    async fn get(&self, k: &BackupKey) -> Result<Bytes, StorageError> {
        self.enter(false).await?;
        self.inner.get(k).await
    }
    async fn delete(&self, k: &BackupKey) -> Result<(), StorageError> {
        self.enter(true).await?;
        self.inner.delete(k).await
    }
    async fn list(&self, c: &str) -> Result<Vec<BackupKey>, StorageError> {
        self.enter(false).await?;
        self.inner.list(c).await
    }
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        self.enter(false).await?;
        self.inner.list_clients().await
    }
}

/// A memory store that behaves as the Portal-managed one: overwrite only, no create-only,
/// delete or list.
fn portal_like() -> Arc<MemoryStore> {
    let mut caps = Capabilities::all();
    (caps.conditional_create, caps.delete, caps.list) = (false, false, false);
    Arc::new(MemoryStore::with_capabilities(caps))
}

fn replicated(replicas: &[Arc<dyn BackupStore>], quorum: usize) -> ReplicatedStore {
    ReplicatedStore::builder()
        .with_replicas(replicas.iter().cloned())
        .with_quorum(quorum)
        .build()
        .unwrap()
}

fn memories(n: usize) -> Vec<Arc<MemoryStore>> {
    (0..n).map(|_| Arc::new(MemoryStore::new())).collect()
}

fn dyns<S: BackupStore>(stores: &[Arc<S>]) -> Vec<Arc<dyn BackupStore>> {
    stores
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn BackupStore>)
        .collect()
}

fn key(pair: &str) -> BackupKey {
    BackupKey::client_backup("cl_1", pair, "SECP256K1").unwrap()
}

async fn held(store: &dyn BackupStore, key: &BackupKey) -> Option<Bytes> {
    store.get_opt(key).await.unwrap()
}

fn replication_error(e: &StorageError) -> &ReplicationError {
    ReplicationError::of(e).unwrap_or_else(|| panic!("not a replication error: {e:?}"))
}

// ---------------------------------------------------------------------------------------
// The conformance kit

mod two_memory_stores {
    storage::store_conformance_tests!(super::replicated(&super::dyns(&super::memories(2)), 2));
}

mod two_memory_stores_through_arc_dyn {
    storage::store_conformance_tests!({
        let store: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(super::replicated(&super::dyns(&super::memories(2)), 2));
        store
    });
}

mod three_memory_stores_quorum_2 {
    storage::store_conformance_tests!(super::replicated(&super::dyns(&super::memories(3)), 2));
}

mod memory_and_fs {
    storage::store_conformance_tests!({
        let dir = tempfile::tempdir().unwrap();
        let fs: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(storage::fs::FsStore::new(dir.path()).unwrap());
        let memory: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(storage::memory::MemoryStore::new());
        (dir, super::replicated(&[memory, fs], 2))
    });
}

mod portal_like_and_memory {
    // Portal first: the memory store still decides create-only races.
    storage::store_conformance_tests!({
        let portal: std::sync::Arc<dyn storage::BackupStore> = super::portal_like();
        let memory: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(storage::memory::MemoryStore::new());
        super::replicated(&[portal, memory], 2)
    });
}

mod portal_like_only {
    storage::store_conformance_tests!({
        let a: std::sync::Arc<dyn storage::BackupStore> = super::portal_like();
        let b: std::sync::Arc<dyn storage::BackupStore> = super::portal_like();
        super::replicated(&[a, b], 1)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_leaves_nothing_behind_on_any_replica() {
    let stores = memories(3);
    let theirs = key("bsp_theirs");
    stores[1].put_new(&theirs, "keep".into()).await.unwrap();
    let store: Arc<dyn BackupStore> = Arc::new(replicated(&dyns(&stores), 2));
    check_store(&store).await.unwrap();
    assert!(stores[0].is_empty() && stores[2].is_empty());
    assert_eq!(stores[1].keys(), [theirs]);
}

// ---------------------------------------------------------------------------------------
// Configuration and capabilities

#[test]
fn the_builder_checks_the_quorum() {
    let one: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    assert_eq!(
        ReplicatedStore::builder().build().unwrap_err(),
        BuildError::NoReplicas
    );
    for quorum in [0, 2] {
        let e = ReplicatedStore::builder()
            .with_replica(one.clone())
            .with_quorum(quorum)
            .build()
            .unwrap_err();
        assert_eq!(
            e,
            BuildError::QuorumOutOfRange {
                quorum,
                replicas: 1
            }
        );
        assert!(e.to_string().contains("1..=1"), "{e}");
    }
    let store = ReplicatedStore::builder()
        .with_replica(one.clone())
        .with_replica(one)
        .build()
        .unwrap();
    assert_eq!(store.quorum(), 2, "every replica by default");
    assert_eq!(store.replicas().len(), 2);
}

#[test]
fn capabilities_are_the_honest_combination() {
    let memory = || -> Arc<dyn BackupStore> { Arc::new(MemoryStore::new()) };
    let portal = || -> Arc<dyn BackupStore> { portal_like() };
    let mut write_once = Capabilities::all();
    write_once.overwrite = false;
    let write_once =
        || -> Arc<dyn BackupStore> { Arc::new(MemoryStore::with_capabilities(write_once)) };

    let caps = replicated(&[portal(), memory()], 2).capabilities();
    assert!(caps.conditional_create, "the memory store arbitrates");
    assert!(caps.overwrite);
    assert!(!caps.delete, "Portal cannot delete");
    assert!(
        caps.list,
        "every write at quorum 2 reaches the memory store"
    );
    assert!(
        caps.durable,
        "every write at quorum 2 reaches the durable one"
    );

    let caps = replicated(&[portal(), memory()], 1).capabilities();
    assert!(!caps.list && !caps.durable);

    let caps = replicated(&[portal(), portal()], 1).capabilities();
    assert!(!caps.conditional_create, "nothing can arbitrate");

    let caps = replicated(&[memory(), write_once()], 1).capabilities();
    assert!(caps.conditional_create && !caps.overwrite);

    let caps = replicated(&[memory(), memory()], 2).capabilities();
    assert_eq!(caps, {
        let mut c = Capabilities::all();
        c.durable = false;
        c.compare_and_swap = false; // never across replicas: see the module docs
        c
    });
}

#[tokio::test]
async fn compare_and_swap_is_not_supported_across_replicas() {
    let (a, b) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let store = replicated(&[a.clone(), b.clone()], 2);
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    store
        .put(&key, Bytes::from_static(b"one"), PutOptions::overwrite())
        .await
        .unwrap();
    assert!(
        store
            .get_versioned(&key)
            .await
            .unwrap_err()
            .is_not_supported()
    );
    let (_, version) = a.get_versioned(&key).await.unwrap();
    let e = store
        .put(
            &key,
            Bytes::from_static(b"two"),
            PutOptions::update(version),
        )
        .await
        .unwrap_err();
    assert!(e.is_not_supported(), "{e}");
    assert_eq!(a.get(&key).await.unwrap(), "one");
    assert_eq!(b.get(&key).await.unwrap(), "one");
}

// ---------------------------------------------------------------------------------------
// Quorum writes with a failing replica

#[tokio::test]
async fn a_put_succeeds_at_quorum_n_minus_1_with_one_replica_down_and_fails_at_n() {
    let stores = memories(3);
    let faulty = Faulty::new(stores[1].clone(), Fault::Down);
    let replicas: Vec<Arc<dyn BackupStore>> =
        vec![stores[0].clone(), faulty.clone(), stores[2].clone()];

    let store = replicated(&replicas, 2);
    store.put_new(&key("bsp_1"), "one".into()).await.unwrap();
    assert_eq!(held(&*stores[0], &key("bsp_1")).await.unwrap(), "one");
    assert_eq!(held(&*stores[2], &key("bsp_1")).await.unwrap(), "one");
    assert!(stores[1].is_empty());

    let store = replicated(&replicas, 3);
    let e = store
        .put_new(&key("bsp_2"), "two".into())
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let r = replication_error(&e);
    assert_eq!((r.succeeded, r.required), (2, 3));
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].replica.index, 1);
    assert_eq!(r.failures[0].replica.name, "faulty");
    let message = storage::Report(&e).to_string();
    assert!(message.contains("replica 1 (faulty) failed"), "{message}");
    assert!(message.contains("connection refused"), "{message}");

    // The healthy replicas keep what they took; once the replica is back, repeating the
    // put completes it.
    faulty.set(Fault::Healthy);
    store.put_new(&key("bsp_2"), "two".into()).await.unwrap();
    for s in &stores {
        assert_eq!(held(&**s, &key("bsp_2")).await.unwrap(), "two");
    }
    // Now every replica holds it: create-only says so.
    let again = store
        .put_new(&key("bsp_2"), "two".into())
        .await
        .unwrap_err();
    assert!(again.is_already_exists(), "{again}");
}

#[tokio::test]
async fn a_failure_that_is_not_retryable_makes_the_put_not_retryable() {
    let stores = memories(2);
    let replicas: Vec<Arc<dyn BackupStore>> = vec![
        stores[0].clone(),
        Faulty::new(stores[1].clone(), Fault::Broken),
    ];
    let e = replicated(&replicas, 2)
        .put_overwrite(&key("bsp_1"), "x".into())
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(
        storage::Report(&e)
            .to_string()
            .contains("permission denied")
    );
    replicated(&replicas, 1)
        .put_overwrite(&key("bsp_1"), "x".into())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_flaky_replica_fails_some_puts_only() {
    let stores = memories(2);
    // every other call fails: the probe (call 0) fails, the create-only put (call 1) works
    let flaky = Faulty::flaky(stores[1].clone(), vec![true, false]);
    let replicas: Vec<Arc<dyn BackupStore>> = vec![stores[0].clone(), flaky];
    let store = replicated(&replicas, 2);
    store.put_new(&key("bsp_1"), "one".into()).await.unwrap();
    assert_eq!(held(&*stores[1], &key("bsp_1")).await.unwrap(), "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_is_written_concurrently_and_still_holds_the_write() {
    let stores = memories(3);
    let gauge = Arc::new(Gauge::default());
    let slow: Vec<Arc<Faulty>> = stores
        .iter()
        .map(|s| {
            Arc::new(Faulty {
                gauge: gauge.clone(),
                ..Arc::into_inner(Faulty::new(
                    s.clone(),
                    Fault::Slow(Duration::from_millis(30)),
                ))
                .unwrap()
            })
        })
        .collect();
    let store = replicated(&dyns(&slow), 3);
    store.put_new(&key("bsp_1"), "one".into()).await.unwrap();
    // the probes, and the puts filling the two replicas after the first, were in flight
    // at once, one per replica
    assert_eq!(gauge.max_in_flight.load(Ordering::SeqCst), 3);
    gauge.max_in_flight.store(0, Ordering::SeqCst);
    store
        .put_overwrite(&key("bsp_2"), "two".into())
        .await
        .unwrap();
    assert_eq!(gauge.max_in_flight.load(Ordering::SeqCst), 3);
    for s in &stores {
        assert_eq!(s.len(), 2);
    }
    assert_eq!(store.get(&key("bsp_2")).await.unwrap(), "two");
}

// ---------------------------------------------------------------------------------------
// Reads

#[tokio::test]
async fn get_falls_through_to_a_healthy_replica_and_says_not_found_only_when_all_do() {
    let stores = memories(2);
    let faulty = Faulty::new(stores[0].clone(), Fault::Healthy);
    let replicas: Vec<Arc<dyn BackupStore>> = vec![faulty.clone(), stores[1].clone()];
    let store = replicated(&replicas, 1);
    let k = key("bsp_1");

    // only the second replica has it
    stores[1].put_new(&k, "from 1".into()).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), "from 1");
    // the first replica is down
    stores[0].put_new(&k, "from 0".into()).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), "from 0");
    faulty.set(Fault::Down);
    assert_eq!(store.get(&k).await.unwrap(), "from 1");

    // a failed replica may hold what nobody else has: not NotFound, but retryable
    let other = key("bsp_2");
    let e = store.get(&other).await.unwrap_err();
    assert!(!e.is_not_found() && e.is_retryable(), "{e}");
    assert_eq!(replication_error(&e).failures[0].replica.index, 0);

    faulty.set(Fault::Healthy);
    assert!(store.get(&other).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn list_is_the_union_while_it_can_be_complete() {
    let stores = memories(3);
    let faulty: Vec<Arc<Faulty>> = stores
        .iter()
        .map(|s| Faulty::new(s.clone(), Fault::Healthy))
        .collect();
    let store = replicated(&dyns(&faulty), 2);
    let (a, b) = (key("bsp_a"), key("bsp_b"));
    stores[0].put_new(&a, "a".into()).await.unwrap();
    stores[2].put_new(&b, "b".into()).await.unwrap();
    assert_eq!(store.list("cl_1").await.unwrap(), [a.clone(), b]);
    assert_eq!(store.list_clients().await.unwrap(), ["cl_1"]);

    // a write at quorum 2 of 3 is on two replicas: one listing may fail, not two
    faulty[2].set(Fault::Down);
    assert_eq!(store.list("cl_1").await.unwrap(), [a]);
    faulty[1].set(Fault::Down);
    let e = store.list("cl_1").await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(replication_error(&e).failures.len(), 2);
    assert!(store.list_clients().await.is_err());
    assert!(matches!(
        store.list("not/a/client").await,
        Err(StorageError::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn delete_must_reach_every_replica() {
    let stores = memories(2);
    let faulty = Faulty::new(stores[1].clone(), Fault::Healthy);
    let replicas: Vec<Arc<dyn BackupStore>> = vec![stores[0].clone(), faulty.clone()];
    let store = replicated(&replicas, 1);
    let k = key("bsp_1");
    store.put_new(&k, "x".into()).await.unwrap();
    faulty.set(Fault::Down);
    let e = store.delete(&k).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(replication_error(&e).succeeded, 1);
    faulty.set(Fault::Healthy);
    store.delete(&k).await.unwrap();
    assert!(stores[0].is_empty() && stores[1].is_empty());
}

// ---------------------------------------------------------------------------------------
// Create-only across replicas

#[tokio::test]
async fn create_only_never_overwrites_a_different_body_on_any_replica() {
    let stores = memories(3);
    let store = replicated(&dyns(&stores), 1);
    let k = key("bsp_1");
    // the last replica alone holds an older body
    stores[2].put_new(&k, "older".into()).await.unwrap();
    let e = store.put_new(&k, "newer".into()).await.unwrap_err();
    assert!(e.is_already_exists(), "{e}");
    assert!(
        stores[0].is_empty() && stores[1].is_empty(),
        "nothing written"
    );
    assert_eq!(held(&*stores[2], &k).await.unwrap(), "older");
    assert_eq!(store.get(&k).await.unwrap(), "older");
}

#[tokio::test]
async fn a_partial_earlier_write_of_the_same_body_is_completed() {
    let stores = memories(3);
    let store = replicated(&dyns(&stores), 3);
    let k = key("bsp_1");
    stores[1].put_new(&k, "same".into()).await.unwrap();
    store.put_new(&k, "same".into()).await.unwrap();
    for s in &stores {
        assert_eq!(held(&**s, &k).await.unwrap(), "same");
    }
    assert!(
        store
            .put_new(&k, "same".into())
            .await
            .unwrap_err()
            .is_already_exists()
    );
}

#[tokio::test]
async fn a_conflict_found_while_filling_fails_the_put_and_is_left_alone() {
    /// A memory store that takes a different body from "someone else" right after its
    /// probe, as a writer bypassing the replicated store would.
    #[derive(Debug)]
    struct Sneaky(MemoryStore);
    #[async_trait::async_trait]
    impl BackupStore for Sneaky {
        fn name(&self) -> &'static str {
            "sneaky"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn put(&self, k: &BackupKey, b: Bytes, o: PutOptions) -> Result<(), StorageError> {
            self.0.put(k, b, o).await
        }
        async fn get(&self, k: &BackupKey) -> Result<Bytes, StorageError> {
            let got = self.0.get(k).await;
            let _ = self.0.put_new(k, "someone else's".into()).await;
            got
        }
        async fn delete(&self, k: &BackupKey) -> Result<(), StorageError> {
            self.0.delete(k).await
        }
        async fn list(&self, c: &str) -> Result<Vec<BackupKey>, StorageError> {
            self.0.list(c).await
        }
    }
    let first = Arc::new(MemoryStore::new());
    let sneaky = Arc::new(Sneaky(MemoryStore::new()));
    let replicas: Vec<Arc<dyn BackupStore>> = vec![first.clone(), sneaky.clone()];
    let store = replicated(&replicas, 1);
    let k = key("bsp_1");
    let e = store.put_new(&k, "mine".into()).await.unwrap_err();
    assert!(!e.is_retryable() && !e.is_already_exists(), "{e}");
    let r = replication_error(&e);
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].name, "sneaky");
    assert_eq!(held(&*first, &k).await.unwrap(), "mine");
    assert_eq!(sneaky.0.get(&k).await.unwrap(), "someone else's");

    let report = store.repair(&k).await;
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_create_only_puts_have_exactly_one_winner_on_every_replica() {
    let stores = memories(3);
    let store = Arc::new(replicated(&dyns(&stores), 2));
    for round in 0..20 {
        let k = key(&format!("bsp_race_{round}"));
        let racers = (0..8).map(|i| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move { (i, store.put_new(&k, format!("racer {i}").into()).await) })
        });
        let mut winners = Vec::new();
        for racer in racers {
            let (i, result) = racer.await.unwrap();
            match result {
                Ok(()) => winners.push(i),
                Err(e) => assert!(e.is_already_exists(), "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        let body = Bytes::from(format!("racer {}", winners[0]));
        for s in &stores {
            assert_eq!(held(&**s, &k).await.unwrap(), body);
        }
    }
}

// ---------------------------------------------------------------------------------------
// A Portal-like replica (no create-only, delete or list)

#[tokio::test]
async fn a_portal_like_replica_is_written_only_after_a_read_found_nothing() {
    let portal = portal_like();
    let bucket = Arc::new(MemoryStore::new());
    let faulty_bucket = Faulty::new(bucket.clone(), Fault::Healthy);
    let replicas: Vec<Arc<dyn BackupStore>> = vec![portal.clone(), faulty_bucket.clone()];
    let store = replicated(&replicas, 2);
    let k = key("bsp_1");

    store.put_new(&k, "ct".into()).await.unwrap();
    assert_eq!(held(&*portal, &k).await.unwrap(), "ct");
    assert_eq!(held(&*bucket, &k).await.unwrap(), "ct");

    // Portal already holds a different body for another pair: refused, bucket untouched
    let k2 = key("bsp_2");
    portal.put_overwrite(&k2, "portal's".into()).await.unwrap();
    assert!(
        store
            .put_new(&k2, "ours".into())
            .await
            .unwrap_err()
            .is_already_exists()
    );
    assert_eq!(held(&*bucket, &k2).await, None);
    assert_eq!(held(&*portal, &k2).await.unwrap(), "portal's");

    // With the only create-only replica down, nothing can decide a race: nothing written,
    // even at quorum 1, and the error says why.
    faulty_bucket.set(Fault::Down);
    let store = replicated(&replicas, 1);
    let k3 = key("bsp_3");
    let e = store.put_new(&k3, "ct".into()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(replication_error(&e).note.unwrap().contains("create only"));
    assert_eq!(held(&*portal, &k3).await, None);
    // An overwrite does not need a decision.
    store.put_overwrite(&k3, "ct".into()).await.unwrap();
    assert_eq!(held(&*portal, &k3).await.unwrap(), "ct");

    // Portal alone cannot create only, and says so; delete is refused before any replica
    // is touched.
    let only_portal = replicated(&[portal.clone() as Arc<dyn BackupStore>], 1);
    let e = only_portal
        .put_new(&key("bsp_4"), "x".into())
        .await
        .unwrap_err();
    assert!(e.is_not_supported(), "{e}");
    assert!(store.delete(&k).await.unwrap_err().is_not_supported());
    assert_eq!(held(&*portal, &k).await.unwrap(), "ct");
}

// ---------------------------------------------------------------------------------------
// Repair

#[tokio::test]
async fn repair_brings_a_lagging_replica_up_to_date_and_then_copies_nothing() {
    let stores = memories(3);
    let lagging = Faulty::new(stores[2].clone(), Fault::RefusesWrites);
    let replicas: Vec<Arc<dyn BackupStore>> =
        vec![stores[0].clone(), stores[1].clone(), lagging.clone()];
    let store = replicated(&replicas, 2);
    let keys: Vec<BackupKey> = (0..5).map(|i| key(&format!("bsp_{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        store.put_new(k, format!("body {i}").into()).await.unwrap();
    }
    let custodian = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    store.put_overwrite(&custodian, "c".into()).await.unwrap();
    assert!(stores[2].is_empty());

    // still refusing writes: every copy fails, and is reported
    let report = store.repair_client("cl_1").await.unwrap();
    assert_eq!((report.keys, report.copied), (6, 0));
    assert_eq!(report.failures.len(), 6);
    assert!(!report.is_clean());

    lagging.set(Fault::Healthy);
    let report = store.repair_client("cl_1").await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (report.keys, report.copied, report.already_present),
        (6, 6, 12)
    );
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(held(&*stores[2], k).await.unwrap(), format!("body {i}"));
    }

    let again = store.repair_all().await.unwrap();
    assert!(again.is_clean());
    assert_eq!(
        (again.keys, again.copied, again.already_present),
        (6, 0, 18)
    );
}

#[tokio::test]
async fn repair_reports_conflicts_and_leaves_them_untouched() {
    let stores = memories(3);
    let store = replicated(&dyns(&stores), 2);
    let k = key("bsp_1");
    stores[0].put_new(&k, "version a".into()).await.unwrap();
    stores[1].put_new(&k, "version bb".into()).await.unwrap();
    let report = store.repair(&k).await;
    assert_eq!(report.copied, 0);
    let [conflict] = report.conflicts.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(conflict.key, k);
    let versions: Vec<(Vec<usize>, usize)> = conflict
        .versions
        .iter()
        .map(|v| (v.replicas.iter().map(|r| r.index).collect(), v.len))
        .collect();
    assert_eq!(versions, [(vec![0], 9), (vec![1], 10)]);
    assert_eq!(held(&*stores[0], &k).await.unwrap(), "version a");
    assert_eq!(held(&*stores[1], &k).await.unwrap(), "version bb");
    assert_eq!(held(&*stores[2], &k).await, None, "not resolved silently");

    // a key nobody holds: nothing to do
    let report = store.repair(&key("bsp_none")).await;
    assert!(report.is_clean());
    assert_eq!(
        (report.keys, report.copied, report.already_present),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn repair_copies_to_a_portal_like_replica_only_what_it_can_keep() {
    /// Portal keeps client backup shares only.
    #[derive(Debug)]
    struct ClientBackupsOnly(MemoryStore);
    #[async_trait::async_trait]
    impl BackupStore for ClientBackupsOnly {
        fn name(&self) -> &'static str {
            "portal-like"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn put(&self, k: &BackupKey, b: Bytes, o: PutOptions) -> Result<(), StorageError> {
            self.check(k)?;
            self.0.put(k, b, o).await
        }
        async fn get(&self, k: &BackupKey) -> Result<Bytes, StorageError> {
            self.check(k)?;
            self.0.get(k).await
        }
        async fn delete(&self, k: &BackupKey) -> Result<(), StorageError> {
            self.0.delete(k).await
        }
        async fn list(&self, c: &str) -> Result<Vec<BackupKey>, StorageError> {
            self.0.list(c).await
        }
    }
    impl ClientBackupsOnly {
        fn check(&self, k: &BackupKey) -> Result<(), StorageError> {
            if k.kind() == storage::ShareKind::ClientBackup {
                Ok(())
            } else {
                Err(StorageError::NotSupported {
                    operation: "keeping anything but client backup shares",
                    backend: "portal-like",
                })
            }
        }
    }
    let mut caps = Capabilities::all();
    (caps.conditional_create, caps.delete, caps.list) = (false, false, false);
    let portal = Arc::new(ClientBackupsOnly(MemoryStore::with_capabilities(caps)));
    let bucket = Arc::new(MemoryStore::new());
    let replicas: Vec<Arc<dyn BackupStore>> = vec![portal.clone(), bucket.clone()];
    let store = replicated(&replicas, 1);
    let (k, custodian) = (
        key("bsp_1"),
        BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap(),
    );
    bucket.put_new(&k, "ct".into()).await.unwrap();
    bucket.put_new(&custodian, "c".into()).await.unwrap();
    // the get of a custodian share falls through Portal's NotSupported
    assert_eq!(store.get(&custodian).await.unwrap(), "c");

    let report = store.repair_client("cl_1").await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.copied, report.not_supported), (1, 1));
    assert_eq!(portal.0.get(&k).await.unwrap(), "ct");
    let again = store.repair_client("cl_1").await.unwrap();
    assert_eq!(again.copied, 0);
}

// ---------------------------------------------------------------------------------------
// Property: create-only guarantees under random faults

#[derive(Clone, Debug)]
struct Op {
    key: usize,
    body: usize,
}

fn op() -> impl Strategy<Value = Op> {
    (0..3usize, 0..3usize).prop_map(|(key, body)| Op { key, body })
}

/// What each replica holds, by key path.
fn snapshot(stores: &[Arc<MemoryStore>]) -> Vec<BTreeMap<String, Bytes>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    stores
        .iter()
        .map(|s| {
            s.keys()
                .into_iter()
                .map(|k| {
                    let body = rt.block_on(s.get(&k)).unwrap();
                    (k.to_path(), body)
                })
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Create-only puts through three replicas, each failing on its own random pattern of
    /// calls. Whatever happens:
    /// * no replica's body under a key ever changes once set (nothing is overwritten);
    /// * an acknowledged put is held by at least `quorum` replicas;
    /// * with a majority quorum, at most one body per key is ever acknowledged;
    /// * after the faults stop, a repair leaves every key either identical on every replica
    ///   or reported as a conflict and untouched, and a second repair copies nothing.
    #[test]
    fn create_only_holds_under_random_faults(
        quorum in 1..=3usize,
        patterns in proptest::collection::vec(proptest::collection::vec(proptest::bool::weighted(0.3), 1..12), 3),
        ops in proptest::collection::vec(op(), 1..24),
    ) {
        let stores = memories(3);
        let faulty: Vec<Arc<Faulty>> = stores
            .iter()
            .zip(&patterns)
            .map(|(s, p)| Faulty::flaky(s.clone(), p.clone()))
            .collect();
        let store = replicated(&dyns(&faulty), quorum);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let keys: Vec<BackupKey> = (0..3).map(|i| key(&format!("bsp_{i}"))).collect();
        let bodies: Vec<Bytes> = (0..3).map(|i| Bytes::from(format!("body {i}"))).collect();
        let mut before = snapshot(&stores);
        let mut acknowledged: BTreeMap<usize, std::collections::BTreeSet<usize>> = BTreeMap::new();

        for op in &ops {
            let (k, b) = (&keys[op.key], &bodies[op.body]);
            let result = rt.block_on(store.put_new(k, b.clone()));
            let after = snapshot(&stores);
            for (old, new) in before.iter().zip(&after) {
                for (path, body) in old {
                    prop_assert_eq!(new.get(path), Some(body), "overwritten or lost");
                }
            }
            let holding = after.iter().filter(|m| m.get(&k.to_path()) == Some(b)).count();
            match result {
                Ok(()) => {
                    prop_assert!(holding >= quorum, "acknowledged, {} of {} hold it", holding, quorum);
                    acknowledged.entry(op.key).or_default().insert(op.body);
                }
                Err(e) if e.is_already_exists() => {
                    prop_assert!(after.iter().any(|m| m.contains_key(&k.to_path())));
                }
                Err(e) => prop_assert!(ReplicationError::of(&e).is_some(), "{}", e),
            }
            before = after;
        }
        if 2 * quorum > 3 {
            for (k, acked) in &acknowledged {
                prop_assert!(acked.len() <= 1, "key {}: bodies {:?} all acknowledged", k, acked);
            }
        }

        for f in &faulty {
            f.heal();
        }
        let report = rt.block_on(store.repair_client("cl_1")).unwrap();
        prop_assert!(report.failures.is_empty(), "{:?}", report.failures);
        let after = snapshot(&stores);
        for k in &keys {
            let path = k.to_path();
            let held: Vec<Option<&Bytes>> = after.iter().map(|m| m.get(&path)).collect();
            if report.conflicts.iter().any(|c| c.key == *k) {
                let old: Vec<Option<&Bytes>> = before.iter().map(|m| m.get(&path)).collect();
                prop_assert_eq!(held, old, "a conflict was touched");
            } else {
                prop_assert!(held.windows(2).all(|w| w[0] == w[1]), "{:?}", held);
            }
        }
        let again = rt.block_on(store.repair_client("cl_1")).unwrap();
        prop_assert_eq!(again.copied, 0);
        prop_assert_eq!(again.conflicts.len(), report.conflicts.len());
    }
}
