//! `cargo xtask bench [section...]`: run benchmark sections, then write `docs/benchmarks.md`
//! and `docs/benchmarks.json`.
//!
//! Sections ([`SECTIONS`]): `envelope` and `bulk` (criterion results), `rate` (a bulk run
//! under rate limits, checked from the simulator's side), `rss`, `stores` and `build` (see
//! [`measure`]), and `replicas` (the custodian webhook's replicas example). Without arguments every section but the slow `build` runs; `all` runs every
//! one. The figures of sections not run are kept from the JSON, with the date and machine of
//! the run that measured them.
//!
//! # The baseline convention
//!
//! Within one criterion group, the benchmark whose id starts with `baseline` is the reference
//! (for example raw AES-256-GCM next to our envelope seal+open of the same bytes). Every other
//! benchmark of the group is reported with two ratios against it:
//!
//! * `time ÷ baseline` = median time of the benchmark ÷ median time of the baseline
//!   (1.25 means 25 % slower than the baseline);
//! * `speed vs baseline` = the inverse (0.8 means "0.8x of the baseline's speed").
//!
//! A group may hold several baselines when its benchmarks are parameterized
//! (`BenchmarkId::new("baseline_raw", "4KiB")`): each benchmark is then compared with the
//! baseline of the same parameter, falling back to the group's only baseline. Groups without a
//! baseline get no ratios. Only results written by this run are reported; criterion keeps older
//! ones (renamed or removed benches) on disk, and those are ignored.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cmd::{self, Error, Result};
use crate::json::{self, Value};
use crate::measure;

/// The sections of `cargo xtask bench`, in the order they run: `(name, what it measures)`.
pub(crate) const SECTIONS: &[(&str, &str)] = &[
    (
        "envelope",
        "criterion: envelope seal+open versus raw AES-256-GCM",
    ),
    (
        "bulk",
        "bulk backup throughput against portal-sim with 20 ms per request",
    ),
    (
        "rate",
        "a bulk run under client-side rate limits; the simulator counts every 1 s window",
    ),
    (
        "verify",
        "store-wide verify on the file store behind a KEK with 5 ms per call, concurrency 1 and 64",
    ),
    (
        "rss",
        "peak RSS of bulk runs of 1,000, 10,000 and 100,000 clients",
    ),
    (
        "stores",
        "put/get latency and throughput of every store, the file-system store as baseline",
    ),
    (
        "replicas",
        "custodian webhook: 1 and 3 replicas over one PostgreSQL and one S3 store, one replica killed",
    ),
    (
        "fleet",
        "store-wide verify, rotate and migrate of 10,000 backups on the file store, PostgreSQL and S3 behind KEKs with 5 ms per call, and the peak RSS of store-wide verify",
    ),
    (
        "status",
        "status over 10,000 clients of one custodian in portal-sim: Portal requests per client and the time under Portal's 200 a minute",
    ),
    (
        "build",
        "clean build time and dependency count, minimal versus all features (slow)",
    ),
];

/// What `cargo xtask bench` runs without arguments: every section but `build`.
const DEFAULT_SECTIONS: &[&str] = &[
    "envelope", "bulk", "rate", "verify", "rss", "stores", "replicas", "fleet", "status",
];

/// The id prefix that marks a group's reference benchmark (see the module docs).
const BASELINE_PREFIX: &str = "baseline";

