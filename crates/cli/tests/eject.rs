//! `portal-backup eject` end to end: Portal's published vectors through `eject combine`; eject
//! through Portal for a Portal-managed client (keys equal the simulator's real keys, marked
//! ejected only with `--mark-ejected`); offline eject of a Self-Managed client whose custodian
//! shares went through `serve-webhook`, with Portal stopped. Keys only ever in the new 0600
//! file, never on stdout or stderr.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances; a broken
// fixture should panic.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test helpers"
)]

#[path = "support/output.rs"]
mod output;
use output::text;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use portal_api::ApiKey;
use portal_sim::{PortalSim, SimClient, SimConfig, WebhookConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const WEBHOOK_SECRET: &str = "eject-test-webhook-secret";

/// Portal's published vectors (eject.js): pubX, pubY, s1, s2, x1, x2.
const SECP: [&str; 6] = [
    "95905857107301357381155516338362784207317010673073787675690511286760317802272",
    "84471157200556546968836560278865290072494471108462199268947632974788956557127",
    "20239155973571792266164364275964524242029729063304656485165418448115248082802",
    "35548699788994050550146262427737959890227338646889173786783560192790230768775",
    "86868548274168401139460440216870783092063038666835278534832349302396154314237",
    "18215211649252066570518778981645428771794111974791698622992184423457425369616",
];
const ED: [&str; 6] = [
    "4155079341668263211468645490523568285081269952458706525782542662765297681720",
    "33170931963135572976162508038363263257341896290508808710058213404228890998925",
    "209966714242237444698175757090286175213972386782216686905361352132244887465",
    "3972754397714006467384117681683827603947104866080154044667201466825208338771",
    "674076495015830984277819692722227700482715353628168867159273906537386870716",
    "4645588044633541551475641810441554672302500022056130044324874662839150929177",
];

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        let work = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        for kek in ["kek", "webhook-kek"] {
            let out = run(
                work.cmd().args(["keygen", "--out"]).arg(work.path(kek)),
                None,
            );
            assert!(out.status.success(), "{}", text(&out));
        }
        work
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("RUST_LOG", "debug")
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .env(
                "PORTAL_BACKUP_KMS",
                format!("local:{}", self.path("kek").display()),
            );
        cmd
    }
    fn with_sim(&self, api_url: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.env("PORTAL_API_URL", api_url)
            .env("PORTAL_MPC_URL", api_url);
        cmd
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn json_out(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_private(_: &Path) {}

/// No private key in any form the key file holds it in, on stdout or stderr.
fn assert_no_key(out: &Output, keys: &[&Value]) {
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for key in keys {
        for field in ["privateKeyHex", "privateKeyBase58"] {
            if let Some(secret) = key[field].as_str() {
                assert!(!printed.contains(secret), "{field} printed: {printed}");
                assert!(!printed.contains(&secret.to_uppercase()));
            }
        }
    }
}

fn client_share(n: &[&str; 6], pair: &str) -> String {
    json!({
        "clientId": "cl_vec", "backupSharePairId": pair, "share": n[2],
        "pubkey": {"X": n[0], "Y": n[1]},
        "bks": {"client": {"X": n[4], "Rank": 0}, "server": {"X": n[5], "Rank": 0}}
    })
    .to_string()
}

fn custodian_share(n: &[&str; 6], pair: &str) -> String {
    json!({
        "clientId": "cl_vec", "backupSharePairId": pair, "share": n[3],
        "x": n[0], "y": n[1], "clientBk": n[4], "serverBk": n[5]
    })
    .to_string()
}

#[test]
fn combine_reproduces_portals_published_vectors_and_refuses_what_does_not_verify() {
    let work = Work::new();
    for (curve, n) in [("secp256k1", &SECP), ("ed25519", &ED)] {
        let (client, custodian) = (work.path("client.json"), work.path("custodian.json"));
        std::fs::write(&client, client_share(n, "bsp_v")).unwrap();
        std::fs::write(&custodian, custodian_share(n, "bsp_v")).unwrap();
        let out_file = work.path(&format!("{curve}.key.json"));
        let combine = |out_file: &Path, pair: &str, as_curve: &str| {
            run(
                work.cmd()
                    .args(["eject", "combine", "--curve", as_curve, "--client-share"])
                    .arg(&client)
                    .arg("--custodian-share")
                    .arg(&custodian)
                    .args(["--backup-share-pair-id", pair, "--out"])
                    .arg(out_file),
                None,
            )
        };
        let out = combine(&out_file, "bsp_v", curve);
        let summary = json_out(&out);
        assert_eq!(summary["status"], "verified");
        assert_private(&out_file);
        let key: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
        assert_eq!(key["publicKeyX"], n[0], "{curve}");
        assert_eq!(key["publicKeyY"], n[1], "{curve}");
        assert_eq!(key["privateKeyHex"].as_str().unwrap().len(), 64);
        assert_no_key(&out, &[&key]);
        if curve == "ed25519" {
            assert!(key["privateKeyBase58"].is_string());
            assert!(
                key["privateKey"]
                    .as_str()
                    .unwrap()
                    .contains("NOT an RFC 8032 seed")
            );
            assert_eq!(summary["address"], key["solanaAddress"]);
        } else {
            assert_eq!(summary["address"], key["ethereumAddress"]);
        }
        // The wrong pair, the other curve: refused, nothing written, no key printed.
        let other = if curve == "ed25519" {
            "secp256k1"
        } else {
            "ed25519"
        };
        for (pair, as_curve, why) in [
            ("bsp_other", curve, "bsp_other"),
            ("bsp_v", other, "does not match"),
        ] {
            let refused_file = work.path("refused.json");
            let out = combine(&refused_file, pair, as_curve);
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(why),
                "{}",
                text(&out)
            );
            assert!(!refused_file.exists(), "no key file is left behind");
            assert_no_key(&out, &[&key]);
        }
        // An existing file is never overwritten.
        let out = combine(&out_file, "bsp_v", curve);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
}

/// A client whose app generated its wallet and confirmed its signing shares.
async fn app_client(sim: &PortalSim) -> (SimClient, String) {
    let (keys, generate) = sim.generated_client().await.unwrap();
    (keys, serde_json::to_string(&generate).unwrap())
}

/// (wallet id, curve, private key hex) of each wallet, from the simulator.
fn truth(sim: &PortalSim, client_id: &str) -> Vec<(String, String, String)> {
    sim.client_details(client_id)
        .unwrap()
        .wallets
        .iter()
        .map(|w| {
            (
                w.id.clone(),
                w.curve.as_str().to_owned(),
                sim.wallet_private_key_hex(&w.id).unwrap().to_string(),
            )
        })
        .collect()
}

fn key_of<'v>(file: &'v Value, curve: &str) -> &'v Value {
    file["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["curve"] == curve)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eject_through_portal_ends_with_verified_keys_and_marks_only_with_the_flag() {
    let sim = PortalSim::start(SimConfig::new()).await.unwrap();
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let backup = run(
        work.with_sim(sim.api_base_url())
            .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
            .args(["backup", "--generate-response", "-"]),
        Some(&generate),
    );
    json_out(&backup);
    let eject = |out: &Path, extra: &[&str]| {
        run(
            work.with_sim(sim.api_base_url())
                .env(
                    "PORTAL_CUSTODIAN_API_KEY",
                    keys.custodian_api_key.expose_secret(),
                )
                .args(["eject", "--client-id", &keys.client_id, "--out"])
                .arg(out)
                .args(extra),
            None,
        )
    };
    let out_file = work.path("keys.json");
    let out = eject(&out_file, &[]);
    let summary = json_out(&out);
    assert_eq!(summary["markedEjected"], false);
    assert_private(&out_file);
    let file: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    let truth = truth(&sim, &keys.client_id);
    assert_eq!(truth.len(), 2);
    for (wallet_id, curve, key) in &truth {
        let entry = key_of(&file, curve);
        assert_eq!(entry["walletId"], wallet_id.as_str());
        assert_eq!(entry["privateKeyHex"], key.as_str(), "{curve}");
        assert_eq!(
            entry["portalWalletKey"],
            "matches the wallet's public key at Portal"
        );
        assert_no_key(&out, &[entry]);
    }
    assert!(
        sim.client_details(&keys.client_id)
            .unwrap()
            .ejected_at
            .is_none(),
        "never marked without --mark-ejected"
    );
    // With the flag: marked after the keys were written.
    let marked_file = work.path("keys-marked.json");
    let out = eject(&marked_file, &["--mark-ejected"]);
    assert_eq!(json_out(&out)["markedEjected"], true);
    assert!(marked_file.exists());
    assert!(
        sim.client_details(&keys.client_id)
            .unwrap()
            .ejected_at
            .is_some()
    );
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
}

/// Starts `serve-webhook` over its own key and file store; returns the child and its address.
fn serve_webhook(work: &Work) -> (Child, String) {
    let mut child = work
        .cmd()
        .env(
            "PORTAL_BACKUP_KMS",
            format!("local:{}", work.path("webhook-kek").display()),
        )
        .env(
            "PORTAL_BACKUP_STORE",
            format!("file:{}", work.path("webhook-store").display()),
        )
        .env("PORTAL_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .args([
            "serve-webhook",
            "--listen",
            "127.0.0.1:0",
            "--allow",
            "loopback",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: Value = serde_json::from_str(&line).unwrap();
    (child, started["listening"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_eject_of_a_self_managed_client_through_serve_webhook_with_portal_stopped() {
    let work = Work::new();
    let (mut webhook, addr) = serve_webhook(&work);
    let sim = PortalSim::start(SimConfig::new().with_webhook(WebhookConfig::new(
        format!("http://{addr}"),
        ApiKey::from(WEBHOOK_SECRET),
    )))
    .await
    .unwrap();
    let (keys, generate) = app_client(&sim).await;
    let store = format!("file:{}", work.path("store").display());
    let backup = run(
        work.with_sim(sim.api_base_url())
            .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
            .env("PORTAL_BACKUP_STORE", &store)
            .args(["backup", "--generate-response", "-"]),
        Some(&generate),
    );
    json_out(&backup);
    let truth = truth(&sim, &keys.client_id);
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
    // Portal and the webhook stop; only the two stores and the two keys remain.
    let api_url = sim.api_base_url().to_owned();
    let addr = sim.local_addr();
    sim.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    webhook.kill().unwrap();
    webhook.wait().unwrap();

    let out_file = work.path("keys.json");
    let out = run(
        work.with_sim(&api_url)
            .env("PORTAL_BACKUP_STORE", &store)
            .args([
                "eject",
                "--offline",
                "--client-id",
                &keys.client_id,
                "--out",
            ])
            .arg(&out_file)
            .arg("--webhook-store")
            .arg(format!("file:{}", work.path("webhook-store").display()))
            .arg("--webhook-kms")
            .arg(format!("local:{}", work.path("webhook-kek").display())),
        None,
    );
    let summary = json_out(&out);
    assert_eq!(summary["markedEjected"], false);
    assert_private(&out_file);
    let file: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    for (_, curve, key) in &truth {
        let entry = key_of(&file, curve);
        assert_eq!(entry["privateKeyHex"], key.as_str(), "{curve}");
        assert_eq!(
            entry["portalWalletKey"],
            "not checked against Portal's wallet key (Portal not consulted)"
        );
        assert_no_key(&out, &[entry]);
    }
    // Without the webhook's key the custodian shares do not open: refused, nothing written.
    let refused = work.path("refused.json");
    let out = run(
        work.with_sim(&api_url)
            .env("PORTAL_BACKUP_STORE", &store)
            .args([
                "eject",
                "--offline",
                "--client-id",
                &keys.client_id,
                "--out",
            ])
            .arg(&refused)
            .arg("--webhook-store")
            .arg(format!("file:{}", work.path("webhook-store").display())),
        None,
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!refused.exists());
    assert_no_key(
        &out,
        &[key_of(&file, "SECP256K1"), key_of(&file, "ED25519")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eject_and_recover_choose_among_backup_methods() {
    let sim = PortalSim::start(SimConfig::new()).await.unwrap();
    let work = Work::new();
    let (keys, generate) = app_client(&sim).await;
    let backup = |state: &str| {
        json_out(&run(
            work.with_sim(sim.api_base_url())
                .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
                .env("PORTAL_BACKUP_STATE_DIR", work.path(state))
                // The second is a backup of another method: Portal already lists a stored,
                // completed one, so only --force asks for another.
                .args(["backup", "--force", "--generate-response", "-"]),
            Some(&generate),
        ))
    };
    let custom = backup("state-custom");
    // Portal's multi-backup: a second pair per wallet under another method.
    sim.set_backup_method(portal_api::BackupMethod::Password);
    let password = backup("state-password");
    let pairs = |outcome: &Value| outcome["backupSharePairIds"].clone();
    assert_ne!(pairs(&custom), pairs(&password));

    let eject = |name: &str, extra: &[&str]| {
        let out_file = work.path(name);
        let out = run(
            work.with_sim(sim.api_base_url())
                .env(
                    "PORTAL_CUSTODIAN_API_KEY",
                    keys.custodian_api_key.expose_secret(),
                )
                .args(["eject", "--client-id", &keys.client_id, "--out"])
                .arg(&out_file)
                .args(extra),
            None,
        );
        (out, out_file)
    };
    for (name, extra, want) in [
        ("newest.json", &[][..], &password),
        ("custom.json", &["--backup-method", "CUSTOM"][..], &custom),
    ] {
        let (out, _) = eject(name, extra);
        let summary = json_out(&out);
        for wallet in summary["wallets"].as_array().unwrap() {
            let curve = wallet["curve"].as_str().unwrap();
            assert_eq!(
                wallet["backupSharePairId"],
                pairs(want)[curve],
                "{name} {curve}"
            );
        }
    }
    let (out, out_file) = eject("gdrive.json", &["--backup-method", "GDRIVE"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("completed backup methods: CUSTOM, PASSWORD"),
        "{}",
        text(&out)
    );
    assert!(!out_file.exists());

    let recovered = work.path("recovered.json");
    let out = run(
        work.with_sim(sim.api_base_url())
            .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
            .args(["recover", "--backup-method", "CUSTOM", "--out"])
            .arg(&recovered),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_private(&recovered);
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
}
