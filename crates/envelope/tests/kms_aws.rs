//! The `aws-kms` KEK with the real `aws-sdk-kms` client: against a moto server (conformance,
//! multi-KEK, rewrap, ReEncrypt, aliases, round trips and latency) and against an in-process
//! fake for the error paths moto does not model (disabled keys, map-bound contexts, throttling,
//! denied access, a KMS that answers with another key).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use envelope::aws::{AwsKms, AwsKmsBuilder};
use envelope::local::LocalKek;
use envelope::{
    EncryptionContext, Error, KeyEncryptionKey, KeyRef, Keyring, KmsError, RewrapMode, WrappedKey,
};
use support::aws_fake::AwsFake;
use support::moto::{self, RequestCounter};

/// A KEK over a fresh moto key, with its request counter; `None` when moto is missing.
async fn moto_kek() -> Option<(AwsKms, RequestCounter, String)> {
    let server = moto::shared()?;
    let counter = RequestCounter::default();
    let client = moto::client(&server.endpoint, &counter);
    let arn = moto::create_key(&client).await;
    counter.take();
    let kek = AwsKmsBuilder::new()
        .with_key_id(&arn)
        .with_client(client)
        .build()
        .await
        .unwrap();
    Some((kek, counter, arn))
}

macro_rules! moto_kek_or_return {
    () => {
        match moto_kek().await {
            Some(found) => found,
            None => return,
        }
    };
}

mod conformance_on_moto {
    use super::*;
    envelope::kek_conformance_tests!(match moto_kek().await {
        Some((kek, _, _)) => kek,
        None => return,
    });
}

fn ctx() -> EncryptionContext {
    support::share_context("cl_1", "bsp_1", "SECP256K1")
}