/// Runs the named sections (none: [`DEFAULT_SECTIONS`]; `all`: every one), then rewrites
/// `docs/benchmarks.md` and `docs/benchmarks.json` with their new figures and the last
/// figures of every other section, kept from the JSON.
pub(crate) fn run(root: &Path, args: &[&str]) -> Result {
    if args == ["render"] {
        return render(root);
    }
    let sections = select_sections(args)?;
    let metadata = json::parse(
        &cmd::cargo(root)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .read()?,
    )?;
    let target_dir = metadata
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| Error::msg("cargo metadata: no target_directory"))?;
    // Criterion resolves a relative CARGO_TARGET_DIR against the bench's package directory,
    // not the workspace root; name its output directory explicitly so both sides agree.
    let criterion_dir = target_dir.join("criterion");
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs)?;
    let json_path = docs.join("benchmarks.json");
    let mut doc = match std::fs::read_to_string(&json_path) {
        Ok(text) => Doc::from_json(&json::parse(&text)?),
        Err(_) => Doc::default(),
    };
    // Results older than this were collected by an earlier section of this run.
    let mut floor = SystemTime::UNIX_EPOCH;
    for section in sections {
        println!("== bench section `{section}`");
        let machine = measure::machine();
        match section {
            "envelope" => {
                let rows = criterion(
                    root,
                    &criterion_dir,
                    floor,
                    "portal-backup-envelope",
                    "envelope",
                    &[],
                )?;
                doc.replace_rows(section, rows);
            }
            "bulk" => {
                let rows = criterion(
                    root,
                    &criterion_dir,
                    floor,
                    "portal-backup-flow",
                    "bulk_throughput",
                    &["throughput"],
                )?;
                doc.replace_rows(section, rows);
            }
            "rate" => {
                let since = since(floor);
                let rows = criterion(
                    root,
                    &criterion_dir,
                    floor,
                    "portal-backup-flow",
                    "bulk_throughput",
                    &["rate-limit"],
                )?;
                let file = criterion_dir
                    .join("bulk_rate_limited")
                    .join("rate_limit.json");
                if std::fs::metadata(&file)?.modified()? < since {
                    return Err(Error::msg(
                        "the rate-limit bench wrote no new bulk_rate_limited/rate_limit.json",
                    ));
                }
                doc.rate = Some(measure::rate_limit(&file)?);
                doc.replace_rows(section, rows);
            }
            "verify" => {
                let rows = criterion(
                    root,
                    &criterion_dir,
                    floor,
                    "portal-backup-flow",
                    "store_wide_verify",
                    &[],
                )?;
                doc.replace_rows(section, rows);
            }
            "rss" => doc.rss = Some(measure::rss(root, &target_dir)?),
            "stores" => doc.stores = Some(measure::stores(root, &target_dir)?),
            "replicas" => doc.replicas = Some(replicas(root, &target_dir)?),
            "fleet" => doc.fleet = Some(crate::fleet::run(root, &target_dir)?),
            "status" => doc.status = Some(crate::fleet::run_status(root)?),
            "build" => doc.build = Some(measure::build(root, &target_dir)?),
            other => return Err(Error::msg(format!("unknown bench section `{other}`"))),
        }
        floor = SystemTime::now();
        doc.machines.retain(|(name, _)| name != section);
        doc.machines.push((section.to_owned(), machine));
        doc.machines
            .sort_by_key(|(name, _)| SECTIONS.iter().position(|(s, _)| s == name));
        // Written after every section, so a failure later keeps what was measured.
        std::fs::write(docs.join("benchmarks.md"), doc.markdown())?;
        std::fs::write(&json_path, doc.to_json())?;
        println!("wrote docs/benchmarks.md and docs/benchmarks.json (section `{section}`)");
    }
    Ok(())
}

/// `cargo xtask bench render`: rewrites `docs/benchmarks.md` from `docs/benchmarks.json`
/// without measuring anything, after a change to how a section is written up.
fn render(root: &Path) -> Result {
    let docs = root.join("docs");
    let doc = Doc::from_json(&json::parse(&std::fs::read_to_string(
        docs.join("benchmarks.json"),
    )?)?);
    std::fs::write(docs.join("benchmarks.md"), doc.markdown())?;
    println!("wrote docs/benchmarks.md from docs/benchmarks.json");
    Ok(())
}

