//! Bulk backup throughput against `portal-sim` with 20 ms added to every request (rule
//! `*: latency-ms=20`), at concurrency 1, 8, 64 and 256: achieved backups per second versus the
//! ideal for that latency and concurrency,
//!
//! ideal backups/s = concurrency / (requests per backup × latency),
//!
//! where requests per backup is counted by the simulator during the run. Not a criterion bench
//! (one timed run per level, each of seconds, says more than criterion's sampling of it): it
//! writes its results in criterion's file layout under `CRITERION_HOME` (set by
//! `cargo xtask bench`), group `bulk_backup_20ms`, so that the report shows, per concurrency,
//! `baseline_ideal/cNNN` (the ideal time per backup) next to `bulk_backup/cNNN` (the achieved
//! one): *speed vs baseline* is then achieved ÷ ideal throughput. These runs keep the journal
//! (the flow's state directory) on the disk the target directory is on (`CARGO_TARGET_TMPDIR`).
//!
//! # Journal on disk versus tmpfs
//!
//! Then, at concurrency 64 and 256, the same run with the journal on tmpfs (`/dev/shm`, where
//! fsync returns at once) and on disk, one after the other, group `bulk_journal_placement`:
//! `baseline_journal_tmpfs/cNNN` next to `journal_disk/cNNN`, so *speed vs baseline* is what
//! the journal's fsyncs cost. Each line also prints the CPU time of this process (bulk run and
//! simulator, from `/proc/self/stat`) over the wall time, in cores: a run far below the
//! machine's cores waits on something other than the CPU.
//!
//! # Rate limit held
//!
//! The second part (`rate-limit`) runs one bulk backup with the client-side rate limits set
//! ([`RATE_API`], [`RATE_MPC`]: the API host at 20 requests/s, burst 5, the MPC host at 5/s,
//! burst 2, the 4:1 ratio of Portal's published limits) against a simulator that answers 429
//! beyond what those limits allow in any one second (rate + burst). From the simulator's side
//! it records, per host, the busiest second (a sliding window over arrivals) and the 429s
//! answered, writes them to `<CRITERION_HOME>/bulk_rate_limited/rate_limit.json`, and
//! **panics** if any host saw more than its limit allows in one second or answered a 429. In
//! criterion's layout (group `bulk_rate_limited`), `baseline_limit_bound` is the time per
//! backup at the rate the limits allow (min over hosts of rate ÷ that host's requests per
//! backup) next to the achieved `bulk_backup`.
//!
//! Run alone: `cargo bench -p portal-backup-flow --bench bulk_throughput` (prints the tables); add
//! `-- throughput` or `-- rate-limit` for one part.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)] // a benchmark program: a broken fixture should panic; counts are small

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::bulk::BulkOptions;
use backup_flow::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::RateLimit;
use backup_flow::portal_api::{Portal, PortalBuilder};
use backup_flow::{Flow, PortalManaged};
use portal_sim::{Host, HostTraffic, PortalSim, SimConfig};
use serde_json::json;

const LATENCY_MS: u64 = 20;
const GROUP: &str = "bulk_backup_20ms";
/// (concurrency, clients): each level takes a few seconds at its ideal rate.
const LEVELS: [(usize, usize); 4] = [(1, 16), (8, 96), (64, 512), (256, 1024)];
/// The disk-versus-tmpfs comparison: the levels where the journal's syncs can limit.
const JOURNAL_LEVELS: [(usize, usize); 2] = [(64, 512), (256, 1024)];
const JOURNAL_GROUP: &str = "bulk_journal_placement";

struct Level {
    concurrency: usize,
    clients: usize,
    elapsed: Duration,
    requests_per_backup: f64,
    /// CPU time (user + system) of this whole process (bulk run and simulator) during the run.
    cpu: Option<Duration>,
}

impl Level {
    fn achieved(&self) -> f64 {
        self.clients as f64 / self.elapsed.as_secs_f64()
    }
    fn ideal(&self) -> f64 {
        self.concurrency as f64 / (self.requests_per_backup * LATENCY_MS as f64 / 1000.0)
    }
    /// CPU time over wall time, in cores (this machine has [`cores`] of them).
    fn cpu_cores(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() / self.elapsed.as_secs_f64())
    }
}

/// Where a level keeps its journal (the flow's state directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JournalOn {
    /// Under the target directory (`CARGO_TARGET_TMPDIR`): the disk the build is on.
    Disk,
    /// Under `/dev/shm` (tmpfs: fsync returns at once).
    Tmpfs,
}

