//! Prometheus metrics of the webhook, with `prometheus-client`.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::admission::Refusal;

/// The prefix of every metric name.
pub const METRICS_PREFIX: &str = "custodian_webhook";

/// Upper bounds of the answer-time histogram, in seconds. The top buckets (6, 8, 9, 10 s)
/// show how close answers come to the 10 s Portal allows for a webhook call; the default
/// request deadline is 8 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 9.0, 10.0,
];

/// The metrics of a webhook server, cheap to clone (clones share the same counters).
///
/// A [`WebhookServer`](crate::WebhookServer) records into the handle given to
/// [`with_metrics`](crate::WebhookServerBuilder::with_metrics), or into a fresh one; its
/// [metrics listener](crate::WebhookServer::serve_metrics) serves them at `GET /metrics`. To
/// serve them from a registry of your own instead, [`register`](Self::register) the handle
/// there. Every name starts with [`METRICS_PREFIX`]:
///
/// | metric | type | labels |
/// |---|---|---|
/// | `custodian_webhook_requests_total` | counter | `route` (`backup`, `fetch`, `healthz`, `readyz`, `other`), `status` |
/// | `custodian_webhook_request_duration_seconds` | histogram ([`LATENCY_BUCKETS`]) | `route` |
/// | `custodian_webhook_requests_in_flight` | gauge | |
/// | `custodian_webhook_request_deadline_exceeded_total` | counter | |
/// | `custodian_webhook_store_errors_total` | counter | `operation` (`put`, `get`, `list`, `delete`) |
/// | `custodian_webhook_kms_errors_total` | counter | `operation` (`seal`, `open`) |
/// | `custodian_webhook_writes_superseded_total` | counter (a backup that lost to a newer share of its client and method: answered 503, stored nothing) | |
/// | `custodian_webhook_auth_failures_total` | counter | `reason` (`bad_secret`, `disallowed_peer`) |
/// | `custodian_webhook_connections_refused_total` | counter | `reason` (`disallowed_peer`, `peer_limit`, `global_limit`) |
/// | `custodian_webhook_open_connections` | gauge | |
/// | `custodian_webhook_dependency_up` | gauge (1 or 0, at the last readiness check) | `dependency` (`store`, `kms`) |
/// | `custodian_webhook_build_info` | gauge (always 1) | `version` |
///
/// ```
/// use custodian_webhook::WebhookMetrics;
/// use prometheus_client::registry::Registry;
///
/// let metrics = WebhookMetrics::new();
/// let mut registry = Registry::default();
/// metrics.register(&mut registry);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry)?;
/// assert!(text.contains("custodian_webhook_build_info{version="));
/// # Ok::<_, std::fmt::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    inner: Arc<Families>,
}

#[derive(Debug)]
struct Families {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    deadline_exceeded: Counter,
    store_errors: Family<OperationLabels, Counter>,
    kms_errors: Family<OperationLabels, Counter>,
    superseded: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    connections_refused: Family<ReasonLabels, Counter>,
    open_connections: Gauge,
    dependency_up: Family<DependencyLabels, Gauge>,
    build_info: Family<BuildLabels, Gauge>,
}

/// A label value that is a fixed word.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Word(&'static str);

impl EncodeLabelValue for Word {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0)
    }
}