fn select_sections<'a>(args: &[&'a str]) -> Result<Vec<&'a str>> {
    match args {
        [] => Ok(DEFAULT_SECTIONS.to_vec()),
        ["all"] => Ok(SECTIONS.iter().map(|(name, _)| *name).collect()),
        names => {
            for name in names {
                if !SECTIONS.iter().any(|(s, _)| s == name) {
                    return Err(Error::msg(format!(
                        "unknown bench section `{name}`; sections: all, {}",
                        SECTIONS
                            .iter()
                            .map(|(s, _)| *s)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            // In the documented order, each once.
            Ok(SECTIONS
                .iter()
                .map(|(s, _)| *s)
                .filter(|s| names.contains(s))
                .collect())
        }
    }
}

/// Where new results start: a little before now, for file systems with coarse modification
/// times, but never before `floor` (the end of the previous section of this run, whose
/// results must not be collected twice).
fn since(floor: SystemTime) -> SystemTime {
    SystemTime::now()
        .checked_sub(Duration::from_secs(2))
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .max(floor)
}

/// Runs one bench target and returns the criterion results it wrote, with ratios.
fn criterion(
    root: &Path,
    criterion_dir: &Path,
    floor: SystemTime,
    package: &str,
    bench: &str,
    bench_args: &[&str],
) -> Result<Vec<Row>> {
    let since = since(floor);
    let mut command = cmd::cargo(root)
        .env("CRITERION_HOME", criterion_dir)
        .args(["bench", "--locked", "-p", package, "--bench", bench]);
    if !bench_args.is_empty() {
        command = command.arg("--").args(bench_args);
    }
    command.run()?;
    let results = collect(criterion_dir, since)?;
    if results.is_empty() {
        return Err(Error::msg(format!(
            "the {bench} bench wrote no criterion results (<target>/criterion/**/new/estimates.json)"
        )));
    }
    Ok(with_ratios(results))
}

/// One criterion benchmark's result.
#[derive(Debug, Clone, PartialEq)]
struct Bench {
    group: String,
    /// The id within the group: `function` or `function/parameter` or `parameter`.
    id: String,
    /// The parameter part of the id, if any (criterion's `value_str`).
    parameter: Option<String>,
    median_ns: f64,
    /// Bytes per iteration, when the bench declares `Throughput::Bytes`.
    bytes: Option<f64>,
    /// Elements per iteration, when the bench declares `Throughput::Elements`.
    elements: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// The `cargo xtask bench` section that measured it.
    section: String,
    bench: Bench,
    /// The id of the baseline compared against, and `median / baseline median`.
    ratio: Option<(String, f64)>,
}

/// Every `new/` result directory under `dir` written at or after `since`.
fn collect(dir: &Path, since: SystemTime) -> Result<Vec<Bench>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            let estimates = path.join("estimates.json");
            let is_result = path.file_name().is_some_and(|n| n == "new") && estimates.is_file();
            if !is_result {
                pending.push(path);
                continue;
            }
            if std::fs::metadata(&estimates)?.modified()? < since {
                continue;
            }
            out.push(read_result(&path)?);
        }
    }
    out.sort_by(|a, b| (&a.group, &a.id).cmp(&(&b.group, &b.id)));
    Ok(out)
}

/// Reads `benchmark.json` (ids, throughput) and `estimates.json` (times in ns) of one result.
fn read_result(new_dir: &Path) -> Result<Bench> {
    let read = |name: &str| -> Result<Value> {
        let path = new_dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        json::parse(&text).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
    };
    let id = read("benchmark.json")?;
    let estimates = read("estimates.json")?;
    let text = |key: &str| id.get(key).and_then(Value::as_str).map(str::to_owned);
    let group = text("group_id")
        .ok_or_else(|| Error::msg(format!("{}: no group_id", new_dir.display())))?;
    let function = text("function_id");
    let parameter = text("value_str");
    let id_in_group = match (&function, &parameter) {
        (Some(f), Some(p)) => format!("{f}/{p}"),
        (Some(only), None) | (None, Some(only)) => only.clone(),
        (None, None) => group.clone(),
    };
    let median_ns = estimates
        .get("median")
        .and_then(|m| m.get("point_estimate"))
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::msg(format!("{}: no median estimate", new_dir.display())))?;
    let throughput = id.get("throughput");
    let bytes = ["Bytes", "BytesDecimal"]
        .iter()
        .find_map(|k| throughput.and_then(|t| t.get(k)).and_then(Value::as_f64));
    let elements = throughput
        .and_then(|t| t.get("Elements"))
        .and_then(Value::as_f64);
    Ok(Bench {
        group,
        id: id_in_group,
        parameter,
        median_ns,
        bytes,
        elements,
    })
}

