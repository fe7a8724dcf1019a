#![doc = include_str!("../README.md")]
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "client")]
mod client;
pub mod client_api;
mod common;
pub mod custodian_api;
mod error;
pub mod mpc;
pub mod paths;
mod secret;
pub mod webhook;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use client::{
    ClientApi, CustodianApi, DEFAULT_API_BASE_URL, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MPC_BASE_URL, DEFAULT_TIMEOUT, Portal, PortalBuilder,
    RateLimit, RetryConfig,
};
pub use common::{BackupMethod, Curve, SharePairStatus, SharePairUpdateStatus};
pub use error::{Error, ErrorBody, JsonError, Result, TransportKind};
pub use secret::{ApiKey, SecretShare};
