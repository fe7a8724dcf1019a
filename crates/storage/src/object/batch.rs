//! Batches on a bucket: the objects of many clients found by one listing, and their reads
//! and puts with several requests in flight.
//!
//! One client's objects are found by listing its directory: a LIST request per client, billed
//! by AWS as a PUT is (about twelve GETs), and on many servers a scan of the bucket's
//! index. A store-wide listing hands out clients in key order, so the clients
//! of one batch sit next to each other in the bucket. Where the bucket lists in ascending
//! key order (S3 general purpose buckets, Cloud Storage and Azure do; see
//! [`ObjectStoreStore::with_sorted_listing`]), one listing that starts at the batch's first
//! client and stops past its last finds all their objects. Clients in that range that are
//! not in the batch are skipped. When there are too many of those (the batch is spread over
//! the bucket), or the listing turns out not to be in order, each client is listed on its
//! own instead, as without a sorted listing.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt as _};
use object_store::path::Path;

use super::ObjectStoreStore;
use crate::batch::{self, ClientObjects, Put};
use crate::error::StorageError;
use crate::key::BackupKey;

/// Clients a batch call carries where the bucket lists in key order.
pub(super) const BATCH_SIZE: usize = 64;

/// Requests one batch call keeps in flight (reads, puts, or per-client listings).
const REQUESTS_IN_FLIGHT: usize = 16;

/// Objects of clients outside the batch that one listing may step over, per client of the
/// batch, before listing each client on its own is cheaper.
const FOREIGN_OBJECTS_PER_CLIENT: usize = 8;

/// The keys found for each asked client, or why they could not be listed.
type Listed = Vec<Result<Vec<BackupKey>, StorageError>>;

impl ObjectStoreStore {
    /// [`BackupStore::read_clients`](crate::BackupStore::read_clients): the keys of every
    /// client (one listing where it can), then every object read, a few at a time.
    pub(super) async fn read_batch(&self, client_ids: &[String]) -> Vec<ClientObjects> {
        let listed = self.list_batch(client_ids).await;
        // The futures made up front: a closure in the stream would not be `Send` for every
        // lifetime, as `async_trait` needs.
        let reads: Vec<_> = listed
            .iter()
            .flatten()
            .flatten()
            .map(|key| batch::read_object(self, key, self.compare_and_swap))
            .collect();
        let mut objects = stream::iter(reads)
            .buffered(REQUESTS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter();
        listed
            .into_iter()
            .map(|keys| {
                keys.map(|keys| {
                    // `objects` holds one read per listed key, in the same order.
                    keys.into_iter().zip(objects.by_ref()).collect()
                })
            })
            .collect()
    }

    /// [`BackupStore::put_many`](crate::BackupStore::put_many): the puts a few at a time,
    /// each as `put` does it.
    pub(super) async fn put_batch(&self, puts: Vec<Put>) -> Vec<Result<(), StorageError>> {
        batch::put_side_by_side(self, puts, REQUESTS_IN_FLIGHT).await
    }

    /// The keys of each client of `client_ids`, in their order: from one listing of the range
    /// they span where the bucket lists in key order, else from a listing per client.
    async fn list_batch(&self, client_ids: &[String]) -> Listed {
        let mut wanted: Vec<&str> = client_ids
            .iter()
            .map(String::as_str)
            .filter(|id| BackupKey::check_client_id(id).is_ok())
            .collect();
        wanted.sort_unstable_by(|a, b| listing_order(a, b));
        wanted.dedup();
        if !self.sorted_listing || wanted.len() < 2 {
            return self.list_each(client_ids).await;
        }
        match self.list_range(&wanted).await {
            Some(Ok(found)) => client_ids
                .iter()
                .map(|id| {
                    BackupKey::check_client_id(id)?;
                    // Cloned, not taken: a client asked twice gets its keys twice.
                    Ok(found.get(id.as_str()).cloned().unwrap_or_default())
                })
                .collect(),
            Some(Err(error)) => {
                // One error for every valid id asked (an id asked twice gets one each).
                let valid = client_ids
                    .iter()
                    .filter(|id| BackupKey::check_client_id(id).is_ok())
                    .count();
                let mut errors = batch::spread_error(error, valid).into_iter();
                client_ids
                    .iter()
                    .map(|id| {
                        BackupKey::check_client_id(id)?;
                        Err(errors.next().unwrap_or_else(|| self.range_error()))
                    })
                    .collect()
            }
            None => self.list_each(client_ids).await,
        }
    }

    /// A listing per client, a few at a time.
    async fn list_each(&self, client_ids: &[String]) -> Listed {
        use crate::BackupStore as _;
        let lists: Vec<_> = client_ids.iter().map(|id| self.list(id)).collect();
        stream::iter(lists)
            .buffered(REQUESTS_IN_FLIGHT)
            .collect()
            .await
    }

    /// The keys of `wanted` (valid ids, distinct, in listing order, at least one) from one
    /// listing that starts at the first and stops past the last; `None` when that listing
    /// stepped over too many objects of other clients or came out of order.
    async fn list_range(
        &self,
        wanted: &[&str],
    ) -> Option<Result<HashMap<String, Vec<BackupKey>>, StorageError>> {
        let (first, last) = (wanted.first()?, wanted.last()?);
        // Every object of a client is named `{client dir}/…`, and `0` follows `/`: past the
        // last client's objects is anything at or above `{last client dir}0`.
        let start = self.under_prefix(&[first]);
        let end = format!("{}0", self.under_prefix(&[last]).as_ref());
        let asked: HashSet<&str> = wanted.iter().copied().collect();
        let mut foreign_left = FOREIGN_OBJECTS_PER_CLIENT.saturating_mul(wanted.len());
        let mut found: HashMap<String, Vec<BackupKey>> = HashMap::new();
        let mut previous: Option<Path> = None;
        let mut listing = self.inner.list_with_offset(self.prefix.as_ref(), &start);
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => return Some(Err(self.other_error("list", e))),
            };
            if previous.as_ref().is_some_and(|p| meta.location <= *p) {
                return None;
            }
            if meta.location.as_ref() >= end.as_str() {
                break;
            }
            match self
                .key_at(&meta.location)
                .filter(|key| asked.contains(key.client_id()))
            {
                Some(key) => found
                    .entry(key.client_id().to_owned())
                    .or_default()
                    .push(key),
                None => foreign_left = foreign_left.checked_sub(1)?,
            }
            previous = Some(meta.location);
        }
        for keys in found.values_mut() {
            keys.sort_by_cached_key(BackupKey::to_path);
            keys.dedup();
        }
        Some(Ok(found))
    }

    /// The error of a client whose share of a failed range listing went missing: never, as
    /// the listing's error is spread over every valid id asked; the type cannot show it.
    fn range_error(&self) -> StorageError {
        StorageError::Backend {
            backend: self.name,
            source: "the listing of this client's batch failed".into(),
        }
    }
}

