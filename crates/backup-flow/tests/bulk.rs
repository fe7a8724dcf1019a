//! Bulk backup against `portal-sim`: every line gets a result, a failing line does not stop
//! the others, shards cover every line exactly once, a re-run skips confirmed clients, and
//! the rate limit of the flow's client holds across every line.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test helpers: a broken fixture should panic

mod support;

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_flow::Flow;
use backup_flow::bulk::{BulkEvent, BulkOptions, BulkReport};
use backup_flow::client_lines::Shard;
use backup_flow::portal_api::Portal;
use backup_flow::portal_api::SharePairStatus;
use backup_flow::portal_api::{RateLimit, RetryConfig};
use portal_sim::{FaultRule, PortalSim, SimClient};
use serde_json::{Value, json};
use support::{assert_clean, generated_client, keyring, sim};

/// The transport as the CLI makes one: hosts, retries and limits, no credential.
fn base_client(sim: &PortalSim, mpc_limit: Option<RateLimit>) -> Portal {
    let mut builder = sim.portal_builder().with_retry(
        RetryConfig::default()
            .with_max_retries(1)
            .with_initial_backoff(Duration::from_millis(5))
            .with_max_backoff(Duration::from_millis(10)),
    );
    if let Some(limit) = mpc_limit {
        builder = builder.with_mpc_rate_limit(limit);
    }
    builder.build().unwrap()
}

/// `n` clients with generated wallets, as JSON lines; every other one by session token.
async fn clients(sim: &PortalSim, n: usize) -> (Vec<SimClient>, Vec<String>) {
    let mut keys = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let (client, _, generate) = generated_client(sim).await;
        let generate = serde_json::to_value(&generate).unwrap();
        lines.push(if i % 2 == 0 {
            json!({"clientApiKey": client.client_api_key.expose_secret(), "generateResponse": generate})
        } else {
            // The string form, as /v1/backup takes it.
            json!({
                "clientSessionToken": client.client_session_token.expose_secret(),
                "generateResponse": generate.to_string(),
            })
        }
        .to_string());
        keys.push(client);
    }
    (keys, lines)
}

/// A bulk run's flow and the transport its lines' sessions use.
struct Bulk {
    flow: Flow,
    portal: Portal,
}

async fn run(bulk: &Bulk, input: &str, options: BulkOptions) -> (BulkReport, Vec<Value>, String) {
    let mut out = Vec::new();
    let report = bulk
        .flow
        .bulk_backup(
            &bulk.portal,
            Cursor::new(input.as_bytes().to_vec()),
            &mut out,
            options,
        )
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let results = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, results, text)
}

fn flow(sim: &PortalSim, state: &Path) -> Bulk {
    Bulk {
        flow: Flow::new(keyring(), support::portal_managed(), state).unwrap(),
        portal: base_client(sim, None),
    }
}

/// Completed backup pairs per wallet of a client.
fn completed_pairs(sim: &PortalSim, client_id: &str) -> Vec<usize> {
    sim.client_details(client_id)
        .unwrap()
        .wallets
        .iter()
        .map(|w| {
            w.backup_share_pairs
                .iter()
                .filter(|p| p.status == SharePairStatus::Completed)
                .count()
        })
        .collect()
}

fn assert_no_secret(text: &str, clients: &[SimClient]) {
    for c in clients {
        assert!(!text.contains(c.client_api_key.expose_secret()));
        assert!(!text.contains(c.client_session_token.expose_secret()));
    }
}

