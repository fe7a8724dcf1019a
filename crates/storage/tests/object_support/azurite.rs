//! Azure blobs on Azurite: containers and object_store Azure clients on the Azurite server of
//! `test_services::azurite` (one per test process, on loopback).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use object_store::azure::MicrosoftAzureBuilder;
use storage::object::ObjectStoreStore;
pub use test_services::azurite::{ACCOUNT, ACCOUNT_KEY, Azurite, node, shared};

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

/// Containers and clients on an Azurite server.
pub trait AzuriteBlobs {
    /// Creates a new, empty container with a unique name; returns its name.
    fn new_container(&self) -> String;
    /// An object_store Azure client of `container` on this server.
    fn azure(&self, container: &str) -> MicrosoftAzureBuilder;
    /// Our store over a new container, under `prefix`.
    fn store(&self, prefix: &str) -> ObjectStoreStore;
}

impl AzuriteBlobs for Azurite {
    fn new_container(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "portal-backup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let output = node()
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

    fn azure(&self, container: &str) -> MicrosoftAzureBuilder {
        MicrosoftAzureBuilder::new()
            .with_endpoint(self.endpoint.clone())
            .with_allow_http(true)
            .with_account(ACCOUNT)
            .with_access_key(ACCOUNT_KEY)
            .with_container_name(container)
    }

    fn store(&self, prefix: &str) -> ObjectStoreStore {
        let container = self.new_container();
        let azure = self.azure(&container).build().unwrap();
        ObjectStoreStore::new(Arc::new(azure), prefix)
            .unwrap()
            .with_name("azure")
    }
}
