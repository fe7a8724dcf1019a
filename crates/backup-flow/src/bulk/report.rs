//! The output schema of a bulk run: one [`LineResult`] a client and the [`BulkReport`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, cause_chain};

/// The outcome of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LineStatus {
    /// The client's backup is confirmed to Portal (in this run or an earlier one).
    Confirmed,
    /// It failed; `error` says why, `retryable` whether re-running may succeed.
    Failed,
}

/// The result line of one client. Never holds a secret.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LineResult {
    /// The input line number, from 1.
    pub line: u64,
    /// The Portal client id; `None` (`null`) when the client could not be identified (the
    /// line was unusable, or `GET /api/v3/clients/me` itself failed). A failure after Portal
    /// named the client carries its id.
    pub client_id: Option<String>,
    /// `confirmed` or `failed`.
    pub status: LineStatus,
    /// Why it failed: the whole cause chain, with Portal's status and error id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether re-running may succeed (Portal, the KMS or the store was unavailable or
    /// throttling). Always `false` for a confirmed line.
    pub retryable: bool,
    /// Portal's error id, when Portal refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_error_id: Option<String>,
    /// Portal's HTTP status, when Portal refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_status: Option<u16>,
    /// The journal's id of the backup (confirmed lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The backup share pair ids by curve (confirmed lines).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub backup_share_pair_ids: BTreeMap<String, String>,
    /// The store's name (confirmed lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
    /// The step this run resumed after, when an earlier run was interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<&'static str>,
    /// Whether an earlier run had already confirmed this backup (nothing was done).
    pub already_confirmed: bool,
    /// How many times `/v1/backup` was called for this backup in all runs (confirmed lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_requests: Option<u32>,
}

impl LineResult {
    pub(super) fn failed(line: u64, error: String) -> Self {
        Self {
            line,
            client_id: None,
            status: LineStatus::Failed,
            error: Some(error),
            retryable: false,
            portal_error_id: None,
            portal_status: None,
            backup_id: None,
            backup_share_pair_ids: BTreeMap::new(),
            store: None,
            resumed_after: None,
            already_confirmed: false,
            backup_requests: None,
        }
    }

    pub(super) fn from_error(line: u64, error: &Error) -> Self {
        let portal_status = match error {
            Error::Portal { source, .. } => source.status(),
            _ => None,
        };
        Self {
            retryable: error.is_retryable(),
            portal_error_id: error.portal_error_id().map(str::to_owned),
            portal_status,
            ..Self::failed(line, cause_chain(error))
        }
    }

    pub(super) fn confirmed(line: u64, outcome: crate::BackupOutcome) -> Self {
        Self {
            line,
            client_id: Some(outcome.client_id),
            status: LineStatus::Confirmed,
            error: None,
            retryable: false,
            portal_error_id: None,
            portal_status: None,
            backup_id: Some(outcome.backup_id),
            backup_share_pair_ids: outcome.backup_share_pair_ids,
            store: Some(outcome.store),
            resumed_after: outcome.resumed_after,
            already_confirmed: outcome.already_confirmed,
            backup_requests: Some(outcome.backup_requests),
        }
    }
}

/// What a bulk run did, over the lines of its shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BulkReport {
    /// Non-blank lines read, of every shard.
    pub lines: u64,
    /// Lines of this shard, each of which got a result.
    pub selected: u64,
    /// Lines of other shards, left to them (`lines − selected` once the input is read).
    pub skipped_by_shard: u64,
    /// Lines confirmed (including those confirmed by an earlier run).
    pub confirmed: u64,
    /// Of those, lines an earlier run had already confirmed.
    pub already_confirmed: u64,
    /// Lines that failed.
    pub failed: u64,
    /// Of those, lines that may succeed when run again.
    pub retryable_failures: u64,
}

impl BulkReport {
    /// Whether every line of the shard is confirmed.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.failed == 0
    }

    /// Lines backed up by this run: confirmed, and not already by an earlier one.
    #[must_use]
    pub fn backed_up(&self) -> u64 {
        self.confirmed.saturating_sub(self.already_confirmed)
    }

    pub(super) fn count(&mut self, result: &LineResult) {
        match result.status {
            LineStatus::Confirmed => {
                self.confirmed = self.confirmed.saturating_add(1);
                if result.already_confirmed {
                    self.already_confirmed = self.already_confirmed.saturating_add(1);
                }
            }
            LineStatus::Failed => {
                self.failed = self.failed.saturating_add(1);
                if result.retryable {
                    self.retryable_failures = self.retryable_failures.saturating_add(1);
                }
            }
        }
    }
}
