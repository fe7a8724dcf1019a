//! The conformance kit, run on the local KEK, and on deliberately broken KEKs that it must
#![allow(clippy::unwrap_used)] // the deliberately broken KEKs below are test fixtures
//! catch.

use std::sync::Arc;

use envelope::conformance::{self, check_kek};
use envelope::local::LocalKek;
use envelope::{DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, KmsError, WrappedKey};

mod local_kek {
    envelope::kek_conformance_tests!(envelope::local::LocalKek::generate().unwrap());
}

mod local_kek_through_arc_dyn {
    envelope::kek_conformance_tests!({
        let kek: std::sync::Arc<dyn envelope::KeyEncryptionKey> =
            std::sync::Arc::new(envelope::local::LocalKek::generate().unwrap());
        kek
    });
}

/// Wraps with a local key but ignores the context: the bug kms-aead ships.
#[derive(Debug)]
struct IgnoresContext(LocalKek);

#[async_trait::async_trait]
impl KeyEncryptionKey for IgnoresContext {
    fn provider(&self) -> &str {
        "broken"
    }
    fn key_id(&self) -> &str {
        "ignores-context"
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        Ok(KeyRef::new("broken", "ignores-context").unwrap())
    }
    async fn wrap(&self, key: &DataKey, _: &EncryptionContext) -> Result<WrappedKey, KmsError> {
        let w = self.0.wrap(key, &EncryptionContext::new()).await?;
        Ok(WrappedKey::new(
            KeyRef::new("broken", "ignores-context").unwrap(),
            w.bytes().to_vec(),
        )
        .unwrap())
    }
    async fn unwrap(&self, w: &WrappedKey, _: &EncryptionContext) -> Result<DataKey, KmsError> {
        let inner = WrappedKey::new(
            KeyRef::new("local", self.0.key_id()).unwrap(),
            w.bytes().to_vec(),
        )
        .unwrap();
        self.0.unwrap(&inner, &EncryptionContext::new()).await
    }
}

/// "Wraps" by storing the key in the clear.
#[derive(Debug)]
struct Plain;

#[async_trait::async_trait]
impl KeyEncryptionKey for Plain {
    fn provider(&self) -> &str {
        "plain"
    }
    fn key_id(&self) -> &str {
        "plain"
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        Ok(KeyRef::new("plain", "plain").unwrap())
    }
    async fn wrap(&self, key: &DataKey, ctx: &EncryptionContext) -> Result<WrappedKey, KmsError> {
        let mut bytes = ctx.canonical_bytes();
        bytes.extend_from_slice(key.expose_secret());
        Ok(WrappedKey::new(KeyRef::new("plain", "plain").unwrap(), bytes).unwrap())
    }
    async fn unwrap(&self, w: &WrappedKey, ctx: &EncryptionContext) -> Result<DataKey, KmsError> {
        let c = ctx.canonical_bytes();
        match w.bytes().strip_prefix(c.as_slice()) {
            Some(k) => DataKey::from_slice(k).ok_or(KmsError::UnwrapFailed),
            None => Err(KmsError::UnwrapFailed),
        }
    }
}

/// Records a key reference it does not accept itself.
#[derive(Debug)]
struct WrongLabel(LocalKek);

#[async_trait::async_trait]
impl KeyEncryptionKey for WrongLabel {
    fn provider(&self) -> &str {
        "local"
    }
    fn key_id(&self) -> &str {
        "configured-id"
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        self.0.current_key_ref().await
    }
    async fn wrap(&self, key: &DataKey, ctx: &EncryptionContext) -> Result<WrappedKey, KmsError> {
        self.0.wrap(key, ctx).await
    }
    async fn unwrap(&self, w: &WrappedKey, ctx: &EncryptionContext) -> Result<DataKey, KmsError> {
        self.0.unwrap(w, ctx).await
    }
}

/// Rotated from `old` to `new` but still calls `old`'s key current: it can open both (true), yet
/// a rotation asking it "is this envelope under your current key?" would skip envelopes that
/// are still under the retired key. The bug of issue 11, as a KEK.
#[derive(Debug)]
struct CallsRetiredKeyCurrent {
    old: LocalKek,
    new: LocalKek,
}

