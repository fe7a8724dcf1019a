//! Test doubles for code that uses a [`KeyEncryptionKey`]: one wrapper, [`HookedKek`], that
//! forwards every method to a real key and runs a [`KekHook`] around each call that would
//! reach the KMS, plus the hooks most tests need: [`CallCounter`] (calls by kind), [`Outage`]
//! (a KMS switched off and on), [`FailingCalls`] (chosen calls fail), [`Latency`] (a KMS round
//! trip) and [`InFlight`] (calls under way at once).
//!
//! A hand-written wrapper must forward every method of the trait, or it silently changes
//! behaviour (a forgotten `can_unwrap` makes every envelope look foreign); this one does, once,
//! for every test. A test that needs latency, in-flight counting or failures on chosen calls
//! writes a hook of a few lines instead of another wrapper.
//!
//! ```
//! use std::sync::Arc;
//! use envelope::local::LocalKek;
//! use envelope::testing::{CallCounter, HookedKek, KekCall};
//! use envelope::{EncryptionContext, Keyring, seal};
//!
//! # async fn demo() -> Result<(), envelope::Error> {
//! let calls = Arc::new(CallCounter::default());
//! let kek = HookedKek::new(Arc::new(LocalKek::generate()?)).with_hook(Arc::clone(&calls));
//! let keyring = Keyring::new().with(Arc::new(kek));
//! seal(&keyring, &EncryptionContext::new().with("client-id", "cl_1")?, b"share").await?;
//! assert_eq!(calls.count(KekCall::GenerateDataKey), 1);
//! assert_eq!(calls.total(), 1);
//! # Ok(()) }
//! # futures_executor(demo()).unwrap();
//! # fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Waker};
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = Context::from_waker(Waker::noop());
//! #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::kek::{KeyEncryptionKey, KeyRef, WrappedKey};
use crate::secret::DataKey;

/// A call of a [`KeyEncryptionKey`] that reaches the KMS (or the token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KekCall {
    /// [`KeyEncryptionKey::current_key_ref`].
    CurrentKeyRef,
    /// [`KeyEncryptionKey::generate_data_key`]: a fresh data key, wrapped.
    GenerateDataKey,
    /// [`KeyEncryptionKey::wrap`].
    Wrap,
    /// [`KeyEncryptionKey::unwrap`].
    Unwrap,
}

impl KekCall {
    /// Whether the call wraps a data key ([`GenerateDataKey`](Self::GenerateDataKey) or
    /// [`Wrap`](Self::Wrap)).
    #[must_use]
    pub fn wraps(self) -> bool {
        matches!(self, Self::GenerateDataKey | Self::Wrap)
    }
}

/// What [`HookedKek`] runs around each call that reaches the KMS.
#[async_trait::async_trait]
pub trait KekHook: fmt::Debug + Send + Sync + 'static {
    /// Runs before the call. An error is returned instead of making the call (an outage, a
    /// refusal); a delay here is latency.
    ///
    /// # Errors
    /// The error the call then fails with.
    async fn before(&self, call: KekCall) -> Result<(), KmsError>;

    /// Runs once the call is over, whatever it returned, if this hook's
    /// [`before`](Self::before) let it through (also when a later hook then refused it), so
    /// that a gauge raised in `before` always comes down.
    async fn after(&self, call: KekCall) {
        let _ = call;
    }
}

/// A [`KeyEncryptionKey`] that is `inner` in every respect, with hooks run around each call
/// that reaches the KMS, in the order they were added.
#[derive(Debug)]
pub struct HookedKek {
    inner: Arc<dyn KeyEncryptionKey>,
    hooks: Vec<Arc<dyn KekHook>>,
}

impl HookedKek {
    /// Wraps `inner`, with no hook yet.
    pub fn new(inner: Arc<dyn KeyEncryptionKey>) -> Self {
        Self {
            inner,
            hooks: Vec::new(),
        }
    }

    /// Adds a hook, run after the ones before it (a call refused by an earlier hook never
    /// reaches it). The test keeps its own `Arc` of the hook to read it; add a
    /// [`CallCounter`] first to count the calls a later hook refuses too.
    #[must_use]
    pub fn with_hook<H: KekHook>(mut self, hook: Arc<H>) -> Self {
        self.hooks.push(hook);
        self
    }

