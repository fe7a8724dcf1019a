//! `cargo xtask ci`: every check, in order, failing fast.
//!
//! Each step prints a header and its duration; the run ends with a summary. Nothing is skipped
//! silently: when a step has nothing to do (no fuzz targets yet, a guarded package that does
//! not exist yet) it says so in its output.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd::{self, Cmd, Error, Result};
use crate::{json, tools};

/// Set for the tests: tests that need a service skip (loudly) only when this is unset;
/// under xtask they must fail instead.
pub(crate) use test_services::XTASK_ENV;

/// Seconds each fuzz target runs for, unless `PORTAL_BACKUP_FUZZ_SECONDS` says otherwise.
const DEFAULT_FUZZ_SECONDS: u64 = 30;

/// libFuzzer's per-input time limit (its default is 1200 s).
const FUZZ_INPUT_TIMEOUT_SECONDS: u64 = 10;

/// Packages whose default-feature-free normal dependency tree must not pull in a cloud SDK or
/// an HTTP stack (so integrators writing a KMS backend compile only what they use).
const ISOLATED_PACKAGES: &[&str] = &["portal-backup-envelope"];

struct Step {
    name: &'static str,
    what: &'static str,
    run: fn(&Ctx) -> Result,
}

const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        what: "formatting (rustfmt)",
        run: fmt,
    },
    Step {
        name: "clippy",
        what: "lints on all targets and features, warnings denied",
        run: clippy,
    },
    Step {
        name: "test",
        what: "unit, integration and doc tests",
        run: test,
    },
    Step {
        name: "spec",
        what: "an independent Python opener reads the golden vectors per docs/ciphertext-format.md",
        run: spec,
    },
    Step {
        name: "doc",
        what: "rustdoc, warnings denied",
        run: doc,
    },
    Step {
        name: "public-api",
        what: "the public API of every publishable library against docs/public-api/",
        run: public_api,
    },
    Step {
        name: "guides",
        what: "the guides' dependency lines and code, built as a crate outside the workspace",
        run: guides,
    },
    Step {
        name: "guard",
        what: "feature isolation: no cloud SDK or HTTP stack without features",
        run: guard,
    },
    Step {
        name: "package",
        what: "cargo package --no-verify of every publishable crate, together",
        run: package,
    },
    Step {
        name: "deny",
        what: "cargo-deny: bans, licenses, sources",
        run: deny,
    },
    Step {
        name: "fuzz",
        what: "bounded fuzz run of every crates/*/fuzz target",
        run: fuzz,
    },
];

/// What the steps share: the workspace root and facts from `cargo metadata`.
struct Ctx {
    root: PathBuf,
    /// Workspace members, from `cargo metadata --no-deps`.
    packages: Vec<Package>,
    /// Where cargo builds (respects `CARGO_TARGET_DIR`); tools are cached in its `tools/`.
    target_dir: PathBuf,
}

struct Package {
    name: String,
    /// The directory of its `Cargo.toml`.
    dir: PathBuf,
    has_lib: bool,
    /// The crate name of its library target (`-` as `_`), if it has one.
    lib_name: Option<String>,
    /// `publish` is not `false` (cargo metadata: `null`, or a non-empty registry list).
    publishable: bool,
}

/// Runs the named steps (all when `only` is empty) in their fixed order.
pub(crate) fn run(root: &Path, only: &[&str]) -> Result {
    for name in only {
        if !STEPS.iter().any(|s| s.name == *name) {
            let names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
            return Err(Error::msg(format!(
                "unknown step `{name}`; steps are: {}",
                names.join(", ")
            )));
        }
    }
    let steps: Vec<&Step> = STEPS
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .collect();

    let started = Instant::now();
    lockfile_unchanged(root)?;
    let ctx = Ctx::load(root)?;
    let total = steps.len();
    let mut done: Vec<(&str, Duration)> = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        let number = index.saturating_add(1);
        println!("\n==> [{number}/{total}] {}: {}", step.name, step.what);
        let step_started = Instant::now();
        let outcome = (step.run)(&ctx);
        let took = step_started.elapsed();
        if let Err(err) = outcome {
            println!(
                "<== [{number}/{total}] {} FAILED after {}",
                step.name,
                secs(took)
            );
            summary(&done, Some((step.name, took)), started.elapsed());
            return Err(Error::msg(format!("step `{}` failed: {err}", step.name)));
        }
        println!("<== [{number}/{total}] {} ok in {}", step.name, secs(took));
        done.push((step.name, took));
    }
    summary(&done, None, started.elapsed());
    if total == STEPS.len() {
        println!("ci: all {total} steps passed");
    } else {
        println!("ci: the {total} selected steps passed (of {})", STEPS.len());
    }
    Ok(())
}

