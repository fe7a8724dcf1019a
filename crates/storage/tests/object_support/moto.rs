//! S3 on moto: buckets and object_store S3 clients on the moto server of
//! `test_services::moto` (one per test process, on loopback).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use object_store::aws::AmazonS3Builder;
use storage::object::ObjectStoreStore;
pub use test_services::moto::{Moto, shared};

use super::http;

/// Buckets and clients on a moto server.
pub trait MotoS3 {
    /// Creates a new, empty bucket with a unique name (moto accepts an unsigned
    /// `PUT /<bucket>`); returns its name.
    fn new_bucket(&self) -> String;
    /// An object_store S3 client of `bucket` on this server, with test credentials.
    fn s3(&self, bucket: &str) -> AmazonS3Builder;
    /// Our store over a new bucket, under `prefix`.
    fn store(&self, prefix: &str) -> ObjectStoreStore;
}

impl MotoS3 for Moto {
    fn new_bucket(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "portal-backup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let (status, body) = http(self.port, "PUT", &format!("/{name}"), &[]);
        assert_eq!(status, 200, "creating bucket {name} on moto: {body}");
        name
    }

    fn s3(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
    }

    fn store(&self, prefix: &str) -> ObjectStoreStore {
        let bucket = self.new_bucket();
        let s3 = self.s3(&bucket).build().unwrap();
        ObjectStoreStore::new(Arc::new(s3), prefix)
            .unwrap()
            .with_name("s3")
    }
}
