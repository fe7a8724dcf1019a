//! `ObjectStoreStore` on S3, against moto on loopback: the conformance kit (directly and
//! through `Arc<dyn BackupStore>`, leaving the bucket empty), a guard that moto honours
//! create-only puts, `from_url` configured from the environment, and the error mapping.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod object_support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use object_support::moto::{self, MotoS3 as _};
use storage::conformance::check_store;
use storage::object::ObjectStoreStore;
use storage::{BackupKey, BackupStore, BackupStoreExt, Report, StorageError};

/// Every object in the store's bucket (whatever the prefix).
async fn bucket_objects(store: &ObjectStoreStore) -> Vec<String> {
    let all: Vec<_> = store.inner().list(None).try_collect().await.unwrap();
    all.into_iter().map(|m| m.location.to_string()).collect()
}

/// The start-up guard: moto older than 5.0.15 ignores `If-None-Match: *` and silently
/// overwrites, which would let the conformance kit's create-only checks pass for the wrong
/// reason on nothing but luck. Fail loudly instead.
#[tokio::test]
async fn moto_honours_create_only_puts() {
    let Some(moto) = moto::shared() else { return };
    let s3 = moto.s3(&moto.new_bucket()).build().unwrap();
    let path = object_store::path::Path::from("guard");
    let create = || PutOptions::from(PutMode::Create);
    s3.put_opts(&path, "first".into(), create()).await.unwrap();
    let second = s3.put_opts(&path, "second".into(), create()).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "moto accepted a second create-only put ({second:?}): it is too old; \
         install moto[server]>=5.1.5 (cargo xtask ci does)"
    );
    let body = s3.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(body, "first");
}

