//! `rotate` streams: one JSON line per object as its client finishes, an error line for an
//! object that cannot be rotated while the others go on (exit 5), and the summary last with
//! the proof (`notUnderTarget`); `verify --store-wide` with the new key alone afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)] // tests: a broken fixture should panic

#[path = "support/output.rs"]
mod output;
use output::text;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use envelope::local::LocalKek;
use envelope::{KeyEncryptionKey, Keyring};
use serde_json::Value;
use storage::fs::FsStore;
use storage::{BackupKey, BackupStore as _, PutOptions};

// Backups as `backup` stores them; shared with backup-flow's tests and benches.
#[path = "../../backup-flow/tests/support/backups.rs"]
mod backups;
use backups::store_backup;

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const CLIENTS: usize = 12;

fn key(i: usize, curve: &str) -> BackupKey {
    BackupKey::client_backup(format!("client-{i:03}"), format!("pair-{i}-{curve}"), curve).unwrap()
}

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    /// A file store of `CLIENTS` backups (two shares under one data key each), sealed under
    /// the key file `old`; a second key file `new`.
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let old = LocalKek::generate_file(&dir.path().join("old")).unwrap();
        LocalKek::generate_file(&dir.path().join("new")).unwrap();
        let keyring = Keyring::new().with(Arc::new(old) as Arc<dyn KeyEncryptionKey>);
        let store = FsStore::new(dir.path().join("store")).unwrap();
        for i in 0..CLIENTS {
            let client_id = format!("client-{i:03}");
            let pair = |curve: &str| format!("pair-{i}-{curve}");
            store_backup(&store, &keyring, &client_id, pair, b"a backup share").await;
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn kms(&self, name: &str) -> String {
        format!("local:{}", self.path(name).display())
    }

    fn run(&self, kms: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORTAL_BACKUP_KMS", kms)
            .env(
                "PORTAL_BACKUP_STORE",
                format!("file:{}", self.path("store").display()),
            )
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Every line is JSON (no progress bar in a pipe); the summary is last.
fn lines(out: &Output) -> (Vec<Value>, Value) {
    let mut all: Vec<Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", text(out))))
        .collect();
    let summary = all.pop().unwrap();
    assert_eq!(summary["kind"], "summary", "{}", text(out));
    (all, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_prints_a_line_per_object_goes_on_past_a_bad_one_and_proves_the_rest() {
    let work = Work::new().await;
    // Client 3's ED25519 object holds client 4's ciphertext: it must not be rewrapped.
    let store = FsStore::new(work.path("store")).unwrap();
    let foreign = store.get(&key(4, "ED25519")).await.unwrap();
    store
        .put(&key(3, "ED25519"), foreign, PutOptions::overwrite())
        .await
        .unwrap();
    let (old, new) = (work.kms("old"), work.kms("new"));

    let out = work.run(&old, &["rotate", "--to-kms", &new, "--concurrency", "4"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let (items, summary) = lines(&out);
    let bad = key(3, "ED25519").to_string();
    let errors: Vec<&Value> = items.iter().filter(|l| l["kind"] == "error").collect();
    assert_eq!(errors.len(), 1, "{}", text(&out));
    assert_eq!(errors[0]["key"], bad.as_str());
    let rewrapped = items
        .iter()
        .filter(|l| l["kind"] == "object" && l["status"] == "rewrapped")
        .count();
    assert_eq!(rewrapped, CLIENTS * 2 - 1, "{}", text(&out));
    assert_eq!(summary["clients"], CLIENTS);
    assert_eq!(summary["rewrapped"], CLIENTS * 2 - 1);
    assert_eq!(summary["failed"], 1);
    assert_eq!(
        summary["notUnderTarget"], 1,
        "the foreign object is still under the old key"
    );

    // The bad object removed, a rerun finds everything else current and proves 0 left.
    store.delete(&key(3, "ED25519")).await.unwrap();
    let out = work.run(&old, &["rotate", "--to-kms", &new]);
    assert!(out.status.success(), "{}", text(&out));
    let (items, summary) = lines(&out);
    assert!(
        items.iter().all(|l| l["status"] == "already-current"),
        "{}",
        text(&out)
    );
    assert_eq!(summary["alreadyCurrent"], CLIENTS * 2 - 1);
    assert_eq!(summary["notUnderTarget"], 0);

    let out = work.run(&new, &["verify", "--store-wide"]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, summary) = lines(&out);
    assert_eq!(summary["checked"], CLIENTS * 2 - 1);
}
