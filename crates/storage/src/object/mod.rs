//! A store in a bucket: one object per key, over the [`object_store`] crate (Amazon S3 and
//! S3-compatible servers, Google Cloud Storage, Azure Blob Storage, or any other
//! [`ObjectStore`]).
//!
//! # Layout
//! The object of a key is named `{prefix}/{path form}`, for example
//! `backups/cl_123/client-backup/SECP256K1/bsp_456/~` under the prefix `backups` (see
//! [`BackupKey`](crate::BackupKey#path-form)); with an empty prefix, the path form alone.
//! Nothing else is stored. `list` lists the objects under `{prefix}/{client id}/` and skips
//! any whose name is not a key's path form, so a bucket may be shared with other data.
//!
//! # What each operation relies on
//! * **Create-only puts** are conditional puts ([`object_store::PutMode::Create`]): S3 sends
//!   `If-None-Match: *` (object_store's default `S3ConditionalPut::ETagMatch`; AWS S3 honours
//!   it since August 2024, as do MinIO and moto ≥ 5.0.15), GCS sends
//!   `x-goog-if-generation-match: 0`, Azure `If-None-Match: *`. The server decides, so of
//!   many racing writers exactly one wins. An S3-compatible server that ignores
//!   `If-None-Match` would silently overwrite: for such a server, build the store with
//!   [`ObjectStoreStore::without_conditional_create`] (create-only puts are then refused as
//!   [`StorageError::NotSupported`]) or prove it with the conformance kit first.
//! * **Overwrites** are plain `PUT`s, atomic on every one of these services.
//! * **Compare and swap** ([`PutMode::Update`]) is object_store's
//!   [`object_store::PutMode::Update`]: S3 and Azure send `If-Match: <ETag>` (S3 needs
//!   object_store's default `S3ConditionalPut::ETagMatch`; AWS S3 honours it since November
//!   2024, as do MinIO and moto ≥ 5.1.5), GCS sends `x-goog-if-generation-match:
//!   <generation>`. The server decides; a failed precondition (`412`, or S3's `409` left after
//!   object_store's retries, or a `404` for an object deleted since) is
//!   [`StorageError::Conflict`]. [`BackupStore::get_versioned`] reports the object's ETag
//!   and version (GCS generation, S3 version id where versioning is on). S3's ETag of a
//!   single-request upload is the MD5 of the body, so an object replaced by the very same
//!   bytes counts as unchanged — harmless for ciphertexts, which never repeat. For a backend
//!   that ignores `If-Match`, build the store with
//!   [`ObjectStoreStore::without_compare_and_swap`].
//! * **Deleting** a key with nothing stored succeeds.
//! * **Bodies** go up in one request (no multipart upload), so an object is either all there
//!   or absent.
//! * **Batches** ([`BackupStore::read_clients`], [`BackupStore::put_many`]) keep a few
//!   requests in flight. Where the bucket lists in ascending key order
//!   ([`ObjectStoreStore::with_sorted_listing`]; [`ObjectStoreStore::from_url`] sets it for
//!   S3 general purpose buckets, Cloud Storage and Azure), a batch of up to 64 clients is
//!   found by one listing instead of a LIST request per client.
//!
//! # Errors
//! object_store's `NotFound` and `AlreadyExists` (and a `Precondition` failure of a
//! create-only put) become [`StorageError::NotFound`] and [`StorageError::AlreadyExists`];
//! any of the three after a compare-and-swap put becomes [`StorageError::Conflict`];
//! `NotSupported` and `NotImplemented` become [`StorageError::NotSupported`]; connection
//! failures, time-outs, throttling (`429`) and server errors (`5xx`) that are left after
//! object_store's own retries become the retryable [`StorageError::Unavailable`]; everything
//! else (permissions, bad credentials, a missing bucket) is [`StorageError::Backend`].
//! Credentials never appear in `Debug` or in an error: object_store keeps them out of its
//! messages (a SAS token's URL is redacted), and this store's `Debug` shows only the
//! backend, the bucket and the prefix.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use storage::{BackupKey, BackupStore, BackupStoreExt, object::ObjectStoreStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // Any `object_store::ObjectStore`: here the in-memory one; in production the store that
//! // `ObjectStoreStore::from_url("s3://bucket/prefix")` builds from the environment.
//! let bucket = Arc::new(object_store::memory::InMemory::new());
//! let store = ObjectStoreStore::new(bucket, "backups")?;
//! let key = BackupKey::client_backup("cl_1", "bsp_1", "ED25519")?;
//! store.put_new(&key, "ciphertext".into()).await?;
//! assert_eq!(store.get(&key).await?, "ciphertext");
//! assert!(store.put_new(&key, "other".into()).await.unwrap_err().is_already_exists());
//! assert_eq!(store.path_of(&key).as_ref(), "backups/cl_1/client-backup/ED25519/bsp_1/~");
//! assert_eq!(store.list("cl_1").await?, [key]);
//! # Ok::<_, storage::StorageError>(()) }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

