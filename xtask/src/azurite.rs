//! Azurite, Microsoft's official Azure Storage emulator, for the `storage` crate's Azure
//! tests: installed from the npm registry into `target/tools/npm` when missing (Node.js and
//! npm must be on `PATH`). The tests start its blob service themselves, on loopback, with a
//! throwaway data directory; they find it through [`DIR_ENV`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cmd::{Cmd, Error, Result};

/// The npm package, pinned.
const PACKAGE: &str = "azurite@3.35.0";

/// The environment variable naming the npm prefix directory that holds
/// `node_modules/azurite` (read by `test_services::azurite`).
pub(crate) use test_services::azurite::DIR_ENV;

/// The npm prefix directory holding Azurite, installing it into `tools/npm` if needed.
pub(crate) fn install(root: &Path, tools: &Path) -> Result<PathBuf> {
    let dir = tools.join("npm");
    let main = dir.join("node_modules/azurite/dist/src/blob/main.js");
    if main.is_file() {
        return Ok(dir);
    }
    if !Cmd::new("node", root).arg("--version").succeeds()
        || !Cmd::new("npm", root).arg("--version").succeeds()
    {
        return Err(Error::msg(
            "the Azure storage tests need Azurite, which runs on Node.js: install Node.js 20 or \
             later with npm (Debian: `apt-get install nodejs npm`) and run again",
        ));
    }
    std::fs::create_dir_all(&dir)?;
    println!("installing {PACKAGE} from npm into {}", dir.display());
    let started = Instant::now();
    Cmd::new("npm", root)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&dir)
        .arg(PACKAGE)
        .run()?;
    if !main.is_file() {
        return Err(Error::msg(format!(
            "{PACKAGE} installed but {} is missing",
            main.display()
        )));
    }
    println!(
        "installed {PACKAGE} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}
