//! The `gcp-kms` KEK with the official `google-cloud-kms-v1` client against the in-repo REST
//! fake: conformance, key versions, CRC32C in both directions (a corrupted checksum or a
//! dropped `verified…` flag is refused), error mapping, round trips.
#![allow(clippy::unwrap_used)] // tests

mod support;

use std::sync::Arc;

use envelope::gcp::{ConfigError, GcpKms, GcpKmsBuilder};
use envelope::local::LocalKek;
use envelope::{KeyEncryptionKey, KeyRef, Keyring, KmsError, RewrapMode};
use support::gcp_fake::{self, Faults, GcpFake, KEY};

async fn kek_on(fake: &GcpFake, name: &str) -> GcpKms {
    GcpKmsBuilder::new()
        .with_key_name(name)
        .with_client(gcp_fake::client(&fake.endpoint).await)
        .build()
        .await
        .unwrap()
}

async fn fake_kek() -> (GcpFake, GcpKms) {
    let fake = GcpFake::start().await;
    let kek = kek_on(&fake, KEY).await;
    (fake, kek)
}

mod conformance {
    use super::*;
    envelope::kek_conformance_tests!(fake_kek().await.1);
}

mod conformance_pinned_version {
    use super::*;
    envelope::kek_conformance_tests!({
        let fake = GcpFake::start().await;
        kek_on(&fake, &format!("{KEY}/cryptoKeyVersions/1")).await
    });
}

fn ctx() -> envelope::EncryptionContext {
    support::share_context("cl_1", "bsp_1", "SECP256K1")
}

#[tokio::test]
async fn records_the_key_version_and_opens_old_versions_after_rotation() {
    let (mut fake, kek) = fake_kek().await;
    let (key1, w1) = kek.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(w1.key_ref().key_id(), format!("{KEY}/cryptoKeyVersions/1"));
    assert_eq!(fake.rotate(KEY), 2);
    let (_, w2) = kek.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(w2.key_ref().key_id(), format!("{KEY}/cryptoKeyVersions/2"));
    assert_eq!(
        kek.unwrap(&w1, &ctx()).await.unwrap().expose_secret(),
        key1.expose_secret()
    );
    // A KEK pinned to version 2 does not claim version 1's wrapped keys.
    let pinned = kek_on(&fake, &format!("{KEY}/cryptoKeyVersions/2")).await;
    assert!(!pinned.can_unwrap(w1.key_ref()) && pinned.can_unwrap(w2.key_ref()));
    // Nor does a KEK of another key, or another provider's reference.
    let other = kek_on(
        &fake,
        "projects/p/locations/global/keyRings/r/cryptoKeys/k2",
    )
    .await;
    assert!(!other.can_unwrap(w1.key_ref()));
    assert!(!kek.can_unwrap(&KeyRef::new("aws-kms", w1.key_ref().key_id()).unwrap()));
}

