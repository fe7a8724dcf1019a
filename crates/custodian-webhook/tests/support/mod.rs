//! Shared helpers of the custodian-webhook integration tests.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances, and not
// every test binary uses every helper; a broken fixture should panic.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test helpers shared by several test binaries"
)]

pub mod load;
pub mod scan;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use custodian_webhook::envelope::testing::{CallCounter, HookedKek, Outage};
use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use custodian_webhook::storage::{
    BackupKey, BackupStore, Capabilities, ObjectVersion, PutOptions, StorageError,
    memory::MemoryStore,
};
use custodian_webhook::{WebhookSecrets, WebhookServer, WebhookServerBuilder};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "s3cret-webhook-value-for-tests";
pub const NEXT_SECRET: &str = "next-secret-during-rotation";

pub fn secrets() -> WebhookSecrets {
    WebhookSecrets::parse(&format!("{SECRET}\n{NEXT_SECRET}\n")).unwrap()
}

pub fn keyring() -> Keyring {
    Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>)
}

/// A builder with a fresh local KEK, the test secrets and `store`.
pub fn builder<S: BackupStore>(store: Arc<S>) -> WebhookServerBuilder {
    WebhookServer::builder()
        .with_keyring(keyring())
        .with_store(store)
        .with_secrets(secrets())
}

/// A server running on loopback.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks for a graceful shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    /// Kills the server without a graceful shutdown.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn start(server: WebhookServer) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// `POST {url}` with the secret and a JSON body; status and body text.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    body: &Value,
) -> (u16, String) {
    let mut req = http.post(url).json(body);
    if let Some(secret) = secret {
        req = req.header("X-Webhook-Secret", secret);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

pub async fn backup(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    method: &str,
    share: &str,
) -> u16 {
    post(
        http,
        &format!("{base}/backup"),
        Some(SECRET),
        &json!({"backupMethod": method, "clientId": client, "share": share}),
    )
    .await
    .0
}

pub async fn fetch(http: &reqwest::Client, base: &str, client: &str) -> Vec<String> {
    let (status, body) = post(
        http,
        &format!("{base}/backup/fetch"),
        Some(SECRET),
        &json!({"clientId": client}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["backupShares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// A share shaped like Portal's: a JSON string of about 7 KiB with random content.
pub fn share_like_portal(client: &str) -> String {
    let mut random = vec![0u8; 5 * 1024];
    getrandom::fill(&mut random).unwrap();
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&random);
    json!({"clientId": client, "share": body, "backupSharePairId": "bsp_x"}).to_string()
}

/// A store that counts every call, over a [`MemoryStore`] with the given capabilities, and can
/// be slowed down.
#[derive(Debug)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub calls: AtomicUsize,
    pub delay: Duration,
}

impl CountingStore {
    pub fn new() -> Self {
        Self::with(MemoryStore::new(), Duration::ZERO)
    }

    pub fn with(inner: MemoryStore, delay: Duration) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            delay,
        }
    }

    pub fn with_capabilities(caps: Capabilities) -> Self {
        Self::with(MemoryStore::with_capabilities(caps), Duration::ZERO)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn touch(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[async_trait::async_trait]
impl BackupStore for CountingStore {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        self.touch().await;
        self.inner.put(key, body, options).await
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.touch().await;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        self.touch().await;
        self.inner.delete(key).await
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        self.touch().await;
        self.inner.list(client_id).await
    }
}

/// Sends raw bytes as one HTTP/1.1 request and returns the status of the answer.
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut buf[len..]).await.unwrap();
        assert!(n > 0, "connection closed without an answer");
        len += n;
    }
    let line = String::from_utf8_lossy(&buf[..len]);
    line[9..12].parse().unwrap()
}

/// A store over a [`MemoryStore`] that fails every call (as unavailable) while `failing` is
/// set.
#[derive(Debug, Default)]
pub struct FlakyStore {
    pub inner: MemoryStore,
    pub failing: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StorageError::Unavailable {
                backend: "flaky",
                source: "the test switched the store off".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)] // a wrapper forwards every method, or it changes behaviour
impl BackupStore for FlakyStore {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        self.check()?;
        self.inner.put(key, body, options).await
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        self.check()?;
        self.inner.get_versioned(key).await
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        self.check()?;
        self.inner.list(client_id).await
    }
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        self.check()?;
        self.inner.list_clients().await
    }
    fn stream_clients(&self) -> storage::ClientStream<'_> {
        use futures_util::StreamExt as _;
        match self.check() {
            Ok(()) => self.inner.stream_clients(),
            Err(e) => futures_util::stream::iter([Err(e)]).boxed(),
        }
    }
    // One at a time, through this wrapper's own hooks.
    fn batch_size(&self) -> usize {
        1
    }
    async fn read_clients(&self, client_ids: &[String]) -> Vec<storage::batch::ClientObjects> {
        storage::batch::read_clients_one_by_one(self, client_ids).await
    }
    async fn put_many(&self, puts: Vec<storage::batch::Put>) -> Vec<Result<(), StorageError>> {
        storage::batch::put_one_by_one(self, puts).await
    }
}

/// A local KEK whose KMS calls are counted and which a test switches off (as unavailable):
/// envelope's shared test double, with the two hooks this suite needs.
#[derive(Debug)]
pub struct FlakyKek {
    kek: Arc<HookedKek>,
    counter: Arc<CallCounter>,
    outage: Arc<Outage>,
}

impl FlakyKek {
    pub fn new() -> Self {
        let counter = Arc::new(CallCounter::default());
        let outage = Arc::new(Outage::default());
        // Counted first, so a call the outage refuses still counts as one that reached for
        // the KMS.
        let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap()))
            .with_hook(Arc::clone(&counter))
            .with_hook(Arc::clone(&outage));
        Self {
            kek: Arc::new(kek),
            counter,
            outage,
        }
    }

    /// A keyring of this one KEK.
    pub fn keyring(&self) -> Keyring {
        Keyring::new().with(Arc::clone(&self.kek) as Arc<dyn KeyEncryptionKey>)
    }

    pub fn fail(&self, failing: bool) {
        self.outage.set_down(failing);
    }

    pub fn calls(&self) -> usize {
        self.counter.total()
    }
}

/// Starts `server` and its metrics listener on loopback; the metrics listener's address.
pub async fn start_with_metrics(server: WebhookServer) -> (Running, SocketAddr) {
    let server = Arc::new(server);
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let main = server.serve(listener, async {
            let _ = stopped.await;
            let _ = stop_metrics.send(());
        });
        let metrics = server.serve_metrics(metrics_listener, async {
            let _ = metrics_stopped.await;
        });
        let (main, metrics) = tokio::join!(main, metrics);
        main.unwrap();
        metrics.unwrap();
    });
    (
        Running {
            addr,
            stop: Some(stop),
            task,
        },
        metrics_addr,
    )
}

/// The value of one sample in Prometheus text: `name` with exactly `labels` (in any order).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, mut got) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((n, rest)) => {
                    let inner = rest.strip_suffix('}')?;
                    let pairs = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap();
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect::<Vec<_>>();
                    (n, pairs)
                }
            };
            got.sort();
            (series_name == name && got == want).then(|| value.parse().unwrap())
        })
}

/// `GET http://{addr}/metrics`: the text, after checking the content type.
pub async fn scrape(addr: SocketAddr) -> String {
    let resp = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    resp.text().await.unwrap()
}

/// Log lines written by a `tracing_subscriber::fmt` writer, for a test to read back.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes).unwrap()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
