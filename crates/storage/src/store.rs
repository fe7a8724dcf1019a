//! The store trait, its options and capabilities.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt as _};

use crate::batch::{self, ClientObjects, Put};
use crate::error::StorageError;
use crate::key::BackupKey;

/// What a store can do. Operations it cannot do return [`StorageError::NotSupported`], never
/// a fake success (a Portal-managed store cannot delete, list or create only; an
/// append-only bucket cannot overwrite).
///
/// Build one from [`Capabilities::all`] or [`Capabilities::default`] (nothing) and set the
/// fields:
///
/// ```
/// let mut caps = storage::Capabilities::all();
/// caps.delete = false;
/// caps.list = false;
/// assert!(caps.conditional_create);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`PutMode::Create`] is atomic: of many concurrent create-only puts of one key, exactly
    /// one succeeds and the others get [`StorageError::AlreadyExists`].
    pub conditional_create: bool,
    /// [`PutMode::Overwrite`] replaces an object atomically (a reader sees the old or the new
    /// body, never a mix).
    pub overwrite: bool,
    /// [`BackupStore::delete`] works.
    pub delete: bool,
    /// [`BackupStore::list`] works.
    pub list: bool,
    /// A put that returned `Ok` survives a crash of this process (and, where the medium
    /// allows, of the machine). False for [`MemoryStore`](crate::memory::MemoryStore).
    pub durable: bool,
    /// [`BackupStore::get_versioned`] reports the version of what is stored, and
    /// [`PutMode::Update`] replaces an object only if it is still that version, decided
    /// atomically by the store: of many concurrent updates from one version, exactly one
    /// succeeds and the others get [`StorageError::Conflict`] and change nothing.
    pub compare_and_swap: bool,
}

impl Capabilities {
    /// Every capability.
    #[must_use]
    pub fn all() -> Self {
        Self {
            conditional_create: true,
            overwrite: true,
            delete: true,
            list: true,
            durable: true,
            compare_and_swap: true,
        }
    }
}

/// The version of a stored object, as [`BackupStore::get_versioned`] reports it: what
/// [`PutMode::Update`] compares with the stored object. Modelled on object_store's
/// `UpdateVersion`.
///
/// Opaque to callers: compare it only with versions of the same store and key. A store sets
/// the fields it compares (an entity tag, a version number, or both) and must tell apart
/// objects written one after the other, including a key deleted and written again.
///
/// ```
/// let v = storage::ObjectVersion::new(Some("\"etag\"".into()), None);
/// assert_eq!(v.e_tag(), Some("\"etag\""));
/// assert_eq!(storage::ObjectVersion::from_version("7").version(), Some("7"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    e_tag: Option<String>,
    version: Option<String>,
}

impl ObjectVersion {
    /// A version with an entity tag (HTTP `ETag`, what S3 and Azure compare) and a version
    /// id or number (what GCS and PostgreSQL compare), either of which may be absent.
    #[must_use]
    pub fn new(e_tag: Option<String>, version: Option<String>) -> Self {
        Self { e_tag, version }
    }

    /// A version with a version id or number only.
    #[must_use]
    pub fn from_version(version: impl Into<String>) -> Self {
        Self::new(None, Some(version.into()))
    }

    /// The entity tag, if the store has one.
    #[must_use]
    pub fn e_tag(&self) -> Option<&str> {
        self.e_tag.as_deref()
    }

    /// The version id or number, if the store has one.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

/// How a put treats an object already stored under the key. Modelled on object_store's
/// `PutMode`; new modes may be added, so a store matches with a `_` arm that returns
/// [`StorageError::NotSupported`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutMode {
    /// Store only if nothing is stored under the key; otherwise fail with
    /// [`StorageError::AlreadyExists`] and leave the stored object as it was. The default:
    /// a backup is never silently replaced.
    #[default]
    Create,
    /// Store, replacing whatever is stored under the key.
    Overwrite,
    /// Compare and swap: replace the stored object only if it is still this version (as
    /// [`BackupStore::get_versioned`] reported it); otherwise — replaced or deleted since —
    /// fail with [`StorageError::Conflict`] and change nothing. Needs
    /// [`Capabilities::compare_and_swap`]; stores without it return
    /// [`StorageError::NotSupported`].
    Update(ObjectVersion),
}

