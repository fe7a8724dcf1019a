//! The store-wide restore drill and rotation at KMS speed: clients worked on concurrently,
//! never more KMS calls in flight than asked for, one KMS call per backup to drill it (one
//! unwrap and one wrap to rotate it), and a bad share or client reported while the others go
//! on.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // tests: a panic is a failure

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::testing::{CallCounter, HookedKek, InFlight, Latency};
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions};
use backup_flow::{Finding, Flow};
use futures_util::StreamExt as _;
use support::backups::store_backup;

/// A KEK that takes `delay` per call (a KMS round trip), with the calls in flight and all
/// calls counted.
struct Kek {
    kek: Arc<HookedKek>,
    in_flight: Arc<InFlight>,
    calls: Arc<CallCounter>,
}

/// `clients` clients of two shares each (one backup: both sealed under one data key), as a
/// backup stores them.
async fn seed(store: &dyn BackupStore, keyring: &Keyring, clients: usize) -> Vec<String> {
    seed_as("client", store, keyring, clients).await
}

/// [`seed`] with client ids that start with `prefix`.
async fn seed_as(
    prefix: &str,
    store: &dyn BackupStore,
    keyring: &Keyring,
    clients: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..clients {
        let client_id = format!("{prefix}-{i:04}");
        let pair = |curve: &str| format!("pair-{i}-{curve}");
        store_backup(store, keyring, &client_id, pair, b"a backup share").await;
        ids.push(client_id);
    }
    ids
}

/// A store over the test process's shared PostgreSQL (`None` after a loud skip). Its table
/// is shared with other tests: seed client ids of your own.
async fn postgres() -> Option<Arc<dyn BackupStore>> {
    let pg = test_services::postgres::shared()?;
    let store = storage::postgres::PostgresStore::connect(&pg.url)
        .await
        .unwrap();
    Some(Arc::new(store))
}

fn flow_over(store: Arc<dyn BackupStore>, kek: &Kek, state: &std::path::Path) -> Flow {
    // The store-wide drill never calls Portal: the flow has no Portal role at all.
    Flow::new(ring(kek), store, state).unwrap()
}

fn in_flight(delay: Duration) -> Kek {
    let (in_flight, calls) = (Arc::default(), Arc::default());
    // In flight first, so that the round trip counts as under way.
    let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
        .with_hook(Arc::clone(&calls))
        .with_hook(Arc::clone(&in_flight))
        .with_hook(Arc::new(Latency::new(delay)));
    Kek {
        kek: Arc::new(kek),
        in_flight,
        calls,
    }
}

