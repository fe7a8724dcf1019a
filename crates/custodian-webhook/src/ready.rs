//! Readiness: whether the store and the KMS answer now.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envelope::{EncryptionContext, Keyring};
use storage::{BackupKey, BackupStore};
use tokio::sync::Mutex;

use crate::metrics::WebhookMetrics;

/// The path of the readiness endpoint (no secret, no request-level allowlist): 200 when the
/// store and the KMS answered their last check, 503 otherwise.
pub const READY_PATH: &str = "/readyz";

/// Default time a KMS check result is reused: the KMS is asked at most this often.
pub const DEFAULT_KMS_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Time a store check result is reused, so that a flood of readiness requests costs the
/// store at most one probe a second.
const STORE_CHECK_TTL: Duration = Duration::from_secs(1);

/// Longest wait for one probe; a probe that takes longer counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The client id the store probe reads (a missing object is the expected answer). Portal's
/// client ids never start with `_`.
const PROBE_CLIENT: &str = "_readiness-probe";

/// What a readiness check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The store answered a read (a missing object is an answer).
    pub store: bool,
    /// The keyring sealed and opened a probe value.
    pub kms: bool,
}

impl Readiness {
    /// Whether the server can serve backups and fetches now.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.store && self.kms
    }
}

/// Runs the checks, with their cached results.
pub(crate) struct ReadinessProbe {
    store: Arc<dyn BackupStore>,
    keyring: Keyring,
    kms_interval: Duration,
    kms_last: Mutex<Option<(Instant, bool)>>,
    store_last: Mutex<Option<(Instant, bool)>>,
    metrics: WebhookMetrics,
}

impl std::fmt::Debug for ReadinessProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessProbe")
            .field("store", &self.store.name())
            .field("keks", &self.keyring.keks().len())
            .field("kms_interval", &self.kms_interval)
            .finish_non_exhaustive()
    }
}

impl ReadinessProbe {
    pub(crate) fn new(
        store: Arc<dyn BackupStore>,
        keyring: Keyring,
        kms_interval: Duration,
        metrics: WebhookMetrics,
    ) -> Self {
        Self {
            store,
            keyring,
            kms_interval,
            kms_last: Mutex::new(None),
            store_last: Mutex::new(None),
            metrics,
        }
    }

    pub(crate) async fn check(&self) -> Readiness {
        let (store, kms) = tokio::join!(
            cached(&self.store_last, STORE_CHECK_TTL, self.probe_store()),
            cached(&self.kms_last, self.kms_interval, self.probe_kms()),
        );
        self.metrics.dependency_checked("store", store);
        self.metrics.dependency_checked("kms", kms);
        Readiness { store, kms }
    }

    async fn probe_store(&self) -> bool {
        let key = match BackupKey::custodian_backup(PROBE_CLIENT, "READINESS") {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(error = %storage::Report(&e), "readiness: no probe key");
                return false;
            }
        };
        match self.store.get(&key).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(error = %storage::Report(&e), "readiness: the store does not answer");
                false
            }
        }
    }

    async fn probe_kms(&self) -> bool {
        let result = async {
            let context = EncryptionContext::new().with("purpose", "readiness-probe")?;
            let sealed = envelope::seal(&self.keyring, &context, b"readiness").await?;
            envelope::open(&self.keyring, &context, &sealed).await?;
            Ok::<_, envelope::Error>(())
        }
        .await;
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %envelope::Report(&e), "readiness: the KMS does not answer");
                false
            }
        }
    }
}

/// The result kept in `last` while younger than `ttl`, or a new probe's (one at a time: a
/// caller arriving during a probe waits for its result).
async fn cached(
    last: &Mutex<Option<(Instant, bool)>>,
    ttl: Duration,
    probe: impl Future<Output = bool>,
) -> bool {
    let mut last = last.lock().await;
    if let Some((at, ok)) = *last
        && at.elapsed() < ttl
    {
        return ok;
    }
    let ok = tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| {
            tracing::warn!("readiness: a probe timed out");
            false
        });
    *last = Some((Instant::now(), ok));
    ok
}
