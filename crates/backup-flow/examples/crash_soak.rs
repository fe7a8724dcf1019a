//! The crash soak at full size:
//!
//! ```text
//! cargo run --release -p portal-backup-flow --example crash_soak -- \
//!     [--clients 1000] [--kills 20] [--concurrency 16] [--store file|portal] [--latency-ms 2]
//! ```
//!
//! A bulk backup of that many clients through `Flow::bulk_backup`, in a child process (this
//! program again) killed with SIGKILL at random moments `--kills` times, then run to
//! completion; `portal-sim` (and the Self-Managed Backups webhook, for the file store) runs in
//! this process through every kill. Panics if a client is lost, a pair is completed twice, a
//! ciphertext is missing, does not open or is stored for a pair never completed, or the
//! simulator's invariant report is not clean; prints the figures. The `crash` test runs the
//! same with 150 clients and 12 kills.
#![allow(clippy::print_stdout, clippy::expect_used)]

#[cfg(unix)]
#[path = "../tests/support/crash.rs"]
mod crash;

#[cfg(unix)]
fn main() {
    if let Ok(config) = std::env::var(crash::CHILD_ENV) {
        crash::child_main(&config);
    }
    let mut params = crash::Params {
        clients: 1000,
        kills: 20,
        concurrency: 16,
        store: crash::StoreKind::File,
        latency_ms: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().expect("every option takes a value");
        match flag.as_str() {
            "--clients" => params.clients = value.parse().expect("--clients: a number"),
            "--kills" => params.kills = value.parse().expect("--kills: a number"),
            "--concurrency" => params.concurrency = value.parse().expect("--concurrency: a number"),
            "--store" => params.store = value.parse().expect("--store: file or portal"),
            "--latency-ms" => params.latency_ms = value.parse().expect("--latency-ms: a number"),
            other => panic!(
                "unknown option {other}; options: --clients, --kills, --concurrency, --store, --latency-ms"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(crash::crash_soak(params, || {
        std::process::Command::new(std::env::current_exe().expect("this program"))
    }));
    println!("{outcome}");
}

#[cfg(not(unix))]
fn main() {
    println!("the crash soak kills its child with SIGKILL: unix only");
}
