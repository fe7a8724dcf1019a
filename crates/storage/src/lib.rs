#![doc = include_str!("../README.md")]
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod batch;
mod error;
mod key;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod context;
#[cfg(feature = "conformance")]
pub mod docs;
#[cfg(all(feature = "fs", unix))]
pub mod fs;
pub mod memory;
#[cfg(feature = "object-store")]
pub mod object;
#[cfg(feature = "portal")]
pub mod portal;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "replicated")]
pub mod replicated;
pub mod uri;

pub use error::{BoxError, Report, Result, StorageError};
pub use key::{ABSENT, BackupKey, BackupKeyBuilder, MAX_PART_LEN, MAX_PATH_LEN, ShareKind};
pub use store::{
    BackupStore, BackupStoreExt, Capabilities, ClientStream, DynBackupStore, ObjectVersion,
    PutMode, PutOptions,
};
