//! Webhook replicas over one store, and the load they get: shared by `tests/replicas.rs` and
//! `examples/replicas.rs` (the `cargo xtask bench replicas` run).
//!
//! * [`Backend`]: the one store (memory, PostgreSQL, S3 on moto) and a fresh client of it
//!   for each replica.
//! * [`Replica`]: the real server on a Tokio runtime of its own, killed by shutting that
//!   runtime down without grace.
//! * [`run`]: backup+fetch pairs sent round-robin to the replicas, with three-way races on
//!   one (client, method) mixed in and, optionally, one replica killed and restarted
//!   mid-run; then a fetch of every client from every replica.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "test fixture: a panic is a test failure, counters are small"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use custodian_webhook::envelope::Keyring;
use custodian_webhook::storage::BackupStore;
use custodian_webhook::storage::fs::FsStore;
use custodian_webhook::storage::memory::MemoryStore;
use custodian_webhook::storage::object::ObjectStoreStore;
use custodian_webhook::storage::postgres::PostgresStore;
use custodian_webhook::{WebhookSecrets, WebhookServer};
use serde_json::{Value, json};

/// The webhook secret every replica accepts.
pub const SECRET: &str = "replicas-webhook-secret-0123456789";

/// The backup methods of each client, as Portal sends them.
pub const METHODS: [&str; 2] = ["PASSWORD-SECP256K1", "PASSWORD-ED25519"];

/// The one store every replica writes to.
#[derive(Clone, Debug)]
pub enum Backend {
    /// One in-memory store shared by in-process replicas.
    Memory(Arc<MemoryStore>),
    /// One directory (the file store), shared by replicas on one machine.
    Fs(std::path::PathBuf),
    /// One PostgreSQL database (the URL holds the password).
    Postgres(String),
    /// One S3 bucket on moto.
    S3 {
        /// `http://127.0.0.1:port`.
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
}

impl Backend {
    /// The test process's shared PostgreSQL (`None` after a loud skip).
    pub fn postgres() -> Option<Self> {
        test_services::postgres::shared().map(|pg| Self::Postgres(pg.url.clone()))
    }

    /// A new bucket on the test process's shared moto (`None` after a loud skip).
    pub fn s3() -> Option<Self> {
        let moto = test_services::moto::shared()?;
        let bucket = format!("replicas-{}", test_services::random_hex());
        create_bucket(moto.port, &bucket);
        Some(Self::S3 {
            endpoint: moto.endpoint.clone(),
            bucket,
        })
    }

    /// `memory`, `postgres` or `s3`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Fs(_) => "fs",
            Self::Postgres(_) => "postgres",
            Self::S3 { .. } => "s3",
        }
    }

    /// A client of the store of its own (its own pool or HTTP client), made on the current
    /// runtime.
    pub async fn client(&self) -> Arc<dyn BackupStore> {
        match self {
            Self::Memory(store) => Arc::clone(store) as Arc<dyn BackupStore>,
            Self::Fs(root) => Arc::new(FsStore::new(root).unwrap()),
            Self::Postgres(url) => {
                let store = PostgresStore::builder()
                    .max_connections(8)
                    .connect(url)
                    .await
                    .unwrap();
                Arc::new(store)
            }
            Self::S3 { endpoint, bucket } => {
                let s3 = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false)
                    .with_region("us-east-1")
                    .with_bucket_name(bucket)
                    .with_access_key_id("testing")
                    .with_secret_access_key("testing")
                    .build()
                    .unwrap();
                let store = ObjectStoreStore::new(Arc::new(s3), "")
                    .unwrap()
                    .with_name("s3");
                Arc::new(store)
            }
        }
    }
}

/// `PUT /{bucket}` on moto (it accepts unsigned requests).
fn create_bucket(port: u16, bucket: &str) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {response}"
    );
}

/// The secrets of every replica.
pub fn secrets() -> WebhookSecrets {
    WebhookSecrets::parse(&format!("{SECRET}\n")).unwrap()
}