    async fn around<T>(
        &self,
        call: KekCall,
        work: impl Future<Output = Result<T, KmsError>> + Send,
    ) -> Result<T, KmsError> {
        let mut passed = 0_usize;
        let mut refused = None;
        for hook in &self.hooks {
            if let Err(e) = hook.before(call).await {
                refused = Some(e);
                break;
            }
            passed = passed.saturating_add(1);
        }
        let out = match refused {
            Some(e) => Err(e),
            None => work.await,
        };
        for hook in self.hooks.iter().take(passed) {
            hook.after(call).await;
        }
        out
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)] // a wrapper forwards every method, or it changes behaviour
impl KeyEncryptionKey for HookedKek {
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
        self.around(KekCall::CurrentKeyRef, self.inner.current_key_ref())
            .await
    }
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.around(KekCall::Wrap, self.inner.wrap(key, context))
            .await
    }
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.around(KekCall::Unwrap, self.inner.unwrap(wrapped, context))
            .await
    }
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.around(
            KekCall::GenerateDataKey,
            self.inner.generate_data_key(context),
        )
        .await
    }
}

/// Counts the calls that reach the KMS, by kind: each is one KMS request (AWS, Google Cloud)
/// or one operation on the token (PKCS#11).
#[derive(Debug, Default)]
pub struct CallCounter {
    current_key_ref: AtomicUsize,
    generate_data_key: AtomicUsize,
    wrap: AtomicUsize,
    unwrap: AtomicUsize,
}

impl CallCounter {
    fn cell(&self, call: KekCall) -> &AtomicUsize {
        match call {
            KekCall::CurrentKeyRef => &self.current_key_ref,
            KekCall::GenerateDataKey => &self.generate_data_key,
            KekCall::Wrap => &self.wrap,
            KekCall::Unwrap => &self.unwrap,
        }
    }

    /// Calls of one kind so far.
    #[must_use]
    pub fn count(&self, call: KekCall) -> usize {
        self.cell(call).load(Ordering::SeqCst)
    }

    /// Calls that wrapped a data key ([`KekCall::wraps`]).
    #[must_use]
    pub fn wraps(&self) -> usize {
        self.count(KekCall::GenerateDataKey)
            .saturating_add(self.count(KekCall::Wrap))
    }

    /// Unwraps so far.
    #[must_use]
    pub fn unwraps(&self) -> usize {
        self.count(KekCall::Unwrap)
    }

    /// Every call so far.
    #[must_use]
    pub fn total(&self) -> usize {
        self.wraps()
            .saturating_add(self.unwraps())
            .saturating_add(self.count(KekCall::CurrentKeyRef))
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        for call in [
            KekCall::CurrentKeyRef,
            KekCall::GenerateDataKey,
            KekCall::Wrap,
            KekCall::Unwrap,
        ] {
            self.cell(call).store(0, Ordering::SeqCst);
        }
    }
}

