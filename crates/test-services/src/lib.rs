//! The services the workspace's tests, examples and `cargo xtask` start on loopback, in one
//! place: [`moto`] (AWS emulator), [`postgres`] (a throwaway PostgreSQL server) and
//! [`azurite`] (Microsoft's Azure Storage emulator), plus what they share: [`free_port`],
//! [`wait_for_port`], [`tool_missing`] (the skip-or-fail rule) and [`workspace_root`].
//!
//! Every service here:
//!
//! * listens on `127.0.0.1` only, on a free port;
//! * keeps its data in a throwaway directory (or in memory);
//! * runs as a child process whose standard input is a pipe from this process. The child
//!   stops when the pipe closes, so it never outlives the test process, however that process
//!   ends; dropping the handle closes the pipe earlier.
//!
//! A service whose tool is not installed makes the caller skip loudly (a `SKIPPED:` line on
//! standard error), except under `cargo xtask ci`, which sets [`XTASK_ENV`] to `1`: there it
//! is a failure (a panic). See `xtask/TOOLS-NEEDED.md` for what to install.
//!
//! The crate uses `std` only and is not published; it panics on broken fixtures, since a
//! panic is a test failure.
//!
//! ```no_run
//! // In a test: the shared server of this process, or a loud skip.
//! let Some(pg) = test_services::postgres::shared() else { return };
//! let (_name, url) = pg.create_database("mytest");
//! assert!(url.starts_with("postgres://"));
//! ```

pub mod azurite;
pub mod moto;
pub mod postgres;
mod process;

use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use process::Watched;

/// Set to `1` by `cargo xtask ci`: a missing tool is a failure, not a skip.
pub const XTASK_ENV: &str = "PORTAL_BACKUP_XTASK";

/// Whether this process runs under `cargo xtask ci` ([`XTASK_ENV`] is `1`).
#[must_use]
pub fn under_xtask() -> bool {
    std::env::var(XTASK_ENV).is_ok_and(|v| v == "1")
}

/// Reports a missing tool: panics under `cargo xtask ci` ([`under_xtask`]), else prints a loud
/// `SKIPPED:` line straight to standard error (past the test harness's output capture, so the
/// skip shows even when the test passes) and returns, so that the caller can return too.
///
/// # Panics
///
/// Under `cargo xtask ci`.
pub fn tool_missing(tool: &str, detail: &str) {
    assert!(
        !under_xtask(),
        "{tool} is required under `cargo xtask ci` but is not usable: {detail} \
         (see xtask/TOOLS-NEEDED.md)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {tool} not installed; run cargo xtask ci ({detail})"
    );
}

/// The workspace root: the nearest directory above this crate holding `Cargo.lock`.
#[must_use]
pub fn workspace_root() -> PathBuf {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(&package)
        .to_path_buf()
}

/// A loopback port nobody listens on (bound, then released for the service to take).
///
/// # Panics
///
/// When no loopback port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a loopback port")
        .port()
}

/// Waits until something accepts connections on `127.0.0.1:port`; `false` after `timeout`.
#[must_use]
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// 32 random hex digits from std's per-process random SipHash keys: good enough for a
/// throwaway test password or directory name, not for anything that must stay secret long.
#[must_use]
pub fn random_hex() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (0..2u64)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(now);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// A fresh directory `portal-backup-<what>-<pid>-<random>` under the system's temporary
/// directory, readable by this user only.
///
/// # Panics
///
/// When the directory cannot be made.
#[must_use]
pub fn scratch_dir(what: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let random = random_hex();
    let dir = std::env::temp_dir().join(format!(
        "portal-backup-{what}-{}-{}",
        std::process::id(),
        random.get(..12).unwrap_or(&random)
    ));
    std::fs::create_dir(&dir).expect("making a scratch directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .expect("restricting the scratch directory");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_free_until_taken_and_waited_for() {
        let port = free_port();
        assert!(!wait_for_port(port, Duration::from_millis(200)));
        let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        assert!(wait_for_port(port, Duration::from_secs(5)));
    }

    #[test]
    fn random_hex_is_32_hex_digits_and_differs() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_workspace_root_holds_the_lock_file() {
        assert!(workspace_root().join("Cargo.lock").is_file());
    }
}
