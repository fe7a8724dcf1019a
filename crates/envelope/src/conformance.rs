//! The conformance kit: proves that a [`KeyEncryptionKey`] keeps the trait's contract.
//!
//! Call [`check_kek`] once (it also works as a start-up self-test of a KMS configuration), or
//! put [`kek_conformance_tests!`](crate::kek_conformance_tests) in a test module for one test
//! per check. Each check returns the [`Failure`] that names it, instead of panicking.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let kek = envelope::local::LocalKek::generate().unwrap();
//! envelope::conformance::check_kek(&kek).await.unwrap();
//! # });
//! ```

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::kek::{KeyEncryptionKey, WrappedKey};
use crate::local::LocalKek;
use crate::secret::DataKey;

/// A check that did not pass.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {reason}")]
#[non_exhaustive]
pub struct Failure {
    /// The check's name (the function of this module that failed).
    pub check: &'static str,
    /// What went wrong.
    pub reason: String,
}

type Outcome = Result<(), Failure>;

fn fail(check: &'static str, reason: impl Into<String>) -> Failure {
    Failure {
        check,
        reason: reason.into(),
    }
}

/// The names of every check, in the order [`check_kek`] runs them.
pub const CHECKS: &[&str] = &[
    "round_trip",
    "context_bound",
    "tampered_wrap_rejected",
    "foreign_wrap_rejected",
    "key_ref_recorded",
    "current_key_ref_exact",
    "concurrent_use",
];

/// Runs every check in order and returns the first failure.
///
/// # Errors
/// The first [`Failure`].
pub async fn check_kek(kek: &dyn KeyEncryptionKey) -> Outcome {
    round_trip(kek).await?;
    context_bound(kek).await?;
    tampered_wrap_rejected(kek).await?;
    foreign_wrap_rejected(kek).await?;
    key_ref_recorded(kek).await?;
    current_key_ref_exact(kek).await?;
    concurrent_use(kek).await
}

fn context(tag: &str) -> EncryptionContext {
    let mut ctx = EncryptionContext::new();
    for (k, v) in [
        ("client-id", "conformance-client"),
        ("purpose", "conformance"),
        ("tag", tag),
    ] {
        // Fixed entries well within the caps: cannot fail.
        let _ = ctx.insert(k, v);
    }
    ctx
}

fn key(check: &'static str) -> Result<DataKey, Failure> {
    DataKey::generate().map_err(|e| fail(check, format!("cannot generate a data key: {e}")))
}

async fn wrap(
    check: &'static str,
    kek: &dyn KeyEncryptionKey,
    key: &DataKey,
    ctx: &EncryptionContext,
) -> Result<WrappedKey, Failure> {
    kek.wrap(key, ctx)
        .await
        .map_err(|e| fail(check, format!("wrap failed: {}", crate::Report(&e))))
}

/// `unwrap(wrap(k))` returns `k`, and `generate_data_key` returns a key that unwraps to itself.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn round_trip(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "round_trip";
    let ctx = context(CHECK);
    let dek = key(CHECK)?;
    let wrapped = wrap(CHECK, kek, &dek, &ctx).await?;
    let back = kek
        .unwrap(&wrapped, &ctx)
        .await
        .map_err(|e| fail(CHECK, format!("unwrap failed: {}", crate::Report(&e))))?;
    if back.expose_secret() != dek.expose_secret() {
        return Err(fail(CHECK, "unwrap returned a different key"));
    }
    let (generated, wrapped) = kek.generate_data_key(&ctx).await.map_err(|e| {
        fail(
            CHECK,
            format!("generate_data_key failed: {}", crate::Report(&e)),
        )
    })?;
    let back = kek.unwrap(&wrapped, &ctx).await.map_err(|e| {
        fail(
            CHECK,
            format!("unwrap of a generated key failed: {}", crate::Report(&e)),
        )
    })?;
    if back.expose_secret() != generated.expose_secret() {
        return Err(fail(CHECK, "a generated key unwrapped to a different key"));
    }
    if generated.expose_secret() == dek.expose_secret() || generated.expose_secret() == &[0; 32] {
        return Err(fail(CHECK, "generated keys are not random"));
    }
    Ok(())
}

