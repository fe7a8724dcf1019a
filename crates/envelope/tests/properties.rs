//! Property tests: round trips over random plaintexts and contexts, and rejection of every
//! single-bit flip, truncation, foreign key, foreign context and garbage, with typed errors
//! and never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // test helpers

mod common;

use std::sync::Arc;

use common::block_on;
use envelope::{EncryptionContext, Error, KeyEncryptionKey, Keyring, local::LocalKek};
use proptest::prelude::*;

fn keyring() -> Keyring {
    Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>)
}

/// Deterministic filler, so large plaintexts cost nothing to generate.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn context_strategy() -> impl Strategy<Value = EncryptionContext> {
    prop::collection::btree_map("[a-z-]{1,12}", "\\PC{0,24}", 0..6).prop_map(|m| {
        let mut ctx = EncryptionContext::new();
        for (k, v) in m {
            ctx.insert(k, v).unwrap();
        }
        ctx
    })
}

/// Mostly small plaintexts, sometimes up to 1 MiB.
fn length_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..8192, 1 => 0usize..=(1 << 20)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_plaintexts_and_contexts_round_trip(
        seed in any::<u64>(),
        len in length_strategy(),
        ctx in context_strategy(),
    ) {
        let keyring = keyring();
        let plaintext = bytes(seed, len);
        block_on(async {
            let sealed = envelope::seal(&keyring, &ctx, &plaintext).await.unwrap();
            let text = envelope::to_text(&sealed);
            let opened = envelope::open(&keyring, &ctx, &envelope::from_text(&text).unwrap())
                .await
                .unwrap();
            prop_assert_eq!(opened.expose_secret(), plaintext.as_slice());
            Ok(())
        })?;
    }

    #[test]
    fn a_different_context_or_kek_never_opens(
        ctx in context_strategy(),
        other in context_strategy(),
        seed in any::<u64>(),
    ) {
        prop_assume!(ctx != other);
        let keyring = keyring();
        let plaintext = bytes(seed, 64);
        block_on(async {
            let sealed = envelope::seal(&keyring, &ctx, &plaintext).await.unwrap();
            let wrong_ctx = envelope::open(&keyring, &other, &sealed).await;
            prop_assert!(matches!(wrong_ctx, Err(Error::Decrypt)));
            let wrong_kek = envelope::open(&self::keyring(), &ctx, &sealed).await;
            let no_match = matches!(wrong_kek, Err(Error::NoMatchingKek { .. }));
            prop_assert!(no_match, "a foreign KEK must not match");
            Ok(())
        })?;
    }

    #[test]
    fn every_truncation_is_a_typed_error(seed in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let keyring = keyring();
        let ctx = EncryptionContext::new().with("k", "v").unwrap();
        block_on(async {
            let sealed = envelope::seal(&keyring, &ctx, &bytes(seed, 100)).await.unwrap();
            let short = &sealed[..cut.index(sealed.len())];
            prop_assert!(matches!(
                envelope::open(&keyring, &ctx, short).await,
                Err(Error::Format(_))
            ));
            Ok(())
        })?;
    }

    #[test]
    fn garbage_never_panics_and_never_opens(garbage in prop::collection::vec(any::<u8>(), 0..2048)) {
        let keyring = keyring();
        let ctx = EncryptionContext::new();
        let _ = envelope::inspect(&garbage);
        let mut with_magic = envelope::MAGIC.to_vec();
        with_magic.extend_from_slice(&[1, 0, 1, 0]);
        with_magic.extend_from_slice(&garbage);
        let _ = envelope::inspect(&with_magic);
        block_on(async {
            prop_assert!(envelope::open(&keyring, &ctx, &garbage).await.is_err());
            prop_assert!(envelope::open(&keyring, &ctx, &with_magic).await.is_err());
            Ok(())
        })?;
        let text = String::from_utf8_lossy(&garbage);
        let _ = envelope::from_text(&text);
        let _ = envelope::from_text(&format!("pbe1.{text}"));
    }

    #[test]
    fn random_byte_changes_never_open(seed in any::<u64>(), at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let keyring = keyring();
        let ctx = EncryptionContext::new().with("client-id", "c").unwrap();
        block_on(async {
            let sealed = envelope::seal(&keyring, &ctx, &bytes(seed, 200)).await.unwrap();
            let mut changed = sealed.clone();
            let i = at.index(changed.len());
            prop_assume!(changed[i] != to);
            changed[i] = to;
            prop_assert!(envelope::open(&keyring, &ctx, &changed).await.is_err());
            Ok(())
        })?;
    }

    #[test]
    fn canonical_context_encoding_is_injective(a in context_strategy(), b in context_strategy()) {
        prop_assert_eq!(a == b, a.canonical_bytes() == b.canonical_bytes());
        prop_assert_eq!(EncryptionContext::from_canonical_bytes(&a.canonical_bytes()).unwrap(), a);
    }
}

/// Exhaustive, not sampled: every single-bit flip anywhere in a sealed envelope (header,
/// wrapped keys, tags, payload) is rejected with a typed error, for a one-KEK and a two-KEK
/// envelope.
#[test]
fn every_single_bit_flip_is_rejected() {
    let (a, b) = (keyring(), keyring());
    let both: Keyring = a.keks().iter().chain(b.keks()).cloned().collect();
    let ctx = EncryptionContext::new()
        .with("client-id", "c1")
        .unwrap()
        .with("curve", "SECP256K1")
        .unwrap();
    block_on(async {
        for keyring in [&a, &both] {
            let sealed = envelope::seal(keyring, &ctx, b"a short share")
                .await
                .unwrap();
            for bit in 0..sealed.len() * 8 {
                let mut flipped = sealed.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                match envelope::open(keyring, &ctx, &flipped).await {
                    Err(Error::Decrypt | Error::Format(_) | Error::NoMatchingKek { .. }) => {}
                    other => panic!("bit {bit} of {}: {other:?}", sealed.len() * 8),
                }
            }
        }
    });
}
