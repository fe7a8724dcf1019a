//! The webhook server: configuration, routes, and the accept loop.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use envelope::Keyring;
use futures_util::StreamExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use portal_api::SecretShare;
use portal_api::webhook::{
    BACKUP_PATH, BackupRequest, FETCH_PATH, FetchRequest, FetchResponse, SECRET_HEADER,
};
use serde::{Deserialize, Serialize};
use storage::BackupStore;
use tokio::net::TcpListener;
use tower_service::Service as _;
use tracing::Instrument as _;
use zeroize::Zeroizing;

use crate::admission::Admission;
use crate::allow::{Allowlist, source_address};
use crate::error::Error;
use crate::metrics::WebhookMetrics;
use crate::ready::{DEFAULT_KMS_CHECK_INTERVAL, READY_PATH, Readiness, ReadinessProbe};
use crate::secret::WebhookSecrets;
use crate::tls::TlsConfig;
use crate::vault::ShareVault;

/// Default largest request body: 64 KiB (a custodian share is about 7 KiB).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default deadline of one request, body included: 8 s, inside Portal's 10 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Default time allowed for a client to send its request headers, and for a TLS handshake.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default most connections served at once; further ones are closed as soon as they are
/// accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default most connections one peer address (an IPv6 /64) may hold at once, when
/// forwarded-for is not trusted. Behind a trusted proxy the default is no cap, since every
/// connection comes from the proxy.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;
/// Most connections the metrics listener serves at once.
const METRICS_MAX_CONNECTIONS: usize = 32;
/// Default time that [`WebhookServer::serve`] waits for requests in flight after shutdown
/// is asked for.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The path of the liveness endpoint (no secret, no request-level allowlist): always 200 `ok`.
pub const HEALTH_PATH: &str = "/healthz";
/// The path of the metrics endpoint, on the [metrics listener](WebhookServer::serve_metrics)
/// only.
pub const METRICS_PATH: &str = "/metrics";
/// The content type of the metrics answer.
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Builds a [`WebhookServer`]; made by [`WebhookServer::builder`]. The keyring, the store
/// and the secrets are required; everything else has a safe default.
///
/// `Debug` never shows a secret or key.
#[must_use]
pub struct WebhookServerBuilder {
    keyring: Option<Keyring>,
    store: Option<Arc<dyn BackupStore>>,
    secrets: Option<WebhookSecrets>,
    base_path: String,
    allowlist: Allowlist,
    trust_forwarded_for: bool,
    tls: Option<TlsConfig>,
    body_limit: usize,
    request_timeout: Duration,
    header_timeout: Duration,
    max_connections: usize,
    max_connections_per_peer: Option<usize>,
    shutdown_grace: Duration,
    known_methods: Option<Vec<String>>,
    metrics: Option<WebhookMetrics>,
    kms_check_interval: Duration,
}

impl fmt::Debug for WebhookServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookServerBuilder")
            .field("keks", &self.keyring.as_ref().map(|k| k.keks().len()))
            .field("store", &self.store.as_ref().map(|s| s.name()))
            .field("secrets", &self.secrets)
            .field("base_path", &self.base_path)
            .field("allowlist", &self.allowlist)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("tls", &self.tls)
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .finish_non_exhaustive()
    }
}

impl WebhookServerBuilder {
    fn new() -> Self {
        Self {
            keyring: None,
            store: None,
            secrets: None,
            base_path: String::new(),
            allowlist: Allowlist::any(),
            trust_forwarded_for: false,
            tls: None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            known_methods: None,
            metrics: None,
            kms_check_interval: DEFAULT_KMS_CHECK_INTERVAL,
        }
    }