fn summary(done: &[(&str, Duration)], failed: Option<(&str, Duration)>, total: Duration) {
    println!("\nci summary:");
    for (name, took) in done {
        println!("  {name:<10} ok     {:>8}", secs(*took));
    }
    if let Some((name, took)) = failed {
        println!("  {name:<10} FAILED {:>8}", secs(took));
    }
    println!("  {:<10}        {:>8}", "total", secs(total));
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// In CI, `cargo xtask` itself (a plain `cargo run`) would silently rewrite a stale or missing
/// `Cargo.lock`, after which every `--locked` step would pass. Catch that here.
fn lockfile_unchanged(root: &Path) -> Result {
    if std::env::var_os("CI").is_none() {
        println!("lockfile: CI is unset, so local Cargo.lock edits are allowed");
        return Ok(());
    }
    let status = Cmd::new("git", root)
        .args(["status", "--porcelain", "--", "Cargo.lock"])
        .read()?;
    if status.trim().is_empty() {
        println!("lockfile: Cargo.lock is committed and unchanged");
        Ok(())
    } else {
        Err(Error::msg(format!(
            "Cargo.lock is missing or stale in the commit (git status: `{}`): run cargo \
             (e.g. `cargo check --workspace`) locally and commit Cargo.lock",
            status.trim()
        )))
    }
}

impl Ctx {
    fn load(root: &Path) -> Result<Self> {
        let text = cmd::cargo(root)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .read()?;
        let metadata = json::parse(&text)?;
        let target_dir = metadata
            .get("target_directory")
            .and_then(json::Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| Error::msg("cargo metadata: no target_directory"))?;
        let packages = metadata
            .get("packages")
            .map(json::Value::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                let name = p.get("name")?.as_str()?.to_owned();
                let has_lib = p
                    .get("targets")
                    .map(json::Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.get("kind"))
                    .flat_map(json::Value::as_array)
                    .any(|k| k.as_str().is_some_and(|k| k.ends_with("lib")));
                let lib_name = p
                    .get("targets")
                    .map(json::Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .find(|t| {
                        t.get("kind")
                            .map(json::Value::as_array)
                            .unwrap_or_default()
                            .iter()
                            .any(|k| k.as_str() == Some("lib"))
                    })
                    .and_then(|t| t.get("name")?.as_str())
                    .map(|name| name.replace('-', "_"));
                let dir = PathBuf::from(p.get("manifest_path")?.as_str()?)
                    .parent()?
                    .to_path_buf();
                Some(Package {
                    name,
                    dir,
                    has_lib,
                    lib_name,
                    publishable: publishable(p),
                })
            })
            .collect();
        Ok(Self {
            root: root.to_path_buf(),
            packages,
            target_dir,
        })
    }

    /// The publishable packages that have a library, with its crate name.
    fn libraries(&self) -> Vec<crate::public_api::Library> {
        self.packages
            .iter()
            .filter(|p| p.publishable)
            .filter_map(|p| {
                Some(crate::public_api::Library {
                    package: p.name.clone(),
                    crate_name: p.lib_name.clone()?,
                })
            })
            .collect()
    }

    fn has_package(&self, name: &str) -> bool {
        self.packages.iter().any(|p| p.name == name)
    }

    fn tools_dir(&self) -> PathBuf {
        self.target_dir.join("tools")
    }

    fn cargo(&self) -> Cmd {
        // A one-shot CI build gains nothing from incremental caches and they cost gigabytes
        // of disk on a machine that may be short of it.
        cmd::cargo(&self.root).env("CARGO_INCREMENTAL", "0")
    }
}

fn fmt(ctx: &Ctx) -> Result {
    ctx.cargo().args(["fmt", "--all", "--check"]).run()
}

fn clippy(ctx: &Ctx) -> Result {
    ctx.cargo()
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
        ])
        .args(["--", "-D", "warnings"])
        .run()
}

