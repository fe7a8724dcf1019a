//! `migrate --from <store> --to <store>`: every client ciphertext copied create-only between
//! two stores of one's own, drilled on the target before it counts as moved. One JSON line per
//! object as its client finishes, one per client or object that could not be moved (the run
//! goes on), and a summary line at the end; only the counts are kept.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use backup_flow::migrate::{DEFAULT_MIGRATE_CONCURRENCY, MigratedClient, Migration, Moved};
use clap::Args;
use futures_util::StreamExt as _;
use serde::Serialize;
use storage::BackupStore;

use crate::failure::{EXIT_ATTENTION, EXIT_FAILED, EXIT_RETRYABLE, EXIT_USAGE, Failure};
use crate::store::StoreUri;

/// `migrate` options.
#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// The store to copy from (only read); a store of your own, see Store URIs below
    #[arg(long, value_name = "URI")]
    pub(crate) from: String,
    /// The store to copy to (objects are only created, never replaced); a store of your own
    #[arg(long, value_name = "URI")]
    pub(crate) to: String,
    /// Only these clients (repeatable) [default: every client --from lists]
    #[arg(long = "client-id", value_name = "ID")]
    pub(crate) client_id: Vec<String>,
    /// Clients migrated at once (each client's objects in turn, so that the shares of a
    /// backup cost one KMS call)
    #[arg(long, default_value_t = default_concurrency(), value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// At most this many KMS calls a second, shared by every key of --kms (KMS quotas are
    /// per account and region) [default: no limit]
    #[arg(long, value_name = "PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) kms_rate_limit: Option<u32>,
}

fn default_concurrency() -> u16 {
    u16::try_from(DEFAULT_MIGRATE_CONCURRENCY).unwrap_or(16)
}

/// Runs `migrate` with the keys of `--kms`.
pub(crate) async fn run(kms: &[String], args: MigrateArgs) -> Result<ExitCode, Failure> {
    let (from_uri, to_uri) = (
        crate::store::parse(&args.from)?,
        crate::store::parse(&args.to)?,
    );
    if from_uri == to_uri {
        return Err(
            Failure::new(format!("--from and --to name the same store ({from_uri})"))
                .with_code(EXIT_USAGE),
        );
    }
    const OWN: &str = "migrate (Portal-managed ciphertexts are read and written with each client's own credentials, which migrate does not take yet)";
    let from = crate::store::open_own(&from_uri, &format!("--from of {OWN}")).await?;
    let to = crate::store::open_own(&to_uri, &format!("--to of {OWN}")).await?;
    let mut keyring = crate::kms::keyring(kms, "--kms").await?;
    if let Some(calls) = args.kms_rate_limit {
        keyring = backup_flow::KmsRateLimit::per_second(calls).keyring(&keyring);
    }
    let migration = Migration::new(keyring, Arc::clone(&from), to)
        .map_err(|e| Failure::flow("cannot migrate", e))?;
    let concurrency = usize::from(args.concurrency);
    let clients = clients(from.as_ref(), args.client_id);

    let bar = crate::progress::Bar::new(None);
    let mut tally = Tally::default();
    let mut done = std::pin::pin!(migration.run(clients, concurrency));
    while let Some(client) = done.next().await {
        tally.print_client(client)?;
        bar.finished(u64::try_from(tally.not_moved()).unwrap_or(u64::MAX));
    }
    bar.done();
    tally.print_summary(concurrency)?;
    tally.outcome(&from_uri, &to_uri)
}

/// The clients to migrate: those given, or every client of the source as its listing
/// streams in (work starts with the first; only the clients in flight are held).
fn clients(from: &dyn BackupStore, given: Vec<String>) -> storage::ClientStream<'_> {
    if given.is_empty() {
        from.stream_clients()
    } else {
        futures_util::stream::iter(given.into_iter().map(Ok)).boxed()
    }
}

/// One output line.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Line<'a> {
    /// What became of an object.
    #[serde(rename_all = "camelCase")]
    Object {
        client_id: &'a str,
        key: &'a str,
        #[serde(flatten)]
        moved: &'a Moved,
    },
    /// A client could not be listed, or one of its objects could not be moved.
    #[serde(rename_all = "camelCase")]
    Error {
        client_id: &'a str,
        key: &'a str,
        error: String,
        retryable: bool,
    },
    /// The end of the run.
    #[serde(rename_all = "camelCase")]
    Summary {
        clients: usize,
        moved: usize,
        already_moved: usize,
        conflicts: usize,
        bad_source: usize,
        skipped: usize,
        errors: usize,
        concurrency: usize,
    },
}

