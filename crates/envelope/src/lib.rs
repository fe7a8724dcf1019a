#![doc = include_str!("../README.md")]
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

mod context;
mod crypto;
mod error;
mod format;
mod inspect;
mod kek;
mod open;
mod random;
mod rewrap;
mod seal;
mod secret;
mod wire;

#[cfg(feature = "aws-kms")]
pub mod aws;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "gcp-kms")]
pub mod gcp;
pub mod local;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
#[cfg(feature = "testing")]
pub mod testing;

/// Guides whose code compiles and runs as doctests (with the conformance kit they use).
#[cfg(feature = "conformance")]
pub mod docs {
    #[doc = include_str!("docs/writing_a_kms_backend.md")]
    pub mod writing_a_kms_backend {}
}

pub use context::{
    EncryptionContext, MAX_CONTEXT_ENTRIES, MAX_CONTEXT_KEY_LEN, MAX_CONTEXT_VALUE_LEN,
};
pub use error::{BoxError, Error, FormatError, KmsError, Report, Result};
pub use format::{
    MAGIC, MAX_PLAINTEXT_LEN, MAX_WRAPPED_KEYS, SUITE_AES256GCM_HKDF_SHA256, TEXT_PREFIX, VERSION,
    from_text, to_text,
};
pub use inspect::{EnvelopeInfo, inspect, wrapped_only_by};
pub use kek::{
    KeyEncryptionKey, KeyRef, Keyring, MAX_KEY_ID_LEN, MAX_PROVIDER_LEN, MAX_WRAPPED_LEN,
    WrappedKey,
};
pub use open::{Opener, RewrapMode, open, rewrap};
pub use rewrap::Rewrapper;
pub use seal::{Sealer, seal};
pub use secret::{DATA_KEY_LEN, DataKey, Plaintext};
