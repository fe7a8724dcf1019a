#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

mod combine;
mod deal;
mod decimal;
mod ed25519;
mod error;
mod key;
mod secp256k1;
mod shares;

pub use combine::{Expected, combine};
pub use deal::{Dealt, deal};
pub use error::{Against, Error, Result, Side};
pub use key::{
    Curve, ED25519_SCALAR_NOTE, PortalKeyCheck, PublicKey, RebuiltKey, SECP256K1_KEY_NOTE,
    UnknownCurve,
};
pub use shares::{ClientShare, CustodianShare};