#[tokio::test]
async fn key_reference_is_the_arn_kms_returned_and_decrypt_is_pinned_to_it() {
    let (kek, counter, arn) = moto_kek_or_return!();
    let (key, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(wrapped.key_ref().provider(), "aws-kms");
    assert_eq!(wrapped.key_ref().key_id(), arn);
    assert_eq!(counter.take(), (1, 0, 0, 0, 0), "one GenerateDataKey");
    let back = kek.unwrap(&wrapped, &ctx()).await.unwrap();
    assert_eq!(back.expose_secret(), key.expose_secret());
    assert_eq!(counter.take(), (0, 0, 1, 0, 0), "one Decrypt");

    // Another key's blob relabelled with this key's ARN: Decrypt pinned to the ARN refuses it.
    let other = AwsKmsBuilder::new()
        .with_key_id(moto::create_key(kek.client()).await)
        .with_client(kek.client().clone())
        .build()
        .await
        .unwrap();
    let (_, foreign) = other.generate_data_key(&ctx()).await.unwrap();
    let relabelled = WrappedKey::new(wrapped.key_ref().clone(), foreign.bytes().to_vec()).unwrap();
    assert!(kek.unwrap(&relabelled, &ctx()).await.is_err());
    // And a key reference of another key is not even tried.
    assert!(!kek.can_unwrap(foreign.key_ref()));
    assert!(matches!(
        kek.unwrap(&foreign, &ctx()).await,
        Err(KmsError::UnwrapFailed)
    ));
}

#[tokio::test]
async fn sealed_under_aws_and_local_opens_with_either() {
    let (kek, _, _) = moto_kek_or_return!();
    let aws: Arc<dyn KeyEncryptionKey> = Arc::new(kek);
    let local: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
    for ring in [
        Keyring::new()
            .with(Arc::clone(&aws))
            .with(Arc::clone(&local)),
        Keyring::new()
            .with(Arc::clone(&local))
            .with(Arc::clone(&aws)),
    ] {
        let sealed = envelope::seal(&ring, &ctx(), b"the share").await.unwrap();
        for alone in [&aws, &local] {
            let opened = envelope::open(&Keyring::from(Arc::clone(alone)), &ctx(), &sealed)
                .await
                .unwrap();
            assert_eq!(opened.expose_secret(), b"the share");
        }
        let other = support::share_context("cl_1", "bsp_1", "ED25519");
        assert!(matches!(
            envelope::open(&Keyring::from(Arc::clone(&aws)), &other, &sealed).await,
            Err(Error::Decrypt)
        ));
    }
}

#[tokio::test]
async fn rewrap_local_to_aws() {
    let (kek, counter, _) = moto_kek_or_return!();
    let aws: Arc<dyn KeyEncryptionKey> = Arc::new(kek);
    let local: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
    let sealed = envelope::seal(&Keyring::from(Arc::clone(&local)), &ctx(), b"share")
        .await
        .unwrap();
    let aws_ring = Keyring::from(Arc::clone(&aws));
    assert!(matches!(
        envelope::open(&aws_ring, &ctx(), &sealed).await,
        Err(Error::NoMatchingKek { .. })
    ));
    counter.take();
    let moved = envelope::rewrap(
        &Keyring::from(Arc::clone(&local)),
        &sealed,
        &aws_ring,
        RewrapMode::Replace,
    )
    .await
    .unwrap();
    assert_eq!(counter.take(), (0, 1, 0, 0, 0), "one Encrypt per rewrap");
    let opened = envelope::open(&aws_ring, &ctx(), &moved).await.unwrap();
    assert_eq!(opened.expose_secret(), b"share");
    assert!(
        envelope::open(&Keyring::from(local), &ctx(), &moved)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn re_encrypt_moves_a_wrapped_key_between_aws_keys_inside_kms() {
    let (source, counter, _) = moto_kek_or_return!();
    let destination = AwsKmsBuilder::new()
        .with_key_id(moto::create_key(source.client()).await)
        .with_client(source.client().clone())
        .build()
        .await
        .unwrap();
    let (key, wrapped) = source.generate_data_key(&ctx()).await.unwrap();
    counter.take();
    let moved = source
        .re_encrypt(&wrapped, &ctx(), &destination)
        .await
        .unwrap();
    assert_eq!(counter.take(), (0, 0, 0, 1, 0), "one ReEncrypt");
    assert_eq!(moved.key_ref().key_id(), destination.key_id());
    let back = destination.unwrap(&moved, &ctx()).await.unwrap();
    assert_eq!(back.expose_secret(), key.expose_secret());
    let other = support::share_context("cl_1", "bsp_1", "ED25519");
    assert!(matches!(
        source.re_encrypt(&wrapped, &other, &destination).await,
        Err(KmsError::UnwrapFailed)
    ));
}

#[tokio::test]
async fn an_alias_records_the_key_arn_and_accepts_it() {
    let (by_arn, _, arn) = moto_kek_or_return!();
    let client = by_arn.client().clone();
    let alias = format!("alias/envelope-test-{}", test_services::free_port());
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    let by_alias = AwsKmsBuilder::new()
        .with_key_id(&alias)
        .with_client(client)
        .build()
        .await
        .unwrap();
    let (key, wrapped) = by_alias.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(
        wrapped.key_ref().key_id(),
        arn,
        "records the ARN, not the alias"
    );
    assert!(by_alias.can_unwrap(wrapped.key_ref()));
    assert!(by_arn.can_unwrap(wrapped.key_ref()));
    for kek in [&by_alias, &by_arn] {
        let back = kek.unwrap(&wrapped, &ctx()).await.unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
    }
    assert!(!by_alias.can_unwrap(&KeyRef::new("gcp-kms", arn.as_str()).unwrap()));
}

/// The current key of an alias is the key it points at now (one DescribeKey per call), while
/// a key ARN is current by itself (no call).
#[tokio::test]
async fn current_key_ref_of_an_alias_follows_update_alias() {
    let (by_arn, counter, k1) = moto_kek_or_return!();
    let client = by_arn.client().clone();
    let k2 = moto::create_key(&client).await;
    let alias = format!("alias/envelope-current-{}", test_services::free_port());
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&k1)
        .send()
        .await
        .unwrap();
    let by_alias = AwsKmsBuilder::new()
        .with_key_id(&alias)
        .with_client(client.clone())
        .build()
        .await
        .unwrap();
    counter.take();
    assert_eq!(by_arn.current_key_ref().await.unwrap().key_id(), k1);
    assert_eq!(counter.take(), (0, 0, 0, 0, 0), "a key ARN needs no call");
    assert_eq!(by_alias.current_key_ref().await.unwrap().key_id(), k1);
    assert_eq!(counter.take(), (0, 0, 0, 0, 1), "one DescribeKey");

    client
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&k2)
        .send()
        .await
        .unwrap();
    let current = by_alias.current_key_ref().await.unwrap();
    assert_eq!(current, KeyRef::new("aws-kms", k2.as_str()).unwrap());
    // The alias can still open K1's wrapped keys, but K1 is no longer current.
    assert!(by_alias.can_unwrap(&KeyRef::new("aws-kms", k1.as_str()).unwrap()));
    let (_, wrapped) = by_alias.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(
        wrapped.key_ref(),
        &current,
        "a wrap records the current key"
    );
}

async fn create_alias(client: &aws_sdk_kms::Client, target: &str) -> String {
    let alias = format!("alias/envelope-{}", test_services::free_port());
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(target)
        .send()
        .await
        .unwrap();
    alias
}

async fn aws_kek(client: &aws_sdk_kms::Client, key_id: &str) -> Arc<dyn KeyEncryptionKey> {
    Arc::new(
        AwsKmsBuilder::new()
            .with_key_id(key_id)
            .with_client(client.clone())
            .build()
            .await
            .unwrap(),
    )
}

fn wrapped_ids(sealed: &[u8]) -> Vec<String> {
    envelope::inspect(sealed)
        .unwrap()
        .wrapped_keys
        .iter()
        .map(|r| r.key_id().to_owned())
        .collect()
}

/// Issue 11, finding 1: rotating to an alias was a no-op, because the alias "can open" the old
/// key's wrapped keys. Sealed under K1 through the alias, alias moved to K2: the alias's current
/// key is K2, a rewrap moves the envelope to K2 alone, and K1 opens nothing afterwards.
#[tokio::test]
async fn rewrap_to_an_alias_moves_envelopes_to_the_key_it_points_at_now() {
    let (_, counter, k1) = moto_kek_or_return!();
    let client = moto::client(&moto::shared().unwrap().endpoint, &counter);
    let k2 = moto::create_key(&client).await;
    let alias = create_alias(&client, &k1).await;
    let by_alias = aws_kek(&client, &alias).await;
    let ring = Keyring::from(Arc::clone(&by_alias));
    let sealed = envelope::seal(&ring, &ctx(), b"share").await.unwrap();
    assert_eq!(wrapped_ids(&sealed), std::slice::from_ref(&k1));

    client
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&k2)
        .send()
        .await
        .unwrap();
    let current = ring.current_key_refs().await.unwrap();
    assert_eq!(current, [KeyRef::new("aws-kms", k2.as_str()).unwrap()]);
    // What rotation used to ask ("can the target open it?") says yes: the trap.
    assert!(by_alias.can_unwrap(&KeyRef::new("aws-kms", k1.as_str()).unwrap()));
    assert!(!envelope::wrapped_only_by(&sealed, &current).unwrap());

    let added = envelope::rewrap(&ring, &sealed, &ring, RewrapMode::Add)
        .await
        .unwrap();
    assert_eq!(wrapped_ids(&added), [k1.clone(), k2.clone()]);
    let rotated = envelope::rewrap(&ring, &sealed, &ring, RewrapMode::Replace)
        .await
        .unwrap();
    assert_eq!(wrapped_ids(&rotated), std::slice::from_ref(&k2));
    assert!(envelope::wrapped_only_by(&rotated, &current).unwrap());

    let only_k2 = Keyring::from(aws_kek(&client, &k2).await);
    let only_k1 = Keyring::from(aws_kek(&client, &k1).await);
    let opened = envelope::open(&only_k2, &ctx(), &rotated).await.unwrap();
    assert_eq!(opened.expose_secret(), b"share");
    assert!(matches!(
        envelope::open(&only_k1, &ctx(), &rotated).await,
        Err(Error::NoMatchingKek { .. })
    ));
}

