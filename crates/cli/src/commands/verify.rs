//! `verify`: one client's restore drill, or every stored ciphertext (`--store-wide`).

use std::process::ExitCode;

use backup_flow::StoreFactory;
use futures_util::StreamExt as _;

use crate::failure::{EXIT_ATTENTION, Failure};
use crate::{kms, output, store_wide};

use super::Settings;

pub(super) async fn verify(settings: &Settings) -> Result<ExitCode, Failure> {
    let client = settings.client()?;
    let report = settings
        .flow()
        .await?
        .session(client)
        .verify()
        .await
        .map_err(|e| Failure::flow("verify failed", e))?;
    output::print_json(&report)?;
    if report.is_ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let bad: Vec<String> = report
        .checked
        .iter()
        .filter(|c| c.finding != backup_flow::Finding::Ok)
        .map(|c| {
            let what = match &c.finding {
                backup_flow::Finding::Missing => "nothing is stored".to_owned(),
                backup_flow::Finding::WrongIdentity { reason } => {
                    format!("it does not open as that share ({reason})")
                }
                _ => "it failed the check".to_owned(),
            };
            format!("{} {} ({}): {what}", c.curve, c.backup_share_pair_id, c.key)
        })
        .collect();
    let failure = if report.checked.is_empty() {
        Failure::new(format!(
            "verification failed: client {} has no completed backup to check",
            report.client_id
        ))
    } else {
        Failure::new(format!(
            "verification failed: {} of {} shares of client {} do not open as the share they are stored for:\n    {}",
            bad.len(),
            report.checked.len(),
            report.client_id,
            bad.join("\n    ")
        ))
        .hint("do not recover from these ciphertexts; restore them from a copy, or back the client up again")
    };
    Err(failure.with_code(EXIT_ATTENTION))
}

pub(super) async fn verify_store_wide(
    settings: &Settings,
    client_ids: Vec<String>,
    concurrency: usize,
    kms_rate_limit: Option<u32>,
) -> Result<ExitCode, Failure> {
    let (uri, stores) = settings.store().await?;
    let own = stores.own_store();
    if client_ids.is_empty() && own.is_none() {
        return Err(
            Failure::new("no client to verify: Portal's store cannot list its clients")
                .hint("pass --client-id <id>, or a store of your own with --store"),
        );
    }
    let mut keyring = kms::keyring(&settings.kms, "--kms").await?;
    if let Some(calls) = kms_rate_limit {
        keyring = backup_flow::KmsRateLimit::per_second(calls).keyring(&keyring);
    }
    let flow = settings.flow_with(keyring, stores)?;
    let clients = crate::store::clients(own.as_deref(), &uri, client_ids)?;
    let bar = crate::progress::Bar::new(None);
    let mut tally = store_wide::Tally::default();
    let mut lines = std::pin::pin!(flow.verify_streamed(clients, concurrency));
    while let Some(client) = lines.next().await {
        tally.print_client(&client)?;
        bar.finished(tally.failed());
    }
    bar.done();
    tally.print_summary(concurrency)?;
    tally.outcome()
}