    /// The key-encryption keys that seal the shares (all of them wrap each share's data key;
    /// any one opens it). Required.
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Where the sealed shares are kept. Required.
    pub fn with_store(mut self, store: Arc<dyn BackupStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The secrets `X-Webhook-Secret` must match (any one of them). Required.
    pub fn with_secrets(mut self, secrets: WebhookSecrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The path the webhook routes live under: with `/portal`, Portal's base URL is
    /// `https://host/portal` and it calls `/portal/backup` and `/portal/backup/fetch`.
    /// Default: empty (`/backup`, `/backup/fetch`). A trailing `/` is ignored.
    pub fn with_base_path(mut self, base_path: impl Into<String>) -> Self {
        self.base_path = base_path.into();
        self
    }

    /// Only these source addresses may call. Without trusted forwarded-for the TCP peer is
    /// checked when the connection is accepted, and a connection from another address is
    /// closed before a byte is read (the health and readiness endpoints of this listener are
    /// then out of its reach too; see [`serve_metrics`](WebhookServer::serve_metrics)). With
    /// trusted forwarded-for each request is checked and refused with 403. Default: every
    /// address. See [`Allowlist`].
    pub fn with_allowlist(mut self, allowlist: Allowlist) -> Self {
        self.allowlist = allowlist;
        self
    }

    /// Whether the source address is taken from `X-Forwarded-For` (its rightmost entry,
    /// the one the adjacent proxy appended) instead of the TCP peer. Only for a server that
    /// is reachable solely through that proxy; anyone else could name any address. Default:
    /// false.
    pub fn with_trust_forwarded_for(mut self, trust: bool) -> Self {
        self.trust_forwarded_for = trust;
        self
    }

    /// Serve HTTPS with this certificate. Default: plain HTTP (for a TLS-terminating proxy
    /// in front).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Largest request body in bytes; larger ones get 413. Default [`DEFAULT_BODY_LIMIT`].
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Deadline of one request including reading its body, sealing and storing; past it the
    /// answer is 503. Default [`DEFAULT_REQUEST_TIMEOUT`]. A store write already under way
    /// may still complete after the 503.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Time allowed for request headers and for a TLS handshake. Default
    /// [`DEFAULT_HEADER_TIMEOUT`].
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Most connections served at once; a connection accepted beyond it is closed at once.
    /// Connections refused by the allowlist or the per-peer cap never take one of these
    /// slots. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Most connections one peer address (IPv4 address, IPv6 /64) may hold at once; a further
    /// connection from it is closed as soon as it is accepted, without taking a global slot.
    /// 0 means no cap. Default: [`DEFAULT_MAX_CONNECTIONS_PER_PEER`], or no cap with
    /// [trusted forwarded-for](Self::with_trust_forwarded_for) (the peer is then the proxy).
    pub fn with_max_connections_per_peer(mut self, max: usize) -> Self {
        self.max_connections_per_peer = Some(max);
        self
    }

    /// Record metrics into this handle (for example one registered in a registry of your own
    /// with [`WebhookMetrics::register`]). Default: a fresh handle, served by
    /// [`serve_metrics`](WebhookServer::serve_metrics).
    pub fn with_metrics(mut self, metrics: WebhookMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How long the result of the readiness check's KMS probe is reused: the KMS is asked at
    /// most this often. Default [`DEFAULT_KMS_CHECK_INTERVAL`].
    pub fn with_kms_check_interval(mut self, interval: Duration) -> Self {
        self.kms_check_interval = interval;
        self
    }

    /// How long [`WebhookServer::serve`] waits for requests in flight after shutdown.
    /// Default [`DEFAULT_SHUTDOWN_GRACE`].
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The backup methods probed when fetching from a store that cannot list (see
    /// [`ShareVault::with_known_methods`]).
    pub fn with_known_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.known_methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// The server.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the keyring, store or secrets are missing, the base path
    /// is not an absolute path of plain segments, a limit is zero, or the store cannot keep a
    /// previous share readable while replacing it (see [`ShareVault::new`]).
    pub fn build(self) -> Result<WebhookServer, Error> {
        let missing = |what: &str| Error::InvalidConfig {
            reason: format!("{what} is required"),
        };
        let keyring = self.keyring.ok_or_else(|| missing("a keyring"))?;
        let store = self.store.ok_or_else(|| missing("a store"))?;
        let secrets = self.secrets.ok_or_else(|| missing("a webhook secret"))?;
        let base_path = normalize_base_path(&self.base_path)?;
        if self.body_limit == 0 || self.max_connections == 0 {
            return Err(Error::InvalidConfig {
                reason: "the body limit and the connection limit must be above zero".into(),
            });
        }
        if self.request_timeout.is_zero() || self.header_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                reason: "timeouts must be above zero".into(),
            });
        }
        let metrics = self.metrics.unwrap_or_default();
        let readiness = ReadinessProbe::new(
            Arc::clone(&store),
            keyring.clone(),
            self.kms_check_interval,
            metrics.clone(),
        );
        let mut vault = ShareVault::new(keyring, store)?;
        if let Some(methods) = self.known_methods {
            vault = vault.with_known_methods(methods);
        }
        let per_peer = match self.max_connections_per_peer {
            Some(0) => None,
            Some(max) => Some(max),
            None if self.trust_forwarded_for => None,
            None => Some(DEFAULT_MAX_CONNECTIONS_PER_PEER),
        };
        // Behind a trusted proxy the TCP peer is the proxy: the allowlist is per request.
        let accept_allowlist = (!self.trust_forwarded_for).then(|| self.allowlist.clone());
        let admission = Arc::new(Admission::new(
            accept_allowlist,
            per_peer,
            self.max_connections,
            Some(metrics.clone()),
        ));
        Ok(WebhookServer {
            app: Arc::new(App {
                vault,
                secrets,
                allowlist: self.allowlist,
                trust_forwarded_for: self.trust_forwarded_for,
                body_limit: self.body_limit,
                request_timeout: self.request_timeout,
                backup_path: format!("{base_path}{BACKUP_PATH}"),
                fetch_path: format!("{base_path}{FETCH_PATH}"),
                metrics,
                readiness,
            }),
            base_path,
            tls: self.tls,
            header_timeout: self.header_timeout,
            max_connections_per_peer: per_peer,
            admission,
            shutdown_grace: self.shutdown_grace,
        })
    }
}

fn normalize_base_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let ok = trimmed.starts_with('/')
        && trimmed.split('/').skip(1).all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        });
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(Error::InvalidConfig {
            reason: format!("base path {path:?} is not an absolute path of plain segments"),
        })
    }
}