/// Attaches to each benchmark its ratio to its group's baseline (see the module docs).
fn with_ratios(benches: Vec<Bench>) -> Vec<Row> {
    let baselines: Vec<&Bench> = benches
        .iter()
        .filter(|b| b.id.starts_with(BASELINE_PREFIX))
        .collect();
    benches
        .iter()
        .map(|bench| {
            let in_group: Vec<&&Bench> = baselines
                .iter()
                .filter(|b| b.group == bench.group)
                .collect();
            let same_parameter = in_group
                .iter()
                .find(|b| b.parameter.is_some() && b.parameter == bench.parameter);
            let baseline = match (same_parameter, in_group.as_slice()) {
                (Some(b), _) | (None, [b]) => Some(**b),
                _ => None,
            };
            let ratio = baseline.and_then(|b| {
                let ratio = bench.median_ns / b.median_ns;
                ratio.is_finite().then(|| (b.id.clone(), ratio))
            });
            Row {
                section: String::new(),
                bench: bench.clone(),
                ratio,
            }
        })
        .collect()
}

fn human_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Elements per second for `elements` processed in `ns`.
fn per_s(elements: f64, ns: f64) -> Option<f64> {
    let rate = elements / (ns / 1e9);
    rate.is_finite().then_some(rate)
}

/// MiB per second for `bytes` processed in `ns`.
fn mib_per_s(bytes: f64, ns: f64) -> Option<f64> {
    let rate = bytes / (ns / 1e9) / 1_048_576.0;
    rate.is_finite().then_some(rate)
}

/// Everything `docs/benchmarks.json` holds: the criterion rows of every section, the other
/// sections' figures, and the machine each section last ran on.
#[derive(Debug, Default)]
struct Doc {
    rows: Vec<Row>,
    machines: Vec<(String, Value)>,
    rate: Option<Value>,
    rss: Option<Value>,
    stores: Option<Value>,
    replicas: Option<Value>,
    fleet: Option<Value>,
    status: Option<Value>,
    build: Option<Value>,
}

impl Doc {
    /// Replaces the rows of `section` with `rows`.
    fn replace_rows(&mut self, section: &str, rows: Vec<Row>) {
        self.rows.retain(|r| r.section != section);
        self.rows.extend(rows.into_iter().map(|mut r| {
            r.section = section.to_owned();
            r
        }));
        self.rows
            .sort_by(|a, b| (&a.bench.group, &a.bench.id).cmp(&(&b.bench.group, &b.bench.id)));
    }

    /// Reads back what [`to_json`](Self::to_json) wrote (rows of files written before sections
    /// existed are assigned by group).
    fn from_json(value: &Value) -> Self {
        let rows = value
            .get("benchmarks")
            .map(Value::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|b| {
                let text = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
                let number = |k: &str| b.get(k).and_then(Value::as_f64);
                let group = text("group")?;
                let section = text("section").unwrap_or_else(|| {
                    match group.as_str() {
                        g if g.starts_with("bulk_rate") => "rate",
                        g if g.starts_with("bulk_") => "bulk",
                        _ => "envelope",
                    }
                    .to_owned()
                });
                Some(Row {
                    section,
                    ratio: text("baseline").zip(number("time_ratio_to_baseline")),
                    bench: Bench {
                        group,
                        id: text("id")?,
                        parameter: None,
                        median_ns: number("median_ns")?,
                        bytes: number("bytes"),
                        elements: number("elements"),
                    },
                })
            })
            .collect();
        let machines = match value.get("machine") {
            Some(Value::Object(members)) => members.clone(),
            _ => Vec::new(),
        };
        Self {
            rows,
            machines,
            rate: value.get("rate_limit").cloned(),
            rss: value.get("rss").cloned(),
            stores: value.get("stores").cloned(),
            replicas: value.get("replicas").cloned(),
            fleet: value.get("fleet").cloned(),
            status: value.get("status").cloned(),
            build: value.get("build").cloned(),
        }
    }