/// The same guard for compare-and-swap puts: moto older than 5.1.5 ignores `If-Match` and
/// would let a stale update overwrite.
#[tokio::test]
async fn moto_honours_if_match() {
    let Some(moto) = moto::shared() else { return };
    let s3 = moto.s3(&moto.new_bucket()).build().unwrap();
    let path = object_store::path::Path::from("guard");
    let first = s3.put(&path, "first".into()).await.unwrap();
    let stale = object_store::UpdateVersion {
        e_tag: first.e_tag.clone(),
        version: first.version.clone(),
    };
    s3.put(&path, "second".into()).await.unwrap();
    let late = s3
        .put_opts(&path, "late".into(), PutMode::Update(stale).into())
        .await;
    assert!(
        matches!(late, Err(object_store::Error::Precondition { .. })),
        "moto accepted a put with a stale If-Match ({late:?}): it is too old; \
         install moto[server]>=5.1.5 (cargo xtask ci does)"
    );
    let body = s3.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(body, "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_directly_and_through_arc_dyn_leaves_nothing_behind() {
    let Some(moto) = moto::shared() else { return };
    let store = moto.store("backups/prod");
    // Someone else's object in the same bucket, outside and inside the prefix.
    let theirs = BackupKey::custodian_backup("cl_real", "GDRIVE").unwrap();
    store
        .put_new(&theirs, Bytes::from_static(b"keep"))
        .await
        .unwrap();
    let outside = object_store::path::Path::from("other/data");
    store.inner().put(&outside, "theirs".into()).await.unwrap();
    let before = bucket_objects(&store).await;
    assert_eq!(before.len(), 2, "{before:?}");

    check_store(&store).await.unwrap();
    let shared: Arc<dyn BackupStore> = Arc::new(store.clone());
    check_store(&shared).await.unwrap();

    let after = bucket_objects(&store).await;
    assert_eq!(after, before, "the conformance runs left objects behind");
    assert_eq!(store.get(&theirs).await.unwrap(), "keep");
    store.delete(&theirs).await.unwrap();
    store.inner().delete(&outside).await.unwrap();
    let left = bucket_objects(&store).await;
    assert!(left.is_empty(), "{left:?}");
    eprintln!(
        "objects left in the bucket after the conformance runs: {}",
        left.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_at_the_bucket_root() {
    let Some(moto) = moto::shared() else { return };
    let store = moto.store("");
    check_store(&store).await.unwrap();
    assert!(bucket_objects(&store).await.is_empty());
}

#[tokio::test]
async fn layout_and_foreign_objects() {
    let Some(moto) = moto::shared() else { return };
    let store = moto.store("/p/");
    let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1").unwrap();
    store
        .put_new(&key, Bytes::from_static(b"ct"))
        .await
        .unwrap();
    assert_eq!(
        bucket_objects(&store).await,
        ["p/cl_1/client-backup/SECP256K1/bsp_1/~"]
    );
    // Objects under the client's prefix that are not keys are skipped by `list`.
    for junk in [
        "p/cl_1/notes.txt",
        "p/cl_1/client-backup/SECP256K1/bsp_1/~/x",
    ] {
        let path = object_store::path::Path::parse(junk).unwrap();
        store.inner().put(&path, "junk".into()).await.unwrap();
    }
    assert_eq!(store.list("cl_1").await.unwrap(), [key]);
    assert!(store.list("cl_").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_bucket_is_a_backend_error_not_a_missing_object() {
    let Some(moto) = moto::shared() else { return };
    let s3 = moto.s3("no-such-bucket").build().unwrap();
    let store = ObjectStoreStore::new(Arc::new(s3), "")
        .unwrap()
        .with_name("s3");
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    let e = store.get(&key).await.unwrap_err();
    assert!(
        matches!(e, StorageError::Backend { backend: "s3", .. }),
        "{}",
        Report(&e)
    );
    let e = store.put_new(&key, "x".into()).await.unwrap_err();
    assert!(
        matches!(e, StorageError::Backend { backend: "s3", .. }),
        "{}",
        Report(&e)
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    let Some(moto) = moto::shared() else { return };
    let closed = test_services::free_port();
    let retry = object_store::RetryConfig {
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            base: 2.0,
        },
    };
    let s3 = moto
        .s3("b")
        .with_endpoint(format!("http://127.0.0.1:{closed}"))
        .with_retry(retry)
        .build()
        .unwrap();
    let store = ObjectStoreStore::new(Arc::new(s3), "")
        .unwrap()
        .with_name("s3");
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    let e = store.get(&key).await.unwrap_err();
    assert!(e.is_retryable(), "{}", Report(&e));
    let e = store.put_new(&key, "x".into()).await.unwrap_err();
    assert!(e.is_retryable(), "{}", Report(&e));
}

#[tokio::test]
async fn bad_credentials_are_a_backend_error_without_the_secret() {
    let Some(moto) = moto::shared() else { return };
    let bucket = moto.new_bucket();
    // moto accepts any credentials for S3 by default; what matters here is that whatever
    // comes back never shows the secret.
    let s3 = moto
        .s3(&bucket)
        .with_secret_access_key("hunter2-secret")
        .build()
        .unwrap();
    let store = ObjectStoreStore::new(Arc::new(s3), "").unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    if let Err(e) = store.get(&key).await {
        assert!(!format!("{} {e:?}", Report(&e)).contains("hunter2"));
    }
}

/// `from_url` reads the endpoint, credentials and region from the environment, as the AWS
/// tools do. The environment of this process cannot be changed safely, so the test runs
/// itself again as a child with the variables set.
#[test]
fn from_url_is_configured_from_the_environment() {
    const CHILD: &str = "PORTAL_BACKUP_TEST_FROM_URL_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let url = std::env::var(CHILD).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = ObjectStoreStore::from_url(&url).unwrap();
            assert_eq!(store.name(), "s3");
            assert_eq!(store.prefix(), "tenant/backups");
            assert!(!format!("{store:?}").contains("hunter2"));
            check_store(&store).await.unwrap();
            let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
            store.put_new(&key, "ct".into()).await.unwrap();
        });
        return;
    }
    let Some(moto) = moto::shared() else { return };
    let bucket = moto.new_bucket();
    let url = format!("s3://{bucket}/tenant/backups/");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "from_url_is_configured_from_the_environment",
            "--nocapture",
        ])
        .env(CHILD, &url)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "hunter2")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .status()
        .unwrap();
    assert!(status.success(), "the child run failed: {status}");
    // What the child stored through `from_url` is where the URL says.
    let s3 = moto.s3(&bucket).build().unwrap();
    let all = s3
        .list(None)
        .try_collect::<Vec<_>>()
        .await_blocking()
        .unwrap();
    let names: Vec<String> = all.into_iter().map(|m| m.location.to_string()).collect();
    assert_eq!(names, ["tenant/backups/cl_1/custodian-backup/~/~/GDRIVE"]);
}

/// Runs a future to completion on a fresh current-thread runtime.
trait AwaitBlocking: Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self)
    }
}

impl<F: Future> AwaitBlocking for F {}