/// The Self-Managed Backups webhook server; build one with [`WebhookServer::builder`].
///
/// | request | answer |
/// |---|---|
/// | `POST {base}/backup` `{backupMethod, clientId, share}` | 200 `{}` once the sealed share is durably stored |
/// | `POST {base}/backup/fetch` `{clientId}` | 200 `{"backupShares": [...]}`, every stored share of the client as received |
/// | `GET /healthz` | 200 `ok` (no secret) |
/// | `GET /readyz` | 200 when the store and the KMS answer, else 503 (no secret; see [`Readiness`]) |
/// | source address not allowed | connection closed at accept; 403 (and the connection closed) with trusted forwarded-for |
/// | `X-Webhook-Secret` missing or wrong | 401, and the connection is closed |
/// | body over the limit | 413 |
/// | malformed JSON, missing or mistyped field, empty share, id not storable | 400 |
/// | backup method not fetchable from a store that cannot list | 422 |
/// | store or KMS unavailable, request deadline passed | 503 |
/// | other store or KMS failure | 500 |
/// | unknown path | 404 |
/// | other method on a known path | 405 |
///
/// Rejected requests (403, 401, 413, 400, 422, 404, 405) never touch the store or the KMS.
/// Error answers are `{"error": "<code>", "message": "<text>"}`.
///
/// Logs (`tracing`, target `custodian_webhook`) carry the method, path, source address,
/// status, latency, client id and backup method; never a share, a secret or a body. Metrics
/// go to a [`WebhookMetrics`] handle, served by [`serve_metrics`](Self::serve_metrics).
pub struct WebhookServer {
    app: Arc<App>,
    base_path: String,
    tls: Option<TlsConfig>,
    header_timeout: Duration,
    max_connections_per_peer: Option<usize>,
    admission: Arc<Admission>,
    shutdown_grace: Duration,
}

impl fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookServer")
            .field("vault", &self.app.vault)
            .field("secrets", &self.app.secrets)
            .field("base_path", &self.base_path)
            .field("allowlist", &self.app.allowlist)
            .field("trust_forwarded_for", &self.app.trust_forwarded_for)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

struct App {
    vault: ShareVault,
    secrets: WebhookSecrets,
    allowlist: Allowlist,
    trust_forwarded_for: bool,
    body_limit: usize,
    request_timeout: Duration,
    backup_path: String,
    fetch_path: String,
    metrics: WebhookMetrics,
    readiness: ReadinessProbe,
}

