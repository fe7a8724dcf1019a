//! Secret-leak scan: the `portal-backup` binary run with `RUST_LOG=trace` (keygen, backup,
//! verify, recover, bulk backup, and the demo) against `portal-sim` on loopback; its stdout,
//! stderr and every file it wrote are searched for every secret the test knows of, in every
//! form: raw, standard and URL-safe base64 with and without padding, lower- and upper-case hex.
//!
//! The secrets: the clients' API keys and session tokens, the custodian's API key, the local
//! key-encryption key (the 32 bytes behind the key file, and the file's text), the webhook
//! secret, and every share Portal issued: each `/v1/generate`, `/v1/backup` and
//! `/v1/recover` answer is read off the wire by a recording proxy between the binary and the
//! simulator, and each custodian share as the webhook receives it; shares are searched both
//! as Portal sends them and base64-decoded.
//!
//! Eject has its own scan: the private keys it rebuilds (through Portal with `--mark-ejected`,
//! and with `eject combine`, accepted and refused) are searched in every form above plus
//! base58, in everything it prints and every file outside the one it is told to write.
//!
//! The demo runs its own simulators in its own process, so its secrets are unknown here; its
//! output is searched for the shapes of a share instead (the fixed base64 opening of every
//! client share, and field names that only occur inside share material).
//!
//! The scanner proves itself first: a known secret planted in noise in each form is found,
//! in the form it was planted in.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)] // test helpers: a broken fixture should panic; offsets are bounded by the buffers they index

#[path = "support/output.rs"]
mod output;
use output::text;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use portal_api::client_api::SharePairStatusUpdate;
use portal_api::{ApiKey, Portal};
use portal_sim::{BackupMode, PortalSim, SimClient, SimConfig, WebhookConfig};
use serde_json::{Value, json};

mod support;

use support::{Shares, webhook};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const WEBHOOK_SECRET: &str = "leak-scan-webhook-secret-7c1d";
/// The demo's webhook secret (a constant of `portal-backup demo`).
#[cfg(feature = "demo")]
const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret";

// ---- the scanner --------------------------------------------------------------------------

/// Needles longer than this are searched as three windows of [`WINDOW`] bytes (at a quarter,
/// half and three quarters of the encoding), so a truncated copy is found too.
const LONG: usize = 96;
const WINDOW: usize = 48;
/// Every needle is at least this long (the index keys on its first 8 bytes).
const MIN_NEEDLE: usize = 12;

