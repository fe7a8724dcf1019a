#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]

mod clock;
mod config;
mod error_body;
pub mod faults;
mod report;
mod rng;
mod server;
mod shares;
mod state;
mod traffic;
mod webhook;

pub use config::{BackupMode, SimConfig, StatusView, WebhookConfig};
pub use faults::{FaultRule, RouteSelector};
pub use report::{Rejection, Report, Rule, Violation, ViolationKind};
pub use server::{PortalSim, Simulator};
pub use state::{SimClient, SimCustodian};
pub use traffic::{Host, HostTraffic, Traffic};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when configuring or running a simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A fault rule was rejected.
    #[error("invalid fault rule: {reason}")]
    InvalidFault {
        /// Why.
        reason: &'static str,
    },
    /// The configuration was rejected.
    #[error("invalid simulator configuration: {reason}")]
    InvalidConfig {
        /// Why.
        reason: &'static str,
    },
    /// The listen address could not be bound.
    #[error("failed to bind the listen address")]
    Bind {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the simulator server failed")]
    Server {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No custodian with that id.
    #[error("unknown custodian")]
    UnknownCustodian,
}

impl Error {
    pub(crate) fn invalid_fault(reason: &'static str) -> Self {
        Self::InvalidFault { reason }
    }
}