/// Issue 11, finding 2: an alias KEK decrypted with a key ARN of any account, read from the
/// unauthenticated header. An attacker's account (moto account 222222222222) seals a whole
/// envelope for the victim's context; the victim's alias KEK (name or ARN) refuses it with
/// `KeyNotAllowed` and makes no KMS call for it.
#[tokio::test]
async fn an_alias_refuses_a_key_of_another_account_before_any_kms_call() {
    let Some(server) = moto::shared() else { return };
    let attacker_client =
        moto::client_in_account(&server.endpoint, &RequestCounter::default(), "222222222222");
    let foreign = moto::create_key(&attacker_client).await;
    assert!(foreign.contains(":222222222222:key/"), "{foreign}");
    let forged = envelope::seal(
        &Keyring::from(aws_kek(&attacker_client, &foreign).await),
        &ctx(),
        b"the attacker's share",
    )
    .await
    .unwrap();

    let counter = RequestCounter::default();
    let client = moto::client(&server.endpoint, &counter);
    let own = moto::create_key(&client).await;
    assert!(own.contains(&format!(":{}:key/", moto::DEFAULT_ACCOUNT)));
    let alias = create_alias(&client, &own).await;
    let alias_arn = format!("{}{alias}", own.split("key/").next().unwrap());
    // A key ARN of the victim's own account in another region is outside the alias too.
    let other_region = own.replace(":us-east-1:", ":eu-west-1:");
    let elsewhere = WrappedKey::new(
        KeyRef::new("aws-kms", other_region.as_str()).unwrap(),
        vec![7; 64],
    )
    .unwrap();

    // An alias ARN names its account and region: no call at all, even on a fresh KEK.
    // An alias name learns them from one DescribeKey of its own alias, then keeps them.
    for (configured, learn_first) in [(alias_arn.as_str(), false), (alias.as_str(), true)] {
        let kek = aws_kek(&client, configured).await;
        if learn_first {
            kek.current_key_ref().await.unwrap();
        }
        counter.take();
        let err = envelope::open(&Keyring::from(Arc::clone(&kek)), &ctx(), &forged)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Kms(KmsError::KeyNotAllowed { key, .. }) if key == &foreign),
            "{configured}: {err:?}"
        );
        assert!(!err.is_retryable());
        let text = envelope::Report(&err).to_string();
        assert!(
            text.contains(&foreign) && text.contains("also-open"),
            "{text}"
        );
        assert!(matches!(
            kek.unwrap(&elsewhere, &ctx()).await,
            Err(KmsError::KeyNotAllowed { .. })
        ));
        assert_eq!(counter.take(), (0, 0, 0, 0, 0), "{configured}: no KMS call");
        // Its own key still opens.
        let sealed = envelope::seal(&Keyring::from(Arc::clone(&kek)), &ctx(), b"own")
            .await
            .unwrap();
        envelope::open(&Keyring::from(kek), &ctx(), &sealed)
            .await
            .unwrap();
    }

    // A fresh alias-name KEK asks KMS about its own alias (one DescribeKey), never Decrypt.
    let fresh = aws_kek(&client, &alias).await;
    counter.take();
    assert!(matches!(
        fresh.unwrap(&elsewhere, &ctx()).await,
        Err(KmsError::KeyNotAllowed { .. })
    ));
    assert_eq!(
        counter.take(),
        (0, 0, 0, 0, 1),
        "one DescribeKey, no Decrypt"
    );
}