#[async_trait::async_trait]
impl KeyEncryptionKey for CallsRetiredKeyCurrent {
    fn provider(&self) -> &str {
        "local"
    }
    fn key_id(&self) -> &str {
        self.new.key_id()
    }
    fn can_unwrap(&self, r: &KeyRef) -> bool {
        self.old.can_unwrap(r) || self.new.can_unwrap(r)
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        self.old.current_key_ref().await
    }
    async fn wrap(&self, key: &DataKey, ctx: &EncryptionContext) -> Result<WrappedKey, KmsError> {
        self.new.wrap(key, ctx).await
    }
    async fn unwrap(&self, w: &WrappedKey, ctx: &EncryptionContext) -> Result<DataKey, KmsError> {
        if self.old.can_unwrap(w.key_ref()) {
            self.old.unwrap(w, ctx).await
        } else {
            self.new.unwrap(w, ctx).await
        }
    }
}

/// Answers `current_key_ref` with a fixed reference of another key.
#[derive(Debug)]
struct FixedForeignCurrent(LocalKek);

#[async_trait::async_trait]
impl KeyEncryptionKey for FixedForeignCurrent {
    fn provider(&self) -> &str {
        "local"
    }
    fn key_id(&self) -> &str {
        self.0.key_id()
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        Ok(KeyRef::new("local", "fp:00000000000000000000000000000000").unwrap())
    }
    async fn wrap(&self, key: &DataKey, ctx: &EncryptionContext) -> Result<WrappedKey, KmsError> {
        self.0.wrap(key, ctx).await
    }
    async fn unwrap(&self, w: &WrappedKey, ctx: &EncryptionContext) -> Result<DataKey, KmsError> {
        self.0.unwrap(w, ctx).await
    }
}

#[tokio::test]
async fn a_kek_that_calls_a_retired_key_current_fails_the_kit() {
    let broken = CallsRetiredKeyCurrent {
        old: LocalKek::generate().unwrap(),
        new: LocalKek::generate().unwrap(),
    };
    // Every other check passes: only the new one catches it.
    for check in [
        conformance::round_trip(&broken).await,
        conformance::context_bound(&broken).await,
        conformance::tampered_wrap_rejected(&broken).await,
        conformance::foreign_wrap_rejected(&broken).await,
        conformance::key_ref_recorded(&broken).await,
        conformance::concurrent_use(&broken).await,
    ] {
        check.unwrap();
    }
    let failure = check_kek(&broken).await.unwrap_err();
    assert_eq!(failure.check, "current_key_ref_exact");
    assert!(failure.reason.contains("wrap recorded"), "{failure}");
}

#[tokio::test]
async fn a_kek_that_calls_a_fixed_foreign_key_current_fails_the_kit() {
    let failure = check_kek(&FixedForeignCurrent(LocalKek::generate().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(failure.check, "current_key_ref_exact");
}

#[tokio::test]
async fn a_kek_that_ignores_the_context_fails_context_bound() {
    let broken = IgnoresContext(LocalKek::generate().unwrap());
    conformance::round_trip(&broken).await.unwrap();
    let failure = check_kek(&broken).await.unwrap_err();
    assert_eq!(failure.check, "context_bound");
}

#[tokio::test]
async fn a_kek_that_stores_the_key_in_the_clear_is_caught() {
    let failure = check_kek(&Plain).await.unwrap_err();
    // Binds the context, so the first check it fails is tampering (a flipped bit in the
    // key part still "unwraps").
    assert_eq!(failure.check, "tampered_wrap_rejected");
    // Says what was done to the wrapped key and what was expected instead.
    assert!(
        failure
            .reason
            .starts_with("a wrapped key altered by having the lowest bit of byte "),
        "{failure}"
    );
    assert!(
        failure
            .reason
            .contains("was unwrapped, to a different data key"),
        "{failure}"
    );
    assert!(
        failure
            .reason
            .ends_with("must make unwrap fail with KmsError::UnwrapFailed"),
        "{failure}"
    );
    let failure = conformance::key_ref_recorded(&Plain).await.unwrap_err();
    assert_eq!(failure.check, "key_ref_recorded");
    assert!(failure.reason.contains("in the clear"));
}

#[tokio::test]
async fn a_kek_that_rejects_its_own_key_reference_is_caught() {
    let failure = check_kek(&WrongLabel(LocalKek::generate().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(failure.check, "key_ref_recorded");
}

#[tokio::test]
async fn check_kek_passes_through_arc_dyn() {
    let kek: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
    check_kek(&kek).await.unwrap();
    assert_eq!(conformance::CHECKS.len(), 7);
}
