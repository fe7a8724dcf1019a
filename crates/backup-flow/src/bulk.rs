//! Bulk backup: many clients from a JSON Lines input, streamed, with bounded concurrency, one
//! JSON result line per client, resumable, and shardable across machines.
//!
//! # Input: one client a line
//!
//! ```text
//! {"clientApiKey": "<Client API Key>", "generateResponse": {"SECP256K1": {"share": "…", "id": "…"}, "ED25519": {"share": "…", "id": "…"}}}
//! {"clientSessionToken": "<Client Session Token>", "generateResponse": "<the same object as a JSON string>"}
//! ```
//!
//! * Each line is one JSON object (UTF-8, at most [`MAX_LINE_BYTES`] bytes) with exactly one
//!   of `clientApiKey` and `clientSessionToken` (the client's credential), and
//!   `generateResponse`: the client's `/v1/generate` response, as the JSON object Portal
//!   returned or as a string holding it (the form `/v1/backup` takes). Other fields are
//!   ignored.
//! * Lines are numbered from 1 in the order of the input; blank lines are skipped but keep
//!   their number, so `line` in a result is the line an editor shows.
//! * A line that cannot be used (not JSON, a field missing, too long) fails on its own: it
//!   gets a `failed` result and the run goes on.
//!
//! # Output: one result a client
//!
//! One JSON object a line, written (and flushed) as each client finishes, so in the order
//! clients finish rather than input order:
//!
//! ```text
//! {"line":1,"clientId":"cl_…","status":"confirmed","retryable":false,"backupId":"…","backupSharePairIds":{"ED25519":"…","SECP256K1":"…"},"store":"portal","alreadyConfirmed":false,"backupRequests":1}
//! {"line":2,"clientId":null,"status":"failed","error":"Portal call `GET /api/v3/clients/me` failed: portal rejected the credentials (http 401, AUTH_FAILED)","retryable":false,"portalErrorId":"AUTH_FAILED","portalStatus":401,"alreadyConfirmed":false}
//! ```
//!
//! See [`LineResult`] for every field. A result never holds a share, a key, a token or
//! Portal's free-text error message (which may echo input); `clientId` is `null` only when the
//! client could not be identified (an unusable line, or `GET /api/v3/clients/me` failed).
//!
//! # Resuming, sharding, rate limits
//!
//! * **Resumable:** each client's backup is journaled by [`ClientFlow::backup`](crate::ClientFlow::backup) in the flow's state
//!   directory. Running the same input again continues interrupted backups and reports the
//!   confirmed ones with `"alreadyConfirmed": true`, with no new `/v1/backup` (one
//!   `GET /api/v3/clients/me` per line, to find the journal entry).
//! * **Sharded:** with [`BulkOptions::with_shard`] `i/n`, a run takes the lines whose index
//!   (line number − 1) is `i` modulo `n`; the `n` shards `0/n` … `n-1/n` together take every
//!   line exactly once, so a job array can split one input without coordination. In a pod of
//!   a Kubernetes Indexed Job, [`Shard::from_job_index`] takes `i` from
//!   [`JOB_COMPLETION_INDEX`] and `n` from the Job's completions.
//! * **Rate limit:** every line's client role is made over the one
//!   [`Portal`] transport passed to [`Flow::bulk_backup`] with
//!   [`client_with_api_key`](portal_api::Portal::client_with_api_key) or
//!   [`client_with_session_token`](portal_api::Portal::client_with_session_token), and so
//!   shares its rate limiters: the limits set on it
//!   ([`PortalBuilder::with_api_rate_limit`](portal_api::PortalBuilder::with_api_rate_limit),
//!   [`with_mpc_rate_limit`](portal_api::PortalBuilder::with_mpc_rate_limit)) hold for the
//!   whole run.
//! * **Memory stays flat:** one reader thread reads a line at a time into a fixed buffer and
//!   hands it over a channel of `concurrency` slots; at most `concurrency` clients are in
//!   flight. Nothing grows with the input.
//! * Two lines with the same generate response (the same backup) never run at the same
//!   time; the second waits for the first and then finds it confirmed.
//!
//! Do not run two processes over the same lines at the same time: the journal orders the
//! steps of one backup within one process.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{BufRead, Write};
use std::pin::pin;
use std::str::FromStr;

use futures_util::future::{Either, select};
use portal_api::mpc::GenerateResponse;
use portal_api::{ApiKey, Portal};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result, cause_chain};
use crate::flow::Flow;

