//! The `pkcs11` KEK against SoftHSM2, in a fresh token per run: the conformance kit (including
//! concurrent use), multi-KEK seal with a local KEK, refusal of unsuitable keys, and the number
//! of HSM calls per seal and open.
#![allow(clippy::unwrap_used)] // tests

mod support;

use std::sync::Arc;

use envelope::pkcs11::{ConfigError, Pkcs11KekBuilder};
use envelope::testing::{CallCounter, HookedKek, KekCall};
use envelope::{KeyEncryptionKey, Keyring, Opener, Sealer, local::LocalKek};
use support::hsm;

/// The driver: runs every `in_token::` test below inside a fresh SoftHSM2 token.
#[test]
fn softhsm2_token_suite() {
    if hsm::inside() {
        return;
    }
    hsm::run_in_fresh_token("in_token::", 16, &[]);
}

mod in_token {
    use super::*;

    mod conformance {
        use super::*;
        envelope::kek_conformance_tests!(match hsm::kek() {
            Some(kek) => kek,
            None => return,
        });
    }

    mod conformance_through_arc_dyn {
        use super::*;
        envelope::kek_conformance_tests!(match hsm::kek() {
            Some(kek) => Arc::new(kek) as Arc<dyn KeyEncryptionKey>,
            None => return,
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_are_pooled_and_reused() {
        let Some(kek) = hsm::kek() else { return };
        let kek = Arc::new(kek);
        let ctx = support::share_context("cl_1", "bsp_1", "SECP256K1");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (kek, ctx) = (Arc::clone(&kek), ctx.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let (key, wrapped) = kek.generate_data_key(&ctx).await.unwrap();
                        let back = kek.unwrap(&wrapped, &ctx).await.unwrap();
                        assert_eq!(back.expose_secret(), key.expose_secret());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let idle = kek.idle_sessions();
        assert!(
            (1..=envelope::pkcs11::DEFAULT_POOL_SIZE).contains(&idle),
            "{idle}"
        );
    }

    struct Calls(Arc<CallCounter>);

    impl Calls {
        fn take(&self) -> (usize, usize, usize) {
            let taken = (
                self.0.count(KekCall::GenerateDataKey),
                self.0.count(KekCall::Wrap),
                self.0.unwraps(),
            );
            self.0.reset();
            taken
        }
    }

    #[tokio::test]
    async fn seal_with_hsm_and_local_opens_with_either_and_counts_calls() {
        let Some(kek) = hsm::kek() else { return };
        let counter = Arc::new(CallCounter::default());
        let hsm_dyn: Arc<dyn KeyEncryptionKey> =
            Arc::new(HookedKek::new(Arc::new(kek)).with_hook(Arc::clone(&counter)));
        let local: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
        // (generate_data_key, wrap, unwrap) calls since the last take.
        let calls = Calls(counter);

        let ctx = support::share_context("cl_1", "bsp_1", "SECP256K1");
        let sealed = envelope::seal(&Keyring::from(Arc::clone(&hsm_dyn)), &ctx, b"share")
            .await
            .unwrap();
        let per_seal = calls.take();
        let opened = envelope::open(&Keyring::from(Arc::clone(&hsm_dyn)), &ctx, &sealed)
            .await
            .unwrap();
        assert_eq!(opened.expose_secret(), b"share");
        let per_open = calls.take();
        eprintln!(
            "ROUND TRIPS pkcs11: seal = {} generate_data_key (local RNG + one C_EncryptInit/C_Encrypt), open = {} unwrap (one C_DecryptInit/C_Decrypt)",
            per_seal.0, per_open.2
        );
        assert_eq!(per_seal, (1, 0, 0), "one generate_data_key per seal");
        assert_eq!(per_open, (0, 0, 1));

        // Multi-KEK: sealed under the HSM and a local key, opens with either alone.
        let both = Keyring::new()
            .with(Arc::clone(&hsm_dyn))
            .with(Arc::clone(&local));
        let sealed = envelope::seal(&both, &ctx, b"two keks").await.unwrap();
        for alone in [&hsm_dyn, &local] {
            let opened = envelope::open(&Keyring::from(Arc::clone(alone)), &ctx, &sealed)
                .await
                .unwrap();
            assert_eq!(opened.expose_secret(), b"two keks");
        }

        // A sealer with two shares: one HSM call to seal both, one to open both.
        calls.take();
        let client = support::share_context("cl_2", "bsp_2", "SECP256K1");
        let sealer = Sealer::new(&Keyring::from(Arc::clone(&hsm_dyn)), client.clone())
            .await
            .unwrap();
        let a = sealer.seal(&client, b"a").unwrap();
        let b = sealer.seal(&client, b"b").unwrap();
        let ring = Keyring::from(Arc::clone(&hsm_dyn));
        let opener = Opener::new(&ring);
        opener.open(&client, &a).await.unwrap();
        opener.open(&client, &b).await.unwrap();
        assert_eq!(
            calls.take(),
            (1, 0, 1),
            "one HSM call to seal both, one to open both"
        );
    }

    #[test]
    fn an_extractable_key_is_refused() {
        if !hsm::inside() {
            return;
        }
        let label = hsm::fresh_label();
        hsm::create_key(&label, true);
        let err = Pkcs11KekBuilder::from_env()
            .with_key_label(&label)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::KeyNotSuitable { .. }), "{err}");
    }

    #[test]
    fn a_missing_key_a_wrong_pin_and_a_wrong_token_are_refused() {
        if !hsm::inside() {
            return;
        }
        hsm::init();
        let err = Pkcs11KekBuilder::from_env()
            .with_key_label("no-such-key")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Key { found: 0, .. }), "{err}");
        let err = Pkcs11KekBuilder::from_env()
            .with_token_label("no-such-token")
            .with_key_label("k")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Token { found: 0, .. }), "{err}");
        let wrong_pin = "wrong-pin-55443322";
        let builder = Pkcs11KekBuilder::from_env()
            .with_key_label("k")
            .with_pin(wrong_pin);
        let shown = format!("{builder:?}");
        assert!(!shown.contains(wrong_pin));
        match builder.build() {
            // Another test's session may already hold the login (PKCS#11 logins are per
            // application), in which case the wrong PIN is never checked; the key is then
            // simply not found.
            Err(ConfigError::Login { .. } | ConfigError::Key { .. }) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }

    #[tokio::test]
    async fn debug_shows_the_key_reference_but_never_the_pin() {
        let Some(kek) = hsm::kek() else { return };
        let pin = std::env::var(envelope::pkcs11::ENV_PIN).unwrap();
        let shown = format!("{kek:?} {kek:#?}");
        assert!(
            shown.contains("pkcs11:token=envelope-test;object=kek-"),
            "{shown}"
        );
        assert!(!shown.contains(&pin), "{shown}");
    }
}