impl PutMode {
    /// The operation's name in [`StorageError::NotSupported`]: `"put (create only)"`,
    /// `"put (overwrite)"` or `"put (compare and swap)"`.
    #[must_use]
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Create => "put (create only)",
            Self::Overwrite => "put (overwrite)",
            Self::Update(_) => UPDATE_OPERATION,
        }
    }
}

/// The operation's name of [`PutMode::Update`] in errors.
pub(crate) const UPDATE_OPERATION: &str = "put (compare and swap)";

/// The operation's name of [`BackupStore::get_versioned`] in errors.
pub(crate) const GET_VERSIONED_OPERATION: &str = "get (versioned)";

/// Options of [`BackupStore::put`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PutOptions {
    /// Create only (the default), overwrite, or compare and swap.
    pub mode: PutMode,
}

impl PutOptions {
    /// Create only: fail with [`StorageError::AlreadyExists`] if something is stored.
    #[must_use]
    pub fn create() -> Self {
        Self {
            mode: PutMode::Create,
        }
    }

    /// Overwrite whatever is stored.
    #[must_use]
    pub fn overwrite() -> Self {
        Self {
            mode: PutMode::Overwrite,
        }
    }

    /// Compare and swap: replace the stored object only if it is still `version`, else fail
    /// with [`StorageError::Conflict`] (see [`PutMode::Update`]).
    #[must_use]
    pub fn update(version: ObjectVersion) -> Self {
        Self {
            mode: PutMode::Update(version),
        }
    }
}

impl From<PutMode> for PutOptions {
    fn from(mode: PutMode) -> Self {
        Self { mode }
    }
}

