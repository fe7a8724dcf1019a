//! `reconcile` over many clients: one client session per line of a
//! [client lines](crate::client_lines) input, one result line per client.

use std::io::{BufRead, Write};
use std::sync::Arc;

use portal_api::Portal;
use serde::Serialize;
use tracing::Instrument as _;

use super::Orphan;
use super::reconcile::{ClientReconcile, Done, Open, OrphanPruning};
use crate::client_lines::{LineEvent, LineRun, NumberedLine, Shard, write_result_line};
use crate::error::cause_chain;
use crate::flow::Flow;
use crate::journal::BackupRecord;

/// How a reconcile run over many clients goes.
#[derive(Clone, Debug)]
#[must_use]
pub struct ReconcileOptions {
    concurrency: usize,
    shard: Option<Shard>,
    pruning: OrphanPruning,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ReconcileOptions {
    /// Four clients at once, every line, orphans kept.
    pub fn new() -> Self {
        Self {
            concurrency: 4,
            shard: None,
            pruning: OrphanPruning::Keep,
        }
    }

    /// How many clients at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Only the lines of this shard.
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// What to do with orphans.
    pub fn with_pruning(mut self, pruning: OrphanPruning) -> Self {
        self.pruning = pruning;
        self
    }
}

/// How one client came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ReconcileStatus {
    /// Every wallet has a completed backup whose ciphertext is stored.
    Whole,
    /// Something is left open (see `open`).
    Open,
    /// The client could not be reconciled (see `error`).
    Failed,
}

/// The result line of one client. Never holds a secret.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReconcileLine {
    /// The input line number, from 1.
    pub line: u64,
    /// The Portal client id; `null` when the client could not be identified.
    pub client_id: Option<String>,
    /// `whole`, `open` or `failed`.
    pub status: ReconcileStatus,
    /// What this run finished.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<Done>,
    /// What is left open.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<Open>,
    /// Orphans left in place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<Orphan>,
    /// Orphans a pruning run would delete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_prune: Vec<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether running again may succeed.
    pub retryable: bool,
}

impl ReconcileLine {
    fn failed(line: u64, client_id: Option<String>, error: String, retryable: bool) -> Self {
        Self {
            line,
            client_id,
            status: ReconcileStatus::Failed,
            done: Vec::new(),
            open: Vec::new(),
            orphans: Vec::new(),
            would_prune: Vec::new(),
            error: Some(error),
            retryable,
        }
    }

    fn reconciled(line: u64, result: ClientReconcile) -> Self {
        Self {
            line,
            status: if result.is_whole() {
                ReconcileStatus::Whole
            } else {
                ReconcileStatus::Open
            },
            client_id: Some(result.client_id),
            done: result.done,
            open: result.open,
            orphans: result.orphans,
            would_prune: result.would_prune,
            error: None,
            retryable: false,
        }
    }
}

/// What a reconcile run did, over the lines of its shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Non-blank lines read, of every shard.
    pub lines: u64,
    /// Lines of this shard.
    pub selected: u64,
    /// Lines left to other shards.
    pub skipped_by_shard: u64,
    /// Clients left whole.
    pub whole: u64,
    /// Clients with something open.
    pub open: u64,
    /// Clients that failed.
    pub failed: u64,
    /// Of those, the ones that may pass when run again.
    pub retryable_failures: u64,
    /// Pairs confirmed by this run.
    pub confirmed_pairs: u64,
    /// Journaled backups resumed by this run.
    pub resumed_backups: u64,
    /// Orphans deleted by this run.
    pub pruned: u64,
    /// Orphans left in place.
    pub orphans: u64,
    /// Orphans a pruning run would delete.
    pub would_prune: u64,
}

impl ReconcileReport {
    /// Whether every client is whole and none failed.
    #[must_use]
    pub fn is_whole(&self) -> bool {
        self.open == 0 && self.failed == 0
    }

    fn count(&mut self, line: &ReconcileLine) {
        let add =
            |n: &mut u64, by: usize| *n = n.saturating_add(u64::try_from(by).unwrap_or(u64::MAX));
        match line.status {
            ReconcileStatus::Whole => add(&mut self.whole, 1),
            ReconcileStatus::Open => add(&mut self.open, 1),
            ReconcileStatus::Failed => {
                add(&mut self.failed, 1);
                if line.retryable {
                    add(&mut self.retryable_failures, 1);
                }
            }
        }
        for done in &line.done {
            match done {
                Done::Confirmed { .. } => add(&mut self.confirmed_pairs, 1),
                Done::Resumed { .. } => add(&mut self.resumed_backups, 1),
                Done::Pruned { .. } => add(&mut self.pruned, 1),
            }
        }
        add(&mut self.orphans, line.orphans.len());
        add(&mut self.would_prune, line.would_prune.len());
    }
}

impl Flow {
    /// Reconciles every client of `input` (a [client lines](crate::client_lines) input; a
    /// `generateResponse` is ignored), writing one [`ReconcileLine`] per client to `output`
    /// as each finishes. A failing client never stops the others.
    ///
    /// # Errors
    /// Reading the journal or `input`, or writing `output`; per-client failures are result
    /// lines.
    pub async fn reconcile_lines<R, W>(
        &self,
        portal: &Portal,
        input: R,
        mut output: W,
        options: ReconcileOptions,
    ) -> std::io::Result<ReconcileReport>
    where
        R: BufRead + Send + 'static,
        W: Write + Send,
    {
        let journal: Arc<Vec<BackupRecord>> = Arc::new(
            self.journal
                .unfinished()
                .await
                .map_err(|e| std::io::Error::other(cause_chain(&e)))?,
        );
        let pruning = options.pruning;
        let mut report = ReconcileReport::default();
        let read = LineRun::new(options.concurrency)
            .with_shard(options.shard)
            .run(
                input,
                |line| {
                    let span = tracing::info_span!("reconcile", line = line.line);
                    let (flow, portal, journal, pruning) = (
                        self.clone(),
                        portal.clone(),
                        Arc::clone(&journal),
                        pruning.clone(),
                    );
                    async move { flow.reconcile_line(&portal, line, &journal, &pruning).await }
                        .instrument(span)
                },
                |event| {
                    if let LineEvent::Finished(result) = event {
                        report.count(&result);
                        write_result_line(&mut output, &result)?;
                    }
                    Ok(())
                },
            )
            .await?;
        report.lines = read.lines;
        report.selected = read.selected;
        report.skipped_by_shard = read.skipped_by_shard;
        Ok(report)
    }

    async fn reconcile_line(
        &self,
        portal: &Portal,
        numbered: NumberedLine,
        journal: &[BackupRecord],
        pruning: &OrphanPruning,
    ) -> ReconcileLine {
        let NumberedLine { line, parsed } = numbered;
        let client =
            match parsed.and_then(|p| p.credential.client(portal).map_err(|e| cause_chain(&e))) {
                Ok(client) => client,
                Err(reason) => return ReconcileLine::failed(line, None, reason, false),
            };
        let session = self.session(client);
        let mut client_id = None;
        match session
            .reconcile_with(pruning, journal, &mut client_id)
            .await
        {
            Ok(result) => ReconcileLine::reconciled(line, result),
            Err(e) => {
                tracing::warn!(line, error = %cause_chain(&e), "reconcile line failed");
                ReconcileLine::failed(line, client_id, cause_chain(&e), e.is_retryable())
            }
        }
    }
}
