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

use envelope::EncryptionContext;

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

/// Median and 90th percentile of durations, in milliseconds.
pub fn stats_ms(mut samples: Vec<std::time::Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.9))
}