/// Where backup ciphertexts are kept: Portal, a directory, a database, a bucket.
///
/// A store keeps opaque bytes under a [`BackupKey`]. It never sees a key or a plaintext
/// share: what it is given is already envelope-encrypted.
///
/// # Contract
/// * `get` after a successful `put` returns exactly the body put, whatever its size (the
///   conformance kit checks 5 MiB), until the next successful `put` or `delete` of that key.
/// * A `put` is atomic: a concurrent or later `get` sees the old body or the new one, never a
///   mix, a prefix or an empty object, even if the writer crashes (for a
///   [`durable`](Capabilities::durable) store, even if the process dies right after).
/// * [`PutMode::Create`] fails with [`StorageError::AlreadyExists`] if anything is stored
///   under the key, and then changes nothing; of many concurrent create-only puts of one key
///   exactly one succeeds. A store that cannot guarantee that reports
///   `conditional_create: false` and returns [`StorageError::NotSupported`] for it.
/// * [`PutMode::Update`]`(v)` replaces the object only if it is still version `v` (as
///   [`get_versioned`](Self::get_versioned) reported it), atomically: otherwise, and when
///   nothing is stored, it fails with [`StorageError::Conflict`] and changes nothing; of many
///   concurrent updates from one version exactly one succeeds. A store that cannot decide
///   that atomically reports `compare_and_swap: false` and returns
///   [`StorageError::NotSupported`] for `get_versioned` and for the mode.
/// * `get` of a key with nothing stored fails with [`StorageError::NotFound`].
/// * `delete` removes the object; deleting a key with nothing stored succeeds (as on S3).
/// * `list(client_id)` returns the keys of that client's objects (exactly that client: not
///   `cl_10`'s for `cl_1`), sorted by [path form](BackupKey#path-form).
/// * Whatever [`capabilities`](Self::capabilities) says is missing returns
///   [`StorageError::NotSupported`] naming the operation and the store, and does nothing.
/// * Transport failures worth retrying are [`StorageError::Unavailable`].
/// * Safe to use from many tasks at once through `Arc<dyn BackupStore>`.
///
/// # Implementing
/// Map keys to names with [`BackupKey::to_path`] (and back with [`BackupKey::from_path`]),
/// or to columns with its accessors. Prove the store with
/// `conformance::check_store` (feature `conformance`), or one test per check with
/// `store_conformance_tests!`. The guide `storage::docs::writing_a_store` (same feature)
/// walks through a complete store.
///
/// # Wrappers
/// A decorator (retries, metrics, replication) implements this trait over an inner store
/// and must forward *every* method, [`capabilities`](Self::capabilities) included; mark the
/// impl `#[deny(clippy::missing_trait_methods)]` as the `Arc` and `Box` impls here are.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use storage::{BackupKey, BackupStore, PutOptions, memory::MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
/// let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1")?;
/// store.put(&key, Bytes::from_static(b"ciphertext"), PutOptions::create()).await?;
/// assert_eq!(store.get(&key).await?, "ciphertext");
/// let again = store.put(&key, Bytes::from_static(b"other"), PutOptions::create()).await;
/// assert!(again.unwrap_err().is_already_exists());
/// # Ok::<_, storage::StorageError>(()) }).unwrap();
/// ```
#[async_trait::async_trait]
pub trait BackupStore: fmt::Debug + Send + Sync + 'static {
    /// A short name for errors and logs: `memory`, `fs`, `portal`, `postgres`, `s3`, or an
    /// integrator's own.
    fn name(&self) -> &'static str;

    /// What this store can do.
    fn capabilities(&self) -> Capabilities;

    /// Stores `body` under `key`.
    ///
    /// # Errors
    /// [`StorageError::AlreadyExists`] for [`PutMode::Create`] when something is stored;
    /// [`StorageError::Conflict`] for [`PutMode::Update`] when the stored object is not that
    /// version any more; [`StorageError::NotSupported`] for a mode the store cannot do;
    /// transport and backend errors.
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError>;

    /// The body stored under `key`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when nothing is stored; transport and backend errors.
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError>;

    /// The body stored under `key` and its version, to replace it later only if it is still
    /// that object ([`PutMode::Update`]). Stores with [`Capabilities::compare_and_swap`]
    /// implement it; the default answers [`StorageError::NotSupported`].
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when nothing is stored; [`StorageError::NotSupported`]
    /// unless [`Capabilities::compare_and_swap`]; transport and backend errors.
    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        let _ = key;
        Err(StorageError::NotSupported {
            operation: GET_VERSIONED_OPERATION,
            backend: self.name(),
        })
    }

    /// Removes what is stored under `key`; succeeds if nothing is.
    ///
    /// # Errors
    /// [`StorageError::NotSupported`] unless [`Capabilities::delete`]; transport and backend
    /// errors.
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError>;

    /// The keys of every object stored for `client_id`, sorted by path form.
    ///
    /// # Errors
    /// [`StorageError::NotSupported`] unless [`Capabilities::list`];
    /// [`StorageError::InvalidKey`] for a client id that breaks the
    /// [rules](BackupKey#rules-for-every-part); transport and backend errors.
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError>;

    /// The id of every client with at least one object stored, sorted: what a store-wide
    /// restore drill or a rotation walks. Stores that can [`list`](BackupStore::list) should
    /// implement it; the default answers [`StorageError::NotSupported`].
    ///
    /// # Errors
    /// [`StorageError::NotSupported`] when the store cannot enumerate its clients; transport
    /// and backend errors.
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        Err(StorageError::NotSupported {
            operation: "list clients",
            backend: self.name(),
        })
    }

    /// The clients of [`list_clients`](BackupStore::list_clients) as a stream, for store-wide
    /// work that should start at once and hold no more than it works on: each client with at
    /// least one object, once, in an order the store chooses (ascending where the store lists
    /// in order). An error ends the stream. The default streams the result of
    /// [`list_clients`](BackupStore::list_clients); stores that can list in pages override it
    /// (the file store walks its directory as the stream is read, PostgreSQL pages by client
    /// id, object stores stream their listing).
    fn stream_clients(&self) -> ClientStream<'_> {
        stream_of_list(self.list_clients())
    }

    /// How many clients one [`read_clients`](Self::read_clients) call, or how many objects
    /// one [`put_many`](Self::put_many) call, should carry: more than 1 where one call for a
    /// batch costs much less than a call per item (one SQL statement on PostgreSQL). The
    /// default, 1, is for stores whose batch calls would only do the items in turn.
    fn batch_size(&self) -> usize {
        1
    }

    /// Every object of each client of `client_ids`, one entry per client in their order:
    /// what [`list`](Self::list) and then [`get_versioned`](Self::get_versioned) of each key
    /// give ([`get`](Self::get), with no version, where the store cannot compare and swap).
    /// Each client is read as those calls would read it, not as one snapshot of the batch.
    /// The default, [`batch::read_clients_one_by_one`], makes exactly those calls.
    async fn read_clients(&self, client_ids: &[String]) -> Vec<ClientObjects> {
        batch::read_clients_one_by_one(self, client_ids).await
    }

    /// Each put of `puts` as [`put`](Self::put) does it, one result per put in their order.
    /// Not a transaction: each put succeeds or fails on its own, with `put`'s errors. A key
    /// should appear at most once in a batch. The default, [`batch::put_one_by_one`], puts
    /// them one at a time.
    async fn put_many(&self, puts: Vec<Put>) -> Vec<Result<(), StorageError>> {
        batch::put_one_by_one(self, puts).await
    }
}

