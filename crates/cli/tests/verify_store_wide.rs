//! `verify --store-wide --concurrency N` end to end over a file store of several clients, one
//! of whose shares is another client's: line-delimited JSON, every good share reported ok,
//! the swapped one reported as not opening as itself, a summary line, and exit code 4.
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
use std::process::{Command, Stdio};
use std::sync::Arc;

use envelope::local::LocalKek;
use envelope::{KeyEncryptionKey, Keyring};
use serde_json::Value;
use storage::fs::FsStore;
use storage::{BackupKey, BackupStore, PutOptions};

// Backups as `backup` stores them; shared with backup-flow's tests and benches.
#[path = "../../backup-flow/tests/support/backups.rs"]
mod backups;
use backups::{CURVES, store_backup};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const CLIENTS: usize = 5;

/// Seals two shares per client under one data key, as a backup stores them.
async fn seed(store: &FsStore, keyring: &Keyring) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..CLIENTS {
        let client_id = format!("client-{i}");
        store_backup(
            store,
            keyring,
            &client_id,
            |curve| pair(i, curve),
            b"a backup share",
        )
        .await;
        ids.push(client_id);
    }
    ids
}

fn pair(i: usize, curve: &str) -> String {
    format!("pair-{i}-{}", curve.to_lowercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_wide_verify_streams_json_lines_and_reports_the_swapped_share_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("kek");
    let kek = LocalKek::generate_file(&key_file).unwrap();
    let store_dir = dir.path().join("store");
    let store = FsStore::new(&store_dir).unwrap();
    let clients = seed(
        &store,
        &Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>),
    )
    .await;
    // Client 2's SECP256K1 object is replaced by client 3's: it opens, but not as itself.
    let key = |i: usize, curve: &str| {
        BackupKey::client_backup(&clients[i], pair(i, curve), curve).unwrap()
    };
    let foreign = store.get(&key(3, "SECP256K1")).await.unwrap();
    store
        .put(&key(2, "SECP256K1"), foreign, PutOptions::overwrite())
        .await
        .unwrap();

    let out = Command::new(BIN)
        .args(["verify", "--store-wide", "--concurrency", "8"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORTAL_BACKUP_KMS", format!("local:{}", key_file.display()))
        .env(
            "PORTAL_BACKUP_STORE",
            format!("file:{}", store_dir.display()),
        )
        .env("PORTAL_BACKUP_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));

    // Every line of stdout is one JSON object; the last is the summary.
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{}", text(&out)))
        })
        .collect();
    let (summary, shares) = lines.split_last().unwrap();
    assert_eq!(summary["kind"], "summary", "{}", text(&out));
    assert_eq!(summary["clients"], CLIENTS);
    assert_eq!(summary["checked"], CLIENTS * 2);
    assert_eq!(summary["ok"], CLIENTS * 2 - 1);
    assert_eq!(summary["notOk"], 1);
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["concurrency"], 8);

    let findings: BTreeMap<String, &Value> = shares
        .iter()
        .map(|line| {
            assert_eq!(line["kind"], "share", "{line}");
            (line["key"].as_str().unwrap().to_owned(), &line["finding"])
        })
        .collect();
    assert_eq!(findings.len(), CLIENTS * 2, "one line per share");
    for (i, client) in clients.iter().enumerate() {
        for curve in CURVES {
            let finding = findings[&key(i, curve).to_string()];
            if (i, curve) == (2, "SECP256K1") {
                assert!(finding["wrong-identity"]["reason"].is_string(), "{finding}");
            } else {
                assert_eq!(finding, "ok", "{client} {curve}");
            }
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 10 stored shares do not open")
            && stderr.contains(&key(2, "SECP256K1").to_string()),
        "{stderr}"
    );
}

/// `--kms-rate-limit` spaces the KMS calls of the whole run: five backups (one unwrap each) at
/// 10 calls a second take at least 400 ms, and every share still opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_rate_limit_spaces_the_kms_calls_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("kek");
    let kek = LocalKek::generate_file(&key_file).unwrap();
    let store_dir = dir.path().join("store");
    let store = FsStore::new(&store_dir).unwrap();
    seed(
        &store,
        &Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>),
    )
    .await;
    let run = |limit: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["verify", "--store-wide", "--concurrency", "8"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORTAL_BACKUP_KMS", format!("local:{}", key_file.display()))
            .env(
                "PORTAL_BACKUP_STORE",
                format!("file:{}", store_dir.display()),
            )
            .env("PORTAL_BACKUP_STATE_DIR", dir.path().join("state"))
            .stdin(Stdio::null());
        if let Some(limit) = limit {
            cmd.args(["--kms-rate-limit", limit]);
        }
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let summary: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap())
                .unwrap();
        assert_eq!(summary["ok"], CLIENTS * 2, "{}", text(&out));
        started.elapsed()
    };
    let limited = run(Some("10"));
    assert!(
        limited >= std::time::Duration::from_millis(400),
        "{limited:?}"
    );
    let unlimited = run(None);
    assert!(unlimited < limited, "{unlimited:?} vs {limited:?}");
}