impl App {
    /// The route label of a path (unknown paths share one label, so that a scan cannot
    /// blow up the number of series).
    fn route(&self, path: &str) -> &'static str {
        if path == self.backup_path {
            "backup"
        } else if path == self.fetch_path {
            "fetch"
        } else if path == HEALTH_PATH {
            "healthz"
        } else if path == READY_PATH {
            "readyz"
        } else {
            "other"
        }
    }
}

impl WebhookServer {
    /// A builder with the defaults.
    pub fn builder() -> WebhookServerBuilder {
        WebhookServerBuilder::new()
    }

    /// The vault the server stores shares in.
    #[must_use]
    pub fn vault(&self) -> &ShareVault {
        &self.app.vault
    }

    /// Whether the server serves TLS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The per-peer connection cap in force (`None`: no cap).
    #[must_use]
    pub fn max_connections_per_peer(&self) -> Option<usize> {
        self.max_connections_per_peer
    }

    /// The metrics this server records.
    #[must_use]
    pub fn metrics(&self) -> &WebhookMetrics {
        &self.app.metrics
    }

    /// Checks whether the store and the KMS answer, as `GET /readyz` does: the store with a
    /// read of a missing object (its result reused for a second), the KMS by sealing and
    /// opening a probe value (its result reused for the
    /// [KMS check interval](WebhookServerBuilder::with_kms_check_interval)). A probe that
    /// takes over 3 s counts as a failure.
    pub async fn readiness(&self) -> Readiness {
        self.app.readiness.check().await
    }

    /// The routes as an axum [`Router`], for embedding in another server. The allowlist
    /// reads the peer address from [`ConnectInfo<SocketAddr>`] (serve with
    /// `into_make_service_with_connect_info`); without it, and without trusted
    /// forwarded-for, a configured allowlist rejects every request.
    pub fn router(&self) -> Router {
        Router::new()
            .route(&self.app.backup_path, post(backup))
            .route(&self.app.fetch_path, post(fetch))
            .route(HEALTH_PATH, get(health))
            .route(READY_PATH, get(ready))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(Arc::clone(&self.app), guard))
            .with_state(Arc::clone(&self.app))
    }

    /// The routes of the metrics listener as an axum [`Router`]: `GET /metrics` (this
    /// server's [`WebhookMetrics`] in the OpenMetrics text format), `GET /healthz` and
    /// `GET /readyz`. No secret and no allowlist: it serves nothing secret, and it is meant
    /// for a private address that Prometheus and the orchestrator's probes reach.
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route(METRICS_PATH, get(scrape))
            .route(HEALTH_PATH, get(health))
            .route(READY_PATH, get(ready))
            .fallback(not_found)
            .with_state(Arc::clone(&self.app))
    }

    /// Serves the [metrics routes](Self::metrics_router) in plain HTTP/1.1 on `listener`
    /// until `shutdown` completes (at most 32 connections at once; the header timeout and
    /// shutdown grace of the server apply). Run it next to [`serve`](Self::serve), on
    /// another port.
    ///
    /// # Errors
    /// [`Error::Io`] when the listener's address cannot be read.
    pub async fn serve_metrics<F>(&self, listener: TcpListener, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        let local = listener.local_addr().map_err(Error::Io)?;
        tracing::info!(address = %local, "custodian webhook metrics listening");
        let admission = Arc::new(Admission::new(None, None, METRICS_MAX_CONNECTIONS, None));
        accept_loop(
            listener,
            self.metrics_router(),
            &admission,
            None,
            self.header_timeout,
            self.shutdown_grace,
            shutdown,
        )
        .await;
        Ok(())
    }

    /// Serves connections from `listener` until `shutdown` completes, then stops accepting,
    /// lets requests in flight finish (closing idle connections) for up to the shutdown
    /// grace period, and returns.
    ///
    /// With [TLS](WebhookServerBuilder::with_tls) each connection is a TLS connection
    /// (handshake within the header timeout); otherwise plain HTTP/1.1.
    ///
    /// ```no_run
    /// # async fn run(server: custodian_webhook::WebhookServer) -> Result<(), custodian_webhook::Error> {
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await.map_err(custodian_webhook::Error::Io)?;
    /// server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when the listener's address cannot be read. Failures of single
    /// connections are logged, not returned.
    pub async fn serve<F>(&self, listener: TcpListener, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        let local = listener.local_addr().map_err(Error::Io)?;
        let acceptor = self
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config()));
        tracing::info!(
            address = %local,
            tls = acceptor.is_some(),
            base_path = %self.base_path,
            allowlist = self.app.allowlist.blocks().len(),
            trust_forwarded_for = self.app.trust_forwarded_for,
            max_connections_per_peer = self.max_connections_per_peer,
            "custodian webhook listening"
        );
        accept_loop(
            listener,
            self.router(),
            &self.admission,
            acceptor,
            self.header_timeout,
            self.shutdown_grace,
            shutdown,
        )
        .await;
        Ok(())
    }
}