/// A key of another region (say, the one migrated from) opens through an alias only when listed
/// with `with_also_open`; the in-process fake serves DescribeKey and aliases.
#[tokio::test]
async fn an_alias_opens_the_keys_listed_to_open_as_well() {
    let fake = AwsFake::start().await;
    let current = fake.create_key();
    let rotated_out =
        fake.create_key_with_arn("arn:aws:kms:eu-west-1:111122223333:key/rotated-out");
    fake.set_alias("alias/backup", &current);
    let client = moto::client(&fake.endpoint, &RequestCounter::default());
    let old = envelope::seal(
        &Keyring::from(aws_kek(&client, &rotated_out).await),
        &ctx(),
        b"old share",
    )
    .await
    .unwrap();

    let strict = aws_kek(&client, "alias/backup").await;
    let before = fake.operations().len();
    assert!(matches!(
        envelope::open(&Keyring::from(strict), &ctx(), &old).await,
        Err(Error::Kms(KmsError::KeyNotAllowed { .. }))
    ));
    assert_eq!(fake.operations()[before..], ["DescribeKey"], "no Decrypt");

    let listing = AwsKmsBuilder::new()
        .with_key_id("alias/backup")
        .with_also_open([rotated_out.as_str()])
        .with_client(client.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(
        listing.current_key_ref().await.unwrap().key_id(),
        current,
        "listed keys are opened, never wrapped with"
    );
    let opened = envelope::open(
        &Keyring::from(Arc::new(listing) as Arc<dyn KeyEncryptionKey>),
        &ctx(),
        &old,
    )
    .await
    .unwrap();
    assert_eq!(opened.expose_secret(), b"old share");

    for bad in [
        "alias/old",
        "not-an-arn",
        "arn:aws:kms:eu-west-1:111122223333:alias/old",
    ] {
        let err = AwsKmsBuilder::new()
            .with_key_id("alias/backup")
            .with_also_open([bad])
            .with_client(client.clone())
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(err, envelope::aws::ConfigError::InvalidAlsoOpen(_)),
            "{bad}"
        );
    }
}