/// What the run found so far.
#[derive(Default)]
struct Tally {
    clients: usize,
    moved: usize,
    already_moved: usize,
    conflicts: usize,
    bad_source: usize,
    skipped: usize,
    errors: usize,
    retryable_errors: usize,
}

impl Tally {
    /// Prints the lines of one client and counts them.
    fn print_client(&mut self, client: backup_flow::Result<MigratedClient>) -> Result<(), Failure> {
        let client = match client {
            Ok(client) => client,
            Err(e) => return self.print_error("", "", &e),
        };
        self.clients = self.clients.saturating_add(1);
        let id = client.client_id.as_str();
        let objects = match &client.objects {
            Ok(objects) => objects,
            Err(e) => return self.print_error(id, id, e),
        };
        for object in objects {
            match &object.result {
                Ok(moved) => {
                    let count = match moved {
                        Moved::Moved => &mut self.moved,
                        Moved::AlreadyMoved => &mut self.already_moved,
                        Moved::Conflict => &mut self.conflicts,
                        Moved::BadSource { .. } => &mut self.bad_source,
                        _ => &mut self.skipped,
                    };
                    *count = count.saturating_add(1);
                    print_line(&Line::Object {
                        client_id: id,
                        key: &object.key,
                        moved,
                    })?;
                }
                Err(e) => self.print_error(id, &object.key, e)?,
            }
        }
        Ok(())
    }

    fn print_error(
        &mut self,
        client_id: &str,
        key: &str,
        e: &backup_flow::Error,
    ) -> Result<(), Failure> {
        self.errors = self.errors.saturating_add(1);
        let retryable = e.is_retryable();
        if retryable {
            self.retryable_errors = self.retryable_errors.saturating_add(1);
        }
        print_line(&Line::Error {
            client_id,
            key,
            error: crate::failure::one_line(e),
            retryable,
        })
    }

    /// Objects (and clients) not on the target so far, for the progress bar.
    fn not_moved(&self) -> usize {
        self.conflicts
            .saturating_add(self.bad_source)
            .saturating_add(self.errors)
    }

    fn print_summary(&self, concurrency: usize) -> Result<(), Failure> {
        print_line(&Line::Summary {
            clients: self.clients,
            moved: self.moved,
            already_moved: self.already_moved,
            conflicts: self.conflicts,
            bad_source: self.bad_source,
            skipped: self.skipped,
            errors: self.errors,
            concurrency,
        })
    }

    /// The exit: 4 when a source object does not open as its share, else 1 for a conflict
    /// or an error that will not pass by itself, else 3 when every error may pass, else 0
    /// (and 1 when the source held no client ciphertext at all: most likely a wrong --from).
    fn outcome(&self, from: &StoreUri, to: &StoreUri) -> Result<ExitCode, Failure> {
        let on_target = self.moved.saturating_add(self.already_moved);
        let not_moved = format!(
            "{on_target} client ciphertexts are on {to} and drilled there; {} conflicts, {} bad source objects, {} errors (see the JSON lines); {from} is unchanged",
            self.conflicts, self.bad_source, self.errors
        );
        if self.bad_source > 0 {
            return Err(Failure::new(format!(
                "migration incomplete: {} source objects do not open as the share their name says, and were not copied; {not_moved}",
                self.bad_source
            ))
            .hint("restore those objects from a copy, or back the clients up again")
            .with_code(EXIT_ATTENTION));
        }
        let permanent = self.errors.saturating_sub(self.retryable_errors);
        if self.conflicts > 0 || permanent > 0 {
            let failure = Failure::new(format!("migration incomplete: {not_moved}"));
            let failure = if self.conflicts > 0 {
                failure.hint("a conflict is an object the target already holds with other bytes: it was left alone; compare the two (verify --store-wide) and remove the wrong one, then run migrate again")
            } else {
                failure
            };
            return Err(failure.with_code(EXIT_FAILED));
        }
        if self.errors > 0 {
            return Err(Failure::new(format!("migration incomplete: {not_moved}"))
                .with_code(EXIT_RETRYABLE));
        }
        if on_target == 0 {
            return Err(Failure::new(format!(
                "nothing to migrate: {from} holds no client ciphertext for the clients asked"
            ))
            .hint("check --from (and --client-id)"));
        }
        eprintln!(
            "migrated {} client ciphertexts of {} clients to {to} ({} had been moved before); every one was read back and opened there; {from} is unchanged",
            on_target, self.clients, self.already_moved
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// One compact JSON line on stdout, flushed so that a reader sees it at once.
fn print_line(line: &Line<'_>) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, line)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::caused_by("cannot write to stdout", e))
}
