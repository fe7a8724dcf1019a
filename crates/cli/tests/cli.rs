//! The `portal-backup` binary end to end against `portal-sim` (started in this process, on
//! loopback): keygen, backup into Portal and into a file store, recover, verify (and its
//! failure on swapped ciphertexts, before `/v1/recover`), error output without secrets,
//! a bulk backup killed with SIGKILL at random moments then resumed, and the demo.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)] // test helpers: a broken fixture should panic

#[path = "support/output.rs"]
mod output;
use output::text;

use std::collections::BTreeMap;
use std::hash::{BuildHasher as _, RandomState};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portal_api::ApiKey;
use portal_api::SharePairStatus;
use portal_sim::{BackupMode, FaultRule, PortalSim, SimClient, SimConfig, WebhookConfig};
use serde_json::{Value, json};

mod support;

use support::{Shares, webhook};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const WEBHOOK_SECRET: &str = "cli-test-webhook-secret";

// ---- fixtures ---------------------------------------------------------------------------

/// Portal-managed, or self-managed with the test webhook (needed for a store of our own).
async fn sim(self_managed: bool) -> PortalSim {
    let mut config = SimConfig::new();
    if self_managed {
        config = config.with_mode(BackupMode::SelfManaged(WebhookConfig::new(
            webhook(Shares::default()).await,
            ApiKey::from(WEBHOOK_SECRET),
        )));
    }
    PortalSim::start(config).await.unwrap()
}

/// A client whose app generated its wallet and confirmed its signing shares; returns the
/// keys and the `/v1/generate` response as JSON text.
async fn app_client(sim: &PortalSim) -> (SimClient, String) {
    let (keys, generate) = sim.generated_client().await.unwrap();
    (keys, serde_json::to_string(&generate).unwrap())
}

/// A working directory with a key file and a state directory.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        let work = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = run(
            work.cmd(None).args(["keygen", "--out"]).arg(work.kek()),
            None,
        );
        assert!(out.status.success(), "{}", text(&out));
        work
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn kek(&self) -> PathBuf {
        self.path("kek")
    }
    fn store(&self) -> PathBuf {
        self.path("store")
    }
    /// The binary with a clean environment: the sim's URLs, our key and state directory.
    fn cmd(&self, sim: Option<&PortalSim>) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .env(
                "PORTAL_BACKUP_KMS",
                format!("local:{}", self.kek().display()),
            );
        if let Some(sim) = sim {
            cmd.env("PORTAL_API_URL", sim.api_base_url())
                .env("PORTAL_MPC_URL", sim.mpc_base_url());
        }
        cmd
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn refs(secrets: &[String]) -> Vec<&str> {
    secrets.iter().map(String::as_str).collect()
}

fn json_out(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The lines of `verify --store-wide` (JSON Lines): the shares checked, and the summary.
fn store_wide_lines(out: &Output) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let summary = lines.pop().unwrap();
    assert_eq!(summary["kind"], "summary", "{}", text(out));
    (lines, summary)
}

/// Every share string found in a JSON document (generate, recover or eject output).
fn shares_in(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k.to_lowercase().contains("share") && v.is_string() {
                    found.push(v.as_str().unwrap().to_owned());
                }
                shares_in(v, found);
            }
        }
        Value::Array(list) => list.iter().for_each(|v| shares_in(v, found)),
        _ => {}
    }
}

/// Neither the key nor any share appears in what the binary printed.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let all = text(out);
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!all.contains(secret), "a secret was printed:\n{all}");
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn completed_pairs(sim: &PortalSim, client_id: &str) -> Vec<(String, usize, usize)> {
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
            (
                w.curve.as_str().to_owned(),
                completed,
                w.backup_share_pairs.len(),
            )
        })
        .collect()
}

fn assert_clean(sim: &PortalSim) {
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
}

// ---- tests ------------------------------------------------------------------------------

