//! The async HTTP client (feature `client`): roles as types over one shared transport.
//!
//! A [`Portal`] (built with [`PortalBuilder`]) is the connection: pool, base URLs, rate
//! limiters, retry policy. It calls nothing by itself. A credential makes it a role:
//! [`ClientApi`] (Client API Key or Client Session Token: the MPC and Client API routes) or
//! [`CustodianApi`] (Custodian API Key: the Custodian API routes). Each route is a method of
//! the one role Portal accepts it from, so a call with the wrong credential does not compile.
//!
//! # Secrets
//! Credentials are taken as [`ApiKey`](crate::ApiKey) and turned once into a sensitive
//! `Authorization` header value; neither `Debug` of a role nor any error shows them. Response
//! bodies that carry shares are read into zeroizing buffers. Copies held inside the HTTP and
//! TLS stack are not under our control and are not wiped.

mod base_url;
mod builder;
mod client_role;
mod custodian_role;
mod portal;
mod rate_limit;
mod retry;
mod transport;

pub use builder::{
    DEFAULT_API_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MPC_BASE_URL, DEFAULT_TIMEOUT, PortalBuilder,
};
pub use client_role::ClientApi;
pub use custodian_role::CustodianApi;
pub use portal::Portal;
pub use rate_limit::RateLimit;
pub use retry::RetryConfig;
