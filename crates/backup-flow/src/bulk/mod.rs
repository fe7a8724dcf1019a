//! Bulk backup: many clients from a JSON Lines input, streamed, with bounded concurrency, one
//! JSON result line per client, resumable, and shardable across machines.
//!
//! # Input: one client a line
//!
//! The [client lines](crate::client_lines) grammar, each line with its `generateResponse`:
//!
//! ```text
//! {"clientApiKey": "<Client API Key>", "generateResponse": {"SECP256K1": {"share": "…", "id": "…"}, "ED25519": {"share": "…", "id": "…"}}}
//! {"clientSessionToken": "<Client Session Token>", "generateResponse": "<the same object as a JSON string>"}
//! ```
//!
//! A line that cannot be used (not JSON, a field missing, too long) fails on its own: it gets
//! a `failed` result and the run goes on.
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
//!
//! [`Shard`]: crate::client_lines::Shard
//! [`Shard::from_job_index`]: crate::client_lines::Shard::from_job_index
//! [`JOB_COMPLETION_INDEX`]: crate::client_lines::JOB_COMPLETION_INDEX
//! * **Rate limit:** every line's client role is made over the one
//!   [`Portal`](portal_api::Portal) transport passed to [`Flow::bulk_backup`](crate::Flow::bulk_backup) with
//!   [`client_with_api_key`](portal_api::Portal::client_with_api_key) or
//!   [`client_with_session_token`](portal_api::Portal::client_with_session_token), and so
//!   shares its rate limiters: the limits set on it
//!   ([`PortalBuilder::with_api_rate_limit`](portal_api::PortalBuilder::with_api_rate_limit),
//!   [`with_mpc_rate_limit`](portal_api::PortalBuilder::with_mpc_rate_limit)) hold for the
//!   whole run.
//! * **Memory stays flat:** one reader thread reads a line at a time into a fixed buffer and
//!   hands it over a channel of `concurrency` slots; at most `concurrency` clients are in
//!   flight ([`LineRun`](crate::client_lines::LineRun)). Nothing grows with the input.
//! * Two lines with the same generate response (the same backup) never run at the same
//!   time; the second waits for the first and then finds it confirmed.
//!
//! Do not run two processes over the same lines at the same time: the journal orders the
//! steps of one backup within one process.

mod options;
mod report;
mod run;

pub use options::{BulkEvent, BulkOptions, DEFAULT_CONCURRENCY};
pub use report::{BulkReport, LineResult, LineStatus};
