//! Test support for the object-store backend: buckets and object_store clients on the
//! services its tests talk to, on loopback, stopped when dropped or when the test process
//! exits.
//!
//! * `moto`: S3 on moto's server (`moto[server]>=5.1.5`, which `cargo xtask ci` installs into
//!   `target/tools/py`), started by `test_services::moto`;
//! * `azurite`: Azure blobs on Azurite (the npm package `azurite`, which `cargo xtask ci`
//!   installs into `target/tools/npm`), started by `test_services::azurite`;
//! * `gcs_fake`: an in-process fake of the parts of the GCS XML API that object_store uses.
//!
//! A service whose tool is not installed makes the test fail under `cargo xtask ci`
//! (`PORTAL_BACKUP_XTASK=1`) and skip loudly otherwise (`test_services::tool_missing`).
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)] // shared by several test binaries and an example
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)] // test fixtures: a panic is a test failure

#[cfg(feature = "azure")]
pub mod azurite;
#[cfg(feature = "gcs")]
pub mod gcs_fake;
#[cfg(feature = "s3")]
pub mod moto;

use std::io::Write as _;
use std::time::Duration;

/// Sends one plain HTTP/1.1 request to `127.0.0.1:port` and returns the status code and body.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Median, 90th percentile and mean of durations, in milliseconds.
pub fn stats_ms(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64;
    (at(0.5), at(0.9), mean * 1000.0)
}
