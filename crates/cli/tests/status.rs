//! `portal-backup status` end to end against portal-sim: every client of the custodian over
//! several listing pages, each with its exact verdict and reasons (backed up, not backed up,
//! incomplete, deleted, corrupted, orphaned, without custodian share, ejected, Portal-held
//! with and without credentials); exit 4 only when a client needs attention; the Portal
//! requests counted as Portal saw them; a self-contained HTML report that escapes a hostile
//! client id; and no key, token or share in anything the command prints or writes.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)] // test helpers: a broken fixture should panic

#[path = "support/output.rs"]
mod output;
use output::text;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions, ShareKind};
use custodian_webhook::{WebhookSecrets, WebhookServer};
use portal_api::client_api::{EjectClientRequest, SharePairStatusUpdate};
use portal_api::{ApiKey, ClientApi, SharePairUpdateStatus};
use portal_sim::{BackupMode, PortalSim, SimClient, SimConfig, WebhookConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const WEBHOOK_SECRET: &str = "status-test-webhook-secret";

type Verdicts = BTreeMap<String, (String, Vec<String>)>;

struct Fleet {
    sim: PortalSim,
    dir: tempfile::TempDir,
    /// Every secret a client of the fleet has: keys, tokens, generate shares.
    secrets: Vec<String>,
}

/// One client made by [`Fleet::generated`]: its credentials and its bulk input line.
struct Made {
    keys: SimClient,
    client: ClientApi,
    line: String,
}

impl Fleet {
    async fn start(dir: tempfile::TempDir, config: SimConfig) -> Self {
        let sim = PortalSim::start(config).await.unwrap();
        let fleet = Self {
            sim,
            dir,
            secrets: Vec::new(),
        };
        let out = run(fleet.cmd().args(["keygen", "--out"]).arg(fleet.path("kek")));
        assert!(out.status.success(), "{}", text(&out));
        fleet
    }

    async fn portal_managed() -> Self {
        Self::start(tempfile::tempdir().unwrap(), SimConfig::new()).await
    }

    /// Self-Managed Backups, the real webhook keeping custodian shares in `webhook-store`.
    async fn self_managed() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BackupStore> =
            Arc::new(FsStore::new(dir.path().join("webhook-store")).unwrap());
        let server = WebhookServer::builder()
            .with_keyring(
                Keyring::new()
                    .with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>),
            )
            .with_store(store)
            .with_secrets(WebhookSecrets::parse(WEBHOOK_SECRET).unwrap())
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
        let config = SimConfig::new().with_mode(BackupMode::SelfManaged(WebhookConfig::new(
            url,
            ApiKey::from(WEBHOOK_SECRET),
        )));
        Self::start(dir, config).await
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("RUST_LOG", "trace")
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .env(
                "PORTAL_BACKUP_KMS",
                format!("local:{}", self.path("kek").display()),
            )
            .env("PORTAL_API_URL", self.sim.api_base_url())
            .env("PORTAL_MPC_URL", self.sim.mpc_base_url());
        cmd
    }

    /// A client whose app generated its wallet and confirmed its signing shares.
    async fn generated(&mut self) -> Made {
        let (keys, generate) = self.sim.generated_client().await.unwrap();
        let client = self
            .sim
            .portal_builder()
            .build()
            .unwrap()
            .client_with_api_key(&keys.client_api_key)
            .unwrap();
        for (_, share) in generate.iter() {
            self.secrets.push(share.share.expose_secret().to_owned());
        }
        self.secrets
            .push(keys.client_api_key.expose_secret().to_owned());
        self.secrets
            .push(keys.client_session_token.expose_secret().to_owned());
        self.secrets
            .push(keys.custodian_api_key.expose_secret().to_owned());
        let line = json!({
            "clientApiKey": keys.client_api_key.expose_secret(),
            "generateResponse": generate,
        })
        .to_string();
        Made { keys, client, line }
    }

    /// Backs every client of `made` up with `bulk backup` into `store`.
    fn back_up(&self, made: &[&Made], store: &str) {
        let input = self.path("bulk.jsonl");
        let lines: Vec<&str> = made.iter().map(|m| m.line.as_str()).collect();
        std::fs::write(&input, lines.join("\n")).unwrap();
        let out = run(self
            .cmd()
            .env("PORTAL_BACKUP_STORE", store)
            .args(["bulk", "backup", "--rate-limit", "off", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(self.path("bulk-results.jsonl")));
        assert!(out.status.success(), "{}", text(&out));
    }

    /// Runs `status` as the custodian of `made`; the outputs and the parsed lines.
    fn status(&self, custodian: &SimClient, store: &str, args: &[&str]) -> Status {
        let output = self.path("status.jsonl");
        let html = self.path("status.html");
        let out = run(self
            .cmd()
            .env("PORTAL_BACKUP_STORE", store)
            .env(
                "PORTAL_CUSTODIAN_API_KEY",
                custodian.custodian_api_key.expose_secret(),
            )
            .args(["status", "--rate-limit", "off", "--output"])
            .arg(&output)
            .arg("--html")
            .arg(&html)
            .args(args));
        let lines_text = std::fs::read_to_string(&output).unwrap_or_default();
        let mut lines: Vec<Value> = lines_text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary = lines.pop().unwrap_or(Value::Null);
        assert_eq!(summary["summary"], true, "{}", text(&out));
        let html = std::fs::read_to_string(&html).unwrap_or_default();
        Status {
            out,
            lines,
            summary,
            lines_text,
            html,
        }
    }

    /// Asserts no secret of the fleet is in `place`.
    fn assert_no_secret(&self, place: &str, hay: &str) {
        assert!(!self.secrets.is_empty());
        for secret in &self.secrets {
            assert!(
                !hay.contains(secret.as_str()),
                "a secret ({} bytes) is in {place}",
                secret.len()
            );
        }
    }
}

struct Status {
    out: Output,
    lines: Vec<Value>,
    summary: Value,
    lines_text: String,
    html: String,
}

impl Status {
    fn verdicts(&self) -> Verdicts {
        let mut verdicts = Verdicts::new();
        for line in &self.lines {
            let id = line["clientId"].as_str().unwrap().to_owned();
            let reasons = line["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            let verdict = line["verdict"].as_str().unwrap().to_owned();
            assert!(
                verdicts.insert(id.clone(), (verdict, reasons)).is_none(),
                "{id} twice"
            );
        }
        verdicts
    }

    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn expect(verdicts: &mut Verdicts, id: &str, verdict: &str, reasons: &[&str]) {
    verdicts.insert(
        id.to_owned(),
        (
            verdict.to_owned(),
            reasons.iter().map(|r| (*r).to_owned()).collect(),
        ),
    );
}

/// The store key of the newest completed pair's ciphertext of `curve`.
fn newest_key(sim: &PortalSim, client_id: &str, curve: &str) -> BackupKey {
    let details = sim.client_details(client_id).unwrap();
    let wallet = details
        .wallets
        .iter()
        .find(|w| w.curve.as_str() == curve)
        .unwrap();
    let pair = wallet.latest_completed_backup_pair().unwrap();
    BackupKey::client_backup(client_id, &pair.id, curve).unwrap()
}

/// A self-contained page: every tag one of the few the report uses, none with a `src` or
/// `href` (so nothing is loaded from anywhere, `http` or other), no script, no CSS import.
fn assert_self_contained(html: &str) {
    const TAGS: &[&str] = &[
        "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "h1", "h2", "div", "b",
        "table", "tr", "th", "td", "code", "ul", "li", "p", "br",
    ];
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    let mut tags = 0;
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        let name = tag
            .trim_start_matches('/')
            .split([' ', '\n'])
            .next()
            .unwrap();
        assert!(TAGS.contains(&name), "an unexpected tag <{tag}>");
        let lower = tag.to_ascii_lowercase();
        assert!(
            !lower.contains("src=") && !lower.contains("href="),
            "<{tag}>"
        );
        assert!(!lower.contains("http") || name == "meta", "<{tag}>");
        tags += 1;
    }
    assert!(tags > 20);
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("@import") && !lower.contains("url("));
    assert!(lower.contains("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_managed_fleet_over_several_pages_gets_exact_verdicts_and_exit_4() {
    let mut fleet = Fleet::self_managed().await;
    let store_dir = fleet.path("store");
    let store_uri = format!("file:{}", store_dir.display());
    let webhook_uri = format!("file:{}", fleet.path("webhook-store").display());
    let mut presence = Verdicts::new();

    let mut backed_up = Vec::new();
    for _ in 0..30 {
        backed_up.push(fleet.generated().await);
    }
    let not_backed_up = [fleet.generated().await, fleet.generated().await];
    let bare = fleet.sim.create_client();
    let made: Vec<&Made> = backed_up.iter().collect();
    fleet.back_up(&made, &store_uri);
    for m in &backed_up {
        expect(&mut presence, &m.keys.client_id, "ok", &[]);
    }
    for m in &not_backed_up {
        expect(
            &mut presence,
            &m.keys.client_id,
            "attention",
            &["not-backed-up"],
        );
    }
    expect(
        &mut presence,
        &bare.client_id,
        "attention",
        &["not-backed-up"],
    );

    let store = FsStore::new(&store_dir).unwrap();
    let webhook_store = FsStore::new(fleet.path("webhook-store")).unwrap();
    let sim = &fleet.sim;
    // [0] stays whole; [1] a backup started and never finished.
    let incomplete = &backed_up[1];
    let generate: Value = serde_json::from_str(&incomplete.line).unwrap();
    let generate = serde_json::from_value(generate["generateResponse"].clone()).unwrap();
    incomplete.client.backup(&generate).await.unwrap();
    expect(
        &mut presence,
        &incomplete.keys.client_id,
        "attention",
        &["incomplete-pairs"],
    );
    // [2] its newest ciphertext deleted.
    let deleted = &backed_up[2].keys.client_id;
    store
        .delete(&newest_key(sim, deleted, "SECP256K1"))
        .await
        .unwrap();
    expect(&mut presence, deleted, "attention", &["not-stored"]);
    // [3] its newest ciphertext swapped for another client's: only the drill sees it.
    let corrupted = &backed_up[3].keys.client_id;
    let foreign = store
        .get(&newest_key(sim, &backed_up[0].keys.client_id, "ED25519"))
        .await
        .unwrap();
    store
        .put(
            &newest_key(sim, corrupted, "ED25519"),
            foreign,
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    expect(&mut presence, corrupted, "ok", &[]);
    // [4] a ciphertext for a pair Portal does not list.
    let orphaned = &backed_up[4].keys.client_id;
    let body = store
        .get(&newest_key(sim, orphaned, "SECP256K1"))
        .await
        .unwrap();
    let stray = BackupKey::client_backup(orphaned.as_str(), "bp_stray", "SECP256K1").unwrap();
    store.put(&stray, body, PutOptions::create()).await.unwrap();
    expect(&mut presence, orphaned, "attention", &["orphans"]);
    // [5] the webhook's store lost its custodian shares.
    let unshared = &backed_up[5].keys.client_id;
    let held = webhook_store.list(unshared).await.unwrap();
    assert!(held.iter().any(|k| k.kind() == ShareKind::CustodianBackup));
    for key in held {
        webhook_store.delete(&key).await.unwrap();
    }
    expect(
        &mut presence,
        unshared,
        "attention",
        &["no-custodian-share"],
    );
    // [6] ejected.
    let ejected = &backed_up[6];
    ejected
        .client
        .eject_client(&EjectClientRequest {
            client_platform: "NATIVE_IOS".into(),
            client_platform_version: "17".into(),
        })
        .await
        .unwrap();
    expect(&mut presence, &ejected.keys.client_id, "ejected", &[]);
    assert_eq!(presence.len(), 33);

    let custodian = &backed_up[0].keys;
    fleet.sim.reset_report();
    let run = fleet.status(
        custodian,
        &store_uri,
        &["--webhook-store", &webhook_uri, "--page-size", "10"],
    );
    assert_eq!(run.code(), Some(4), "{}", text(&run.out));
    assert_eq!(run.verdicts(), presence);
    assert_eq!(run.summary["clients"], 33);
    assert_eq!(run.summary["verdicts"]["attention"], 7);
    assert_eq!(run.summary["verdicts"]["ok"], 25);
    assert_eq!(run.summary["reasons"]["not-backed-up"], 3);
    assert_eq!(run.summary["exitCode"], 4);
    // 33 clients in pages of 10: 4 pages, and no other Portal request.
    assert_eq!(run.summary["requests"]["listingPages"], 4);
    assert_eq!(fleet.sim.report().traffic.api.requests, 4);
    assert_eq!(
        run.summary["projection"]["requests"], 1_000,
        "10,000 ÷ 10 pages"
    );
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(
        stderr.contains("7 of 33 clients need attention"),
        "{stderr}"
    );

    // The report: self-contained, the summary and the clients that need attention first.
    assert_self_contained(&run.html);
    let first_attention = run.html.find(">attention</td>").unwrap();
    let ejected_row = run.html.find(">ejected</td>").unwrap();
    assert!(first_attention < ejected_row);
    for (id, (verdict, _)) in &presence {
        assert_eq!(run.html.contains(id.as_str()), verdict != "ok", "{id}");
    }
    assert!(run.html.contains("<li>no wallet</li>"), "the bare client");

    // The restore drill also finds the corrupted ciphertext.
    let deep = fleet.status(
        custodian,
        &store_uri,
        &["--deep", "--webhook-store", &webhook_uri],
    );
    let mut drilled = presence.clone();
    expect(&mut drilled, corrupted, "attention", &["does-not-open"]);
    assert_eq!(deep.code(), Some(4), "{}", text(&deep.out));
    assert_eq!(deep.verdicts(), drilled);
    let whole = &deep
        .lines
        .iter()
        .find(|l| l["clientId"] == backed_up[0].keys.client_id.as_str())
        .unwrap();
    for curve in whole["curves"].as_array().unwrap() {
        assert_eq!(curve["stored"], true);
        assert_eq!(curve["drill"], "ok");
        assert_eq!(curve["custodianShare"], true);
    }

    // Without the webhook's store, custodian shares go unchecked, and say so.
    let unchecked = fleet.status(custodian, &store_uri, &[]);
    let verdicts = unchecked.verdicts();
    assert_eq!(
        verdicts[&backed_up[0].keys.client_id],
        (
            "unchecked".to_owned(),
            vec!["custodian-share-unchecked".to_owned()]
        )
    );

    // A custodian whose every client is whole: exit 0.
    let other = fleet.sim.create_custodian("whole");
    let keys = fleet.sim.create_client_for(&other.id).unwrap();
    let client = fleet
        .sim
        .portal_builder()
        .build()
        .unwrap()
        .client_with_api_key(&ApiKey::from(keys.client_api_key.expose_secret()))
        .unwrap();
    let generate = client.generate().await.unwrap();
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generate.ids()))
        .await
        .unwrap();
    let line =
        json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
            .to_string();
    let whole = Made { keys, client, line };
    fleet.back_up(&[&whole], &store_uri);
    let clean = fleet.status(
        &whole.keys,
        &store_uri,
        &["--deep", "--webhook-store", &webhook_uri],
    );
    assert_eq!(clean.code(), Some(0), "{}", text(&clean.out));
    let mut only = Verdicts::new();
    expect(&mut only, &whole.keys.client_id, "ok", &[]);
    assert_eq!(clean.verdicts(), only);
    assert!(clean.html.contains("None: every client is ok."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_held_ciphertexts_are_drilled_with_credentials_and_nothing_secret_is_printed() {
    let mut fleet = Fleet::portal_managed().await;
    let with = [
        fleet.generated().await,
        fleet.generated().await,
        fleet.generated().await,
    ];
    let without = [fleet.generated().await, fleet.generated().await];
    let never = fleet.generated().await;
    let made: Vec<&Made> = with.iter().chain(&without).collect();
    fleet.back_up(&made, "portal");
    // One of those with credentials: a completed pair whose ciphertext was never stored.
    let unstored = fleet.generated().await;
    let generate: Value = serde_json::from_str(&unstored.line).unwrap();
    let generate = serde_json::from_value(generate["generateResponse"].clone()).unwrap();
    let backup = unstored.client.backup(&generate).await.unwrap();
    unstored
        .client
        .update_backup_share_pairs(&SharePairStatusUpdate::backup(
            backup.ids(),
            SharePairUpdateStatus::StoredClientBackupShare,
        ))
        .await
        .unwrap();

    let credentials = fleet.path("credentials.jsonl");
    let mut lines: Vec<String> = with
        .iter()
        .chain([&unstored])
        .map(|m| {
            json!({"clientSessionToken": m.keys.client_session_token.expose_secret()}).to_string()
        })
        .collect();
    lines.push("{\"clientApiKey\": \"not-a-key-of-anyone\"}".into());
    std::fs::write(&credentials, lines.join("\n")).unwrap();

    fleet.sim.reset_report();
    let custodian = &with[0].keys;
    let credentials = credentials.to_str().unwrap();
    let run = fleet.status(
        custodian,
        "portal",
        &["--deep", "--credentials", credentials],
    );
    let mut expected = Verdicts::new();
    for m in &with {
        expect(&mut expected, &m.keys.client_id, "ok", &[]);
    }
    for m in &without {
        expect(
            &mut expected,
            &m.keys.client_id,
            "unchecked",
            &["held-by-portal-unchecked"],
        );
    }
    expect(
        &mut expected,
        &never.keys.client_id,
        "attention",
        &["not-backed-up"],
    );
    expect(
        &mut expected,
        &unstored.keys.client_id,
        "attention",
        &["not-stored"],
    );
    assert_eq!(run.code(), Some(4), "{}", text(&run.out));
    assert_eq!(run.verdicts(), expected);
    // 1 page, 5 credential lookups (the unknown key's included), 2 reads for each of the 4
    // clients with a session: exactly what Portal saw.
    let requests = &run.summary["requests"];
    assert_eq!(
        (
            requests["listingPages"].as_u64(),
            requests["credentialLookups"].as_u64(),
            requests["ciphertextReads"].as_u64()
        ),
        (Some(1), Some(5), Some(8))
    );
    assert_eq!(fleet.sim.report().traffic.api.requests, 14);
    assert_eq!(run.summary["unusableCredentialLines"][0]["line"], 5);
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(
        stderr.contains("credentials line 5 gives no session"),
        "{stderr}"
    );
    eprintln!(
        "measured: requests {} per client {}, projection {}",
        run.summary["requests"], run.summary["requestsPerClient"], run.summary["projection"]
    );

    // No key, token or share anywhere, at trace level.
    assert!(!fleet.secrets.is_empty());
    fleet.secrets.push("not-a-key-of-anyone".into());
    for (place, hay) in [
        (
            "stdout",
            String::from_utf8_lossy(&run.out.stdout).into_owned(),
        ),
        ("stderr", stderr.into_owned()),
        ("the JSON lines", run.lines_text.clone()),
        ("the HTML report", run.html.clone()),
    ] {
        fleet.assert_no_secret(place, &hay);
    }
    assert_self_contained(&run.html);

    // Without --deep the same ciphertexts are read (presence), none opened.
    let shallow = fleet.status(custodian, "portal", &["--credentials", credentials]);
    assert_eq!(shallow.verdicts(), expected);
    assert!(shallow.lines.iter().all(|l| {
        l["curves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["drill"].is_null())
    }));
    // Credentials with a store of one's own are a usage error.
    let refused = fleet.status(custodian, "file:unused", &["--credentials", credentials]);
    assert_eq!(refused.code(), Some(2), "{}", text(&refused.out));
}

/// A Custodian API that lists one client with a hostile id (and answers nothing else).
async fn hostile_listing(id: &str) -> String {
    let body = json!({
        "results": [{"id": id, "wallets": [{"id": "w", "curve": "SECP256K1", "backupSharePairs": [
            {"id": "bp\"><img src=x>", "createdAt": "2026-01-01T00:00:00Z", "status": "completed"}
        ]}]}],
        "metadata": {"cursor": null, "take": 100, "total": 1}
    });
    let app = axum::Router::new().route(
        "/api/v3/custodians/me/clients",
        axum::routing::get(move || {
            let body = body.clone();
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_escapes_a_hostile_client_id_and_loads_nothing() {
    let hostile = "<script>alert(1)</script><a href=\"http://evil.example/x\">&'";
    let url = hostile_listing(hostile).await;
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    let keygen = run(Command::new(BIN)
        .env_clear()
        .args(["keygen", "--out"])
        .arg(&kek));
    assert!(keygen.status.success(), "{}", text(&keygen));
    let html = dir.path().join("report.html");
    let out = run(Command::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .env("PORTAL_BACKUP_STATE_DIR", dir.path().join("state"))
        .env("PORTAL_BACKUP_KMS", format!("local:{}", kek.display()))
        .env("PORTAL_API_URL", &url)
        .env("PORTAL_MPC_URL", &url)
        .env("PORTAL_CUSTODIAN_API_KEY", "custodian-key")
        .env(
            "PORTAL_BACKUP_STORE",
            format!("file:{}", dir.path().join("store").display()),
        )
        .args(["status", "--html"])
        .arg(&html));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let line: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        line["clientId"], hostile,
        "the JSON line keeps the id as it is"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_self_contained(&page);
    assert!(!page.contains(hostile) && !page.contains("<script") && !page.contains("<a "));
    assert!(page.contains(
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&quot;http://evil.example/x&quot;&gt;&amp;&#39;"
    ));
    assert!(page.contains("bp&quot;&gt;&lt;img src=x&gt;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_portal_will_not_give_stops_the_run_with_exit_3_and_still_a_summary() {
    let fleet = Fleet::portal_managed().await;
    let keys = fleet.sim.create_client();
    fleet
        .sim
        .add_fault(
            "GET /api/v3/custodians/me/clients: error=1.0, status=503"
                .parse()
                .unwrap(),
        )
        .unwrap();
    let run = fleet.status(&keys, "portal", &[]);
    assert_eq!(run.code(), Some(3), "{}", text(&run.out));
    assert!(run.lines.is_empty());
    assert_eq!(run.summary["exitCode"], 3);
    assert_eq!(run.summary["clients"], 0);
    let stopped = run.summary["stopped"].as_str().unwrap();
    assert!(stopped.contains("the client listing stopped"), "{stopped}");
    assert!(
        run.html.contains("The run stopped before the end"),
        "{}",
        run.html
    );
    assert!(!run.html.contains("every client is ok"));
    assert_self_contained(&run.html);
}
