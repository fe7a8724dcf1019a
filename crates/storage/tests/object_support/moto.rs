//! moto's S3 on a loopback port, one per test process, and buckets on it.
//!
//! moto is found as: the Python package directory in `PORTAL_BACKUP_MOTO_PYTHONPATH` (set by
//! `cargo xtask ci`; default `target/tools/py` of the workspace), else a `moto` importable by
//! `python3` (`PORTAL_BACKUP_PYTHON` overrides the interpreter). The server is a child whose
//! standard input is a pipe from this process: it exits when the pipe closes, so it never
//! outlives the test process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use storage::object::ObjectStoreStore;

use super::{free_port, http, tool_missing, wait_for_port, workspace_root};

pub const PYTHONPATH_ENV: &str = "PORTAL_BACKUP_MOTO_PYTHONPATH";
pub const PYTHON_ENV: &str = "PORTAL_BACKUP_PYTHON";

const LAUNCHER: &str = r#"
import os, sys, threading
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into())
}

fn python_command() -> Command {
    let mut cmd = Command::new(python());
    let dir = std::env::var(PYTHONPATH_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/tools/py"));
    if dir.join("moto").is_dir() {
        cmd.env("PYTHONPATH", dir);
    }
    cmd
}

/// Starts a moto server, or reports it missing (`None`).
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
                "`{} -c 'import moto.server'` failed; install moto[server]>=5.1.5 into target/tools/py or set {PYTHONPATH_ENV}",
                python()
            ),
        );
        return None;
    }
    let port = free_port();
    let child = python_command()
        .args(["-c", LAUNCHER, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut moto = Moto {
        child,
        port,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    if !wait_for_port(port, Duration::from_secs(60)) {
        let status = moto.child.try_wait();
        panic!("moto did not start on port {port} within 60 s (exit status: {status:?})");
    }
    Some(moto)
}

/// The moto server shared by this test process.
pub fn shared() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(start).as_ref()
}

impl Moto {
    /// Creates a new, empty bucket with a unique name (moto accepts an unsigned
    /// `PUT /<bucket>`); returns its name.
    pub fn new_bucket(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "portal-backup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let (status, body) = http(self.port, "PUT", &format!("/{name}"), &[]);
        assert_eq!(status, 200, "creating bucket {name} on moto: {body}");
        name
    }

    /// An object_store S3 client of `bucket` on this server, with test credentials.
    pub fn s3(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
    }

    /// Our store over a new bucket, under `prefix`.
    pub fn store(&self, prefix: &str) -> ObjectStoreStore {
        let bucket = self.new_bucket();
        let s3 = self.s3(&bucket).build().unwrap();
        ObjectStoreStore::new(Arc::new(s3), prefix)
            .unwrap()
            .with_name("s3")
    }
}
