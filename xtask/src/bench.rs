//! `cargo xtask bench`: run the criterion benches, then write `docs/benchmarks.md` and
//! `docs/benchmarks.json` from criterion's results.
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

/// The benches to run, as `(package, bench target)`. Extend this as crates add benches.
const BENCHES: &[(&str, &str)] = &[("envelope", "envelope"), ("backup-flow", "bulk_throughput")];

/// The id prefix that marks a group's reference benchmark (see the module docs).
const BASELINE_PREFIX: &str = "baseline";

pub(crate) fn run(root: &Path) -> Result {
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
    // Some slack for file systems with coarse modification times.
    let since = SystemTime::now()
        .checked_sub(Duration::from_secs(2))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    // Criterion resolves a relative CARGO_TARGET_DIR against the bench's package directory,
    // not the workspace root; name its output directory explicitly so both sides agree.
    let criterion_dir = target_dir.join("criterion");
    for (package, bench) in BENCHES {
        cmd::cargo(root)
            .env("CRITERION_HOME", &criterion_dir)
            .args(["bench", "--locked", "-p", package, "--bench", bench])
            .run()?;
    }
    let results = collect(&criterion_dir, since)?;
    if results.is_empty() {
        return Err(Error::msg(
            "the benches wrote no criterion results (<target>/criterion/**/new/estimates.json)",
        ));
    }
    let rows = with_ratios(results);
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs)?;
    std::fs::write(docs.join("benchmarks.md"), markdown(&rows))?;
    std::fs::write(docs.join("benchmarks.json"), to_json(&rows))?;
    println!(
        "wrote docs/benchmarks.md and docs/benchmarks.json ({} benchmarks)",
        rows.len()
    );
    Ok(())
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

fn markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` from criterion's results (one run, on the machine it \
         ran on); do not edit by hand. The same data is in `benchmarks.json`.\n\n\
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
         achieved ÷ ideal throughput.\n\n\
         | group | benchmark | median | throughput | time ÷ baseline | speed vs baseline |\n\
         | --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
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
    md
}

fn to_json(rows: &[Row]) -> String {
    let number = |n: Option<f64>| {
        n.filter(|n| n.is_finite())
            .map_or_else(|| "null".to_owned(), |n| format!("{n}"))
    };
    let mut out = String::from(
        "{\n  \"generated_by\": \"cargo xtask bench\",\n  \"unit\": \"ns\",\n  \"convention\": ",
    );
    out.push_str(&json::quote(
        "In each criterion group the benchmark whose id starts with `baseline` is the \
         reference; time_ratio_to_baseline = median_ns / baseline median_ns; \
         speed_relative_to_baseline = its inverse. Parameterized groups use the baseline of \
         the same parameter.",
    ));
    out.push_str(",\n  \"benchmarks\": [");
    for (index, row) in rows.iter().enumerate() {
        let b = &row.bench;
        let ratio = row.ratio.as_ref().map(|(_, r)| *r);
        let baseline = row
            .ratio
            .as_ref()
            .map_or_else(|| "null".to_owned(), |(id, _)| json::quote(id));
        let _ = write!(
            out,
            "{}\n    {{\"group\": {}, \"id\": {}, \"median_ns\": {}, \"bytes\": {}, \
             \"mib_per_s\": {}, \"elements\": {}, \"per_s\": {}, \"baseline\": {baseline}, \"time_ratio_to_baseline\": {}, \
             \"speed_relative_to_baseline\": {}}}",
            if index == 0 { "" } else { "," },
            json::quote(&b.group),
            json::quote(&b.id),
            number(Some(b.median_ns)),
            number(b.bytes),
            number(b.bytes.and_then(|bytes| mib_per_s(bytes, b.median_ns))),
            number(b.elements),
            number(b.elements.and_then(|n| per_s(n, b.median_ns))),
            number(ratio),
            number(ratio.map(|r| 1.0 / r)),
        );
    }
    out.push_str("\n  ]\n}\n");
    out
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
        let rows = with_ratios(vec![
            bench("g", "baseline", None, 1000.0),
            bench("g", "envelope \"x\"", None, 1250.0),
        ]);
        let md = markdown(&rows);
        assert!(md.contains("| g | envelope \"x\" | 1.250 µs | 3125.0 MiB/s | 1.250 | 0.800 |"));
        let parsed = json::parse(&to_json(&rows)).unwrap();
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
