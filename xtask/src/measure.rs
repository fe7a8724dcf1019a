//! The measurements of `cargo xtask bench` that are not criterion benches: the machine's facts,
//! the rate-limit run's figures (written by the `bulk_throughput` bench), the peak RSS of bulk
//! runs (the `bulk_rss` example against the `portal-sim` binary, each in a process of its
//! own), the latency of every store (the `store_latency` example) and the clean build time and dependency count of crates with few and with all
//! features. Each returns a JSON [`Value`] that `bench` keeps in `docs/benchmarks.json` and
//! renders into `docs/benchmarks.md`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::{self, Error, Result};
use crate::json::{self, Value, object};

fn num(n: f64) -> Value {
    Value::Number(n)
}

#[allow(
    clippy::cast_precision_loss,
    reason = "counts far below 2^52 shown as JSON numbers"
)]
fn count(n: u64) -> Value {
    Value::Number(n as f64)
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn field(value: &Value, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}

// ---- the machine -------------------------------------------------------------------------

/// Date, cores, CPU model and memory of this machine, recorded with every section.
pub(crate) fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    object([
        ("date", text(utc_date(secs))),
        ("cores", count(u64::try_from(cores).unwrap_or(0))),
        (
            "cpu",
            text(cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into())),
        ),
        (
            "memory_mib",
            status_kib(&meminfo, "MemTotal").map_or(Value::Null, |k| count(k / 1024)),
        ),
    ])
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "calendar arithmetic on u64 seconds divided down to days; cannot overflow"
)]
fn utc_date(secs: u64) -> String {
    let days = secs / 86_400;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil-from-days, for days since 1970-01-01 (non-negative).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// A `Name:   1234 kB` field of `/proc/<pid>/status` or `/proc/meminfo`, in KiB.
pub(crate) fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
}

// ---- rate limit held -----------------------------------------------------------------------

/// The rate-limit run's figures, as the bench wrote them; fails if any host saw more than
/// its limit allows in one second or answered a 429 (the bench itself panics first).
pub(crate) fn rate_limit(file: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::msg(format!("{}: {e}", file.display())))?;
    let value = json::parse(&text)?;
    for host in value.get("hosts").map(Value::as_array).unwrap_or_default() {
        let held = host.get("held") == Some(&Value::Bool(true));
        if !held {
            return Err(Error::msg(format!(
                "RATE LIMIT EXCEEDED: {}",
                rate_line(host)
            )));
        }
    }
    Ok(value)
}

fn rate_line(host: &Value) -> String {
    let f = |k: &str| field(host, k).unwrap_or(f64::NAN);
    format!(
        "{}: limit {:.1}/s (burst {}), max observed {} in any 1 s window (at most {} allowed), \
         429s: {}",
        host.get("host").and_then(Value::as_str).unwrap_or("?"),
        f("limitPerSecond"),
        f("burst"),
        f("busiestSecond"),
        f("allowedInAnySecond"),
        f("throttled"),
    )
}

pub(crate) fn rate_limit_markdown(value: &Value, md: &mut String) {
    let f = |k: &str| field(value, k).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "## Rate limit held\n\n\
         One bulk backup of {} clients at concurrency {} against `portal-sim` with {} ms added to \
         every request, with the client-side rate limits set (`with_api_rate_limit`, \
         `with_mpc_rate_limit`); the simulator counts, per Portal host, the requests that \
         arrived within every sliding 1 s window, and answers 429 beyond what the limit allows \
         (rate × 1 s + burst). The bench fails if a host saw more or answered any 429. \
         Throughput: {:.2} backups/s, where the limits allow {:.2}/s ({:.3} of it; the \
         criterion-style row `bulk_rate_limited` above has the same ratio).\n",
        f("clients"),
        f("concurrency"),
        f("latencyMs"),
        f("backupsPerSecond"),
        f("limitBoundPerSecond"),
        f("backupsPerSecond") / f("limitBoundPerSecond"),
    );
    md.push_str(
        "| host | limit | burst | allowed in any 1 s | max observed in any 1 s window | requests | 429s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for host in value.get("hosts").map(Value::as_array).unwrap_or_default() {
        let h = |k: &str| field(host, k).unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "| {} | {:.1}/s | {} | {} | {} | {} | {} |",
            host.get("host").and_then(Value::as_str).unwrap_or("?"),
            h("limitPerSecond"),
            h("burst"),
            h("allowedInAnySecond"),
            h("busiestSecond"),
            h("requests"),
            h("throttled"),
        );
    }
    md.push('\n');
    for host in value.get("hosts").map(Value::as_array).unwrap_or_default() {
        let _ = writeln!(md, "* {}", rate_line(host));
    }
    md.push('\n');
}

