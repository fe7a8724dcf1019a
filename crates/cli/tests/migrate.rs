//! `migrate --from <store> --to <store>` end to end: JSON lines and a summary; the process
//! killed midway and a rerun that finishes with nothing lost or doubled; a different object
//! already on the target left alone (a conflict) and a corrupted source object reported while
//! the rest moves (exit 4); custodian shares left where they are; and the chain file →
//! PostgreSQL → S3 (moto) → file giving back the very bytes it started with.
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
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use envelope::local::LocalKek;
use envelope::{KeyEncryptionKey, Keyring};
use serde_json::Value;
use storage::fs::FsStore;
use storage::{BackupKey, BackupStore, PutOptions};

// Backups as `backup` stores them; shared with backup-flow's tests and benches.
#[path = "../../backup-flow/tests/support/backups.rs"]
mod backups;
use backups::store_backup;

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");

/// A working directory with a key file and a source file store of `clients` backups (two
/// shares under one data key each) and one custodian share.
struct Work {
    dir: tempfile::TempDir,
    kms: String,
}

impl Work {
    async fn new(clients: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("kek");
        let kek = LocalKek::generate_file(&key_file).unwrap();
        let keyring = Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>);
        let source = FsStore::new(dir.path().join("source")).unwrap();
        for i in 0..clients {
            store_backup(
                &source,
                &keyring,
                &client(i),
                |curve| pair(i, curve),
                b"a backup share",
            )
            .await;
        }
        source
            .put(
                &BackupKey::custodian_backup(client(0), "GDRIVE").unwrap(),
                b"a custodian share, sealed by the webhook".to_vec().into(),
                PutOptions::create(),
            )
            .await
            .unwrap();
        Self {
            kms: format!("local:{}", key_file.display()),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str) -> String {
        format!("file:{}", self.path(name).display())
    }

    fn migrate(&self, from: &str, to: &str, more: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["migrate", "--from", from, "--to", to])
            .args(more)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORTAL_BACKUP_KMS", &self.kms)
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .stdin(Stdio::null());
        cmd
    }
}

fn client(i: usize) -> String {
    format!("client-{i:03}")
}

fn pair(i: usize, curve: &str) -> String {
    format!("pair-{i}-{}", curve.to_lowercase())
}

fn key(i: usize, curve: &str) -> BackupKey {
    BackupKey::client_backup(client(i), pair(i, curve), curve).unwrap()
}

