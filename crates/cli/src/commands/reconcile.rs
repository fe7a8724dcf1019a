//! `reconcile`: finish, for every client of a credentials file, what needs no new
//! `/v1/backup`; report the rest; prune orphans only from a dry run's plan.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use backup_flow::client_lines::Shard;
use backup_flow::fleet::{OrphanPruning, ReconcileOptions, ReconcileReport};
use clap::Args;
use serde::Deserialize;

use crate::args::RateLimitArg;
use crate::failure::{EXIT_ATTENTION, EXIT_FAILED, EXIT_RETRYABLE, Failure};

use super::Settings;
use super::lines::{open_input, open_output};

/// `reconcile` options.
#[derive(Args)]
pub(crate) struct ReconcileArgs {
    /// One client a line: {"clientApiKey" or "clientSessionToken": "…"} (a generateResponse
    /// is ignored, so a bulk backup input works too); `-` for stdin
    #[arg(long, value_name = "FILE.jsonl|-")]
    pub(crate) credentials: PathBuf,
    /// Self-Managed Backups: the custodian webhook's store. A stored, unconfirmed backup is
    /// confirmed only when the custodian share of its pair is there; without this option
    /// such backups are left unconfirmed and reported
    #[arg(long, value_name = "URI")]
    pub(crate) webhook_store: Option<String>,
    /// Clients reconciled at once
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// Requests a minute to each Portal host, shared by the whole run; `off` for none
    /// [default: Portal's published limits]
    #[arg(long, value_name = "PER_MINUTE")]
    pub(crate) rate_limit: Option<RateLimitArg>,
    /// Take only the lines whose index (line number - 1) is i modulo n
    #[arg(long, value_name = "i/n")]
    pub(crate) shard: Option<Shard>,
    /// Orphan ciphertexts (stored for no completed pair) older than the newest completed pair
    /// of their curve: without --plan, a dry run that lists them (`wouldPrune`) and deletes
    /// nothing; with --plan, delete those the plan lists
    #[arg(long)]
    pub(crate) prune_orphans: bool,
    /// With --prune-orphans: the result lines of an earlier dry run. Only orphans it listed
    /// in `wouldPrune`, and that are still orphans older than the newest completed pair, are
    /// deleted
    #[arg(long, value_name = "FILE", requires = "prune_orphans")]
    pub(crate) plan: Option<PathBuf>,
    /// Write the result lines to this file (replaced) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

pub(super) async fn reconcile(
    settings: &Settings,
    args: ReconcileArgs,
) -> Result<ExitCode, Failure> {
    let pruning = match (args.prune_orphans, &args.plan) {
        (false, _) => OrphanPruning::Keep,
        (true, None) => OrphanPruning::DryRun,
        (true, Some(plan)) => OrphanPruning::Planned(Arc::new(read_plan(plan)?)),
    };
    let dry_run = matches!(pruning, OrphanPruning::DryRun);
    let portal = settings.transport(args.rate_limit)?;
    let mut flow = settings.flow().await?;
    if let Some(uri) = &args.webhook_store {
        let store = crate::store::open_own(
            &crate::store::parse(uri)?,
            "--webhook-store (Portal keeps no custodian shares in Self-Managed mode)",
        )
        .await?;
        flow = flow.with_custodian_store(store);
    }
    let input = open_input(&args.credentials)?;
    let output = open_output(args.output.as_deref())?;
    let options = ReconcileOptions::new()
        .with_concurrency(usize::from(args.concurrency))
        .with_shard(args.shard)
        .with_pruning(pruning);
    let report = flow
        .reconcile_lines(&portal, input, output, options)
        .await
        .map_err(|e| Failure::caused_by("reconcile stopped", e))?;
    eprintln!("{}", summary(&report));
    if dry_run && report.would_prune > 0 {
        eprintln!(
            "dry run: {} orphan ciphertexts would be deleted; to delete them, run again with --prune-orphans --plan <these result lines>",
            report.would_prune
        );
    }
    outcome(&report)
}

/// The keys an earlier dry run listed in `wouldPrune`. Lines without it are skipped; a line
/// that is not JSON fails the run, so that a wrong file deletes nothing.
fn read_plan(path: &Path) -> Result<BTreeSet<String>, Failure> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PlanLine {
        #[serde(default)]
        would_prune: Vec<String>,
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::caused_by(format!("cannot open the plan {}", path.display()), e))?;
    let mut keys = BTreeSet::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| {
            Failure::caused_by(format!("cannot read the plan {}", path.display()), e)
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: PlanLine = serde_json::from_str(&line).map_err(|e| {
            Failure::new(format!(
                "the plan {} is not the output of a reconcile dry run: line {} is not a result line ({})",
                path.display(),
                index.saturating_add(1),
                portal_api::JsonError::from(e).category()
            ))
        })?;
        keys.extend(parsed.would_prune);
    }
    Ok(keys)
}

fn summary(report: &ReconcileReport) -> String {
    format!(
        "reconcile: {} clients; {} whole, {} open, {} failed ({} may pass on a re-run); {} pairs confirmed, {} journaled backups resumed, {} orphans deleted, {} orphans kept",
        report.selected,
        report.whole,
        report.open,
        report.failed,
        report.retryable_failures,
        report.confirmed_pairs,
        report.resumed_backups,
        report.pruned,
        report.orphans
    )
}

/// Exit 0 when every client is whole; 1 (3 when every failure may pass) when a client
/// failed; 4 when a client is left open.
fn outcome(report: &ReconcileReport) -> Result<ExitCode, Failure> {
    if report.failed > 0 {
        let failure = Failure::new(format!(
            "{} of {} clients could not be reconciled; their result lines say why",
            report.failed, report.selected
        ));
        return Err(if report.failed == report.retryable_failures {
            failure
                .with_code(EXIT_RETRYABLE)
                .hint("every failure may pass: run the same command again")
        } else {
            failure.with_code(EXIT_FAILED)
        });
    }
    if report.open > 0 {
        return Err(Failure::new(format!(
            "{} of {} clients need attention: what is open cannot be finished without a new backup or a person (see `open` in their result lines)",
            report.open, report.selected
        ))
        .hint("back up the clients left not-backed-up or not-stored again (bulk backup --force for the latter)")
        .with_code(EXIT_ATTENTION));
    }
    Ok(ExitCode::SUCCESS)
}
