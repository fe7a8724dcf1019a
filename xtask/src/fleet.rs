//! `cargo xtask bench fleet`: store-wide verify, rotate and migrate at KMS speed on the file
//! store, PostgreSQL and S3 (moto), and the peak RSS of store-wide verify, from
//! `crates/backup-flow/benches/store_wide_fleet.rs`; `cargo xtask bench status`: `status` over
//! 10,000 clients in portal-sim, from `crates/backup-flow/benches/status_fleet.rs` (release,
//! `cargo bench`).

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
    let out = flow_bench(root, "store_wide_fleet")
        .env(test_services::XTASK_ENV, "1")
        .env(test_services::moto::PYTHONPATH_ENV, &moto)
        .read()?;
    result_with_table(&out)
}

/// Runs the status bench (portal-sim in process; no service needed) and returns its JSON line
/// with its Markdown table under `table`.
pub(crate) fn run_status(root: &Path) -> Result<Value> {
    result_with_table(&flow_bench(root, "status_fleet").read()?)
}

/// `cargo bench` of one of `portal-backup-flow`'s bench programs.
fn flow_bench(root: &Path, bench: &str) -> cmd::Cmd {
    cmd::cargo(root).args([
        "bench",
        "--locked",
        "-p",
        "portal-backup-flow",
        "--bench",
        bench,
    ])
}

/// A bench's last JSON line, with the Markdown table lines it printed under `table`.
fn result_with_table(out: &str) -> Result<Value> {
    print!("{out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| Error::msg(format!("the bench printed no result: {out:?}")))?;
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
         each, two shares sealed under one data key) on the file store and PostgreSQL, {} on \
         S3 (moto lists a prefix by walking every key of the bucket, about 30 ms a client at \
         10,000 backups: the measurements that list one client at a time would take most of \
         an hour there; one run at 10,000, with `FLEET_BENCH_S3_BACKUPS=10000 \
         FLEET_BENCH_RUNS=1`, is in [fleet operations](fleet.md#store-wide-work-at-kms-speed)), \
         behind local \
         KEKs with {} ms added to every call; concurrency 1 on the first {} backups (a rate), \
         64 on all of them. The rows *file, moto's KMS* are the same runs behind three keys of \
         moto's KMS through `envelope::aws::AwsKms` (aws-sdk-kms), for information: moto \
         answers one request at a time, so it bounds them.\n\n\
         *ideal* = min(KMS alone, store alone), each measured alone in the same run at the same \
         concurrency. *KMS alone* is backups a second of the KMS calls and nothing else (verify \
         and migrate: one unwrap; rotate: an unwrap, then a wrap under the new key), with the \
         nominal bound, concurrency / {} ms (/ twice that to rotate), in brackets: Tokio's timer \
         rounds each sleep up to its 1 ms tick, so a call takes a little over {} ms. *store \
         alone* is the issue's definition: verify lists each client and reads its two objects; \
         rotate overwrites each client's two objects (writes only); migrate reads the file store \
         and creates in a fresh database. *command's store work alone* is everything the command \
         asks of the store, without the KMS, made the way the command makes it: rotate also \
         lists, reads each object with its version, writes it back compare-and-swap, and its \
         proof lists and reads every object again; migrate also reads back what it created. \
         Every store here takes batches (`BackupStore::batch_size`: 64 on PostgreSQL and S3, \
         16 on files), and verify, rotate and migrate send a batch of clients per store \
         call: on PostgreSQL one \
         statement each (read, compare-and-swap write or create, proof read or read-back); on \
         S3 one listing for the batch instead of one per client, then a request per object, \
         16 at a time; on files one hand-off to the blocking pool for a batch's reads. So the \
         command's store work can be above the store's rate one object at a time, and the \
         last column sets the achieved rate against min(KMS alone, that). The second table \
         is what any rotation can reach: *least rotation store work alone* is the store doing \
         only what no rotation can skip (find each object, read it once, write it back once: \
         no compare-and-swap, no proof), in batches; against the writes alone it is the most \
         a rotation can reach of the issue's ideal on that store. At concurrency c, a run \
         keeps at most c KMS calls and c store steps in flight, for different clients (so at \
         concurrency 1 a client's reads overlap the previous client's KMS call, and can beat a \
         store alone that does one thing at a time). Every measurement starts after a `sync`, so that none pays for the \
         writeback of the one before; *runs* > 1: each of the KMS alone, the store alone and \
         the command measured that many times in turn, medians shown. The runtime is the \
         CLI's (at most 64 blocking threads).\n\n\
         PostgreSQL is a throwaway server on loopback (`fsync` on); moto is a Python \
         development server on loopback: its rows measure the client plus an emulator, not AWS. \
         On {} cores, load average {} when the run began: compare the ratios of one run, \
         measured side by side, rather than absolute rates. Peak RSS: a store-wide verify \
         (clients listed by the store, concurrency 64, no KEK latency) in a child process over \
         a file store seeded on tmpfs.\n",
        n("backups"),
        n("s3Backups"),
        n("latencyMs"),
        n("c1Backups"),
        n("latencyMs"),
        n("latencyMs"),
        n("cores"),
        n("loadAverage"),
    );
    md.push_str(value.get("table").and_then(Value::as_str).unwrap_or(""));
    md.push('\n');
}

/// The `status` section of `docs/benchmarks.md`.
pub(crate) fn status_markdown(value: &Value, md: &mut String) {
    let n = |k: &str| value.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "## `status` over a fleet of 10,000 clients\n\n\
         `crates/backup-flow/benches/status_fleet.rs` (release): `CustodianFlow::status` (what \
         `portal-backup status` runs) over {} clients of one custodian in portal-sim: {} backed \
         up into a file store of our own through the backup flow, {} backed up with Portal, the \
         rest bare (no wallet: not backed up). *requests (counted)* is the run's own count \
         (the summary's `requests`), *requests (Portal saw)* the simulator's, credential \
         lookups included; *projected* is the summary's projection for 10,000 clients under \
         Portal's published 200 requests a minute (Client and Custodian APIs, one bucket); \
         *took* is the wall time of the run; *busiest second* the most requests the simulator \
         saw in one second. With a store of our own, status reads one listing page per 100 \
         clients and nothing else from Portal. Through Portal's client routes, a client with \
         credentials costs one lookup (`GET /clients/me`) and one ciphertext read per curve: \
         3 requests for two curves, so 10,000 such clients project to 30,100 requests, about \
         2 h 30 min at 200 a minute.\n",
        n("clients"),
        n("backedUp"),
        n("backedUp"),
    );
    md.push_str(value.get("table").and_then(Value::as_str).unwrap_or(""));
    md.push('\n');
}
