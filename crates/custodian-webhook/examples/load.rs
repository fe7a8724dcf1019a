//! Load test of the webhook server on the file store, from a separate process on loopback.
//!
//! ```text
//! cargo run --release -p custodian-webhook --example load [-- --pairs 10000 --concurrency 50 --deadline-secs 300]
//! ```
//!
//! The program starts itself a second time as the server (`--serve <dir>`: an `FsStore` and a
//! local key file in a fresh temporary directory, plain HTTP on `127.0.0.1`), then drives
//! `--pairs` backup+fetch pairs over `--concurrency` connections, as Portal does (`/backup`,
//! then `/backup/fetch` must return the share). Afterwards it fetches every client once more,
//! stops the server gracefully, and scans the store directory for any plaintext share (raw,
//! JSON-escaped, base64, base64url). It exits non-zero on any error, missing share or hit,
//! and when the whole run exceeds `--deadline-secs`.
// A test program: it panics on broken fixtures and does arithmetic on small counters.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    unreachable_pub,
    dead_code,
    reason = "load-test program"
)]

#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/scan.rs"]
mod scan;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use custodian_webhook::storage::fs::FsStore;
use custodian_webhook::{SECRET_ENV, WebhookSecrets, WebhookServer};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

/// A share shaped like Portal's: a JSON string of about 7 KiB with random content.
fn share_like_portal(client: &str) -> String {
    use base64::Engine as _;
    let mut random = vec![0u8; 5 * 1024];
    getrandom::fill(&mut random).unwrap();
    let body = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&random);
    serde_json::json!({"clientId": client, "share": body, "backupSharePairId": "bsp_x"}).to_string()
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(dir) = arg(&args, "--serve") {
        runtime.block_on(serve(Path::new(&dir)));
        return;
    }
    let pairs: usize = arg(&args, "--pairs").map_or(10_000, |v| v.parse().unwrap());
    let concurrency: usize = arg(&args, "--concurrency").map_or(50, |v| v.parse().unwrap());
    let deadline =
        Duration::from_secs(arg(&args, "--deadline-secs").map_or(300, |v| v.parse().unwrap()));
    let ok = runtime.block_on(drive(pairs, concurrency, deadline));
    std::process::exit(if ok { 0 } else { 1 });
}

/// The server process: serves until its stdin closes.
async fn serve(dir: &Path) {
    let kek = LocalKek::from_file(&dir.join("kek")).unwrap();
    let server = WebhookServer::builder()
        .with_keyring(Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>))
        .with_store(Arc::new(FsStore::new(dir.join("store")).unwrap()))
        .with_secrets(WebhookSecrets::from_env(SECRET_ENV).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("LISTENING {}", listener.local_addr().unwrap());
    server
        .serve(listener, async {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        })
        .await
        .unwrap();
}

async fn drive(pairs: usize, concurrency: usize, deadline: Duration) -> bool {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    LocalKek::generate_file(&dir.path().join("kek")).unwrap();
    let mut secret_bytes = [0u8; 24];
    getrandom::fill(&mut secret_bytes).unwrap();
    let secret: String = secret_bytes.iter().map(|b| format!("{b:02x}")).collect();

    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .arg(dir.path())
        .env(SECRET_ENV, &secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server starts")
        .unwrap()
        .expect("server prints its address");
    let addr = line.strip_prefix("LISTENING ").unwrap().to_owned();
    println!(
        "server: separate process (pid {}), file store, local KEK, plain HTTP on {addr}; {} CPUs",
        child.id().unwrap_or(0),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let shares: Arc<Vec<String>> = Arc::new(
        (0..pairs)
            .map(|i| share_like_portal(&load::identity(i).0))
            .collect(),
    );
    let share_bytes: usize = shares.iter().map(String::len).sum();
    println!(
        "load: {pairs} backup+fetch pairs, {concurrency} concurrent connections, shares of ~{} bytes, {} clients x 2 methods",
        share_bytes / pairs.max(1),
        pairs.div_ceil(2)
    );
    let config = load::LoadConfig {
        base_url: format!("http://{addr}"),
        secret,
        pairs,
        concurrency,
        deadline: deadline.saturating_sub(started.elapsed()),
    };
    let mut report = load::run(&config, Arc::clone(&shares)).await;
    println!("{}", report.summary());
    for e in &report.first_errors {
        println!("  error: {e}");
    }

    // Graceful stop: close the server's stdin and wait for it.
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("server stops")
        .unwrap();
    println!("server stopped: {status}");

    let scan_started = Instant::now();
    scan::self_check();
    let store = dir.path().join("store");
    let files = scan::count_files(&store);
    let bytes = dir_bytes(&store);
    let hits = scan::scan(dir.path(), &shares);
    println!(
        "disk scan: {files} files, {:.1} MiB under the store; {} plaintext hits (raw, JSON-escaped, base64, base64url) in {:.2} s",
        bytes as f64 / (1024.0 * 1024.0),
        hits.len(),
        scan_started.elapsed().as_secs_f64()
    );
    for h in hits.iter().take(5) {
        println!(
            "  hit: share {} as {} in {}",
            h.share,
            h.form,
            h.file.display()
        );
    }
    let within = started.elapsed() <= deadline;
    println!(
        "total {:.1} s (deadline {} s)",
        started.elapsed().as_secs_f64(),
        deadline.as_secs()
    );
    let ok = report.errors == 0
        && report.missing_after == 0
        && report.pairs == pairs
        && hits.is_empty()
        && files == pairs
        && status.success()
        && within;
    println!("{}", if ok { "RESULT: PASS" } else { "RESULT: FAIL" });
    ok
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            total += meta.len();
        }
    }
    total
}