/// The longest input line accepted, in bytes (1 MiB). A longer line fails on its own.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How many clients are backed up at once unless [`BulkOptions::with_concurrency`] says
/// otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// One shard of an input: the lines whose index (line number − 1) is `index` modulo `count`.
///
/// Written `i/n` (`0/4`, `1/4`, `2/4`, `3/4` split an input in four), with `i < n`.
///
/// ```
/// use backup_flow::bulk::Shard;
///
/// let shard: Shard = "1/3".parse()?;
/// assert!(shard.selects(1) && shard.selects(4) && !shard.selects(0));
/// assert!("3/3".parse::<Shard>().is_err());
/// # Ok::<(), backup_flow::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless `index < count`.
    pub fn new(index: u32, count: u32) -> Result<Self> {
        if index >= count {
            return Err(Error::Invalid(format!(
                "shard {index}/{count}: the index must be below the count (0/{count} … {}/{count})",
                count.saturating_sub(1)
            )));
        }
        Ok(Self { index, count })
    }

    /// The shard's index, from 0.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards there are.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the line of index `line_index` (line number − 1) belongs to this shard.
    #[must_use]
    pub fn selects(&self, line_index: u64) -> bool {
        line_index.checked_rem(u64::from(self.count)) == Some(u64::from(self.index))
    }
}

/// The variable Kubernetes sets in every pod of an Indexed Job (`completionMode: Indexed`): the
/// pod's completion index, `0` … `completions − 1`.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// Why an Indexed Job's environment names no usable shard (see [`Shard::from_job_index`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobShardError {
    /// The completion index is set but no shard count was given: taking every line in each
    /// of the Job's pods would run them all over the same clients.
    #[error(
        "{JOB_COMPLETION_INDEX}={index} names a shard index, but no shard count is given (the Job's completions)"
    )]
    CountMissing {
        /// The completion index.
        index: u32,
    },
    /// A shard count was given but no completion index: not a pod of an Indexed Job, so every
    /// pod would take the same shard.
    #[error(
        "a shard count ({count}) is given, but {JOB_COMPLETION_INDEX} is not set: not a pod of an Indexed Job (completionMode: Indexed)"
    )]
    IndexMissing {
        /// The shard count.
        count: u32,
    },
    /// The completion index is not a whole number.
    #[error("{JOB_COMPLETION_INDEX}={value:?} is not a shard index (a whole number from 0)")]
    IndexNotANumber {
        /// The variable's value (an index is no secret).
        value: String,
    },
    /// The shard count is 0.
    #[error("the shard count is 0; it must be the Job's completions, at least 1")]
    CountZero,
    /// The completion index is not below the shard count: the count is not the Job's
    /// completions.
    #[error(
        "{JOB_COMPLETION_INDEX}={index} is not below the shard count {count}: the count must be the Job's completions"
    )]
    IndexOutOfRange {
        /// The completion index.
        index: u32,
        /// The shard count.
        count: u32,
    },
}

