//! `PostgresStore` against a throwaway PostgreSQL on loopback (`test_services::postgres`):
//! the conformance kit (directly and through `Arc<dyn BackupStore>`), no rows left behind,
//! the version column, concurrent migrations, and no password in errors or `Debug`.
//!
//! Skips loudly without PostgreSQL's server binaries, except under `cargo xtask ci`, which
//! installs them and makes a missing server a failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use storage::conformance::check_store;
use storage::postgres::{MIGRATIONS_TABLE, PostgresStore, TABLE};
use storage::{BackupKey, BackupStore, BackupStoreExt, PutMode, Report};

mod postgres_store {
    storage::store_conformance_tests!({
        let Some(pg) = test_services::postgres::shared() else {
            return;
        };
        storage::postgres::PostgresStore::connect(&pg.url)
            .await
            .unwrap()
    });
}

mod postgres_store_through_arc_dyn {
    storage::store_conformance_tests!({
        let Some(pg) = test_services::postgres::shared() else {
            return;
        };
        let store: std::sync::Arc<dyn storage::BackupStore> = std::sync::Arc::new(
            storage::postgres::PostgresStore::connect(&pg.url)
                .await
                .unwrap(),
        );
        store
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_leaves_no_rows_and_keeps_other_data() {
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let (_, url) = pg.create_database("t_leftovers");
    let store = PostgresStore::connect(&url).await.unwrap();
    let theirs = BackupKey::custodian_backup("cl_real", "GDRIVE").unwrap();
    store
        .put_new(&theirs, Bytes::from_static(b"keep"))
        .await
        .unwrap();

    check_store(&store).await.unwrap();
    let shared: Arc<dyn BackupStore> = Arc::new(store.clone());
    check_store(&shared).await.unwrap();

    let count = async |sql: &'static str| -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let left =
        count("SELECT count(*) FROM portal_backup_objects WHERE client_id LIKE 'conformance-%'")
            .await;
    eprintln!("rows left by the conformance kit: {left}");
    assert_eq!(left, 0);
    assert_eq!(count("SELECT count(*) FROM portal_backup_objects").await, 1);
    assert_eq!(store.get(&theirs).await.unwrap(), "keep");
}

#[tokio::test]
async fn the_version_counts_writes() {
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let store = PostgresStore::connect(&pg.url).await.unwrap();
    let key = BackupKey::client_backup("cl_version", "bsp_1", "ED25519").unwrap();
    store.delete(&key).await.unwrap();

    let v = store
        .put_versioned(&key, Bytes::from_static(b"one"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(v, 1);
    for expected in 2..=4 {
        let body = Bytes::from(format!("body {expected}"));
        let v = store
            .put_versioned(&key, body.clone(), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(v, expected);
        let (stored, version) = store.get_versioned(&key).await.unwrap();
        assert_eq!(stored, body);
        assert_eq!(PostgresStore::version_number(&version), Some(expected));
    }
    // A refused create changes neither body nor version.
    let e = store
        .put_versioned(&key, Bytes::from_static(b"x"), PutMode::Create)
        .await
        .unwrap_err();
    assert!(e.is_already_exists(), "{e:?}");
    let (_, version) = store.get_versioned(&key).await.unwrap();
    assert_eq!(PostgresStore::version_number(&version), Some(4));
    // Deleted and created again: a new row, version 1.
    store.delete(&key).await.unwrap();
    assert!(store.get_versioned(&key).await.unwrap_err().is_not_found());
    assert_eq!(
        store
            .put_versioned(&key, Bytes::from_static(b"again"), PutMode::Overwrite)
            .await
            .unwrap(),
        1
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_all_land_with_distinct_versions() {
    const WRITERS: i64 = 40;
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let store = PostgresStore::connect(&pg.url).await.unwrap();
    let key = BackupKey::custodian_backup("cl_concurrent_overwrite", "GDRIVE").unwrap();
    store.delete(&key).await.unwrap();
    store
        .put_new(&key, Bytes::from_static(b"first"))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let (store, key) = (store.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(format!("writer {i}"));
            let v = store
                .put_versioned(&key, body.clone(), PutMode::Overwrite)
                .await
                .unwrap();
            (v, body)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let versions: BTreeSet<i64> = results.iter().map(|(v, _)| *v).collect();
    // Every overwrite landed, each on its own version: none was lost or merged.
    assert_eq!(versions, (2..=WRITERS + 1).collect::<BTreeSet<_>>());
    // What is stored is the write with the highest version.
    let (body, version) = store.get_versioned(&key).await.unwrap();
    let version = PostgresStore::version_number(&version).unwrap();
    assert_eq!(version, WRITERS + 1);
    let last = results.iter().find(|(v, _)| *v == version).unwrap();
    assert_eq!(body, last.1);
    store.delete(&key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let (_, url) = pg.create_database("t_migrate");
    // Four pools (four sessions, as four processes would have) connect to an empty database
    // at once; each runs the migrations.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            PostgresStore::builder()
                .max_connections(2)
                .connect(&url)
                .await
        }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().unwrap());
    }
    let pool = stores[0].pool();
    assert_eq!(MIGRATIONS_TABLE, "_portal_backup_storage_migrations");
    let applied: (i64, bool) =
        sqlx::query_as("SELECT count(*), bool_and(success) FROM _portal_backup_storage_migrations")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(applied, (1, true));
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = $1")
            .bind(TABLE)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(tables, 1);
    // They all work on the one table.
    let key = BackupKey::custodian_backup("cl_m", "GDRIVE").unwrap();
    stores[0]
        .put_new(&key, Bytes::from_static(b"x"))
        .await
        .unwrap();
    for s in &stores {
        assert_eq!(s.get(&key).await.unwrap(), "x");
    }
    // And connecting again later changes nothing.
    drop(PostgresStore::connect(&url).await.unwrap());
}

#[tokio::test]
async fn the_password_never_shows() {
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let store = PostgresStore::connect(&pg.url).await.unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains(&pg.password), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{}", pg.port)), "{shown}");

    let shows = |e: &storage::StorageError, secret: &str| {
        let all = format!("{e} | {e:?} | {}", Report(e));
        assert!(!all.contains(secret), "{all}");
        all
    };

    // Wrong password: authentication fails, not retryable.
    let secret = "wrong-Secret-4f1d9c";
    let url = format!("postgres://portal:{secret}@127.0.0.1:{}/postgres", pg.port);
    let e = PostgresStore::connect(&url).await.unwrap_err();
    let all = shows(&e, secret);
    assert!(!e.is_retryable(), "{all}");
    assert!(all.contains("28P01"), "{all}");

    // The right password, nobody listening: retryable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "postgres://portal:{}@127.0.0.1:{closed}/postgres",
        pg.password
    );
    let e = PostgresStore::builder()
        .acquire_timeout(Duration::from_secs(2))
        .connect(&url)
        .await
        .unwrap_err();
    let all = shows(&e, &pg.password);
    assert!(e.is_retryable(), "{all}");

    // A malformed URL.
    let url = format!(
        "postgres://portal:{}@127.0.0.1:notaport/postgres",
        pg.password
    );
    let e = PostgresStore::connect(&url).await.unwrap_err();
    let all = shows(&e, &pg.password);
    assert!(!e.is_retryable(), "{all}");
}

#[tokio::test]
async fn list_is_exact_and_sorted() {
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let store = PostgresStore::connect(&pg.url).await.unwrap();
    // '_' and '%' are LIKE wildcards: a LIKE-based list of cl_1 would also return clx1's.
    let keys = [
        BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap(),
        BackupKey::client_backup("cl_1", "bsp_b", "SECP256K1").unwrap(),
        BackupKey::client_backup("cl_1", "bsp_a", "ED25519").unwrap(),
        BackupKey::client_signing("cl_1", "ssp", "ED25519").unwrap(),
    ];
    let others = [
        BackupKey::custodian_backup("clx1", "GDRIVE").unwrap(),
        BackupKey::custodian_backup("cl_10", "GDRIVE").unwrap(),
        BackupKey::custodian_backup("CL_1", "GDRIVE").unwrap(),
    ];
    for k in keys.iter().chain(&others) {
        store
            .put_overwrite(k, Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let listed = store.list("cl_1").await.unwrap();
    let mut expected = keys.to_vec();
    expected.sort_by_key(BackupKey::to_path);
    assert_eq!(listed, expected);
    assert!(
        store
            .list("cl_%")
            .await
            .unwrap_err()
            .to_string()
            .contains("invalid")
    );
    for k in keys.iter().chain(&others) {
        store.delete(k).await.unwrap();
    }
    assert!(store.list("cl_1").await.unwrap().is_empty());
}

/// `stream_clients` pages by client id: 2,345 clients of two objects each (more than two
/// pages of 1,000) come out once each, sorted, the same as `list_clients`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_clients_pages_through_every_client_once_in_order() {
    use futures_util::TryStreamExt as _;
    let Some(pg) = test_services::postgres::shared() else {
        return;
    };
    let (_, url) = pg.create_database("t_stream_clients");
    let store = PostgresStore::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO portal_backup_objects (client_id, path, body) \
         SELECT 'cl_' || lpad(i::text, 5, '0'), 'cl_' || lpad(i::text, 5, '0') || '/custodian-backup/~/~/' || m, 'x'::bytea \
         FROM generate_series(1, 2345) AS i, unnest(ARRAY['GDRIVE', 'PASSWORD']) AS m",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let streamed: Vec<String> = store.stream_clients().try_collect().await.unwrap();
    assert_eq!(streamed.len(), 2345);
    assert_eq!(streamed.first().map(String::as_str), Some("cl_00001"));
    assert_eq!(streamed.last().map(String::as_str), Some("cl_02345"));
    assert_eq!(streamed, store.list_clients().await.unwrap());
}
