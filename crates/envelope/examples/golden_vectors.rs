//! Writes a fresh set of golden vectors as JSON on stdout. The committed set in
//! `tests/vectors/v1.json` was made by this program once and is frozen: every later version of
//! the crate must still open it. Regenerate only to add a new file for a new format version.
//!
//! `cargo run -p portal-backup-envelope --example golden_vectors > v1.json`

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)] // a generator run by hand on fixed inputs

use std::sync::Arc;

use envelope::{EncryptionContext, KeyEncryptionKey, Keyring, RewrapMode, Sealer, local::LocalKek};
use serde_json::{Value, json};

fn key() -> ([u8; 32], Arc<dyn KeyEncryptionKey>) {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).unwrap();
    (k, Arc::new(LocalKek::from_key(&k)))
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    for (k, v) in pairs {
        c.insert(*k, *v).unwrap();
    }
    c
}

fn case(
    name: &str,
    keks: &[[u8; 32]],
    context: &EncryptionContext,
    plaintext: &[u8],
    envelope: &[u8],
    expect: &str,
) -> Value {
    json!({
        "name": name,
        "local_keks_hex": keks.iter().map(hex::encode).collect::<Vec<_>>(),
        "context": context.as_map(),
        "plaintext_hex": hex::encode(plaintext),
        "envelope_text": envelope::to_text(envelope),
        "expect": expect,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (k1, kek1) = key();
    let (k2, kek2) = key();
    let one = Keyring::new().with(Arc::clone(&kek1));
    let both = Keyring::new()
        .with(Arc::clone(&kek1))
        .with(Arc::clone(&kek2));
    let mut cases = Vec::new();

    let share_ctx = ctx(&[
        ("client-id", "cl_golden"),
        ("backup-share-pair-id", "bsp_golden_secp"),
        ("curve", "SECP256K1"),
        ("purpose", "client-backup"),
    ]);
    let share: Vec<u8> = (0..4096u32)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i % 64) as usize]
        })
        .collect();
    let sealed = envelope::seal(&one, &share_ctx, &share).await.unwrap();
    cases.push(case(
        "one local KEK, 4 KiB share",
        &[k1],
        &share_ctx,
        &share,
        &sealed,
        "ok",
    ));

    let empty = EncryptionContext::new();
    let sealed_empty = envelope::seal(&one, &empty, b"").await.unwrap();
    cases.push(case(
        "empty plaintext, empty context",
        &[k1],
        &empty,
        b"",
        &sealed_empty,
        "ok",
    ));

    let client = ctx(&[("client-id", "cl_golden"), ("purpose", "client-backup")]);
    let sealer = Sealer::new(&both, client.clone()).await.unwrap();
    let secp = client.clone().with("curve", "SECP256K1").unwrap();
    let ed = client.clone().with("curve", "ED25519").unwrap();
    let a = sealer.seal(&secp, b"secp256k1 share").unwrap();
    let b = sealer.seal(&ed, b"ed25519 share").unwrap();
    cases.push(case(
        "two KEKs, shared data key, first share, opened by the first KEK",
        &[k1],
        &secp,
        b"secp256k1 share",
        &a,
        "ok",
    ));
    cases.push(case(
        "two KEKs, shared data key, second share, opened by the second KEK",
        &[k2],
        &ed,
        b"ed25519 share",
        &b,
        "ok",
    ));

    let unicode = ctx(&[("client-id", "клиент-✓"), ("note", "")]);
    let sealed_unicode = envelope::seal(&one, &unicode, "ünïcødé".as_bytes())
        .await
        .unwrap();
    cases.push(case(
        "UTF-8 context, empty value",
        &[k1],
        &unicode,
        "ünïcødé".as_bytes(),
        &sealed_unicode,
        "ok",
    ));

    let rewrapped = envelope::rewrap(
        &one,
        &sealed,
        &Keyring::new().with(Arc::clone(&kek2)),
        RewrapMode::Add,
    )
    .await
    .unwrap();
    cases.push(case(
        "rewrapped (added a second KEK), opened by the added KEK",
        &[k2],
        &share_ctx,
        &share,
        &rewrapped,
        "ok",
    ));

    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    cases.push(case(
        "payload tag bit flipped",
        &[k1],
        &share_ctx,
        &share,
        &flipped,
        "decrypt",
    ));
    let wrong = share_ctx.clone().with("curve", "ED25519").unwrap();
    cases.push(case(
        "opened under another context",
        &[k1],
        &wrong,
        &share,
        &sealed,
        "decrypt",
    ));
    let mut header = sealed.clone();
    header[10] ^= 0x01; // inside the nonce: covered by the header tag and the payload AAD
    cases.push(case(
        "nonce bit flipped",
        &[k1],
        &share_ctx,
        &share,
        &header,
        "decrypt",
    ));
    cases.push(case(
        "wrong KEK",
        &[k2],
        &share_ctx,
        &share,
        &sealed,
        "no_matching_kek",
    ));
    let mut v2 = sealed.clone();
    v2[4] = 2;
    cases.push(case(
        "unknown version",
        &[k1],
        &share_ctx,
        &share,
        &v2,
        "unsupported_version",
    ));
    cases.push(case(
        "truncated",
        &[k1],
        &share_ctx,
        &share,
        &sealed[..sealed.len() - 1],
        "truncated",
    ));

    let doc = json!({
        "format": "portal-backup envelope v1",
        "spec": "docs/ciphertext-format.md",
        "note": "Keys here are test keys. `expect` is ok, decrypt, no_matching_kek, unsupported_version or truncated.",
        "cases": cases,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}