/// How two client ids compare in a bucket's listing: as their directories `{id}/` do, byte
/// by byte (`cl_1-x/` comes before `cl_1/`, which comes before `cl_10/`).
fn listing_order(a: &str, b: &str) -> Ordering {
    let dir = |id: &str| id.bytes().chain(std::iter::once(b'/')).collect::<Vec<u8>>();
    dir(a).cmp(&dir(b))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

    use bytes::Bytes;
    use futures_util::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    use super::*;
    use crate::{BackupStore, BackupStoreExt as _};

    /// `InMemory`, counting the listings asked of it, and listing backwards if told to (as a
    /// bucket that promises no order may).
    #[derive(Debug, Default)]
    struct Bucket {
        inner: InMemory,
        listings: AtomicUsize,
        backwards: bool,
        /// Every listing fails, as a 503 would.
        unavailable: bool,
    }

    impl std::fmt::Display for Bucket {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("counting bucket")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Bucket {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.listings.fetch_add(1, AtomicOrdering::SeqCst);
            if self.unavailable {
                let error = object_store::Error::Generic {
                    store: "counting bucket",
                    source: "Server returned non-2xx status code: 503 Service Unavailable".into(),
                };
                return stream::iter([Err(error)]).boxed();
            }
            let listing = self.inner.list(prefix);
            if !self.backwards {
                return listing;
            }
            stream::once(async move {
                let mut all: Vec<_> = listing.collect().await;
                all.reverse();
                stream::iter(all)
            })
            .flatten()
            .boxed()
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn key(client: &str, pair: &str) -> BackupKey {
        BackupKey::client_backup(client, pair, "SECP256K1").unwrap()
    }

    /// A store over a fresh bucket holding two objects for each of `clients` (bodies
    /// `{client}/{pair}`) and an object that is no key's.
    async fn seeded(clients: &[&str], backwards: bool) -> (Arc<Bucket>, ObjectStoreStore) {
        let bucket = Arc::new(Bucket {
            backwards,
            ..Bucket::default()
        });
        let store = ObjectStoreStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>, "p")
            .unwrap()
            .with_sorted_listing();
        for client in clients {
            for pair in ["bsp_1", "bsp_2"] {
                let body = Bytes::from(format!("{client}/{pair}"));
                store.put_new(&key(client, pair), body).await.unwrap();
            }
        }
        bucket
            .inner
            .put_opts(
                &Path::from("p/cl_1/notes.txt"),
                "not ours".into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        bucket.listings.store(0, AtomicOrdering::SeqCst);
        (bucket, store)
    }

    /// What `read_clients` gave, as `(client, [body])`, failing on any error.
    fn bodies(read: Vec<ClientObjects>) -> Vec<Vec<String>> {
        read.into_iter()
            .map(|objects| {
                objects
                    .unwrap()
                    .into_iter()
                    .map(|(key, object)| {
                        let object = object.unwrap();
                        assert!(object.version.is_some(), "{key}: no version");
                        String::from_utf8(object.body.to_vec()).unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    fn two(client: &str) -> Vec<String> {
        vec![format!("{client}/bsp_1"), format!("{client}/bsp_2")]
    }

    #[test]
    fn clients_sort_as_their_directories_list() {
        let mut ids = vec!["cl_10", "cl_1", "cl_1-x", "cl_1.y", "cl_0", "cl_1_"];
        ids.sort_unstable_by(|a, b| listing_order(a, b));
        assert_eq!(ids, ["cl_0", "cl_1-x", "cl_1.y", "cl_1", "cl_10", "cl_1_"]);
    }

    #[tokio::test]
    async fn one_listing_finds_a_batch_among_its_neighbours() {
        let clients = ["cl_0", "cl_1", "cl_1-x", "cl_10", "cl_2", "cl_3", "cl_4"];
        let (bucket, store) = seeded(&clients, false).await;
        assert_eq!(store.batch_size(), BATCH_SIZE);
        // In no particular order, with a client that has nothing, one asked twice, and clients
        // in the range that were not asked (cl_1-x, cl_2).
        let asked = ids(&["cl_3", "cl_1", "cl_10", "cl_none", "cl_1"]);
        let read = bodies(store.read_clients(&asked).await);
        assert_eq!(
            read,
            [two("cl_3"), two("cl_1"), two("cl_10"), vec![], two("cl_1")]
        );
        assert_eq!(bucket.listings.load(AtomicOrdering::SeqCst), 1);
        // The same as a listing per client gives.
        let one_by_one = bodies(batch::read_clients_one_by_one(&store, &asked).await);
        assert_eq!(read, one_by_one);
    }

    #[tokio::test]
    async fn a_batch_spread_over_the_bucket_is_listed_client_by_client() {
        let many: Vec<String> = (0..100).map(|i| format!("cl_{i:03}")).collect();
        let clients: Vec<&str> = many.iter().map(String::as_str).collect();
        let (bucket, store) = seeded(&clients, false).await;
        let read = bodies(store.read_clients(&ids(&["cl_000", "cl_099"])).await);
        assert_eq!(read, [two("cl_000"), two("cl_099")]);
        // The range listing gave up past 16 objects of other clients; then one per client.
        assert_eq!(bucket.listings.load(AtomicOrdering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_listing_out_of_order_is_not_trusted() {
        let clients = ["cl_1", "cl_2", "cl_3"];
        let (bucket, store) = seeded(&clients, true).await;
        let read = bodies(store.read_clients(&ids(&["cl_1", "cl_3"])).await);
        assert_eq!(read, [two("cl_1"), two("cl_3")]);
        assert_eq!(bucket.listings.load(AtomicOrdering::SeqCst), 3);
    }

    #[tokio::test]
    async fn without_a_sorted_listing_each_client_is_listed() {
        let clients = ["cl_1", "cl_2", "cl_3"];
        let (bucket, _) = seeded(&clients, false).await;
        let store =
            ObjectStoreStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>, "p").unwrap();
        assert_eq!(store.batch_size(), 1);
        let read = bodies(store.read_clients(&ids(&["cl_1", "cl_2", "cl_3"])).await);
        assert_eq!(read, [two("cl_1"), two("cl_2"), two("cl_3")]);
        assert_eq!(bucket.listings.load(AtomicOrdering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_range_listing_fails_every_client_asked_retryably() {
        let bucket = Arc::new(Bucket {
            unavailable: true,
            ..Bucket::default()
        });
        let store = ObjectStoreStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>, "p")
            .unwrap()
            .with_sorted_listing();
        // cl_1 asked twice, and an invalid id.
        let read = store
            .read_clients(&ids(&["cl_1", "cl_2", "cl_1", "not/an-id"]))
            .await;
        assert_eq!(read.len(), 4);
        for (i, client) in read.iter().take(3).enumerate() {
            match client {
                Err(e) => assert!(e.is_retryable(), "client {i}: {e:?}"),
                Ok(objects) => panic!("client {i}: {objects:?}"),
            }
        }
        assert!(
            matches!(read[3], Err(StorageError::InvalidKey { .. })),
            "{:?}",
            read[3]
        );
        assert_eq!(bucket.listings.load(AtomicOrdering::SeqCst), 1);
    }

    #[tokio::test]
    async fn puts_of_one_key_twice_go_in_order() {
        let (_, store) = seeded(&["cl_1"], false).await;
        let (a, b) = (key("cl_1", "bsp_1"), key("cl_1", "bsp_2"));
        let put = |key: &BackupKey, body: &'static str| {
            (
                key.clone(),
                Bytes::from(body),
                crate::PutOptions::overwrite(),
            )
        };
        let results = store
            .put_many(vec![put(&a, "first"), put(&b, "other"), put(&a, "second")])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(store.get(&a).await.unwrap(), "second");
        assert_eq!(store.get(&b).await.unwrap(), "other");
    }
}
