//! A shared KMS rate limit for store-wide work: KMS quotas are per account and region, so
//! every KEK call of a run (and of every KEK of its keyrings) draws from one limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envelope::{
    DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, Keyring, KmsError, WrappedKey,
};
use tokio::time::Instant;

/// At most `calls` KMS calls a second, spaced evenly (no burst), shared by every KEK wrapped
/// with it ([`KmsRateLimit::keyring`]).
#[derive(Debug)]
pub struct KmsRateLimit {
    interval: Duration,
    /// When the next call may start.
    next: Mutex<Instant>,
}

impl KmsRateLimit {
    /// A limit of `calls` a second (`0` counts as 1).
    #[must_use]
    pub fn per_second(calls: u32) -> Arc<Self> {
        Arc::new(Self {
            interval: Duration::from_secs(1)
                .checked_div(calls.max(1))
                .unwrap_or(Duration::ZERO),
            next: Mutex::new(Instant::now()),
        })
    }

    /// Waits for this call's slot.
    async fn wait(&self) {
        let slot = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot.checked_add(self.interval).unwrap_or(slot);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// `keyring` with every KEK's calls drawn from this limit.
    #[must_use]
    pub fn keyring(self: &Arc<Self>, keyring: &Keyring) -> Keyring {
        keyring.keks().iter().fold(Keyring::new(), |ring, kek| {
            ring.with(Arc::new(RateLimitedKek {
                inner: Arc::clone(kek),
                limit: Arc::clone(self),
            }))
        })
    }
}

/// A KEK whose KMS calls wait for a slot of a shared [`KmsRateLimit`]; everything else is the
/// inner KEK's.
#[derive(Debug)]
struct RateLimitedKek {
    inner: Arc<dyn KeyEncryptionKey>,
    limit: Arc<KmsRateLimit>,
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl KeyEncryptionKey for RateLimitedKek {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        self.inner.can_unwrap(key_ref)
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        self.limit.wait().await;
        self.inner.current_key_ref().await
    }
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.limit.wait().await;
        self.inner.wrap(key, context).await
    }
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.limit.wait().await;
        self.inner.unwrap(wrapped, context).await
    }
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.limit.wait().await;
        self.inner.generate_data_key(context).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )] // tests: a panic is a failure

    use envelope::local::LocalKek;

    use super::*;

    /// Two KEKs share one limit: 21 calls across them at 100 a second take at least 200 ms,
    /// and the KEKs stay what they were (same key, same current key).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_of_every_kek_draw_from_one_limit() {
        let (a, b): (Arc<dyn KeyEncryptionKey>, Arc<dyn KeyEncryptionKey>) = (
            Arc::new(LocalKek::generate().unwrap()),
            Arc::new(LocalKek::generate().unwrap()),
        );
        let plain = Keyring::new().with(Arc::clone(&a)).with(Arc::clone(&b));
        let limited = KmsRateLimit::per_second(100).keyring(&plain);
        assert_eq!(limited.keks().len(), 2);
        assert_eq!(limited.keks()[0].key_id(), a.key_id());
        assert_eq!(
            limited.current_key_refs().await.unwrap(),
            plain.current_key_refs().await.unwrap()
        );
        let context = EncryptionContext::new().with("k", "v").unwrap();
        let key = DataKey::generate().unwrap();
        let started = std::time::Instant::now();
        let calls = (0..21).map(|i| {
            let kek = Arc::clone(&limited.keks()[i % 2]);
            let (key, context) = (&key, &context);
            async move { kek.wrap(key, context).await.unwrap() }
        });
        let wrapped = futures_util::future::join_all(calls).await;
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        let opened = limited.keks()[1]
            .unwrap(&wrapped[1], &context)
            .await
            .unwrap();
        assert_eq!(opened.expose_secret(), key.expose_secret());
    }
}