/// Base58 (Bitcoin alphabet), the form of ed25519 keys in Portal's eject format; written here
/// so the scan does not trust the encoder of the code under test.
fn base58(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u32> = Vec::new(); // little-endian base-58 digits
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for d in &mut digits {
            carry += *d << 8;
            *d = carry % 58;
            carry /= 58;
        }
        while carry > 0 {
            digits.push(carry % 58);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mut out = vec![b'1'; zeros];
    out.extend(digits.iter().rev().map(|&d| ALPHABET[d as usize]));
    out
}

/// Secrets up to this long are also searched in base58 (keys; shares are far longer).
const BASE58_MAX: usize = 64;

/// Every form a secret is searched in.
fn encodings(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut forms = vec![
        ("raw", secret.to_vec()),
        ("base64", STANDARD.encode(secret).into_bytes()),
        ("base64-nopad", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("base64url", URL_SAFE.encode(secret).into_bytes()),
        (
            "base64url-nopad",
            URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        ),
        ("hex", hex::encode(secret).into_bytes()),
        ("HEX", hex::encode_upper(secret).into_bytes()),
    ];
    if secret.len() <= BASE58_MAX {
        forms.push(("base58", base58(secret)));
    }
    forms
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    place: String,
    secret: String,
    form: &'static str,
}

struct Scanner {
    labels: Vec<String>,
    /// (needle, index into `labels`, form)
    needles: Vec<(Vec<u8>, usize, &'static str)>,
    by_prefix: HashMap<u64, Vec<usize>>,
}

fn prefix(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

impl Scanner {
    fn new(secrets: &[(String, Vec<u8>)]) -> Self {
        let mut needles = Vec::new();
        for (i, (label, secret)) in secrets.iter().enumerate() {
            assert!(secret.len() >= MIN_NEEDLE, "secret {label} is too short");
            for (form, bytes) in encodings(secret) {
                if bytes.len() <= LONG {
                    needles.push((bytes, i, form));
                } else {
                    let last = bytes.len() - WINDOW;
                    for at in [bytes.len() / 4, bytes.len() / 2, bytes.len() * 3 / 4] {
                        let at = at.min(last);
                        needles.push((bytes[at..at + WINDOW].to_vec(), i, form));
                    }
                }
            }
        }
        let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::new();
        for (n, (needle, _, _)) in needles.iter().enumerate() {
            by_prefix.entry(prefix(needle)).or_default().push(n);
        }
        Self {
            labels: secrets.iter().map(|(l, _)| l.clone()).collect(),
            needles,
            by_prefix,
        }
    }

    fn scan(&self, place: &str, hay: &[u8], hits: &mut Vec<Hit>) {
        if hay.len() < 8 {
            return;
        }
        let mut seen = HashSet::new();
        for pos in 0..=hay.len() - 8 {
            let Some(candidates) = self.by_prefix.get(&prefix(&hay[pos..])) else {
                continue;
            };
            for &n in candidates {
                let (needle, secret, form) = &self.needles[n];
                if hay[pos..].starts_with(needle) && seen.insert((*secret, *form)) {
                    hits.push(Hit {
                        place: place.to_owned(),
                        secret: self.labels[*secret].clone(),
                        form,
                    });
                }
            }
        }
    }

    /// Every file under `dir` but those in `skip`; returns (files, bytes) scanned.
    fn scan_dir(&self, dir: &Path, skip: &[PathBuf], hits: &mut Vec<Hit>) -> (usize, usize) {
        let (mut files, mut bytes) = (0, 0);
        let mut stack = vec![dir.to_owned()];
        while let Some(path) = stack.pop() {
            if skip.contains(&path) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    stack.push(entry.unwrap().path());
                }
            } else if meta.is_file() {
                let content = std::fs::read(&path).unwrap();
                files += 1;
                bytes += content.len();
                self.scan(&path.display().to_string(), &content, hits);
            }
        }
        (files, bytes)
    }

    fn needle_count(&self) -> usize {
        self.needles.len()
    }
}

/// Noise that contains no needle by chance: a repeated sentence.
fn noise(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog; "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

#[test]
fn the_scanner_finds_a_planted_secret_in_every_form() {
    // A short secret (a key) and a long one (a share, searched by windows).
    let short = b"pk_live_0123456789abcdef-planted-key".to_vec();
    let mut long = Vec::new();
    for i in 0..3000u32 {
        long.extend_from_slice(format!("{:x}", i.wrapping_mul(2_654_435_761)).as_bytes());
    }
    // base58 checked against a known value (the 32-byte key 0x01...01 is not needed: the
    // Bitcoin wiki's "Hello World!" vector).
    assert_eq!(base58(b"Hello World!"), b"2NEpo7TZRRrLZSi2U");
    assert_eq!(base58(&[0, 0, 1]), b"112");
    let secrets = vec![("short".to_owned(), short), ("long".to_owned(), long)];
    let scanner = Scanner::new(&secrets);
    for (label, secret) in &secrets {
        for (form, encoded) in encodings(secret) {
            let mut hay = noise(1000);
            hay.extend_from_slice(&encoded);
            hay.extend_from_slice(&noise(777));
            let mut hits = Vec::new();
            scanner.scan("scratch", &hay, &mut hits);
            assert!(
                hits.iter().any(|h| &h.secret == label && h.form == form),
                "{label} planted as {form} was not found: {hits:?}"
            );
            // A truncated copy (the middle half of the encoding) of a long secret too.
            if encoded.len() > LONG {
                let mut hay = noise(10);
                hay.extend_from_slice(&encoded[encoded.len() / 4 - 1..encoded.len() * 3 / 4 + 1]);
                let mut hits = Vec::new();
                scanner.scan("scratch", &hay, &mut hits);
                assert!(
                    hits.iter().any(|h| &h.secret == label && h.form == form),
                    "half of {label} as {form} was not found"
                );
            }
        }
    }
    // ... and in a file of a directory; nothing in noise alone.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut planted = noise(100);
    planted.extend_from_slice(hex::encode_upper(&secrets[0].1).as_bytes());
    std::fs::write(dir.path().join("sub").join("f"), &planted).unwrap();
    std::fs::write(dir.path().join("clean"), noise(5000)).unwrap();
    let mut hits = Vec::new();
    let (files, _) = scanner.scan_dir(dir.path(), &[], &mut hits);
    assert_eq!(files, 2);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!((hits[0].secret.as_str(), hits[0].form), ("short", "HEX"));
}

// ---- fixtures ------------------------------------------------------------------------------

/// What went over the wire between the binary and the simulator, and what the webhook got.
#[derive(Clone, Default)]
struct Wire {
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    wire: Wire,
}

/// Forwards a request to the simulator and records both bodies.
async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut outgoing = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body.clone());
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let answer_body = answer.bytes().await.unwrap();
    {
        let mut bodies = proxy.wire.bodies.lock().unwrap();
        bodies.push(body.to_vec());
        bodies.push(answer_body.to_vec());
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(answer_body)).unwrap()
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A recording proxy in front of `sim`; returns its base URL.
async fn proxy(sim: &PortalSim, wire: &Wire) -> String {
    let proxy = Proxy {
        upstream: sim.base_url().to_owned(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        wire: wire.clone(),
    };
    serve(axum::Router::new().fallback(forward).with_state(proxy)).await
}

/// A client whose app generated its wallet (through the proxy) and confirmed its signing
/// shares; returns the keys and the `/v1/generate` response as JSON.
async fn app_client(sim: &PortalSim, base: &str) -> (SimClient, Value) {
    let keys = sim.create_client();
    let client = Portal::builder()
        .with_api_base_url(base)
        .with_mpc_base_url(base)
        .without_rate_limits()
        .build()
        .unwrap()
        .client_with_api_key(&ApiKey::from(keys.client_api_key.expose_secret()))
        .unwrap();
    let generate = client.generate().await.unwrap();
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generate.ids()))
        .await
        .unwrap();
    (keys, serde_json::to_value(&generate).unwrap())
}

/// Every share in a JSON document: string values of keys that name a share (and strings that
/// hold JSON, as `/v1/backup` and `/v1/recover` bodies do), each also base64-decoded.
fn shares_in(value: &Value, key: Option<&str>, found: &mut BTreeMap<String, Vec<u8>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                shares_in(v, Some(k), found);
            }
        }
        Value::Array(list) => list.iter().for_each(|v| shares_in(v, key, found)),
        Value::String(s) => {
            if let Ok(inner @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(s) {
                shares_in(&inner, key, found);
            } else if key.is_some_and(|k| k.to_lowercase().contains("share")) && s.len() >= 32 {
                let n = found.len();
                found.insert(format!("share #{n}"), s.as_bytes().to_vec());
                if let Ok(decoded) = STANDARD_NO_PAD
                    .decode(s.trim_end_matches('='))
                    .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
                {
                    found.insert(format!("share #{n}, decoded"), decoded);
                }
            }
        }
        _ => {}
    }
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
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
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- the scans -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_form_in_what_the_cli_prints_or_writes_at_trace_level() {
    let custodian_shares = Shares::default();
    let sim = PortalSim::start(SimConfig::new().with_mode(BackupMode::SelfManaged(
        WebhookConfig::new(
            webhook(Arc::clone(&custodian_shares)).await,
            ApiKey::from(WEBHOOK_SECRET),
        ),
    )))
    .await
    .unwrap();
    let wire = Wire::default();
    let base = proxy(&sim, &wire).await;

    // `secret/`: what the test hands the binary (key file, inputs) and the recovered shares;
    // `run/`: everything the binary may write (home, state, store, temp, results).
    let root = tempfile::tempdir().unwrap();
    let secret_dir = root.path().join("secret");
    let run_dir = root.path().join("run");
    for dir in [&secret_dir, &run_dir, &run_dir.join("tmp")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let kek = secret_dir.join("kek");
    let store = run_dir.join("store");
    let cmd = |api_key: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("RUST_LOG", "trace")
            .env("HOME", &run_dir)
            .env("TMPDIR", run_dir.join("tmp"))
            .env("PORTAL_BACKUP_STATE_DIR", run_dir.join("state"))
            .env("PORTAL_BACKUP_KMS", format!("local:{}", kek.display()))
            .env("PORTAL_BACKUP_STORE", format!("file:{}", store.display()))
            .env("PORTAL_API_URL", &base)
            .env("PORTAL_MPC_URL", &base);
        if let Some(key) = api_key {
            cmd.env("PORTAL_CLIENT_API_KEY", key);
        }
        cmd
    };
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut ok = |what: &str, out: Output| {
        assert!(out.status.success(), "{what}: {}", text(&out));
        outputs.push((what.to_owned(), out));
    };

    ok(
        "keygen",
        run(cmd(None).args(["keygen", "--out"]).arg(&kek), None),
    );

    // One client: backup, verify, recover --out.
    let (one, generate) = app_client(&sim, &base).await;
    let key = one.client_api_key.expose_secret();
    ok(
        "backup",
        run(
            cmd(Some(key)).args(["backup", "--generate-response", "-"]),
            Some(generate.to_string().as_bytes()),
        ),
    );
    ok("verify", run(cmd(Some(key)).arg("verify"), None));
    let recovered = secret_dir.join("recovered.json");
    ok(
        "recover",
        run(
            cmd(Some(key)).args(["recover", "--out"]).arg(&recovered),
            None,
        ),
    );
    #[cfg(unix)]
    assert_eq!(mode(&recovered), 0o600, "the recovered shares are private");

    // Three more: bulk backup, one by session token.
    let mut clients = vec![one];
    let mut input = String::new();
    for i in 0..3 {
        let (keys, generate) = app_client(&sim, &base).await;
        let line = if i == 1 {
            json!({"clientSessionToken": keys.client_session_token.expose_secret(), "generateResponse": generate.to_string()})
        } else {
            json!({"clientApiKey": keys.client_api_key.expose_secret(), "generateResponse": generate})
        };
        input.push_str(&line.to_string());
        input.push('\n');
        clients.push(keys);
    }
    let input_file = secret_dir.join("clients.jsonl");
    std::fs::write(&input_file, &input).unwrap();
    let bulk = run(
        cmd(None)
            .args([
                "bulk",
                "backup",
                "--concurrency",
                "2",
                "--rate-limit",
                "off",
                "--input",
            ])
            .arg(&input_file)
            .arg("--output")
            .arg(run_dir.join("results.jsonl")),
        None,
    );
    let summary: Value = serde_json::from_slice(&bulk.stdout).unwrap_or(Value::Null);
    assert_eq!(summary["confirmed"], 3, "{}", text(&bulk));
    ok("bulk backup", bulk);
    let report = sim.report();
    assert!(report.is_clean(), "{report}");

    // Every secret.
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for (what, value) in [
            ("api key", &c.client_api_key),
            ("session token", &c.client_session_token),
            ("custodian api key", &c.custodian_api_key),
        ] {
            secrets.push((
                format!("client {i} {what}"),
                value.expose_secret().as_bytes().to_vec(),
            ));
        }
    }
    secrets.push(("webhook secret".into(), WEBHOOK_SECRET.as_bytes().to_vec()));
    let kek_text = std::fs::read_to_string(&kek).unwrap();
    let kek_bytes = STANDARD
        .decode(kek_text.trim().rsplit(':').next().unwrap())
        .unwrap();
    assert_eq!(kek_bytes.len(), 32);
    secrets.push(("KEK bytes".into(), kek_bytes));
    secrets.push(("KEK file text".into(), kek_text.trim().as_bytes().to_vec()));
    let mut shares = BTreeMap::new();
    for body in wire.bodies.lock().unwrap().iter() {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            shares_in(&value, None, &mut shares);
        }
    }
    let wire_shares = shares.len();
    for list in custodian_shares.lock().unwrap().values() {
        for share in list {
            let n = shares.len();
            shares.insert(format!("custodian share #{n}"), share.as_bytes().to_vec());
        }
    }
    // 4 generate + 4 backup + 1 recover answers, 2 shares each, each also decoded.
    assert!(wire_shares >= 9 * 2 * 2, "only {wire_shares} shares seen");
    let share_count = shares.len();
    let key_count = secrets.len();
    secrets.extend(shares);
    // The same share seen twice (a request echoing an answer) is one secret.
    secrets.sort_by(|a, b| a.1.cmp(&b.1));
    secrets.dedup_by(|a, b| a.1 == b.1);

    let scanner = Scanner::new(&secrets);
    let mut hits = Vec::new();
    let mut printed = 0;
    for (what, out) in &outputs {
        scanner.scan(&format!("{what} stdout"), &out.stdout, &mut hits);
        scanner.scan(&format!("{what} stderr"), &out.stderr, &mut hits);
        printed += out.stdout.len() + out.stderr.len();
    }
    let (files, bytes) = scanner.scan_dir(&run_dir, &[], &mut hits);
    // The recovered file is meant to hold shares; everything else the test wrote is input.
    let trace_lines = outputs
        .iter()
        .map(|(_, o)| o.stderr.iter().filter(|&&b| b == b'\n').count())
        .sum::<usize>();
    eprintln!(
        "leak scan: {} distinct secrets ({share_count} shares and decoded shares, {key_count} keys/tokens/KEK) \
         as {} needles over {} runs ({printed} bytes of output, {trace_lines} stderr lines) \
         and {files} files ({bytes} bytes): {} hits",
        secrets.len(),
        scanner.needle_count(),
        outputs.len(),
        hits.len()
    );
    assert!(trace_lines > 100, "RUST_LOG=trace produced little output");
    assert!(
        outputs
            .iter()
            .any(|(_, o)| String::from_utf8_lossy(&o.stderr).contains("TRACE")),
        "no trace-level line was logged"
    );
    assert!(files >= 10, "only {files} files were written");
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
}

