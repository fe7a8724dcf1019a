//! [`LineRun`]: the scheduler that runs one task per input line with bounded concurrency.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::io::BufRead;
use std::pin::pin;

use futures_util::future::{Either, select};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::reader::{FromReader, read_input};
use super::{ClientLine, NumberedLine, Shard};

type ExclusiveKey = Box<dyn Fn(&ClientLine) -> Option<String> + Send + Sync>;

/// How a run over client lines goes: how many lines at once, which shard, and which lines
/// must not run at the same time.
///
/// ```
/// use backup_flow::client_lines::{LineEvent, LineRun};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let input = &b"{\"clientApiKey\":\"k1\"}\nnot json\n"[..];
/// let mut usable = Vec::new();
/// let read = LineRun::new(4)
///     .run(
///         input,
///         |line| async move { (line.line, line.parsed.is_ok()) },
///         |event| {
///             if let LineEvent::Finished(done) = event {
///                 usable.push(done);
///             }
///             Ok(())
///         },
///     )
///     .await?;
/// usable.sort_unstable();
/// assert_eq!(usable, [(1, true), (2, false)]);
/// assert_eq!(read.selected, 2);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[must_use]
pub struct LineRun {
    concurrency: usize,
    shard: Option<Shard>,
    exclusive: Option<ExclusiveKey>,
}

impl fmt::Debug for LineRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineRun")
            .field("concurrency", &self.concurrency)
            .field("shard", &self.shard)
            .field("exclusive", &self.exclusive.is_some())
            .finish()
    }
}

/// What a run reports as it goes, to the `on_event` callback of [`LineRun::run`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LineEvent<T> {
    /// A line of this shard was handed to a task.
    Started {
        /// Its line number.
        line: u64,
    },
    /// A line's task finished with this result.
    Finished(T),
}

/// How much of the input a run read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinesRead {
    /// Non-blank lines read, of every shard.
    pub lines: u64,
    /// Lines of this shard, each of which was run.
    pub selected: u64,
    /// Lines of other shards, left to them.
    pub skipped_by_shard: u64,
}

impl LineRun {
    /// `concurrency` lines at once (at least 1), every line.
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
            shard: None,
            exclusive: None,
        }
    }

    /// Takes only the lines of `shard` (every line for `None`).
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Never runs two lines with the same `key` at once: the second waits for the first (for
    /// example two lines naming one backup). Lines with no key run freely.
    pub fn exclusive_by(
        mut self,
        key: impl Fn(&ClientLine) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.exclusive = Some(Box::new(key));
        self
    }

    /// Reads `input` on a thread of its own and runs `work` on each line of the shard, at most
    /// `concurrency` at once; `on_event` hears of each start and each result, in the order
    /// tasks finish, on the calling task.
    ///
    /// # Errors
    /// Reading `input`, or an error `on_event` returns (which stops the run; tasks in flight
    /// are dropped). On an input error the lines already started are finished first.
    pub async fn run<R, T, F, Fut>(
        self,
        input: R,
        mut work: F,
        mut on_event: impl FnMut(LineEvent<T>) -> std::io::Result<()> + Send,
    ) -> std::io::Result<LinesRead>
    where
        R: BufRead + Send + 'static,
        F: FnMut(NumberedLine) -> Fut + Send,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let concurrency = self.concurrency;
        let shard = self.shard;
        let key_of = |line: &NumberedLine| {
            let parsed = line.parsed.as_ref().ok()?;
            self.exclusive.as_ref().and_then(|key| key(parsed))
        };
        let (tx, mut rx) = mpsc::channel(concurrency);
        std::thread::Builder::new()
            .name("client-lines".into())
            .spawn(move || read_input(input, shard, &tx))?;

        let mut tasks: JoinSet<(Option<String>, T)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut parked: Option<(Option<String>, NumberedLine)> = None;
        let mut input_open = true;
        let mut input_error = None;
        let mut read = LinesRead::default();
        loop {
            // A line held back because a line with its key was in flight goes first.
            if let Some((key, line)) = parked.take() {
                if tasks.len() < concurrency && !busy(key.as_deref(), &in_flight) {
                    start(
                        &mut work,
                        &mut on_event,
                        key,
                        line,
                        &mut tasks,
                        &mut in_flight,
                    )?;
                    continue;
                }
                parked = Some((key, line));
            }
            let reading = input_open && parked.is_none() && tasks.len() < concurrency;
            let next = if reading && tasks.is_empty() {
                Next::Input(rx.recv().await)
            } else if reading {
                match select(pin!(rx.recv()), pin!(tasks.join_next())).await {
                    Either::Left((message, _)) => Next::Input(message),
                    Either::Right((joined, _)) => Next::Done(joined),
                }
            } else {
                Next::Done(tasks.join_next().await)
            };
            match next {
                Next::Input(Some(FromReader::Line(line))) => {
                    read.selected = read.selected.saturating_add(1);
                    let key = key_of(&line);
                    if busy(key.as_deref(), &in_flight) {
                        parked = Some((key, line));
                    } else {
                        start(
                            &mut work,
                            &mut on_event,
                            key,
                            line,
                            &mut tasks,
                            &mut in_flight,
                        )?;
                    }
                }
                Next::Input(Some(FromReader::End { lines, skipped })) => {
                    read.lines = lines;
                    read.skipped_by_shard = skipped;
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
                        Err(_) => return Err(std::io::Error::other("a line's task was cancelled")),
                    };
                    if let Some(key) = key {
                        in_flight.remove(&key);
                    }
                    on_event(LineEvent::Finished(result))?;
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
            None => Ok(read),
        }
    }
}

/// Hands one line to a task.
fn start<T, F, Fut>(
    work: &mut F,
    on_event: &mut impl FnMut(LineEvent<T>) -> std::io::Result<()>,
    key: Option<String>,
    line: NumberedLine,
    tasks: &mut JoinSet<(Option<String>, T)>,
    in_flight: &mut HashSet<String>,
) -> std::io::Result<()>
where
    F: FnMut(NumberedLine) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    on_event(LineEvent::Started { line: line.line })?;
    if let Some(key) = &key {
        in_flight.insert(key.clone());
    }
    let task = work(line);
    tasks.spawn(async move { (key, task.await) });
    Ok(())
}

fn busy(key: Option<&str>, in_flight: &HashSet<String>) -> bool {
    key.is_some_and(|key| in_flight.contains(key))
}

enum Next<T> {
    Input(Option<FromReader>),
    Done(Option<Result<(Option<String>, T), tokio::task::JoinError>>),
}