// ---- peak RSS of bulk runs -------------------------------------------------------------------

/// Client counts of the RSS runs unless `PORTAL_BACKUP_BENCH_RSS_CLIENTS` (comma-separated)
/// says otherwise.
const RSS_CLIENTS: &[u64] = &[1_000, 10_000, 100_000];
/// Concurrency of the measured bulk runs.
const RSS_CONCURRENCY: u64 = 32;

/// A running `portal-sim`, killed (by its own pid) and reaped when dropped.
struct Sim {
    child: Child,
    url: String,
    /// Its stdout, kept open: it prints a few lines at start and must not hit a closed pipe.
    _stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base URL from the simulator's first line, `portal-sim listening on http://…`.
fn listen_url(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("portal-sim listening on ")
        .filter(|url| url.starts_with("http://127.0.0.1:"))
        .map(str::to_owned)
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn start_sim(binary: &Path, custodian_key: &str) -> Result<Sim> {
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--seed", "11", "--log", "warn"])
        .env("PORTAL_SIM_CUSTODIAN_API_KEY", custodian_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::msg(format!("could not start portal-sim: {e}")))?;
    let mut stdout = child.stdout.take().map(BufReader::new);
    let mut sim = Sim {
        child,
        url: String::new(),
        _stdout: None,
    };
    let mut first = String::new();
    if let Some(out) = stdout.as_mut() {
        out.read_line(&mut first)?;
    }
    sim._stdout = stdout;
    // On failure the guard stops the simulator.
    sim.url = listen_url(&first)
        .ok_or_else(|| Error::msg(format!("portal-sim did not say where: {first:?}")))?;
    Ok(sim)
}

/// Runs the `bulk_rss` example for every client count; the simulator runs in a process of its
/// own (its state grows with the clients), the journal on tmpfs when there is one.
pub(crate) fn rss(root: &Path, target_dir: &Path) -> Result<Value> {
    for (package, kind, name) in [
        ("portal-backup-sim", "--bin", "portal-sim"),
        ("portal-backup-flow", "--example", "bulk_rss"),
    ] {
        cmd::cargo(root)
            .args(["build", "--release", "--locked", "-p", package, kind, name])
            .run()?;
    }
    let sim_binary = target_dir.join("release").join("portal-sim");
    let example = target_dir.join("release").join("examples").join("bulk_rss");
    let clients = match std::env::var("PORTAL_BACKUP_BENCH_RSS_CLIENTS") {
        Ok(list) => parse_counts(&list)?,
        Err(_) => RSS_CLIENTS.to_vec(),
    };
    let shm = Path::new("/dev/shm");
    let journal_on_tmpfs = shm.is_dir();
    let id = std::process::id();
    let work = target_dir.join(format!("bench-rss-{id}"));
    let state_root = if journal_on_tmpfs {
        shm.join(format!("portal-backup-bench-rss-{id}"))
    } else {
        work.clone()
    };
    let result = rss_runs(&sim_binary, &example, &clients, &work, &state_root);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&state_root);
    let mut runs = result?;
    let first_hwm = runs.first().and_then(|r| field(r, "vmHwmKib"));
    for run in &mut runs {
        if let (Value::Object(members), Some(first)) = (&mut *run, first_hwm) {
            let hwm = members
                .iter()
                .find(|(k, _)| k == "vmHwmKib")
                .and_then(|(_, v)| v.as_f64());
            if let Some(hwm) = hwm {
                members.push(("ratioToFirst".into(), num(hwm / first)));
            }
        }
    }
    Ok(object([
        ("concurrency", count(RSS_CONCURRENCY)),
        ("journalOnTmpfs", Value::Bool(journal_on_tmpfs)),
        ("runs", Value::Array(runs)),
    ]))
}

fn parse_counts(list: &str) -> Result<Vec<u64>> {
    list.split(',')
        .map(|n| {
            n.trim()
                .replace('_', "")
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::msg(format!("not a client count: {n:?}")))
        })
        .collect()
}

