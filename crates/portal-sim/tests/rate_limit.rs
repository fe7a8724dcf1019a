//! The simulator's per-host traffic counters and rate limit, as a client sees them: the
//! busiest second of each host, 429s beyond the limit (and for injected throttles), and a
//! client-side rate limit that keeps under it.

mod support;

use std::time::{Duration, Instant};

use portal_api::{RateLimit, RetryConfig};
use portal_sim::{Host, SimConfig};
use support::{client_for, copy_key, raw_client_me, start, start_with_client, wallet};

#[tokio::test]
async fn requests_beyond_the_limit_get_429_and_are_counted_per_host() {
    let sim = start(SimConfig::new().with_seed(5).with_rate_limit(Host::Api, 5)).await;
    let keys = sim.create_client();
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = raw_client_me(&sim, &keys.client_api_key).await.unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        statuses.push(r.status().as_u16());
    }
    // Eight requests well within one second: five pass, three are refused.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "too slow a machine for this test"
    );
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // The MPC host has its own (here: no) limit.
    let client = client_for(&sim, &keys);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    wallet(&client).await; // POST /v1/generate, then PATCH signing pairs (api)

    let report = sim.report();
    assert_eq!(report.traffic.api.requests, 9, "{report:?}");
    assert_eq!(report.traffic.api.busiest_second, 8, "{report:?}");
    assert_eq!(report.traffic.api.throttled, 3, "{report:?}");
    assert_eq!(report.traffic.mpc.requests, 1, "{report:?}");
    assert_eq!(report.traffic.mpc.busiest_second, 1, "{report:?}");
    assert_eq!(report.traffic.throttled(), 3);
    assert_eq!(report.requests, 10);
    // A 429 for being over the limit is Portal's normal answer, not a rejection or a fault.
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.faults_injected, 0);

    sim.reset_report();
    assert_eq!(sim.report().traffic, portal_sim::Traffic::default());

    // Limits change at run time.
    assert_eq!(sim.rate_limit(Host::Api), Some(5));
    sim.set_rate_limit(Host::Api, None);
    assert_eq!(sim.rate_limit(Host::Api), None);
    for _ in 0..8 {
        client.client_me().await.unwrap();
    }
    sim.set_rate_limit(Host::Mpc, Some(0));
    assert_eq!(sim.rate_limit(Host::Mpc), Some(1));
    assert_eq!(sim.report().traffic.throttled(), 0);
}

#[tokio::test]
async fn injected_throttles_count_as_429s_of_their_host() {
    let (sim, _keys, client) = start_with_client(SimConfig::new().with_seed(6)).await;
    wallet(&client).await;
    sim.reset_report();
    sim.add_fault(
        "GET /api/v3/clients/me: throttle=1, retry-after=0, times=2"
            .parse()
            .unwrap(),
    )
    .unwrap();
    client.client_me().await.unwrap(); // retried after each 429
    let report = sim.report();
    assert_eq!(
        (report.traffic.api.requests, report.traffic.api.throttled),
        (3, 2),
        "{report:?}"
    );
    assert_eq!(report.traffic.mpc, portal_sim::HostTraffic::default());
    assert_eq!(report.faults_injected, 2);
}

#[tokio::test]
async fn a_client_side_rate_limit_keeps_under_the_simulators() {
    // The client may start at most burst + rate x 1 s = 2 + 4 = 6 requests in any second;
    // the simulator accepts 6.
    let sim = start(SimConfig::new().with_seed(7).with_rate_limit(Host::Api, 6)).await;
    let keys = sim.create_client();
    let client = sim
        .portal_builder()
        .with_retry(RetryConfig::disabled())
        .with_api_rate_limit(RateLimit::per_minute(240).with_burst(2))
        .build()
        .unwrap()
        .client_with_api_key(&copy_key(&keys.client_api_key))
        .unwrap();
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        calls.spawn(async move { client.client_me().await.map(drop) });
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    // 2 at once, then one every 250 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    let api = sim.report().traffic.api;
    assert_eq!((api.requests, api.throttled), (10, 0), "{api:?}");
    assert!((5..=6).contains(&api.busiest_second), "{api:?}");
}