fn ring(kek: &Kek) -> Keyring {
    Keyring::new().with(Arc::clone(&kek.kek) as Arc<dyn KeyEncryptionKey>)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_keeps_at_most_n_kms_calls_in_flight_and_more_than_one() {
    let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let kek = in_flight(Duration::from_millis(20));
    let clients = seed(store.as_ref(), &ring(&kek), 24).await;
    kek.in_flight.reset_peak();
    kek.calls.reset();
    let flow = flow_over(store, &kek, state.path());

    const CONCURRENCY: usize = 4;
    let checked: Vec<_> = flow
        .verify_store_wide(&clients, CONCURRENCY)
        .collect()
        .await;
    let peak = kek.in_flight.peak();
    assert!(
        (2..=CONCURRENCY).contains(&peak),
        "{peak} KMS calls were in flight at most; wanted more than 1 and at most {CONCURRENCY}"
    );
    assert_eq!(checked.len(), clients.len());
    for client in &checked {
        let shares = client.shares.as_ref().unwrap();
        assert_eq!(shares.len(), 2, "{client:?}");
        for share in shares {
            assert_eq!(share.result.as_ref().unwrap().finding, Finding::Ok);
        }
    }
    // Both shares of a backup open with one unwrap.
    assert_eq!(kek.calls.total(), clients.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_keeps_at_most_n_kms_calls_in_flight_and_more_than_one() {
    let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let old = in_flight(Duration::from_millis(20));
    let clients = seed(store.as_ref(), &ring(&old), 24).await;
    // The new key shares the old one's gauges: calls to either count as KMS calls in flight.
    let new = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
        .with_hook(Arc::clone(&old.calls))
        .with_hook(Arc::clone(&old.in_flight))
        .with_hook(Arc::new(Latency::new(Duration::from_millis(20))));
    let new = Keyring::new().with(Arc::new(new) as Arc<dyn KeyEncryptionKey>);
    old.in_flight.reset_peak();
    old.calls.reset();
    let flow = flow_over(Arc::clone(&store), &old, state.path());

    const CONCURRENCY: usize = 4;
    let report = flow.rotate_with(&new, &clients, CONCURRENCY).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.rewrapped, clients.len() * 2);
    let peak = old.in_flight.peak();
    assert!(
        (2..=CONCURRENCY).contains(&peak),
        "{peak} KMS calls were in flight at most; wanted more than 1 and at most {CONCURRENCY}"
    );
    // One unwrap and one wrap per backup, and the new key's current key resolved once.
    assert_eq!(old.calls.unwraps(), clients.len());
    assert_eq!(old.calls.wraps(), clients.len());
}

/// The same rotation over PostgreSQL, whose store takes a batch of clients in one statement:
/// more clients than one batch, every object rewrapped under the new key in one unwrap and
/// one wrap per backup, the proof complete, the KMS bound kept, and a second run finds
/// everything already current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_over_postgresql_goes_in_batches_and_keeps_the_kms_bound() {
    let Some(store) = postgres().await else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    assert!(store.batch_size() > 1);
    let old = in_flight(Duration::from_millis(2));
    // The table is shared with other tests: this test's clients only.
    let prefix = format!("rotate-pg-{}", &test_services::random_hex()[..8]);
    let seeded = seed_as(
        &prefix,
        store.as_ref(),
        &ring(&old),
        store.batch_size() + 13,
    )
    .await;
    let new = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
        .with_hook(Arc::clone(&old.calls))
        .with_hook(Arc::clone(&old.in_flight));
    let new = Keyring::new().with(Arc::new(new) as Arc<dyn KeyEncryptionKey>);
    old.in_flight.reset_peak();
    old.calls.reset();
    let flow = flow_over(Arc::clone(&store), &old, state.path());

    const CONCURRENCY: usize = 8;
    let report = flow.rotate_with(&new, &seeded, CONCURRENCY).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.rewrapped, seeded.len() * 2, "{report:?}");
    assert!(old.in_flight.peak() <= CONCURRENCY);
    assert_eq!(old.calls.unwraps(), seeded.len());
    assert_eq!(old.calls.wraps(), seeded.len());
    // Every share opens under the new key alone.
    let drilled = Flow::new(new.clone(), Arc::clone(&store), state.path()).unwrap();
    let mut drill = std::pin::pin!(drilled.verify_store_wide(&seeded, 4));
    let mut ok = 0;
    while let Some(client) = drill.next().await {
        for share in client.shares.unwrap() {
            assert_eq!(share.result.unwrap().finding, Finding::Ok);
            ok += 1;
        }
    }
    assert_eq!(ok, seeded.len() * 2);
    let again = flow.rotate_with(&new, &seeded, CONCURRENCY).await.unwrap();
    assert_eq!(
        (again.rewrapped, again.already_current),
        (0, seeded.len() * 2),
        "{again:?}"
    );
}

/// A swapped share and a corrupt one are reported as what they are, and every other share of
/// every client is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_share_is_reported_and_the_others_go_on() {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    bad_shares_among_good(store, "client").await;
}

/// The same over PostgreSQL, where the drill reads a batch of clients in one statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_share_is_reported_and_the_others_go_on_in_a_batch() {
    let Some(store) = postgres().await else {
        return;
    };
    assert!(store.batch_size() > 1);
    let prefix = format!("drill-pg-{}", &test_services::random_hex()[..8]);
    bad_shares_among_good(store, &prefix).await;
}

async fn bad_shares_among_good(store: Arc<dyn BackupStore>, prefix: &str) {
    let state = tempfile::tempdir().unwrap();
    let kek = in_flight(Duration::ZERO);
    let clients = seed_as(prefix, store.as_ref(), &ring(&kek), 6).await;
    let key = |i: usize, curve: &str| {
        BackupKey::client_backup(&clients[i], format!("pair-{i}-{curve}"), curve).unwrap()
    };
    // Client 1's SECP256K1 object is client 2's; client 4's ED25519 object is garbage.
    let foreign = store.get(&key(2, "SECP256K1")).await.unwrap();
    store
        .put(&key(1, "SECP256K1"), foreign, PutOptions::overwrite())
        .await
        .unwrap();
    store
        .put(
            &key(4, "ED25519"),
            b"pbe1.not-an-envelope".to_vec().into(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    let flow = flow_over(store, &kek, state.path());

    let mut findings = BTreeMap::new();
    let mut drill = std::pin::pin!(flow.verify_store_wide(&clients, 3));
    while let Some(client) = drill.next().await {
        for share in client.shares.unwrap() {
            findings.insert(share.key, share.result.unwrap().finding);
        }
    }
    assert_eq!(findings.len(), 12);
    let bad: Vec<&String> = findings
        .iter()
        .filter(|(_, finding)| **finding != Finding::Ok)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        bad,
        [
            &key(1, "SECP256K1").to_string(),
            &key(4, "ED25519").to_string()
        ]
    );
    assert!(
        bad.iter()
            .all(|k| matches!(findings[*k], Finding::WrongIdentity { .. }))
    );
}