#[async_trait::async_trait]
impl KekHook for CallCounter {
    async fn before(&self, call: KekCall) -> Result<(), KmsError> {
        self.cell(call).fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A KMS outage that a test switches on and off: while it is on, every call fails with the
/// retryable [`KmsError::Unavailable`] without reaching the KMS.
#[derive(Debug, Default)]
pub struct Outage {
    down: AtomicBool,
    refused: AtomicUsize,
}

impl Outage {
    /// Starts (`true`) or ends (`false`) the outage.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether the outage is on.
    #[must_use]
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Calls refused so far.
    #[must_use]
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl KekHook for Outage {
    async fn before(&self, _call: KekCall) -> Result<(), KmsError> {
        if self.is_down() {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(KmsError::Unavailable {
                source: "the test switched the KMS off".into(),
            });
        }
        Ok(())
    }
}

/// Fails chosen calls, by their number among the calls of their kind: the wraps (a fresh data
/// key or a wrap, see [`KekCall::wraps`]) and the unwraps, each numbered from 0. A window of
/// failures in the middle of a run is an outage that starts and ends at a known point;
/// [`KekCall::CurrentKeyRef`] is never failed. A failure is the retryable
/// [`KmsError::Unavailable`].
#[derive(Debug, Default)]
pub struct FailingCalls {
    wraps: std::ops::Range<usize>,
    unwraps: std::ops::Range<usize>,
    wrap_calls: AtomicUsize,
    unwrap_calls: AtomicUsize,
    failed: AtomicUsize,
}

impl FailingCalls {
    /// Fails no call yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the wraps numbered in `window` (`4..10`: the fifth to the tenth).
    #[must_use]
    pub fn wraps(mut self, window: std::ops::Range<usize>) -> Self {
        self.wraps = window;
        self
    }

    /// Fails the unwraps numbered in `window`.
    #[must_use]
    pub fn unwraps(mut self, window: std::ops::Range<usize>) -> Self {
        self.unwraps = window;
        self
    }

    /// Calls failed so far.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl KekHook for FailingCalls {
    async fn before(&self, call: KekCall) -> Result<(), KmsError> {
        let (calls, window) = match call {
            KekCall::CurrentKeyRef => return Ok(()),
            KekCall::Unwrap => (&self.unwrap_calls, &self.unwraps),
            KekCall::GenerateDataKey | KekCall::Wrap => (&self.wrap_calls, &self.wraps),
        };
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if window.contains(&n) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(KmsError::Unavailable {
                source: format!("the test failed this call ({call:?} number {n})").into(),
            });
        }
        Ok(())
    }
}

/// A KMS round trip: every call waits a delay (on the tokio timer) before it is made. The
/// delay can be changed while the key is in use (none while seeding, 5 ms while measuring);
/// the time actually waited is summed, since a loaded machine's timer overshoots.
#[derive(Debug, Default)]
pub struct Latency {
    delay_ns: AtomicU64,
    waited_ns: AtomicU64,
}

impl Latency {
    /// Every call waits `delay`.
    #[must_use]
    pub fn new(delay: Duration) -> Self {
        let latency = Self::default();
        latency.set(delay);
        latency
    }

    /// From now on every call waits `delay` (zero: none).
    pub fn set(&self, delay: Duration) {
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.delay_ns.store(ns, Ordering::Relaxed);
    }

    /// The time the calls waited, in total.
    #[must_use]
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    /// Sets the total waited back to zero.
    pub fn reset_waited(&self) {
        self.waited_ns.store(0, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl KekHook for Latency {
    async fn before(&self, _call: KekCall) -> Result<(), KmsError> {
        let delay = Duration::from_nanos(self.delay_ns.load(Ordering::Relaxed));
        if !delay.is_zero() {
            let started = Instant::now();
            tokio::time::sleep(delay).await;
            let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.waited_ns.fetch_add(waited, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The calls under way at once, and the most there have been: a bound on concurrency is
/// proven by the peak. Add it before a [`Latency`], so that the wait counts as under way.
#[derive(Debug, Default)]
pub struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    /// Calls under way now.
    #[must_use]
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most calls under way at once since the start (or the last [`reset_peak`](Self::reset_peak)).
    #[must_use]
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Sets the peak back to the calls under way now.
    pub fn reset_peak(&self) {
        self.peak.store(self.now(), Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl KekHook for InFlight {
    async fn before(&self, _call: KekCall) -> Result<(), KmsError> {
        let now = self.now.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    async fn after(&self, _call: KekCall) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalKek;

    fn block_on<F: Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn context() -> EncryptionContext {
        EncryptionContext::new().with("client-id", "cl_1").unwrap()
    }

    #[test]
    fn every_method_is_the_inner_key_s() {
        let inner: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate().unwrap());
        let hooked = HookedKek::new(Arc::clone(&inner)).with_hook(Arc::new(CallCounter::default()));
        assert_eq!(hooked.provider(), inner.provider());
        assert_eq!(hooked.key_id(), inner.key_id());
        let (key, wrapped) = block_on(hooked.generate_data_key(&context())).unwrap();
        assert!(hooked.can_unwrap(wrapped.key_ref()));
        // What the wrapper wrapped, the inner key opens, and the other way round.
        let opened = block_on(inner.unwrap(&wrapped, &context())).unwrap();
        assert_eq!(opened.expose_secret(), key.expose_secret());
        assert_eq!(
            block_on(hooked.current_key_ref()).unwrap(),
            block_on(inner.current_key_ref()).unwrap()
        );
    }

    #[test]
    fn the_counter_counts_each_kind() {
        let calls = Arc::new(CallCounter::default());
        let kek =
            HookedKek::new(Arc::new(LocalKek::generate().unwrap())).with_hook(Arc::clone(&calls));
        let (key, wrapped) = block_on(kek.generate_data_key(&context())).unwrap();
        block_on(kek.wrap(&key, &context())).unwrap();
        block_on(kek.unwrap(&wrapped, &context())).unwrap();
        block_on(kek.unwrap(&wrapped, &context())).unwrap();
        assert_eq!((calls.wraps(), calls.unwraps(), calls.total()), (2, 2, 4));
        calls.reset();
        assert_eq!(calls.total(), 0);
    }

    #[test]
    fn an_outage_refuses_every_call_until_it_ends() {
        let outage = Arc::new(Outage::default());
        let kek =
            HookedKek::new(Arc::new(LocalKek::generate().unwrap())).with_hook(Arc::clone(&outage));
        outage.set_down(true);
        let err = block_on(kek.generate_data_key(&context())).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(outage.refused(), 1);
        outage.set_down(false);
        assert!(block_on(kek.generate_data_key(&context())).is_ok());
        assert_eq!(outage.refused(), 1);
    }

    #[test]
    fn hooks_run_in_order_and_a_refused_call_stops_at_the_refusing_hook() {
        let before = Arc::new(CallCounter::default());
        let outage = Arc::new(Outage::default());
        let after = Arc::new(CallCounter::default());
        let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
            .with_hook(Arc::clone(&before))
            .with_hook(Arc::clone(&outage))
            .with_hook(Arc::clone(&after));
        outage.set_down(true);
        assert!(block_on(kek.generate_data_key(&context())).is_err());
        outage.set_down(false);
        assert!(block_on(kek.generate_data_key(&context())).is_ok());
        assert_eq!((before.total(), after.total()), (2, 1));
    }

    #[test]
    fn failing_calls_fail_the_chosen_window_of_each_kind() {
        let failing = Arc::new(FailingCalls::new().wraps(1..2).unwraps(0..1));
        let kek =
            HookedKek::new(Arc::new(LocalKek::generate().unwrap())).with_hook(Arc::clone(&failing));
        let (key, wrapped) = block_on(kek.generate_data_key(&context())).unwrap();
        let err = block_on(kek.wrap(&key, &context())).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(block_on(kek.wrap(&key, &context())).is_ok());
        assert!(block_on(kek.unwrap(&wrapped, &context())).is_err());
        assert!(block_on(kek.unwrap(&wrapped, &context())).is_ok());
        assert!(block_on(kek.current_key_ref()).is_ok());
        assert_eq!(failing.failed(), 2);
    }

    #[test]
    fn a_gauge_comes_down_when_a_later_hook_refuses_the_call() {
        let in_flight = Arc::new(InFlight::default());
        let outage = Arc::new(Outage::default());
        let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
            .with_hook(Arc::clone(&in_flight))
            .with_hook(Arc::clone(&outage));
        outage.set_down(true);
        assert!(block_on(kek.generate_data_key(&context())).is_err());
        assert_eq!((in_flight.now(), in_flight.peak()), (0, 1));
        in_flight.reset_peak();
        assert_eq!(in_flight.peak(), 0);
    }

    #[tokio::test]
    async fn latency_delays_every_call_and_sums_the_wait() {
        let latency = Arc::new(Latency::new(Duration::from_millis(5)));
        let in_flight = Arc::new(InFlight::default());
        let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
            .with_hook(Arc::clone(&in_flight))
            .with_hook(Arc::clone(&latency));
        let started = tokio::time::Instant::now();
        let (_, wrapped) = kek.generate_data_key(&context()).await.unwrap();
        kek.unwrap(&wrapped, &context()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(10));
        assert!(latency.waited() >= Duration::from_millis(10));
        assert_eq!((in_flight.now(), in_flight.peak()), (0, 1));
        latency.set(Duration::ZERO);
        latency.reset_waited();
        kek.unwrap(&wrapped, &context()).await.unwrap();
        assert_eq!(latency.waited(), Duration::ZERO);
    }
}