/// Accepts connections until `shutdown` completes, admitting each one or closing it at once
/// (see [`Admission`]), then drains the admitted ones for up to `grace`.
async fn accept_loop<F>(
    listener: TcpListener,
    router: Router,
    admission: &Arc<Admission>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    grace: Duration,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let local = listener.local_addr().ok();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Never waits for a slot: a full server keeps accepting, and closing, so that the
        // backlog never holds an allowed caller behind refused ones.
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection errors (reset before accept) and resource
                    // exhaustion (EMFILE): log, pause briefly, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::debug!(peer = %peer, reason = ?refusal, "connection refused");
                drop(stream);
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let watcher = graceful.watcher();
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                async move { router.call(req.map(Body::new)).await }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let result = match acceptor {
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let conn = http.serve_connection(TokioIo::new(tls), service);
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let address = local.map(tracing::field::display);
    tracing::info!(
        address,
        "shutting down: no new connections, finishing requests in flight"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!(address, "custodian webhook listener stopped"),
        Err(_) => tracing::warn!(
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "shutdown grace period passed; remaining connections were dropped"
        ),
    }
}

/// An error answer: `{"error": code, "message": message}`.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl Rejection {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: &'static str,
}

/// The `error` code of a rejection, kept on the response for the request log.
#[derive(Clone, Copy, Debug)]
struct RejectionCode(&'static str);

/// The code of a backup that lost a race to another share of its client and method: a 503
/// that is no outage.
const SUPERSEDED: &str = "superseded";

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            error: self.code,
            message: self.message,
        })
        .unwrap_or_default();
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            axum::Extension(RejectionCode(self.code)),
            body,
        )
            .into_response()
    }
}

const FORBIDDEN: Rejection = Rejection::new(
    StatusCode::FORBIDDEN,
    "forbidden",
    "source address not allowed",
);
const UNAUTHORIZED: Rejection = Rejection::new(
    StatusCode::UNAUTHORIZED,
    "unauthorized",
    "missing or wrong X-Webhook-Secret",
);
const TOO_LARGE: Rejection = Rejection::new(
    StatusCode::PAYLOAD_TOO_LARGE,
    "payload_too_large",
    "request body over the size limit",
);
const TIMEOUT: Rejection = Rejection::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "timeout",
    "the request did not complete within the deadline",
);

/// Logs and counts every request, applies the allowlist to everything but the health and
/// readiness endpoints, and closes the connection after a 401 or 403 (a caller without the
/// secret or from a refused address gets no kept-alive connection to come back on).
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = app.metrics.request_started();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let source = source_address(peer, req.headers(), app.trust_forwarded_for);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = app.route(&path);
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %path,
        source = source.map(tracing::field::display),
    );
    async move {
        let allowed = matches!(route, "healthz" | "readyz")
            || app.allowlist.is_any()
            || source.is_some_and(|ip| app.allowlist.allows(ip));
        let mut response = if allowed {
            next.run(req).await
        } else {
            tracing::warn!("rejected: source address not allowed");
            app.metrics.disallowed_peer();
            FORBIDDEN.into_response()
        };
        let status = response.status().as_u16();
        if matches!(status, 401 | 403) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let elapsed = started.elapsed();
        app.metrics.request_finished(route, status, elapsed);
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let lost_race = response
            .extensions()
            .get::<RejectionCode>()
            .is_some_and(|code| code.0 == SUPERSEDED);
        if status >= 500 && !lost_race {
            tracing::error!(status, latency_us, "request failed");
        } else if status >= 400 {
            tracing::info!(status, latency_us, "request rejected");
        } else {
            tracing::info!(status, latency_us, "request served");
        }
        response
    }
    .instrument(span)
    .await
}

