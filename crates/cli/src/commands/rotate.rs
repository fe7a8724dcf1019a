//! `rotate`: rewrap every stored ciphertext under the target keys.

use std::process::ExitCode;

use backup_flow::StoreFactory;
use serde::Serialize;

use crate::failure::{EXIT_ROTATE_INCOMPLETE, Failure};
use crate::{kms, output};

use super::Settings;

pub(super) async fn rotate(
    settings: &Settings,
    to_kms: &[String],
    client_ids: Vec<String>,
    concurrency: usize,
    kms_rate_limit: Option<u32>,
) -> Result<ExitCode, Failure> {
    let (uri, stores) = settings.store().await?;
    let Some(own) = stores.own_store() else {
        return Err(Failure::new(
            "rotate needs a store of your own: Portal's store cannot list or rewrite ciphertexts",
        )
        .hint("pass --store file:<dir> (or postgres://…, s3://…)"));
    };
    let mut from = kms::keyring(&settings.kms, "--kms").await?;
    let mut to = kms::keyring(to_kms, "--to-kms").await?;
    if let Some(calls) = kms_rate_limit {
        let limit = backup_flow::KmsRateLimit::per_second(calls);
        (from, to) = (limit.keyring(&from), limit.keyring(&to));
    }
    let listed = if client_ids.is_empty() && own.capabilities().list {
        Some(crate::store::clients(own.as_ref(), &uri).await?)
    } else {
        None
    };
    let client_ids = if !client_ids.is_empty() {
        client_ids
    } else if let Some(listed) = listed {
        listed
    } else if settings.api_key.is_some() {
        let me = settings
            .client()?
            .client_me()
            .await
            .map_err(|e| Failure::caused_by("cannot find the client of the API key", e))?;
        vec![me.id]
    } else {
        return Err(Failure::new("no client to rotate").hint("pass --client-id <id>"));
    };
    let flow = settings.flow_with(from, stores)?;
    let report = flow
        .rotate_with(&to, &client_ids, concurrency)
        .await
        .map_err(|e| Failure::flow("rotate failed", e))?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary<'a> {
        clients: usize,
        #[serde(flatten)]
        report: &'a backup_flow::RotateReport,
        to_kms: &'a [String],
    }
    output::print_json(&Summary {
        clients: client_ids.len(),
        report: &report,
        to_kms,
    })?;
    if !report.is_complete() {
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.key, f.reason))
            .collect();
        return Err(Failure::new(format!(
            "rotation incomplete: {} objects failed and {} are still not under the new keys{}{}",
            report.failed.len(),
            report.not_under_target,
            if failed.is_empty() { "" } else { ":\n    " },
            failed.join("\n    ")
        ))
        .hint("keep the old keys until a rerun reports notUnderTarget 0 (it resumes where this one stopped)")
        .with_code(EXIT_ROTATE_INCOMPLETE));
    }
    eprintln!(
        "rotated {} objects of {} clients ({} were already under the new keys, {} journal shares rewrapped); nothing is left under other keys: use --kms {} from now on",
        report.rewrapped,
        client_ids.len(),
        report.already_current,
        report.journal_rewrapped,
        to_kms.join(",")
    );
    Ok(ExitCode::SUCCESS)
}
