//! `cargo xtask bench status`: `status` over a fleet of 10,000 clients of one custodian in
//! portal-sim, the Portal requests it makes per client as Portal saw them, and how long the
//! run takes under Portal's published rate limit (200 requests a minute on the Client and
//! Custodian APIs) against the projection the summary makes.
//!
//! The fleet: [`BACKED_UP`] clients backed up into a file store of our own through the real
//! backup flow, [`BACKED_UP`] backed up with Portal (Portal-Managed Backups), and the rest
//! bare clients (no wallet yet: "not backed up"). Three runs:
//!
//! * the store of our own, under the default client-side limit (200 a minute, as the CLI);
//! * the same without a client-side limit (what the store and the simulator allow);
//! * Portal-managed, with the client credentials of the clients backed up with Portal, so that
//!   their ciphertexts are read through client routes (the others: "held by Portal, not
//!   checked").
//!
//! Prints the Markdown table and, last, one JSON line for `cargo xtask bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::print_stdout,
    missing_docs
)] // a benchmark program: a broken fixture should panic; counts are small

use std::sync::Arc;
use std::time::Instant;

use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::fleet::{ClientSessions, StatusOptions, StatusSummary};
use backup_flow::portal_api::{Portal, RateLimit};
use backup_flow::storage::BackupStore;
use backup_flow::storage::fs::FsStore;
use backup_flow::{CustodianFlow, Flow, PortalManaged, StoreFactory};
use futures_util::StreamExt as _;
use portal_sim::{PortalSim, SimClient, SimConfig};

/// Clients of the custodian.
const CLIENTS: usize = 10_000;
/// Clients backed up through the real backup flow, to our store and with Portal each.
const BACKED_UP: usize = 100;

/// One run of `status`, as measured.
struct Measured {
    name: &'static str,
    limit: &'static str,
    summary: StatusSummary,
    seconds: f64,
    /// What Portal saw: requests, and the most in any one second.
    seen: u64,
    busiest_second: u64,
}

impl Measured {
    fn row(&self) -> String {
        let s = &self.summary;
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.4} | {} | {} | {:.1} | {} |",
            self.name,
            self.limit,
            s.clients,
            s.requests.total(),
            self.seen,
            s.requests.listing_pages,
            s.requests_per_client,
            s.projection.requests,
            s.projection.seconds,
            self.seconds,
            self.busiest_second,
        )
    }

    fn json(&self) -> String {
        let s = &self.summary;
        format!(
            "{{\"run\":\"{}\",\"limit\":\"{}\",\"clients\":{},\"requests\":{},\"portalSaw\":{},\
             \"listingPages\":{},\"credentialLookups\":{},\"ciphertextReads\":{},\
             \"requestsPerClient\":{:.4},\"projectedRequests\":{},\"projectedSeconds\":{},\
             \"seconds\":{:.2},\"busiestSecond\":{}}}",
            self.name,
            self.limit,
            s.clients,
            s.requests.total(),
            self.seen,
            s.requests.listing_pages,
            s.requests.credential_lookups,
            s.requests.ciphertext_reads,
            s.requests_per_client,
            s.projection.requests,
            s.projection.seconds,
            self.seconds,
            self.busiest_second,
        )
    }
}

/// Runs `status` to its end with `options` and measures it as Portal saw it.
async fn measure(
    name: &'static str,
    limit: &'static str,
    sim: &PortalSim,
    flow: &CustodianFlow,
    options: StatusOptions,
    lookups: u64,
) -> Measured {
    sim.reset_report();
    let started = Instant::now();
    let mut run = flow.status(options);
    let mut summary = run.summary();
    while let Some(client) = run.next().await {
        summary.add(&client.unwrap());
    }
    // The run counts the sessions' lookups (made before it, so not in Portal's report since).
    summary.finish(run.requests());
    let seconds = started.elapsed().as_secs_f64();
    let traffic = sim.report().traffic.api;
    assert_eq!(summary.clients, CLIENTS as u64, "{name}");
    Measured {
        name,
        limit,
        summary,
        seconds,
        seen: traffic.requests + lookups,
        busiest_second: traffic.busiest_second,
    }
}

