//! The crash soak, shared by the `crash` test (a hundred-odd clients) and the `crash_soak`
//! example (any number): a bulk backup through [`Flow::bulk_backup`] in a child process,
//! killed with SIGKILL at random moments again and again, then run once more to completion.
//! `portal-sim` (and, for a store of our own, the Self-Managed Backups webhook) runs in the
//! parent, so it lives through every kill and keeps its invariant report. It asserts, and
//! returns figures for a report:
//!
//! * the final run confirms every client (nothing lost), each with the backup pair it reports
//!   as the one completed pair of each wallet (nothing stored twice);
//! * every completed pair's ciphertext is durable in the store and opens as its share under
//!   its identity (the restore drill, run again from the parent with the same key file);
//! * the store holds no ciphertext for a pair that was never completed (no orphan stored);
//! * the simulator's invariant report is clean (no pair marked stored without its ciphertext,
//!   no request Portal would refuse).
//!
//! Pairs that Portal created but that were never marked stored (a kill between `/v1/backup`
//! and the journal recording its sealed answer) are counted, not forbidden: the answer was
//! lost with the process, and they stay unconfirmed.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::print_stdout,
    clippy::print_stderr
)] // test helpers shared by a test and an example; a broken fixture should panic

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher as _, RandomState};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::bulk::BulkOptions;
use backup_flow::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::RetryConfig;
use backup_flow::portal_api::SharePairStatus;
use backup_flow::portal_api::{ApiKey, Portal};
use backup_flow::storage::BackupStore;
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::memory::MemoryStore;
use backup_flow::{Flow, PortalManaged, StoreFactory};
use custodian_webhook::{WebhookSecrets, WebhookServer};
use portal_sim::{BackupMode, PortalSim, SimClient, SimConfig, WebhookConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Set (to the child's JSON [`ChildConfig`]) in the environment of a child run.
pub const CHILD_ENV: &str = "BACKUP_FLOW_CRASH_CHILD";

const WEBHOOK_SECRET: &str = "crash-soak-webhook-secret";

/// Where the ciphertexts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreKind {
    /// A file store of our own (Self-Managed Backups, with the webhook in the parent).
    File,
    /// With Portal (`clientCipherText`).
    Portal,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(Self::File),
            "portal" => Ok(Self::Portal),
            _ => Err(format!("store {s:?}: file or portal")),
        }
    }
}

/// What one child run is told.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildConfig {
    pub api_url: String,
    pub mpc_url: String,
    pub kek_file: PathBuf,
    pub state_dir: PathBuf,
    /// The file store's root, or `None` for Portal.
    pub store_dir: Option<PathBuf>,
    pub input: PathBuf,
    pub output: PathBuf,
    pub concurrency: usize,
}

/// The soak's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub clients: usize,
    pub kills: usize,
    pub concurrency: usize,
    pub store: StoreKind,
    /// Added to every Portal request, so that runs last long enough to be killed.
    pub latency_ms: u64,
}

#[derive(Debug)]
pub struct Outcome {
    pub params: Params,
    pub kills: usize,
    pub runs: u64,
    pub finished_before_kill: usize,
    /// Kills that left some client not yet confirmed by any run.
    pub kills_with_work_left: usize,
    /// Clients confirmed by some run, after each kill.
    pub progress: Vec<usize>,
    pub killed_phase: Duration,
    pub final_run: Duration,
    pub total: Duration,
    /// Where the final run found each client.
    pub resumed: BTreeMap<String, usize>,
    /// How many `/v1/backup` calls over all runs, summed over clients.
    pub backup_requests: u64,
    /// Pairs Portal created that were never marked stored (answers lost in a kill).
    pub unconfirmed_pairs: usize,
    /// Completed pairs beyond one per wallet (always 0, or the soak panics).
    pub extra_completed_pairs: usize,
    /// Stored ciphertexts of pairs that were never completed (always 0, or it panics).
    pub orphan_ciphertexts: usize,
    /// Completed pairs whose ciphertext opened in the parent's restore drill.
    pub opened: usize,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        write!(
            f,
            "crash soak: {} clients, concurrency {}, store {:?}, {} ms per Portal request\n  \
             {} SIGKILLs in {} child runs ({} finished before their kill) in {:.1?}; {} of the \
             kills left clients still to back up; clients confirmed after each kill: {:?}\n  \
             final run to completion in {:.1?}; total {:.1?}\n  \
             final run found: {:?}\n  \
             every client confirmed; {} /v1/backup calls in all; {} completed pairs opened by \
             the parent's restore drill\n  \
             extra completed pairs (stored twice): {}; ciphertexts of never-completed pairs \
             (orphans stored): {}; invariant report clean\n  \
             {} pairs created by Portal but never marked stored (answers lost in a kill)",
            p.clients,
            p.concurrency,
            p.store,
            p.latency_ms,
            self.kills,
            self.runs,
            self.finished_before_kill,
            self.killed_phase,
            self.kills_with_work_left,
            self.progress,
            self.final_run,
            self.total,
            self.resumed,
            self.backup_requests,
            self.opened,
            self.extra_completed_pairs,
            self.orphan_ciphertexts,
            self.unconfirmed_pairs,
        )
    }
}