mod batch;

use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{
    BackupStore, Capabilities, GET_VERSIONED_OPERATION, ObjectVersion, PutMode, PutOptions,
    UPDATE_OPERATION,
};

/// The [`name`](BackupStore::name) of a store built by [`ObjectStoreStore::new`].
pub const DEFAULT_NAME: &str = "object-store";

/// A [`BackupStore`] over any [`ObjectStore`], under a key prefix; see the
/// [module docs](self).
#[derive(Clone)]
pub struct ObjectStoreStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    name: &'static str,
    conditional_create: bool,
    compare_and_swap: bool,
    sorted_listing: bool,
}

impl fmt::Debug for ObjectStoreStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inner store's Display names its bucket (or account and container) only; its
        // Debug could show a credential.
        f.debug_struct("ObjectStoreStore")
            .field("name", &self.name)
            .field("bucket", &format_args!("{}", self.inner))
            .field("prefix", &self.prefix())
            .field("conditional_create", &self.conditional_create)
            .field("compare_and_swap", &self.compare_and_swap)
            .field("sorted_listing", &self.sorted_listing)
            .finish()
    }
}

impl ObjectStoreStore {
    /// A store keeping its objects in `store` under `prefix` (`""` for the bucket's root;
    /// leading and trailing `/` are ignored), named [`DEFAULT_NAME`]. Create-only puts are
    /// conditional puts: the backend must honour [`object_store::PutMode::Create`] (S3, GCS,
    /// Azure and object_store's `InMemory` and `LocalFileSystem` do); if yours does not, call
    /// [`without_conditional_create`](Self::without_conditional_create).
    ///
    /// # Errors
    /// [`StorageError::Backend`] when `prefix` is not a valid object path (an empty segment
    /// as in `a//b`, a `.` or `..` segment, a control character).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, StorageError> {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            None
        } else {
            Some(Path::parse(trimmed).map_err(|e| StorageError::Backend {
                backend: DEFAULT_NAME,
                source: format!("the key prefix is not a valid object path: {e}").into(),
            })?)
        };
        Ok(Self {
            inner: store,
            prefix,
            name: DEFAULT_NAME,
            conditional_create: true,
            compare_and_swap: true,
            sorted_listing: false,
        })
    }

    /// A store for `s3://<bucket>[/<prefix>]`, `gs://<bucket>[/<prefix>]` or
    /// `az://<container>[/<prefix>]` (also `azure://`; the scheme is case-insensitive),
    /// configured from the environment as each cloud's own tools are. Synchronous: nothing is
    /// sent until the first operation, so a wrong endpoint or credential shows up there.
    ///
    /// | URL | builder | environment (examples) | [`name`](BackupStore::name) |
    /// |---|---|---|---|
    /// | `s3://` | `AmazonS3Builder::from_env()` | `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `AWS_CONDITIONAL_PUT` | `s3` |
    /// | `gs://` | `GoogleCloudStorageBuilder::from_env()` | `GOOGLE_SERVICE_ACCOUNT` (a key file), `GOOGLE_SERVICE_ACCOUNT_KEY` (its JSON), `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server | `gcs` |
    /// | `az://` | `MicrosoftAzureBuilder::from_env()` | `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, `AZURE_STORAGE_CLIENT_ID`…, `AZURE_STORAGE_USE_EMULATOR` | `azure` |
    ///
    /// The bucket and prefix come from the URL, overriding the environment. With
    /// `AWS_CONDITIONAL_PUT=disabled` the S3 store refuses create-only puts
    /// ([`StorageError::NotSupported`]) instead of risking an overwrite.
    ///
    /// ```
    /// # #[cfg(feature = "s3")] {
    /// let store = storage::object::ObjectStoreStore::from_url("s3://my-bucket/backups")?;
    /// assert_eq!(storage::BackupStore::name(&store), "s3");
    /// assert_eq!(store.prefix(), "backups");
    /// # }
    /// # Ok::<_, storage::StorageError>(())
    /// ```
    ///
    /// # Errors
    /// [`StorageError::NotSupported`] for a scheme other than these, or one whose cloud was
    /// not compiled in (naming the feature: `s3`, `gcs`, `azure`); [`StorageError::Backend`]
    /// for a malformed URL (no bucket, a user name or password, a query) or a configuration
    /// the cloud's builder rejects. The URL is never echoed: it could hold a credential.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let malformed = |reason: &str| StorageError::Backend {
            backend: DEFAULT_NAME,
            source: format!("malformed object store URL: {reason}").into(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| malformed("expected <scheme>://<bucket>[/<prefix>]"))?;
        let scheme = scheme.to_ascii_lowercase();
        let cloud = match scheme.as_str() {
            "s3" => Cloud::S3,
            "gs" => Cloud::Gcs,
            "az" | "azure" => Cloud::Azure,
            _ => {
                return Err(StorageError::NotSupported {
                    operation: "this URL scheme (use s3://, gs://, az:// or azure://)",
                    backend: DEFAULT_NAME,
                });
            }
        };
        if rest.contains(['?', '#']) {
            return Err(malformed("a query or fragment is not allowed"));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(malformed(
                "credentials in the URL are not allowed (use the environment)",
            ));
        }
        if bucket.is_empty() {
            return Err(malformed("it names no bucket or container"));
        }
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(malformed(
                "the bucket or container name holds a character other than ASCII letters, digits, '-', '_' and '.'",
            ));
        }
        let (inner, sorted_listing) = cloud.build(bucket)?;
        let mut store = Self::new(inner, prefix)?;
        store.name = cloud.name();
        store.sorted_listing = sorted_listing;
        Ok(store)
    }

    /// This store, named `name` in errors and [`BackupStore::name`] (for example `"minio"`).
    #[must_use]
    pub fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// This store, refusing create-only puts with [`StorageError::NotSupported`] (and
    /// reporting [`Capabilities::conditional_create`] false): for a backend that does not
    /// honour conditional puts, where a create-only put could silently overwrite.
    #[must_use]
    pub fn without_conditional_create(mut self) -> Self {
        self.conditional_create = false;
        self
    }

    /// This store, refusing compare-and-swap puts and versioned reads with
    /// [`StorageError::NotSupported`] (and reporting [`Capabilities::compare_and_swap`]
    /// false): for a backend that does not honour object_store's
    /// [`object_store::PutMode::Update`] (`LocalFileSystem`, an S3-compatible server that
    /// ignores `If-Match`).
    #[must_use]
    pub fn without_compare_and_swap(mut self) -> Self {
        self.compare_and_swap = false;
        self
    }

    /// This store, relying on its backend to list objects in ascending byte order of their
    /// names, as S3 general purpose buckets, Cloud Storage, Azure and object_store's
    /// `InMemory` do (S3 Express directory buckets and `LocalFileSystem` do not). Batch reads
    /// ([`BackupStore::read_clients`]) then find a batch of up to 64 clients by one listing
    /// instead of a LIST request per client ([`BackupStore::batch_size`] is 64); a listing
    /// seen out of order falls back to one per client. [`from_url`](Self::from_url) sets it
    /// where the cloud promises that order.
    #[must_use]
    pub fn with_sorted_listing(mut self) -> Self {
        self.sorted_listing = true;
        self
    }

    /// The key prefix, without leading or trailing `/` (`""` for none).
    #[must_use]
    pub fn prefix(&self) -> &str {
        self.prefix.as_ref().map_or("", AsRef::as_ref)
    }

    /// The object store underneath.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The object name of `key`: `{prefix}/{path form}`.
    #[must_use]
    pub fn path_of(&self, key: &BackupKey) -> Path {
        self.under_prefix(&key.segments())
    }

    fn under_prefix(&self, segments: &[&str]) -> Path {
        use object_store::path::PathPart;
        // Every key part is 1–128 bytes of `A-Z a-z 0-9 - _ .` not starting with `.`, or `~`:
        // valid path parts, kept as they are (`PathPart::from` would percent-encode `~`).
        let parts = segments
            .iter()
            .map(|s| PathPart::parse(s).unwrap_or_else(|_| PathPart::from(*s)));
        let mut path = self.prefix.clone().unwrap_or_default();
        path.extend(parts);
        path
    }

    /// The key an object name under the prefix is the path form of; `None` for anything
    /// else (not ours: skipped).
    fn key_at(&self, location: &Path) -> Option<BackupKey> {
        let skip = self.prefix.as_ref().map_or(0, |p| p.parts().count());
        let parts: Vec<_> = location.parts().skip(skip).collect();
        let path = parts
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<&str>>()
            .join("/");
        BackupKey::from_path(&path).ok()
    }

    fn error(
        &self,
        operation: &'static str,
        key: &BackupKey,
        e: object_store::Error,
    ) -> StorageError {
        use object_store::Error as E;
        match e {
            // A compare-and-swap put that found another object, or none (S3 answers 404 or,
            // for racing conditional writes, 409).
            E::Precondition { .. } | E::NotFound { .. } | E::AlreadyExists { .. }
                if operation == UPDATE_OPERATION && !names_missing_bucket(&e) =>
            {
                StorageError::Conflict { key: key.clone() }
            }
            // A missing bucket or container also answers 404: that is a configuration error,
            // never "nothing stored under this key".
            E::NotFound { .. } if !names_missing_bucket(&e) => {
                StorageError::NotFound { key: key.clone() }
            }
            E::AlreadyExists { .. } => StorageError::AlreadyExists { key: key.clone() },
            // GCS and S3-compatible servers answer a failed create-only put with 412.
            E::Precondition { .. } if operation == PutMode::Create.operation() => {
                StorageError::AlreadyExists { key: key.clone() }
            }
            other => self.other_error(operation, other),
        }
    }

    fn other_error(&self, operation: &'static str, e: object_store::Error) -> StorageError {
        use object_store::Error as E;
        match e {
            E::NotSupported { .. } | E::NotImplemented { .. } => StorageError::NotSupported {
                operation,
                backend: self.name,
            },
            other if is_transient(&other) => StorageError::Unavailable {
                backend: self.name,
                source: Box::new(other),
            },
            other => StorageError::Backend {
                backend: self.name,
                source: Box::new(other),
            },
        }
    }
}