    fn to_json(&self) -> String {
        let number = |n: Option<f64>| {
            n.filter(|n| n.is_finite())
                .map_or(Value::Null, Value::Number)
        };
        let rows = self
            .rows
            .iter()
            .map(|row| {
                let b = &row.bench;
                let ratio = row.ratio.as_ref().map(|(_, r)| *r);
                json::object([
                    ("section", Value::String(row.section.clone())),
                    ("group", Value::String(b.group.clone())),
                    ("id", Value::String(b.id.clone())),
                    ("median_ns", number(Some(b.median_ns))),
                    ("bytes", number(b.bytes)),
                    (
                        "mib_per_s",
                        number(b.bytes.and_then(|n| mib_per_s(n, b.median_ns))),
                    ),
                    ("elements", number(b.elements)),
                    (
                        "per_s",
                        number(b.elements.and_then(|n| per_s(n, b.median_ns))),
                    ),
                    (
                        "baseline",
                        row.ratio
                            .as_ref()
                            .map_or(Value::Null, |(id, _)| Value::String(id.clone())),
                    ),
                    ("time_ratio_to_baseline", number(ratio)),
                    ("speed_relative_to_baseline", number(ratio.map(|r| 1.0 / r))),
                ])
            })
            .collect();
        let mut members = vec![
            ("generated_by", Value::String("cargo xtask bench".into())),
            ("unit", Value::String("ns".into())),
            (
                "convention",
                Value::String(
                    "In each criterion group the benchmark whose id starts with `baseline` is \
                     the reference; time_ratio_to_baseline = median_ns / baseline median_ns; \
                     speed_relative_to_baseline = its inverse. Parameterized groups use the \
                     baseline of the same parameter. `machine` says when and where each \
                     section last ran; rate_limit, rss, stores and build are the non-criterion \
                     sections (see benchmarks.md)."
                        .into(),
                ),
            ),
            ("machine", Value::Object(self.machines.clone())),
            ("benchmarks", Value::Array(rows)),
        ];
        for (key, value) in [
            ("rate_limit", &self.rate),
            ("rss", &self.rss),
            ("stores", &self.stores),
            ("replicas", &self.replicas),
            ("fleet", &self.fleet),
            ("status", &self.status),
            ("build", &self.build),
        ] {
            if let Some(value) = value {
                members.push((key, value.clone()));
            }
        }
        let mut out = json::object(members).to_json();
        out.push('\n');
        out
    }