fn authenticate(app: &App, headers: &HeaderMap) -> Result<(), Rejection> {
    match headers.get(SECRET_HEADER) {
        Some(value) if app.secrets.verify(value.as_bytes()) => Ok(()),
        Some(_) => {
            tracing::warn!("rejected: wrong X-Webhook-Secret");
            app.metrics.bad_secret();
            Err(UNAUTHORIZED)
        }
        None => {
            tracing::warn!("rejected: no X-Webhook-Secret");
            app.metrics.bad_secret();
            Err(UNAUTHORIZED)
        }
    }
}

/// Reads the body into one zeroizing buffer allocated up front (so no reallocation leaves an
/// unwiped copy), refusing more than `limit` bytes.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let capacity = match declared {
        Some(len) => match usize::try_from(len) {
            Ok(len) if len <= limit => len,
            _ => return Err(TOO_LARGE),
        },
        None => limit,
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the request body could not be read",
            )
        })?;
        if buf.len().saturating_add(chunk.len()) > capacity {
            return Err(TOO_LARGE);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8], expected: &'static str) -> Result<T, Rejection> {
    serde_json::from_slice(bytes).map_err(|e| {
        // Only the category and position: serde's message may quote the input.
        tracing::info!(
            category = ?e.classify(),
            line = e.line(),
            column = e.column(),
            "rejected: body is not {expected}"
        );
        Rejection::new(StatusCode::BAD_REQUEST, "bad_request", expected)
    })
}

async fn with_deadline<F>(app: &App, work: F) -> Response
where
    F: Future<Output = Result<Response, Rejection>>,
{
    match tokio::time::timeout(app.request_timeout, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(rejection)) => rejection.into_response(),
        Err(_) => {
            tracing::error!("request deadline passed");
            app.metrics.deadline_exceeded();
            TIMEOUT.into_response()
        }
    }
}

async fn backup(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = authenticate(&app, &headers) {
        return r.into_response();
    }
    with_deadline(&app, async {
        let bytes = read_body(body, &headers, app.body_limit).await?;
        let request: BackupRequest = parse(
            &bytes,
            "{\"backupMethod\", \"clientId\", \"share\"} with string values",
        )?;
        drop(bytes);
        // Checked before the ids go into a log line: they are then plain short ASCII.
        app.vault
            .check(&request.client_id, &request.backup_method)
            .map_err(|e| vault_rejection(&app, &e))?;
        let span = tracing::info_span!(
            "backup",
            client_id = %request.client_id,
            backup_method = %request.backup_method,
        );
        async {
            if request.share.is_empty() {
                tracing::info!("rejected: empty share");
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "share is empty",
                ));
            }
            app.vault
                .store(&request.client_id, &request.backup_method, &request.share)
                .await
                .map_err(|e| vault_rejection(&app, &e))?;
            tracing::info!(share_len = request.share.len(), "custodian share stored");
            Ok((
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                "{}",
            )
                .into_response())
        }
        .instrument(span)
        .await
    })
    .await
}

async fn fetch(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = authenticate(&app, &headers) {
        return r.into_response();
    }
    with_deadline(&app, async {
        let bytes = read_body(body, &headers, app.body_limit).await?;
        let request: FetchRequest = parse(&bytes, "{\"clientId\"} with a string value")?;
        storage::BackupKey::check_client_id(&request.client_id).map_err(|source| {
            vault_rejection(
                &app,
                &Error::InvalidId {
                    field: "clientId",
                    source: Box::new(source),
                },
            )
        })?;
        let span = tracing::info_span!("fetch", client_id = %request.client_id);
        async {
            let shares = app
                .vault
                .fetch(&request.client_id)
                .await
                .map_err(|e| vault_rejection(&app, &e))?;
            let answer: FetchResponse<&str> = FetchResponse {
                backup_shares: shares.iter().map(SecretShare::expose_secret).collect(),
            };
            let encoded = encode_exact(&answer).map_err(|_| {
                Rejection::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the answer could not be encoded",
                )
            })?;
            tracing::info!(shares = shares.len(), "custodian shares fetched");
            // The buffer is wiped when hyper drops the last reference to it. Copies that
            // hyper or rustls make on the way out are not (best effort; see the threat
            // model).
            Ok((
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                Body::from(Bytes::from_owner(WipedOnDrop(encoded))),
            )
                .into_response())
        }
        .instrument(span)
        .await
    })
    .await
}