fn test(ctx: &Ctx) -> Result {
    // The KMS tests start their services themselves (moto on loopback, a fresh SoftHSM2
    // token); xtask installs the tools so that under it nothing is skipped.
    let moto = tools::python_library(&ctx.root, &ctx.tools_dir(), tools::MOTO)?;
    tools::softhsm2(&ctx.root)?;
    let postgres = crate::postgres::server(&ctx.root)?;
    let azurite = crate::azurite::install(&ctx.root, &ctx.tools_dir())?;
    let cargo = || {
        ctx.cargo()
            .env(XTASK_ENV, "1")
            .env(test_services::moto::PYTHONPATH_ENV, &moto)
            .env(crate::postgres::URL_ENV, &postgres.url)
            .env(crate::azurite::DIR_ENV, &azurite)
    };
    let common = ["--workspace", "--all-features", "--locked"];
    if !tools::has_nextest(&ctx.root) {
        // Plain `cargo test` runs the doctests too.
        println!("cargo-nextest is not installed: running the tests with `cargo test` instead");
        return cargo().arg("test").args(common).run();
    }
    cargo().args(["nextest", "run"]).args(common).run()?;
    // nextest does not run doctests; `cargo test --doc` errors when no package has a library.
    if ctx.packages.iter().any(|p| p.has_lib) {
        cargo().args(["test", "--doc"]).args(common).run()
    } else {
        println!("no workspace package has a library target yet: no doctests to run");
        Ok(())
    }
}

/// The spec check: `docs/spec-check/open_vectors.py`, written from `docs/ciphertext-format.md`
/// alone, must open (or reject) every golden vector exactly as recorded.
fn spec(ctx: &Ctx) -> Result {
    let script = ctx.root.join("docs/spec-check/open_vectors.py");
    if !script.is_file() {
        return Err(Error::msg(format!("{} is missing", script.display())));
    }
    let pythonpath = tools::python_library(&ctx.root, &ctx.tools_dir(), tools::CRYPTOGRAPHY)?;
    Cmd::new(tools::python(), &ctx.root)
        .env("PYTHONPATH", pythonpath)
        .arg(script)
        .run()
}

fn doc(ctx: &Ctx) -> Result {
    ctx.cargo()
        .env("RUSTDOCFLAGS", "-D warnings")
        .args([
            "doc",
            "--workspace",
            "--all-features",
            "--no-deps",
            "--locked",
        ])
        .run()
}

fn guard(ctx: &Ctx) -> Result {
    for package in ISOLATED_PACKAGES {
        if !ctx.has_package(package) {
            println!("package `{package}` is not in the workspace (cargo metadata): not guarded");
            continue;
        }
        let tree = ctx
            .cargo()
            .args([
                "tree",
                "-p",
                package,
                "--no-default-features",
                "-e",
                "normal",
            ])
            .args([
                "--target", "all", "--prefix", "none", "--format", "{p}", "--locked",
            ])
            .read()?;
        let offenders = isolation_offenders(&tree);
        if !offenders.is_empty() {
            return Err(Error::msg(format!(
                "`{package}` without default features depends on {}; put them behind a feature",
                offenders.join(", ")
            )));
        }
        let count = tree.lines().filter(|l| !l.trim().is_empty()).count();
        println!(
            "`{package}` (no default features, normal deps, all targets): {count} crates, \
             none of them a cloud SDK or HTTP stack"
        );
    }
    Ok(())
}

