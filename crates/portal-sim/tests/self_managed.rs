//! Self-Managed Backups: custodian backup shares go to an in-test webhook and must come back.
// The webhook handlers and helpers are not #[test] functions, so clippy.toml's test allowances
// do not cover them; they panic or index on broken fixtures, which is what a test wants.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test webhook and helpers"
)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use portal_api::mpc::GenerateResponse;
use portal_api::{ApiKey, paths};
use portal_sim::{PortalSim, SimClient, SimConfig, ViolationKind, WebhookConfig};
use serde_json::{Value, json};
use support::{Both, client_for, complete_backup, start, wallet};

const SECRET: &str = "webhook-secret-for-tests";

/// How the test webhook misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Good,
    /// `/backup/fetch` answers an empty list.
    ForgetShares,
    /// `/backup/fetch` never answers.
    HangOnFetch,
}

#[derive(Default)]
struct Hook {
    mode: Mode,
    shares: HashMap<String, Vec<String>>,
    received: Vec<(String, String)>,
    fetches: usize,
}

type Shared = Arc<Mutex<Hook>>;

/// Answers 401 unless the request carries the webhook secret, as an integrator's server would.
async fn require_secret(request: Request, next: Next) -> Response {
    let secret = request.headers().get("x-webhook-secret");
    if secret.and_then(|v| v.to_str().ok()) != Some(SECRET) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(request).await
}

/// The webhook's state, even after a handler panicked.
fn lock(hook: &Shared) -> MutexGuard<'_, Hook> {
    hook.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn on_backup(State(hook): State<Shared>, Json(body): Json<Value>) -> Response {
    let client_id = body["clientId"].as_str().unwrap_or_default().to_owned();
    let method = body["backupMethod"].as_str().unwrap_or_default().to_owned();
    let share = body["share"].as_str().unwrap_or_default().to_owned();
    let mut hook = lock(&hook);
    hook.received.push((client_id.clone(), method));
    hook.shares.entry(client_id).or_default().push(share);
    StatusCode::OK.into_response()
}

