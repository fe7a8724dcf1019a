//! Fault soak (see `support/soak.rs`): 200 clients backed up in bulk while `portal-sim` fails
//! about 20% of requests on every route, then a second run without faults. The full 1,000:
//! `cargo run --release -p portal-backup-flow --example soak -- 1000`.

#[path = "support/soak.rs"]
mod soak;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_backup_under_20_percent_faults_then_a_clean_rerun_completes_every_client() {
    let outcome = soak::soak(200, 16).await;
    eprintln!("{outcome}");
}
