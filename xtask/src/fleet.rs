//! `cargo xtask bench fleet`: store-wide verify, rotate and migrate at KMS speed on the file
//! store, PostgreSQL and S3 (moto), and the peak RSS of store-wide verify, from
//! `crates/backup-flow/benches/store_wide_fleet.rs` (release, `cargo bench`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cmd::{self, Error, Result};
use crate::json::{self, Value};

/// Runs the bench with PostgreSQL and moto on loopback (a missing tool is a failure), and
/// returns its JSON line with its Markdown tables under `table`.
pub(crate) fn run(root: &Path, target_dir: &Path) -> Result<Value> {
    let tools = target_dir.join("tools");
    let moto = match std::env::var_os(test_services::moto::PYTHONPATH_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => crate::tools::python_library(root, &tools, crate::tools::MOTO)?,
    };
    crate::postgres::install(root)?;
    let out = cmd::cargo(root)
        .env(test_services::XTASK_ENV, "1")
        .env(test_services::moto::PYTHONPATH_ENV, &moto)
        .args([
            "bench",
            "--locked",
            "-p",
            "portal-backup-flow",
            "--bench",
            "store_wide_fleet",
        ])
        .read()?;
    print!("{out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| Error::msg(format!("the fleet bench printed no result: {out:?}")))?;
    let mut result = json::parse(line)?;
    let table: String = out
        .lines()
        .filter(|l| l.starts_with('|') || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    if let Value::Object(members) = &mut result {
        members.push(("table".into(), Value::String(table)));
    }
    Ok(result)
}

/// The section of `docs/benchmarks.md`.
pub(crate) fn markdown(value: &Value, md: &mut String) {
    let n = |k: &str| value.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "## Store-wide verify, rotate and migrate at KMS speed\n\n\
         `crates/backup-flow/benches/store_wide_fleet.rs` (release): {} backups (one client \
         each, two shares sealed under one data key) on each store, behind local KEKs with {} ms \
         added to every call; concurrency 1 on the first {} backups (a rate), 64 on all of them. \
         *ideal* = min(KMS bound, the store's own rate measured alone in the same run at the same \
         concurrency): verify's KMS bound is concurrency / {} ms and its store rate the reads of \
         a drill (list a client, read its two objects); rotate's KMS bound is concurrency / (2 × \
         {} ms) (one unwrap and one wrap per backup, in turn) and its store rate the writes \
         (overwrite a client's two objects); migrate's KMS bound is concurrency / {} ms and its \
         store rate the copy alone (read from the file store, create in a fresh database). \
         Rotate's time includes its proof (every object read again, headers only). PostgreSQL \
         is a throwaway server on loopback (`fsync` on); S3 is moto, a Python development \
         server on loopback: its rows measure the client plus an emulator, not S3. On {} cores, \
         load average {} when the run began, from other work on the machine (other builds ran \
         alongside): compare the ratios of one run, measured side by side, rather than absolute \
         rates. Peak RSS: a store-wide verify (clients listed by the store, concurrency 64, no \
         KEK latency) in a child process over a file store seeded on tmpfs.\n",
        n("backups"),
        n("latencyMs"),
        n("c1Backups"),
        n("latencyMs"),
        n("latencyMs"),
        n("latencyMs"),
        n("cores"),
        n("loadAverage"),
    );
    md.push_str(value.get("table").and_then(Value::as_str).unwrap_or(""));
    md.push('\n');
}
