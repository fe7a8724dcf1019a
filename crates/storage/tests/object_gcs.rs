//! `ObjectStoreStore` on Google Cloud Storage, against an in-process fake of the GCS XML API
//! (`object_support::gcs_fake`): the conformance kit one check per test, directly and through
//! `Arc<dyn BackupStore>`; a whole run leaving the bucket empty; create-only honoured by
//! generation match; `from_url` configured from the environment.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod object_support;

use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions};
use object_support::gcs_fake;
use storage::conformance::check_store;
use storage::object::ObjectStoreStore;
use storage::{BackupKey, BackupStore, BackupStoreExt, Report, StorageError};

mod gcs_store {
    storage::store_conformance_tests!(super::gcs_fake::shared().store("backups"));
}

mod gcs_store_through_arc_dyn {
    storage::store_conformance_tests!({
        let store: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(super::gcs_fake::shared().store(""));
        store
    });
}

#[tokio::test]
async fn the_fake_honours_create_only_puts() {
    let fake = gcs_fake::shared();
    let gcs = fake.gcs(&fake.new_bucket()).build().unwrap();
    let path = object_store::path::Path::from("guard");
    let create = || PutOptions::from(PutMode::Create);
    gcs.put_opts(&path, "first".into(), create()).await.unwrap();
    let second = gcs.put_opts(&path, "second".into(), create()).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(
        gcs.get(&path).await.unwrap().bytes().await.unwrap(),
        "first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_leaves_nothing_behind() {
    let fake = gcs_fake::shared();
    let bucket = fake.new_bucket();
    let gcs = fake.gcs(&bucket).build().unwrap();
    let store = ObjectStoreStore::new(Arc::new(gcs), "p")
        .unwrap()
        .with_name("gcs");
    let theirs = BackupKey::custodian_backup("cl_real", "GDRIVE").unwrap();
    store
        .put_new(&theirs, Bytes::from_static(b"keep"))
        .await
        .unwrap();
    check_store(&store).await.unwrap();
    let shared: Arc<dyn BackupStore> = Arc::new(store.clone());
    check_store(&shared).await.unwrap();
    assert_eq!(fake.object_count(&bucket), 1);
    assert_eq!(store.get(&theirs).await.unwrap(), "keep");
    store.delete(&theirs).await.unwrap();
    assert_eq!(fake.object_count(&bucket), 0);
}

#[tokio::test]
async fn a_missing_bucket_is_a_backend_error_not_a_missing_object() {
    let gcs = gcs_fake::shared().gcs("no-such-bucket").build().unwrap();
    let store = ObjectStoreStore::new(Arc::new(gcs), "")
        .unwrap()
        .with_name("gcs");
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    let e = store.get(&key).await.unwrap_err();
    assert!(
        matches!(e, StorageError::Backend { backend: "gcs", .. }),
        "{}",
        Report(&e)
    );
}

/// `from_url` with `gs://`, configured from `GOOGLE_*` variables, in a child run of this
/// test with the variables set.
#[test]
fn from_url_is_configured_from_the_environment() {
    const CHILD: &str = "PORTAL_BACKUP_TEST_FROM_URL_CHILD";
    if let Ok(url) = std::env::var(CHILD) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = ObjectStoreStore::from_url(&url).unwrap();
                assert_eq!(store.name(), "gcs");
                assert_eq!(store.prefix(), "a/b");
                let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
                store.put_new(&key, "ct".into()).await.unwrap();
                assert_eq!(store.get(&key).await.unwrap(), "ct");
                assert_eq!(store.list("cl_1").await.unwrap(), [key]);
            });
        return;
    }
    // The fake lives in this process; the child is given its address.
    let fake = gcs_fake::shared();
    let bucket = fake.new_bucket();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "from_url_is_configured_from_the_environment",
            "--nocapture",
        ])
        .env(CHILD, format!("gs://{bucket}/a/b"))
        .env("GOOGLE_SERVICE_ACCOUNT_KEY", fake.service_account_key())
        .env("GOOGLE_ALLOW_HTTP", "true")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_SERVICE_ACCOUNT")
        .status()
        .unwrap();
    assert!(status.success(), "the child run failed: {status}");
    assert_eq!(fake.object_count(&bucket), 1);
}