/// Round trips per seal and per open, counted at the client (every HTTP attempt), and the
/// latency a KMS round trip adds to a seal, against moto on loopback.
#[tokio::test]
async fn round_trips_and_added_latency_per_seal_on_moto() {
    let (kek, counter, _) = moto_kek_or_return!();
    let aws: Arc<dyn KeyEncryptionKey> = Arc::new(kek);
    let ring = Keyring::from(Arc::clone(&aws));
    let sealed = envelope::seal(&ring, &ctx(), b"share").await.unwrap();
    let per_seal = counter.take();
    envelope::open(&ring, &ctx(), &sealed).await.unwrap();
    let per_open = counter.take();
    assert_eq!(per_seal, (1, 0, 0, 0, 0), "seal = one GenerateDataKey");
    assert_eq!(per_open, (0, 0, 1, 0, 0), "open = one Decrypt");

    let local = Keyring::from(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
    const N: usize = 60;
    let time = |ring: &Keyring| {
        let ring = ring.clone();
        async move {
            let mut samples = Vec::with_capacity(N);
            for _ in 0..N {
                let start = Instant::now();
                envelope::seal(&ring, &ctx(), &[7u8; 4096]).await.unwrap();
                samples.push(start.elapsed());
            }
            samples
        }
    };
    let aws_samples: Vec<Duration> = time(&ring).await;
    let local_samples: Vec<Duration> = time(&local).await;
    let (aws_p50, aws_p90) = support::stats_ms(aws_samples);
    let (local_p50, _) = support::stats_ms(local_samples);
    assert_eq!(counter.take().0, N);
    eprintln!(
        "ROUND TRIPS aws-kms (moto): seal = {} GenerateDataKey, open = {} Decrypt; \
         LATENCY per 4 KiB seal over {N}: aws p50 {aws_p50:.2} ms (p90 {aws_p90:.2} ms), \
         local p50 {local_p50:.3} ms, added by KMS p50 {:.2} ms",
        per_seal.0,
        per_open.2,
        aws_p50 - local_p50
    );
}

/// `AwsKmsBuilder::from_env()` with the SDK's own chain: region, credentials and
/// `AWS_ENDPOINT_URL` from the environment, set for a child run of this test binary.
#[test]
fn from_env_uses_the_sdk_chain_and_aws_endpoint_url() {
    if std::env::var("PORTAL_BACKUP_TEST_AWS_ENV_CHILD").is_ok() {
        return;
    }
    let Some(server) = moto::shared() else { return };
    let arn = tokio::runtime::Runtime::new().unwrap().block_on(async {
        moto::create_key(&moto::client(&server.endpoint, &RequestCounter::default())).await
    });
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_child::round_trip_from_env"])
        .env("PORTAL_BACKUP_TEST_AWS_ENV_CHILD", "1")
        .env("AWS_ENDPOINT_URL", &server.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env(envelope::aws::ENV_KEY_ID, &arn)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && out.contains("1 passed"),
        "{out}{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

mod env_child {
    use super::*;

    #[tokio::test]
    async fn round_trip_from_env() {
        if std::env::var("PORTAL_BACKUP_TEST_AWS_ENV_CHILD").is_err() {
            return; // runs in the child of from_env_uses_the_sdk_chain_and_aws_endpoint_url
        }
        let kek = AwsKmsBuilder::from_env().build().await.unwrap();
        envelope::conformance::round_trip(&kek).await.unwrap();
    }
}

// --- the in-process fake: error paths ---

async fn fake_kek() -> (AwsFake, AwsKms, String) {
    let fake = AwsFake::start().await;
    let arn = fake.create_key();
    let kek = AwsKmsBuilder::new()
        .with_key_id(&arn)
        .with_client(moto::client(&fake.endpoint, &RequestCounter::default()))
        .build()
        .await
        .unwrap();
    (fake, kek, arn)
}

mod conformance_on_the_fake {
    use super::*;
    envelope::kek_conformance_tests!(fake_kek().await.1);
}

#[tokio::test]
async fn a_disabled_key_is_key_not_found_for_seal_and_open() {
    let (fake, kek, arn) = fake_kek().await;
    let (_, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    fake.set_enabled(&arn, false);
    for err in [
        kek.generate_data_key(&ctx()).await.unwrap_err(),
        kek.unwrap(&wrapped, &ctx()).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, KmsError::KeyNotFound { key, .. } if key == &arn),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }
    fake.set_enabled(&arn, true);
    kek.unwrap(&wrapped, &ctx()).await.unwrap();
}

#[tokio::test]
async fn contexts_that_concatenate_alike_do_not_open_each_other() {
    let (fake, kek, arn) = fake_kek().await;
    let a_bc = EncryptionContext::new().with("a", "bc").unwrap();
    let ab_c = EncryptionContext::new().with("ab", "c").unwrap();
    let (_, wrapped) = kek.generate_data_key(&a_bc).await.unwrap();
    assert!(matches!(
        kek.unwrap(&wrapped, &ab_c).await,
        Err(KmsError::UnwrapFailed)
    ));
    kek.unwrap(&wrapped, &a_bc).await.unwrap();
    // What KMS saw: the context entry by entry, and Decrypt pinned to the recorded ARN.
    let state = fake.state.lock().unwrap();
    let (op, key_id, ec) = state.seen.last().unwrap();
    assert_eq!(op, "Decrypt");
    assert_eq!(key_id.as_deref(), Some(arn.as_str()));
    assert_eq!(ec.get("a").map(String::as_str), Some("bc"));
    assert_eq!(ec.len(), 1);
}

#[tokio::test]
async fn kms_errors_map_to_kms_error_kinds() {
    let (fake, kek, _) = fake_kek().await;
    let (_, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    type Check = fn(&KmsError) -> bool;
    let cases: [(&str, Check); 7] = [
        ("ThrottlingException", |e| {
            matches!(e, KmsError::Unavailable { .. }) && e.is_retryable()
        }),
        ("KMSInternalException", |e| e.is_retryable()),
        ("KeyUnavailableException", |e| e.is_retryable()),
        ("AccessDeniedException", |e| {
            matches!(e, KmsError::PermissionDenied { .. })
        }),
        ("NotFoundException", |e| {
            matches!(e, KmsError::KeyNotFound { .. })
        }),
        ("KMSInvalidStateException", |e| {
            matches!(e, KmsError::KeyNotFound { .. })
        }),
        ("InvalidCiphertextException", |e| {
            matches!(e, KmsError::UnwrapFailed)
        }),
    ];
    for (code, expected) in cases {
        fake.state.lock().unwrap().fail_with = Some(code);
        let before = fake.requests.load(std::sync::atomic::Ordering::SeqCst);
        let err = kek.unwrap(&wrapped, &ctx()).await.unwrap_err();
        let attempts = fake.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert!(expected(&err), "{code}: {err:?}");
        // The SDK's standard retry mode retries throttling and server errors itself.
        eprintln!(
            "{code}: {attempts} attempt(s) -> {}",
            envelope::Report(&err)
        );
    }
    // On seal, a ciphertext error is not an unwrap failure.
    fake.state.lock().unwrap().fail_with = Some("ValidationException");
    let err = kek.generate_data_key(&ctx()).await.unwrap_err();
    assert!(
        matches!(
            err,
            KmsError::Backend {
                backend: "aws-kms",
                ..
            }
        ),
        "{err:?}"
    );
    fake.state.lock().unwrap().fail_with = None;
    kek.unwrap(&wrapped, &ctx()).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_kms_is_unavailable() {
    let port = test_services::free_port();
    let kek = AwsKmsBuilder::new()
        .with_key_id("arn:aws:kms:us-east-1:111122223333:key/none")
        .with_client(moto::client(
            &format!("http://127.0.0.1:{port}"),
            &RequestCounter::default(),
        ))
        .build()
        .await
        .unwrap();
    let err = kek.generate_data_key(&ctx()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn answers_naming_another_key_or_a_short_key_are_refused() {
    let (fake, kek, _) = fake_kek().await;
    let (_, wrapped) = kek.generate_data_key(&ctx()).await.unwrap();
    fake.state.lock().unwrap().answer_with_key =
        Some("arn:aws:kms:us-east-1:111122223333:key/someone-else".into());
    assert!(matches!(
        kek.generate_data_key(&ctx()).await,
        Err(KmsError::Backend { .. })
    ));
    assert!(matches!(
        kek.unwrap(&wrapped, &ctx()).await,
        Err(KmsError::UnwrapFailed)
    ));
    {
        let mut state = fake.state.lock().unwrap();
        state.answer_with_key = None;
        state.short_plaintext = true;
    }
    assert!(kek.generate_data_key(&ctx()).await.is_err());
    assert!(matches!(
        kek.unwrap(&wrapped, &ctx()).await,
        Err(KmsError::UnwrapFailed)
    ));
}

#[tokio::test]
async fn debug_output_shows_the_key_and_region_only() {
    let (_, kek, arn) = fake_kek().await;
    let shown = format!("{kek:?}");
    assert!(
        shown.contains(&arn) && shown.contains("us-east-1"),
        "{shown}"
    );
    assert!(!shown.contains("testing"), "{shown}");
}
