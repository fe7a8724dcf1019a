//! Crash soak (see `support/crash.rs`): a bulk backup of 150 clients into a file store, in a
//! child process killed with SIGKILL at random moments 12 times, then run to completion;
//! `portal-sim` and the webhook live in this process through every kill. The full size:
//! `cargo run --release -p backup-flow --example crash_soak -- --clients 1000 --kills 20`.
#![cfg(unix)]

#[path = "support/crash.rs"]
mod crash;

use std::process::Command;

/// The child side: this test binary, run again filtered to this entry with
/// `BACKUP_FLOW_CRASH_CHILD` set, is the bulk run that gets killed. Ignored, so that it never
/// runs on its own; without the variable it does nothing.
#[test]
#[ignore = "the child process of `bulk_backup_survives_repeated_sigkills`; run by it"]
fn crash_child() {
    if let Ok(config) = std::env::var(crash::CHILD_ENV) {
        crash::child_main(&config);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_backup_survives_repeated_sigkills() {
    let params = crash::Params {
        clients: 150,
        kills: 12,
        concurrency: 8,
        store: crash::StoreKind::File,
        latency_ms: 2,
    };
    let outcome = crash::crash_soak(params, || {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.args(["--exact", "crash_child", "--ignored", "--nocapture"]);
        cmd
    })
    .await;
    eprintln!("{outcome}");
}
