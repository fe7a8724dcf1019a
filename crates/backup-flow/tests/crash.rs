//! Crash soak (see `support/crash.rs`): a bulk backup of 150 clients into a file store, in a
//! child process killed with SIGKILL at random moments 12 times, then run to completion;
//! `portal-sim` and the webhook live in this process through every kill. The full size:
//! `cargo run --release -p portal-backup-flow --example crash_soak -- --clients 1000 --kills 20`.
#![cfg(unix)]

#[path = "support/crash.rs"]
mod crash;

use std::process::Command;

#[test]
fn bulk_backup_survives_repeated_sigkills() {
    // The child side: this test binary, run again filtered to this test with
    // `BACKUP_FLOW_CRASH_CHILD` set, is the bulk run that gets killed (before any runtime of
    // this test exists: the child builds its own).
    if let Ok(config) = std::env::var(crash::CHILD_ENV) {
        crash::child_main(&config);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(parent());
}

async fn parent() {
    let params = crash::Params {
        clients: 150,
        kills: 12,
        concurrency: 8,
        store: crash::StoreKind::File,
        latency_ms: 2,
    };
    let outcome = crash::crash_soak(params, || {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.args([
            "--exact",
            "bulk_backup_survives_repeated_sigkills",
            "--nocapture",
        ]);
        cmd
    })
    .await;
    eprintln!("{outcome}");
}
