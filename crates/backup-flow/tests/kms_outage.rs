//! A KMS outage in the middle of a bulk backup: the key-encryption key answers
//! `KmsError::Unavailable` for a window of its calls, then recovers within the same run.
//!
//! * Every client comes out confirmed, or failed *retryable* with its client id.
//! * No pair is marked stored without a durable ciphertext that opens (the simulator checks
//!   "stored without ciphertext"; the test opens every completed pair's ciphertext under a
//!   healthy keyring).
//! * The data key is wrapped before `/v1/backup` is asked, so an outage never orphans a
//!   backup pair: each wallet ends with exactly one backup pair, and `/v1/backup` is asked
//!   once per client over both runs.
//! * A second run, with the KMS healthy, completes the rest; the simulator's report is clean.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test helpers: a broken fixture should panic

mod support;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use backup_flow::Flow;
use backup_flow::bulk::{BulkOptions, BulkReport};
use backup_flow::envelope::testing::{CallCounter, FailingCalls, HookedKek};
use backup_flow::envelope::{DATA_KEY_LEN, KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::Portal;
use backup_flow::portal_api::RetryConfig;
use backup_flow::portal_api::SharePairStatus;
use portal_sim::{PortalSim, SimClient};
use serde_json::{Value, json};
use support::{assert_clean, generated_client, portal_client, sim};

fn base_client(sim: &PortalSim) -> Portal {
    sim.portal_builder()
        .with_retry(
            RetryConfig::default()
                .with_max_retries(1)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(10)),
        )
        .build()
        .unwrap()
}

async fn run(flow: &Flow, portal: &Portal, input: &str) -> (BulkReport, Vec<Value>) {
    let mut out = Vec::new();
    let report = flow
        .bulk_backup(
            portal,
            Cursor::new(input.as_bytes().to_vec()),
            &mut out,
            BulkOptions::new().with_concurrency(4),
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

/// (completed pairs, all pairs) of each wallet of a client.
fn pairs(sim: &PortalSim, client_id: &str) -> Vec<(usize, usize)> {
    sim.client_details(client_id)
        .unwrap()
        .wallets
        .iter()
        .map(|w| {
            let completed = w
                .backup_share_pairs
                .iter()
                .filter(|p| p.status == SharePairStatus::Completed)
                .count();
            (completed, w.backup_share_pairs.len())
        })
        .collect()
}

/// Every completed pair of the client has a stored ciphertext that opens as its share under
/// `keyring` (a healthy one): the restore drill, run independently of the bulk run.
async fn assert_completed_pairs_open(sim: &PortalSim, flow: &Flow, client: &SimClient) {
    let report = flow
        .session(portal_client(sim, &client.client_api_key))
        .verify()
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_outage_mid_run_marks_nothing_stored_and_a_rerun_completes_every_client() {
    const CLIENTS: usize = 30;
    let sim = sim(false).await;
    let mut clients = Vec::new();
    let mut input = String::new();
    for _ in 0..CLIENTS {
        let (keys, _, generate) = generated_client(&sim).await;
        input.push_str(
            &json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
                .to_string(),
        );
        input.push('\n');
        clients.push(keys);
    }
    sim.reset_report();

    // A backup makes one wrap before /v1/backup and one unwrap in the restore drill (both
    // shares are under one data key). Wraps 4 to 9 fail, then unwraps 16 to 21: an outage that starts after the first
    // clients, ends well before the run does, and hits both kinds of call.
    // A fixed test key, so that an independent copy can check the ciphertexts.
    let key = [0x5a; DATA_KEY_LEN];
    let healthy_key = LocalKek::from_key(&key);
    let calls = Arc::new(CallCounter::default());
    let flaky = Arc::new(FailingCalls::new().wraps(4..10).unwraps(16..22));
    // Counted first, so that a failed call counts too.
    let kek = HookedKek::new(Arc::new(LocalKek::from_key(&key)))
        .with_hook(Arc::clone(&calls))
        .with_hook(Arc::clone(&flaky));
    let keyring = Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>);
    let state = tempfile::tempdir().unwrap();
    let flow = Flow::new(keyring, support::portal_managed(), state.path()).unwrap();
    let portal = base_client(&sim);

    let (first, results) = run(&flow, &portal, &input).await;
    let (wraps, unwraps) = (calls.wraps(), calls.unwraps());
    assert!(
        wraps > 10 && unwraps > 22,
        "the KMS never recovered in the run ({wraps} wraps, {unwraps} unwraps)"
    );
    assert_eq!(flaky.failed(), 12);
    assert_eq!(results.len(), CLIENTS);
    assert!(first.confirmed > 0, "{first:?}");
    assert_eq!(first.failed, first.retryable_failures, "{results:?}");
    let mut failed_at_wrap = 0;
    for r in &results {
        // Every failure is retryable, names the KMS and the client (item: a failure after
        // Portal named the client carries its id).
        if r["status"] == "failed" {
            assert_eq!(r["retryable"], true, "{r}");
            let error = r["error"].as_str().unwrap();
            assert!(error.contains("KMS unavailable"), "{error}");
            assert!(r["clientId"].is_string(), "{r}");
            if error.contains("wrapping") {
                failed_at_wrap += 1;
            }
        } else {
            assert_eq!(r["status"], "confirmed", "{r}");
        }
    }
    // Each failed call fails one client.
    assert_eq!(failed_at_wrap, 6, "{results:?}");
    assert_eq!(first.failed, 12, "{first:?}");
    eprintln!(
        "kms outage: {wraps} wraps and {unwraps} unwraps, 12 failed; run 1: {} confirmed, {} \
         failed (retryable), {failed_at_wrap} of them before /v1/backup",
        first.confirmed, first.failed
    );

    // Nothing marked stored without a ciphertext that opens; no orphan pair from a failed
    // wrap (it happens before Portal is asked).
    let healthy = Keyring::new().with(Arc::new(healthy_key) as Arc<dyn KeyEncryptionKey>);
    let checker = Flow::new(
        healthy,
        support::portal_managed(),
        tempfile::tempdir().unwrap().path(),
    )
    .unwrap();
    for client in &clients {
        let r = results
            .iter()
            .find(|r| r["clientId"] == client.client_id.as_str())
            .unwrap();
        let pairs = pairs(&sim, &client.client_id);
        if r["status"] == "confirmed" {
            assert_eq!(pairs, [(1, 1), (1, 1)], "{r}");
            assert_completed_pairs_open(&sim, &checker, client).await;
        } else if r["error"].as_str().unwrap().contains("wrapping") {
            assert_eq!(pairs, [(0, 0), (0, 0)], "a failed wrap asked Portal: {r}");
        } else {
            assert_eq!(pairs, [(0, 1), (0, 1)], "{r}");
        }
    }
    assert_clean(&sim);

    // The KMS is healthy now: a second run completes the rest, each client's backup asked
    // of Portal once over both runs.
    let (second, results) = run(&flow, &portal, &input).await;
    assert_eq!((second.confirmed, second.failed), (CLIENTS as u64, 0));
    assert_eq!(second.already_confirmed, first.confirmed);
    assert!(
        results.iter().all(|r| r["backupRequests"] == 1),
        "{results:?}"
    );
    for client in &clients {
        assert_eq!(pairs(&sim, &client.client_id), [(1, 1), (1, 1)]);
        assert_completed_pairs_open(&sim, &checker, client).await;
    }
    assert_clean(&sim);
}
