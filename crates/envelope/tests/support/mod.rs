//! Test support for the KMS backends: starts the real or fake services the tests need, on
//! loopback, and stops them when dropped (or when the test process exits).
//!
//! Starting the services themselves (moto's process, ports, the rule that a missing tool makes
//! the test fail under `cargo xtask ci` (`PORTAL_BACKUP_XTASK=1`) and skip loudly otherwise)
//! is the `test-services` crate's; this module adds the KMS clients and fakes on top. See
//! `xtask/TOOLS-NEEDED.md`.
#![allow(dead_code, unreachable_pub, missing_docs)] // shared by several test binaries, each using a subset
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)] // test fixtures: a panic is a test failure

#[cfg(feature = "aws-kms")]
pub mod aws_fake;
#[cfg(feature = "gcp-kms")]
pub mod gcp_fake;
#[cfg(feature = "pkcs11")]
pub mod hsm;
#[cfg(feature = "aws-kms")]
pub mod moto;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use envelope::{DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, KmsError, WrappedKey};

/// A context like the one a backup uses.
pub fn share_context(client: &str, pair: &str, curve: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("client-id", client)
        .unwrap()
        .with("backup-share-pair-id", pair)
        .unwrap()
        .with("curve", curve)
        .unwrap()
        .with("purpose", "client-backup")
        .unwrap()
}

/// Counts the calls a KEK receives (each is one KMS request for the cloud backends, one
/// `C_EncryptInit`+`C_Encrypt` or `C_DecryptInit`+`C_Decrypt` pair for PKCS#11).
#[derive(Debug, Default)]
pub struct Calls {
    pub wrap: AtomicUsize,
    pub unwrap: AtomicUsize,
    pub generate: AtomicUsize,
    /// `current_key_ref` calls (a KMS request for an AWS alias or an unpinned Cloud KMS key).
    pub current: AtomicUsize,
}

impl Calls {
    pub fn take(&self) -> (usize, usize, usize) {
        (
            self.generate.swap(0, Ordering::SeqCst),
            self.wrap.swap(0, Ordering::SeqCst),
            self.unwrap.swap(0, Ordering::SeqCst),
        )
    }
}

/// Forwards every method to `inner`, counting calls.
#[derive(Debug)]
pub struct Counting<K> {
    pub inner: K,
    pub calls: Arc<Calls>,
}

impl<K> Counting<K> {
    pub fn new(inner: K) -> Self {
        Self {
            inner,
            calls: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<K: KeyEncryptionKey> KeyEncryptionKey for Counting<K> {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        self.inner.can_unwrap(key_ref)
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        self.calls.current.fetch_add(1, Ordering::SeqCst);
        self.inner.current_key_ref().await
    }
    async fn wrap(&self, key: &DataKey, ctx: &EncryptionContext) -> Result<WrappedKey, KmsError> {
        self.calls.wrap.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap(key, ctx).await
    }
    async fn unwrap(&self, w: &WrappedKey, ctx: &EncryptionContext) -> Result<DataKey, KmsError> {
        self.calls.unwrap.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(w, ctx).await
    }
    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.calls.generate.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key(ctx).await
    }
}

/// Median and 90th percentile of durations, in milliseconds.
pub fn stats_ms(mut samples: Vec<std::time::Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.9))
}
