//! The fault soak at full size: `cargo run --release -p portal-backup-flow --example soak -- 1000 [concurrency]`.
//!
//! A bulk backup of that many clients through `Flow::bulk_backup` while `portal-sim` fails
//! about 20% of requests on every route (503/502, 429 with `Retry-After` 0 and 1, dropped
//! connections before and after the request took effect, latency spikes), then a second run
//! without faults; panics if a client is lost, failed for good, confirmed twice, or the
//! simulator's invariant report is not clean. The `soak` test runs the same with 200 clients.

#[path = "../tests/support/soak.rs"]
mod soak;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients = args
        .next()
        .map_or(1000, |a| a.parse().expect("a client count"));
    let concurrency = args
        .next()
        .map_or(16, |a| a.parse().expect("a concurrency"));
    let outcome = soak::soak(clients, concurrency).await;
    println!("{outcome}");
}