fn rss_runs(
    sim_binary: &Path,
    example: &Path,
    clients: &[u64],
    work: &Path,
    state_root: &Path,
) -> Result<Vec<Value>> {
    let mut runs = Vec::new();
    for &n in clients {
        std::fs::create_dir_all(work)?;
        std::fs::create_dir_all(state_root)?;
        let key = random_hex()?;
        let sim = start_sim(sim_binary, &key)?;
        let input = work.join(format!("input-{n}.jsonl"));
        let state = state_root.join(format!("state-{n}"));
        println!("bulk RSS: preparing {n} clients at {}", sim.url);
        let prepared = Instant::now();
        cmd::Cmd::new(example, work)
            .env("PORTAL_SIM_URL", &sim.url)
            .secret_env("PORTAL_SIM_CUSTODIAN_API_KEY", &key)
            .arg("prepare")
            .arg(n.to_string())
            .arg(&input)
            .run()?;
        let prepare_seconds = prepared.elapsed().as_secs_f64();
        let out = cmd::Cmd::new(example, work)
            .env("PORTAL_SIM_URL", &sim.url)
            .arg("run")
            .arg(&input)
            .arg(&state)
            .arg(RSS_CONCURRENCY.to_string())
            .read()?;
        let sim_status =
            std::fs::read_to_string(format!("/proc/{}/status", sim.child.id())).unwrap_or_default();
        drop(sim);
        let line = out
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| Error::msg(format!("bulk_rss printed no result: {out:?}")))?;
        let mut run = json::parse(line)?;
        if field(&run, "failed") != Some(0.0) || field(&run, "confirmed") != Some(n as f64) {
            return Err(Error::msg(format!(
                "bulk RSS run of {n} clients failed: {line}"
            )));
        }
        if let Value::Object(members) = &mut run {
            members.push(("prepareSeconds".into(), num(prepare_seconds)));
            members.push((
                "simVmHwmKib".into(),
                status_kib(&sim_status, "VmHWM").map_or(Value::Null, count),
            ));
        }
        println!("bulk RSS: {}", run.to_json().replace('\n', " "));
        runs.push(run);
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_dir_all(&state);
    }
    Ok(runs)
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

pub(crate) fn rss_markdown(value: &Value, md: &mut String) {
    let tmpfs = value.get("journalOnTmpfs") == Some(&Value::Bool(true));
    let _ = writeln!(
        md,
        "## Peak memory of a bulk run\n\n\
         `crates/backup-flow/examples/bulk_rss.rs`: one bulk backup of N clients \
         (`Flow::bulk_backup`, concurrency {}, local KEK, Portal-managed ciphertexts, no added \
         latency, result lines discarded) in a process of its own, which reads its peak \
         resident set (`VmHWM` in `/proc/self/status`) at the end. The simulator keeps every \
         client's shares and ciphertexts, so it grows with N: it runs as the `portal-sim` \
         binary in another process, and its own peak is shown separately, not counted. The \
         input is prepared by a third process (not counted). The journal (one file per \
         backup, kept) is {}.\n",
        field(value, "concurrency").unwrap_or(f64::NAN),
        if tmpfs {
            "on tmpfs (`/dev/shm`), so that the figures measure memory, not this machine's \
             disk (the journal's fsyncs, four per backup, dominate a bulk run without \
             latency; see `bulk_journal_placement`); the memory of the bulk process does \
             not depend on where the journal is"
        } else {
            "on disk (no tmpfs found)"
        }
    );
    md.push_str(
        "| clients | peak RSS (VmHWM) | ÷ peak at the first N | RSS at the end | bulk run | backups/s | simulator's peak (other process) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in value.get("runs").map(Value::as_array).unwrap_or_default() {
        let f = |k: &str| field(run, k).unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} | {:.1} s | {:.0} | {} |",
            f("clients"),
            mib(f("vmHwmKib")),
            f("ratioToFirst"),
            mib(f("vmRssKib")),
            f("seconds"),
            f("backupsPerSecond"),
            mib(f("simVmHwmKib")),
        );
    }
    md.push('\n');
}

// ---- store latency ------------------------------------------------------------------------

/// The features of the `store_latency` example that give every row of its table.
const STORE_FEATURES: &str = "fs,postgres,s3,azure,gcs,replicated";