fn portal_base(api_url: &str, mpc_url: &str) -> Portal {
    Portal::builder()
        .with_api_base_url(api_url)
        .with_mpc_base_url(mpc_url)
        .with_retry(
            RetryConfig::default()
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(50)),
        )
        .without_rate_limits()
        .build()
        .unwrap()
}

fn target(store_dir: Option<&Path>) -> Arc<dyn StoreFactory> {
    match store_dir {
        Some(dir) => Arc::new(Arc::new(FsStore::new(dir).unwrap()) as Arc<dyn BackupStore>),
        None => Arc::new(PortalManaged),
    }
}

fn keyring(kek_file: &Path) -> Keyring {
    Keyring::new()
        .with(Arc::new(LocalKek::from_file(kek_file).unwrap()) as Arc<dyn KeyEncryptionKey>)
}

/// Adds the clients that a (possibly killed) run's result file reports confirmed.
fn note_confirmed(output: &Path, confirmed: &mut std::collections::BTreeSet<String>) {
    let Ok(text) = std::fs::read_to_string(output) else {
        return;
    };
    // A killed run may leave its last line half written.
    for line in text.lines() {
        if let Ok(result) = serde_json::from_str::<Value>(line)
            && result["status"] == "confirmed"
            && let Some(id) = result["clientId"].as_str()
        {
            confirmed.insert(id.to_owned());
        }
    }
}

/// A child run: the bulk backup of `config`, results to its output file (truncated), the
/// report as JSON on stdout. Exits 0 when every line is confirmed, 1 otherwise.
pub fn child_main(config: &str) -> ! {
    let config: ChildConfig = serde_json::from_str(config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        let flow = Flow::new(
            keyring(&config.kek_file),
            target(config.store_dir.as_deref()),
            &config.state_dir,
        )
        .unwrap();
        let input = BufReader::new(std::fs::File::open(&config.input).unwrap());
        let output = std::fs::File::create(&config.output).unwrap();
        flow.bulk_backup(
            &portal_base(&config.api_url, &config.mpc_url),
            input,
            output,
            BulkOptions::new().with_concurrency(config.concurrency),
        )
        .await
        .unwrap()
    });
    println!("{}", serde_json::to_string(&report).unwrap());
    std::process::exit(i32::from(!report.is_success()));
}

