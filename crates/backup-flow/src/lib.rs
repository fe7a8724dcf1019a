#![doc = include_str!("../README.md")]
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

mod backup;
pub mod bulk;
pub mod client_lines;
mod eject;
mod error;
pub mod fleet;
mod flow;
mod identity;
mod journal;
mod kms_rate;
pub mod migrate;
mod recover;
mod rotate;
mod stages;
mod stores;
mod verify;

pub use backup::BackupOutcome;
pub use eject::{EjectOptions, EjectReport, EjectedWallet};
pub use error::{Error, Result};
pub use flow::{ClientFlow, CustodianFlow, Flow};
pub use kms_rate::KmsRateLimit;
pub use recover::Recovered;
pub use rotate::{
    DEFAULT_ROTATE_CONCURRENCY, JournalRotation, RotateFailure, RotateReport, Rotated,
    RotatedClient, RotatedObject, Rotation,
};
pub use stores::{PortalManaged, StoreFactory};
pub use verify::{
    DEFAULT_VERIFY_CONCURRENCY, Finding, ShareCheck, StoredClientCheck, StoredShareCheck,
    VerifyReport,
};

pub use envelope;
pub use portal_api;
pub use storage;
