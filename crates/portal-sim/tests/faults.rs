//! Fault injection as the portal-api client sees it: retried errors, 429s with Retry-After,
//! dropped connections, latency, run-time changes and seeded reproducibility.

mod support;

use std::time::{Duration, Instant};

use portal_api::RetryConfig;
use portal_api::{Error, TransportKind, paths};
use portal_sim::{FaultRule, RouteSelector, SimConfig};
use support::{client_for, copy_key, raw_client_me, start, start_with_client, wallet};

#[tokio::test]
async fn gets_with_20_percent_503_still_succeed() {
    let (sim, _keys, client) = start_with_client(
        SimConfig::new()
            .with_seed(20)
            .with_fault("GET *: error=0.2, status=503".parse().unwrap()),
    )
    .await;
    let generated = wallet(&client).await; // POSTs and PATCHes are not affected
    for _ in 0..40 {
        let me = client.client_me().await.unwrap();
        assert_eq!(me.wallets.len(), 2);
    }
    let wallet_id = client.client_me().await.unwrap().wallets[0].id.clone();
    for _ in 0..10 {
        client.wallet_signing_share_pairs(&wallet_id).await.unwrap();
    }
    assert_eq!(generated.ids().len(), 2);
    let report = sim.report();
    assert!(report.faults_injected > 0, "{report}");
    assert!(report.requests > 54, "{report}");
    // Injected faults are not rejections: the run is clean.
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_and_the_client_waits() {
    let sim = start(SimConfig::new().with_seed(1)).await;
    let keys = sim.create_client();
    sim.add_fault(
        FaultRule::new(RouteSelector::route("GET", paths::CLIENT_ME))
            .with_throttle(1.0, Duration::ZERO)
            .with_times(3),
    )
    .unwrap();
    let client = client_for(&sim, &keys);
    client.client_me().await.unwrap();
    assert_eq!(sim.report().faults_injected, 3);

    // What a client sees on the wire.
    sim.set_faults(vec![
        "GET /api/v3/clients/me: throttle=1, retry-after=7, times=1"
            .parse()
            .unwrap(),
    ])
    .unwrap();
    let r = raw_client_me(&sim, &keys.client_api_key).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    // A Retry-After longer than the client accepts is returned as an error.
    sim.set_faults(vec![
        "GET *: throttle=1, retry-after=3600, times=1"
            .parse()
            .unwrap(),
    ])
    .unwrap();
    let err = client.client_me().await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert!(sim.report().is_clean());
}

#[tokio::test]
async fn dropped_connections_are_retried_where_safe() {
    let (sim, keys, client) = start_with_client(SimConfig::new().with_seed(2)).await;
    let generated = wallet(&client).await;

    // Before the handler: GETs are retried.
    sim.add_fault("GET /api/v3/clients/me: drop=1, times=2".parse().unwrap())
        .unwrap();
    client.client_me().await.unwrap();
    assert_eq!(sim.report().faults_injected, 2);

    // A plain request sees the connection close without a response.
    sim.set_faults(vec!["GET *: drop=1, times=1".parse().unwrap()])
        .unwrap();
    let raw = raw_client_me(&sim, &keys.client_api_key).await;
    assert!(raw.is_err(), "{raw:?}");

    // /v1/backup is not retried once the request may have arrived; nothing was created.
    sim.set_faults(vec!["POST /v1/backup: drop=1, times=1".parse().unwrap()])
        .unwrap();
    let err = client.backup(&generated).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Other,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        client.client_me().await.unwrap().wallets[0]
            .backup_share_pairs
            .is_empty()
    );
    let backup = client.backup(&generated).await.unwrap();

    // After the handler: the effect stays, the client retries the idempotent PATCH.
    sim.set_faults(vec![
        FaultRule::new(RouteSelector::route("PATCH", paths::BACKUP_SHARE_PAIR))
            .with_drop_after(1.0)
            .with_times(1),
    ])
    .unwrap();
    let pair = backup.secp256k1.as_ref().unwrap().id.clone();
    client.store_cipher_text(&pair, "ct").await.unwrap();
    assert_eq!(sim.stored_cipher_text(&pair).as_deref(), Some("ct"));
    let report = sim.report();
    assert_eq!(report.faults_injected, 5);
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn injected_errors_on_mpc_routes_are_not_retried() {
    let sim = start(SimConfig::new()).await;
    let keys = sim.create_client();
    sim.add_fault(
        FaultRule::new(RouteSelector::path(paths::MPC_GENERATE))
            .with_error(1.0, 500)
            .with_times(1),
    )
    .unwrap();
    let client = client_for(&sim, &keys);
    let err = client.generate().await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.error_id(), Some("INTERNAL_ERROR"));
    // The faulted request had no effect: generate works afterwards.
    client.generate().await.unwrap();
    assert!(sim.report().is_clean());
}

#[tokio::test]
async fn latency_is_added() {
    let (sim, _keys, client) = start_with_client(SimConfig::new()).await;
    sim.add_fault(
        FaultRule::new(RouteSelector::method("GET")).with_latency(Duration::from_millis(60)),
    )
    .unwrap();
    let started = Instant::now();
    client.client_me().await.unwrap();
    // A lower bound only: a loaded machine can only make it slower.
    assert!(started.elapsed() >= Duration::from_millis(60));
    sim.clear_faults();
    assert!(sim.simulator().faults().is_empty());
}

#[tokio::test]
async fn a_seed_reproduces_the_same_faults() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let sim = start(
            SimConfig::new()
                .with_seed(seed)
                .with_fault("GET *: error=0.3".parse().unwrap()),
        )
        .await;
        let keys = sim.create_client();
        let client = sim
            .portal_builder()
            .with_retry(RetryConfig::disabled())
            .build()
            .unwrap()
            .client_with_api_key(&copy_key(&keys.client_api_key))
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(client.client_me().await.is_ok());
        }
        sim.shutdown().await.unwrap();
        out
    }
    let a = pattern(77).await;
    assert_eq!(a, pattern(77).await);
    assert!(a.contains(&true) && a.contains(&false));
    assert_ne!(a, pattern(78).await);
}