#[tokio::test]
async fn a_corrupted_checksum_or_a_dropped_verified_flag_is_refused() {
    let (fake, kek) = fake_kek().await;
    let (_, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    let wrap_faults = [
        Faults {
            corrupt_ciphertext_crc: true,
            ..Faults::default()
        },
        Faults {
            drop_verified_plaintext: true,
            ..Faults::default()
        },
        Faults {
            drop_verified_aad: true,
            ..Faults::default()
        },
        Faults {
            answer_with_other_key: true,
            ..Faults::default()
        },
    ];
    for faults in wrap_faults {
        fake.set_faults(faults);
        let err = kek.generate_data_key(&ctx()).await.unwrap_err();
        let expected = if faults.corrupt_ciphertext_crc {
            matches!(err, KmsError::Unavailable { .. })
        } else {
            matches!(
                err,
                KmsError::Backend {
                    backend: "gcp-kms",
                    ..
                }
            )
        };
        assert!(expected, "{faults:?}: {err:?}");
        assert!(envelope::Report(&err).to_string().len() > 10);
    }
    fake.set_faults(Faults {
        corrupt_plaintext_crc: true,
        ..Faults::default()
    });
    let err = kek.unwrap(&wrapped, &ctx()).await.unwrap_err();
    assert!(
        matches!(err, KmsError::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
    fake.set_faults(Faults::default());
    kek.unwrap(&wrapped, &ctx()).await.unwrap();
}

#[tokio::test]
async fn errors_map_to_kms_error_kinds() {
    let (fake, kek) = fake_kek().await;
    let (_, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    fake.set_faults(Faults {
        unavailable: true,
        ..Faults::default()
    });
    assert!(
        kek.unwrap(&wrapped, &ctx())
            .await
            .unwrap_err()
            .is_retryable()
    );
    fake.set_faults(Faults::default());
    let missing = kek_on(
        &fake,
        "projects/p/locations/global/keyRings/r/cryptoKeys/missing",
    )
    .await;
    assert!(matches!(
        missing.generate_data_key(&ctx()).await,
        Err(KmsError::KeyNotFound { .. })
    ));
    // Nothing listening: a connection error, retryable.
    let closed = GcpKmsBuilder::new()
        .with_key_name(KEY)
        .with_client(
            gcp_fake::client(&format!("http://127.0.0.1:{}", test_services::free_port())).await,
        )
        .build()
        .await
        .unwrap();
    assert!(
        closed
            .generate_data_key(&ctx())
            .await
            .unwrap_err()
            .is_retryable()
    );
}

#[tokio::test]
async fn builder_validates_the_key_name() {
    for bad in [
        "",
        "projects/p/keyRings/r",
        "projects/p/locations/l/keyRings/r/cryptoKeys/k/x",
    ] {
        let err = GcpKmsBuilder::new()
            .with_key_name(bad)
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidKeyName(_)),
            "{bad}: {err:?}"
        );
    }
    assert!(matches!(
        GcpKmsBuilder::new().build().await.unwrap_err(),
        ConfigError::MissingKeyName
    ));
}

#[tokio::test]
async fn round_trips_per_seal_and_open_and_multi_kek() {
    let (fake, kek) = fake_kek().await;
    let gcp: Arc<dyn KeyEncryptionKey> = Arc::new(kek);
    let local: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
    let ring = Keyring::from(Arc::clone(&gcp));
    fake.take_counts();
    let sealed = envelope::seal(&ring, &ctx(), b"share").await.unwrap();
    let per_seal = fake.take_counts();
    envelope::open(&ring, &ctx(), &sealed).await.unwrap();
    let per_open = fake.take_counts();
    eprintln!(
        "ROUND TRIPS gcp-kms (fake, counted by the server): seal = {} encrypt, open = {} decrypt",
        per_seal.0, per_open.1
    );
    assert_eq!(per_seal, (1, 0));
    assert_eq!(per_open, (0, 1));

    let both = Keyring::new()
        .with(Arc::clone(&local))
        .with(Arc::clone(&gcp));
    let sealed = envelope::seal(&both, &ctx(), b"two").await.unwrap();
    for alone in [&gcp, &local] {
        let opened = envelope::open(&Keyring::from(Arc::clone(alone)), &ctx(), &sealed)
            .await
            .unwrap();
        assert_eq!(opened.expose_secret(), b"two");
    }
}

// --- the current key: the primary version, read with GetCryptoKey ---

#[tokio::test]
async fn current_key_ref_is_the_primary_version_now_and_follows_it_when_it_moves() {
    let (mut fake, kek) = fake_kek().await;
    let v = |n: usize| KeyRef::new("gcp-kms", format!("{KEY}/cryptoKeyVersions/{n}")).unwrap();
    fake.take_gets();
    assert_eq!(kek.current_key_ref().await.unwrap(), v(1));
    assert_eq!(fake.take_gets(), 1, "one GetCryptoKey per call");
    assert_eq!(fake.rotate(KEY), 2);
    assert_eq!(kek.current_key_ref().await.unwrap(), v(2));
    // Version 1 is still openable, but it is not current.
    assert!(kek.can_unwrap(&v(1)));
    fake.set_primary(KEY, 1);
    assert_eq!(kek.current_key_ref().await.unwrap(), v(1));
    let (_, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(
        wrapped.key_ref(),
        &v(1),
        "wraps with the primary it reported"
    );

    // A pinned version is current by itself: no call.
    fake.take_gets();
    let pinned = kek_on(&fake, &format!("{KEY}/cryptoKeyVersions/2")).await;
    assert_eq!(pinned.current_key_ref().await.unwrap(), v(2));
    assert_eq!(fake.take_gets(), 0);

    // A primary of another key is refused, not believed.
    fake.set_faults(Faults {
        answer_with_other_key: true,
        ..Faults::default()
    });
    assert!(matches!(
        kek.current_key_ref().await,
        Err(KmsError::Backend {
            backend: "gcp-kms",
            ..
        })
    ));
    fake.set_faults(Faults {
        unavailable: true,
        ..Faults::default()
    });
    assert!(kek.current_key_ref().await.unwrap_err().is_retryable());
}

/// Issue 11: an unpinned crypto key "can open" every version, so a rewrap that skipped KEKs
/// which could open an existing entry left envelopes under the old version. Now `Add` adds a
/// wrap under the new primary, `Replace` leaves only it, and the header says so.
#[tokio::test]
async fn rewrap_after_the_primary_moved_puts_the_envelope_under_the_new_version() {
    let (mut fake, kek) = fake_kek().await;
    let kek: Arc<dyn KeyEncryptionKey> = Arc::new(kek);
    let ring = Keyring::from(Arc::clone(&kek));
    let sealed = envelope::seal(&ring, &ctx(), b"share").await.unwrap();
    let v1 = format!("{KEY}/cryptoKeyVersions/1");
    let v2 = format!("{KEY}/cryptoKeyVersions/2");
    assert_eq!(fake.rotate(KEY), 2);

    let current = ring.current_key_refs().await.unwrap();
    assert_eq!(current[0].key_id(), v2);
    assert!(!envelope::wrapped_only_by(&sealed, &current).unwrap());

    let added = envelope::rewrap(&ring, &sealed, &ring, RewrapMode::Add)
        .await
        .unwrap();
    let ids = |bytes: &[u8]| -> Vec<String> {
        envelope::inspect(bytes)
            .unwrap()
            .wrapped_keys
            .iter()
            .map(|r| r.key_id().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&added),
        [v1.clone(), v2.clone()],
        "Add adds the new primary"
    );
    // Adding again is a no-op: the current version already has an entry.
    let again = envelope::rewrap(&ring, &added, &ring, RewrapMode::Add)
        .await
        .unwrap();
    assert_eq!(ids(&again), [v1.clone(), v2.clone()]);

    let replaced = envelope::rewrap(&ring, &sealed, &ring, RewrapMode::Replace)
        .await
        .unwrap();
    assert_eq!(ids(&replaced), std::slice::from_ref(&v2));
    assert!(envelope::wrapped_only_by(&replaced, &current).unwrap());

    // Only version 2 opens it now.
    let pinned = |name: String| {
        let fake = fake.clone();
        async move { Keyring::from(Arc::new(kek_on(&fake, &name).await) as Arc<dyn KeyEncryptionKey>) }
    };
    let opened = envelope::open(&pinned(v2).await, &ctx(), &replaced)
        .await
        .unwrap();
    assert_eq!(opened.expose_secret(), b"share");
    assert!(matches!(
        envelope::open(&pinned(v1).await, &ctx(), &replaced).await,
        Err(envelope::Error::NoMatchingKek { .. })
    ));
}
