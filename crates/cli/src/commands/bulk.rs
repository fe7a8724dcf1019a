//! `bulk backup`: many clients from JSON Lines.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use backup_flow::bulk::{BulkEvent, BulkOptions, BulkReport, LineStatus};
use backup_flow::client_lines::{JOB_COMPLETION_INDEX, Shard};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::args::BulkBackup;
use crate::failure::{EXIT_FAILED, EXIT_RETRYABLE, EXIT_USAGE, Failure};
use crate::progress;

use super::Settings;
use super::backup::with_already;
use super::lines::{open_input, open_output};

pub(super) async fn bulk_backup(
    settings: &Settings,
    args: BulkBackup,
) -> Result<ExitCode, Failure> {
    let (shard, report, failure) = match bulk_shard(&args) {
        Err(failure) => (None, None, Some(failure)),
        Ok(shard) => match bulk_run(settings, &args, shard.map(|(s, _)| s)).await {
            Err(failure) => (shard, None, Some(failure)),
            Ok(report) => {
                eprintln!("{}", summary(&report, shard.map(|(s, _)| s)));
                let failure = bulk_failure(&report);
                (shard, Some(report), failure)
            }
        },
    };
    let end = BulkSummary::new(shard, report.as_ref(), failure.as_ref());
    let written = write_bulk_summary(&args, &end);
    match (failure, written) {
        (Some(failure), written) => {
            if let Err(e) = written {
                eprint!("{}", e.render());
            }
            Err(failure)
        }
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(ExitCode::SUCCESS),
    }
}

/// Where a run's shard came from, for its summary.
type ShardSource = &'static str;

/// `--shard`, else the Indexed Job's `JOB_COMPLETION_INDEX` with `--shard-count`; a usage
/// error (exit 2) when they cannot name a shard.
fn bulk_shard(args: &BulkBackup) -> Result<Option<(Shard, ShardSource)>, Failure> {
    if let Some(shard) = args.shard {
        return match args.shard_count {
            Some(count) if count != shard.count() => Err(Failure::new(format!(
                "--shard {shard} and a shard count of {count} (--shard-count or PORTAL_BACKUP_SHARD_COUNT) disagree"
            ))
            .hint("give one of them, or the same count in both")
            .with_code(EXIT_USAGE)),
            _ => Ok(Some((shard, "--shard"))),
        };
    }
    let index = std::env::var_os(JOB_COMPLETION_INDEX).map(|v| v.to_string_lossy().into_owned());
    Shard::from_job_index(index.as_deref(), args.shard_count)
        .map(|shard| shard.map(|s| (s, JOB_COMPLETION_INDEX)))
        .map_err(|e| {
            Failure::caused_by("cannot tell which shard of the input to take", e)
                .hint(format!(
                    "in an Indexed Job, set PORTAL_BACKUP_SHARD_COUNT (or pass --shard-count) to the Job's completions; elsewhere pass --shard i/n, or unset {JOB_COMPLETION_INDEX} and PORTAL_BACKUP_SHARD_COUNT to take every line"
                ))
                .with_code(EXIT_USAGE)
        })
}

async fn bulk_run(
    settings: &Settings,
    args: &BulkBackup,
    shard: Option<Shard>,
) -> Result<BulkReport, Failure> {
    let portal = settings.transport(args.rate_limit)?;
    let flow = with_already(settings.flow().await?, &args.already).await?;
    let stdin = args.input == Path::new("-");
    let input = open_input(&args.input)?;
    let total = if stdin || !std::io::stderr().is_terminal() {
        None
    } else {
        count_lines(&args.input, shard).ok()
    };
    let bar = progress::Bar::new(total);
    let mut failed = 0u64;
    let hook_bar = bar.clone();
    let mut options = BulkOptions::new()
        .with_concurrency(usize::from(args.concurrency))
        .with_progress(move |event| {
            if let BulkEvent::Finished(result) = event {
                if result.status == LineStatus::Failed {
                    failed = failed.saturating_add(1);
                }
                hook_bar.finished(failed);
            }
        });
    if let Some(shard) = shard {
        options = options.with_shard(shard);
    }
    let output = open_output(args.output.as_deref())?;
    let report = flow.bulk_backup(&portal, input, output, options).await;
    bar.done();
    report.map_err(|e| Failure::caused_by("the bulk backup stopped", e))
}

/// The failure a finished run's failed lines make: exit 3 when every one of them may pass,
/// 1 otherwise; `None` when every line is confirmed.
fn bulk_failure(report: &BulkReport) -> Option<Failure> {
    if report.is_success() {
        return None;
    }
    let failure = Failure::new(format!(
        "{} of {} clients failed; their result lines say why",
        report.failed, report.selected
    ));
    Some(if report.failed == report.retryable_failures {
        failure.with_code(EXIT_RETRYABLE).hint(
            "every failure may pass: run the same command again to resume (confirmed clients are skipped)",
        )
    } else {
        failure.with_code(EXIT_FAILED).hint(
            "fix the lines that failed for good; running the same command again skips the confirmed clients",
        )
    })
}

