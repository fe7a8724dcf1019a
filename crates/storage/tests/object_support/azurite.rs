//! Azurite's blob service on a loopback port, one per test process, and containers on it.
//!
//! Azurite (the npm package `azurite`, Microsoft's official emulator) is found in the npm
//! prefix directory named by `PORTAL_BACKUP_AZURITE_DIR` (set by `cargo xtask ci`; default
//! `target/tools/npm` of the workspace), and run with `node` (`PORTAL_BACKUP_NODE` overrides
//! it). Its data lives in a temporary directory; the server is a child whose standard input
//! is a pipe from this process, so it exits when the test process does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::azure::MicrosoftAzureBuilder;
use storage::object::ObjectStoreStore;

use super::{free_port, tool_missing, wait_for_port, workspace_root};

pub const DIR_ENV: &str = "PORTAL_BACKUP_AZURITE_DIR";
pub const NODE_ENV: &str = "PORTAL_BACKUP_NODE";

/// The well-known account and key of Azurite (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Runs Azurite's blob main module with the given arguments, exiting when stdin closes.
const LAUNCHER: &str = r#"
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
const main = process.argv[1];
process.argv = [process.argv[0], main, ...process.argv.slice(2)];
require(main);
"#;

/// Creates a container (object_store cannot): `PUT /{account}/{container}?restype=container`
/// signed with the emulator's shared key.
const CREATE_CONTAINER: &str = r#"
const [port, container, account, keyB64] = process.argv.slice(1);
const crypto = require('crypto'), http = require('http');
const date = new Date().toUTCString(), version = '2021-08-06';
const path = `/${account}/${container}`;
const toSign = 'PUT\n' + '\n'.repeat(11) + `x-ms-date:${date}\nx-ms-version:${version}\n`
  + `/${account}${path}\nrestype:container`;
const sig = crypto.createHmac('sha256', Buffer.from(keyB64, 'base64')).update(toSign, 'utf8').digest('base64');
const req = http.request({ host: '127.0.0.1', port, method: 'PUT', path: `${path}?restype=container`,
  headers: { 'x-ms-date': date, 'x-ms-version': version, 'Content-Length': 0,
             Authorization: `SharedKey ${account}:${sig}` } },
  res => { let b = ''; res.on('data', d => b += d); res.on('end', () => {
    if (res.statusCode !== 201) { console.error(res.statusCode, b); process.exit(1); } }); });
req.on('error', e => { console.error(e.message); process.exit(1); });
req.end();
"#;

#[derive(Debug)]
pub struct Azurite {
    child: Child,
    _data: tempfile::TempDir,
    pub port: u16,
    /// The account URL: `http://127.0.0.1:{port}/devstoreaccount1`.
    pub endpoint: String,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node() -> String {
    std::env::var(NODE_ENV).unwrap_or_else(|_| "node".into())
}

/// The blob service's main module, if Azurite is installed.
pub fn main_module() -> Option<PathBuf> {
    let dir = std::env::var(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/tools/npm"));
    let main = dir.join("node_modules/azurite/dist/src/blob/main.js");
    main.is_file().then_some(main)
}

/// Starts Azurite's blob service, or reports it missing (`None`).
pub fn start() -> Option<Azurite> {
    let Some(main) = main_module() else {
        tool_missing(
            "azurite",
            &format!(
                "no node_modules/azurite in {DIR_ENV} or target/tools/npm; `npm install --prefix target/tools/npm azurite`"
            ),
        );
        return None;
    };
    let node_works = Command::new(node())
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_works {
        tool_missing("node", &format!("`{} --version` failed", node()));
        return None;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(node())
        .arg("-e")
        .arg(LAUNCHER)
        .arg(&main)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(data.path())
        .args([
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut azurite = Azurite {
        child,
        _data: data,
        port,
        endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
    };
    if !wait_for_port(port, Duration::from_secs(60)) {
        let status = azurite.child.try_wait();
        panic!("azurite did not start on port {port} within 60 s (exit status: {status:?})");
    }
    Some(azurite)
}

/// The Azurite server shared by this test process.
pub fn shared() -> Option<&'static Azurite> {
    static AZURITE: OnceLock<Option<Azurite>> = OnceLock::new();
    AZURITE.get_or_init(start).as_ref()
}

impl Azurite {
    /// Creates a new, empty container with a unique name; returns its name.
    pub fn new_container(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "portal-backup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let output = Command::new(node())
            .arg("-e")
            .arg(CREATE_CONTAINER)
            .args([&self.port.to_string(), &name, ACCOUNT, ACCOUNT_KEY])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "creating container {name} on azurite: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        name
    }

    /// An object_store Azure client of `container` on this server.
    pub fn azure(&self, container: &str) -> MicrosoftAzureBuilder {
        MicrosoftAzureBuilder::new()
            .with_endpoint(self.endpoint.clone())
            .with_allow_http(true)
            .with_account(ACCOUNT)
            .with_access_key(ACCOUNT_KEY)
            .with_container_name(container)
    }

    /// Our store over a new container, under `prefix`.
    pub fn store(&self, prefix: &str) -> ObjectStoreStore {
        let container = self.new_container();
        let azure = self.azure(&container).build().unwrap();
        ObjectStoreStore::new(Arc::new(azure), prefix)
            .unwrap()
            .with_name("azure")
    }
}
