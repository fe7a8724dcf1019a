//! [`BulkOptions`]: concurrency, shard and progress hook of a bulk run.

use std::fmt;

use super::LineResult;
use crate::client_lines::Shard;

/// How many clients are backed up at once unless [`BulkOptions::with_concurrency`] says
/// otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

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
    pub(super) concurrency: usize,
    pub(super) shard: Option<Shard>,
    pub(super) progress: Option<ProgressHook>,
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
