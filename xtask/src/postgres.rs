//! PostgreSQL for the `postgres` store's tests: Debian's server binaries, installed with
//! apt-get when missing, and one throwaway server on loopback for the whole test step.
//!
//! The server is the tests' own fixture (`test_services::postgres`): a fresh data directory
//! under the system's temporary directory, `127.0.0.1` only, a random password. Test processes get its URL in `PORTAL_BACKUP_PG_URL` and share it
//! (each test makes its own database or works under its own client ids), instead of each
//! starting a server of its own. It stops, and its directory is removed, when the returned
//! guard is dropped or xtask exits.

use std::path::Path;

use test_services::postgres as support;

use crate::cmd::{Error, Result};

pub(crate) use support::{Postgres, URL_ENV};

/// Makes sure PostgreSQL's server binaries are installed, installing Debian's `postgresql`
/// package when they are not.
pub(crate) fn install(root: &Path) -> Result {
    if support::bin_dir().is_some() {
        return Ok(());
    }
    println!(
        "PostgreSQL server binaries (initdb) not found: installing Debian's postgresql package"
    );
    crate::tools::apt_install(root, "postgresql").map_err(|e| {
        Error::msg(format!(
            "{e}\nthe postgres store tests need PostgreSQL: install it (Debian: `apt-get \
             install postgresql`) or set {} to a directory with initdb and postgres",
            support::BIN_ENV
        ))
    })?;
    if support::bin_dir().is_none() {
        return Err(Error::msg(
            "the postgresql package is installed but initdb is still not found",
        ));
    }
    Ok(())
}

/// Installs PostgreSQL if needed and starts a throwaway server for the test step.
pub(crate) fn server(root: &Path) -> Result<Postgres> {
    install(root)?;
    let server = support::start()
        .ok_or_else(|| Error::msg("PostgreSQL's server binaries are not usable"))?;
    println!(
        "PostgreSQL for the tests on 127.0.0.1:{} (throwaway data directory)",
        server.port
    );
    Ok(server)
}
