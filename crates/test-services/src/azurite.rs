//! Azurite's blob service (Microsoft's official Azure Storage emulator) on a loopback port,
//! one per process.
//!
//! Azurite (the npm package `azurite`) is found in the npm prefix directory named by
//! [`DIR_ENV`] (set by `cargo xtask ci`; default `target/tools/npm` of the workspace), and run
//! with `node` ([`NODE_ENV`] overrides it). Its data lives in a throwaway directory; the
//! server runs as a [`Watched`] child whose launcher removes that directory and exits when
//! its standard input closes.
//!
//! Containers and object_store's Azure builder live in the `storage` crate's tests, on top of
//! [`Azurite::endpoint`], [`ACCOUNT`] and [`ACCOUNT_KEY`].

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{Watched, free_port, scratch_dir, tool_missing, wait_for_port, workspace_root};

/// The npm prefix directory holding `node_modules/azurite`.
pub const DIR_ENV: &str = "PORTAL_BACKUP_AZURITE_DIR";
/// The Node.js binary (default `node`).
pub const NODE_ENV: &str = "PORTAL_BACKUP_NODE";

/// The well-known account of Azurite (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
/// The well-known key of [`ACCOUNT`] (public, documented by Microsoft).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs Azurite's blob main module (`argv[1]`) with the remaining arguments; when standard
/// input closes, removes the data directory (`AZURITE_SCRATCH`) and exits.
const LAUNCHER: &str = r#"
const stop = () => {
  try { require('fs').rmSync(process.env.AZURITE_SCRATCH, { recursive: true, force: true }); } catch (e) {}
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
const main = process.argv[1];
process.argv = [process.argv[0], main, ...process.argv.slice(2)];
require(main);
"#;

/// Azurite's blob service on loopback; stopped (and its data removed) on drop.
#[derive(Debug)]
pub struct Azurite {
    process: Watched,
    /// The loopback port.
    pub port: u16,
    /// The account URL: `http://127.0.0.1:{port}/devstoreaccount1`.
    pub endpoint: String,
}

/// `node`, or what [`NODE_ENV`] names.
#[must_use]
pub fn node() -> Command {
    Command::new(std::env::var_os(NODE_ENV).unwrap_or_else(|| "node".into()))
}

/// The blob service's main module, if Azurite is installed.
#[must_use]
pub fn main_module() -> Option<PathBuf> {
    let dir = std::env::var_os(DIR_ENV)
        .map_or_else(|| workspace_root().join("target/tools/npm"), PathBuf::from);
    let main = dir.join("node_modules/azurite/dist/src/blob/main.js");
    main.is_file().then_some(main)
}

/// Starts Azurite's blob service, or reports it (or Node.js) missing ([`tool_missing`]) and
/// returns `None`.
///
/// # Panics
///
/// When Azurite is missing under `cargo xtask ci`, or does not listen within 60 s.
#[must_use]
pub fn start() -> Option<Azurite> {
    let Some(main) = main_module() else {
        tool_missing(
            "azurite",
            &format!(
                "no node_modules/azurite in {DIR_ENV} or target/tools/npm; \
                 `npm install --prefix target/tools/npm azurite`"
            ),
        );
        return None;
    };
    let node_works = node()
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_works {
        tool_missing("node", "`node --version` failed");
        return None;
    }
    let data = scratch_dir("azurite");
    let port = free_port();
    let mut process = Watched::spawn(
        node()
            .arg("-e")
            .arg(LAUNCHER)
            .arg(&main)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data)
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--disableTelemetry",
            ])
            .env("AZURITE_SCRATCH", &data),
        Duration::from_secs(5),
    )
    .expect("starting Azurite");
    if !wait_for_port(port, START_TIMEOUT) {
        let status = process.try_wait();
        panic!("azurite did not start on port {port} within 60 s (exit status: {status:?})");
    }
    Some(Azurite {
        process,
        port,
        endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
    })
}

/// The Azurite server shared by this process, started on first use (it stops when the
/// process exits). `None` after a loud skip.
#[must_use]
pub fn shared() -> Option<&'static Azurite> {
    static AZURITE: OnceLock<Option<Azurite>> = OnceLock::new();
    AZURITE.get_or_init(start).as_ref()
}

impl Azurite {
    /// The server process's id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server listens on loopback, and once dropped it is gone with its data directory.
    #[test]
    fn starts_on_loopback_and_removes_its_data_on_drop() {
        let Some(azurite) = start() else { return };
        let port = azurite.port;
        assert_eq!(
            azurite.endpoint,
            format!("http://127.0.0.1:{port}/devstoreaccount1")
        );
        let pattern = format!("portal-backup-azurite-{}-", std::process::id());
        let ours = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&pattern))
                .count()
        };
        assert_eq!(ours(), 1);
        let stopping = std::time::Instant::now();
        drop(azurite);
        // Well within the 5 s grace: it stopped by itself when the pipe closed.
        assert!(
            stopping.elapsed() < Duration::from_secs(3),
            "azurite had to be killed"
        );
        assert!(!wait_for_port(port, Duration::from_millis(300)));
        assert_eq!(ours(), 0, "Azurite's data directory outlived it");
    }
}
