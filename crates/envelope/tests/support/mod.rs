//! Test support for the KMS backends: starts the real or fake services the tests need, on
//! loopback, and stops them when dropped (or when the test process exits).
//!
//! A service whose tool is not installed makes the test fail under `cargo xtask ci`
//! (`PORTAL_BACKUP_XTASK=1`) and skip loudly otherwise. See `xtask/TOOLS-NEEDED.md`.
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

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use envelope::{DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, KmsError, WrappedKey};

/// Set by `cargo xtask ci`: a missing tool is a failure, not a skip.
pub const XTASK_ENV: &str = "PORTAL_BACKUP_XTASK";

/// Reports a missing tool: panics under xtask, prints a loud skip line otherwise. Returns so
/// that the caller can `return` from the test.
pub fn tool_missing(tool: &str, detail: &str) {
    if std::env::var(XTASK_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "{tool} is required under `cargo xtask ci` but is not usable: {detail} (see xtask/TOOLS-NEEDED.md)"
        );
    }
    // Straight to the process's stderr, past the test harness's output capture, so that the
    // skip is visible even when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {tool} not installed; run cargo xtask ci ({detail})"
    );
}

/// The workspace root: the nearest directory above the package holding `Cargo.lock` (this
/// support is also compiled into the workspace's `tests` package).
pub fn workspace_root() -> PathBuf {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(&package)
        .to_path_buf()
}

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

/// A free loopback port (bound, then released for the service to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
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