/// An HTTP status as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Status(u16);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        write!(encoder, "{}", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Word,
    status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Word,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Word,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Word,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: Word,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: Word,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookMetrics {
    /// Fresh metrics, all at zero (and `build_info` at 1).
    #[must_use]
    pub fn new() -> Self {
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: Word(env!("CARGO_PKG_VERSION")),
            })
            .set(1);
        Self {
            inner: Arc::new(Families {
                requests: Family::default(),
                duration: Family::new_with_constructor(latency_histogram),
                in_flight: Gauge::default(),
                deadline_exceeded: Counter::default(),
                store_errors: Family::default(),
                kms_errors: Family::default(),
                superseded: Counter::default(),
                auth_failures: Family::default(),
                connections_refused: Family::default(),
                open_connections: Gauge::default(),
                dependency_up: Family::default(),
                build_info,
            }),
        }
    }

    /// Registers every metric in `registry`, under the prefix [`METRICS_PREFIX`]. Register
    /// one handle once per registry (a second registration would repeat the names).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix(METRICS_PREFIX);
        let m = &self.inner;
        r.register(
            "requests",
            "Requests answered, by route and HTTP status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from the request head to the answer, by route; Portal allows 10 s",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "requests_in_flight",
            "Requests being handled now",
            m.in_flight.clone(),
        );
        r.register(
            "request_deadline_exceeded",
            "Requests answered 503 because the request deadline passed",
            m.deadline_exceeded.clone(),
        );
        r.register(
            "store_errors",
            "Failed store operations, by operation",
            m.store_errors.clone(),
        );
        r.register(
            "kms_errors",
            "Failed KMS operations (sealing or opening a share), by operation",
            m.kms_errors.clone(),
        );
        r.register(
            "writes_superseded",
            "Backups that stored nothing because a newer share of the client and method was stored while they were under way",
            m.superseded.clone(),
        );
        r.register(
            "auth_failures",
            "Requests or connections refused for a missing or wrong secret or a disallowed source address",
            m.auth_failures.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept, before a byte was read, by reason",
            m.connections_refused.clone(),
        );
        r.register(
            "open_connections",
            "Connections being served now",
            m.open_connections.clone(),
        );
        r.register(
            "dependency_up",
            "Whether the store or the KMS answered the last readiness check (1) or not (0)",
            m.dependency_up.clone(),
        );
        r.register(
            "build_info",
            "The version of the custodian-webhook crate; always 1",
            m.build_info.clone(),
        );
    }

    /// The metrics in the OpenMetrics text format, from a registry holding only them.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    pub(crate) fn request_started(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight {
            gauge: self.inner.in_flight.clone(),
        }
    }

    pub(crate) fn request_finished(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: Word(route),
                status: Status(status),
            })
            .inc();
        self.inner
            .duration
            .get_or_create(&RouteLabels { route: Word(route) })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn deadline_exceeded(&self) {
        self.inner.deadline_exceeded.inc();
    }

    pub(crate) fn store_error(&self, operation: &'static str) {
        self.inner
            .store_errors
            .get_or_create(&OperationLabels {
                operation: Word(operation),
            })
            .inc();
    }

    pub(crate) fn kms_error(&self, operation: &'static str) {
        self.inner
            .kms_errors
            .get_or_create(&OperationLabels {
                operation: Word(operation),
            })
            .inc();
    }

    pub(crate) fn superseded(&self) {
        self.inner.superseded.inc();
    }

    pub(crate) fn bad_secret(&self) {
        self.auth_failure("bad_secret");
    }

    pub(crate) fn disallowed_peer(&self) {
        self.auth_failure("disallowed_peer");
    }

    fn auth_failure(&self, reason: &'static str) {
        self.inner
            .auth_failures
            .get_or_create(&ReasonLabels {
                reason: Word(reason),
            })
            .inc();
    }

    pub(crate) fn connection_refused(&self, refusal: Refusal) {
        let reason = match refusal {
            Refusal::DisallowedPeer => {
                self.disallowed_peer();
                "disallowed_peer"
            }
            Refusal::PeerLimit => "peer_limit",
            Refusal::GlobalLimit => "global_limit",
        };
        self.inner
            .connections_refused
            .get_or_create(&ReasonLabels {
                reason: Word(reason),
            })
            .inc();
    }

    pub(crate) fn connection_opened(&self) -> ConnectionGauge {
        self.inner.open_connections.inc();
        ConnectionGauge {
            gauge: self.inner.open_connections.clone(),
        }
    }

    pub(crate) fn dependency_checked(&self, dependency: &'static str, up: bool) {
        self.inner
            .dependency_up
            .get_or_create(&DependencyLabels {
                dependency: Word(dependency),
            })
            .set(i64::from(up));
    }
}

/// One request in the in-flight gauge, until dropped (also when the request is cancelled).
#[derive(Debug)]
pub(crate) struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One connection in the open-connections gauge, until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGauge {
    gauge: Gauge,
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