/// The JSON lines of a run: the object lines by key, and the summary (the last line).
fn lines(out: &Output) -> (BTreeMap<String, Value>, Value) {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let mut all: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{}", text(out)))
        })
        .collect();
    let summary = all.pop().unwrap();
    assert_eq!(summary["kind"], "summary", "{}", text(out));
    let objects = all
        .into_iter()
        .map(|line| (line["key"].as_str().unwrap().to_owned(), line))
        .collect();
    (objects, summary)
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// The client backup files of a file store (what migrate moves).
fn client_backups(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|(name, _)| name.contains("/client-backup/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_migration_resumes_and_finishes_with_nothing_lost_or_doubled() {
    const CLIENTS: usize = 30;
    let work = Work::new(CLIENTS).await;
    let before = files(&work.path("source"));
    // Slow enough to be killed midway: one KMS call per client, 15 a second, one at a time.
    let mut child = work
        .migrate(
            &work.file("source"),
            &work.file("target"),
            &["--concurrency", "1", "--kms-rate-limit", "15"],
        )
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
        if seen == 8 {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before the end: {status}");
    let partial = client_backups(&work.path("target")).len();
    assert!(
        (8..CLIENTS * 2).contains(&partial),
        "{partial} objects moved before the kill"
    );

    let out = work
        .migrate(
            &work.file("source"),
            &work.file("target"),
            &["--concurrency", "8"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (objects, summary) = lines(&out);
    assert_eq!(summary["alreadyMoved"], partial, "{}", text(&out));
    assert_eq!(summary["moved"], CLIENTS * 2 - partial, "{}", text(&out));
    assert_eq!(summary["skipped"], 1, "the custodian share");
    assert_eq!(summary["clients"], CLIENTS);
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["concurrency"], 8);
    let custodian = BackupKey::custodian_backup(client(0), "GDRIVE")
        .unwrap()
        .to_string();
    assert_eq!(objects[&custodian]["status"], "skipped");
    assert!(
        objects[&custodian]["reason"]
            .as_str()
            .unwrap()
            .contains("custodian")
    );
    // Nothing lost, nothing doubled, nothing else on the target, the source unchanged.
    assert_eq!(
        files(&work.path("target")),
        client_backups(&work.path("source"))
    );
    assert_eq!(files(&work.path("source")), before);

    // A third run has nothing left to do and says so.
    let out = work
        .migrate(&work.file("source"), &work.file("target"), &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (_, summary) = lines(&out);
    assert_eq!(summary["alreadyMoved"], CLIENTS * 2);
    assert_eq!(summary["moved"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_left_alone_and_a_corrupted_source_is_reported_with_exit_4() {
    const CLIENTS: usize = 6;
    let work = Work::new(CLIENTS).await;
    let source = FsStore::new(work.path("source")).unwrap();
    let target = FsStore::new(work.path("target")).unwrap();
    // On the target already: client 1's ED25519 key holds client 2's ciphertext.
    let other = source.get(&key(2, "ED25519")).await.unwrap();
    target
        .put(&key(1, "ED25519"), other.clone(), PutOptions::create())
        .await
        .unwrap();
    // In the source: client 3's SECP256K1 ciphertext is tampered with.
    let mut tampered =
        String::from_utf8(source.get(&key(3, "SECP256K1")).await.unwrap().to_vec()).unwrap();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    source
        .put(
            &key(3, "SECP256K1"),
            tampered.into_bytes().into(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();

    let out = work
        .migrate(&work.file("source"), &work.file("target"), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let (objects, summary) = lines(&out);
    assert_eq!(summary["conflicts"], 1, "{}", text(&out));
    assert_eq!(summary["badSource"], 1);
    assert_eq!(summary["moved"], CLIENTS * 2 - 2);
    assert_eq!(
        objects[&key(1, "ED25519").to_string()]["status"],
        "conflict"
    );
    let bad = &objects[&key(3, "SECP256K1").to_string()];
    assert_eq!(bad["status"], "bad-source", "{bad}");
    assert!(bad["reason"].is_string());
    assert_eq!(
        target.get(&key(1, "ED25519")).await.unwrap(),
        other,
        "the conflicting object is never overwritten"
    );
    assert!(
        target
            .get(&key(3, "SECP256K1"))
            .await
            .unwrap_err()
            .is_not_found(),
        "a source object that does not open is not copied"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 source objects do not open"), "{stderr}");

    // With the bad source object gone, only the conflict is left: exit 1.
    source.delete(&key(3, "SECP256K1")).await.unwrap();
    let out = work
        .migrate(&work.file("source"), &work.file("target"), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (_, summary) = lines(&out);
    assert_eq!(summary["conflicts"], 1);
    assert_eq!(summary["badSource"], 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));
}

#[test]
fn portal_and_the_same_store_twice_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = |from: &str, to: &str| {
        Command::new(BIN)
            .args(["migrate", "--from", from, "--to", to])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORTAL_BACKUP_KMS", "local:/nonexistent/kek")
            .env("PORTAL_BACKUP_STATE_DIR", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let same = format!("file:{}", dir.path().display());
    let out = run(&same, &same);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("the same store"), "{}", text(&out));
    // Portal's ciphertexts are behind each client's credential: --credentials is needed.
    let out = run("portal", &same);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--credentials"), "{}", text(&out));
}

/// file → PostgreSQL → S3 (moto) → file: every hop create-only and drilled, each rerun a
/// no-op, and the last directory holds exactly the client ciphertexts of the first.
#[cfg(all(feature = "postgres", feature = "s3"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_to_postgres_to_s3_to_file_gives_back_the_same_bytes() {
    const CLIENTS: usize = 10;
    let Some(pg) = test_services::postgres::shared() else {
        return; // skipped loudly by the fixture (a failure under cargo xtask)
    };
    let Some(moto) = test_services::moto::shared() else {
        return;
    };
    let (_, pg_url) = pg.create_database("migrate");
    let bucket = format!("migrate-{}", std::process::id());
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let s3_url = format!("s3://{bucket}/backups");
    let work = Work::new(CLIENTS).await;
    let hop = |from: &str, to: &str| {
        let mut cmd = work.migrate(from, to, &["--concurrency", "4"]);
        cmd.env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{from} → {to}: {}", text(&out));
        lines(&out).1
    };
    for (from, to) in [
        (work.file("source"), pg_url.clone()),
        (pg_url.clone(), s3_url.clone()),
        (s3_url.clone(), work.file("back")),
    ] {
        let summary = hop(&from, &to);
        assert_eq!(summary["moved"], CLIENTS * 2, "{from} → {to}: {summary}");
        assert_eq!(summary["clients"], CLIENTS);
        let again = hop(&from, &to);
        assert_eq!(again["moved"], 0, "{again}");
        assert_eq!(again["alreadyMoved"], CLIENTS * 2, "{again}");
    }
    assert_eq!(
        files(&work.path("back")),
        client_backups(&work.path("source"))
    );
}

/// `rotate` killed midway, like `migrate`: the rerun (with the old key as --kms, as an operator
/// reruns it) rewraps what is left, skips what the killed run finished, and proves from the
/// headers that nothing is left under the old key; every object then opens with the new key
/// alone, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rotation_resumes_and_leaves_nothing_under_the_old_key() {
    const CLIENTS: usize = 30;
    let work = Work::new(CLIENTS).await;
    // Only client backups: the fixture's custodian share is not an envelope.
    FsStore::new(work.path("source"))
        .unwrap()
        .delete(&BackupKey::custodian_backup(client(0), "GDRIVE").unwrap())
        .await
        .unwrap();
    let names_before: Vec<String> = files(&work.path("source")).into_keys().collect();
    let new_key = work.path("kek-new");
    LocalKek::generate_file(&new_key).unwrap();
    let to_kms = format!("local:{}", new_key.display());
    let rotate = |more: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "rotate",
            "--store",
            &work.file("source"),
            "--to-kms",
            &to_kms,
        ])
        .args(more)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORTAL_BACKUP_KMS", &work.kms)
        .env("PORTAL_BACKUP_STATE_DIR", work.path("state"))
        .stdin(Stdio::null());
        cmd
    };
    // Slow enough to be killed midway: two KMS calls per client, 15 a second.
    let mut child = rotate(&["--concurrency", "1", "--kms-rate-limit", "15"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if line["kind"] == "object" {
            seen += 1;
        }
        if seen == 8 {
            break;
        }
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "killed before the end");

    let out = rotate(&["--concurrency", "8"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["kind"], "summary", "{}", text(&out));
    assert_eq!(summary["notUnderTarget"], 0, "{}", text(&out));
    assert_eq!(summary["failed"], 0);
    let (rewrapped, current) = (
        summary["rewrapped"].as_u64().unwrap(),
        summary["alreadyCurrent"].as_u64().unwrap(),
    );
    assert_eq!(rewrapped + current, (CLIENTS * 2) as u64, "{}", text(&out));
    assert!(
        current >= 8,
        "the killed run's objects are skipped: {current}"
    );
    assert!(rewrapped > 0, "the rerun finished the rest");

    // Nothing lost or added, and the new key alone opens every object as its share.
    let names_after: Vec<String> = files(&work.path("source")).into_keys().collect();
    assert_eq!(names_after, names_before);
    let out = Command::new(BIN)
        .args(["verify", "--store-wide", "--store", &work.file("source")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORTAL_BACKUP_KMS", &to_kms)
        .env("PORTAL_BACKUP_STATE_DIR", work.path("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
