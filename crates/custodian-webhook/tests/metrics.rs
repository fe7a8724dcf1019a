//! Metrics and health: a known mix of requests, then a scrape of `/metrics` whose counts must
//! match what was sent exactly; readiness that follows a store and a KMS going down and up.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances; a broken
// fixture should panic.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test helpers"
)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodian_webhook::storage::memory::MemoryStore;
use custodian_webhook::{Allowlist, WebhookMetrics, prometheus_client};
use serde_json::{Value, json};
use support::{
    CountingStore, FlakyKek, FlakyStore, SECRET, builder, http, post, sample, scrape,
    start_with_metrics,
};

fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let value = sample(text, name, labels).unwrap_or(0.0);
    assert!(value.fract() == 0.0 && value >= 0.0, "{name}: {value}");
    value as u64
}

fn requests(text: &str, route: &str, status: &str) -> u64 {
    count(
        text,
        "custodian_webhook_requests_total",
        &[("route", route), ("status", status)],
    )
}

async fn connect_from(source: &str, server: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_exactly_the_requests_that_were_sent() {
    let store = Arc::new(FlakyStore::default());
    let kek = FlakyKek::new();
    let server = builder(Arc::clone(&store))
        .with_keyring(kek.keyring())
        .with_allowlist(Allowlist::parse(["127.0.0.1/32"]).unwrap())
        .build()
        .unwrap();
    let (running, metrics_addr) = start_with_metrics(server).await;
    let base = running.url("");
    let http = http();
    let backup_url = format!("{base}/backup");
    let fetch_url = format!("{base}/backup/fetch");
    let backup_body =
        |i: usize| json!({"backupMethod": "GDRIVE", "clientId": format!("cl_{i}"), "share": "s"});

    // Before any request: every request counter absent or zero, build_info 1.
    let text = scrape(metrics_addr).await;
    assert_eq!(
        count(
            &text,
            "custodian_webhook_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1
    );
    assert_eq!(requests(&text, "backup", "200"), 0);

    // The mix.
    const OK_BACKUPS: usize = 7;
    const FETCHES: usize = 5;
    for i in 0..OK_BACKUPS {
        assert_eq!(
            post(&http, &backup_url, Some(SECRET), &backup_body(i))
                .await
                .0,
            200
        );
    }
    for i in 0..FETCHES {
        let (status, _) = post(
            &http,
            &fetch_url,
            Some(SECRET),
            &json!({"clientId": format!("cl_{i}")}),
        )
        .await;
        assert_eq!(status, 200);
    }
    // Bad secrets: 3 missing on backup, 2 wrong on fetch.
    for i in 0..3 {
        assert_eq!(post(&http, &backup_url, None, &backup_body(i)).await.0, 401);
    }
    for _ in 0..2 {
        let (status, _) = post(
            &http,
            &fetch_url,
            Some("wrong"),
            &json!({"clientId": "cl_1"}),
        )
        .await;
        assert_eq!(status, 401);
    }
    // Unknown paths: 4 (they share the route label "other").
    for path in ["/nope", "/backup/x", "/metrics", "/portal/backup"] {
        let (status, _) = post(&http, &format!("{base}{path}"), Some(SECRET), &json!({})).await;
        assert_eq!(status, 404, "{path}");
    }
    // A malformed body: 1.
    let resp = http
        .post(&backup_url)
        .header("X-Webhook-Secret", SECRET)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // The store down: 2 backups and 1 fetch answered 503.
    store.fail(true);
    for i in 0..2 {
        assert_eq!(
            post(&http, &backup_url, Some(SECRET), &backup_body(i))
                .await
                .0,
            503
        );
    }
    assert_eq!(
        post(
            &http,
            &fetch_url,
            Some(SECRET),
            &json!({"clientId": "cl_1"})
        )
        .await
        .0,
        503
    );
    store.fail(false);
    // The KMS down: 1 backup (seal) and 1 fetch of a stored share (open) answered 503.
    kek.fail(true);
    assert_eq!(
        post(&http, &backup_url, Some(SECRET), &backup_body(0))
            .await
            .0,
        503
    );
    assert_eq!(
        post(
            &http,
            &fetch_url,
            Some(SECRET),
            &json!({"clientId": "cl_0"})
        )
        .await
        .0,
        503
    );
    kek.fail(false);
    // Health on the main listener: 2.
    for _ in 0..2 {
        let resp = http.get(running.url("/healthz")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    // 3 connections from a disallowed address, closed at accept.
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.2", running.addr).await;
        let mut buf = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)));
    }

    let text = scrape(metrics_addr).await;
    assert_eq!(requests(&text, "backup", "200"), OK_BACKUPS as u64);
    assert_eq!(requests(&text, "fetch", "200"), FETCHES as u64);
    assert_eq!(requests(&text, "backup", "401"), 3);
    assert_eq!(requests(&text, "fetch", "401"), 2);
    assert_eq!(requests(&text, "other", "404"), 4);
    assert_eq!(requests(&text, "backup", "400"), 1);
    assert_eq!(requests(&text, "backup", "503"), 3);
    assert_eq!(requests(&text, "fetch", "503"), 2);
    assert_eq!(requests(&text, "healthz", "200"), 2);
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("custodian_webhook_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 7 + 5 + 3 + 2 + 4 + 1 + 3 + 2 + 2, "{text}");
    let failures = "custodian_webhook_auth_failures_total";
    assert_eq!(count(&text, failures, &[("reason", "bad_secret")]), 5);
    assert_eq!(count(&text, failures, &[("reason", "disallowed_peer")]), 3);
    assert_eq!(
        count(
            &text,
            "custodian_webhook_connections_refused_total",
            &[("reason", "disallowed_peer")]
        ),
        3
    );
    let store_errors = "custodian_webhook_store_errors_total";
    // A backup reads what is stored before it writes (compare and swap): that read fails.
    assert_eq!(count(&text, store_errors, &[("operation", "get")]), 2);
    assert_eq!(count(&text, store_errors, &[("operation", "list")]), 1);
    let kms_errors = "custodian_webhook_kms_errors_total";
    assert_eq!(count(&text, kms_errors, &[("operation", "seal")]), 1);
    assert_eq!(count(&text, kms_errors, &[("operation", "open")]), 1);
    assert_eq!(
        count(
            &text,
            "custodian_webhook_request_deadline_exceeded_total",
            &[]
        ),
        0
    );
    assert_eq!(count(&text, "custodian_webhook_requests_in_flight", &[]), 0);
    // The latency histogram saw every backup (7 + 3 + 1 + 2 + 1), all within Portal's 10 s.
    let backups = 7 + 3 + 1 + 2 + 1;
    let histogram = "custodian_webhook_request_duration_seconds";
    assert_eq!(
        count(&text, &format!("{histogram}_count"), &[("route", "backup")]),
        backups
    );
    assert_eq!(
        count(
            &text,
            &format!("{histogram}_bucket"),
            &[("route", "backup"), ("le", "10.0")]
        ),
        backups
    );
    assert!(text.contains("# TYPE custodian_webhook_request_duration_seconds histogram"));
    assert!(text.contains("# UNIT custodian_webhook_request_duration_seconds seconds"));
    assert!(text.ends_with("# EOF\n"));
    // Nothing secret in the scrape.
    assert!(!text.contains(SECRET));
    // Scrapes and the metrics listener's own routes are not counted as webhook requests.
    assert_eq!(requests(&scrape(metrics_addr).await, "other", "404"), 4);
    running.stop().await;
}

#[tokio::test]
async fn the_deadline_counter_and_an_embedder_s_registry() {
    // The embedder registers the handle in a registry of its own.
    let metrics = WebhookMetrics::new();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let store = Arc::new(CountingStore::with(
        MemoryStore::new(),
        Duration::from_millis(600),
    ));
    let server = builder(store)
        .with_metrics(metrics.clone())
        .with_request_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (running, _) = start_with_metrics(server).await;
    let (status, _) = post(
        &http(),
        &running.url("/backup"),
        Some(SECRET),
        &json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": "s"}),
    )
    .await;
    assert_eq!(status, 503);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert_eq!(
        count(
            &text,
            "custodian_webhook_request_deadline_exceeded_total",
            &[]
        ),
        1
    );
    assert_eq!(requests(&text, "backup", "503"), 1);
    running.stop().await;
}

async fn ready(addr: SocketAddr) -> (u16, Value) {
    let resp = client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn live(addr: SocketAddr) -> u16 {
    client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One HTTP client for the whole test binary (building one costs more than the timings of
/// the readiness test can spare).
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(http)
}

/// Asks `/readyz` every 100 ms until it answers `status` (within `deadline`); when it did,
/// and the answer.
async fn poll_ready(addr: SocketAddr, status: u16, deadline: Duration) -> (Instant, Value) {
    let started = Instant::now();
    loop {
        let (got, body) = ready(addr).await;
        if got == status {
            return (Instant::now(), body);
        }
        assert!(
            started.elapsed() < deadline,
            "/readyz still answers {got} {body} after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_follows_the_store_and_the_kms_and_caches_the_kms_check() {
    const KMS_INTERVAL: Duration = Duration::from_secs(3);
    let store = Arc::new(FlakyStore::default());
    let kek = FlakyKek::new();
    let server = builder(Arc::clone(&store))
        .with_keyring(kek.keyring())
        .with_kms_check_interval(KMS_INTERVAL)
        .build()
        .unwrap();
    let (running, metrics_addr) = start_with_metrics(server).await;
    let both = [running.addr, metrics_addr];

    assert_eq!(kek.calls(), 0);
    let checked = Instant::now();
    assert_eq!(
        ready(running.addr).await,
        (200, json!({"store": "ok", "kms": "ok"}))
    );
    // The KMS was asked for the first check (a seal and an open), and not again for the
    // next ones.
    let kms_calls = kek.calls();
    assert!(kms_calls > 0);
    assert_eq!(
        ready(metrics_addr).await,
        (200, json!({"store": "ok", "kms": "ok"}))
    );
    for _ in 0..10 {
        assert_eq!(ready(metrics_addr).await.0, 200);
    }
    assert_eq!(kek.calls(), kms_calls);

    // The store goes down: not ready once its one-second cache has passed; alive all along.
    store.fail(true);
    let (_, body) = poll_ready(metrics_addr, 503, Duration::from_secs(5)).await;
    assert_eq!(body, json!({"store": "unreachable", "kms": "ok"}));
    for addr in both {
        assert_eq!(ready(addr).await.0, 503);
        assert_eq!(live(addr).await, 200);
    }
    let text = scrape(metrics_addr).await;
    let up = "custodian_webhook_dependency_up";
    assert_eq!(sample(&text, up, &[("dependency", "store")]), Some(0.0));
    assert_eq!(sample(&text, up, &[("dependency", "kms")]), Some(1.0));
    store.fail(false);
    poll_ready(metrics_addr, 200, Duration::from_secs(5)).await;

    // The KMS goes down: the cached answer stands until the check interval has passed, with
    // no KMS call meanwhile; then readiness fails.
    kek.fail(true);
    let (flipped, body) = poll_ready(metrics_addr, 503, KMS_INTERVAL * 3).await;
    assert_eq!(body, json!({"store": "ok", "kms": "unreachable"}));
    assert!(
        flipped >= checked + KMS_INTERVAL,
        "the KMS was checked again after {:?}",
        flipped - checked
    );
    assert!(kek.calls() > kms_calls);
    assert_eq!(ready(running.addr).await.0, 503);
    let text = scrape(metrics_addr).await;
    assert_eq!(sample(&text, up, &[("dependency", "kms")]), Some(0.0));

    // Back up: ready again after the next interval.
    kek.fail(false);
    poll_ready(metrics_addr, 200, KMS_INTERVAL * 3).await;
    running.stop().await;
}

#[tokio::test]
async fn the_metrics_listener_serves_probes_whatever_the_allowlist() {
    // The main listener closes loopback (not in the list); the metrics listener does not.
    let server = builder(Arc::new(MemoryStore::new()))
        .with_allowlist(Allowlist::portal())
        .build()
        .unwrap();
    let (running, metrics_addr) = start_with_metrics(server).await;
    assert!(client().get(running.url("/healthz")).send().await.is_err());
    assert_eq!(live(metrics_addr).await, 200);
    assert_eq!(ready(metrics_addr).await.0, 200);
    // The webhook routes are not on the metrics listener.
    let (status, _) = post(
        client(),
        &format!("http://{metrics_addr}/backup"),
        Some(SECRET),
        &json!({"backupMethod": "GDRIVE", "clientId": "cl_1", "share": "s"}),
    )
    .await;
    assert_eq!(status, 404);
    running.stop().await;
}