/// Whether a "not found" error is about the bucket (or container), by the error code in the
/// service's answer: S3's and GCS's `NoSuchBucket`, Azure's `ContainerNotFound`.
fn names_missing_bucket(e: &object_store::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if ["NoSuchBucket", "ContainerNotFound"]
            .iter()
            .any(|code| text.contains(code))
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// Whether an error left after object_store's own retries is worth retrying later: a
/// connection failure or time-out, throttling (`429`) or a server error (`5xx`).
fn is_transient(e: &object_store::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        if let Some(http) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(
                http.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            );
        }
        // object_store's request error (not public) says "Server returned non-2xx status
        // code: 503 Service Unavailable: …".
        if let Some(status) = err
            .to_string()
            .strip_prefix("Server returned non-2xx status code: ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
        {
            return status == 429 || (500..600).contains(&status);
        }
        current = err.source();
    }
    false
}

/// The clouds [`ObjectStoreStore::from_url`] knows.
#[derive(Clone, Copy)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    fn name(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Gcs => "gcs",
            Self::Azure => "azure",
        }
    }

    /// The cloud's store for `bucket`, and whether it lists in ascending key order.
    fn build(self, bucket: &str) -> Result<(Arc<dyn ObjectStore>, bool), StorageError> {
        match self {
            Self::S3 => build_s3(bucket),
            Self::Gcs => Ok((build_gcs(bucket)?, true)),
            Self::Azure => Ok((build_azure(bucket)?, true)),
        }
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn builder_error(backend: &'static str) -> impl FnOnce(object_store::Error) -> StorageError {
    move |e| StorageError::Backend {
        backend,
        source: Box::new(e),
    }
}

/// S3 lists general purpose buckets in ascending key order; directory buckets (S3 Express
/// One Zone, named `…--x-s3`) in no promised order.
#[cfg(feature = "s3")]
fn build_s3(bucket: &str) -> Result<(Arc<dyn ObjectStore>, bool), StorageError> {
    use object_store::aws::AmazonS3ConfigKey;
    let builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    let express = bucket.ends_with("--x-s3")
        || builder
            .get_config_value(&AmazonS3ConfigKey::S3Express)
            .is_some_and(|on| on.eq_ignore_ascii_case("true"));
    let store = builder.build().map_err(builder_error("s3"))?;
    Ok((Arc::new(store), !express))
}

#[cfg(not(feature = "s3"))]
fn build_s3(_bucket: &str) -> Result<(Arc<dyn ObjectStore>, bool), StorageError> {
    Err(StorageError::NotSupported {
        operation: "s3:// URLs without the `s3` feature",
        backend: DEFAULT_NAME,
    })
}

#[cfg(feature = "gcs")]
fn build_gcs(bucket: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(builder_error("gcs"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "gcs"))]
fn build_gcs(_bucket: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Err(StorageError::NotSupported {
        operation: "gs:// URLs without the `gcs` feature",
        backend: DEFAULT_NAME,
    })
}

#[cfg(feature = "azure")]
fn build_azure(container: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let store = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .build()
        .map_err(builder_error("azure"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "azure"))]
fn build_azure(_container: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Err(StorageError::NotSupported {
        operation: "az:// URLs without the `azure` feature",
        backend: DEFAULT_NAME,
    })
}

#[async_trait::async_trait]
impl BackupStore for ObjectStoreStore {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::all();
        caps.conditional_create = self.conditional_create;
        caps.compare_and_swap = self.compare_and_swap;
        caps
    }

    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        // Exhaustive inside this crate: a new mode must be handled here before it compiles.
        let operation = options.mode.operation();
        let mode = match options.mode {
            PutMode::Create if !self.conditional_create => {
                return Err(StorageError::NotSupported {
                    operation,
                    backend: self.name,
                });
            }
            PutMode::Create => object_store::PutMode::Create,
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Update(_) if !self.compare_and_swap => {
                return Err(StorageError::NotSupported {
                    operation,
                    backend: self.name,
                });
            }
            PutMode::Update(version) => {
                object_store::PutMode::Update(object_store::UpdateVersion {
                    e_tag: version.e_tag().map(str::to_owned),
                    version: version.version().map(str::to_owned),
                })
            }
        };
        self.inner
            .put_opts(&self.path_of(key), body.into(), mode.into())
            .await
            .map(drop)
            .map_err(|e| self.error(operation, key, e))
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        let result = self
            .inner
            .get_opts(&self.path_of(key), object_store::GetOptions::default())
            .await
            .map_err(|e| self.error("get", key, e))?;
        result.bytes().await.map_err(|e| self.error("get", key, e))
    }

    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        if !self.compare_and_swap {
            return Err(StorageError::NotSupported {
                operation: GET_VERSIONED_OPERATION,
                backend: self.name,
            });
        }
        let result = self
            .inner
            .get_opts(&self.path_of(key), object_store::GetOptions::default())
            .await
            .map_err(|e| self.error("get", key, e))?;
        let version = ObjectVersion::new(result.meta.e_tag.clone(), result.meta.version.clone());
        let body = result
            .bytes()
            .await
            .map_err(|e| self.error("get", key, e))?;
        Ok((body, version))
    }

    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        match self.inner.delete(&self.path_of(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        BackupKey::check_client_id(client_id)?;
        let dir = self.under_prefix(&[client_id]);
        // object_store lists by whole segments: `cl_1` never matches `cl_10/…`.
        let objects: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.other_error("list", e))?;
        let mut keys: Vec<BackupKey> = objects
            .iter()
            .filter_map(|meta| {
                self.key_at(&meta.location)
                    .filter(|k| k.client_id() == client_id)
            })
            .collect();
        keys.sort_by_cached_key(BackupKey::to_path);
        keys.dedup();
        Ok(keys)
    }

    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        // One delimiter listing of the prefix: its "directories" are the client ids.
        let listed = self
            .inner
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .map_err(|e| self.other_error("list clients", e))?;
        let mut clients: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|dir| dir.filename())
            .filter(|name| BackupKey::check_client_id(name).is_ok())
            .map(str::to_owned)
            .collect();
        clients.sort_unstable();
        clients.dedup();
        Ok(clients)
    }

    /// The clients as the bucket's listing of the prefix streams in: the first segment of each
    /// object's path under the prefix, once. S3, Cloud Storage and Azure list in ascending
    /// key order, so a client's objects come together and the ids come out sorted; only the
    /// page in flight is held.
    fn stream_clients(&self) -> crate::ClientStream<'_> {
        let skip = self.prefix.as_ref().map_or(0, |p| p.parts().count());
        let mut last: Option<String> = None;
        self.inner
            .list(self.prefix.as_ref())
            .map_err(move |e| self.other_error("list clients", e))
            .try_filter_map(move |meta| {
                let mut parts = meta.location.parts().skip(skip);
                let client = parts.next().map(|part| part.as_ref().to_owned());
                let in_a_client_directory = parts.next().is_some();
                let new = client.filter(|client| {
                    in_a_client_directory
                        && BackupKey::check_client_id(client).is_ok()
                        && last.as_ref() != Some(client)
                });
                if let Some(client) = &new {
                    last = Some(client.clone());
                }
                std::future::ready(Ok(new))
            })
            // An error ends the listing.
            .scan(false, |failed, item| {
                let item = (!*failed).then(|| {
                    *failed = item.is_err();
                    item
                });
                std::future::ready(item)
            })
            .boxed()
    }

    fn batch_size(&self) -> usize {
        if self.sorted_listing {
            batch::BATCH_SIZE
        } else {
            1
        }
    }

    async fn read_clients(&self, client_ids: &[String]) -> Vec<crate::batch::ClientObjects> {
        self.read_batch(client_ids).await
    }

    async fn put_many(&self, puts: Vec<crate::batch::Put>) -> Vec<Result<(), StorageError>> {
        self.put_batch(puts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use object_store::memory::InMemory;

    #[test]
    fn prefixes_and_paths() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
        let s = ObjectStoreStore::new(Arc::clone(&mem), "/a/b/").unwrap();
        assert_eq!(s.prefix(), "a/b");
        assert_eq!(
            s.path_of(&key).as_ref(),
            "a/b/cl_1/custodian-backup/~/~/GDRIVE"
        );
        let s = ObjectStoreStore::new(Arc::clone(&mem), "").unwrap();
        assert_eq!(s.prefix(), "");
        assert_eq!(s.path_of(&key).as_ref(), "cl_1/custodian-backup/~/~/GDRIVE");
        for bad in ["a//b", "a/../b", "a/./b", "a\nb"] {
            assert!(
                ObjectStoreStore::new(Arc::clone(&mem), bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn from_url_rejects_without_echoing() {
        for (url, want) in [
            ("http://bucket/x", "scheme"),
            ("s3:/bucket", "expected"),
            ("s3://", "no bucket"),
            ("s3:///prefix", "no bucket"),
            ("s3://key:hunter2@bucket/p", "credentials"),
            ("gs://bucket/p?sig=hunter2", "query"),
            ("az://bu cket/p", "character"),
        ] {
            let e = ObjectStoreStore::from_url(url).unwrap_err();
            let shown = format!("{} {e:?}", crate::Report(&e));
            assert!(shown.contains(want), "{url}: {shown}");
            assert!(!shown.contains("hunter2"), "{url}: {shown}");
        }
    }

    #[test]
    fn from_url_names_the_missing_feature() {
        for (url, feature, compiled) in [
            ("s3://b/p", "`s3`", cfg!(feature = "s3")),
            ("gs://b/p", "`gcs`", cfg!(feature = "gcs")),
            ("az://b/p", "`azure`", cfg!(feature = "azure")),
        ] {
            if compiled {
                continue;
            }
            let e = ObjectStoreStore::from_url(url).unwrap_err();
            assert!(e.is_not_supported(), "{e}");
            assert!(e.to_string().contains(feature), "{e}");
        }
    }

    #[test]
    fn debug_shows_no_credentials() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let s = ObjectStoreStore::new(mem, "p").unwrap().with_name("minio");
        let shown = format!("{s:?}");
        assert!(
            shown.contains("minio") && shown.contains("\"p\""),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn refuses_create_without_conditional_puts() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let s = ObjectStoreStore::new(mem, "")
            .unwrap()
            .without_conditional_create();
        assert!(!s.capabilities().conditional_create);
        let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
        let e = s
            .put(&key, Bytes::from_static(b"x"), PutOptions::create())
            .await
            .unwrap_err();
        assert!(e.is_not_supported(), "{e}");
        assert!(s.get(&key).await.unwrap_err().is_not_found());
    }
}
