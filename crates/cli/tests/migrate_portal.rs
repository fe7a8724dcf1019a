//! `migrate` to and from Portal-Managed Backups against portal-sim with many clients, end to
//! end: the clients backed up with `bulk backup`, whose input file is then migrate's
//! `--credentials` as is; Portal → files and files → Portal, each killed midway and rerun to
//! the end with nothing lost or doubled; a different ciphertext already at Portal reported as
//! a conflict and never overwritten; unusable credential lines reported while the run goes on.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)] // tests: a broken fixture should panic

#[path = "support/output.rs"]
mod output;
use output::text;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use portal_api::{ApiKey, ClientApi, SharePairStatus};
use portal_sim::{PortalSim, SimConfig};
use serde_json::{Value, json};
use storage::fs::FsStore;
use storage::{BackupKey, BackupStore as _};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const CLIENTS: usize = 24;

/// `CLIENTS` Portal-managed clients in one credentials file (the `bulk backup` input), then
/// a line that is not JSON and one whose key Portal refuses.
struct Fleet {
    sim: PortalSim,
    dir: tempfile::TempDir,
    /// (client id, Client API Key) by input line.
    clients: Vec<(String, String)>,
}

impl Fleet {
    async fn new() -> Self {
        let sim = PortalSim::start(SimConfig::new()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut input, mut clients) = (String::new(), Vec::new());
        for _ in 0..CLIENTS {
            let (keys, generate) = sim.generated_client().await.unwrap();
            let key = keys.client_api_key.expose_secret().to_owned();
            input.push_str(&json!({"clientApiKey": key, "generateResponse": generate}).to_string());
            input.push('\n');
            clients.push((keys.client_id.clone(), key));
        }
        input.push_str("not a credentials line\n{\"clientApiKey\": \"not-a-client-key\"}\n");
        let fleet = Self { sim, dir, clients };
        std::fs::write(fleet.credentials(), input).unwrap();
        let out = run(fleet.cmd().args(["keygen", "--out"]).arg(fleet.path("kek")));
        assert!(out.status.success(), "{}", text(&out));
        fleet
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn credentials(&self) -> PathBuf {
        self.path("clients.jsonl")
    }

    fn file(&self, name: &str) -> String {
        format!("file:{}", self.path(name).display())
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .env(
                "PORTAL_BACKUP_KMS",
                format!("local:{}", self.path("kek").display()),
            )
            .env("PORTAL_API_URL", self.sim.api_base_url())
            .env("PORTAL_MPC_URL", self.sim.mpc_base_url())
            .stdin(Stdio::null());
        cmd
    }

    /// Backs every client up into `store` (`portal` or a store of our own).
    fn back_up(&self, store: &str) {
        let out = run(self
            .cmd()
            .args(["--store", store, "bulk", "backup", "--rate-limit", "off"])
            .arg("--input")
            .arg(self.credentials()));
        // The two unusable lines fail; every client is backed up.
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let confirmed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"status\":\"confirmed\""))
            .count();
        assert_eq!(confirmed, CLIENTS, "{}", text(&out));
    }

    fn migrate(&self, from: &str, to: &str, more: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["migrate", "--from", from, "--to", to, "--rate-limit", "off"])
            .arg("--credentials")
            .arg(self.credentials())
            .args(more);
        cmd
    }

    /// Every client's backup share pairs: (client, key) → the pair's status at Portal.
    fn pairs(&self) -> BTreeMap<BackupKey, SharePairStatus> {
        let mut pairs = BTreeMap::new();
        for (id, _) in &self.clients {
            for wallet in self.sim.client_details(id).unwrap().wallets {
                for pair in wallet.backup_share_pairs {
                    let key =
                        BackupKey::client_backup(id, &pair.id, wallet.curve.as_str()).unwrap();
                    pairs.insert(key, pair.status);
                }
            }
        }
        pairs
    }

    /// How many client ciphertexts Portal holds.
    fn at_portal(&self) -> usize {
        self.pairs()
            .keys()
            .filter(|k| {
                self.sim
                    .stored_cipher_text(k.share_pair_id().unwrap())
                    .is_some()
            })
            .count()
    }

    /// Runs `cmd` until `moved` objects are reported moved, then kills it.
    fn kill_after(cmd: &mut Command, moved: usize) {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut seen = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if line["status"] == "moved" {
                seen += 1;
            }
            if seen == moved {
                break;
            }
        }
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success(), "killed before the end");
    }
}

fn client(sim: &PortalSim, key: &str) -> ClientApi {
    sim.portal_builder()
        .build()
        .unwrap()
        .client_with_api_key(&ApiKey::from(key))
        .unwrap()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// The object lines by key, the error lines, and the summary (the last line).
fn lines(out: &Output) -> (BTreeMap<String, Value>, Vec<Value>, Value) {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let mut all: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{}", text(out)))
        })
        .collect();
    let summary = all.pop().unwrap();
    assert_eq!(summary["kind"], "summary", "{}", text(out));
    let (errors, objects): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|line| line["kind"] == "error");
    let objects = objects
        .into_iter()
        .map(|line| {
            assert_eq!(line["kind"], "object", "{line}");
            (line["key"].as_str().unwrap().to_owned(), line)
        })
        .collect();
    (objects, errors, summary)
}

