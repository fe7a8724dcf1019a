//! Seal, open, rewrap and inspect, end to end with local KEKs.
#![allow(clippy::unwrap_used)] // tests: a panic is a failure

mod common;

use common::{block_on, kek, ring, share_context};
use envelope::{Error, FormatError, RewrapMode, Sealer};

#[test]
fn seal_open_round_trip_and_text_form() {
    block_on(async {
        let k = kek();
        let keyring = ring(&[&k]);
        let ctx = share_context("c1", "p1", "SECP256K1");
        let sealed = envelope::seal(&keyring, &ctx, b"share bytes")
            .await
            .unwrap();
        let text = envelope::to_text(&sealed);
        assert!(text.starts_with("pbe1."));
        let back = envelope::from_text(&text).unwrap();
        assert_eq!(back, sealed);
        let opened = envelope::open(&keyring, &ctx, &back).await.unwrap();
        assert_eq!(opened.expose_secret(), b"share bytes");
    });
}

#[test]
fn every_kek_of_a_multi_kek_seal_opens_alone() {
    block_on(async {
        let (a, b, c) = (kek(), kek(), kek());
        let ctx = share_context("c1", "p1", "ED25519");
        let sealed = envelope::seal(&ring(&[&a, &b, &c]), &ctx, b"s")
            .await
            .unwrap();
        for alone in [&a, &b, &c] {
            let opened = envelope::open(&ring(&[alone]), &ctx, &sealed)
                .await
                .unwrap();
            assert_eq!(opened.expose_secret(), b"s");
        }
        let stranger = kek();
        assert!(matches!(
            envelope::open(&ring(&[&stranger]), &ctx, &sealed).await,
            Err(Error::NoMatchingKek { wrapped }) if wrapped.len() == 3
        ));
    });
}

#[test]
fn wrong_context_is_opaque() {
    block_on(async {
        let k = kek();
        let keyring = ring(&[&k]);
        let sealed = envelope::seal(&keyring, &share_context("c1", "p1", "SECP256K1"), b"s")
            .await
            .unwrap();
        for other in [
            share_context("c2", "p1", "SECP256K1"),
            share_context("c1", "p2", "SECP256K1"),
            share_context("c1", "p1", "ED25519"),
            envelope::EncryptionContext::new(),
        ] {
            let err = envelope::open(&keyring, &other, &sealed).await.unwrap_err();
            assert!(matches!(err, Error::Decrypt), "{err:?}");
        }
    });
}

#[test]
fn one_sealer_seals_both_shares_of_a_backup() {
    block_on(async {
        let k = kek();
        let keyring = ring(&[&k]);
        let client = envelope::EncryptionContext::new()
            .with("client-id", "c1")
            .unwrap()
            .with("purpose", "client-backup")
            .unwrap();
        let sealer = Sealer::new(&keyring, client.clone()).await.unwrap();
        let secp = share_context("c1", "p1", "SECP256K1");
        let ed = share_context("c1", "p2", "ED25519");
        let a = sealer.seal(&secp, b"secp share").unwrap();
        let b = sealer.seal(&ed, b"ed share").unwrap();
        assert_eq!(
            envelope::open(&keyring, &secp, &a)
                .await
                .unwrap()
                .expose_secret(),
            b"secp share"
        );
        assert_eq!(
            envelope::open(&keyring, &ed, &b)
                .await
                .unwrap()
                .expose_secret(),
            b"ed share"
        );
        // Swapping the two ciphertexts of a client fails.
        assert!(matches!(
            envelope::open(&keyring, &ed, &a).await,
            Err(Error::Decrypt)
        ));
        // Distinct nonces under the one data key.
        let (ia, ib) = (
            envelope::inspect(&a).unwrap(),
            envelope::inspect(&b).unwrap(),
        );
        assert_ne!(ia.nonce, ib.nonce);
        assert_eq!(ia.kek_context, client);
        // A context that lacks the KEK context is refused before anything is sealed.
        let foreign = share_context("c2", "p1", "SECP256K1");
        assert!(matches!(
            sealer.seal(&foreign, b"x"),
            Err(Error::Invalid(_))
        ));
    });
}