/// Runs the `storage` crate's `store_latency` example in release mode with every store
/// (moto, Azurite and PostgreSQL installed first when missing; the example starts them on
/// loopback and fails, not skips, when one is unusable) and returns its figures and table.
pub(crate) fn stores(root: &Path, target_dir: &Path) -> Result<Value> {
    let tools = target_dir.join("tools");
    // A directory given in the environment (as for the tests) is used as it is.
    let moto = match std::env::var_os(test_services::moto::PYTHONPATH_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => crate::tools::python_library(root, &tools, crate::tools::MOTO)?,
    };
    let azurite = match std::env::var_os(crate::azurite::DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => crate::azurite::install(root, &tools)?,
    };
    crate::postgres::install(root)?;
    cmd::cargo(root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "portal-backup-storage",
        ])
        .args(["--example", "store_latency", "--features", STORE_FEATURES])
        .run()?;
    let example = target_dir
        .join("release")
        .join("examples")
        .join("store_latency");
    let out = cmd::Cmd::new(example, root)
        .env(test_services::XTASK_ENV, "1")
        .env(test_services::moto::PYTHONPATH_ENV, &moto)
        .env(crate::azurite::DIR_ENV, &azurite)
        .read()?;
    print!("{out}");
    stores_result(&out)
}

/// The example's JSON line plus its Markdown table; fails when a store left objects behind.
fn stores_result(out: &str) -> Result<Value> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| Error::msg(format!("store_latency printed no result: {out:?}")))?;
    let mut result = json::parse(line)?;
    let rows = result.get("rows").map(Value::as_array).unwrap_or_default();
    if rows.is_empty() {
        return Err(Error::msg("store_latency measured no store"));
    }
    if let Some(row) = rows.iter().find(|r| field(r, "left") != Some(0.0)) {
        return Err(Error::msg(format!(
            "store_latency: objects left behind: {}",
            row.to_json()
        )));
    }
    let table: String = out
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Value::Object(members) = &mut result {
        members.push(("table".into(), text(table)));
    }
    Ok(result)
}

pub(crate) fn stores_markdown(value: &Value, md: &mut String) {
    let n = |k: &str| field(value, k).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "## Store latency\n\n\
         `crates/storage/examples/store_latency.rs` ({} build), every store of the `storage` \
         crate in one process: per store {} sequential 1 KiB create-only puts, overwrites and \
         gets (p50/p99), then {} create-only puts and {} gets of other keys from {} tasks, then \
         {} puts and gets of a 5 MiB body; afterwards every key is deleted and *left* counts \
         what the store still lists (must be 0). The file-system store (a temporary directory) \
         is the baseline: `×` is time ÷ the fs store's time (for a rate, the fs rate ÷ this \
         rate; 2.00 = half as fast). PostgreSQL is a throwaway server on loopback with its \
         defaults (`fsync` and `synchronous_commit` on); S3 is moto and Azure is Azurite, both \
         on loopback (moto is a Python development server), and GCS an in-process fake: those \
         rows measure the client plus an emulator, not the clouds. The replicated rows write \
         both replicas (quorum 2).\n",
        if value.get("release") == Some(&Value::Bool(true)) {
            "release"
        } else {
            "debug"
        },
        n("ops"),
        n("ops"),
        n("ops"),
        n("concurrency"),
        n("largeOps"),
    );
    md.push_str(value.get("table").and_then(Value::as_str).unwrap_or(""));
    md.push('\n');
}

// ---- build time and dependency count -----------------------------------------------------

/// `(crate, variant, cargo feature arguments)`: what a team that picks features pays.
const BUILDS: &[(&str, &str, &[&str])] = &[
    (
        "portal-backup-envelope",
        "minimal (local key only)",
        &["--no-default-features"],
    ),
    (
        "portal-backup-envelope",
        "all KMS backends (aws-kms gcp-kms pkcs11)",
        &[
            "--no-default-features",
            "--features",
            "aws-kms,gcp-kms,pkcs11",
        ],
    ),
    (
        "portal-backup-storage",
        "minimal (no features)",
        &["--no-default-features"],
    ),
    (
        "portal-backup-storage",
        "all stores (fs portal postgres s3 gcs azure)",
        &[
            "--no-default-features",
            "--features",
            "fs,portal,postgres,s3,gcs,azure",
        ],
    ),
];

/// The distinct packages in `cargo tree --prefix none` output, the root excluded: each line
/// is `name vX.Y.Z [(path)] [(*)]`; repeats and markers are folded.
fn count_deps(tree: &str, root: &str) -> usize {
    let packages: BTreeSet<(&str, &str)> = tree
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .filter(|(name, version)| version.starts_with('v') && *name != root)
        .collect();
    packages.len()
}

