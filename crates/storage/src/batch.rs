//! Store work in batches: many clients read, or many objects put, in one call.
//!
//! Store-wide work (a rotation) reads every object of a client, writes some back, and reads
//! them again. One call per object is what most stores do best: each call is a file or an
//! HTTP request of its own anyway. A database answers one statement for a whole batch at
//! about the cost of one for a single row, so [`BackupStore::read_clients`] and
//! [`BackupStore::put_many`] let a store take a batch at once where it gains from it
//! ([`BackupStore::batch_size`] says how large). The defaults, [`read_clients_one_by_one`]
//! and [`put_one_by_one`], do each item in turn through the single-item methods;
//! [`put_side_by_side`] overlaps them.

use bytes::Bytes;

use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{BackupStore, ObjectVersion, PutOptions};

/// One stored object as [`BackupStore::read_clients`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredObject {
    /// The stored bytes.
    pub body: Bytes,
    /// The version to replace it from ([`PutOptions::update`]), where the store can compare
    /// and swap; `None` where it cannot.
    pub version: Option<ObjectVersion>,
}

impl StoredObject {
    /// An object of `body`, at `version`.
    #[must_use]
    pub fn new(body: Bytes, version: Option<ObjectVersion>) -> Self {
        Self { body, version }
    }
}

/// What [`BackupStore::read_clients`] found for one client: each of its keys, sorted by
/// path form, with the object read or why it could not be (`NotFound` when it was deleted
/// between the listing and the read); or why the client could not be listed.
pub type ClientObjects = Result<Vec<(BackupKey, Result<StoredObject, StorageError>)>, StorageError>;

/// One put of [`BackupStore::put_many`]: the key, the body, and how.
pub type Put = (BackupKey, Bytes, PutOptions);

/// [`BackupStore::read_clients`] one call at a time: `list` each client, then `get_versioned`
/// each key (`get` where the store cannot compare and swap). The default; a wrapper that
/// hooks the single-item methods calls it with itself to keep its hooks.
pub async fn read_clients_one_by_one<S: BackupStore + ?Sized>(
    store: &S,
    client_ids: &[String],
) -> Vec<ClientObjects> {
    let versioned = store.capabilities().compare_and_swap;
    let mut out = Vec::with_capacity(client_ids.len());
    for client_id in client_ids {
        let keys = match store.list(client_id).await {
            Ok(keys) => keys,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        let mut objects = Vec::with_capacity(keys.len());
        for key in keys {
            let object = read_object(store, &key, versioned).await;
            objects.push((key, object));
        }
        out.push(Ok(objects));
    }
    out
}

/// One object as [`BackupStore::read_clients`] gives it: through `get_versioned` where the
/// store can compare and swap (`versioned`), else through `get`, with no version.
pub(crate) async fn read_object<S: BackupStore + ?Sized>(
    store: &S,
    key: &BackupKey,
    versioned: bool,
) -> Result<StoredObject, StorageError> {
    if versioned {
        let (body, version) = store.get_versioned(key).await?;
        Ok(StoredObject::new(body, Some(version)))
    } else {
        Ok(StoredObject::new(store.get(key).await?, None))
    }
}

/// [`BackupStore::put_many`] one put at a time, in order. The default; a wrapper that hooks
/// `put` calls it with itself to keep its hooks.
pub async fn put_one_by_one<S: BackupStore + ?Sized>(
    store: &S,
    puts: Vec<Put>,
) -> Vec<Result<(), StorageError>> {
    let mut out = Vec::with_capacity(puts.len());
    for (key, body, options) in puts {
        out.push(store.put(&key, body, options).await);
    }
    out
}

/// [`BackupStore::put_many`] with up to `in_flight` puts at once (`0` counts as 1), each
/// through `put`, one result per put in their order; one at a time, in order, if a key comes
/// twice (two puts of one key must not race). For a store whose puts are requests of their
/// own that gain from overlapping (HTTP requests, `fsync`s), where the default waits for
/// each in turn.
pub async fn put_side_by_side<S: BackupStore + ?Sized>(
    store: &S,
    puts: Vec<Put>,
    in_flight: usize,
) -> Vec<Result<(), StorageError>> {
    use futures_util::stream::{self, StreamExt as _};
    let mut seen = std::collections::HashSet::with_capacity(puts.len());
    if !puts.iter().all(|(key, _, _)| seen.insert(key.clone())) {
        return put_one_by_one(store, puts).await;
    }
    // The futures made up front: a closure in the stream would not be `Send` for every
    // lifetime, as an `async_trait` method's future must be.
    let puts: Vec<_> = puts
        .into_iter()
        .map(|(key, body, options)| async move { store.put(&key, body, options).await })
        .collect();
    stream::iter(puts)
        .buffered(in_flight.max(1))
        .collect()
        .await
}

/// One error of a call that carried a whole batch, as one error per item: the first item gets
/// `error` itself, the others an error of the same kind (retryable or not) that says what it
/// was. For stores whose batch calls fail as a whole.
#[must_use]
pub fn spread_error(error: StorageError, items: usize) -> Vec<StorageError> {
    let mut out = Vec::with_capacity(items);
    if items == 0 {
        return out;
    }
    let backend = match &error {
        StorageError::Unavailable { backend, .. }
        | StorageError::Backend { backend, .. }
        | StorageError::NotSupported { backend, .. } => *backend,
        _ => "batch",
    };
    let retryable = error.is_retryable();
    let said = crate::Report(&error).to_string();
    out.push(error);
    for _ in 1..items {
        let source = Box::new(BatchFailed(said.clone()));
        out.push(if retryable {
            StorageError::Unavailable { backend, source }
        } else {
            StorageError::Backend { backend, source }
        });
    }
    out
}

/// The error of the batch call an item was part of.
#[derive(Debug)]
struct BatchFailed(String);

impl std::fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the batch this item was part of failed: {}", self.0)
    }
}

impl std::error::Error for BatchFailed {}