#[test]
fn rewrap_replaces_or_adds_keks_and_keeps_the_payload() {
    block_on(async {
        let (old, new, extra) = (kek(), kek(), kek());
        let ctx = share_context("c1", "p1", "SECP256K1");
        let sealed = envelope::seal(&ring(&[&old]), &ctx, b"share")
            .await
            .unwrap();
        let payload = |bytes: &[u8]| bytes[bytes.len() - 16 - 5..].to_vec();

        let replaced =
            envelope::rewrap(&ring(&[&old]), &sealed, &ring(&[&new]), RewrapMode::Replace)
                .await
                .unwrap();
        assert_eq!(payload(&replaced), payload(&sealed));
        assert!(matches!(
            envelope::open(&ring(&[&old]), &ctx, &replaced).await,
            Err(Error::NoMatchingKek { .. })
        ));
        let opened = envelope::open(&ring(&[&new]), &ctx, &replaced)
            .await
            .unwrap();
        assert_eq!(opened.expose_secret(), b"share");

        let added = envelope::rewrap(
            &ring(&[&new]),
            &replaced,
            &ring(&[&new, &extra]),
            RewrapMode::Add,
        )
        .await
        .unwrap();
        let info = envelope::inspect(&added).unwrap();
        assert_eq!(
            info.wrapped_keys.len(),
            2,
            "the existing KEK is not added twice"
        );
        for alone in [&new, &extra] {
            assert!(envelope::open(&ring(&[alone]), &ctx, &added).await.is_ok());
        }
        // Rewrapping under a keyring that cannot open it fails and changes nothing.
        assert!(
            envelope::rewrap(&ring(&[&old]), &added, &ring(&[&old]), RewrapMode::Add)
                .await
                .is_err()
        );
    });
}

#[test]
fn wrapped_only_by_reads_the_header_against_the_current_keys() {
    block_on(async {
        let (a, b, c) = (kek(), kek(), kek());
        let ctx = share_context("c1", "p1", "SECP256K1");
        let sealed = envelope::seal(&ring(&[&a, &b]), &ctx, b"s").await.unwrap();
        let refs = |keks: &[&std::sync::Arc<dyn envelope::KeyEncryptionKey>]| {
            let keyring = ring(keks);
            async move { keyring.current_key_refs().await.unwrap() }
        };
        let only =
            |current: &[envelope::KeyRef]| envelope::wrapped_only_by(&sealed, current).unwrap();
        assert!(only(&refs(&[&a, &b]).await));
        assert!(only(&refs(&[&b, &a]).await), "order does not matter");
        assert!(only(&refs(&[&a, &b, &a]).await), "a duplicate counts once");
        assert!(!only(&refs(&[&a]).await), "b is not current");
        assert!(!only(&refs(&[&a, &b, &c]).await), "c is missing");
        assert!(!only(&[]));
        let info = envelope::inspect(&sealed).unwrap();
        let current = refs(&[&a, &c]).await;
        assert_eq!(info.wrapped_keys_not_in(&current), [&info.wrapped_keys[1]]);
        assert!(matches!(
            envelope::wrapped_only_by(b"not an envelope", &current),
            Err(FormatError::BadMagic)
        ));

        // Replace under a keyring naming one key twice records it once, and is then current.
        let twice = ring(&[&c, &c]);
        let moved = envelope::rewrap(&ring(&[&a]), &sealed, &twice, RewrapMode::Replace)
            .await
            .unwrap();
        assert_eq!(envelope::inspect(&moved).unwrap().wrapped_keys.len(), 1);
        assert!(
            envelope::wrapped_only_by(&moved, &twice.current_key_refs().await.unwrap()).unwrap()
        );
    });
}

/// Records the primary KEK's key reference with bytes of its own: a forger's way to make an
/// envelope *look* wrapped by the primary.
#[derive(Debug)]
struct Impostor {
    posing_as: envelope::KeyRef,
}

#[async_trait::async_trait]
impl envelope::KeyEncryptionKey for Impostor {
    fn provider(&self) -> &str {
        self.posing_as.provider()
    }
    fn key_id(&self) -> &str {
        self.posing_as.key_id()
    }
    async fn current_key_ref(&self) -> Result<envelope::KeyRef, envelope::KmsError> {
        Ok(self.posing_as.clone())
    }
    async fn wrap(
        &self,
        _: &envelope::DataKey,
        _: &envelope::EncryptionContext,
    ) -> Result<envelope::WrappedKey, envelope::KmsError> {
        Ok(envelope::WrappedKey::new(self.posing_as.clone(), vec![0x5A; 60]).unwrap())
    }
    async fn unwrap(
        &self,
        _: &envelope::WrappedKey,
        _: &envelope::EncryptionContext,
    ) -> Result<envelope::DataKey, envelope::KmsError> {
        Err(envelope::KmsError::UnwrapFailed)
    }
}

