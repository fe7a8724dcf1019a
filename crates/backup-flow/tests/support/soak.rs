//! The fault soak, shared by the `soak` test (a few hundred clients) and the `soak` example
//! (any number): a bulk backup through [`Flow::bulk_backup`] while `portal-sim` injects about
//! 20% failures on every route (503 and 502, 429 with `Retry-After` 0 and 1, connections
//! dropped before and after the request took effect) with latency spikes switched on and off,
//! then a second run with no faults. It asserts, and returns figures for a report:
//!
//! * after the first run every client is confirmed or failed *and retryable* (none lost,
//!   none failed for good);
//! * the second run confirms every client, the ones confirmed before without a new
//!   `/v1/backup`;
//! * the simulator's invariant report is clean (no pair marked stored without its
//!   ciphertext, no refused request);
//! * every wallet of every client has exactly one completed backup pair.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)] // test helpers shared by a test and an example; a broken fixture should panic

use std::fmt;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::bulk::{BulkOptions, BulkReport};
use backup_flow::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::Portal;
use backup_flow::portal_api::RetryConfig;
use backup_flow::portal_api::SharePairStatus;
use backup_flow::{Flow, PortalManaged};
use portal_sim::{FaultRule, PortalSim, SimConfig};
use serde_json::{Value, json};

/// The fault mix: about 20% of requests on every route fail (1 - 0.96·0.96 · 0.96·0.95 ·
/// 0.98·0.97 ≈ 0.20).
pub const FAULTS: [&str; 3] = [
    "*: drop=0.04, throttle=0.04, retry-after=0",
    "*: throttle=0.04, retry-after=1, error=0.05, status=503",
    "*: drop-after=0.03, error=0.02, status=502",
];
/// Switched on for 100 ms out of every 400 ms during the faulty run.
pub const SPIKE: &str = "*: latency-ms=150";

#[derive(Debug)]
pub struct Outcome {
    pub clients: usize,
    pub concurrency: usize,
    pub first: BulkReport,
    pub first_time: Duration,
    pub second: BulkReport,
    pub second_time: Duration,
    /// Requests during the faulty run, and faults injected in it.
    pub requests: u64,
    pub faults_injected: u64,
    /// Backup pairs Portal created that were never confirmed (an answer lost to a dropped
    /// connection); never marked stored.
    pub unconfirmed_pairs: usize,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault soak: {} clients, concurrency {}\n  \
             run 1 (faults): {} requests, {} faults injected ({:.1}%); {} confirmed, {} failed \
             (all retryable) in {:.1?}\n  \
             run 2 (no faults): {} confirmed ({} already before), {} failed in {:.1?}\n  \
             invariant report clean; 1 completed backup pair per wallet; {} unconfirmed pairs \
             left by lost answers (never marked stored)",
            self.clients,
            self.concurrency,
            self.requests,
            self.faults_injected,
            self.faults_injected as f64 * 100.0 / self.requests.max(1) as f64,
            self.first.confirmed,
            self.first.failed,
            self.first_time,
            self.second.confirmed,
            self.second.already_confirmed,
            self.second.failed,
            self.second_time,
            self.unconfirmed_pairs,
        )
    }
}

async fn run(
    flow: &Flow,
    base: &Portal,
    input: &str,
    concurrency: usize,
) -> (BulkReport, Vec<Value>) {
    let mut out = Vec::new();
    let report = flow
        .bulk_backup(
            base,
            Cursor::new(input.as_bytes().to_vec()),
            &mut out,
            BulkOptions::new().with_concurrency(concurrency),
        )
        .await
        .unwrap();
    let results = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, results)
}

/// Runs the soak over `clients` clients, `concurrency` at a time; panics on any broken
/// promise.
pub async fn soak(clients: usize, concurrency: usize) -> Outcome {
    let sim = PortalSim::start(SimConfig::new().with_seed(20))
        .await
        .unwrap();
    let mut input = String::new();
    let mut ids = Vec::new();
    for _ in 0..clients {
        let (keys, generate) = sim.generated_client().await.unwrap();
        input.push_str(
            &json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
                .to_string(),
        );
        input.push('\n');
        ids.push(keys.client_id);
    }
    sim.reset_report();

    // Two retries, short backoff: under 20% faults some clients run out of attempts and must
    // come out as retryable failures.
    let base = sim
        .portal_builder()
        .with_retry(
            RetryConfig::default()
                .with_max_retries(2)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .with_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let keyring =
        Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
    let flow = Flow::new(keyring, PortalManaged, state.path()).unwrap();

    let faults: Vec<FaultRule> = FAULTS.iter().map(|r| r.parse().unwrap()).collect();
    let spiky = {
        let mut all = faults.clone();
        all.push(SPIKE.parse().unwrap());
        all
    };
    sim.set_faults(faults.clone()).unwrap();
    let spikes = {
        let sim = sim.simulator().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sim.set_faults(spiky.clone()).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                sim.set_faults(faults.clone()).unwrap();
            }
        })
    };
    let started = Instant::now();
    let (first, results) = run(&flow, &base, &input, concurrency).await;
    let first_time = started.elapsed();
    spikes.abort();
    let _ = spikes.await;
    sim.clear_faults();
    let during = sim.report();
    let (requests, faults_injected) = (during.requests, during.faults_injected);

    assert_eq!(results.len(), clients);
    assert_eq!(first.confirmed + first.failed, clients as u64);
    assert_eq!(
        first.failed,
        first.retryable_failures,
        "a client failed for good under transient faults: {:?}",
        results
            .iter()
            .filter(|r| r["status"] == "failed" && r["retryable"] != true)
            .collect::<Vec<_>>()
    );
    for r in &results {
        assert!(r["status"] == "confirmed" || r["retryable"] == true, "{r}");
    }

    let started = Instant::now();
    let (second, results) = run(&flow, &base, &input, concurrency).await;
    let second_time = started.elapsed();
    assert_eq!(
        (second.confirmed, second.failed),
        (clients as u64, 0),
        "{:?}",
        results
            .iter()
            .filter(|r| r["status"] != "confirmed")
            .collect::<Vec<_>>()
    );
    assert!(second.already_confirmed >= first.confirmed);

    let report = sim.report();
    assert!(report.is_clean(), "{report}");
    let mut unconfirmed_pairs = 0;
    for id in &ids {
        let details = sim.client_details(id).unwrap();
        assert_eq!(details.wallets.len(), 2, "client {id}");
        for wallet in &details.wallets {
            let completed = wallet
                .backup_share_pairs
                .iter()
                .filter(|p| p.status == SharePairStatus::Completed)
                .count();
            assert_eq!(
                completed,
                1,
                "client {id} {}: {completed} completed backup pairs",
                wallet.curve.as_str()
            );
            unconfirmed_pairs += wallet.backup_share_pairs.len() - completed;
        }
    }
    Outcome {
        clients,
        concurrency,
        first,
        first_time,
        second,
        second_time,
        requests,
        faults_injected,
        unconfirmed_pairs,
    }
}
