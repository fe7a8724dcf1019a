//! Bulk backup throughput against `portal-sim` with 20 ms added to every request (rule
//! `*: latency-ms=20`), at concurrency 1, 8, 64 and 256: achieved backups per second versus the
//! ideal for that latency and concurrency,
//!
//! ideal backups/s = concurrency / (requests per backup × latency),
//!
//! where requests per backup is counted by the simulator during the run. Not a criterion bench
//! (one timed run per level, each of seconds, says more than criterion's sampling of it): it
//! writes its results in criterion's file layout under `CRITERION_HOME` (set by
//! `cargo xtask bench`), group `bulk_backup_20ms`, so that the report shows, per concurrency,
//! `baseline_ideal/cNNN` (the ideal time per backup) next to `bulk_backup/cNNN` (the achieved
//! one): *speed vs baseline* is then achieved ÷ ideal throughput.
//!
//! Run alone: `cargo bench -p backup-flow --bench bulk_throughput` (prints the table).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)] // a benchmark program: a broken fixture should panic; counts are small

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::client_api::SharePairStatusUpdate;
use backup_flow::portal_api::{ApiKey, Client};
use backup_flow::{BulkOptions, CiphertextStore, Flow};
use portal_sim::{PortalSim, SimConfig};
use serde_json::json;

const LATENCY_MS: u64 = 20;
const GROUP: &str = "bulk_backup_20ms";
/// (concurrency, clients): each level takes a few seconds at its ideal rate.
const LEVELS: [(usize, usize); 4] = [(1, 16), (8, 96), (64, 512), (256, 1024)];

struct Level {
    concurrency: usize,
    clients: usize,
    elapsed: Duration,
    requests_per_backup: f64,
}

impl Level {
    fn achieved(&self) -> f64 {
        self.clients as f64 / self.elapsed.as_secs_f64()
    }
    fn ideal(&self) -> f64 {
        self.concurrency as f64 / (self.requests_per_backup * LATENCY_MS as f64 / 1000.0)
    }
}

async fn level(concurrency: usize, clients: usize) -> Level {
    let sim = PortalSim::start(SimConfig::new().with_seed(3))
        .await
        .unwrap();
    let mut input = String::new();
    for _ in 0..clients {
        let keys = sim.create_client();
        let app = Client::builder()
            .with_api_base_url(sim.api_base_url())
            .with_mpc_base_url(sim.mpc_base_url())
            .with_client_api_key(ApiKey::from(keys.client_api_key.expose_secret()))
            .without_rate_limits()
            .build()
            .unwrap();
        let generate = app.generate().await.unwrap();
        app.update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generate.ids()))
            .await
            .unwrap();
        input.push_str(
            &json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
                .to_string(),
        );
        input.push('\n');
    }
    let base = Client::builder()
        .with_api_base_url(sim.api_base_url())
        .with_mpc_base_url(sim.mpc_base_url())
        .without_rate_limits()
        .build()
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let keyring =
        Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
    let flow = Flow::new(base, keyring, CiphertextStore::Portal, state.path()).unwrap();
    sim.add_fault(format!("*: latency-ms={LATENCY_MS}").parse().unwrap())
        .unwrap();
    sim.reset_report();
    let started = Instant::now();
    let report = flow
        .bulk_backup(
            Cursor::new(input.into_bytes()),
            std::io::sink(),
            BulkOptions::new().with_concurrency(concurrency),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        (report.confirmed, report.failed),
        (clients as u64, 0),
        "{report:?}"
    );
    let sim_report = sim.report();
    assert!(sim_report.is_clean(), "{sim_report}");
    Level {
        concurrency,
        clients,
        elapsed,
        requests_per_backup: sim_report.requests as f64 / clients as f64,
    }
}

/// One result in criterion's layout: `<home>/<group>/<function>/<parameter>/new/`.
fn write_result(home: &Path, function: &str, parameter: &str, median_ns: f64) {
    let dir = home.join(GROUP).join(function).join(parameter).join("new");
    std::fs::create_dir_all(&dir).unwrap();
    let id = format!("{GROUP}/{function}/{parameter}");
    std::fs::write(
        dir.join("benchmark.json"),
        json!({
            "group_id": GROUP,
            "function_id": function,
            "value_str": parameter,
            "throughput": {"Elements": 1},
            "full_id": id,
            "directory_name": id,
            "title": id,
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("estimates.json"),
        json!({"median": {"point_estimate": median_ns}, "mean": {"point_estimate": median_ns}})
            .to_string(),
    )
    .unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else: run a
    // smoke-sized pass there.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = std::env::var_os("CRITERION_HOME").map(std::path::PathBuf::from);
    println!(
        "bulk backup, Portal-managed store, {LATENCY_MS} ms per request \
         (ideal = concurrency / (requests per backup x latency))"
    );
    println!("concurrency  clients  requests/backup  achieved/s  ideal/s  achieved/ideal");
    for (concurrency, clients) in LEVELS {
        let clients = if smoke { 4 } else { clients };
        let result = runtime.block_on(level(concurrency, clients));
        println!(
            "{:>11}  {:>7}  {:>15.2}  {:>10.1}  {:>7.1}  {:>14.3}",
            result.concurrency,
            result.clients,
            result.requests_per_backup,
            result.achieved(),
            result.ideal(),
            result.achieved() / result.ideal()
        );
        if let (Some(home), false) = (&home, smoke) {
            let parameter = format!("c{concurrency:03}");
            write_result(home, "baseline_ideal", &parameter, 1e9 / result.ideal());
            write_result(home, "bulk_backup", &parameter, 1e9 / result.achieved());
        }
    }
}
