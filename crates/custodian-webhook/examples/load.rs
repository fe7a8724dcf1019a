//! Load test of the webhook server on the file store or PostgreSQL, from a separate process
//! on loopback.
//!
//! ```text
//! cargo run --release -p portal-backup-custodian-webhook --example load [-- --pairs 10000 --concurrency 50 --deadline-secs 300]
//! cargo run --release -p portal-backup-custodian-webhook --example load --features postgres -- --store postgres
//! ```
//!
//! The program starts itself a second time as the server (`--serve <dir>`: a local key file
//! in a fresh temporary directory, plain HTTP on `127.0.0.1`, and an `FsStore` in that
//! directory, or with `--store postgres` a `PostgresStore` on a throwaway PostgreSQL that this
//! program starts on loopback, see the `test-services` crate), then drives
//! `--pairs` backup+fetch pairs over `--concurrency` connections, as Portal does (`/backup`,
//! then `/backup/fetch` must return the share). Afterwards it fetches every client once more,
//! reads the server's peak resident memory (`VmHWM`), stops the server gracefully, and scans
//! for any plaintext share (raw, JSON-escaped, base64, base64url, hex): the store directory;
//! or, for PostgreSQL, every stored body (raw, and as `psql` prints it), a `pg_dump` of the
//! database, and the server's whole directory (data files, WAL, log) after a checkpoint. It
//! exits non-zero on any error, missing share or hit, and when the whole run exceeds
//! `--deadline-secs`.
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
#[cfg(feature = "postgres")]
use test_services::postgres as pg;
#[path = "../tests/support/scan.rs"]
mod scan;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use custodian_webhook::storage::BackupStore;
use custodian_webhook::storage::fs::FsStore;
use custodian_webhook::{SECRET_ENV, WebhookSecrets, WebhookServer};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

/// The server's PostgreSQL URL (in the environment: it holds the password).
const PG_URL_ENV: &str = "PORTAL_BACKUP_LOAD_PG_URL";

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
    let postgres = match arg(&args, "--store").as_deref() {
        None | Some("fs") => false,
        Some("postgres") if cfg!(feature = "postgres") => true,
        Some("postgres") => {
            eprintln!("--store postgres needs the example built with --features postgres");
            std::process::exit(2);
        }
        Some(other) => {
            eprintln!("--store {other}: expected fs or postgres");
            std::process::exit(2);
        }
    };
    let ok = runtime.block_on(drive(pairs, concurrency, deadline, postgres));
    std::process::exit(if ok { 0 } else { 1 });
}

/// The server process: serves until its stdin closes.
async fn serve(dir: &Path) {
    let kek = LocalKek::from_file(&dir.join("kek")).unwrap();
    let server = WebhookServer::builder()
        .with_keyring(Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>))
        .with_store(open_store(dir).await)
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

/// The server's store: PostgreSQL when the driver passed its URL, else files under `dir`.
async fn open_store(dir: &Path) -> Arc<dyn BackupStore> {
    match std::env::var(PG_URL_ENV) {
        #[cfg(feature = "postgres")]
        Ok(url) => Arc::new(
            storage::postgres::PostgresStore::connect(&url)
                .await
                .unwrap(),
        ),
        #[cfg(not(feature = "postgres"))]
        Ok(_) => panic!("built without the postgres feature"),
        Err(_) => Arc::new(FsStore::new(dir.join("store")).unwrap()),
    }
}