/// The crates in `cargo tree --prefix none --format {p}` output that break feature isolation:
/// AWS or Google crates, reqwest, hyper (and their `-`-suffixed companions).
fn isolation_offenders(tree: &str) -> Vec<String> {
    let mut offenders: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            name.starts_with("aws-")
                || name.starts_with("google-")
                || ["reqwest", "hyper"]
                    .iter()
                    .any(|c| *name == *c || name.starts_with(&format!("{c}-")))
        })
        .map(str::to_owned)
        .collect();
    offenders.sort();
    offenders.dedup();
    offenders
}

/// The public-API listings must match the committed ones (see [`crate::public_api`]).
fn public_api(ctx: &Ctx) -> Result {
    crate::public_api::run(&ctx.root, &ctx.target_dir, &ctx.libraries(), false)
}

/// `cargo xtask public-api [--bless]`, outside `ci`.
pub(crate) fn public_api_listing(root: &Path, bless: bool) -> Result {
    let ctx = Ctx::load(root)?;
    crate::public_api::run(&ctx.root, &ctx.target_dir, &ctx.libraries(), bless)
}

/// Every guide's dependency lines and code as a crate of its own (see [`crate::guides`]).
fn guides(ctx: &Ctx) -> Result {
    let publishable: Vec<(String, PathBuf)> = ctx
        .packages
        .iter()
        .filter(|p| p.publishable)
        .map(|p| (p.name.clone(), p.dir.clone()))
        .collect();
    let libraries: Vec<(String, String)> = ctx
        .libraries()
        .into_iter()
        .map(|l| (l.crate_name.replace('_', "-"), l.package))
        .collect();
    crate::guides::dependency_lines(&ctx.root, &libraries)?;
    for guide in crate::guides::GUIDES {
        crate::guides::check(&ctx.root, &ctx.target_dir, guide, &publishable)?;
    }
    Ok(())
}

/// Whether a `cargo metadata` package may be published: `publish` is `null` (any registry) or
/// lists registries; `publish = false` shows as `[]`.
fn publishable(package: &json::Value) -> bool {
    match package.get("publish") {
        None | Some(json::Value::Null) => true,
        Some(registries) => !registries.as_array().is_empty(),
    }
}

/// `cargo package --no-verify` of every publishable package in ONE invocation: cargo orders
/// them by dependency and resolves each one's workspace dependencies against the `.crate`
/// files it has just made (a local registry overlay), so a crate whose siblings are not on
/// crates.io yet still packages; one `cargo package -p` at a time would look them up on
/// crates.io and fail. This checks what a publish checks before the upload: metadata,
/// versioned (and renamed) dependencies, path-only dev-dependencies stripped, the file list.
/// `--no-verify` because building every package again from its `.crate` would cost minutes;
/// the tests build the same sources. Offline: the test step has fetched every dependency.
fn package(ctx: &Ctx) -> Result {
    let publishable: Vec<&str> = ctx
        .packages
        .iter()
        .filter(|p| p.publishable)
        .map(|p| p.name.as_str())
        .collect();
    if publishable.is_empty() {
        return Err(Error::msg(
            "no workspace package is publishable (cargo metadata says `publish = false` for all)",
        ));
    }
    println!("publishable packages: {}", publishable.join(", "));
    ctx.cargo().args(["fetch", "--locked"]).run()?;
    ctx.cargo()
        // A local run packages uncommitted edits too; CI's checkout is clean anyway.
        .args([
            "package",
            "--no-verify",
            "--allow-dirty",
            "--locked",
            "--offline",
        ])
        .args(publishable.iter().flat_map(|name| ["-p", name]))
        .run()
}

fn deny(ctx: &Ctx) -> Result {
    let cargo_deny = tools::cargo_deny(&ctx.root, &ctx.tools_dir())?;
    // Advisories need the RustSec database from GitHub, which CI cannot reach.
    Cmd::new(cargo_deny, &ctx.root)
        .args(["--locked", "check", "bans", "licenses", "sources"])
        .run()
}

