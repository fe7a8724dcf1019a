#![doc = include_str!("../README.md")]
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod client_api;
pub mod common;
pub mod custodian_api;
pub mod error;
pub mod mpc;
pub mod paths;
pub mod secret;

#[cfg(feature = "client")]
pub use client::{Client, ClientBuilder};
pub use common::{BackupMethod, Curve, SharePairStatus, SharePairUpdateStatus};
pub use error::{Error, ErrorBody, JsonError, Result, TransportKind};
pub use secret::{ApiKey, SecretShare};