/// Clean `cargo build` (dev profile) of each crate and feature set in a fresh target
/// directory, removed afterwards, and its dependency count.
pub(crate) fn build(root: &Path, target_dir: &Path) -> Result<Value> {
    let scratch: PathBuf = target_dir.join(format!("bench-build-{}", std::process::id()));
    let mut rows = Vec::new();
    for (package, variant, features) in BUILDS {
        let tree = cmd::cargo(root)
            .args([
                "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
            ])
            .args(*features)
            .read()?;
        let deps = count_deps(&tree, package);
        let _ = std::fs::remove_dir_all(&scratch);
        let started = Instant::now();
        let built = cmd::cargo(root)
            .env("CARGO_TARGET_DIR", &scratch)
            .args(["build", "--locked", "-p", package])
            .args(*features)
            .run();
        let seconds = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&scratch);
        built?;
        println!("build: {package} {variant}: {deps} dependencies, {seconds:.1} s");
        rows.push(object([
            ("crate", text(*package)),
            ("variant", text(*variant)),
            ("args", text(features.join(" "))),
            (
                "dependencies",
                count(u64::try_from(deps).unwrap_or(u64::MAX)),
            ),
            ("seconds", num(seconds)),
        ]));
    }
    Ok(object([("builds", Value::Array(rows))]))
}

