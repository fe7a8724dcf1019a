//! `portal-backup`: back up, verify, recover, eject and rotate the MPC key shares of
//! [Portal](https://portalhq.io) clients, over the `backup-flow` crate.
//!
//! ```text
//! portal-backup [global options] <command>
//!
//!   keygen --out <file>                       a new local key-encryption key file (0600)
//!   backup --generate-response <file|->       back up one client (resumable)
//!   recover [--out <file>] [--backup-method <m>]  new signing shares from the newest backup
//!   verify                                    the restore drill (exit 0 only when all open)
//!   eject --client-id <id> --out <file> [--backup-method <m>] [--mark-ejected]
//!                                             as the custodian through Portal: each wallet's
//!                                             private key, rebuilt and verified (file 0600)
//!   eject --offline --client-id <id> --out <file> [--webhook-store <uri>] [--webhook-kms <uri>]
//!                                             Self-Managed Backups, without Portal
//!   eject combine --curve <c> --client-share <file> --custodian-share <file> --out <file>
//!                                             one wallet's key from two share files
//!   rotate --to-kms <uri>… [--client-id <id>]…  rewrap every stored ciphertext
//!   migrate --from <uri> --to <uri> [--client-id <id>]…  copy every client ciphertext
//!                                             between two stores of your own (resumable)
//!   migrate --from portal --to <uri> | --from <uri> --to portal --credentials <file.jsonl|->
//!                                             the same to or from Portal-Managed Backups
//!   reconcile --credentials <file.jsonl|-> [--webhook-store <uri>] [--prune-orphans [--plan <file>]]
//!                                             finish what needs no new backup, report the rest
//!   status [--deep] [--credentials <file.jsonl|->] [--webhook-store <uri>] [--concurrency N]
//!          [--page-size N] [--rate-limit <per minute>|off] [--output <file>] [--html <file>]
//!                                             as the custodian: every client's backups, a
//!                                             verdict each (exit 4: one needs attention)
//!   bulk backup --input <file.jsonl|->        many clients; [--concurrency N]
//!               [--rate-limit <per minute>|off] [--shard i/n | --shard-count N]
//!               [--output <file>] [--summary <file>]
//!   demo                                      the whole job against a simulated Portal
//!                                             (builds with the `demo` feature only)
//!   serve-webhook --listen <addr:port> [--secret-file <file>] [--tls-cert <pem> --tls-key <pem>
//!                 | --behind-tls-proxy] [--allow <portal|loopback|cidr>]… [--trust-forwarded-for]
//!                 [--max-connections-per-peer N] [--metrics-listen <addr:port>] [--base-path <path>]
//!                                             the Self-Managed Backups webhook server
//!
//! global options (each also from the environment variable):
//!   --api-key (PORTAL_CLIENT_API_KEY)   --custodian-api-key (PORTAL_CUSTODIAN_API_KEY)
//!   --portal-api-url (PORTAL_API_URL)   --portal-mpc-url (PORTAL_MPC_URL)
//!   --kms <uri>… (PORTAL_BACKUP_KMS, comma-separated)   --store <uri> (PORTAL_BACKUP_STORE)
//!   --state-dir <dir> (PORTAL_BACKUP_STATE_DIR)
//!
//! bulk backup in a Kubernetes Indexed Job: the shard index from JOB_COMPLETION_INDEX, the
//! count from --shard-count (PORTAL_BACKUP_SHARD_COUNT); --summary <file> gets one JSON line
//! with the exit code and the counts
//! ```
//!
//! Results go to stdout as JSON; logs (`RUST_LOG`), progress and errors to stderr. An error
//! prints its whole cause chain, with Portal's HTTP status and error id when Portal refused,
//! and never a key, a token or a share. Exit codes: 0 success, 1 failure, 2 usage error,
//! 3 a failure that may pass (run the same command again to resume), 4 the check found
//! backups that are not whole (`verify`: a share missing or not opening as its identity;
//! `status`: a client needs attention; `reconcile`: a client is left open). `portal-backup
//! --help` has the KMS and store URI grammars.

mod args;
mod combine;
mod commands;
// `portal-sim` is linked only with the `demo` feature; without it the command is a stub.
#[cfg_attr(not(feature = "demo"), path = "demo_absent.rs")]
mod demo;
mod failure;
mod item_lines;
mod kms;
mod output;
mod progress;
mod store;
mod store_wide;
mod webhook;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Threads for blocking work (the file store's and the journal's I/O) at most. Under steady
/// load Tokio's pool keeps adding threads up to its default of 512 (about 450 after a
/// store-wide verify of 10,000 clients on the file store, each with its stack and allocator
/// arena resident), so memory grew with the length of a run; past 64 the threads only
/// contend for the same disk and cores.
const MAX_BLOCKING_THREADS: usize = 64;

fn main() -> ExitCode {
    #[cfg(feature = "demo")]
    let cli: args::Cli = clap::Parser::parse();
    #[cfg(not(feature = "demo"))]
    let cli = demo::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprint!(
                "{}",
                failure::Failure::caused_by("cannot start the async runtime", e).render()
            );
            return ExitCode::FAILURE;
        }
    };
    let settings = commands::Settings::new(cli.global);
    match runtime.block_on(commands::run(settings, cli.command)) {
        Ok(code) => code,
        Err(failure) => {
            eprint!("{}", failure.render());
            failure.exit_code()
        }
    }
}
