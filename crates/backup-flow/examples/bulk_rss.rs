//! Peak memory of a bulk backup, for `cargo xtask bench rss` (which runs it at 1,000, 10,000
//! and 100,000 clients and reports the peak RSS of each run).
//!
//! The simulator keeps every client's shares and ciphertexts, so it grows with the number of
//! clients; it runs in a process of its own (the `portal-sim` binary), and this program only
//! talks to it over loopback. Two steps, each a process of its own so that preparing the
//! input does not count towards the measured peak:
//!
//! ```text
//! PORTAL_SIM_URL=http://127.0.0.1:PORT PORTAL_SIM_CUSTODIAN_API_KEY=… \
//!     bulk_rss prepare <clients> <input.jsonl>
//! PORTAL_SIM_URL=http://127.0.0.1:PORT bulk_rss run <input.jsonl> <state-dir> [concurrency]
//! ```
//!
//! `prepare` makes that many clients through the Custodian API, gives each a wallet
//! (`/v1/generate`, signing shares confirmed) and writes the bulk input. `run` backs them all
//! up with [`Flow::bulk_backup`](backup_flow::Flow::bulk_backup): Portal-managed ciphertexts
//! (kept by the simulator, not here), a local KEK, the journal in `<state-dir>` (one file per
//! backup, on disk), result lines discarded, no client-side rate limit and no added latency.
//! At the end it prints one JSON line: clients, confirmed, failed, seconds and `VmHWM` (the
//! peak resident set) and `VmRSS` from `/proc/self/status`, in KiB. Linux only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::arithmetic_side_effects,
    reason = "a measuring program: a broken fixture should stop it loudly"
)]

use std::io::{BufReader, BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use backup_flow::bulk::BulkOptions;
use backup_flow::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::client_api::SharePairStatusUpdate;
use backup_flow::portal_api::custodian_api::CreateClientRequest;
use backup_flow::portal_api::{ApiKey, CustodianApi, Portal};
use backup_flow::{Flow, PortalManaged};
use serde_json::json;
use tokio::task::JoinSet;

/// Clients prepared at once.
const PREPARE_CONCURRENCY: usize = 32;

fn sim_url() -> String {
    std::env::var("PORTAL_SIM_URL").expect("PORTAL_SIM_URL: the simulator's base URL")
}

fn base_client() -> Portal {
    let url = sim_url();
    Portal::builder()
        .with_api_base_url(&url)
        .with_mpc_base_url(&url)
        .without_rate_limits()
        .build()
        .unwrap()
}

/// One input line for a new client with a confirmed wallet.
async fn new_client(custodian: CustodianApi) -> String {
    let created = custodian
        .create_client(&CreateClientRequest::default())
        .await
        .unwrap();
    let client = custodian
        .portal()
        .client_with_api_key(&created.client_api_key)
        .unwrap();
    let generate = client.generate().await.unwrap();
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generate.ids()))
        .await
        .unwrap();
    let mut line = json!({
        "clientApiKey": created.client_api_key.expose_secret(),
        "generateResponse": generate,
    })
    .to_string();
    line.push('\n');
    line
}

async fn prepare(clients: usize, out: &Path) {
    let key = std::env::var("PORTAL_SIM_CUSTODIAN_API_KEY")
        .expect("PORTAL_SIM_CUSTODIAN_API_KEY: the simulator's custodian key");
    let custodian = base_client().custodian(&ApiKey::new(key)).unwrap();
    let mut file = BufWriter::new(std::fs::File::create(out).unwrap());
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < clients || !tasks.is_empty() {
        while started < clients && tasks.len() < PREPARE_CONCURRENCY {
            tasks.spawn(new_client(custodian.clone()));
            started += 1;
        }
        let line = tasks.join_next().await.unwrap().unwrap();
        file.write_all(line.as_bytes()).unwrap();
    }
    file.flush().unwrap();
}

/// A field of `/proc/self/status` in KiB (`VmHWM:   12345 kB`).
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
}

async fn run(input: &Path, state: &Path, concurrency: usize) {
    let keyring =
        Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
    let flow = Flow::new(keyring, PortalManaged, state).unwrap();
    let input = BufReader::new(std::fs::File::open(input).unwrap());
    let started = Instant::now();
    let report = flow
        .bulk_backup(
            &base_client(),
            input,
            std::io::sink(),
            BulkOptions::new().with_concurrency(concurrency),
        )
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    println!(
        "{}",
        json!({
            "clients": report.lines,
            "confirmed": report.confirmed,
            "failed": report.failed,
            "concurrency": concurrency,
            "seconds": seconds,
            "backupsPerSecond": report.confirmed as f64 / seconds,
            "vmHwmKib": status_kib(&status, "VmHWM"),
            "vmRssKib": status_kib(&status, "VmRSS"),
        })
    );
    assert_eq!(report.failed, 0, "{report:?}");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["prepare", clients, out] => prepare(clients.parse().unwrap(), Path::new(out)).await,
        ["run", input, state, rest @ ..] => {
            let concurrency = rest.first().map_or(32, |c| c.parse().unwrap());
            run(Path::new(input), Path::new(state), concurrency).await;
        }
        _ => {
            eprintln!(
                "usage: bulk_rss prepare <clients> <input.jsonl> | \
                 bulk_rss run <input.jsonl> <state-dir> [concurrency]"
            );
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_status_fields() {
        let status =
            "Name:\tbulk_rss\nVmPeak:\t  200000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t    9000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(12345));
        assert_eq!(status_kib(status, "VmRSS"), Some(9000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
