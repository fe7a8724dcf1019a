//! A moto server (AWS KMS emulator) on a loopback port, one per test binary.
//!
//! Found as: the Python package directory in `PORTAL_BACKUP_MOTO_PYTHONPATH` (default
//! `target/tools/py` of the workspace, where `pip install --target` puts it), else a `moto`
//! importable by `python3` (`PORTAL_BACKUP_PYTHON` overrides the interpreter). The server runs
//! as a child whose standard input is a pipe from this process: it exits when the pipe closes,
//! so it never outlives the test binary, and `Drop` kills it earlier when it is not shared.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};

use super::{free_port, tool_missing, wait_for_port, workspace_root};

pub const PYTHONPATH_ENV: &str = "PORTAL_BACKUP_MOTO_PYTHONPATH";
pub const PYTHON_ENV: &str = "PORTAL_BACKUP_PYTHON";
/// Set for child runs of a test binary: the parent's moto server.
pub const ENDPOINT_ENV: &str = "PORTAL_BACKUP_TEST_MOTO_ENDPOINT";

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
    child: Option<Child>,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into())
}

fn pythonpath() -> Option<PathBuf> {
    let dir = std::env::var(PYTHONPATH_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/tools/py"));
    dir.join("moto").is_dir().then_some(dir)
}

fn python_command() -> Command {
    let mut cmd = Command::new(python());
    if let Some(dir) = pythonpath() {
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
                "`{} -c 'import moto.server'` failed; install moto[server] into target/tools/py or set {PYTHONPATH_ENV}",
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
        child: Some(child),
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    if !wait_for_port(port, Duration::from_secs(60)) {
        let status = moto.child.as_mut().map(Child::try_wait);
        panic!("moto did not start on port {port} within 60 s (exit status: {status:?})");
    }
    Some(moto)
}

/// The moto server shared by this test binary.
pub fn shared() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| match std::env::var(ENDPOINT_ENV) {
        Ok(endpoint) => Some(Moto {
            child: None,
            endpoint,
        }),
        Err(_) => start(),
    })
    .as_ref()
}

/// Counts the HTTP requests a client sends (every attempt), by KMS operation.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Counts>);

#[derive(Debug, Default)]
pub struct Counts {
    pub generate_data_key: AtomicUsize,
    pub encrypt: AtomicUsize,
    pub decrypt: AtomicUsize,
    pub re_encrypt: AtomicUsize,
    pub other: AtomicUsize,
}

impl RequestCounter {
    /// (GenerateDataKey, Encrypt, Decrypt, ReEncrypt, other) since the last call.
    pub fn take(&self) -> (usize, usize, usize, usize, usize) {
        let c = &self.0;
        (
            c.generate_data_key.swap(0, Ordering::SeqCst),
            c.encrypt.swap(0, Ordering::SeqCst),
            c.decrypt.swap(0, Ordering::SeqCst),
            c.re_encrypt.swap(0, Ordering::SeqCst),
            c.other.swap(0, Ordering::SeqCst),
        )
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_owned();
        let c = &self.0;
        let counter = match target.rsplit('.').next().unwrap_or_default() {
            "GenerateDataKey" => &c.generate_data_key,
            "Encrypt" => &c.encrypt,
            "Decrypt" => &c.decrypt,
            "ReEncrypt" => &c.re_encrypt,
            _ => &c.other,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A KMS client for `endpoint` with test credentials, counting its requests.
pub fn client(endpoint: &str, counter: &RequestCounter) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .interceptor(counter.clone())
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// A fresh symmetric key on the server; its ARN.
pub async fn create_key(client: &aws_sdk_kms::Client) -> String {
    client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}
