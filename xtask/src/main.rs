//! The workspace's task runner, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! This is the only place CI logic lives: `.ci/run` calls `cargo xtask ci` and nothing else.
//! It depends on nothing but `std` and the workspace's std-only `test-services` (the services
//! the tests start, which xtask starts too), and shells out to `cargo` and a few cargo
//! plugins. Missing plugins are installed once into `target/tools` (see [`tools`]).
//!
//! Run `cargo xtask help` for the commands.

mod azurite;
mod bench;
mod ci;
mod cmd;
mod fleet;
mod guides;
mod json;
mod measure;
mod postgres;
mod public_api;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cmd::{Error, Result};

const HELP: &str = "\
Usage: cargo xtask <command> [args]

Commands:
  ci [STEP...]  The CI entry point (.ci/run calls it). Runs every step in order, fails fast:
                  fmt, clippy, test, spec, doc, public-api, guides, guard, package,
                  deny, fuzz
                Names given as arguments run only those steps (for local iteration).
  test          Only the test step: nextest (or cargo test) plus doctests, with
                PORTAL_BACKUP_XTASK=1 so that tests needing a service fail instead of skip.
  demo          The main job, against a simulated Portal on loopback: backup, verify, crash
                and resume, file store, recover, rotate (cargo run --release -p portal-backup
                --features demo -- demo).
  bench [SECTION...]
                Runs benchmark sections, then rewrites docs/benchmarks.md and
                docs/benchmarks.json (ratios to each group's `baseline*` bench), keeping the
                last figures of sections not run. Sections: envelope, bulk, rate (rate limit
                held), rss (peak RSS at 1k/10k/100k clients), stores (latency and
                throughput of every store, fs as baseline), replicas (the custodian
                webhook as 1 and 3 replicas over one PostgreSQL and one S3 store, one
                killed mid-run), fleet (store-wide verify, rotate and migrate of 10,000
                backups on every store behind KEKs with 5 ms per call; peak RSS of
                store-wide verify at 10k/100k), status (status over 10,000 clients in
                portal-sim: Portal requests per client, time under 200 a minute), build
                (clean build time and
                dependency count by feature set; slow). No section: all but build; `all`:
                every one; `render`: rewrite docs/benchmarks.md from the JSON, measuring
                nothing.
  public-api [--bless]
                Lists the public API of every publishable library (rustdoc JSON) and
                compares it with docs/public-api/<package>.txt; --bless rewrites the files.
                CI runs the comparison (step public-api).
  services      Lists the services the tests need, and how the test step provides them.
  help          This text.

Environment:
  PORTAL_BACKUP_FUZZ_SECONDS  seconds per fuzz target in `ci` (default 30)
  PORTAL_BACKUP_BENCH_RSS_CLIENTS  client counts of `bench rss` (default 1000,10000,100000)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci", steps @ ..] => ci::run(&root(), steps),
        ["test"] => ci::run(&root(), &["test"]),
        ["demo"] => demo(&root()),
        ["public-api"] => ci::public_api_listing(&root(), false),
        ["public-api", "--bless"] => ci::public_api_listing(&root(), true),
        ["bench", sections @ ..] => bench::run(&root(), sections),
        ["services"] => {
            services();
            Ok(())
        }
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(Error::msg(format!(
            "unknown command `{}`; run `cargo xtask help`",
            other.join(" ")
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this package's directory.
fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The main job of a fresh machine (the README's first command): `portal-backup demo`, the
/// whole backup job against `portal-sim` on loopback, in a temporary directory. The command
/// exists only with the CLI's `demo` feature (the shipped binary links no simulator).
fn demo(root: &Path) -> Result {
    cmd::cargo(root)
        .args([
            "run",
            "--release",
            "-p",
            "portal-backup",
            "--features",
            "demo",
            "--",
            "demo",
        ])
        .run()
}

/// Services that the tests need, and how `ci` provides them.
fn services() {
    println!(
        "The test step of `cargo xtask ci` installs what is missing and sets PORTAL_BACKUP_XTASK=1,\n\
         so that a test whose service is absent fails instead of skipping:\n\
         \n\
         moto (AWS KMS and S3 emulator)  PyPI `moto[server]>=5.1.5` into target/tools/py; each test\n\
         \x20                               binary starts its own server on 127.0.0.1\n\
         SoftHSM2 (PKCS#11 token)        Debian package `softhsm2`; each test makes a fresh token\n\
         PostgreSQL                      Debian package `postgresql`; one throwaway server on\n\
         \x20                               127.0.0.1 for the whole step (PORTAL_BACKUP_PG_URL)\n\
         Azurite (Azure Blob emulator)   npm `azurite` into target/tools/npm; tests start it\n\
         Google Cloud KMS and Storage    in-repo fakes of the REST APIs, in the test process\n\
         \n\
         Every server listens on loopback only, keeps its data in a temporary directory, and\n\
         stops when the process that started it ends."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.ci/run` must run exactly the README's test command: `cargo xtask ci`.
    #[test]
    fn ci_entry_point_calls_cargo_xtask_ci() {
        let run = std::fs::read_to_string(root().join(".ci/run")).unwrap();
        let commands: Vec<&str> = run
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        assert!(
            commands
                .iter()
                .any(|line| *line == "exec cargo xtask ci" || *line == "cargo xtask ci"),
            ".ci/run must call `cargo xtask ci`; it runs: {commands:?}"
        );
    }

    /// The README states the two commands of a fresh machine.
    #[test]
    fn readme_names_the_two_commands() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        for command in ["cargo xtask demo", "cargo xtask ci"] {
            assert!(
                readme.contains(&format!("\n{command}\n")),
                "README.md must show `{command}` on a line of its own"
            );
        }
    }

    /// Every command the README mentions is one `main` knows.
    #[test]
    fn help_lists_every_command() {
        for command in [
            "ci",
            "test",
            "demo",
            "bench",
            "public-api",
            "services",
            "help",
        ] {
            assert!(
                HELP.lines().any(|l| l.trim_start().starts_with(command)),
                "{command}"
            );
        }
    }
}