impl JournalOn {
    fn tempdir(self) -> Option<tempfile::TempDir> {
        let parent = match self {
            Self::Disk => Path::new(env!("CARGO_TARGET_TMPDIR")),
            Self::Tmpfs => Path::new("/dev/shm"),
        };
        std::fs::create_dir_all(parent).ok()?;
        tempfile::tempdir_in(parent).ok()
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disk => "disk",
            Self::Tmpfs => "tmpfs",
        }
    }
}

/// The file system type of the mount holding `path` (`/proc/self/mounts`), if known.
fn fs_type(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "?".into();
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "?".into(), |(_, kind)| kind)
}

/// This process's CPU time so far (user + system, `/proc/self/stat`, at `USER_HZ` = 100).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends with the last ')'): state is field 3, utime 14,
    // stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Client-side limit of the API host in the rate-limit part: 20 requests/s, burst 5.
const RATE_API: (u32, u32) = (1200, 5);
/// Client-side limit of the MPC host: 5 requests/s, burst 2.
const RATE_MPC: (u32, u32) = (300, 2);
const RATE_GROUP: &str = "bulk_rate_limited";
/// (concurrency, clients) of the rate-limit part: about 20 s at the API host's rate.
const RATE_LEVEL: (usize, usize) = (64, 64);

/// `clients` new clients of `sim` with confirmed signing shares, as bulk input lines.
async fn prepare(sim: &PortalSim, clients: usize) -> String {
    let mut input = String::new();
    for _ in 0..clients {
        let (keys, generate) = sim.generated_client().await.unwrap();
        input.push_str(
            &json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
                .to_string(),
        );
        input.push('\n');
    }
    input
}

/// The flow and the transport every line's session goes through.
fn flow(base: PortalBuilder, state: &Path) -> (Flow, Portal) {
    let keyring =
        Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
    (
        Flow::new(keyring, PortalManaged, state).unwrap(),
        base.build().unwrap(),
    )
}