async fn on_fetch(State(hook): State<Shared>, Json(body): Json<Value>) -> Response {
    let (mode, shares) = {
        let mut hook = lock(&hook);
        hook.fetches = hook.fetches.saturating_add(1);
        let shares = hook
            .shares
            .get(body["clientId"].as_str().unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        (hook.mode, shares)
    };
    match mode {
        Mode::Good => Json(json!({"backupShares": shares})).into_response(),
        Mode::ForgetShares => Json(json!({"backupShares": []})).into_response(),
        Mode::HangOnFetch => std::future::pending().await,
    }
}

async fn webhook(mode: Mode) -> (SocketAddr, Shared) {
    let hook: Shared = Arc::new(Mutex::new(Hook {
        mode,
        ..Hook::default()
    }));
    let app = Router::new()
        .route("/hooks/backup", post(on_backup))
        .route("/hooks/backup/fetch", post(on_fetch))
        .route_layer(middleware::from_fn(require_secret))
        .with_state(Arc::clone(&hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hook)
}

async fn self_managed_sim(addr: SocketAddr, secret: &str, timeout: Duration) -> PortalSim {
    start(
        SimConfig::new().with_seed(3).with_webhook(
            WebhookConfig::new(format!("http://{addr}/hooks/"), ApiKey::from(secret))
                .with_timeout(timeout),
        ),
    )
    .await
}

/// A Self-Managed simulator whose webhook runs in `mode` (right secret, Portal's 10 s
/// deadline): the webhook's state, the simulator, a client's keys, its portal-api client and its
/// confirmed wallet.
async fn setup(mode: Mode) -> (Shared, PortalSim, SimClient, Both, GenerateResponse) {
    setup_with(mode, SECRET, Duration::from_secs(10)).await
}

/// Like [`setup`], with the secret the simulator sends and its webhook deadline.
async fn setup_with(
    mode: Mode,
    secret: &str,
    timeout: Duration,
) -> (Shared, PortalSim, SimClient, Both, GenerateResponse) {
    let (addr, hook) = webhook(mode).await;
    let sim = self_managed_sim(addr, secret, timeout).await;
    let keys = sim.create_client();
    let client = client_for(&sim, &keys);
    let generated = wallet(&client).await;
    (hook, sim, keys, client, generated)
}

#[tokio::test]
async fn backup_and_recover_through_the_webhook() {
    let (hook, sim, keys, client, generated) = setup(Mode::Good).await;
    let me = client.client_me().await.unwrap();
    assert!(!me.backup_with_portal_enabled());

    let backup = client.backup(&generated).await.unwrap();
    {
        let hook = hook.lock().unwrap();
        let methods: Vec<_> = hook.received.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(methods, ["CUSTOM-SECP256K1", "CUSTOM-ED25519"]);
        assert!(hook.received.iter().all(|(c, _)| c == &keys.client_id));
        assert_eq!(hook.fetches, 2);
        let stored = &hook.shares[&keys.client_id];
        for (share, id) in stored.iter().zip(backup.ids()) {
            let parsed: Value = serde_json::from_str(share).unwrap();
            assert_eq!(parsed["backupSharePairId"], id.as_str());
            assert_eq!(parsed["clientId"], keys.client_id.as_str());
        }
    }

    // Portal stores no ciphertext in this mode.
    let pair = backup.secp256k1.as_ref().unwrap().id.clone();
    let err = client.store_cipher_text(&pair, "ct").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    sim.reset_report();

    // Marking stored without a Portal ciphertext is how this mode works: no violation.
    complete_backup(&client, &backup).await.unwrap();
    let recovered = client.recover(&backup).await.unwrap();
    assert_eq!(recovered.ids().len(), 2);
    assert_eq!(hook.lock().unwrap().fetches, 4);
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn backup_fails_when_fetch_does_not_return_the_share() {
    let (hook, sim, _keys, client, generated) = setup(Mode::ForgetShares).await;
    let err = client.backup(&generated).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.error_id(), Some("WEBHOOK_FAILED"));
    assert_eq!(hook.lock().unwrap().received.len(), 1);
    // No backup pair was created.
    let me = client.client_me().await.unwrap();
    assert!(me.wallets.iter().all(|w| w.backup_share_pairs.is_empty()));
    let report = sim.report();
    let failures: Vec<_> = report.violations_of(ViolationKind::WebhookFailed).collect();
    assert_eq!(failures.len(), 1, "{report}");
    assert!(failures[0].detail.contains("did not return"), "{report}");
    assert_eq!(report.rejected(paths::MPC_BACKUP, "WEBHOOK_FAILED"), 1);
}

#[tokio::test]
async fn backup_fails_on_a_wrong_secret_or_a_missed_deadline() {
    for (mode, secret, deadline, why) in [
        (
            Mode::Good,
            "not-the-secret",
            Duration::from_secs(10),
            "POST /backup answered 401",
        ),
        (
            Mode::HangOnFetch,
            SECRET,
            Duration::from_millis(300),
            "no answer within the deadline",
        ),
    ] {
        let (_hook, sim, _keys, client, generated) = setup_with(mode, secret, deadline).await;
        assert_eq!(
            client.backup(&generated).await.unwrap_err().error_id(),
            Some("WEBHOOK_FAILED")
        );
        let report = sim.report();
        assert!(report.to_string().contains(why), "{report}");
    }
}

#[tokio::test]
async fn recover_fails_when_the_webhook_lost_the_share() {
    let (hook, sim, _keys, client, generated) = setup(Mode::Good).await;
    let backup = client.backup(&generated).await.unwrap();
    complete_backup(&client, &backup).await.unwrap();
    hook.lock().unwrap().shares.clear();
    let err = client.recover(&backup).await.unwrap_err();
    assert_eq!(err.error_id(), Some("WEBHOOK_FAILED"));
    assert_eq!(
        sim.report()
            .violations_of(ViolationKind::WebhookFailed)
            .count(),
        1
    );
}