    fn markdown(&self) -> String {
        let mut md = String::from(
            "# Benchmarks\n\n\
             Generated by `cargo xtask bench [section...]` (one run per section, on the machine \
             it ran on; see *Machine* at the end); do not edit by hand. The same data is in \
             `benchmarks.json`. Sections: ",
        );
        md.push_str(
            &SECTIONS
                .iter()
                .map(|(name, what)| format!("`{name}` ({what})"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        md.push_str(
            "; without arguments every section but `build` runs, `all` runs every one.\n\n\
             **Convention.** In each criterion group, the benchmark whose id starts with \
             `baseline` is the reference. For every benchmark, *time ÷ baseline* is its median time \
             divided by the baseline's (1.25 = 25 % slower), and *speed vs baseline* is the inverse \
             (0.80 = 0.8x the baseline's speed). Parameterized groups compare each benchmark with \
             the baseline of the same parameter.\n\n\
             **Bulk throughput** (`bulk_backup_20ms`, from `crates/backup-flow/benches/bulk_throughput.rs`, \
             one timed bulk run per concurrency `cNNN` against `portal-sim` with 20 ms added to every \
             request, written in criterion's layout): *median* is wall time per backup, *throughput* \
             backups per second, and `baseline_ideal/cNNN` is the ideal, concurrency / (requests per backup × \
             20 ms), with requests counted by the simulator; *speed vs baseline* is therefore \
             achieved ÷ ideal throughput. `bulk_rate_limited` is the same for the run under rate \
             limits (see *Rate limit held*): `baseline_limit_bound` is the throughput the limits \
             allow.\n\n\
             **Store-wide verify** (`verify_store_wide_5ms`, from \
             `crates/backup-flow/benches/store_wide_verify.rs`, one timed `Flow::verify_store_wide` \
             of 2,000 backups per concurrency `cNNN` on the file store, behind a local KEK with 5 ms \
             added to every call; KMS calls per backup counted, 1): *median* is wall time per backup, \
             and `baseline_ideal/cNNN` the ideal, min(concurrency / 5 ms, the store's own read rate \
             measured alone in the same run at that concurrency); *speed vs baseline* is achieved ÷ \
             ideal. The bench prints both bounds, and what a KEK call took, measured: on a loaded \
             machine the 5 ms sleep overshoots, which then bounds the run.\n\n\
             | group | benchmark | median | throughput | time ÷ baseline | speed vs baseline |\n\
             | --- | --- | ---: | ---: | ---: | ---: |\n",
        );
        for row in &self.rows {
            let b = &row.bench;
            let throughput = b
                .bytes
                .and_then(|bytes| mib_per_s(bytes, b.median_ns))
                .map(|r| format!("{r:.1} MiB/s"))
                .or_else(|| {
                    b.elements
                        .and_then(|n| per_s(n, b.median_ns))
                        .map(|r| format!("{r:.1} /s"))
                })
                .unwrap_or_else(|| "–".to_owned());
            let (time_ratio, speed) = row.ratio.as_ref().map_or_else(
                || ("–".to_owned(), "–".to_owned()),
                |(_, r)| (format!("{r:.3}"), format!("{:.3}", 1.0 / r)),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {throughput} | {time_ratio} | {speed} |",
                b.group,
                b.id,
                human_time(b.median_ns)
            );
        }
        md.push('\n');
        if let Some(rate) = &self.rate {
            measure::rate_limit_markdown(rate, &mut md);
        }
        if let Some(rss) = &self.rss {
            measure::rss_markdown(rss, &mut md);
        }
        if let Some(stores) = &self.stores {
            measure::stores_markdown(stores, &mut md);
        }
        if let Some(replicas) = &self.replicas {
            replicas_markdown(replicas, &mut md);
        }
        if let Some(fleet) = &self.fleet {
            crate::fleet::markdown(fleet, &mut md);
        }
        if let Some(status) = &self.status {
            crate::fleet::status_markdown(status, &mut md);
        }
        if let Some(build) = &self.build {
            measure::build_markdown(build, &mut md);
        }
        md.push_str(
            "## Machine\n\n\
             | section | last run | cores | CPU | memory |\n\
             | --- | --- | ---: | --- | ---: |\n",
        );
        for (section, machine) in &self.machines {
            let text = |k: &str| machine.get(k).and_then(Value::as_str).unwrap_or("?");
            let number = |k: &str| {
                machine
                    .get(k)
                    .and_then(Value::as_f64)
                    .map_or_else(|| "?".to_owned(), |n| format!("{n}"))
            };
            let _ = writeln!(
                md,
                "| {section} | {} | {} | {} | {} MiB |",
                text("date"),
                number("cores"),
                text("cpu"),
                number("memory_mib"),
            );
        }
        md
    }
}

// ---- webhook replicas ---------------------------------------------------------------------

/// Runs `crates/custodian-webhook/examples/replicas.rs` (release) on a throwaway PostgreSQL
/// and moto, and keeps its JSON line and table; fails when the example does (an error after
/// one retry, a lost share, replicas that disagree).
fn replicas(root: &Path, target_dir: &Path) -> Result<Value> {
    let tools = target_dir.join("tools");
    let moto = match std::env::var_os(test_services::moto::PYTHONPATH_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => crate::tools::python_library(root, &tools, crate::tools::MOTO)?,
    };
    crate::postgres::install(root)?;
    cmd::cargo(root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "portal-backup-custodian-webhook",
        ])
        .args(["--example", "replicas"])
        .run()?;
    let example = target_dir.join("release").join("examples").join("replicas");
    let out = cmd::Cmd::new(example, root)
        .env(test_services::XTASK_ENV, "1")
        .env(test_services::moto::PYTHONPATH_ENV, &moto)
        .read()?;
    print!("{out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| Error::msg(format!("the replicas example printed no result: {out:?}")))?;
    let mut result = json::parse(line)?;
    let table: String = out
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Value::Object(members) = &mut result {
        members.push(("table".into(), Value::String(table)));
    }
    Ok(result)
}

fn replicas_markdown(value: &Value, md: &mut String) {
    let n = |k: &str| value.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "## Webhook replicas over one store\n\n\
         `crates/custodian-webhook/examples/replicas.rs` (release; its driver is the one of \
         `tests/replicas.rs`, which runs a smaller version in `cargo xtask ci`): the real \
         webhook server as 1 or 3 replicas, each on a Tokio runtime of its own with its own \
         store client, over one PostgreSQL database (a throwaway server on loopback, `fsync` \
         on) or one S3 bucket (moto on loopback, a Python development server: that row \
         measures the client plus an emulator, not S3). {} backup+fetch pairs go round-robin \
         from {} connections, with {} three-way races on one (client, method) mixed in; a \
         request without an answer or answered 503 is retried once on the next replica that \
         answers, and race losers (503: another backup of that client and method landed \
         first; the compare-and-swap at work) resend after the race. With 3 replicas, replica \
         1 is killed a third of the way through (its runtime shut down without grace: every \
         connection and store call of it ends at once) and started again {} ms later. \
         Afterwards every client is fetched from every replica: *lost* counts acknowledged \
         shares missing, *inconsistent* answers with other than one share per method or \
         replicas that disagree. On {} cores (load average {} when the run began, from other \
         work on the machine), with the driver, the replicas and the store on one machine, \
         this measures the cost of replicas, not their scaling.\n",
        n("pairs"),
        n("concurrency"),
        n("races"),
        n("downMs"),
        n("cores"),
        n("loadAverage"),
    );
    md.push_str(value.get("table").and_then(Value::as_str).unwrap_or(""));
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(group: &str, id: &str, parameter: Option<&str>, median_ns: f64) -> Bench {
        Bench {
            group: group.to_owned(),
            id: id.to_owned(),
            parameter: parameter.map(str::to_owned),
            median_ns,
            bytes: Some(4096.0),
            elements: None,
        }
    }

    #[test]
    fn ratios_follow_the_baseline_convention() {
        let rows = with_ratios(vec![
            bench("seal_open", "baseline_raw_aes_gcm", None, 1000.0),
            bench("seal_open", "envelope_fresh_key", None, 2000.0),
            bench("seal_open", "envelope_shared_key", None, 1250.0),
            bench("sizes", "baseline/4KiB", Some("4KiB"), 10.0),
            bench("sizes", "baseline/1MiB", Some("1MiB"), 100.0),
            bench("sizes", "ours/1MiB", Some("1MiB"), 400.0),
            bench("no_baseline", "a", None, 5.0),
        ]);
        let ratio = |id: &str| {
            rows.iter()
                .find(|r| r.bench.id == id)
                .and_then(|r| r.ratio.clone())
        };
        assert_eq!(
            ratio("envelope_fresh_key"),
            Some(("baseline_raw_aes_gcm".to_owned(), 2.0))
        );
        assert_eq!(
            ratio("envelope_shared_key"),
            Some(("baseline_raw_aes_gcm".to_owned(), 1.25))
        );
        assert_eq!(
            ratio("baseline_raw_aes_gcm"),
            Some(("baseline_raw_aes_gcm".to_owned(), 1.0))
        );
        assert_eq!(ratio("ours/1MiB"), Some(("baseline/1MiB".to_owned(), 4.0)));
        assert_eq!(ratio("a"), None);
    }

    #[test]
    fn reports_are_written_and_json_parses() {
        let mut doc = Doc::default();
        doc.replace_rows(
            "envelope",
            with_ratios(vec![
                bench("g", "baseline", None, 1000.0),
                bench("g", "envelope \"x\"", None, 1250.0),
            ]),
        );
        let md = doc.markdown();
        assert!(md.contains("| g | envelope \"x\" | 1.250 µs | 3125.0 MiB/s | 1.250 | 0.800 |"));
        let parsed = json::parse(&doc.to_json()).unwrap();
        let second = parsed
            .get("benchmarks")
            .map(Value::as_array)
            .and_then(|b| b.get(1))
            .cloned()
            .unwrap();
        assert_eq!(
            second.get("speed_relative_to_baseline"),
            Some(&Value::Number(0.8))
        );
        assert_eq!(
            second.get("baseline"),
            Some(&Value::String("baseline".into()))
        );
        assert_eq!(
            second.get("section"),
            Some(&Value::String("envelope".into()))
        );
    }

    #[test]
    fn sections_not_run_keep_their_last_figures() {
        let mut doc = Doc::default();
        doc.replace_rows(
            "envelope",
            with_ratios(vec![bench("seal", "baseline", None, 10.0)]),
        );
        doc.replace_rows(
            "bulk",
            with_ratios(vec![
                bench("bulk_backup_20ms", "baseline_ideal", None, 100.0),
                bench("bulk_backup_20ms", "bulk_backup", None, 125.0),
            ]),
        );
        doc.build = Some(json::object([("builds", Value::Array(Vec::new()))]));
        doc.machines.push(("bulk".into(), measure::machine()));
        // Written, read back, and only `envelope` measured again.
        let mut again = Doc::from_json(&json::parse(&doc.to_json()).unwrap());
        again.replace_rows(
            "envelope",
            with_ratios(vec![bench("seal", "baseline", None, 20.0)]),
        );
        let ids: Vec<(&str, &str, f64)> = again
            .rows
            .iter()
            .map(|r| (r.section.as_str(), r.bench.id.as_str(), r.bench.median_ns))
            .collect();
        assert_eq!(
            ids,
            [
                ("bulk", "baseline_ideal", 100.0),
                ("bulk", "bulk_backup", 125.0),
                ("envelope", "baseline", 20.0)
            ]
        );
        let kept = again
            .rows
            .iter()
            .find(|r| r.bench.id == "bulk_backup")
            .unwrap();
        assert_eq!(kept.ratio, Some(("baseline_ideal".to_owned(), 1.25)));
        assert!(again.build.is_some() && again.rss.is_none());
        let md = again.markdown();
        assert!(md.contains("## Build time"), "{md}");
        assert!(md.contains("| bulk | 20"), "{md}");
        // Files written before sections existed: rows are assigned by group.
        let old = json::parse(
            r#"{"benchmarks": [{"group": "bulk_backup_20ms", "id": "x", "median_ns": 1.0},
                              {"group": "seal_open_4k", "id": "y", "median_ns": 2.0}]}"#,
        )
        .unwrap();
        let sections: Vec<String> = Doc::from_json(&old)
            .rows
            .into_iter()
            .map(|r| r.section)
            .collect();
        assert_eq!(sections, ["bulk", "envelope"]);
    }