impl Shard {
    /// The shard of a pod of a Kubernetes Indexed Job: `index` is the value of
    /// [`JOB_COMPLETION_INDEX`] (`None` when it is unset or empty) and `count` the number of
    /// shards, which must be the Job's `completions`. `Ok(None)` when neither is given: the
    /// run takes every line.
    ///
    /// ```
    /// use backup_flow::bulk::{JobShardError, Shard};
    ///
    /// assert_eq!(Shard::from_job_index(Some("2"), Some(4))?, Some(Shard::new(2, 4)?));
    /// assert_eq!(Shard::from_job_index(None, None)?, None);
    /// assert_eq!(
    ///     Shard::from_job_index(Some("2"), None),
    ///     Err(JobShardError::CountMissing { index: 2 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`JobShardError`] when only one of the two is given, the index is not a number, the
    /// count is 0 or the index is not below the count.
    pub fn from_job_index(
        index: Option<&str>,
        count: Option<u32>,
    ) -> std::result::Result<Option<Self>, JobShardError> {
        let index = match index.map(str::trim).filter(|i| !i.is_empty()) {
            None => {
                return match count {
                    None => Ok(None),
                    Some(count) => Err(JobShardError::IndexMissing { count }),
                };
            }
            Some(text) => text
                .parse::<u32>()
                .map_err(|_| JobShardError::IndexNotANumber {
                    value: text.to_owned(),
                })?,
        };
        match count {
            None => Err(JobShardError::CountMissing { index }),
            Some(0) => Err(JobShardError::CountZero),
            Some(count) if index >= count => Err(JobShardError::IndexOutOfRange { index, count }),
            Some(count) => Ok(Some(Self { index, count })),
        }
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::Invalid(format!("shard {s:?}: expected i/n, e.g. 0/4"));
        let (index, count) = s.split_once('/').ok_or_else(invalid)?;
        let index = index.trim().parse().map_err(|_| invalid())?;
        let count = count.trim().parse().map_err(|_| invalid())?;
        Self::new(index, count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a bulk run reports to its progress hook.
#[derive(Debug)]
#[non_exhaustive]
pub enum BulkEvent<'a> {
    /// A line of this shard was handed to a worker.
    Started {
        /// Its line number.
        line: u64,
    },
    /// A line's result was written.
    Finished(&'a LineResult),
}

type ProgressHook = Box<dyn FnMut(BulkEvent<'_>) + Send>;

/// How a bulk run goes: concurrency, shard, progress hook.
#[must_use]
pub struct BulkOptions {
    concurrency: usize,
    shard: Option<Shard>,
    progress: Option<ProgressHook>,
}

impl Default for BulkOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BulkOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkOptions")
            .field("concurrency", &self.concurrency)
            .field("shard", &self.shard)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl BulkOptions {
    /// [`DEFAULT_CONCURRENCY`] clients at once, every line, no progress hook.
    pub fn new() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            shard: None,
            progress: None,
        }
    }

    /// How many clients are backed up at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Takes only the lines of this shard.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Calls `hook` as lines start and finish (on the task that runs the bulk backup, after
    /// each result line is written). For a progress bar; it must not block.
    pub fn with_progress(mut self, hook: impl FnMut(BulkEvent<'_>) + Send + 'static) -> Self {
        self.progress = Some(Box::new(hook));
        self
    }
}

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
    fn failed(line: u64, error: String) -> Self {
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

    fn from_error(line: u64, error: &Error) -> Self {
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

    fn confirmed(line: u64, outcome: crate::BackupOutcome) -> Self {
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

    fn count(&mut self, result: &LineResult) {
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

impl Flow {
    /// Backs up every client of `input` (JSON Lines, see the [module docs](self)), writing one
    /// result line per client to `output`.
    ///
    /// `input` is read on a thread of its own, a line at a time; at most
    /// [`concurrency`](BulkOptions::with_concurrency) clients are in flight. A failing client
    /// never stops the others. Each line's credential opens a client session over `portal`,
    /// which supplies the hosts, retries and rate limits (shared by every line).
    ///
    /// # Errors
    /// Only reading `input` or writing `output`; every per-client failure is a result line
    /// (count them in the returned [`BulkReport`]). On an input error the clients already
    /// started are finished and their results written first.
    pub async fn bulk_backup<R, W>(
        &self,
        portal: &Portal,
        input: R,
        mut output: W,
        mut options: BulkOptions,
    ) -> std::io::Result<BulkReport>
    where
        R: BufRead + Send + 'static,
        W: Write + Send,
    {
        let concurrency = options.concurrency.max(1);
        let shard = options.shard;
        let (tx, mut rx) = mpsc::channel(concurrency);
        std::thread::Builder::new()
            .name("bulk-input".into())
            .spawn(move || read_input(input, shard, &tx))?;

        let mut tasks: JoinSet<(Option<String>, LineResult)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut parked: Option<Item> = None;
        let mut input_open = true;
        let mut input_error = None;
        let mut report = BulkReport::default();
        loop {
            // A line held back because the same backup was in flight goes first.
            if let Some(item) = parked.take() {
                if tasks.len() < concurrency && !item.conflicts(&in_flight) {
                    self.start(portal, item, &mut tasks, &mut in_flight, &mut options);
                    continue;
                }
                parked = Some(item);
            }
            let read = input_open && parked.is_none() && tasks.len() < concurrency;
            let next = if read && tasks.is_empty() {
                Next::Input(rx.recv().await)
            } else if read {
                match select(pin!(rx.recv()), pin!(tasks.join_next())).await {
                    Either::Left((message, _)) => Next::Input(message),
                    Either::Right((joined, _)) => Next::Done(joined),
                }
            } else {
                Next::Done(tasks.join_next().await)
            };
            match next {
                Next::Input(Some(FromReader::Item(item))) => {
                    report.selected = report.selected.saturating_add(1);
                    if item.conflicts(&in_flight) {
                        parked = Some(item);
                    } else {
                        self.start(portal, item, &mut tasks, &mut in_flight, &mut options);
                    }
                }
                Next::Input(Some(FromReader::End { lines, skipped })) => {
                    report.lines = lines;
                    report.skipped_by_shard = skipped;
                }
                Next::Input(Some(FromReader::Failed(e))) => {
                    input_error = Some(e);
                    input_open = false;
                }
                Next::Input(None) => input_open = false,
                Next::Done(Some(joined)) => {
                    let (key, result) = match joined {
                        Ok(done) => done,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => return Err(std::io::Error::other("a bulk task was cancelled")),
                    };
                    if let Some(key) = key {
                        in_flight.remove(&key);
                    }
                    report.count(&result);
                    serde_json::to_writer(&mut output, &result)?;
                    output.write_all(b"\n")?;
                    output.flush()?;
                    if let Some(progress) = options.progress.as_mut() {
                        progress(BulkEvent::Finished(&result));
                    }
                }
                Next::Done(None) => {
                    if !input_open && parked.is_none() {
                        break;
                    }
                }
            }
        }
        match input_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn start(
        &self,
        portal: &Portal,
        item: Item,
        tasks: &mut JoinSet<(Option<String>, LineResult)>,
        in_flight: &mut HashSet<String>,
        options: &mut BulkOptions,
    ) {
        if let Some(progress) = options.progress.as_mut() {
            progress(BulkEvent::Started { line: item.line });
        }
        let key = item.backup_key();
        if let Some(key) = &key {
            in_flight.insert(key.clone());
        }
        let span = tracing::info_span!("bulk", line = item.line);
        let (flow, portal) = (self.clone(), portal.clone());
        tasks.spawn(
            async move {
                let result = flow.backup_line(&portal, item).await;
                (key, result)
            }
            .instrument(span),
        );
    }

    async fn backup_line(&self, portal: &Portal, item: Item) -> LineResult {
        let Item { line, parsed } = item;
        let (credential, generate) = match parsed {
            Parsed::Client {
                credential,
                generate,
            } => (credential, generate),
            Parsed::Invalid(reason) => return LineResult::failed(line, reason),
        };
        let client = match &credential {
            Credential::ApiKey(key) => portal.client_with_api_key(key),
            Credential::SessionToken(token) => portal.client_with_session_token(token),
        };
        drop(credential);
        let client = match client {
            Ok(client) => client,
            Err(e) => return LineResult::failed(line, cause_chain(&e)),
        };
        let mut client_id = None;
        match self
            .session(client)
            .backup_tracked(&generate, &mut client_id)
            .await
        {
            Ok(outcome) => LineResult::confirmed(line, outcome),
            Err(e) => {
                tracing::warn!(line, error = %cause_chain(&e), "bulk line failed");
                LineResult {
                    client_id,
                    ..LineResult::from_error(line, &e)
                }
            }
        }
    }
}

enum Next {
    Input(Option<FromReader>),
    Done(Option<std::result::Result<(Option<String>, LineResult), tokio::task::JoinError>>),
}

enum FromReader {
    Item(Item),
    End { lines: u64, skipped: u64 },
    Failed(std::io::Error),
}

struct Item {
    line: u64,
    parsed: Parsed,
}

impl Item {
    /// What names the backup before Portal is asked: the generate response's signing share
    /// pair ids (the journal adds the client id).
    fn backup_key(&self) -> Option<String> {
        match &self.parsed {
            Parsed::Client { generate, .. } => {
                let mut ids = generate.ids();
                ids.sort_unstable();
                Some(ids.join("\0"))
            }
            Parsed::Invalid(_) => None,
        }
    }

    fn conflicts(&self, in_flight: &HashSet<String>) -> bool {
        self.backup_key()
            .is_some_and(|key| in_flight.contains(&key))
    }
}

enum Parsed {
    Client {
        credential: Credential,
        generate: GenerateResponse,
    },
    Invalid(String),
}

enum Credential {
    ApiKey(ApiKey),
    SessionToken(ApiKey),
}

/// The reader thread: one line at a time into a fixed, zeroized buffer; blocks while the
/// channel is full, so it never runs more than `concurrency` lines ahead.
fn read_input<R: BufRead>(mut input: R, shard: Option<Shard>, tx: &mpsc::Sender<FromReader>) {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_LINE_BYTES));
    let mut index: u64 = 0;
    let mut lines: u64 = 0;
    let mut skipped: u64 = 0;
    loop {
        buf.clear();
        let read = match read_line_capped(&mut input, &mut buf) {
            Ok(read) => read,
            Err(e) => {
                // The receiver may be gone already; nothing more to do then.
                let _ = tx.blocking_send(FromReader::Failed(e));
                return;
            }
        };
        let this = index;
        index = index.saturating_add(1);
        let too_long = match read {
            LineRead::Eof => break,
            LineRead::Line if buf.trim_ascii().is_empty() => continue,
            LineRead::Line => false,
            LineRead::TooLong => true,
        };
        lines = lines.saturating_add(1);
        if !shard.is_none_or(|s| s.selects(this)) {
            skipped = skipped.saturating_add(1);
            continue;
        }
        let parsed = if too_long {
            Parsed::Invalid(format!("the line is longer than {MAX_LINE_BYTES} bytes"))
        } else {
            parse_line(&buf)
        };
        let item = Item {
            line: this.saturating_add(1),
            parsed,
        };
        if tx.blocking_send(FromReader::Item(item)).is_err() {
            return;
        }
    }
    let _ = tx.blocking_send(FromReader::End { lines, skipped });
}

enum LineRead {
    Eof,
    Line,
    TooLong,
}

/// Reads up to the next `\n` (not included) into `buf`, keeping at most [`MAX_LINE_BYTES`];
/// the rest of a longer line is skipped. `buf` never grows past its capacity, so no
/// unzeroized copy of a line is left behind by a reallocation.
fn read_line_capped<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let mut any = false;
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, false) => LineRead::Line,
                (true, true) => LineRead::TooLong,
            });
        }
        any = true;
        let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (available.split_at(at).0, true),
            None => (available, false),
        };
        let len = chunk.len();
        if !too_long {
            if buf.len().saturating_add(len) > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        input.consume(if end { len.saturating_add(1) } else { len });
        if end {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputLine {
    #[serde(default)]
    client_api_key: Option<ApiKey>,
    #[serde(default)]
    client_session_token: Option<ApiKey>,
    #[serde(default)]
    generate_response: Option<GenerateField>,
}

/// `generateResponse` as the object Portal returned or as a string holding it.
struct GenerateField(GenerateResponse);

impl<'de> Deserialize<'de> for GenerateField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GenerateResponse;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the /v1/generate response, as an object or a JSON string")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                GenerateResponse::deserialize(de::value::MapAccessDeserializer::new(map))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                serde_json::from_str(text).map_err(|e| E::custom(portal_api::JsonError::from(e)))
            }
        }
        deserializer.deserialize_any(V).map(Self)
    }
}

