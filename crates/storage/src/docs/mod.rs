//! Guides whose code compiles and runs as part of the tests.

/// The guide for integrators who keep backups in a service of their own.
#[doc = include_str!("writing_a_store.md")]
pub mod writing_a_store {}
