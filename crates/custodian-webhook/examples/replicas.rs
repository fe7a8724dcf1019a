//! Webhook replicas over one store, the full run of `cargo xtask bench replicas`.
//!
//! ```text
//! cargo run --release -p portal-backup-custodian-webhook --example replicas [-- --pairs 10000 --races 1000 --concurrency 32 --stores postgres,s3]
//! ```
//!
//! For each store (one throwaway PostgreSQL, one bucket on moto, both on loopback and
//! started by the `test-services` crate), it runs the driver of `tests/replicas.rs` twice:
//! with one replica, and with three replicas, one of which is killed (its Tokio runtime shut
//! down without grace: every connection and store call of it ends at once) a third of the
//! way through and started again after `--down-ms`. Pairs go round-robin, three-way races on
//! one (client, method) are mixed in, a request without an answer or answered 503 is retried
//! once on the next replica that answers, and every client is fetched from every replica
//! afterwards. It prints a Markdown table and, last, one JSON line, and exits non-zero on any
//! error after one retry, lost share or inconsistent answer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    unreachable_pub,
    dead_code,
    reason = "benchmark program"
)]

#[path = "../tests/replicas/driver.rs"]
mod driver;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use driver::{Backend, KillAndRestart, Plan, Replica, Report, Urls};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One run: `replicas` servers over `backend`, killing one when there are several.
fn measure(backend: &Backend, replicas: usize, plan: Plan) -> Report {
    let keyring =
        Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
    let started: Vec<Option<Replica>> = (0..replicas)
        .map(|_| Some(Replica::start(&keyring, backend)))
        .collect();
    let urls: Urls = Arc::new(RwLock::new(
        started.iter().flatten().map(Replica::base).collect(),
    ));
    let servers = Arc::new(Mutex::new(started));
    let kill: Option<KillAndRestart> = (replicas > 1).then(|| {
        let (servers, keyring, backend) = (Arc::clone(&servers), keyring.clone(), backend.clone());
        Box::new(move |down: Duration| -> (usize, String) {
            let victim = servers.lock().unwrap()[1].take().unwrap();
            victim.kill();
            std::thread::sleep(down);
            let restarted = Replica::start(&keyring, &backend);
            let base = restarted.base();
            servers.lock().unwrap()[1] = Some(restarted);
            (1, base)
        }) as KillAndRestart
    });
    let plan = Plan {
        kill_after: kill.as_ref().and(plan.kill_after),
        ..plan
    };
    let report = driver::block_on(driver::run(urls, plan, kill));
    for server in servers.lock().unwrap().drain(..).flatten() {
        server.stop();
    }
    report
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pairs: usize = arg(&args, "--pairs").map_or(10_000, |v| v.parse().unwrap());
    let races: usize = arg(&args, "--races").map_or(1_000, |v| v.parse().unwrap());
    let concurrency: usize = arg(&args, "--concurrency").map_or(32, |v| v.parse().unwrap());
    let down = Duration::from_millis(arg(&args, "--down-ms").map_or(1_000, |v| v.parse().unwrap()));
    let stores = arg(&args, "--stores").unwrap_or_else(|| "postgres,s3".into());
    // The machine is shared: say how busy it was when the run began.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "null".into());

    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut failed = false;
    for store in stores.split(',') {
        let backend = match store {
            "postgres" => Backend::postgres(),
            "s3" => Backend::s3(),
            other => panic!("unknown store {other} (postgres, s3)"),
        }
        .unwrap_or_else(|| panic!("{store}: the service is not installed"));
        for replicas in [1, 3] {
            let plan = Plan {
                run_id: format!("b{}", &test_services::random_hex()[..12]),
                pairs,
                races,
                concurrency,
                kill_after: Some((pairs + races) / 3),
                down,
            };
            eprintln!("{store}, {replicas} replica(s): {pairs} pairs, {races} races ...");
            let mut report = measure(&backend, replicas, plan);
            eprintln!("{store}: {}", report.summary());
            failed |= report.errors + report.lost + report.inconsistent > 0;
            let (p50, p99) = (report.percentile(50.0), report.percentile(99.0));
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let kill = match (report.kill, report.pairs_per_sec_around_kill) {
                (Some((at, restart)), Some((before, during, after))) => format!(
                    "killed at {:.1} s, listening again {:.2} s later; {before:.0} / {during:.0} / {after:.0} pairs/s before / during / after",
                    at.as_secs_f64(),
                    restart.as_secs_f64()
                ),
                _ => "–".to_owned(),
            };
            rows.push(format!(
                "| {store} | {replicas} | {} + {} | {:.0} | {:.1} / {:.1} ms | {} | {} ({} no answer, {} race losers) | {} | {} | {kill} |",
                report.pairs,
                report.races,
                report.pairs_per_sec(),
                ms(p50),
                ms(p99),
                report.errors,
                report.retried,
                report.no_answer,
                report.race_losers,
                report.lost,
                report.inconsistent,
            ));
            json_rows.push(format!(
                "{{\"store\":\"{store}\",\"replicas\":{replicas},\"pairs\":{},\"races\":{},\"pairsPerSec\":{:.1},\"p50Ms\":{:.2},\"p99Ms\":{:.2},\"errors\":{},\"retried\":{},\"noAnswer\":{},\"raceLosers\":{},\"lost\":{},\"inconsistent\":{},\"kill\":\"{kill}\"}}",
                report.pairs,
                report.races,
                report.pairs_per_sec(),
                ms(p50),
                ms(p99),
                report.errors,
                report.retried,
                report.no_answer,
                report.race_losers,
                report.lost,
                report.inconsistent,
            ));
        }
    }
    println!(
        "| store | replicas | pairs + races | pairs/s | pair p50 / p99 | errors after one retry | retried | lost | inconsistent | kill |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &rows {
        println!("{row}");
    }
    println!(
        "{{\"pairs\":{pairs},\"races\":{races},\"concurrency\":{concurrency},\"downMs\":{},\"cores\":{},\"loadAverage\":{load},\"rows\":[{}]}}",
        down.as_millis(),
        std::thread::available_parallelism().map_or(0, usize::from),
        json_rows.join(",")
    );
    if failed {
        std::process::exit(1);
    }
}