/// Parses one line. Errors name the position, never the input (which holds secrets).
fn parse_line(line: &[u8]) -> Parsed {
    let parsed: InputLine = match serde_json::from_slice(line) {
        Ok(parsed) => parsed,
        Err(e) => {
            let e = portal_api::JsonError::from(e);
            return Parsed::Invalid(format!(
                "not a bulk input line: invalid JSON ({}) at column {}",
                e.category(),
                e.column()
            ));
        }
    };
    let credential = match (parsed.client_api_key, parsed.client_session_token) {
        (Some(key), None) => Credential::ApiKey(key),
        (None, Some(token)) => Credential::SessionToken(token),
        (Some(_), Some(_)) => {
            return Parsed::Invalid(
                "the line has both clientApiKey and clientSessionToken; give one".into(),
            );
        }
        (None, None) => {
            return Parsed::Invalid(
                "the line has neither clientApiKey nor clientSessionToken".into(),
            );
        }
    };
    match parsed.generate_response {
        Some(GenerateField(generate)) => Parsed::Client {
            credential,
            generate,
        },
        None => Parsed::Invalid("the line has no generateResponse".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(u64, Result<(), String>)> {
        let (tx, mut rx) = mpsc::channel(1024);
        read_input(input, None, &tx);
        drop(tx);
        let mut out = Vec::new();
        while let Ok(message) = rx.try_recv() {
            if let FromReader::Item(item) = message {
                let parsed = match item.parsed {
                    Parsed::Client { .. } => Ok(()),
                    Parsed::Invalid(reason) => Err(reason),
                };
                out.push((item.line, parsed));
            }
        }
        out
    }

    #[test]
    fn line_format() {
        let input = concat!(
            r#"{"clientApiKey":"k1","generateResponse":{"SECP256K1":{"share":"s","id":"a"}}}"#,
            "\n\n  \r\n",
            r#"{"clientSessionToken":"t","generateResponse":"{\"ed25519\":{\"share\":\"s\",\"id\":\"b\"}}","extra":1}"#,
            "\r\n",
            r#"{"clientApiKey":"k","clientSessionToken":"t","generateResponse":{}}"#,
            "\n",
            r#"{"clientApiKey":"k"}"#,
            "\n",
            r#"{"clientApiKey":"secret-key-1", "generateResponse": 5}"#,
            "\n",
            r#"{"generateResponse":{}}"#,
        );
        let got = lines(input.as_bytes());
        let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 4, 5, 6, 7, 8]);
        assert!(got[0].1.is_ok() && got[1].1.is_ok());
        assert!(got[2].1.as_ref().unwrap_err().contains("both"));
        assert!(
            got[3]
                .1
                .as_ref()
                .unwrap_err()
                .contains("no generateResponse")
        );
        let bad_type = got[4].1.as_ref().unwrap_err();
        assert!(bad_type.contains("invalid JSON (data)"), "{bad_type}");
        assert!(!bad_type.contains("secret-key-1"));
        assert!(got[5].1.as_ref().unwrap_err().contains("neither"));
    }

    #[test]
    fn too_long_lines_fail_alone_and_shards_partition() {
        let mut input = vec![b'x'; MAX_LINE_BYTES.saturating_add(10)];
        input.extend_from_slice(b"\n{}\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert!(got[0].1.as_ref().unwrap_err().contains("longer than"));
        assert_eq!(got[1].0, 2);

        let mut seen = Vec::new();
        for i in 0..3 {
            let shard = Shard::new(i, 3).unwrap();
            seen.extend((0..10u64).filter(|n| shard.selects(*n)));
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!("2/3".parse::<Shard>().unwrap().to_string(), "2/3");
        for bad in ["3/3", "1/0", "x", "1/", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn job_completion_indexes_name_a_shard_or_a_typed_error() {
        use JobShardError::*;
        let job = Shard::from_job_index;
        assert_eq!(job(Some("0"), Some(1)), Ok(Some(Shard::new(0, 1).unwrap())));
        assert_eq!(
            job(Some(" 3\n"), Some(4)),
            Ok(Some(Shard::new(3, 4).unwrap()))
        );
        assert_eq!(job(None, None), Ok(None));
        assert_eq!(job(Some(""), None), Ok(None), "an empty variable is unset");
        assert_eq!(job(Some("3"), None), Err(CountMissing { index: 3 }));
        assert_eq!(job(None, Some(4)), Err(IndexMissing { count: 4 }));
        assert_eq!(job(Some(" "), Some(4)), Err(IndexMissing { count: 4 }));
        assert_eq!(
            job(Some("4"), Some(4)),
            Err(IndexOutOfRange { index: 4, count: 4 })
        );
        assert_eq!(job(Some("0"), Some(0)), Err(CountZero));
        for bad in ["-1", "1/4", "x", "4294967296"] {
            assert_eq!(
                job(Some(bad), Some(4)),
                Err(IndexNotANumber { value: bad.into() })
            );
        }
        let text = CountMissing { index: 3 }.to_string();
        assert!(text.starts_with("JOB_COMPLETION_INDEX=3 "), "{text}");
        let text = IndexOutOfRange { index: 4, count: 4 }.to_string();
        assert!(text.contains("not below the shard count 4"), "{text}");
    }

    #[test]
    fn the_reader_counts_the_lines_left_to_other_shards() {
        let (tx, mut rx) = mpsc::channel(64);
        // Indexes 0 a, 1 b, 2 blank, 3 c, 4 d, 5 e: shard 1/2 takes b, c and e.
        read_input(
            &b"a\nb\n\nc\nd\ne"[..],
            Some(Shard::new(1, 2).unwrap()),
            &tx,
        );
        drop(tx);
        let (mut taken, mut end) = (Vec::new(), None);
        while let Ok(message) = rx.try_recv() {
            match message {
                FromReader::Item(item) => taken.push(item.line),
                FromReader::End { lines, skipped } => end = Some((lines, skipped)),
                FromReader::Failed(e) => panic!("{e}"),
            }
        }
        assert_eq!(taken, [2, 4, 6]);
        assert_eq!(end, Some((5, 2)));
    }
}
