//! `keygen`: a new local key-encryption key file.

use std::path::Path;
use std::process::ExitCode;

use envelope::KeyEncryptionKey as _;
use serde::Serialize;

use crate::failure::Failure;
use crate::{kms, output};

pub(super) fn keygen(out: &Path) -> Result<ExitCode, Failure> {
    let kek = kms::keygen(out)?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Made<'a> {
        kms: String,
        provider: &'a str,
        key_id: &'a str,
    }
    output::print_json(&Made {
        kms: format!("local:{}", out.display()),
        provider: kek.provider(),
        key_id: kek.key_id(),
    })?;
    Ok(ExitCode::SUCCESS)
}
