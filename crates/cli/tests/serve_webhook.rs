//! `portal-backup serve-webhook`: the webhook server over `--kms` and `--store`, driven by
//! portal-sim in Self-Managed mode; the secret only from the environment or a file.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances; a broken
// fixture should panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test helpers")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use portal_api::client_api::SharePairStatusUpdate;
use portal_api::{ApiKey, SharePairUpdateStatus};
use portal_sim::{PortalSim, SimConfig, WebhookConfig};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const SECRET: &str = "serve-webhook-test-secret";

fn base(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", dir)
        .env(
            "PORTAL_BACKUP_KMS",
            format!("local:{}", dir.join("kek").display()),
        )
        .env(
            "PORTAL_BACKUP_STORE",
            format!("file:{}", dir.join("store").display()),
        );
    cmd
}

/// Starts `serve-webhook` and returns the child and its listen address.
fn serve(mut cmd: Command, extra: &[&std::ffi::OsStr]) -> (Child, String) {
    let mut child = cmd
        .args([
            "serve-webhook",
            "--listen",
            "127.0.0.1:0",
            "--allow",
            "loopback",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    (child, started["listening"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sim_backs_up_through_serve_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = base(dir.path())
        .args(["keygen", "--out"])
        .arg(dir.path().join("kek"))
        .output()
        .unwrap();
    assert!(keygen.status.success());

    let mut cmd = base(dir.path());
    cmd.env("PORTAL_WEBHOOK_SECRET", SECRET);
    let (mut child, addr) = serve(cmd, &[]);

    let sim = PortalSim::start(SimConfig::new().with_webhook(WebhookConfig::new(
        format!("http://{addr}"),
        ApiKey::from(SECRET),
    )))
    .await
    .unwrap();
    let (keys, generated) = sim.generated_client().await.unwrap();
    let client = sim
        .portal_builder()
        .build()
        .unwrap()
        .client_with_api_key(&keys.client_api_key)
        .unwrap();
    let backup = client.backup(&generated).await.unwrap();
    client
        .update_backup_share_pairs(&SharePairStatusUpdate::backup(
            backup.ids(),
            SharePairUpdateStatus::StoredClientBackupShare,
        ))
        .await
        .unwrap();
    client.recover(&backup).await.unwrap();
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
    child.kill().unwrap();
    child.wait().unwrap();
    // Two sealed custodian shares, one per curve method, in the file store.
    let client_dir = dir
        .path()
        .join("store")
        .join(&keys.client_id)
        .join("custodian-backup");
    assert!(client_dir.is_dir());
}

#[test]
fn the_secret_comes_from_the_environment_or_a_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = base(dir.path())
        .args(["keygen", "--out"])
        .arg(dir.path().join("kek"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    // No secret at all: refused with a hint.
    let out = base(dir.path())
        .args(["serve-webhook", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORTAL_WEBHOOK_SECRET"), "{err}");
    // There is no option that takes the secret itself.
    let out = base(dir.path())
        .args(["serve-webhook", "--listen", "127.0.0.1:0", "--secret", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Portal keeps no custodian shares: a store of our own is needed.
    let out = base(dir.path())
        .env("PORTAL_BACKUP_STORE", "portal")
        .env("PORTAL_WEBHOOK_SECRET", SECRET)
        .args(["serve-webhook", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("store of your own"));
    // A secret file works when only its owner can read it.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = base(dir.path())
        .args(["serve-webhook", "--listen", "127.0.0.1:0", "--secret-file"])
        .arg(&secret_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut child, addr) = serve(
        base(dir.path()),
        &["--secret-file".as_ref(), secret_file.as_os_str()],
    );
    assert!(addr.starts_with("127.0.0.1:"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_needs_behind_tls_proxy_and_metrics_have_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = base(dir.path())
        .args(["keygen", "--out"])
        .arg(dir.path().join("kek"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    // Plain HTTP on every address: refused, with the way out.
    let out = base(dir.path())
        .env("PORTAL_WEBHOOK_SECRET", SECRET)
        .args(["serve-webhook", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain HTTP")
            && err.contains("--behind-tls-proxy")
            && err.contains("--tls-cert"),
        "{err}"
    );
    // Said explicitly: served, with the metrics listener next to it.
    let mut cmd = base(dir.path());
    cmd.env("PORTAL_WEBHOOK_SECRET", SECRET)
        .args([
            "serve-webhook",
            "--listen",
            "0.0.0.0:0",
            "--behind-tls-proxy",
        ])
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-connections-per-peer",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = started["listening"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let metrics = started["metrics_listening"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    for path in ["/healthz", "/readyz"] {
        let resp = http
            .get(format!("http://{metrics}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    let scrape = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("custodian_webhook_requests_total{route=\"healthz\",status=\"200\"} 1"),
        "{scrape}"
    );
    assert!(scrape.contains("custodian_webhook_build_info{"), "{scrape}");
    child.kill().unwrap();
    child.wait().unwrap();
}