/// A buffer holding a share, handed to hyper as [`Bytes`]; zeroized when the last reference
/// is dropped.
struct WipedOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Serializes `value` into one zeroizing buffer of exactly the right size: the size is
/// measured first, and the writer refuses to grow the buffer, so no reallocation ever
/// leaves an unwiped copy of a share behind.
fn encode_exact<T: Serialize>(value: &T) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut size = ByteCount(0);
    serde_json::to_writer(&mut size, value)?;
    let mut out = Zeroizing::new(Vec::with_capacity(size.0));
    serde_json::to_writer(NoGrow(&mut out), value)?;
    Ok(out)
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends to a vector within its capacity, and fails rather than reallocate.
struct NoGrow<'a>(&'a mut Vec<u8>);

impl io::Write for NoGrow<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.0.capacity().saturating_sub(self.0.len()) {
            return Err(io::Error::other("the answer outgrew its measured size"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn vault_rejection(app: &App, e: &Error) -> Rejection {
    match e {
        Error::Store { operation, .. } => app.metrics.store_error(operation),
        Error::Seal(_) => app.metrics.kms_error("seal"),
        Error::Open(_) => app.metrics.kms_error("open"),
        Error::Superseded { .. } => app.metrics.superseded(),
        _ => {}
    }
    match e {
        Error::InvalidId { field, .. } => {
            tracing::info!(field, error = %storage::Report(e), "rejected: invalid id");
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "clientId or backupMethod is not 1 to 128 ASCII letters, digits, '-', '_' or '.'",
            )
        }
        Error::UnfetchableMethod => {
            tracing::warn!("rejected: backup method not fetchable from this store");
            Rejection::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unfetchable_method",
                "backupMethod is not one this server can fetch back from its store",
            )
        }
        // A lost race, not an outage: the share stored first stands, and 503 makes Portal
        // send this one again, which then replaces it (see `WriteStrategy`).
        Error::Superseded { .. } => {
            tracing::info!(
                error = %storage::Report(e),
                "backup superseded: another share of this client and method was stored first"
            );
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                SUPERSEDED,
                "another share of this client and backup method was stored while this one was \
                 under way; this one was not stored; try again",
            )
        }
        other if other.is_retryable() => {
            tracing::error!(error = %storage::Report(other), "store or KMS unavailable");
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage or key management is unavailable; try again",
            )
        }
        other => {
            tracing::error!(error = %storage::Report(other), "store or KMS failed");
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the share could not be stored or read",
            )
        }
    }
}

async fn health() -> &'static str {
    "ok"
}

/// 200 when the store and the KMS answer, else 503; the body says which one failed.
async fn ready(State(app): State<Arc<App>>) -> Response {
    let readiness = app.readiness.check().await;
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({
            "store": word(readiness.store),
            "kms": word(readiness.kms),
        })),
    )
        .into_response()
}

async fn scrape(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_TYPE),
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> Rejection {
    Rejection::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!(normalize_base_path("").unwrap(), "");
        assert_eq!(normalize_base_path("/").unwrap(), "");
        assert_eq!(normalize_base_path("/hooks/").unwrap(), "/hooks");
        assert_eq!(normalize_base_path("/a/b-c").unwrap(), "/a/b-c");
        for bad in ["hooks", "/a//b", "/a/../b", "/a?x", "/a b", "/a/./b"] {
            assert!(normalize_base_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fetch_answer_fills_one_buffer_of_exactly_its_size() {
        // Escapes grow the JSON well past the shares' own length (a quote doubles, a control
        // character becomes six bytes): a guessed capacity would reallocate and leave a copy.
        let shares = [
            "\"".repeat(300),
            "\u{1}\n\\".repeat(100),
            "plain-share".to_owned(),
            "é😀\u{2028}".repeat(50),
        ];
        let answer = FetchResponse {
            backup_shares: shares.iter().map(String::as_str).collect(),
        };
        let out = encode_exact(&answer).unwrap();
        assert_eq!(out.len(), out.capacity());
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for (i, share) in shares.iter().enumerate() {
            assert_eq!(back["backupShares"][i], share.as_str());
        }
        // The writer refuses to grow a buffer rather than reallocate it.
        let mut small = Vec::with_capacity(8);
        assert!(serde_json::to_writer(NoGrow(&mut small), &answer).is_err());
        assert_eq!(small.capacity(), 8);
    }
}
