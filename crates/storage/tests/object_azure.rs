//! `ObjectStoreStore` on Azure Blob Storage, against Azurite (Microsoft's emulator) on
//! loopback: the conformance kit directly and through `Arc<dyn BackupStore>`, leaving the
//! container empty; create-only honoured; `from_url` from the environment.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod object_support;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use object_support::azurite::{self, AzuriteBlobs as _};
use storage::conformance::check_store;
use storage::object::ObjectStoreStore;
use storage::{BackupKey, BackupStore, BackupStoreExt, Report, StorageError};

async fn container_objects(store: &ObjectStoreStore) -> Vec<String> {
    let all: Vec<_> = store.inner().list(None).try_collect().await.unwrap();
    all.into_iter().map(|m| m.location.to_string()).collect()
}

#[tokio::test]
async fn azurite_honours_create_only_puts() {
    let Some(azurite) = azurite::shared() else {
        return;
    };
    let azure = azurite.azure(&azurite.new_container()).build().unwrap();
    let path = object_store::path::Path::from("guard");
    let create = || PutOptions::from(PutMode::Create);
    azure
        .put_opts(&path, "first".into(), create())
        .await
        .unwrap();
    let second = azure.put_opts(&path, "second".into(), create()).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "azurite accepted a second create-only put: {second:?}"
    );
    let body = azure.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(body, "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_directly_and_through_arc_dyn_leaves_nothing_behind() {
    let Some(azurite) = azurite::shared() else {
        return;
    };
    let store = azurite.store("backups");
    let theirs = BackupKey::custodian_backup("cl_real", "GDRIVE").unwrap();
    store
        .put_new(&theirs, Bytes::from_static(b"keep"))
        .await
        .unwrap();
    let before = container_objects(&store).await;
    assert_eq!(before, ["backups/cl_real/custodian-backup/~/~/GDRIVE"]);

    check_store(&store).await.unwrap();
    let shared: Arc<dyn BackupStore> = Arc::new(store.clone());
    check_store(&shared).await.unwrap();

    assert_eq!(container_objects(&store).await, before);
    assert_eq!(store.get(&theirs).await.unwrap(), "keep");
    store.delete(&theirs).await.unwrap();
    let left = container_objects(&store).await;
    assert!(left.is_empty(), "{left:?}");
    eprintln!(
        "objects left in the container after the conformance runs: {}",
        left.len()
    );
}

#[tokio::test]
async fn a_missing_container_is_a_backend_error_not_a_missing_object() {
    let Some(azurite) = azurite::shared() else {
        return;
    };
    let azure = azurite.azure("no-such-container").build().unwrap();
    let store = ObjectStoreStore::new(Arc::new(azure), "")
        .unwrap()
        .with_name("azure");
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    let e = store.get(&key).await.unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::Backend {
                backend: "azure",
                ..
            }
        ),
        "{}",
        Report(&e)
    );
}

#[tokio::test]
async fn a_wrong_key_is_a_backend_error_without_the_key() {
    let Some(azurite) = azurite::shared() else {
        return;
    };
    let container = azurite.new_container();
    // A valid base64 key that is not the account's: Azurite refuses the signature.
    let wrong = "aHVudGVyMi1ub3QtdGhlLWtleS1odW50ZXIyLW5vdC10aGUta2V5LWh1bnRlcjI=";
    let azure = azurite
        .azure(&container)
        .with_access_key(wrong)
        .build()
        .unwrap();
    let store = ObjectStoreStore::new(Arc::new(azure), "")
        .unwrap()
        .with_name("azure");
    assert!(!format!("{store:?}").contains(wrong));
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    let e = store.put_new(&key, "x".into()).await.unwrap_err();
    let shown = format!("{} {e:?}", Report(&e));
    assert!(matches!(e, StorageError::Backend { .. }), "{shown}");
    assert!(!shown.contains(wrong), "{shown}");
}

/// `from_url` with `az://`, configured from the environment (`AZURE_STORAGE_*`), in a child
/// run of this test with the variables set.
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
                assert_eq!(store.name(), "azure");
                assert!(!format!("{store:?}").contains(azurite::ACCOUNT_KEY));
                check_store(&store).await.unwrap();
                let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
                store.put_new(&key, "ct".into()).await.unwrap();
                assert_eq!(
                    store.path_of(&key).as_ref(),
                    "tenant/cl_1/custodian-backup/~/~/GDRIVE"
                );
                assert_eq!(store.get(&key).await.unwrap(), "ct");
            });
        return;
    }
    let Some(azurite) = azurite::shared() else {
        return;
    };
    let container = azurite.new_container();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "from_url_is_configured_from_the_environment",
            "--nocapture",
        ])
        .env(CHILD, format!("azure://{container}/tenant"))
        .env("AZURE_STORAGE_ACCOUNT_NAME", azurite::ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", azurite::ACCOUNT_KEY)
        .env("AZURE_STORAGE_ENDPOINT", &azurite.endpoint)
        .env("AZURE_ALLOW_HTTP", "true")
        .status()
        .unwrap();
    assert!(status.success(), "the child run failed: {status}");
}