/// What [`BackupStore::stream_clients`] returns: client ids, or the error that ended the
/// listing.
pub type ClientStream<'a> = BoxStream<'a, Result<String, StorageError>>;

/// A listing that comes whole, as a stream of its items (or of its one error).
pub(crate) fn stream_of_list<'a>(
    listing: impl Future<Output = Result<Vec<String>, StorageError>> + Send + 'a,
) -> ClientStream<'a> {
    stream::once(listing)
        .flat_map(|listed| match listed {
            Ok(clients) => stream::iter(clients).map(Ok).left_stream(),
            Err(e) => stream::iter([Err(e)]).right_stream(),
        })
        .boxed()
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: BackupStore + ?Sized> BackupStore for Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        (**self).put(key, body, options).await
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        (**self).get(key).await
    }
    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        (**self).get_versioned(key).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        (**self).delete(key).await
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        (**self).list(client_id).await
    }
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        (**self).list_clients().await
    }
    fn stream_clients(&self) -> ClientStream<'_> {
        (**self).stream_clients()
    }
    fn batch_size(&self) -> usize {
        (**self).batch_size()
    }
    async fn read_clients(&self, client_ids: &[String]) -> Vec<ClientObjects> {
        (**self).read_clients(client_ids).await
    }
    async fn put_many(&self, puts: Vec<Put>) -> Vec<Result<(), StorageError>> {
        (**self).put_many(puts).await
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: BackupStore + ?Sized> BackupStore for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        (**self).put(key, body, options).await
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        (**self).get(key).await
    }
    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        (**self).get_versioned(key).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        (**self).delete(key).await
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        (**self).list(client_id).await
    }
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        (**self).list_clients().await
    }
    fn stream_clients(&self) -> ClientStream<'_> {
        (**self).stream_clients()
    }
    fn batch_size(&self) -> usize {
        (**self).batch_size()
    }
    async fn read_clients(&self, client_ids: &[String]) -> Vec<ClientObjects> {
        (**self).read_clients(client_ids).await
    }
    async fn put_many(&self, puts: Vec<Put>) -> Vec<Result<(), StorageError>> {
        (**self).put_many(puts).await
    }
}

/// Conveniences over any [`BackupStore`]. Implemented for every store; do not implement it.
#[async_trait::async_trait]
pub trait BackupStoreExt: BackupStore {
    /// `put` with [`PutMode::Create`]: stores a new object, never replaces one.
    ///
    /// # Errors
    /// As [`BackupStore::put`].
    async fn put_new(&self, key: &BackupKey, body: Bytes) -> Result<(), StorageError> {
        self.put(key, body, PutOptions::create()).await
    }

    /// `put` with [`PutMode::Overwrite`].
    ///
    /// # Errors
    /// As [`BackupStore::put`].
    async fn put_overwrite(&self, key: &BackupKey, body: Bytes) -> Result<(), StorageError> {
        self.put(key, body, PutOptions::overwrite()).await
    }

    /// The body under `key`, or `None` when nothing is stored.
    ///
    /// # Errors
    /// As [`BackupStore::get`], except [`StorageError::NotFound`].
    async fn get_opt(&self, key: &BackupKey) -> Result<Option<Bytes>, StorageError> {
        match self.get(key).await {
            Ok(body) => Ok(Some(body)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<T: BackupStore + ?Sized> BackupStoreExt for T {}

/// `dyn BackupStore`, as named in signatures that take any store.
pub type DynBackupStore = dyn BackupStore;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        assert_eq!(PutOptions::default().mode, PutMode::Create);
        assert_eq!(Capabilities::default(), {
            let mut c = Capabilities::all();
            c.conditional_create = false;
            c.overwrite = false;
            c.delete = false;
            c.list = false;
            c.durable = false;
            c.compare_and_swap = false;
            c
        });
        assert_eq!(
            PutOptions::from(PutMode::Overwrite),
            PutOptions::overwrite()
        );
    }
}