fn fuzz(ctx: &Ctx) -> Result {
    let seconds = fuzz_seconds()?;
    let dirs = fuzz_dirs(&ctx.root)?;
    if dirs.is_empty() {
        println!("no crates/*/fuzz directory exists yet: nothing to fuzz");
        return Ok(());
    }
    let cargo_fuzz = tools::cargo_fuzz(&ctx.root, &ctx.tools_dir())?;
    for dir in dirs {
        // cargo-fuzz works from the crate directory, with its targets in `fuzz/`.
        let crate_dir = dir.parent().unwrap_or(&ctx.root);
        // cargo-fuzz passes nightly-only flags (`-Z sanitizer`, sancov passes); the one stable
        // toolchain accepts them with RUSTC_BOOTSTRAP=1.
        let fuzz_cmd = || {
            Cmd::new(&cargo_fuzz, crate_dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .arg("fuzz")
        };
        let listed = fuzz_cmd().arg("list").read()?;
        let targets: Vec<&str> = listed.split_whitespace().collect();
        if targets.is_empty() {
            return Err(Error::msg(format!(
                "{} has no fuzz targets; add one or remove the directory",
                dir.display()
            )));
        }
        fuzz_cmd().arg("build").run()?;
        for target in targets {
            let started = Instant::now();
            fuzz_cmd()
                .args(["run", target, "--"])
                .arg(format!("-max_total_time={seconds}"))
                // A hang is a finding too; without this one slow input could block for 20 min.
                .arg(format!("-timeout={FUZZ_INPUT_TIMEOUT_SECONDS}"))
                .run()
                .map_err(|e| {
                    Error::msg(format!(
                        "{e}\nfuzz target `{target}` failed on an input: see the artifact path \
                         above; reproduce in {} with \
                         `RUSTC_BOOTSTRAP=1 cargo fuzz run {target} <artifact>`",
                        crate_dir
                            .strip_prefix(&ctx.root)
                            .unwrap_or(crate_dir)
                            .display()
                    ))
                })?;
            println!(
                "fuzz target `{target}`: no failure in {}",
                secs(started.elapsed())
            );
        }
    }
    Ok(())
}

fn fuzz_seconds() -> Result<u64> {
    match std::env::var("PORTAL_BACKUP_FUZZ_SECONDS") {
        Err(_) => Ok(DEFAULT_FUZZ_SECONDS),
        Ok(text) => match text.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::msg(format!(
                "PORTAL_BACKUP_FUZZ_SECONDS must be a positive number of seconds, not `{text}`"
            ))),
        },
    }
}

/// `crates/*/fuzz` directories in cargo-fuzz layout (with a `Cargo.toml`), sorted.
fn fuzz_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let crates = root.join("crates");
    if !crates.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&crates)? {
        let fuzz = entry?.path().join("fuzz");
        if fuzz.join("Cargo.toml").is_file() {
            dirs.push(fuzz);
        }
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_offenders_are_named() {
        let tree = "envelope v0.1.0 (/x/crates/envelope)\naes-gcm v0.11.1\n\
                    aws-sdk-kms v1.129.0\nhyper v1.7.0\nhyper-util v0.1.0\n\
                    google-cloud-kms-v1 v1.16.0\nreqwest v0.13.0\nhyperlocal-ish v1.0.0\n\
                    aws-sdk-kms v1.129.0 (*)\n";
        assert_eq!(
            isolation_offenders(tree),
            [
                "aws-sdk-kms",
                "google-cloud-kms-v1",
                "hyper",
                "hyper-util",
                "reqwest"
            ]
        );
        assert!(isolation_offenders("envelope v0.1.0\nsha2 v0.11.0\n").is_empty());
    }

    #[test]
    fn publish_false_is_an_empty_registry_list() {
        let parse = |text: &str| json::parse(text).unwrap();
        assert!(publishable(&parse(r#"{"name":"a","publish":null}"#)));
        assert!(publishable(&parse(
            r#"{"name":"a","publish":["crates-io"]}"#
        )));
        assert!(!publishable(&parse(r#"{"name":"a","publish":[]}"#)));
    }

    #[test]
    fn step_names_are_unique_and_in_ci_order() {
        let names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "clippy",
                "test",
                "spec",
                "doc",
                "public-api",
                "guides",
                "guard",
                "package",
                "deny",
                "fuzz"
            ]
        );
    }
}
