//! `recover`: new signing shares from the newest backup.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use portal_api::BackupMethod;
use serde::Serialize;

use crate::failure::Failure;
use crate::output;

use super::Settings;
use super::backup::ids_by_curve;

pub(super) async fn recover(
    settings: &Settings,
    out: Option<&Path>,
    backup_method: Option<&str>,
) -> Result<ExitCode, Failure> {
    let backup_method = backup_method.map(BackupMethod::from_wire);
    // Make sure the new signing shares have somewhere to go before Portal issues them.
    let file = match out {
        Some(path) => Some(output::create_private(path)?),
        None if output::stdout_is_terminal() => {
            return Err(
                Failure::new("refusing to print new signing shares on a terminal")
                    .hint("pass --out <file> (created with mode 0600), or redirect stdout"),
            );
        }
        None => {
            // Before Portal issues anything: a readable file would keep the shares.
            output::refuse_readable_stdout()?;
            None
        }
    };
    let flow = match settings.client() {
        Ok(client) => settings.flow().await.map(|flow| flow.session(client)),
        Err(e) => Err(e),
    };
    let recovered = match flow {
        // Portal is told the new signing shares are stored only after they are written.
        Ok(flow) => flow
            .recover_unconfirmed_using(backup_method.as_ref())
            .await
            .map(|recovered| (flow, recovered))
            .map_err(|e| Failure::flow("recover failed", e)),
        Err(e) => Err(e),
    };
    let (flow, recovered) = match (recovered, out) {
        (Ok(done), _) => done,
        (Err(e), Some(path)) => {
            // Nothing was written: do not leave an empty file behind.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    match (file, out) {
        (Some(file), Some(path)) => {
            output::write_private(file, path, &recovered.shares)?;
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Summary<'a> {
                client_id: &'a str,
                signing_share_pair_ids: BTreeMap<String, String>,
                out: String,
                status: &'static str,
            }
            output::print_json(&Summary {
                client_id: &recovered.client_id,
                signing_share_pair_ids: ids_by_curve(&recovered.shares),
                out: path.display().to_string(),
                status: "recovered",
            })?;
        }
        _ => output::secret_to_stdout(&recovered.shares)?,
    }
    flow.confirm_recovered(&recovered)
        .await
        .map_err(|e| Failure::flow("confirming the new signing shares to Portal failed", e))?;
    Ok(ExitCode::SUCCESS)
}