/// Unwrapping under a different context (a changed value, an extra entry, a missing entry,
/// the empty context) fails with [`KmsError::UnwrapFailed`].
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn context_bound(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "context_bound";
    let ctx = context(CHECK);
    let dek = key(CHECK)?;
    let wrapped = wrap(CHECK, kek, &dek, &ctx).await?;
    let mut changed = ctx.clone();
    let _ = changed.insert("tag", "context_bounD");
    let mut extra = ctx.clone();
    let _ = extra.insert("zzz-extra", "1");
    let mut missing = EncryptionContext::new();
    for (k, v) in ctx.as_map().iter().skip(1) {
        let _ = missing.insert(k.as_str(), v.as_str());
    }
    for (name, other) in [
        ("a changed value", changed),
        ("an extra entry", extra),
        ("a missing entry", missing),
        ("the empty context", EncryptionContext::new()),
    ] {
        match kek.unwrap(&wrapped, &other).await {
            Err(KmsError::UnwrapFailed) => {}
            Ok(_) => {
                return Err(fail(
                    CHECK,
                    format!(
                        "a key wrapped under one context was unwrapped under {name}; \
                         unwrap under any other context must fail with KmsError::UnwrapFailed"
                    ),
                ));
            }
            Err(e) => {
                return Err(fail(
                    CHECK,
                    format!(
                        "under {name}: expected UnwrapFailed, got {}",
                        crate::Report(&e)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A wrapped key with a flipped bit (first, middle and last byte), truncated, or extended is
/// rejected.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn tampered_wrap_rejected(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "tampered_wrap_rejected";
    let ctx = context(CHECK);
    let dek = key(CHECK)?;
    let wrapped = wrap(CHECK, kek, &dek, &ctx).await?;
    let bytes = wrapped.bytes();
    let len = bytes.len();
    let last = len.saturating_sub(1);
    let mut variants: Vec<(String, Vec<u8>)> = [0, last / 2, last]
        .into_iter()
        .map(|i| {
            let mut b = bytes.to_vec();
            if let Some(byte) = b.get_mut(i) {
                *byte ^= 0x01;
            }
            (format!("the lowest bit of byte {i} (of {len}) flipped"), b)
        })
        .collect();
    variants.push((
        format!("its last byte cut off ({len} bytes made {last})"),
        bytes.get(..last).unwrap_or_default().to_vec(),
    ));
    let mut extended = bytes.to_vec();
    extended.push(0);
    variants.push((format!("a zero byte appended to its {len} bytes"), extended));
    for (name, tampered) in variants {
        let Ok(tampered) = WrappedKey::new(wrapped.key_ref().clone(), tampered) else {
            continue; // an empty wrapped key cannot even be constructed
        };
        if let Ok(got) = kek.unwrap(&tampered, &ctx).await {
            let got = if got.expose_secret() == dek.expose_secret() {
                "the original data key"
            } else {
                "a different data key"
            };
            return Err(fail(
                CHECK,
                format!(
                    "a wrapped key altered by having {name} was unwrapped, to {got}; \
                     any change to a wrapped key must make unwrap fail with \
                     KmsError::UnwrapFailed"
                ),
            ));
        }
    }
    Ok(())
}

/// A wrapped key made by another key (relabelled with this KEK's key reference), or random
/// bytes of the right length, are rejected.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn foreign_wrap_rejected(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "foreign_wrap_rejected";
    let ctx = context(CHECK);
    let dek = key(CHECK)?;
    let own = wrap(CHECK, kek, &dek, &ctx).await?;
    let foreign_kek =
        LocalKek::generate().map_err(|e| fail(CHECK, format!("cannot make a foreign KEK: {e}")))?;
    let foreign = wrap(CHECK, &foreign_kek, &dek, &ctx).await?;
    let mut random = vec![0u8; own.bytes().len()];
    crate::random::fill(&mut random).map_err(|e| fail(CHECK, e.to_string()))?;
    for (name, bytes) in [
        ("another key's wrap", foreign.bytes().to_vec()),
        ("random bytes", random),
    ] {
        let relabelled = WrappedKey::new(own.key_ref().clone(), bytes)
            .map_err(|e| fail(CHECK, e.to_string()))?;
        if kek.unwrap(&relabelled, &ctx).await.is_ok() {
            return Err(fail(
                CHECK,
                format!(
                    "{name}, labelled with this KEK's key reference, was unwrapped; \
                     it must fail with KmsError::UnwrapFailed"
                ),
            ));
        }
    }
    Ok(())
}

/// The wrapped key records this KEK's provider, a key reference the KEK accepts, and neither
/// the key reference nor the wrapped bytes contain the data key.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn key_ref_recorded(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "key_ref_recorded";
    let ctx = context(CHECK);
    let dek = key(CHECK)?;
    let wrapped = wrap(CHECK, kek, &dek, &ctx).await?;
    let key_ref = wrapped.key_ref();
    if key_ref.provider() != kek.provider() {
        return Err(fail(
            CHECK,
            format!(
                "recorded provider {:?}, but the KEK's provider is {:?}",
                key_ref.provider(),
                kek.provider()
            ),
        ));
    }
    if !kek.can_unwrap(key_ref) {
        return Err(fail(
            CHECK,
            format!("the KEK does not accept its own key reference {key_ref}"),
        ));
    }
    let secret = dek.expose_secret();
    let hex_key = hex::encode(secret);
    if key_ref.key_id().to_lowercase().contains(&hex_key)
        || wrapped.bytes().windows(secret.len()).any(|w| w == secret)
    {
        return Err(fail(CHECK, "the data key appears in the clear"));
    }
    Ok(())
}

/// [`current_key_ref`](KeyEncryptionKey::current_key_ref) is exactly the key reference that a
/// fresh `wrap` and `generate_data_key` record, with this KEK's provider and accepted by
/// `can_unwrap`; and a wrapped key of another KEK is not current. A KEK that calls a retired or
/// foreign key current would make rotation skip envelopes that are still under that key.
///
/// (Run it while nobody rotates the key under test: a primary version that moves between the
/// lookup and the wrap is a real change, not a defect, but this check would report it.)
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn current_key_ref_exact(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "current_key_ref_exact";
    let ctx = context(CHECK);
    let current = kek.current_key_ref().await.map_err(|e| {
        fail(
            CHECK,
            format!("current_key_ref failed: {}", crate::Report(&e)),
        )
    })?;
    let dek = key(CHECK)?;
    let wrapped = wrap(CHECK, kek, &dek, &ctx).await?;
    let (_, generated) = kek.generate_data_key(&ctx).await.map_err(|e| {
        fail(
            CHECK,
            format!("generate_data_key failed: {}", crate::Report(&e)),
        )
    })?;
    for (what, recorded) in [
        ("wrap", wrapped.key_ref()),
        ("generate_data_key", generated.key_ref()),
    ] {
        if recorded != &current {
            return Err(fail(
                CHECK,
                format!("current_key_ref is {current}, but {what} recorded {recorded}"),
            ));
        }
    }
    if !kek.can_unwrap(&current) {
        return Err(fail(
            CHECK,
            format!("the KEK does not accept its own current key reference {current}"),
        ));
    }
    let foreign_kek =
        LocalKek::generate().map_err(|e| fail(CHECK, format!("cannot make a foreign KEK: {e}")))?;
    let foreign = wrap(CHECK, &foreign_kek, &dek, &ctx).await?;
    if foreign.key_ref() == &current {
        return Err(fail(
            CHECK,
            format!(
                "another KEK's wrapped key {} is called current",
                foreign.key_ref()
            ),
        ));
    }
    let again = kek.current_key_ref().await.map_err(|e| {
        fail(
            CHECK,
            format!("current_key_ref failed: {}", crate::Report(&e)),
        )
    })?;
    if again != current {
        return Err(fail(
            CHECK,
            format!("current_key_ref changed from {current} to {again} with no rotation"),
        ));
    }
    Ok(())
}

/// Many wraps and unwraps at once through one `Arc<dyn KeyEncryptionKey>` all succeed and
/// round-trip.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn concurrent_use(kek: &dyn KeyEncryptionKey) -> Outcome {
    const CHECK: &str = "concurrent_use";
    const TASKS: usize = 16;
    let ctx = context(CHECK);
    let one = |i: usize| {
        let ctx = ctx.clone();
        async move {
            let ctx = ctx
                .with("task", i.to_string())
                .map_err(|e| fail(CHECK, e.to_string()))?;
            let dek = key(CHECK)?;
            let wrapped = wrap(CHECK, kek, &dek, &ctx).await?;
            let back = kek
                .unwrap(&wrapped, &ctx)
                .await
                .map_err(|e| fail(CHECK, format!("task {i}: {}", crate::Report(&e))))?;
            if back.expose_secret() != dek.expose_secret() {
                return Err(fail(CHECK, format!("task {i} got another task's key")));
            }
            Ok::<_, Failure>(())
        }
    };
    let results = futures_util::future::join_all((0..TASKS).map(one)).await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Makes one `#[tokio::test]` per conformance check for the KEK that `$make` builds (an
/// expression, evaluated once per test). Needs `tokio` with `macros` and `rt-multi-thread`
/// among the caller's dev-dependencies.
///
/// ```
/// mod local_kek {
///     envelope::kek_conformance_tests!(envelope::local::LocalKek::generate().unwrap());
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! kek_conformance_tests {
    ($make:expr) => {
        $crate::kek_conformance_tests!(@one $make;
            round_trip, context_bound, tampered_wrap_rejected,
            foreign_wrap_rejected, key_ref_recorded, current_key_ref_exact, concurrent_use);
    };
    (@one $make:expr; $($check:ident),*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let kek = $make;
                if let Err(failure) = $crate::conformance::$check(&kek).await {
                    panic!("{failure}");
                }
            }
        )*
    };
}