pub(crate) fn build_markdown(value: &Value, md: &mut String) {
    md.push_str(
        "## Build time and dependencies by feature set\n\n\
         A clean `cargo build -p <crate>` (dev profile) into a fresh target directory, and the \
         number of distinct packages in `cargo tree -e normal` (the crate itself excluded), \
         for the fewest and for all backend features. *÷ minimal* is the all-features figure \
         divided by the minimal one. Other work on the machine during the run makes build \
         times noisy; compare the ratios.\n\n\
         | crate | features | dependencies | ÷ minimal | clean build | ÷ minimal |\n\
         | --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    let builds = value.get("builds").map(Value::as_array).unwrap_or_default();
    for row in builds {
        let name = row.get("crate").and_then(Value::as_str).unwrap_or("?");
        let minimal = builds
            .iter()
            .find(|b| b.get("crate").and_then(Value::as_str) == Some(name));
        let f = |v: &Value, k: &str| field(v, k).unwrap_or(f64::NAN);
        let ratio = |k: &str| minimal.map_or(f64::NAN, |m| f(row, k) / f(m, k));
        let _ = writeln!(
            md,
            "| {name} | {} (`{}`) | {} | {:.2} | {:.1} s | {:.2} |",
            row.get("variant").and_then(Value::as_str).unwrap_or("?"),
            row.get("args").and_then(Value::as_str).unwrap_or(""),
            f(row, "dependencies"),
            ratio("dependencies"),
            f(row, "seconds"),
            ratio("seconds"),
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_and_cpu_model() {
        let status = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t 900 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(12345));
        assert_eq!(status_kib(status, "VmRSS"), Some(900));
        assert_eq!(status_kib(status, "Vm"), None);
        assert_eq!(
            status_kib("MemTotal:       24684032 kB\n", "MemTotal"),
            Some(24_684_032)
        );
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_795_913_290), "2026-11-29 00:48 UTC");
    }

    #[test]
    fn listen_lines_and_counts() {
        assert_eq!(
            listen_url("portal-sim listening on http://127.0.0.1:4312\n").as_deref(),
            Some("http://127.0.0.1:4312")
        );
        assert_eq!(
            listen_url("portal-sim listening on http://10.0.0.1:1"),
            None
        );
        assert_eq!(listen_url(""), None);
        assert_eq!(parse_counts("1000, 10_000").unwrap(), [1000, 10_000]);
        assert!(parse_counts("10,x").is_err());
        assert!(parse_counts("0").is_err());
    }

    #[test]
    fn dependency_count_folds_repeats_and_the_root() {
        let tree = "envelope v0.1.0 (/somewhere/crates/envelope)\n\
                    aes-gcm v0.10.3\n\
                    aead v0.5.2\n\
                    generic-array v0.14.7\n\
                    aead v0.5.2 (*)\n\
                    serde_derive v1.0.0 (proc-macro)\n\
                    \n";
        assert_eq!(count_deps(tree, "envelope"), 4);
    }

    #[test]
    fn sections_render_with_ratios_and_a_broken_limit_fails() {
        let rate = json::parse(
            r#"{"latencyMs":20,"concurrency":64,"clients":64,"seconds":19.0,"backupsPerSecond":3.37,
               "limitBoundPerSecond":3.33,"hosts":[{"host":"api","limitPerSecond":20,"burst":5,
               "allowedInAnySecond":25,"busiestSecond":24,"requests":384,"throttled":0,"held":true}]}"#,
        )
        .unwrap();
        let mut md = String::new();
        rate_limit_markdown(&rate, &mut md);
        assert!(
            md.contains("| api | 20.0/s | 5 | 25 | 24 | 384 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("api: limit 20.0/s (burst 5), max observed 24 in any 1 s window"),
            "{md}"
        );
        let dir = std::env::temp_dir().join(format!("xtask-rate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rate_limit.json");
        std::fs::write(&file, rate.to_json()).unwrap();
        assert!(rate_limit(&file).is_ok());
        let exceeded = rate
            .to_json()
            .replace("\"busiestSecond\": 24", "\"busiestSecond\": 30")
            .replace("\"held\": true", "\"held\": false");
        std::fs::write(&file, exceeded).unwrap();
        let err = rate_limit(&file).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.contains("RATE LIMIT EXCEEDED") && err.contains("max observed 30"),
            "{err}"
        );

        let rss = json::parse(
            r#"{"concurrency":32,"journalOnTmpfs":true,"runs":[
               {"clients":1000,"vmHwmKib":15360,"vmRssKib":10240,"seconds":1.5,"backupsPerSecond":666,"ratioToFirst":1,"simVmHwmKib":92160},
               {"clients":10000,"vmHwmKib":16896,"vmRssKib":10240,"seconds":15,"backupsPerSecond":666,"ratioToFirst":1.1,"simVmHwmKib":921600}]}"#,
        )
        .unwrap();
        let mut md = String::new();
        rss_markdown(&rss, &mut md);
        assert!(
            md.contains("| 10000 | 16.5 MiB | 1.100 | 10.0 MiB | 15.0 s | 666 | 900.0 MiB |"),
            "{md}"
        );

        let build = json::parse(
            r#"{"builds":[{"crate":"envelope","variant":"minimal","args":"--no-default-features","dependencies":40,"seconds":20},
                          {"crate":"envelope","variant":"all","args":"--features x","dependencies":300,"seconds":250}]}"#,
        )
        .unwrap();
        let mut md = String::new();
        build_markdown(&build, &mut md);
        assert!(
            md.contains("| envelope | all (`--features x`) | 300 | 7.50 | 250.0 s | 12.50 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| envelope | minimal (`--no-default-features`) | 40 | 1.00 | 20.0 s | 1.00 |"
            ),
            "{md}"
        );
    }

    #[test]
    fn the_store_table_is_kept_and_objects_left_behind_fail() {
        let row = |store: &str, left: u32| {
            format!(
                r#"{{"store":"{store}","createP50Ms":0.1,"createP99Ms":0.2,"overwriteP50Ms":0.1,"getP50Ms":0.01,"getP99Ms":0.02,"concurrentPutsPerSecond":9000,"concurrentGetsPerSecond":20000,"largePutMibPerSecond":900,"largeGetMibPerSecond":2000,"left":{left}}}"#
            )
        };
        let out = |left: u32| {
            format!(
                "300 sequential …\n\n| store | put create p50 |\n| --- | ---: |\n| fs | 0.100 ms |\n\n\
                 {{\"ops\":300,\"concurrency\":16,\"largeOps\":6,\"release\":true,\"rows\":[{},{}]}}\n",
                row("fs", 0),
                row("s3", left)
            )
        };
        let value = stores_result(&out(0)).unwrap();
        let mut md = String::new();
        stores_markdown(&value, &mut md);
        assert!(md.starts_with("## Store latency"), "{md}");
        assert!(
            md.contains("(release build)") && md.contains("from 16 tasks"),
            "{md}"
        );
        assert!(
            md.ends_with("| store | put create p50 |\n| --- | ---: |\n| fs | 0.100 ms |\n\n"),
            "{md}"
        );
        let again = json::parse(&value.to_json()).unwrap();
        assert_eq!(again.get("table"), value.get("table"));
        let err = stores_result(&out(2)).unwrap_err().to_string();
        assert!(err.contains("left behind") && err.contains("s3"), "{err}");
        assert!(stores_result("no json here").is_err());
    }
}
