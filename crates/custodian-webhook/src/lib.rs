#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

mod admission;
mod allow;
mod error;
mod metrics;
mod ready;
mod secret;
mod server;
mod tls;
mod vault;

pub use allow::{Allowlist, IpCidr, PORTAL_ADDRESSES};
pub use error::{Error, Result};
pub use metrics::{LATENCY_BUCKETS, METRICS_PREFIX, WebhookMetrics};
pub use ready::{DEFAULT_KMS_CHECK_INTERVAL, READY_PATH, Readiness};
pub use secret::{MAX_SECRET_LEN, MAX_SECRETS, SECRET_ENV, WebhookSecrets};
pub use server::{
    DEFAULT_BODY_LIMIT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_PEER, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, HEALTH_PATH,
    METRICS_PATH, WebhookServer, WebhookServerBuilder,
};
pub use tls::TlsConfig;
pub use vault::{KNOWN_METHOD_BASES, ShareVault, WriteStrategy};

// Re-exported so callers name the same versions this crate was built with.
pub use envelope;
pub use portal_api;
pub use prometheus_client;
pub use storage;
