//! Envelope seal+open against raw AES-256-GCM on the same bytes, in one run.
//!
//! Every group has a `baseline_*` benchmark; `cargo xtask bench` reports each other benchmark
//! of the group as a ratio to it (raw time / envelope time: 1.0 means as fast as raw
//! AES-GCM, 0.8 means 80 % of its throughput).
//!
//! * `seal_open_<n>`: one plaintext, a fresh data key per seal (one local KEK wrap per seal and
//!   one unwrap per open).
//! * `backup_two_shares_<n>`: the two shares of one backup: one data key (one wrap) seals
//!   both; an `Opener` opens both again with one unwrap, as the restore drill does. The baseline seals and opens two
//!   plaintexts with raw AES-GCM.
//!
//! Sizes: 4 KiB, and 12 KiB for a realistic Portal share (base64 of a JSON share object with
//! its Paillier material runs to several KiB).

#![allow(missing_docs, clippy::unwrap_used, clippy::arithmetic_side_effects)] // a benchmark binary

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use envelope::{EncryptionContext, KeyEncryptionKey, Keyring, Opener, Sealer, local::LocalKek};

/// Runs a future that never waits (the local KEK does no I/O) without a runtime's overhead.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the local KEK never waits"),
    }
}

fn ctx(curve: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("client-id", "cl_0123456789abcdef")
        .unwrap()
        .with("backup-share-pair-id", "bsp_0123456789abcdef")
        .unwrap()
        .with("curve", curve)
        .unwrap()
        .with("purpose", "client-backup")
        .unwrap()
}

struct Raw(Aes256Gcm);

impl Raw {
    fn new() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        Self(Aes256Gcm::new(&key.into()))
    }

    /// Fresh random nonce, encrypt into a new buffer, decrypt into a new buffer.
    fn seal_open(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).unwrap();
        let nonce = Nonce::from(nonce);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap();
        self.0
            .decrypt(&nonce, Payload { msg: &sealed, aad })
            .unwrap()
    }
}

fn benches(c: &mut Criterion) {
    let kek: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
    let keyring = Keyring::new().with(kek);
    let raw = Raw::new();
    let (secp, ed) = (ctx("SECP256K1"), ctx("ED25519"));
    let secp_aad = secp.canonical_bytes();
    let ed_aad = ed.canonical_bytes();

    for size in [4096usize, 12288] {
        let a = vec![0x11u8; size];
        let b = vec![0x22u8; size];

        let mut g = c.benchmark_group(format!("seal_open_{}k", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("baseline_raw_aes_gcm", |bench| {
            bench.iter(|| black_box(raw.seal_open(black_box(&a), &secp_aad)))
        });
        g.bench_function("envelope_fresh_data_key", |bench| {
            bench.iter(|| {
                let sealed = now(envelope::seal(&keyring, &secp, black_box(&a))).unwrap();
                black_box(now(envelope::open(&keyring, &secp, &sealed)).unwrap())
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("backup_two_shares_{}k", size / 1024));
        g.throughput(Throughput::Bytes(2 * size as u64));
        g.bench_function("baseline_raw_aes_gcm", |bench| {
            bench.iter(|| {
                black_box(raw.seal_open(black_box(&a), &secp_aad));
                black_box(raw.seal_open(black_box(&b), &ed_aad))
            })
        });
        let kek_ctx = EncryptionContext::new()
            .with("client-id", "cl_0123456789abcdef")
            .unwrap()
            .with("purpose", "client-backup")
            .unwrap();
        g.bench_function("envelope_one_data_key", |bench| {
            bench.iter(|| {
                let sealer = now(Sealer::new(&keyring, kek_ctx.clone())).unwrap();
                let sa = sealer.seal(&secp, black_box(&a)).unwrap();
                let sb = sealer.seal(&ed, black_box(&b)).unwrap();
                let opener = Opener::new(&keyring);
                black_box(now(opener.open(&secp, &sa)).unwrap());
                black_box(now(opener.open(&ed, &sb)).unwrap())
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = envelope_benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(envelope_benches);