async fn level(concurrency: usize, clients: usize, state: &Path) -> Level {
    let sim = PortalSim::start(SimConfig::new().with_seed(3))
        .await
        .unwrap();
    let input = prepare(&sim, clients).await;
    let (flow, portal) = flow(sim.portal_builder(), state);
    sim.add_fault(format!("*: latency-ms={LATENCY_MS}").parse().unwrap())
        .unwrap();
    sim.reset_report();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let report = flow
        .bulk_backup(
            &portal,
            Cursor::new(input.into_bytes()),
            std::io::sink(),
            BulkOptions::new().with_concurrency(concurrency),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let cpu = cpu_before
        .zip(cpu_time())
        .map(|(before, after)| after - before);
    assert_eq!(
        (report.confirmed, report.failed),
        (clients as u64, 0),
        "{report:?}"
    );
    let sim_report = sim.report();
    assert!(sim_report.is_clean(), "{sim_report}");
    Level {
        concurrency,
        clients,
        elapsed,
        requests_per_backup: sim_report.requests as f64 / clients as f64,
        cpu,
    }
}

/// What one host saw in the rate-limit part, against its client-side limit.
struct HostRate {
    host: Host,
    per_minute: u32,
    burst: u32,
    traffic: HostTraffic,
}

impl HostRate {
    fn per_second(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }
    /// What the limit lets start within any one second: burst + rate x 1 s.
    fn allowed_in_any_second(&self) -> u64 {
        u64::from(self.burst) + u64::from(self.per_minute).div_ceil(60)
    }
    fn held(&self) -> bool {
        self.traffic.busiest_second <= self.allowed_in_any_second() && self.traffic.throttled == 0
    }
}

struct RateRun {
    concurrency: usize,
    clients: usize,
    elapsed: Duration,
    hosts: Vec<HostRate>,
}

impl RateRun {
    fn achieved(&self) -> f64 {
        self.clients as f64 / self.elapsed.as_secs_f64()
    }
    /// Backups per second the limits allow: min over hosts of rate / requests per backup.
    fn bound(&self) -> f64 {
        self.hosts
            .iter()
            .filter(|h| h.traffic.requests > 0)
            .map(|h| h.per_second() / (h.traffic.requests as f64 / self.clients as f64))
            .fold(f64::INFINITY, f64::min)
    }
}

async fn rate_limited(concurrency: usize, clients: usize) -> RateRun {
    let limits = [(Host::Api, RATE_API), (Host::Mpc, RATE_MPC)];
    let sim = PortalSim::start(SimConfig::new().with_seed(4))
        .await
        .unwrap();
    let input = prepare(&sim, clients).await;
    // The simulator answers 429 beyond what the client's limit allows in any second.
    for (host, (per_minute, burst)) in limits {
        let allowed = u64::from(burst) + u64::from(per_minute).div_ceil(60);
        sim.set_rate_limit(host, Some(u32::try_from(allowed).unwrap()));
    }
    let state = tempfile::tempdir().unwrap();
    let (flow, portal) = flow(
        sim.portal_builder()
            .with_api_rate_limit(RateLimit::per_minute(RATE_API.0).with_burst(RATE_API.1))
            .with_mpc_rate_limit(RateLimit::per_minute(RATE_MPC.0).with_burst(RATE_MPC.1)),
        state.path(),
    );
    sim.add_fault(format!("*: latency-ms={LATENCY_MS}").parse().unwrap())
        .unwrap();
    // Preparing ran unthrottled; let its second pass, then count from zero.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.reset_report();
    let started = Instant::now();
    let report = flow
        .bulk_backup(
            &portal,
            Cursor::new(input.into_bytes()),
            std::io::sink(),
            BulkOptions::new().with_concurrency(concurrency),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        (report.confirmed, report.failed),
        (clients as u64, 0),
        "{report:?}"
    );
    let sim_report = sim.report();
    assert!(sim_report.is_clean(), "{sim_report}");
    RateRun {
        concurrency,
        clients,
        elapsed,
        hosts: limits
            .iter()
            .map(|(host, (per_minute, burst))| HostRate {
                host: *host,
                per_minute: *per_minute,
                burst: *burst,
                traffic: *sim_report.traffic.host(*host),
            })
            .collect(),
    }
}

fn rate_limit_part(runtime: &tokio::runtime::Runtime, home: Option<&Path>, smoke: bool) {
    let (concurrency, clients) = if smoke { (8, 4) } else { RATE_LEVEL };
    let run = runtime.block_on(rate_limited(concurrency, clients));
    println!(
        "\nbulk backup with client-side rate limits, {LATENCY_MS} ms per request, concurrency \
         {concurrency}, {clients} clients: {:.2} backups/s, the limits allow {:.2}/s ({:.3})",
        run.achieved(),
        run.bound(),
        run.achieved() / run.bound()
    );
    for h in &run.hosts {
        println!(
            "  {}: limit {:.1}/s (burst {}), so at most {} in any 1 s window; max observed {} \
             in any 1 s window, {} requests, 429s: {}{}",
            h.host,
            h.per_second(),
            h.burst,
            h.allowed_in_any_second(),
            h.traffic.busiest_second,
            h.traffic.requests,
            h.traffic.throttled,
            if h.held() { "" } else { "  <-- LIMIT EXCEEDED" }
        );
    }
    if let (Some(home), false) = (home, smoke) {
        write_result(
            home,
            RATE_GROUP,
            "baseline_limit_bound",
            None,
            1e9 / run.bound(),
        );
        write_result(home, RATE_GROUP, "bulk_backup", None, 1e9 / run.achieved());
        let hosts: Vec<_> = run
            .hosts
            .iter()
            .map(|h| {
                json!({
                    "host": h.host.to_string(),
                    "limitPerSecond": h.per_second(),
                    "burst": h.burst,
                    "allowedInAnySecond": h.allowed_in_any_second(),
                    "busiestSecond": h.traffic.busiest_second,
                    "requests": h.traffic.requests,
                    "throttled": h.traffic.throttled,
                    "held": h.held(),
                })
            })
            .collect();
        std::fs::write(
            home.join(RATE_GROUP).join("rate_limit.json"),
            json!({
                "latencyMs": LATENCY_MS,
                "concurrency": run.concurrency,
                "clients": run.clients,
                "seconds": run.elapsed.as_secs_f64(),
                "backupsPerSecond": run.achieved(),
                "limitBoundPerSecond": run.bound(),
                "hosts": hosts,
            })
            .to_string(),
        )
        .unwrap();
    }
    for h in &run.hosts {
        assert!(
            h.held(),
            "RATE LIMIT EXCEEDED on the {} host: {} requests within one second (the limit \
             allows {}), {} answered 429",
            h.host,
            h.traffic.busiest_second,
            h.allowed_in_any_second(),
            h.traffic.throttled
        );
    }
}

/// One result in criterion's layout: `<home>/<group>/<function>[/<parameter>]/new/`.
fn write_result(home: &Path, group: &str, function: &str, parameter: Option<&str>, median_ns: f64) {
    let mut dir = home.join(group).join(function);
    let mut id = format!("{group}/{function}");
    if let Some(parameter) = parameter {
        dir = dir.join(parameter);
        id = format!("{id}/{parameter}");
    }
    let dir = dir.join("new");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("benchmark.json"),
        json!({
            "group_id": group,
            "function_id": function,
            "value_str": parameter,
            "throughput": {"Elements": 1},
            "full_id": id,
            "directory_name": id,
            "title": id,
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("estimates.json"),
        json!({"median": {"point_estimate": median_ns}, "mean": {"point_estimate": median_ns}})
            .to_string(),
    )
    .unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else: run a
    // smoke-sized pass there. `throughput` or `rate-limit` selects one part.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let parts: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| parts.is_empty() || parts.contains(&part);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = std::env::var_os("CRITERION_HOME").map(std::path::PathBuf::from);
    if wants("throughput") {
        throughput_part(&runtime, home.as_deref(), smoke);
    }
    if wants("rate-limit") {
        rate_limit_part(&runtime, home.as_deref(), smoke);
    }
}

fn throughput_part(runtime: &tokio::runtime::Runtime, home: Option<&Path>, smoke: bool) {
    let disk = JournalOn::Disk.tempdir().unwrap();
    println!(
        "bulk backup, Portal-managed store, {LATENCY_MS} ms per request \
         (ideal = concurrency / (requests per backup x latency)), journal on {} ({}); \
         cpu = CPU time of the bulk run and the simulator (one process) / wall time, of {} cores",
        JournalOn::Disk.name(),
        fs_type(disk.path()),
        cores()
    );
    println!(
        "concurrency  clients  requests/backup  achieved/s  ideal/s  achieved/ideal  cpu (cores)"
    );
    for (concurrency, clients) in LEVELS {
        let clients = if smoke { 4 } else { clients };
        let state = JournalOn::Disk.tempdir().unwrap();
        let result = runtime.block_on(level(concurrency, clients, state.path()));
        print_level(&result);
        if let (Some(home), false) = (home, smoke) {
            let parameter = format!("c{concurrency:03}");
            let ideal = 1e9 / result.ideal();
            write_result(home, GROUP, "baseline_ideal", Some(&parameter), ideal);
            let achieved = 1e9 / result.achieved();
            write_result(home, GROUP, "bulk_backup", Some(&parameter), achieved);
        }
    }
    journal_part(runtime, home, smoke);
}

fn print_level(result: &Level) {
    println!(
        "{:>11}  {:>7}  {:>15.2}  {:>10.1}  {:>7.1}  {:>14.3}  {:>11}",
        result.concurrency,
        result.clients,
        result.requests_per_backup,
        result.achieved(),
        result.ideal(),
        result.achieved() / result.ideal(),
        result
            .cpu_cores()
            .map_or_else(|| "?".into(), |c| format!("{c:.2}"))
    );
}

/// The journal on disk versus on tmpfs, at the concurrency levels where it matters, in one run.
fn journal_part(runtime: &tokio::runtime::Runtime, home: Option<&Path>, smoke: bool) {
    let Some(probe) = JournalOn::Tmpfs.tempdir() else {
        println!("\nno /dev/shm here: the disk-versus-tmpfs journal comparison is skipped");
        return;
    };
    drop(probe);
    println!(
        "\nthe same, journal on disk ({}) versus tmpfs ({}), side by side",
        fs_type(Path::new(env!("CARGO_TARGET_TMPDIR"))),
        fs_type(Path::new("/dev/shm"))
    );
    println!(
        "journal  concurrency  clients  requests/backup  achieved/s  ideal/s  achieved/ideal  cpu (cores)"
    );
    for (concurrency, clients) in JOURNAL_LEVELS {
        let clients = if smoke { 4 } else { clients };
        for on in [JournalOn::Tmpfs, JournalOn::Disk] {
            let state = on.tempdir().unwrap();
            let result = runtime.block_on(level(concurrency, clients, state.path()));
            print!("{:>7}  ", on.name());
            print_level(&result);
            if let (Some(home), false) = (home, smoke) {
                let parameter = format!("c{concurrency:03}");
                let function = match on {
                    JournalOn::Tmpfs => "baseline_journal_tmpfs",
                    JournalOn::Disk => "journal_disk",
                };
                let achieved = 1e9 / result.achieved();
                write_result(home, JOURNAL_GROUP, function, Some(&parameter), achieved);
            }
        }
    }
}
