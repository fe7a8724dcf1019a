//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)] // test helpers shared by several test binaries, each using a subset

use std::sync::Arc;

use envelope::{EncryptionContext, KeyEncryptionKey, Keyring, local::LocalKek};

pub fn kek() -> Arc<dyn KeyEncryptionKey> {
    Arc::new(LocalKek::generate().unwrap())
}

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

pub fn ring(keks: &[&Arc<dyn KeyEncryptionKey>]) -> Keyring {
    keks.iter().map(|k| Arc::clone(k)).collect()
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}