/// The threat model's limit, shown: the header tag commits an envelope to its data key, not to
/// who sealed it. Whoever can wrap under *any* KEK of the opener's keyring (here: a break-glass
/// key file kept next to the primary) and write to the store forges a whole envelope that
/// opens. `Opener::require_primary` narrows that to whoever can wrap under the primary.
#[test]
fn anyone_who_can_wrap_under_any_kek_can_forge_and_require_primary_narrows_it() {
    block_on(async {
        let (primary, break_glass) = (kek(), kek());
        let keyring = ring(&[&primary, &break_glass]);
        let ctx = share_context("c1", "p1", "SECP256K1");
        let genuine = envelope::seal(&keyring, &ctx, b"the genuine share")
            .await
            .unwrap();

        // (a) The limit: sealed with the break-glass key alone, for the victim's context.
        let forged = envelope::seal(&ring(&[&break_glass]), &ctx, b"the attacker's share")
            .await
            .unwrap();
        let opened = envelope::open(&keyring, &ctx, &forged).await.unwrap();
        assert_eq!(opened.expose_secret(), b"the attacker's share");
        let opener = envelope::Opener::new(&keyring);
        assert!(opener.open(&ctx, &forged).await.is_ok());
        // Posing as the primary (its key reference, junk bytes) next to a real break-glass
        // wrap opens too: the header is not authenticated until a KEK unwraps it.
        let impostor: std::sync::Arc<dyn envelope::KeyEncryptionKey> =
            std::sync::Arc::new(Impostor {
                posing_as: primary.current_key_ref().await.unwrap(),
            });
        let posing = envelope::seal(
            &ring(&[&break_glass, &impostor]),
            &ctx,
            b"the attacker's share",
        )
        .await
        .unwrap();
        assert_eq!(
            envelope::inspect(&posing).unwrap().wrapped_keys,
            envelope::inspect(&genuine)
                .unwrap()
                .wrapped_keys
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
        assert!(envelope::open(&keyring, &ctx, &posing).await.is_ok());

        // (b) The policy: only the primary opens.
        let strict = envelope::Opener::new(&keyring).require_primary();
        let opened = strict.open(&ctx, &genuine).await.unwrap();
        assert_eq!(opened.expose_secret(), b"the genuine share");
        let err = strict.open(&ctx, &forged).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotWrappedByPrimary { primary: p, wrapped }
                if p.as_str() == format!("local:{}", primary.key_id()) && wrapped.len() == 1),
            "{err:?}"
        );
        assert!(err.to_string().contains("forged"), "{err}");
        assert!(matches!(
            strict.open(&ctx, &posing).await,
            Err(Error::Decrypt)
        ));
        // And what it remembered from the genuine envelope does not open the forgeries.
        assert!(strict.open(&ctx, &forged).await.is_err());

        // What remains: whoever can wrap under the primary itself can still forge.
        let with_primary = envelope::seal(&ring(&[&primary]), &ctx, b"the attacker's share")
            .await
            .unwrap();
        assert!(strict.open(&ctx, &with_primary).await.is_ok());
    });
}

#[test]
fn a_smuggled_wrapped_key_cannot_swap_the_data_key() {
    // An attacker who holds a KEK of the keyring re-wraps a key of their own into the header:
    // the header tag (which commits to the data key) rejects it.
    block_on(async {
        let (a, b) = (kek(), kek());
        let ctx = share_context("c1", "p1", "SECP256K1");
        let victim = envelope::seal(&ring(&[&a]), &ctx, b"victim").await.unwrap();
        let forged_source = envelope::seal(&ring(&[&b]), &ctx, b"forged").await.unwrap();
        // Header of the victim with the payload of the forgery.
        let split = |bytes: &[u8]| {
            let info = envelope::inspect(bytes).unwrap();
            bytes.len() - info.plaintext_len - 16 - 4
        };
        let mut franken = victim[..split(&victim)].to_vec();
        franken.extend_from_slice(&forged_source[split(&forged_source)..]);
        let err = envelope::open(&ring(&[&a, &b]), &ctx, &franken)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Decrypt), "{err:?}");
    });
}

#[test]
fn inspect_reports_header_facts_without_keys() {
    block_on(async {
        let (a, b) = (kek(), kek());
        let ctx = share_context("c1", "p1", "SECP256K1");
        let sealed = envelope::seal(&ring(&[&a, &b]), &ctx, &[7u8; 100])
            .await
            .unwrap();
        let info = envelope::inspect(&sealed).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.suite, 1);
        assert_eq!(info.context, ctx);
        assert_eq!(info.plaintext_len, 100);
        assert_eq!(info.wrapped_keys[0].provider(), "local");
        assert_eq!(info.wrapped_keys[0].key_id(), a.key_id());
        assert_eq!(info.wrapped_keys[1].key_id(), b.key_id());
    });
}