/// One webhook server on a runtime of its own.
pub struct Replica {
    runtime: Option<tokio::runtime::Runtime>,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Replica {
    /// Starts a replica with `keyring` over a new client of `backend`, on loopback. Blocks
    /// until it listens; call it outside any runtime (or from `spawn_blocking`).
    pub fn start(keyring: &Keyring, backend: &Backend) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(backend.client());
        let server = WebhookServer::builder()
            .with_keyring(keyring.clone())
            .with_store(store)
            .with_secrets(secrets())
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            runtime: Some(runtime),
            base,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// Stops at once, without grace: every connection and store call of this replica ends
    /// where it is.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Stops gracefully (requests in flight finish).
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` on a two-worker runtime of its own (the test's driver).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// What one run sends.
#[derive(Clone, Debug)]
pub struct Plan {
    /// A prefix of every client id, unique to the run.
    pub run_id: String,
    /// Backup+fetch pairs, each of its own (client, method).
    pub pairs: usize,
    /// Three-way races: three backups of one (client, method) at once, one per replica.
    pub races: usize,
    /// Requests in flight at once (pairs; a race counts as one).
    pub concurrency: usize,
    /// Kill one replica once this many work items have started, and restart it after
    /// `down`.
    pub kill_after: Option<usize>,
    /// How long the killed replica stays down.
    pub down: Duration,
}

/// Kills a replica, waits the given time, and starts it again; returns the index it had and
/// its new base URL.
pub type KillAndRestart = Box<dyn FnOnce(Duration) -> (usize, String) + Send>;

/// What a run measured and found.
#[derive(Debug, Default)]
pub struct Report {
    pub replicas: usize,
    pub pairs: usize,
    pub races: usize,
    pub elapsed: Duration,
    /// Latency of each pair (backup then fetch, retries included).
    pub pair_latency: Vec<Duration>,
    /// Requests that failed on the first attempt and were retried once.
    pub retried: usize,
    /// First attempts that failed because the replica was down or killed (no answer).
    pub no_answer: usize,
    /// Race backups answered 503 (another backup of the same client and method won).
    pub race_losers: usize,
    /// Requests that still failed after one retry.
    pub errors: usize,
    /// The first few errors.
    pub first_errors: Vec<String>,
    /// Acknowledged shares not returned afterwards.
    pub lost: usize,
    /// (client, method)s with other than one share, or replicas that disagree.
    pub inconsistent: usize,
    /// When the kill happened (after the start) and how long until the restarted replica
    /// listened again.
    pub kill: Option<(Duration, Duration)>,
    /// Pairs per second before, while, and after the kill's window.
    pub pairs_per_sec_around_kill: Option<(f64, f64, f64)>,
    /// Pair completion times after the start (for the kill's effect).
    pub completed_at: Vec<Duration>,
}

impl Report {
    pub fn pairs_per_sec(&self) -> f64 {
        self.pairs as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&mut self, p: f64) -> Duration {
        self.pair_latency.sort();
        if self.pair_latency.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.pair_latency.len() as f64).ceil() as usize;
        self.pair_latency[rank.clamp(1, self.pair_latency.len()) - 1]
    }

    pub fn summary(&mut self) -> String {
        let (p50, p99) = (self.percentile(50.0), self.percentile(99.0));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{} replicas: {} pairs + {} races in {:.2} s = {:.0} pairs/s; pair p50 {:.1} ms, \
             p99 {:.1} ms; retried {} (no answer {}, race losers {}); errors after one retry \
             {}; lost {}; inconsistent {}; kill {:?}; pairs/s before/during/after the kill \
             {:?}; first errors {:?}",
            self.replicas,
            self.pairs,
            self.races,
            self.elapsed.as_secs_f64(),
            self.pairs_per_sec(),
            ms(p50),
            ms(p99),
            self.retried,
            self.no_answer,
            self.race_losers,
            self.errors,
            self.lost,
            self.inconsistent,
            self.kill,
            self.pairs_per_sec_around_kill,
            self.first_errors,
        )
    }
}

/// The replicas' base URLs, as the driver sees them (a restarted replica gets a new one).
pub type Urls = Arc<RwLock<Vec<String>>>;

/// A random share shaped like Portal's (about 7 KiB of JSON).
pub fn share(client: &str) -> String {
    use base64::Engine as _;
    let mut random = vec![0u8; 5 * 1024];
    getrandom::fill(&mut random).unwrap();
    let body = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&random);
    json!({"clientId": client, "share": body, "backupSharePairId": "bsp_x"}).to_string()
}

/// How one request ended.
#[derive(Debug)]
enum Answer {
    Status(u16, String),
    /// No answer: refused, reset or timed out.
    None(String),
}

async fn post(http: &reqwest::Client, tally: &Tally, url: &str, body: &Value) -> Answer {
    let answer = match http
        .post(url)
        .header("X-Webhook-Secret", SECRET)
        .json(body)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.text().await {
                Ok(text) => Answer::Status(status, text),
                Err(e) => Answer::None(format!("{url}: reading the answer: {e}")),
            }
        }
        Err(e) => Answer::None(format!("{url}: {e}")),
    };
    if matches!(answer, Answer::None(_)) {
        mark_down(tally, url);
    }
    answer
}

/// The base URL of `replica`, or of the next one up: like a load balancer with passive
/// health checks, the driver stops sending to a replica that gave no answer (a restarted
/// replica has a new URL, which is up).
fn url(urls: &Urls, tally: &Tally, replica: usize, path: &str) -> String {
    let urls = urls.read().unwrap();
    let down = tally.down.lock().unwrap();
    let base = (0..urls.len())
        .map(|step| &urls[(replica + step) % urls.len()])
        .find(|base| !down.contains(*base))
        .unwrap_or(&urls[replica % urls.len()]);
    format!("{base}{path}")
}

/// Marks the replica of `url` down after it gave no answer.
fn mark_down(tally: &Tally, url: &str) {
    if let Some(base) = url.rsplit_once("/backup").map(|(base, _)| base) {
        tally.down.lock().unwrap().insert(base.to_owned());
    }
}

/// A race's client, the shares acknowledged, and the one that must be stored.
type Raced = (String, Vec<String>, Option<String>);

/// Shared counters of a run.
#[derive(Default)]
struct Tally {
    retried: AtomicUsize,
    no_answer: AtomicUsize,
    race_losers: AtomicUsize,
    errors: AtomicUsize,
    first_errors: Mutex<Vec<String>>,
    latency: Mutex<Vec<Duration>>,
    completed_at: Mutex<Vec<Duration>>,
    /// (client, method, share) of each acknowledged pair.
    acknowledged: Mutex<Vec<(String, &'static str, String)>>,
    /// Base URLs that gave no answer.
    down: Mutex<std::collections::BTreeSet<String>>,
    /// Per race: the client, the shares acknowledged, and the one that must be stored (the
    /// last retry's, when there were retries: they went one after the other).
    raced: Mutex<Vec<Raced>>,
}

impl Tally {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 5 {
            first.push(what);
        }
    }
}

/// A backup to `replica`, retried once on the next replica when it gets no answer or a 503.
/// Returns whether it was stored.
async fn backup(
    http: &reqwest::Client,
    urls: &Urls,
    tally: &Tally,
    replica: usize,
    client: &str,
    method: &str,
    share: &str,
) -> bool {
    let body = json!({"backupMethod": method, "clientId": client, "share": share});
    for attempt in 0..2 {
        let answer = post(
            http,
            tally,
            &url(urls, tally, replica + attempt, "/backup"),
            &body,
        )
        .await;
        let what = match answer {
            Answer::Status(200, _) => return true,
            Answer::Status(503, text) => format!("backup 503: {text}"),
            Answer::None(e) => {
                if attempt == 0 {
                    tally.no_answer.fetch_add(1, Ordering::SeqCst);
                }
                format!("backup, no answer: {e}")
            }
            Answer::Status(status, text) => {
                tally.error(format!("backup {status}: {text}"));
                return false;
            }
        };
        if attempt == 0 {
            tally.retried.fetch_add(1, Ordering::SeqCst);
        } else {
            tally.error(what);
        }
    }
    false
}

/// The shares `replica` returns for `client`, retried once on the next replica.
async fn fetch(
    http: &reqwest::Client,
    urls: &Urls,
    tally: &Tally,
    replica: usize,
    client: &str,
) -> Option<Vec<String>> {
    let body = json!({"clientId": client});
    for attempt in 0..2 {
        match post(
            http,
            tally,
            &url(urls, tally, replica + attempt, "/backup/fetch"),
            &body,
        )
        .await
        {
            Answer::Status(200, text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                return Some(
                    v["backupShares"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_owned())
                        .collect(),
                );
            }
            Answer::None(_) if attempt == 0 => {
                tally.no_answer.fetch_add(1, Ordering::SeqCst);
                tally.retried.fetch_add(1, Ordering::SeqCst);
            }
            Answer::Status(503, _) if attempt == 0 => {
                tally.retried.fetch_add(1, Ordering::SeqCst);
            }
            other => {
                tally.error(format!("fetch: {other:?}"));
                return None;
            }
        }
    }
    None
}

/// One pair: a backup to replica `i`, then a fetch from the next one that must return it.
async fn pair(http: &reqwest::Client, urls: &Urls, tally: &Tally, run: &str, i: usize) {
    let client = format!("{run}-p{:06}", i / 2);
    let method = METHODS[i % 2];
    let share = share(&client);
    let started = Instant::now();
    if !backup(http, urls, tally, i, &client, method, &share).await {
        return;
    }
    tally
        .acknowledged
        .lock()
        .unwrap()
        .push((client.clone(), method, share.clone()));
    if let Some(shares) = fetch(http, urls, tally, i + 1, &client).await
        && !shares.contains(&share)
    {
        tally.error(format!(
            "{client} {method}: the fetch right after the backup lacks it"
        ));
    }
    tally.latency.lock().unwrap().push(started.elapsed());
}

/// One three-way race: three backups of one (client, method) at once, one per replica. The
/// losers (503) then send theirs again, one after the other, as a later request would.
async fn race(http: &reqwest::Client, urls: &Urls, tally: &Tally, run: &str, j: usize) {
    let client = format!("{run}-r{j:06}");
    let method = METHODS[j % 2];
    let shares: Vec<String> = (0..3).map(|_| share(&client)).collect();
    let body = |s: &str| json!({"backupMethod": method, "clientId": client, "share": s});
    let first =
        futures_util::future::join_all(shares.iter().enumerate().map(|(r, s)| async move {
            post(http, tally, &url(urls, tally, r, "/backup"), &body(s)).await
        }))
        .await;
    let mut acknowledged = Vec::new();
    let mut losers = Vec::new();
    for (r, answer) in first.into_iter().enumerate() {
        match answer {
            Answer::Status(200, _) => acknowledged.push(shares[r].clone()),
            Answer::Status(503, _) => {
                tally.race_losers.fetch_add(1, Ordering::SeqCst);
                losers.push(r);
            }
            Answer::None(_) => {
                tally.no_answer.fetch_add(1, Ordering::SeqCst);
                losers.push(r);
            }
            Answer::Status(status, text) => tally.error(format!("race backup {status}: {text}")),
        }
    }
    let mut last = None;
    for r in losers {
        // The loser's resend is a new request, as Portal's later retry would be: like any
        // request it may meet a replica that has just been killed, and gets its one retry.
        tally.retried.fetch_add(1, Ordering::SeqCst);
        if backup(http, urls, tally, r + 1, &client, method, &shares[r]).await {
            acknowledged.push(shares[r].clone());
            last = Some(shares[r].clone());
        }
    }
    if !acknowledged.is_empty() {
        tally
            .raced
            .lock()
            .unwrap()
            .push((client, acknowledged, last));
    }
}

/// The work items of a run, in order: pairs with the races spread among them.
#[derive(Clone, Copy, Debug)]
enum Item {
    Pair(usize),
    Race(usize),
}

fn items(pairs: usize, races: usize) -> Vec<Item> {
    let total = pairs + races;
    let stride = total.checked_div(races).map_or(usize::MAX, |s| s.max(1));
    let (mut p, mut r) = (0, 0);
    (0..total)
        .map(|k| {
            if r < races && ((k + 1) % stride == 0 || p == pairs) {
                r += 1;
                Item::Race(r - 1)
            } else {
                p += 1;
                Item::Pair(p - 1)
            }
        })
        .collect()
}

/// Sends `plan` to the replicas at `urls`, then fetches every client from every replica.
pub async fn run(urls: Urls, plan: Plan, kill: Option<KillAndRestart>) -> Report {
    let replicas = urls.read().unwrap().len();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let work = Arc::new(items(plan.pairs, plan.races));
    let items = work.len();
    let next = Arc::new(AtomicUsize::new(0));
    let kill = Arc::new(Mutex::new(kill));
    let kill_window: Arc<Mutex<Option<(Duration, Duration)>>> = Arc::default();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency {
        let (http, urls, tally, next, plan, kill, kill_window, work) = (
            http.clone(),
            Arc::clone(&urls),
            Arc::clone(&tally),
            Arc::clone(&next),
            plan.clone(),
            Arc::clone(&kill),
            Arc::clone(&kill_window),
            Arc::clone(&work),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= items {
                    break;
                }
                if Some(k) == plan.kill_after
                    && let Some(kill) = kill.lock().unwrap().take()
                {
                    // Off the workers: the kill and restart block.
                    let (urls, down, window, t0) = (
                        Arc::clone(&urls),
                        plan.down,
                        Arc::clone(&kill_window),
                        started,
                    );
                    tokio::spawn(async move {
                        let at = t0.elapsed();
                        let (index, base) = tokio::task::spawn_blocking(move || kill(down))
                            .await
                            .unwrap();
                        urls.write().unwrap()[index] = base;
                        *window.lock().unwrap() = Some((at, t0.elapsed() - at));
                    });
                }
                match work[k] {
                    Item::Race(j) => race(&http, &urls, &tally, &plan.run_id, j).await,
                    Item::Pair(i) => {
                        pair(&http, &urls, &tally, &plan.run_id, i).await;
                        tally.completed_at.lock().unwrap().push(started.elapsed());
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    // The restart may still be under way.
    for _ in 0..600 {
        if kill.lock().unwrap().is_none() && kill_window.lock().unwrap().is_some() {
            break;
        }
        if plan.kill_after.is_none_or(|k| k >= items) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pair_latency = std::mem::take(&mut *tally.latency.lock().unwrap());
    let completed_at = std::mem::take(&mut *tally.completed_at.lock().unwrap());
    let kill = *kill_window.lock().unwrap();
    let mut report = Report {
        replicas,
        pairs: pair_latency.len(),
        races: plan.races,
        elapsed,
        pair_latency,
        kill,
        completed_at,
        ..Report::default()
    };
    verify(&http, &urls, &tally, &mut report).await;
    report.retried = tally.retried.load(Ordering::SeqCst);
    report.no_answer = tally.no_answer.load(Ordering::SeqCst);
    report.race_losers = tally.race_losers.load(Ordering::SeqCst);
    report.errors = tally.errors.load(Ordering::SeqCst);
    report.first_errors = tally.first_errors.lock().unwrap().clone();
    if let Some((at, down)) = report.kill {
        let window = (at, at + down + Duration::from_secs(1));
        report.pairs_per_sec_around_kill = Some(rates_around(&report.completed_at, window));
    }
    report
}

/// Pairs per second completed before, during and after `window` (the kill, the restart and a
/// second more).
fn rates_around(completed: &[Duration], (from, to): (Duration, Duration)) -> (f64, f64, f64) {
    let end = completed.iter().max().copied().unwrap_or_default();
    let count = |a: Duration, b: Duration| completed.iter().filter(|t| **t >= a && **t < b).count();
    let rate = |n: usize, span: Duration| {
        if span.is_zero() {
            0.0
        } else {
            n as f64 / span.as_secs_f64()
        }
    };
    (
        rate(count(Duration::ZERO, from), from),
        rate(count(from, to), to.saturating_sub(from)),
        rate(
            count(to, end + Duration::from_millis(1)),
            end.saturating_sub(to),
        ),
    )
}

/// Fetches every acknowledged client from every replica: each must return the same shares,
/// one per method, holding the share last acknowledged.
async fn verify(http: &reqwest::Client, urls: &Urls, tally: &Tally, report: &mut Report) {
    use std::collections::BTreeMap;
    // Per client: the shares it must hold, or (races) the shares one of which it must hold.
    let mut expected: BTreeMap<String, Expect> = BTreeMap::new();
    for (client, _method, share) in tally.acknowledged.lock().unwrap().iter() {
        match expected
            .entry(client.clone())
            .or_insert_with(|| Expect::All(Vec::new()))
        {
            Expect::All(shares) => shares.push(share.clone()),
            Expect::OneOf(..) => unreachable!("pair and race clients differ"),
        }
    }
    for (client, candidates, last) in tally.raced.lock().unwrap().iter() {
        expected.insert(
            client.clone(),
            Expect::OneOf(candidates.clone(), last.clone()),
        );
    }
    let replicas = urls.read().unwrap().len();
    let expected: Vec<(String, Expect)> = expected.into_iter().collect();
    for chunk in expected.chunks(64) {
        let checks = chunk.iter().map(|(client, expect)| async move {
            let mut answers = Vec::new();
            for r in 0..replicas {
                answers.push(fetch(http, urls, tally, r, client).await);
            }
            (client, expect, answers)
        });
        for (client, expect, answers) in futures_util::future::join_all(checks).await {
            let mut first: Option<Vec<String>> = None;
            for got in answers.into_iter().flatten() {
                let mut got = got;
                got.sort();
                let (lost, wrong) = expect.check(&got);
                report.lost += lost;
                if wrong {
                    report.inconsistent += 1;
                }
                if lost > 0 || wrong {
                    let mut first_errors = tally.first_errors.lock().unwrap();
                    if first_errors.len() < 5 {
                        first_errors.push(format!(
                            "{client}: {} shares returned; {lost} lost; expected {}",
                            got.len(),
                            expect.describe()
                        ));
                    }
                }
                match &first {
                    None => first = Some(got),
                    Some(f) if *f != got => report.inconsistent += 1,
                    Some(_) => {}
                }
            }
        }
    }
}

/// What a client must hold afterwards.
enum Expect {
    /// Every one of these shares (one per method).
    All(Vec<String>),
    /// Exactly one share, one of these; this one if given.
    OneOf(Vec<String>, Option<String>),
}

impl Expect {
    /// (shares lost, whether the answer is otherwise wrong).
    fn check(&self, got: &[String]) -> (usize, bool) {
        match self {
            Self::All(want) => {
                let lost = want.iter().filter(|s| !got.contains(s)).count();
                (lost, got.len() != want.len())
            }
            Self::OneOf(candidates, last) => match got {
                [one] => {
                    let wrong =
                        !candidates.contains(one) || last.as_ref().is_some_and(|l| l != one);
                    (0, wrong)
                }
                [] => (1, true),
                _ => (0, true),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::All(want) => format!("{} shares", want.len()),
            Self::OneOf(c, last) => {
                format!(
                    "one of {} raced shares (the last retry's: {})",
                    c.len(),
                    last.is_some()
                )
            }
        }
    }
}