    #[test]
    fn results_of_the_previous_section_are_not_collected_again() {
        let now = SystemTime::now();
        let slack = since(SystemTime::UNIX_EPOCH);
        assert!(slack < now && slack > now - Duration::from_secs(3));
        assert_eq!(since(now), now);
    }

    #[test]
    fn section_names_are_checked_and_ordered() {
        assert_eq!(select_sections(&[]).unwrap(), DEFAULT_SECTIONS);
        assert_eq!(select_sections(&["all"]).unwrap().len(), SECTIONS.len());
        assert_eq!(
            select_sections(&["rss", "envelope"]).unwrap(),
            ["envelope", "rss"]
        );
        let err = select_sections(&["nope"]).unwrap_err().to_string();
        assert!(
            err.contains("unknown bench section `nope`") && err.contains("build"),
            "{err}"
        );
    }

    #[test]
    fn reads_criterion_result_files() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let new = dir.join("grp").join("fn").join("4096").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"grp","function_id":"fn","value_str":"4096","throughput":{"Bytes":4096},"full_id":"grp/fn/4096","directory_name":"grp/fn/4096","title":"grp/fn/4096"}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"point_estimate":1100.0},"median":{"point_estimate":1024.0},"slope":null}"#,
        )
        .unwrap();
        let found = collect(&dir, SystemTime::UNIX_EPOCH).unwrap();
        let later = collect(&dir, SystemTime::now() + Duration::from_secs(60)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            [Bench {
                group: "grp".into(),
                id: "fn/4096".into(),
                parameter: Some("4096".into()),
                median_ns: 1024.0,
                bytes: Some(4096.0),
                elements: None,
            }]
        );
        assert!(later.is_empty(), "stale results must be ignored");
    }
}