#[cfg(feature = "demo")] // the simulator is linked only with it; CI runs every feature
#[test]
fn no_share_shape_or_known_secret_in_the_demo_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let out = run(
        Command::new(BIN)
            .env_clear()
            .env("RUST_LOG", "trace")
            .env("HOME", dir.path())
            .env("TMPDIR", dir.path().join("tmp"))
            .arg("demo"),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    // Shapes: the base64 opening of every client share (`{"clientId":`), and field names
    // found only inside share material, decoded client shares and custodian shares.
    let shapes: Vec<(String, Vec<u8>)> = [
        "eyJjbGllbnRJZCI6",
        "\"partialPubkey\":",
        "\"pederson\":{",
        "\"pailler_p\":",
        "\"pedersenClient_n\":",
        DEMO_WEBHOOK_SECRET,
    ]
    .iter()
    .map(|s| ((*s).to_owned(), s.as_bytes().to_vec()))
    .collect();
    let scanner = Scanner::new(&shapes);
    // The scanner sees the shape in a real share.
    let mut probe = Vec::new();
    scanner.scan(
        "probe",
        format!(
            "x{}y",
            STANDARD_NO_PAD.encode(br#"{"clientId":"c1","share":"1"}"#)
        )
        .as_bytes(),
        &mut probe,
    );
    assert_eq!(probe.len(), 1, "{probe:?}");
    let mut hits = Vec::new();
    scanner.scan("demo stdout", &out.stdout, &mut hits);
    scanner.scan("demo stderr", &out.stderr, &mut hits);
    let (files, _) = scanner.scan_dir(dir.path(), &[], &mut hits);
    eprintln!(
        "leak scan (demo): {} bytes of output, {files} files left behind, {} needles: {} hits",
        out.stdout.len() + out.stderr.len(),
        scanner.needle_count(),
        hits.len()
    );
    assert!(
        out.stderr.len() > 10_000,
        "RUST_LOG=trace produced little output"
    );
    assert!(hits.is_empty(), "share material leaked: {hits:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rebuilt_private_key_in_any_form_in_what_eject_prints_or_writes_at_trace_level() {
    let sim = PortalSim::start(SimConfig::new()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let secret_dir = root.path().join("secret");
    let run_dir = root.path().join("run");
    for dir in [&secret_dir, &run_dir, &run_dir.join("tmp")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let kek = secret_dir.join("kek");
    let cmd = || {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("RUST_LOG", "trace")
            .env("HOME", &run_dir)
            .env("TMPDIR", run_dir.join("tmp"))
            .env("PORTAL_BACKUP_STATE_DIR", run_dir.join("state"))
            .env("PORTAL_BACKUP_KMS", format!("local:{}", kek.display()))
            .env("PORTAL_API_URL", sim.api_base_url())
            .env("PORTAL_MPC_URL", sim.mpc_base_url());
        cmd
    };
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut ok = |what: &str, out: Output| {
        assert!(out.status.success(), "{what}: {}", text(&out));
        outputs.push((what.to_owned(), out));
    };
    ok(
        "keygen",
        run(cmd().args(["keygen", "--out"]).arg(&kek), None),
    );
    let (keys, generate) = app_client(&sim, sim.base_url()).await;
    ok(
        "backup",
        run(
            cmd()
                .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
                .args(["backup", "--generate-response", "-"]),
            Some(generate.to_string().as_bytes()),
        ),
    );
    // Eject through Portal, marking the client ejected: the keys go to secret/ only.
    let key_file = secret_dir.join("keys.json");
    ok(
        "eject",
        run(
            cmd()
                .env(
                    "PORTAL_CUSTODIAN_API_KEY",
                    keys.custodian_api_key.expose_secret(),
                )
                .args([
                    "eject",
                    "--mark-ejected",
                    "--client-id",
                    &keys.client_id,
                    "--out",
                ])
                .arg(&key_file),
            None,
        ),
    );
    #[cfg(unix)]
    assert_eq!(mode(&key_file), 0o600, "the keys are private");
    let written: Value = serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();

    // The same wallets' keys through `eject combine`: a refused combination (the other
    // curve) and an accepted one, from shares rebuilt into files in secret/.
    let details = sim.client_details(&keys.client_id).unwrap();
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for wallet in &details.wallets {
        let truth = sim.wallet_private_key_hex(&wallet.id).unwrap();
        let bytes = hex::decode(truth.as_str()).unwrap();
        let entry = written["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["walletId"] == wallet.id.as_str())
            .unwrap();
        assert_eq!(
            entry["privateKeyHex"],
            truth.as_str(),
            "the key file holds the real key"
        );
        secrets.push((format!("{} private key", wallet.curve), bytes));
        if let Some(b58) = entry["privateKeyBase58"].as_str() {
            // Also as the key file spells it (the scanner derives base58 itself too).
            secrets.push((
                format!("{} private key, base58 text", wallet.curve),
                b58.as_bytes().to_vec(),
            ));
        }
    }
    let vectors = secret_dir.join("client.json");
    let custodian = secret_dir.join("custodian.json");
    std::fs::write(
        &vectors,
        json!({
            "share": "20239155973571792266164364275964524242029729063304656485165418448115248082802",
            "pubkey": {"X": "95905857107301357381155516338362784207317010673073787675690511286760317802272",
                       "Y": "84471157200556546968836560278865290072494471108462199268947632974788956557127"},
            "bks": {"client": {"X": "86868548274168401139460440216870783092063038666835278534832349302396154314237", "Rank": 0},
                    "server": {"X": "18215211649252066570518778981645428771794111974791698622992184423457425369616", "Rank": 0}}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        &custodian,
        json!({
            "share": "35548699788994050550146262427737959890227338646889173786783560192790230768775",
            "x": "95905857107301357381155516338362784207317010673073787675690511286760317802272",
            "y": "84471157200556546968836560278865290072494471108462199268947632974788956557127",
            "clientBk": "86868548274168401139460440216870783092063038666835278534832349302396154314237",
            "serverBk": "18215211649252066570518778981645428771794111974791698622992184423457425369616"
        })
        .to_string(),
    )
    .unwrap();
    let combine = |curve: &str, out: &Path| {
        run(
            cmd()
                .args(["eject", "combine", "--curve", curve, "--client-share"])
                .arg(&vectors)
                .arg("--custodian-share")
                .arg(&custodian)
                .arg("--out")
                .arg(out),
            None,
        )
    };
    let refused = combine("ed25519", &run_dir.join("refused.json"));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let vector_key = secret_dir.join("vector.json");
    ok("eject combine", combine("secp256k1", &vector_key));
    outputs.push(("eject combine (refused)".into(), refused));
    let vector: Value = serde_json::from_slice(&std::fs::read(&vector_key).unwrap()).unwrap();
    secrets.push((
        "vector private key".into(),
        hex::decode(vector["privateKeyHex"].as_str().unwrap()).unwrap(),
    ));
    // The shares and the API keys too: eject must not print them either.
    for (what, value) in [
        ("client api key", &keys.client_api_key),
        ("custodian api key", &keys.custodian_api_key),
    ] {
        secrets.push((what.into(), value.expose_secret().as_bytes().to_vec()));
    }
    secrets.push((
        "vector client share value".into(),
        b"20239155973571792266164364275964524242029729063304656485165418448115248082802".to_vec(),
    ));

    let scanner = Scanner::new(&secrets);
    let mut hits = Vec::new();
    for (what, out) in &outputs {
        scanner.scan(&format!("{what} stdout"), &out.stdout, &mut hits);
        scanner.scan(&format!("{what} stderr"), &out.stderr, &mut hits);
    }
    let (files, bytes) = scanner.scan_dir(&run_dir, &[], &mut hits);
    // The key files in secret/ are meant to hold the keys: the scanner must see them there.
    let mut expected = Vec::new();
    scanner.scan_dir(&secret_dir, &[], &mut expected);
    for form in ["hex", "base58"] {
        assert!(
            expected
                .iter()
                .any(|h| h.form == form && h.secret.contains("private key")),
            "the scanner does not see a {form} key in the key file: {expected:?}"
        );
    }
    let trace_lines = outputs
        .iter()
        .map(|(_, o)| o.stderr.iter().filter(|&&b| b == b'\n').count())
        .sum::<usize>();
    eprintln!(
        "leak scan (eject): {} secrets as {} needles over {} runs ({trace_lines} stderr lines) \
         and {files} files ({bytes} bytes): {} hits",
        secrets.len(),
        scanner.needle_count(),
        outputs.len(),
        hits.len()
    );
    assert!(trace_lines > 50, "RUST_LOG=trace produced little output");
    assert!(
        sim.client_details(&keys.client_id)
            .unwrap()
            .ejected_at
            .is_some()
    );
    assert!(hits.is_empty(), "rebuilt keys leaked: {hits:#?}");
}