/// Peak resident set size of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn drive(pairs: usize, concurrency: usize, deadline: Duration, postgres: bool) -> bool {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    #[cfg(feature = "postgres")]
    let pg = postgres.then(|| match pg::start() {
        Some(pg) => pg,
        None => panic!("--store postgres needs PostgreSQL's server binaries"),
    });
    LocalKek::generate_file(&dir.path().join("kek")).unwrap();
    let mut secret_bytes = [0u8; 24];
    getrandom::fill(&mut secret_bytes).unwrap();
    let secret: String = secret_bytes.iter().map(|b| format!("{b:02x}")).collect();

    let mut server = tokio::process::Command::new(std::env::current_exe().unwrap());
    server
        .arg("--serve")
        .arg(dir.path())
        .env(SECRET_ENV, &secret);
    #[cfg(feature = "postgres")]
    if let Some(pg) = &pg {
        server.env(PG_URL_ENV, &pg.url);
    }
    let mut child = server
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
    let server_pid = child.id().unwrap_or(0);
    println!(
        "server: separate process (pid {server_pid}), {} store, local KEK, plain HTTP on {addr}; {} CPUs",
        if postgres {
            "PostgreSQL (throwaway, loopback, default settings: fsync and synchronous_commit on)"
        } else {
            "file"
        },
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

    let rss = peak_rss_kib(server_pid);
    println!(
        "server peak RSS (VmHWM): {}",
        rss.map_or("unknown".to_owned(), |kib| format!(
            "{:.1} MiB",
            kib as f64 / 1024.0
        ))
    );

    // Graceful stop: close the server's stdin and wait for it.
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("server stops")
        .unwrap();
    println!("server stopped: {status}");

    let scan_started = Instant::now();
    scan::self_check();
    #[cfg(feature = "postgres")]
    let (objects, hits) = match &pg {
        Some(pg) => scan_postgres(pg, dir.path(), &shares),
        None => scan_files(dir.path(), &shares),
    };
    #[cfg(not(feature = "postgres"))]
    let (objects, hits) = scan_files(dir.path(), &shares);
    println!(
        "scan: {} plaintext hits (raw, JSON-escaped, base64, base64url, hex) in {:.2} s",
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
        && objects == pairs
        && status.success()
        && within;
    println!("{}", if ok { "RESULT: PASS" } else { "RESULT: FAIL" });
    ok
}

/// The file store: one file per share; scans the whole temporary directory.
fn scan_files(dir: &Path, shares: &[String]) -> (usize, Vec<scan::Hit>) {
    let store = dir.join("store");
    let files = scan::count_files(&store);
    println!(
        "disk: {files} files, {:.1} MiB under the store",
        dir_bytes(&store) as f64 / (1024.0 * 1024.0)
    );
    (files, scan::scan(dir, shares))
}

/// PostgreSQL: the rows, every body (raw bytes from a binary COPY, and the hex text `psql`
/// prints), a `pg_dump` of the database, the server's log, and its data directory (tables,
/// WAL) after a checkpoint.
#[cfg(feature = "postgres")]
fn scan_postgres(pg: &pg::Postgres, dir: &Path, shares: &[String]) -> (usize, Vec<scan::Hit>) {
    let rows: usize = pg
        .psql("SELECT count(*) FROM portal_backup_objects")
        .trim()
        .parse()
        .unwrap();
    pg.psql("CHECKPOINT");
    let dumps = dir.join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    let run = |tool: &str, args: &[&str], file: &str| {
        let out = pg.client(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dumps.join(file), &out.stdout).unwrap();
        out.stdout.len()
    };
    let binary = run(
        "psql",
        &[
            "-X",
            "-c",
            "COPY (SELECT body FROM portal_backup_objects) TO STDOUT (FORMAT binary)",
        ],
        "bodies.bin",
    );
    let text = run(
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT body FROM portal_backup_objects",
        ],
        "bodies.txt",
    );
    let dump = run("pg_dump", &["--no-owner"], "pg_dump.sql");
    let data = pg.data_dir().unwrap();
    let data_bytes = dir_bytes(&data);
    println!(
        "database: {rows} rows; bodies {:.1} MiB raw, {:.1} MiB as psql prints them; pg_dump {:.1} MiB; data directory {:.1} MiB ({} files)",
        binary as f64 / 1048576.0,
        text as f64 / 1048576.0,
        dump as f64 / 1048576.0,
        data_bytes as f64 / 1048576.0,
        scan::count_files(&data),
    );
    std::fs::write(dumps.join("server.log"), pg.log()).unwrap();
    let mut hits = scan::scan(&dumps, shares);
    hits.extend(scan::scan(&data, shares));
    (rows, hits)
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