#[tokio::test]
async fn every_line_gets_a_result_and_a_failing_line_does_not_stop_the_others() {
    let sim = sim(false).await;
    let (keys, mut lines) = clients(&sim, 5).await;
    lines.insert(1, "this is not json".into());
    lines.insert(3, String::new());
    lines.insert(
        4,
        json!({"clientApiKey": "not-a-key-of-anyone", "generateResponse": {}}).to_string(),
    );
    let input = lines.join("\n");
    let state = tempfile::tempdir().unwrap();
    let flow = flow(&sim, state.path());

    let events = Arc::new(Mutex::new((0, 0)));
    let seen = Arc::clone(&events);
    let options = BulkOptions::new()
        .with_concurrency(3)
        .with_progress(move |event| {
            let mut seen = seen.lock().unwrap();
            match event {
                BulkEvent::Started { .. } => seen.0 += 1,
                BulkEvent::Finished(_) => seen.1 += 1,
                _ => {}
            }
        });
    let (report, results, text) = run(&flow, &input, options).await;

    assert_eq!(
        (
            report.lines,
            report.selected,
            report.confirmed,
            report.failed
        ),
        (7, 7, 5, 2)
    );
    assert_eq!(*events.lock().unwrap(), (7, 7));
    let by_line = |n: u64| results.iter().find(|r| r["line"] == n).unwrap();
    assert_eq!(by_line(2)["status"], "failed");
    assert!(
        by_line(2)["error"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    let refused = by_line(5);
    assert_eq!(refused["status"], "failed");
    assert_eq!(refused["portalStatus"], 401);
    assert_eq!(refused["retryable"], false);
    assert!(refused["clientId"].is_null());
    assert!(refused["error"].as_str().unwrap().contains("http 401"));
    for client in &keys {
        let result = results
            .iter()
            .find(|r| r["clientId"] == client.client_id.as_str())
            .unwrap();
        assert_eq!(result["status"], "confirmed");
        assert_eq!(result["backupRequests"], 1);
        assert_eq!(result["store"], "portal");
        assert_eq!(completed_pairs(&sim, &client.client_id), [1, 1]);
    }
    assert_no_secret(&text, &keys);
    // The one request Portal refused is the line with a key of no one.
    let report = sim.report();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.rejected_requests(), 1, "{report}");
    assert_eq!(
        report.rejected("/api/v3/clients/me", "AUTH_FAILED"),
        1,
        "{report}"
    );
}

#[tokio::test]
async fn shards_cover_every_line_exactly_once_and_a_rerun_skips_confirmed_clients() {
    let sim = sim(false).await;
    let (keys, lines) = clients(&sim, 7).await;
    let input = lines.join("\n") + "\n";
    let state = tempfile::tempdir().unwrap();
    let flow = flow(&sim, state.path());

    let mut lines_seen = Vec::new();
    for i in 0..3 {
        let shard = Shard::new(i, 3).unwrap();
        let (report, results, _) = run(&flow, &input, BulkOptions::new().with_shard(shard)).await;
        assert_eq!(report.lines, 7);
        assert!(report.is_success(), "{results:?}");
        for r in &results {
            let line = r["line"].as_u64().unwrap();
            assert_eq!((line - 1) % 3, u64::from(i));
            assert_eq!(r["alreadyConfirmed"], false);
            lines_seen.push(line);
        }
    }
    lines_seen.sort_unstable();
    assert_eq!(lines_seen, (1..=7).collect::<Vec<u64>>());

    // Again, all at once: every client is found confirmed, nothing new is asked of Portal.
    let (report, results, _) = run(&flow, &input, BulkOptions::new().with_concurrency(8)).await;
    assert_eq!((report.confirmed, report.already_confirmed), (7, 7));
    assert!(results.iter().all(|r| r["backupRequests"] == 1));
    let ids: BTreeSet<&str> = results
        .iter()
        .map(|r| r["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7);
    for client in &keys {
        assert_eq!(completed_pairs(&sim, &client.client_id), [1, 1]);
    }
    assert_clean(&sim);
}

#[tokio::test]
async fn a_portal_outage_fails_lines_as_retryable_and_a_rerun_finishes_them() {
    let sim = sim(false).await;
    let (keys, lines) = clients(&sim, 3).await;
    let input = lines.join("\n");
    let state = tempfile::tempdir().unwrap();
    let flow = flow(&sim, state.path());

    sim.add_fault(
        "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let (report, results, _) = run(&flow, &input, BulkOptions::new()).await;
    assert_eq!((report.failed, report.retryable_failures), (3, 3));
    assert!(results.iter().all(|r| r["portalStatus"] == 503));
    sim.clear_faults();

    let (report, results, _) = run(&flow, &input, BulkOptions::new()).await;
    assert_eq!(report.confirmed, 3);
    assert!(
        results
            .iter()
            .all(|r| r["resumedAfter"] == "verified" && r["backupRequests"] == 1)
    );
    for client in &keys {
        assert_eq!(completed_pairs(&sim, &client.client_id), [1, 1]);
    }
    assert_clean(&sim);
}

#[tokio::test]
async fn the_flow_clients_rate_limit_holds_across_every_line() {
    let sim = sim(false).await;
    let (_keys, lines) = clients(&sim, 4).await;
    let input = lines.join("\n");
    let state = tempfile::tempdir().unwrap();
    // One /v1/backup per line, at most one every 200 ms across the run.
    let limited = base_client(&sim, Some(RateLimit::per_minute(300).with_burst(1)));
    let flow = Bulk {
        flow: Flow::new(keyring(), support::portal_managed(), state.path()).unwrap(),
        portal: limited,
    };

    let started = Instant::now();
    let (report, _, _) = run(&flow, &input, BulkOptions::new().with_concurrency(4)).await;
    assert_eq!(report.confirmed, 4);
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "4 lines in {:?}: the limit was not shared",
        started.elapsed()
    );
}