#[test]
#[cfg(unix)]
fn keygen_writes_a_private_key_file_and_never_overwrites_one() {
    let work = Work::new();
    assert_eq!(mode(&work.kek()), 0o600);
    let before = std::fs::read(work.kek()).unwrap();
    let out = run(
        work.cmd(None).args(["keygen", "--out"]).arg(work.kek()),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: cannot create the key file"), "{err}");
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(work.kek()).unwrap(), before);
    let key = String::from_utf8(before).unwrap();
    assert_no_secret(&out, &[key.trim()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_managed_backup_verify_recover() {
    let sim = sim(false).await;
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let api_key = keys.client_api_key.expose_secret();

    let out = run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .args(["backup", "--generate-response", "-"]),
        Some(&generate),
    );
    let outcome = json_out(&out);
    assert_eq!(outcome["clientId"], keys.client_id.as_str());
    assert_eq!(outcome["status"], "confirmed");
    assert_eq!(outcome["store"], "portal");
    let pairs = outcome["backupSharePairIds"].as_object().unwrap();
    assert!(pairs.contains_key("SECP256K1") && pairs.contains_key("ED25519"));
    let mut secrets = vec![api_key.to_owned()];
    shares_in(&serde_json::from_str(&generate).unwrap(), &mut secrets);
    assert_no_secret(&out, &refs(&secrets));

    // The same backup again, from a file and with the key as a flag: already confirmed.
    let generate_file = work.path("generate.json");
    std::fs::write(&generate_file, &generate).unwrap();
    let again = json_out(&run(
        work.cmd(Some(&sim))
            .args(["--api-key", api_key, "backup", "--generate-response"])
            .arg(&generate_file),
        None,
    ));
    assert_eq!(again["alreadyConfirmed"], true);
    assert_eq!(again["backupRequests"], 1);

    // A fresh state directory (another machine): Portal and the store say it is done.
    let elsewhere = json_out(&run(
        work.cmd(Some(&sim))
            .env("PORTAL_BACKUP_STATE_DIR", work.path("state-elsewhere"))
            .args(["--api-key", api_key, "backup", "--generate-response"])
            .arg(&generate_file),
        None,
    ));
    assert_eq!(elsewhere["alreadyConfirmed"], true);
    assert_eq!(elsewhere["foundAtPortal"], true);
    assert_eq!(elsewhere["backupRequests"], 0);
    assert_eq!(
        elsewhere["backupSharePairIds"],
        outcome["backupSharePairIds"]
    );
    // --force makes a new one.
    let forced = json_out(&run(
        work.cmd(Some(&sim))
            .env("PORTAL_BACKUP_STATE_DIR", work.path("state-forced"))
            .args([
                "--api-key",
                api_key,
                "backup",
                "--force",
                "--generate-response",
            ])
            .arg(&generate_file),
        None,
    ));
    assert_eq!(forced["foundAtPortal"], false);
    assert_eq!(forced["backupRequests"], 1);
    assert_ne!(forced["backupSharePairIds"], outcome["backupSharePairIds"]);

    let out = run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .arg("verify"),
        None,
    );
    let report = json_out(&out);
    // Two completed backups of each curve now (the forced one too): each is checked.
    assert_eq!(report["checked"].as_array().unwrap().len(), 4);
    assert!(
        report["checked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["finding"] == "ok")
    );

    let recovered = work.path("recovered.json");
    let out = run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .args(["recover", "--out"])
            .arg(&recovered),
        None,
    );
    let summary = json_out(&out);
    assert_eq!(summary["status"], "recovered");
    #[cfg(unix)]
    assert_eq!(mode(&recovered), 0o600);
    let shares: Value = serde_json::from_slice(&std::fs::read(&recovered).unwrap()).unwrap();
    assert!(shares["SECP256K1"]["share"].is_string() && shares["ED25519"]["share"].is_string());
    shares_in(&shares, &mut secrets);
    assert_no_secret(&out, &refs(&secrets));
    assert_clean(&sim);

    // --out never replaces a file.
    let out = run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .args(["recover", "--out"])
            .arg(&recovered),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only written to a new file"));
}

/// `recover > file` under the usual umask makes a file every local user can read: refused
/// before Portal issues new signing shares; a private file is written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(unix)]
async fn recover_refuses_a_stdout_redirected_to_a_readable_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let sim = sim(false).await;
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let api_key = keys.client_api_key.expose_secret();
    json_out(&run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .args(["backup", "--generate-response", "-"]),
        Some(&generate),
    ));
    let signing_pairs = |sim: &PortalSim| -> usize {
        sim.client_details(&keys.client_id)
            .unwrap()
            .wallets
            .iter()
            .map(|w| w.signing_share_pairs.len())
            .sum()
    };
    let before = signing_pairs(&sim);

    let readable = work.path("readable.json");
    let file = std::fs::File::create(&readable).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let out = work
        .cmd(Some(&sim))
        .env("PORTAL_CLIENT_API_KEY", api_key)
        .arg("recover")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("others can read (mode 0644)"), "{err}");
    assert!(err.contains("--out"), "{err}");
    assert_eq!(std::fs::read(&readable).unwrap().len(), 0);
    assert_eq!(signing_pairs(&sim), before, "Portal was asked to recover");

    let private = work.path("private.json");
    let file = std::fs::File::create(&private).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    let out = work
        .cmd(Some(&sim))
        .env("PORTAL_CLIENT_API_KEY", api_key)
        .arg("recover")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shares: Value = serde_json::from_slice(&std::fs::read(&private).unwrap()).unwrap();
    assert!(shares["SECP256K1"]["share"].is_string() && shares["ED25519"]["share"].is_string());
    assert!(signing_pairs(&sim) > before);
    assert_clean(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_backup_and_swapped_ciphertexts_fail_verify_and_recover_before_portal() {
    let sim = sim(true).await;
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let api_key = keys.client_api_key.expose_secret();
    let store = format!("file:{}", work.store().display());
    let cmd = |args: &[&str]| {
        let mut cmd = work.cmd(Some(&sim));
        cmd.env("PORTAL_CLIENT_API_KEY", api_key)
            .env("PORTAL_BACKUP_STORE", &store)
            .args(args);
        cmd
    };

    let outcome = json_out(&run(
        &mut cmd(&["backup", "--generate-response", "-"]),
        Some(&generate),
    ));
    assert_eq!(outcome["store"], "fs");
    let pair = |curve: &str| {
        outcome["backupSharePairIds"][curve]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let file = |curve: &str| {
        work.store()
            .join(&keys.client_id)
            .join("client-backup")
            .join(curve)
            .join(pair(curve))
            .join("~")
    };
    assert!(file("SECP256K1").is_file() && file("ED25519").is_file());
    assert!(run(&mut cmd(&["verify"]), None).status.success());
    // The store-wide drill needs no API key: it opens every object as the share its name says.
    let store_wide = || {
        let mut cmd = work.cmd(Some(&sim));
        cmd.env_remove("PORTAL_CLIENT_API_KEY")
            .env("PORTAL_BACKUP_STORE", &store)
            .args(["verify", "--store-wide"]);
        cmd
    };
    let out = run(&mut store_wide(), None);
    assert!(out.status.success(), "{}", text(&out));
    let (shares, summary) = store_wide_lines(&out);
    assert_eq!(shares.len(), 2, "{}", text(&out));
    assert!(
        shares
            .iter()
            .all(|s| s["clientId"] == keys.client_id.as_str())
    );
    assert_eq!(
        (summary["checked"].as_u64(), summary["ok"].as_u64()),
        (Some(2), Some(2))
    );

    // Swap the two ciphertexts of the client.
    let (a, b) = (
        std::fs::read(file("SECP256K1")).unwrap(),
        std::fs::read(file("ED25519")).unwrap(),
    );
    std::fs::write(file("SECP256K1"), &b).unwrap();
    std::fs::write(file("ED25519"), &a).unwrap();

    let out = run(&mut cmd(&["verify"]), None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("verification failed: 2 of 2 shares"), "{err}");
    assert!(err.contains("does not open as that share"), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["checked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["finding"]["wrong-identity"].is_object())
    );
    let out = run(&mut store_wide(), None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 2 stored shares do not open"), "{err}");
    assert!(
        err.contains(&pair("SECP256K1")) && err.contains(&pair("ED25519")),
        "{err}"
    );

    // Were /v1/recover reached, this fault would be counted by the simulator.
    sim.add_fault(
        "POST /v1/recover: error=1.0, status=500"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let recovered = work.path("recovered.json");
    let out = run(
        &mut cmd(&["recover", "--out", recovered.to_str().unwrap()]),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: recover failed"), "{err}");
    assert!(err.contains("does not open as that share"), "{err}");
    assert!(!err.contains("/v1/recover"), "{err}");
    assert_eq!(sim.report().faults_injected, 0, "/v1/recover was called");
    assert!(!recovered.exists(), "no file is left behind");
    assert_clean(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_the_cause_chain_and_never_a_secret() {
    let sim = sim(false).await;
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let wrong_key = "pk_test_this-key-belongs-to-no-one-0123456789";

    // Portal refuses the key: the chain, Portal's status and id; exit 1.
    let out = run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", wrong_key)
            .args(["backup", "--generate-response", "-"]),
        Some(&generate),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: backup failed\n"), "{err}");
    assert!(
        err.contains("caused by: Portal call `GET /api/v3/clients/me` failed"),
        "{err}"
    );
    assert!(
        err.contains("caused by: portal rejected the credentials (http 401"),
        "{err}"
    );
    assert!(err.contains("Portal refused: http 401, error id"), "{err}");
    assert_no_secret(&out, &[wrong_key]);

    // Portal is down: retryable, exit 3, and the advice to run it again.
    sim.add_fault(
        "POST /v1/backup: error=1.0, status=503"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let api_key = keys.client_api_key.expose_secret();
    let out = run(
        work.cmd(Some(&sim))
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .args(["backup", "--generate-response", "-"]),
        Some(&generate),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("caused by: Portal call `POST /v1/backup` failed"),
        "{err}"
    );
    assert!(err.contains("Portal refused: http 503"), "{err}");
    assert!(err.contains("run the same command again"), "{err}");
    let mut secrets = vec![api_key.to_owned()];
    shares_in(&serde_json::from_str(&generate).unwrap(), &mut secrets);
    assert_no_secret(
        &out,
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    sim.clear_faults();

    // Plain http only to loopback: portal-api's refusal, surfaced.
    let out = run(
        work.cmd(None).env("PORTAL_CLIENT_API_KEY", api_key).args([
            "--portal-api-url",
            "http://portal.example.com",
            "verify",
        ]),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain http is only allowed to loopback hosts"),
        "{err}"
    );
    assert_no_secret(&out, &[api_key]);

    // No KEK: a hint; a KMS whose feature is not compiled in: the feature is named.
    let out = run(
        work.cmd(Some(&sim))
            .env_remove("PORTAL_BACKUP_KMS")
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .arg("verify"),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("portal-backup keygen"));
    #[cfg(not(feature = "gcp-kms"))]
    {
        let out = run(
            work.cmd(Some(&sim))
                .env("PORTAL_CLIENT_API_KEY", api_key)
                .args([
                    "--kms",
                    "gcp-kms:projects/p/locations/l/keyRings/r/cryptoKeys/k",
                    "verify",
                ]),
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--features gcp-kms"));
    }
    // Help never shows the key taken from the environment.
    let out = run(
        work.cmd(None)
            .env("PORTAL_CLIENT_API_KEY", api_key)
            .arg("--help"),
        None,
    );
    assert!(out.status.success());
    assert_no_secret(&out, &[api_key]);
    assert_eq!(sim.report().violations.len(), 0);
}

/// The bulk backup killed with SIGKILL at random moments, then run to completion: every
/// client ends with exactly one completed backup pair per curve, no pair is marked stored
/// without its ciphertext, and the simulator's report is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_backup_survives_sigkill_at_random_moments() {
    const CLIENTS: usize = 40;
    const KILLS: usize = 24;
    let sim = sim(true).await;
    let work = Work::new();
    let mut clients = Vec::new();
    let mut input = String::new();
    for _ in 0..CLIENTS {
        let (keys, generate) = app_client(&sim).await;
        let generate: Value = serde_json::from_str(&generate).unwrap();
        input.push_str(
            &json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
                .to_string(),
        );
        input.push('\n');
        clients.push(keys);
    }
    let input_file = work.path("clients.jsonl");
    std::fs::write(&input_file, &input).unwrap();
    let results = work.path("results.jsonl");
    let bulk = || {
        let mut cmd = work.cmd(Some(&sim));
        cmd.env(
            "PORTAL_BACKUP_STORE",
            format!("file:{}", work.store().display()),
        )
        .args([
            "bulk",
            "backup",
            "--concurrency",
            "4",
            "--rate-limit",
            "off",
            "--input",
        ])
        .arg(&input_file)
        .arg("--output")
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    };

    // 2 ms per Portal request keeps even a run with nothing left to do (it still asks Portal
    // who the client is, line by line) well above process start-up. Kill moments are random
    // below a cap that shrinks whenever a run finished first, so the kills keep landing
    // inside runs, from the first backups to the last resumed ones.
    sim.add_fault("*: latency-ms=2".parse().unwrap()).unwrap();
    let mut cap_ms: u64 = 300;
    let random = RandomState::new();
    let (mut kills, mut finished_first, mut attempts) = (0usize, 0usize, 0u64);
    let started = Instant::now();
    while kills < KILLS && attempts < 150 {
        attempts += 1;
        let wait_ms = 5 + random.hash_one(attempts) % cap_ms;
        let mut child = bulk().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_some() {
            finished_first += 1;
            cap_ms = (wait_ms * 4 / 5).max(10);
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    sim.clear_faults();
    let out = run(bulk().stdout(Stdio::piped()).stderr(Stdio::piped()), None);
    eprintln!(
        "crash test: {kills} SIGKILLs in {attempts} runs ({finished_first} finished before their kill) in {:?}; final run: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(kills >= 20, "only {kills} runs were killed mid-way");
    let summary = json_out(&out);
    assert_eq!(summary["confirmed"], CLIENTS);
    assert_eq!(summary["failed"], 0);

    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), CLIENTS);
    let by_client: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["clientId"].as_str().unwrap(), l))
        .collect();
    let mut resumed: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        let at = match (&line["alreadyConfirmed"], &line["resumedAfter"]) {
            (Value::Bool(true), _) => "confirmed before the final run".to_owned(),
            (_, Value::String(step)) => format!("resumed after {step}"),
            _ => "untouched until the final run".to_owned(),
        };
        *resumed.entry(at).or_default() += 1;
    }
    eprintln!("crash test: where the final run found each client: {resumed:?}");
    let mut orphans = 0;
    for keys in &clients {
        let line = by_client[keys.client_id.as_str()];
        assert_eq!(line["status"], "confirmed");
        for (curve, completed, all) in completed_pairs(&sim, &keys.client_id) {
            assert_eq!(
                completed, 1,
                "client {} {curve}: {completed} completed backup pairs",
                keys.client_id
            );
            orphans += all - completed;
            // The completed pair is the one the run reports, and its ciphertext is stored.
            let pair = line["backupSharePairIds"][&curve].as_str().unwrap();
            let details = sim.client_details(&keys.client_id).unwrap();
            let wallet = details
                .wallets
                .iter()
                .find(|w| w.curve.as_str() == curve)
                .unwrap();
            assert_eq!(wallet.latest_completed_backup_pair().unwrap().id, pair);
            let stored = work
                .store()
                .join(&keys.client_id)
                .join("client-backup")
                .join(&curve)
                .join(pair)
                .join("~");
            assert!(stored.is_file(), "no ciphertext for a pair marked stored");
        }
    }
    eprintln!(
        "crash test: {orphans} unconfirmed backup pairs left by answers lost in a kill (never marked stored)"
    );
    // Every stored ciphertext opens as its share, client by client.
    for keys in clients.iter().step_by(5) {
        let out = run(
            work.cmd(Some(&sim))
                .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
                .env(
                    "PORTAL_BACKUP_STORE",
                    format!("file:{}", work.store().display()),
                )
                .arg("verify"),
            None,
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_clean(&sim);
}

#[cfg(feature = "demo")] // the simulator is linked only with it; CI runs every feature
#[test]
fn the_demo_runs_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        Command::new(BIN)
            .env_clear()
            .env("HOME", dir.path())
            .arg("demo"),
        None,
    );
    let summary = json_out(&out);
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["simulatorReports"]["portalManaged"], "clean");
    assert_eq!(summary["simulatorReports"]["selfManaged"], "clean");
    assert_eq!(summary["portalManaged"]["resumedAfter"], "verified");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invariant reports"), "{err}");
}

/// `--store postgres://…` end to end: backup, verify, the store-wide drill (clients listed by
/// the database), rotate to a new key, recover with it; the rows are envelopes, and a wrong
/// password fails without showing it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_backup_verify_store_wide_rotate_recover() {
    let Some(pg) = test_services::postgres::shared() else {
        return; // skipped loudly by the fixture (a failure under cargo xtask)
    };
    let (database, url) = pg.create_database("cli");
    let sim = sim(true).await;
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let api_key = keys.client_api_key.expose_secret();
    let cmd = |args: &[&str]| {
        let mut cmd = work.cmd(Some(&sim));
        cmd.env("PORTAL_CLIENT_API_KEY", api_key)
            .env("PORTAL_BACKUP_STORE", &url)
            .args(args);
        cmd
    };
    let sql = |query: &str| {
        let out = pg
            .client("psql")
            .env("PGDATABASE", &database)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };

    let out = run(
        &mut cmd(&["backup", "--generate-response", "-"]),
        Some(&generate),
    );
    let outcome = json_out(&out);
    assert_eq!(outcome["store"], "postgres");
    assert_eq!(outcome["status"], "confirmed");
    // Two rows, each an envelope in its text form (`pbe1.…`), none holding a share.
    assert_eq!(
        sql(
            "SELECT count(*) FROM portal_backup_objects WHERE substring(body FROM 1 FOR 5) = 'pbe1.'::bytea"
        ),
        "2"
    );
    let mut secrets = vec![api_key.to_owned()];
    shares_in(&serde_json::from_str(&generate).unwrap(), &mut secrets);
    let bodies = sql("SELECT encode(body, 'escape') FROM portal_backup_objects");
    for secret in &secrets {
        assert!(
            !bodies.contains(secret.as_str()),
            "a secret is stored in plaintext"
        );
    }
    assert!(
        !text(&out).contains(pg_password(&url)),
        "the URL password was printed"
    );

    assert!(run(&mut cmd(&["verify"]), None).status.success());
    let out = run(
        cmd(&["verify", "--store-wide"]).env_remove("PORTAL_CLIENT_API_KEY"),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (shares, summary) = store_wide_lines(&out);
    assert_eq!(summary["clients"], 1);
    assert_eq!(shares.len(), 2, "{}", text(&out));
    assert!(
        shares
            .iter()
            .all(|s| s["clientId"] == keys.client_id.as_str())
    );

    // Rotate every client the database lists to a new key; only the new key opens afterwards.
    let new_kek = work.path("kek2");
    let out = run(work.cmd(None).args(["keygen", "--out"]).arg(&new_kek), None);
    assert!(out.status.success(), "{}", text(&out));
    let new_kms = format!("local:{}", new_kek.display());
    let out = run(&mut cmd(&["rotate", "--to-kms", &new_kms]), None);
    assert!(out.status.success(), "{}", text(&out));
    let with_new_key = |args: &[&str]| {
        let mut cmd = cmd(args);
        cmd.env("PORTAL_BACKUP_KMS", &new_kms);
        cmd
    };
    assert!(run(&mut with_new_key(&["verify"]), None).status.success());
    let recovered = work.path("recovered.json");
    let out = run(
        &mut with_new_key(&["recover", "--out", recovered.to_str().unwrap()]),
        None,
    );
    assert_eq!(json_out(&out)["status"], "recovered", "{}", text(&out));
    assert_clean(&sim);

    // A wrong password: a clear failure that never shows the password tried.
    let wrong = url.replacen(pg_password(&url), "not-the-password-42", 1);
    let out = run(
        cmd(&["verify", "--store-wide"]).env("PORTAL_BACKUP_STORE", &wrong),
        None,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cannot open the store"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("not-the-password-42"),
        "{}",
        text(&out)
    );
}

/// The password of a `postgres://user:password@host/db` URL.
#[cfg(feature = "postgres")]
fn pg_password(url: &str) -> &str {
    let userinfo = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or("", |(userinfo, _)| userinfo);
    userinfo
        .split_once(':')
        .map_or("", |(_, password)| password)
}

/// The shipped build (no `demo` feature) links no simulator: `demo` is hidden from the help
/// and, named anyway, is a usage error that says how to get it.
#[cfg(not(feature = "demo"))]
#[test]
fn without_the_demo_feature_demo_is_hidden_and_a_usage_error() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(!String::from_utf8_lossy(&help.stdout).contains("demo"));
    let out = Command::new(BIN).arg("demo").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--features demo"), "{}", text(&out));
}
