//! `rotate`: rewrap every stored ciphertext under the target keys.

use std::process::ExitCode;

use backup_flow::{RotateFailure, Rotated, RotatedClient, StoreFactory};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::failure::{EXIT_ROTATE_INCOMPLETE, Failure};
use crate::item_lines::{self, At, Errors};
use crate::kms;

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
    let client_ids = if !client_ids.is_empty() || own.capabilities().list {
        client_ids
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
    let clients = crate::store::clients(Some(own.as_ref()), &uri, client_ids)?;
    let flow = settings.flow_with(from, stores)?;
    let rotation = flow
        .rotation(&to)
        .await
        .map_err(|e| Failure::flow("rotate failed", e))?;
    let bar = crate::progress::Bar::new(None);
    let mut tally = Tally::default();
    let mut done = std::pin::pin!(rotation.run(clients, concurrency));
    while let Some(client) = done.next().await {
        tally.print_client(client)?;
        bar.finished(tally.failed());
    }
    bar.done();
    let journal = rotation
        .finish()
        .await
        .map_err(|e| Failure::flow("rotating the journal's unfinished backups failed", e))?;
    for failure in &journal.failed {
        tally.print_failure(failure)?;
    }
    tally.not_under_target = tally
        .not_under_target
        .saturating_add(journal.not_under_target);
    item_lines::print(&Summary {
        kind: "summary",
        clients: tally.clients,
        rewrapped: tally.rewrapped,
        already_current: tally.already_current,
        conflicts_redone: tally.conflicts_redone,
        journal_rewrapped: journal.rewrapped,
        failed: tally.failed,
        not_under_target: tally.not_under_target,
        target_keys: &rotation.target_keys(),
        to_kms,
        concurrency,
    })?;
    if tally.failed > 0 || tally.not_under_target > 0 {
        return Err(Failure::new(format!(
            "rotation incomplete: {} objects failed (see the lines with \"kind\":\"error\") and {} are still not under the new keys",
            tally.failed, tally.not_under_target,
        ))
        .hint("keep the old keys until a rerun reports notUnderTarget 0 (it resumes where this one stopped)")
        .with_code(EXIT_ROTATE_INCOMPLETE));
    }
    eprintln!(
        "rotated {} objects of {} clients ({} were already under the new keys, {} journal shares rewrapped); nothing is left under other keys: use --kms {} from now on",
        tally.rewrapped,
        tally.clients,
        tally.already_current,
        journal.rewrapped,
        to_kms.join(",")
    );
    Ok(ExitCode::SUCCESS)
}

/// The end of the run: the counts (every object and failure has had its own line).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary<'a> {
    kind: &'static str,
    clients: usize,
    rewrapped: usize,
    already_current: usize,
    conflicts_redone: usize,
    journal_rewrapped: usize,
    failed: usize,
    not_under_target: usize,
    target_keys: &'a [String],
    to_kms: &'a [String],
    concurrency: usize,
}

/// What the run found so far.
#[derive(Default)]
struct Tally {
    clients: usize,
    rewrapped: usize,
    already_current: usize,
    conflicts_redone: usize,
    failed: usize,
    not_under_target: usize,
    errors: Errors,
}

impl Tally {
    /// Prints one line per object of `client` (and per failure) and counts them.
    fn print_client(&mut self, client: RotatedClient) -> Result<(), Failure> {
        let id = client.client_id.as_str();
        if !id.is_empty() {
            self.clients = self.clients.saturating_add(1);
        }
        match &client.objects {
            Ok(objects) => {
                for object in objects {
                    match &object.result {
                        Ok(rotated) => {
                            let redone = match rotated {
                                Rotated::Rewrapped { conflicts_redone } => {
                                    self.rewrapped = self.rewrapped.saturating_add(1);
                                    *conflicts_redone
                                }
                                Rotated::AlreadyCurrent { conflicts_redone } => {
                                    self.already_current = self.already_current.saturating_add(1);
                                    *conflicts_redone
                                }
                                _ => 0,
                            };
                            self.conflicts_redone = self
                                .conflicts_redone
                                .saturating_add(usize::try_from(redone).unwrap_or(usize::MAX));
                            item_lines::item("object", At::client(id).key(&object.key), rotated)?;
                        }
                        Err(e) => {
                            self.failed = self.failed.saturating_add(1);
                            self.errors.print(At::client(id).key(&object.key), e)?;
                        }
                    }
                }
            }
            Err(e) => {
                self.failed = self.failed.saturating_add(1);
                self.errors.print(At::client(id), e)?;
            }
        }
        match &client.not_under_target {
            Ok(count) => self.not_under_target = self.not_under_target.saturating_add(*count),
            Err(e) => {
                self.failed = self.failed.saturating_add(1);
                self.errors.print(At::client(id), e)?;
            }
        }
        Ok(())
    }

    /// A journal share that could not be rotated.
    fn print_failure(&mut self, failure: &RotateFailure) -> Result<(), Failure> {
        self.failed = self.failed.saturating_add(1);
        self.errors
            .print_reason(At::client("").key(&failure.key), &failure.reason, false)
    }

    /// Objects and clients that failed so far, for the progress bar.
    fn failed(&self) -> u64 {
        u64::try_from(self.failed).unwrap_or(u64::MAX)
    }
}