/// The two unusable lines are reported, with their line numbers, and only them.
fn assert_bad_lines_reported(errors: &[Value], out: &Output) {
    let mut lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    lines.sort_unstable();
    let n = CLIENTS as u64;
    assert_eq!(lines, [n + 1, n + 2], "{}", text(out));
    assert!(errors.iter().all(|e| e["clientId"].is_null()), "{errors:?}");
    let all = text(out);
    assert!(
        !all.contains("not-a-client-key"),
        "a credential is never echoed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_portal_killed_midway_and_rerun_moves_every_ciphertext_once() {
    let fleet = Fleet::new().await;
    fleet.back_up("portal");
    let pairs = fleet.pairs();
    assert_eq!(pairs.len(), CLIENTS * 2);
    assert_eq!(fleet.at_portal(), CLIENTS * 2);

    // Slow enough to be killed midway: one KMS call a client, 15 a second, one at a time.
    Fleet::kill_after(
        &mut fleet.migrate(
            "portal",
            &fleet.file("target"),
            &["--concurrency", "1", "--kms-rate-limit", "15"],
        ),
        6,
    );
    let target = FsStore::new(fleet.path("target")).unwrap();
    let mut partial = 0;
    for key in pairs.keys() {
        if target.get(key).await.is_ok() {
            partial += 1;
        }
    }
    assert!(
        (6..CLIENTS * 2).contains(&partial),
        "{partial} moved before the kill"
    );

    let out = run(&mut fleet.migrate("portal", &fleet.file("target"), &["--concurrency", "8"]));
    // Exit 1: the two unusable lines; everything else is moved.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (objects, errors, summary) = lines(&out);
    assert_bad_lines_reported(&errors, &out);
    assert_eq!(summary["alreadyMoved"], partial, "{}", text(&out));
    assert_eq!(summary["moved"], CLIENTS * 2 - partial, "{}", text(&out));
    assert_eq!(summary["clients"], CLIENTS);
    assert_eq!(summary["lines"], CLIENTS + 2);
    assert_eq!(summary["errors"], 2);
    assert_eq!(objects.len(), CLIENTS * 2);
    for (key, status) in &pairs {
        let line = &objects[&key.to_string()];
        assert_eq!(line["pairStatus"], status.as_str(), "{line}");
        // On the target: Portal's very ciphertext, once.
        let expected = fleet
            .sim
            .stored_cipher_text(key.share_pair_id().unwrap())
            .unwrap();
        assert_eq!(target.get(key).await.unwrap(), expected.into_bytes());
    }
    let all: usize = target.list_clients().await.unwrap().len();
    assert_eq!(all, CLIENTS, "nothing else on the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_portal_never_overwrites_a_conflict_and_a_killed_run_finishes_on_rerun() {
    let fleet = Fleet::new().await;
    // Backed up into files (before switching to Portal-Managed Backups).
    fleet.back_up(&fleet.file("source"));
    assert_eq!(fleet.at_portal(), 0);
    let pairs = fleet.pairs();
    let source = FsStore::new(fleet.path("source")).unwrap();
    // At Portal already: the first client's first pair holds another client's ciphertext.
    let (conflict, other) = {
        let mut keys = pairs.keys();
        (
            keys.next().unwrap().clone(),
            keys.next_back().unwrap().clone(),
        )
    };
    let foreign = String::from_utf8(source.get(&other).await.unwrap().to_vec()).unwrap();
    let owner = &fleet
        .clients
        .iter()
        .find(|(id, _)| id == conflict.client_id())
        .unwrap()
        .1;
    client(&fleet.sim, owner)
        .store_cipher_text(conflict.share_pair_id().unwrap(), &foreign)
        .await
        .unwrap();

    Fleet::kill_after(
        &mut fleet.migrate(
            &fleet.file("source"),
            "portal",
            &["--concurrency", "1", "--kms-rate-limit", "15"],
        ),
        6,
    );
    // A PATCH sent before the kill may still be landing.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let written_before = fleet.at_portal() - 1;
    assert!(
        (6..CLIENTS * 2 - 1).contains(&written_before),
        "{written_before}"
    );

    let out = run(&mut fleet.migrate(&fleet.file("source"), "portal", &["--concurrency", "8"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (objects, errors, summary) = lines(&out);
    assert_bad_lines_reported(&errors, &out);
    assert_eq!(summary["conflicts"], 1, "{}", text(&out));
    assert_eq!(summary["alreadyMoved"], written_before, "{}", text(&out));
    assert_eq!(
        summary["moved"],
        CLIENTS * 2 - 1 - written_before,
        "{}",
        text(&out)
    );
    assert_eq!(objects[&conflict.to_string()]["status"], "conflict");
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));
    // Portal holds our very ciphertexts, once each; the conflicting one is untouched.
    for key in pairs.keys() {
        let at_portal = fleet
            .sim
            .stored_cipher_text(key.share_pair_id().unwrap())
            .unwrap();
        let expected = if *key == conflict {
            foreign.clone()
        } else {
            String::from_utf8(source.get(key).await.unwrap().to_vec()).unwrap()
        };
        assert_eq!(at_portal, expected, "{key}");
    }

    // Nothing left to do.
    let out = run(&mut fleet.migrate(&fleet.file("source"), "portal", &[]));
    let (_, _, summary) = lines(&out);
    assert_eq!(summary["alreadyMoved"], CLIENTS * 2 - 1, "{}", text(&out));
    assert_eq!(summary["moved"], 0);
}

#[test]
fn portal_without_credentials_and_credentials_without_portal_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("migrate")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORTAL_BACKUP_KMS", "local:/nonexistent/kek")
            .env("PORTAL_BACKUP_STATE_DIR", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let own = format!("file:{}", dir.path().join("s").display());
    let out = run(&["--from", "portal", "--to", &own]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--credentials"), "{}", text(&out));
    let other = format!("file:{}", dir.path().join("t").display());
    let out = run(&["--from", &own, "--to", &other, "--credentials", "-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&["--from", "portal", "--to", "portal", "--credentials", "-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
