//! [`Shard`]: which lines of an input a run takes, so that a job array can split one input.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// One shard of an input: the lines whose index (line number − 1) is `index` modulo `count`.
///
/// Written `i/n` (`0/4`, `1/4`, `2/4`, `3/4` split an input in four), with `i < n`.
///
/// ```
/// use backup_flow::client_lines::Shard;
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
    /// use backup_flow::client_lines::{JobShardError, Shard};
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
