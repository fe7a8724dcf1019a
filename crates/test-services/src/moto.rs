//! A moto server (the AWS emulator: KMS, S3, …) on a loopback port, one per process.
//!
//! moto is found as: the Python package directory in [`PYTHONPATH_ENV`] (set by `cargo xtask
//! ci`; default `target/tools/py` of the workspace, where `pip install --target` puts it),
//! else a `moto` importable by `python3` ([`PYTHON_ENV`] overrides the interpreter). The
//! server keeps its state in memory and runs as a [`Watched`] child: a small Python launcher
//! exits when its standard input closes.
//!
//! Clients (an `aws_sdk_kms` client, object_store's S3 builder, buckets) live in the crates
//! whose tests use them, on top of [`Moto::endpoint`].

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{Watched, free_port, tool_missing, wait_for_port, workspace_root};

/// The directory holding the `moto` package (`pip install --target <dir>`).
pub const PYTHONPATH_ENV: &str = "PORTAL_BACKUP_MOTO_PYTHONPATH";
/// The Python interpreter that runs `moto.server` (default `python3`).
pub const PYTHON_ENV: &str = "PORTAL_BACKUP_PYTHON";
/// A running moto server to use instead of starting one (`http://127.0.0.1:<port>`); a test
/// binary sets it for the child runs of itself it starts, so they share its server.
pub const ENDPOINT_ENV: &str = "PORTAL_BACKUP_TEST_MOTO_ENDPOINT";

/// How long moto may take to listen (importing it is slow on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts moto's server on the port in `argv[1]`; exits as soon as standard input closes.
const LAUNCHER: &str = r#"
import os, sys, threading
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
import moto.server as server
# Real S3 and KMS are linearizable: a conditional write (If-Match, If-None-Match) is atomic and
# a listing sees whole writes. moto's threaded server is not: two racing compare-and-swap puts
# could both win, and a request could fail while another one changed the same bucket. So
# moto serves one request at a time here; tests get S3's semantics, at moto's single-thread
# speed.
one_at_a_time = threading.Lock()
serve = server.run_simple
def run_simple(host, port, app, *args, **kwargs):
    def linearized(environ, start_response):
        with one_at_a_time:
            return list(app(environ, start_response))
    return serve(host, port, linearized, *args, **kwargs)
server.run_simple = run_simple
server.main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

/// A moto server on loopback; stopped on drop unless it came from [`ENDPOINT_ENV`].
#[derive(Debug)]
pub struct Moto {
    /// The server process; `None` for a server from [`ENDPOINT_ENV`].
    process: Option<Watched>,
    /// The loopback port.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// The server at `endpoint` (`http://127.0.0.1:<port>`), not ours to stop.
    ///
    /// # Panics
    ///
    /// When `endpoint` does not end in `:<port>`.
    #[must_use]
    pub fn external(endpoint: &str) -> Self {
        let port = endpoint
            .trim_end_matches('/')
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("a moto endpoint like http://127.0.0.1:<port>");
        Self {
            process: None,
            port,
            endpoint: endpoint.to_owned(),
        }
    }

    /// The server process's id, when this process started the server.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Watched::id)
    }
}

fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into())
}

/// `python3` with `PYTHONPATH` set to moto's directory, when it has one.
fn python_command() -> Command {
    let mut cmd = Command::new(python());
    let dir = std::env::var_os(PYTHONPATH_ENV)
        .map_or_else(|| workspace_root().join("target/tools/py"), PathBuf::from);
    if dir.join("moto").is_dir() {
        cmd.env("PYTHONPATH", dir);
    }
    cmd
}

/// Starts a moto server, or reports it missing ([`tool_missing`]) and returns `None`.
///
/// # Panics
///
/// When moto is missing under `cargo xtask ci`, or does not listen within 60 s.
#[must_use]
pub fn start() -> Option<Moto> {
    let importable = python_command()
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        tool_missing(
            "moto",
            &format!(
                "`{} -c 'import moto.server'` failed; install moto[server]>=5.1.5 into \
                 target/tools/py or set {PYTHONPATH_ENV}",
                python()
            ),
        );
        return None;
    }
    let port = free_port();
    let mut process = Watched::spawn(
        python_command().args(["-c", LAUNCHER, &port.to_string()]),
        Duration::from_secs(5),
    )
    .expect("starting moto's server");
    if !wait_for_port(port, START_TIMEOUT) {
        let status = process.try_wait();
        panic!("moto did not start on port {port} within 60 s (exit status: {status:?})");
    }
    Some(Moto {
        process: Some(process),
        port,
        endpoint: format!("http://127.0.0.1:{port}"),
    })
}

/// The moto server shared by this process: the one in [`ENDPOINT_ENV`], else one started on
/// first use (it stops when the process exits). `None` after a loud skip.
#[must_use]
pub fn shared() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| match std::env::var(ENDPOINT_ENV) {
        Ok(endpoint) => Some(Moto::external(&endpoint)),
        Err(_) => start(),
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_endpoint_gives_its_port() {
        let moto = Moto::external("http://127.0.0.1:45123/");
        assert_eq!(moto.port, 45123);
        assert_eq!(moto.pid(), None);
    }

    /// The server listens on loopback and is gone once dropped.
    #[test]
    fn starts_on_loopback_and_stops_on_drop() {
        let Some(moto) = start() else { return };
        assert!(moto.endpoint.starts_with("http://127.0.0.1:"));
        let port = moto.port;
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let stopping = std::time::Instant::now();
        drop(moto);
        // Well within the 5 s grace: it stopped by itself when the pipe closed.
        assert!(
            stopping.elapsed() < Duration::from_secs(3),
            "moto had to be killed"
        );
        assert!(!wait_for_port(port, Duration::from_millis(300)));
    }
}