/// The real Self-Managed Backups webhook, custodian shares sealed in memory, in this process.
async fn webhook() -> String {
    let server = WebhookServer::builder()
        .with_keyring(
            Keyring::new()
                .with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>),
        )
        .with_store(Arc::new(MemoryStore::new()))
        .with_secrets(WebhookSecrets::parse(WEBHOOK_SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
    url
}

/// Runs the soak. `child` gives a command that, run with [`CHILD_ENV`] set, calls
/// [`child_main`] (the test binary filtered to its child entry, or the example itself).
/// Panics on any broken promise.
pub async fn crash_soak(params: Params, child: impl Fn() -> Command + Send + Sync) -> Outcome {
    let started = Instant::now();
    let mut config = SimConfig::new().with_seed(13);
    if params.store == StoreKind::File {
        config = config.with_mode(BackupMode::SelfManaged(WebhookConfig::new(
            webhook().await,
            ApiKey::from(WEBHOOK_SECRET),
        )));
    }
    let sim = PortalSim::start(config).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let kek_file = work.path().join("kek");
    LocalKek::generate_file(&kek_file).unwrap();
    let store_dir = (params.store == StoreKind::File).then(|| work.path().join("store"));

    let mut clients: Vec<SimClient> = Vec::with_capacity(params.clients);
    let mut input = String::new();
    for _ in 0..params.clients {
        let (keys, generate) = sim.generated_client().await.unwrap();
        input.push_str(
            &json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
                .to_string(),
        );
        input.push('\n');
        clients.push(keys);
    }
    let input_file = work.path().join("clients.jsonl");
    std::fs::write(&input_file, &input).unwrap();
    drop(input);
    let output = work.path().join("results.jsonl");
    let config = serde_json::to_string(&ChildConfig {
        api_url: sim.api_base_url().to_owned(),
        mpc_url: sim.mpc_base_url().to_owned(),
        kek_file: kek_file.clone(),
        state_dir: work.path().join("state"),
        store_dir: store_dir.clone(),
        input: input_file,
        output: output.clone(),
        concurrency: params.concurrency,
    })
    .unwrap();
    let spawn = |stdout: Stdio| {
        child()
            .env(CHILD_ENV, &config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    sim.reset_report();
    if params.latency_ms > 0 {
        sim.add_fault(
            format!("*: latency-ms={}", params.latency_ms)
                .parse()
                .unwrap(),
        )
        .unwrap();
    }

    // Each run is killed at a random moment of new work: once it has reported a random
    // number of clients (below its share of what is left: clients not yet confirmed by any
    // run, over the kills still to come) confirmed that no run had confirmed before, plus a
    // random 0-20 ms, so that the kills spread from the first backups to the last instead of
    // landing on runs that only find everything done. Should every client be confirmed
    // early anyway, the remaining runs are killed at a random moment in their first 300 ms.
    let random = RandomState::new();
    let (mut kills, mut finished_before_kill, mut runs) = (0usize, 0usize, 0u64);
    // Clients any run so far reported confirmed, and their count after each kill.
    let mut confirmed = std::collections::BTreeSet::new();
    let (mut kills_with_work_left, mut progress) = (0usize, Vec::new());
    let killing = Instant::now();
    while kills < params.kills && runs < 20 * params.kills as u64 {
        runs += 1;
        let left = params.clients - confirmed.len();
        let share = (left / (params.kills - kills)).max(1) as u64;
        let new_work = random.hash_one((runs, 0)) % share;
        let jitter =
            Duration::from_millis(random.hash_one((runs, 1)) % if left > 0 { 21 } else { 301 });
        let mut child = spawn(Stdio::null());
        let mut exited = false;
        let mut trigger: Option<Instant> = (left == 0).then(|| Instant::now() + jitter);
        loop {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            if let Some(at) = trigger {
                if Instant::now() >= at {
                    break;
                }
            } else {
                let mut seen = confirmed.clone();
                note_confirmed(&output, &mut seen);
                if (seen.len() - confirmed.len()) as u64 >= new_work {
                    trigger = Some(Instant::now() + jitter);
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if exited {
            note_confirmed(&output, &mut confirmed);
            finished_before_kill += 1;
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        note_confirmed(&output, &mut confirmed);
        if confirmed.len() < params.clients {
            kills_with_work_left += 1;
        }
        progress.push(confirmed.len());
    }
    let killed_phase = killing.elapsed();
    assert_eq!(kills, params.kills, "runs kept finishing before their kill");
    assert!(
        kills_with_work_left * 2 >= kills,
        "most kills came after every client was confirmed: {progress:?}"
    );
    sim.clear_faults();

    // The final run, to completion.
    let final_started = Instant::now();
    let mut child = spawn(Stdio::piped());
    let stdout = {
        let mut pipe = child.stdout.take().unwrap();
        tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
            text
        })
        .await
        .unwrap()
    };
    let status = child.wait().unwrap();
    let final_run = final_started.elapsed();
    assert!(status.success(), "final run: {status}: {stdout}");
    // The report is the one JSON line (a test harness child prints its own lines too).
    let summary: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from the final run: {stdout}"));
    assert_eq!(summary["confirmed"], params.clients, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    let lines: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), params.clients);
    let by_client: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["clientId"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by_client.len(), params.clients, "a client reported twice");
    let mut resumed: BTreeMap<String, usize> = BTreeMap::new();
    let mut backup_requests = 0;
    for line in &lines {
        let at = match (&line["alreadyConfirmed"], &line["resumedAfter"]) {
            (Value::Bool(true), _) => "confirmed before the final run".to_owned(),
            (_, Value::String(step)) => format!("resumed after {step}"),
            _ => "untouched until the final run".to_owned(),
        };
        *resumed.entry(at).or_default() += 1;
        backup_requests += line["backupRequests"].as_u64().unwrap();
    }

    // Every client: one completed pair per wallet, the one reported; its ciphertext stored;
    // nothing stored for any other pair; and it opens (the parent's own restore drill).
    let store: Option<Arc<dyn BackupStore>> = store_dir
        .as_deref()
        .map(|dir| Arc::new(FsStore::new(dir).unwrap()) as Arc<dyn BackupStore>);
    let checker_state = tempfile::tempdir().unwrap();
    let checker = Flow::new(
        keyring(&kek_file),
        match &store {
            Some(store) => Arc::new(Arc::clone(store)) as Arc<dyn StoreFactory>,
            None => Arc::new(PortalManaged),
        },
        checker_state.path(),
    )
    .unwrap();
    let (mut unconfirmed_pairs, mut extra_completed_pairs, mut orphan_ciphertexts) = (0, 0, 0);
    let mut opened = 0;
    for keys in &clients {
        let id = keys.client_id.as_str();
        let line = by_client[id];
        assert_eq!(line["status"], "confirmed", "{line}");
        let details = sim.client_details(id).unwrap();
        assert_eq!(details.wallets.len(), 2, "client {id}");
        let mut completed_ids = Vec::new();
        for wallet in &details.wallets {
            let curve = wallet.curve.as_str();
            let completed: Vec<&str> = wallet
                .backup_share_pairs
                .iter()
                .filter(|p| p.status == SharePairStatus::Completed)
                .map(|p| p.id.as_str())
                .collect();
            extra_completed_pairs += completed.len().saturating_sub(1);
            assert_eq!(completed.len(), 1, "client {id} {curve}: {completed:?}");
            assert_eq!(
                line["backupSharePairIds"][curve], completed[0],
                "client {id} {curve}: the completed pair is not the one reported"
            );
            unconfirmed_pairs += wallet.backup_share_pairs.len() - 1;
            if store.is_none() {
                for pair in &wallet.backup_share_pairs {
                    let stored = sim.stored_cipher_text(&pair.id).is_some();
                    if pair.status == SharePairStatus::Completed {
                        assert!(stored, "client {id}: pair {} without ciphertext", pair.id);
                    } else if stored {
                        orphan_ciphertexts += 1;
                    }
                }
            }
            completed_ids.push(completed[0].to_owned());
        }
        if let Some(store) = &store {
            let keys_stored = store.list(id).await.unwrap();
            for key in &keys_stored {
                let pair = key.share_pair_id().unwrap_or_default();
                if !completed_ids.iter().any(|c| c == pair) {
                    orphan_ciphertexts += 1;
                }
            }
            assert_eq!(keys_stored.len(), 2, "client {id}: {keys_stored:?}");
        }
        let report = checker
            .session(
                sim.portal_builder()
                    .build()
                    .unwrap()
                    .client_with_api_key(&ApiKey::from(keys.client_api_key.expose_secret()))
                    .unwrap(),
            )
            .verify()
            .await
            .unwrap();
        assert!(report.is_ok(), "client {id}: {report:?}");
        opened += report.checked.len();
    }
    assert_eq!(
        orphan_ciphertexts, 0,
        "ciphertexts stored for pairs never completed"
    );
    assert_eq!(opened, 2 * params.clients);
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
    Outcome {
        params,
        kills,
        runs,
        finished_before_kill,
        kills_with_work_left,
        progress,
        killed_phase,
        final_run,
        total: started.elapsed(),
        resumed,
        backup_requests,
        unconfirmed_pairs,
        extra_completed_pairs,
        orphan_ciphertexts,
        opened,
    }
}