#[test]
fn unknown_versions_and_suites_are_typed_errors() {
    block_on(async {
        let k = kek();
        let ctx = share_context("c1", "p1", "SECP256K1");
        let sealed = envelope::seal(&ring(&[&k]), &ctx, b"s").await.unwrap();
        let mut v2 = sealed.clone();
        v2[4] = 2;
        assert_eq!(
            envelope::inspect(&v2),
            Err(FormatError::UnsupportedVersion(2))
        );
        let mut suite = sealed.clone();
        suite[6] = 9;
        assert_eq!(
            envelope::inspect(&suite),
            Err(FormatError::UnsupportedSuite(9))
        );
        assert_eq!(envelope::inspect(b"nope"), Err(FormatError::BadMagic));
        let mut trailing = sealed.clone();
        trailing.push(0);
        assert_eq!(
            envelope::inspect(&trailing),
            Err(FormatError::TrailingBytes(1))
        );
        assert!(matches!(
            envelope::open(&ring(&[&k]), &ctx, &sealed[..sealed.len() - 1]).await,
            Err(Error::Format(FormatError::Truncated("payload")))
        ));
        assert!(envelope::from_text("pbe1.AAA=").is_err());
        assert!(envelope::from_text("pbe2.AAAA").is_err());
    });
}

#[test]
fn errors_and_debug_output_never_show_secrets() {
    block_on(async {
        let k = kek();
        let keyring = ring(&[&k]);
        let ctx = share_context("c1", "p1", "SECP256K1");
        let secret = b"SUPER-SECRET-SHARE-0123456789";
        let sealed = envelope::seal(&keyring, &ctx, secret).await.unwrap();
        let opened = envelope::open(&keyring, &ctx, &sealed).await.unwrap();
        let wrong = envelope::open(&keyring, &share_context("x", "y", "z"), &sealed)
            .await
            .unwrap_err();
        let sealer = Sealer::new(&keyring, ctx.clone()).await.unwrap();
        let shown =
            format!("{opened:?} {opened:#?} {wrong} {wrong:?} {sealer:?} {sealer:#?} {keyring:?}");
        assert!(!shown.contains("SUPER-SECRET"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    });
}

/// Counts the KMS calls with the `testing` feature's counter (CI runs with every feature).
#[cfg(feature = "testing")]
#[test]
fn an_opener_unwraps_a_shared_data_key_once_and_never_trusts_it_blindly() {
    use envelope::testing::{CallCounter, HookedKek};
    use std::sync::Arc;
    block_on(async {
        let counting = Arc::new(CallCounter::default());
        let kek = HookedKek::new(Arc::new(envelope::local::LocalKek::generate().unwrap()))
            .with_hook(Arc::clone(&counting));
        let keyring =
            envelope::Keyring::new().with(Arc::new(kek) as Arc<dyn envelope::KeyEncryptionKey>);
        let client = envelope::EncryptionContext::new()
            .with("client-id", "c1")
            .unwrap();
        let sealer = Sealer::new(&keyring, client.clone()).await.unwrap();
        let secp = client.clone().with("curve", "SECP256K1").unwrap();
        let ed = client.clone().with("curve", "ED25519").unwrap();
        let a = sealer.seal(&secp, b"one").unwrap();
        let b = sealer.seal(&ed, b"two").unwrap();

        let opener = envelope::Opener::new(&keyring);
        assert_eq!(
            opener.open(&secp, &a).await.unwrap().expose_secret(),
            b"one"
        );
        assert_eq!(opener.open(&ed, &b).await.unwrap().expose_secret(), b"two");
        assert_eq!(counting.unwraps(), 1);

        // A tampered envelope with the same wrapped key is still rejected, cache or not.
        let mut tampered = b.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            opener.open(&ed, &tampered).await,
            Err(Error::Decrypt)
        ));
        // A wrong context is rejected before any key is used.
        assert!(matches!(opener.open(&secp, &b).await, Err(Error::Decrypt)));
        // A different data key is unwrapped again.
        let other = envelope::seal(&keyring, &secp, b"three").await.unwrap();
        assert_eq!(
            opener.open(&secp, &other).await.unwrap().expose_secret(),
            b"three"
        );
        assert_eq!(counting.unwraps(), 2);
    });
}