fn summary(report: &BulkReport, shard: Option<Shard>) -> String {
    let shard = shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
    format!(
        "bulk backup{shard}: {} of {} lines taken; {} confirmed ({} already by an earlier run), {} failed ({} may pass on a re-run)",
        report.selected,
        report.lines,
        report.confirmed,
        report.already_confirmed,
        report.failed,
        report.retryable_failures
    )
}

/// The machine-readable end of a bulk run: one JSON object on one line, with the process's
/// exit code, so a job controller can retry only the shards that may pass.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkSummary {
    command: &'static str,
    /// The process's exit code.
    exit_code: u8,
    /// `succeeded`, `failed` (a line failed for good), `retryable` (every failed line may
    /// pass) or `stopped` (the run did not finish; `error` says why).
    outcome: &'static str,
    shard: Option<ShardSummary>,
    #[serde(flatten)]
    counts: Option<BulkCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShardSummary {
    index: u32,
    count: u32,
    /// `--shard` or `JOB_COMPLETION_INDEX`.
    from: ShardSource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkCounts {
    lines: u64,
    selected: u64,
    skipped_by_shard: u64,
    confirmed: u64,
    backed_up: u64,
    already_confirmed: u64,
    failed: u64,
    retryable_failures: u64,
}

impl BulkSummary {
    fn new(
        shard: Option<(Shard, ShardSource)>,
        report: Option<&BulkReport>,
        failure: Option<&Failure>,
    ) -> Self {
        let exit_code = failure.map_or(0, Failure::code);
        let outcome = match (report, exit_code) {
            (None, _) => "stopped",
            (Some(_), 0) => "succeeded",
            (Some(_), EXIT_RETRYABLE) => "retryable",
            (Some(_), _) => "failed",
        };
        Self {
            command: "bulk backup",
            exit_code,
            outcome,
            shard: shard.map(|(shard, from)| ShardSummary {
                index: shard.index(),
                count: shard.count(),
                from,
            }),
            counts: report.map(|r| BulkCounts {
                lines: r.lines,
                selected: r.selected,
                skipped_by_shard: r.skipped_by_shard,
                confirmed: r.confirmed,
                backed_up: r.backed_up(),
                already_confirmed: r.already_confirmed,
                failed: r.failed,
                retryable_failures: r.retryable_failures,
            }),
            // Failed lines say why in their result lines; a stopped run says it here.
            error: failure.filter(|_| report.is_none()).map(Failure::message),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The summary to `--summary` (replaced), and to stdout when the result lines went to
/// `--output`.
fn write_bulk_summary(args: &BulkBackup, summary: &BulkSummary) -> Result<(), Failure> {
    let mut line = serde_json::to_string(summary)
        .map_err(|e| Failure::caused_by("cannot encode the run's summary", e))?;
    line.push('\n');
    if let Some(path) = &args.summary {
        std::fs::write(path, &line).map_err(|e| {
            Failure::caused_by(format!("cannot write the summary {}", path.display()), e)
        })?;
    }
    if args.output.is_some() {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::caused_by("cannot write to stdout", e))?;
    }
    Ok(())
}

/// The non-blank lines of `path` that `shard` takes, for the progress bar; reads the file
/// once in fixed chunks, keeping no line.
fn count_lines(path: &Path, shard: Option<Shard>) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    let (mut index, mut count, mut blank) = (0u64, 0u64, true);
    let mut take = |index: u64, blank: bool| {
        if !blank && shard.is_none_or(|s| s.selects(index)) {
            count = count.saturating_add(1);
        }
    };
    loop {
        let n = file.read(&mut chunk)?;
        let Some(read) = chunk.get(..n).filter(|r| !r.is_empty()) else {
            break;
        };
        for &b in read {
            if b == b'\n' {
                take(index, blank);
                index = index.saturating_add(1);
                blank = true;
            } else if !b.is_ascii_whitespace() {
                blank = false;
            }
        }
    }
    take(index, blank);
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_per_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "a\n\nb\n  \nc\nd").unwrap();
        assert_eq!(count_lines(&path, None).unwrap(), 4);
        // indexes 0 a, 1 blank, 2 b, 3 blank, 4 c, 5 d
        assert_eq!(count_lines(&path, Some("0/2".parse().unwrap())).unwrap(), 3);
        assert_eq!(count_lines(&path, Some("1/2".parse().unwrap())).unwrap(), 1);
    }
}
