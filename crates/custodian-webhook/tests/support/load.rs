//! The load driver shared by the small load test and `examples/load.rs`: backup+fetch pairs
//! from many concurrent connections, with latencies and a final fetch of every share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `http://host:port{base}`.
    pub base_url: String,
    pub secret: String,
    pub pairs: usize,
    pub concurrency: usize,
    /// The whole run (load and verification) must finish within this.
    pub deadline: Duration,
}

/// (client id, backup method) of pair `i`: two per-curve methods per client, as Portal sends.
pub fn identity(i: usize) -> (String, &'static str) {
    const METHODS: [&str; 2] = ["GDRIVE-SECP256K1", "GDRIVE-ED25519"];
    (format!("cl_load_{:06}", i / 2), METHODS[i % 2])
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub pairs: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
    pub backup: Vec<Duration>,
    pub fetch: Vec<Duration>,
    pub pair: Vec<Duration>,
    /// Shares not returned by the final fetch of every client.
    pub missing_after: usize,
    pub verify_elapsed: Duration,
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl LoadReport {
    pub fn summary(&mut self) -> String {
        self.backup.sort();
        self.fetch.sort();
        self.pair.sort();
        let secs = self.elapsed.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "pairs: {} (backup+fetch) in {:.2} s = {:.0} pairs/s, {:.0} requests/s\n\
             errors: {}\n\
             latency backup   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
             latency fetch    p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
             latency pair     p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
             final fetch of every client: {} shares missing ({:.2} s)",
            self.pairs,
            secs,
            self.pairs as f64 / secs,
            (self.pairs * 2) as f64 / secs,
            self.errors,
            ms(percentile(&self.backup, 50.0)),
            ms(percentile(&self.backup, 99.0)),
            ms(self.backup.last().copied().unwrap_or_default()),
            ms(percentile(&self.fetch, 50.0)),
            ms(percentile(&self.fetch, 99.0)),
            ms(self.fetch.last().copied().unwrap_or_default()),
            ms(percentile(&self.pair, 50.0)),
            ms(percentile(&self.pair, 99.0)),
            ms(self.pair.last().copied().unwrap_or_default()),
            self.missing_after,
            self.verify_elapsed.as_secs_f64(),
        )
    }
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &Value,
) -> Result<Value, String> {
    let resp = http
        .post(url)
        .header("X-Webhook-Secret", secret)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("status {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("json: {e}"))
}

fn contains(answer: &Value, share: &str) -> bool {
    answer["backupShares"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(share)))
}

/// Runs `config.pairs` backup+fetch pairs (`shares[i]` for pair `i`) over
/// `config.concurrency` connections, then fetches every client once more.
pub async fn run(config: &LoadConfig, shares: Arc<Vec<String>>) -> LoadReport {
    assert_eq!(shares.len(), config.pairs);
    let started = Instant::now();
    let work = run_inner(config, Arc::clone(&shares), started);
    match tokio::time::timeout(config.deadline, work).await {
        Ok(report) => report,
        Err(_) => panic!("load run did not finish within {:?}", config.deadline),
    }
}

async fn run_inner(config: &LoadConfig, shares: Arc<Vec<String>>, started: Instant) -> LoadReport {
    let http = client(config.concurrency);
    let next = Arc::new(AtomicUsize::new(0));
    let backup_url = format!("{}/backup", config.base_url);
    let fetch_url = format!("{}/backup/fetch", config.base_url);
    let mut workers = Vec::new();
    for _ in 0..config.concurrency {
        let (http, next, shares) = (http.clone(), Arc::clone(&next), Arc::clone(&shares));
        let (backup_url, fetch_url, secret) =
            (backup_url.clone(), fetch_url.clone(), config.secret.clone());
        let pairs = config.pairs;
        workers.push(tokio::spawn(async move {
            let mut out = LoadReport::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pairs {
                    break;
                }
                let (client_id, method) = identity(i);
                let share = &shares[i];
                let t0 = Instant::now();
                let stored = post(
                    &http,
                    &backup_url,
                    &secret,
                    &json!({"backupMethod": method, "clientId": client_id, "share": share}),
                )
                .await;
                let t1 = Instant::now();
                let fetched = match stored {
                    Ok(_) => {
                        post(&http, &fetch_url, &secret, &json!({"clientId": client_id})).await
                    }
                    Err(e) => Err(format!("backup: {e}")),
                };
                let t2 = Instant::now();
                out.pairs += 1;
                match fetched {
                    Ok(answer) if contains(&answer, share) => {
                        out.backup.push(t1 - t0);
                        out.fetch.push(t2 - t1);
                        out.pair.push(t2 - t0);
                    }
                    Ok(_) => {
                        out.errors += 1;
                        out.first_errors
                            .push(format!("pair {i}: fetch did not return the share"));
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_errors.push(format!("pair {i}: {e}"));
                    }
                }
                out.first_errors.truncate(5);
            }
            out
        }));
    }
    let mut report = LoadReport::default();
    for w in workers {
        let part = w.await.unwrap();
        report.pairs += part.pairs;
        report.errors += part.errors;
        report.first_errors.extend(part.first_errors);
        report.backup.extend(part.backup);
        report.fetch.extend(part.fetch);
        report.pair.extend(part.pair);
    }
    report.first_errors.truncate(5);
    report.elapsed = started.elapsed();

    // Every share fetchable afterwards: one fetch per client, with the same concurrency.
    let verify_started = Instant::now();
    let clients = config.pairs.div_ceil(2);
    let next = Arc::new(AtomicUsize::new(0));
    let missing = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..config.concurrency {
        let (http, next, shares, missing) = (
            http.clone(),
            Arc::clone(&next),
            Arc::clone(&shares),
            Arc::clone(&missing),
        );
        let (fetch_url, secret) = (fetch_url.clone(), config.secret.clone());
        let pairs = config.pairs;
        workers.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= clients {
                    break;
                }
                let (client_id, _) = identity(c * 2);
                let answer =
                    post(&http, &fetch_url, &secret, &json!({"clientId": client_id})).await;
                for i in [c * 2, c * 2 + 1] {
                    if i < pairs && !answer.as_ref().is_ok_and(|a| contains(a, &shares[i])) {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    report.missing_after = missing.load(Ordering::Relaxed);
    report.verify_elapsed = verify_started.elapsed();
    report
}