/// A client backed up through the real backup flow into `stores`.
async fn backed_up(
    sim: &PortalSim,
    portal: &Portal,
    keyring: &Keyring,
    stores: Arc<dyn StoreFactory>,
    state: &std::path::Path,
) -> SimClient {
    let (keys, generate) = sim.generated_client().await.unwrap();
    let client = portal.client_with_api_key(&keys.client_api_key).unwrap();
    Flow::new(keyring.clone(), stores, state)
        .unwrap()
        .session(client)
        .backup(&generate)
        .await
        .unwrap();
    keys
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = PortalSim::start(SimConfig::new().with_seed(19)).await.unwrap();
        // Seeding and the unlimited runs: no client-side limit. The measured run: Portal's.
        let unlimited = sim.portal_builder().build().unwrap();
        let limited = sim
            .portal_builder()
            .with_api_rate_limit(RateLimit::CLIENT_API_DEFAULT)
            .build()
            .unwrap();
        let keyring =
            Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
        let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let state = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
        let own: Arc<dyn StoreFactory> = Arc::new(Arc::clone(&store));
        let with_portal: Arc<dyn StoreFactory> = Arc::new(PortalManaged);

        let seeded = Instant::now();
        let mut custodian_key = None;
        for _ in 0..BACKED_UP {
            let keys = backed_up(&sim, &unlimited, &keyring, Arc::clone(&own), state.path()).await;
            custodian_key.get_or_insert(keys.custodian_api_key);
        }
        let mut lines = String::new();
        for _ in 0..BACKED_UP {
            let keys =
                backed_up(&sim, &unlimited, &keyring, Arc::clone(&with_portal), state.path())
                    .await;
            lines.push_str(&format!(
                "{{\"clientApiKey\":\"{}\"}}\n",
                keys.client_api_key.expose_secret()
            ));
        }
        for _ in 2 * BACKED_UP..CLIENTS {
            let _ = sim.create_client();
        }
        eprintln!(
            "seeded {CLIENTS} clients ({BACKED_UP} backed up to our store, {BACKED_UP} with \
             Portal) in {:.1} s",
            seeded.elapsed().as_secs_f64()
        );
        let custodian_key = custodian_key.unwrap();
        let custodian = |portal: &Portal| {
            Flow::new(keyring.clone(), Arc::clone(&own), state.path())
                .unwrap()
                .custodian(portal.custodian(&custodian_key).unwrap())
        };

        let mut runs = Vec::new();
        runs.push(
            measure(
                "own store",
                "200/min",
                &sim,
                &custodian(&limited),
                StatusOptions::new(),
                0,
            )
            .await,
        );
        runs.push(
            measure(
                "own store",
                "off",
                &sim,
                &custodian(&unlimited),
                StatusOptions::new(),
                0,
            )
            .await,
        );
        let (sessions, unusable) =
            ClientSessions::from_lines(&unlimited, std::io::Cursor::new(lines.into_bytes()), 8)
                .await
                .unwrap();
        assert!(unusable.is_empty());
        let lookups = sessions.lookups();
        let portal_managed = Flow::new(keyring.clone(), with_portal, state.path())
            .unwrap()
            .custodian(unlimited.custodian(&custodian_key).unwrap());
        runs.push(
            measure(
                "Portal-managed, credentials for the clients backed up with Portal",
                "off",
                &sim,
                &portal_managed,
                StatusOptions::new().with_sessions(Arc::new(sessions)),
                lookups,
            )
            .await,
        );

        println!(
            "| run | client-side limit | clients | requests (counted) | requests (Portal saw) | listing pages | requests/client | projected requests, 10,000 clients | projected seconds at 200/min | took (s) | busiest second |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for run in &runs {
            println!("{}", run.row());
        }
        println!();
        let json: Vec<String> = runs.iter().map(Measured::json).collect();
        println!(
            "{{\"clients\":{CLIENTS},\"backedUp\":{BACKED_UP},\"runs\":[{}]}}",
            json.join(",")
        );
    });
}
