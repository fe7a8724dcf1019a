//! `migrate --from <store> --to <store>`: every client ciphertext copied create-only, drilled
//! on the target before it counts as moved: between two stores of one's own, or between
//! Portal-Managed Backups (`portal`) and a store of one's own with each client's credentials
//! from `--credentials` (JSON Lines, as `bulk backup` takes them). One JSON line per object
//! as its client finishes, one per client, line or object that could not be moved (the run
//! goes on), and a summary line at the end; only the counts are kept.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use backup_flow::client_lines::{LineEvent, LineRun};
use backup_flow::migrate::{
    DEFAULT_MIGRATE_CONCURRENCY, MigratedClient, Migration, Moved, PortalMigration, SessionLine,
};
use clap::Args;
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::args::RateLimitArg;
use crate::failure::{EXIT_ATTENTION, EXIT_FAILED, EXIT_USAGE, Failure};
use crate::item_lines::{self, At, Errors};
use crate::progress::Bar;
use crate::store::StoreUri;

use super::Settings;
use super::lines::open_input;

/// `migrate` options.
#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// The store to copy from (only read): a store of your own (see Store URIs below), or
    /// `portal` (Portal-Managed Backups, with --credentials)
    #[arg(long, value_name = "URI")]
    pub(crate) from: String,
    /// The store to copy to (objects are only created, never replaced): a store of your own,
    /// or `portal` (with --credentials; Portal's ciphertext of a pair is read first and only
    /// a pair with none is written)
    #[arg(long, value_name = "URI")]
    pub(crate) to: String,
    /// With `portal` on one side: the clients' credentials, one client a line,
    /// {"clientApiKey": "…"} or {"clientSessionToken": "…"} (other fields are ignored, so a
    /// `bulk backup` input works as is); `-` for stdin
    #[arg(long, value_name = "FILE.jsonl|-")]
    pub(crate) credentials: Option<PathBuf>,
    /// Only these clients (repeatable; between stores of your own) [default: every client
    /// --from lists]
    #[arg(long = "client-id", value_name = "ID")]
    pub(crate) client_id: Vec<String>,
    /// Clients at the KMS at once, and meanwhile as many store steps for other clients
    /// (between stores of your own; with `portal` on one side, clients at once); each
    /// client's objects go in turn, so that the shares of a backup cost one KMS call
    #[arg(long, default_value_t = default_concurrency(), value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// At most this many KMS calls a second, shared by every key of --kms (KMS quotas are
    /// per account and region) [default: no limit]
    #[arg(long, value_name = "PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) kms_rate_limit: Option<u32>,
    /// With `portal` on one side: requests a minute to Portal's Client API, shared by the
    /// whole run; `off` for none [default: Portal's published limit, 200]
    #[arg(long, value_name = "PER_MINUTE")]
    pub(crate) rate_limit: Option<RateLimitArg>,
}

fn default_concurrency() -> u16 {
    u16::try_from(DEFAULT_MIGRATE_CONCURRENCY).unwrap_or(16)
}

/// Runs `migrate`.
pub(super) async fn migrate(settings: &Settings, args: MigrateArgs) -> Result<ExitCode, Failure> {
    let (from_uri, to_uri) = (
        crate::store::parse(&args.from)?,
        crate::store::parse(&args.to)?,
    );
    let usage = |message: String| Err(Failure::new(message).with_code(EXIT_USAGE));
    if from_uri == to_uri {
        return usage(format!("--from and --to name the same store ({from_uri})"));
    }
    let portal_side = matches!(from_uri, StoreUri::Portal) || matches!(to_uri, StoreUri::Portal);
    match (portal_side, &args.credentials) {
        (false, Some(_)) => {
            return usage(
                "--credentials is for a migration to or from portal; between stores of your own the clients come from --from's listing".into(),
            );
        }
        (true, None) => {
            return Err(Failure::new(
                "a migration to or from portal needs each client's credentials: Portal keeps each client's ciphertexts behind that client's own credential",
            )
            .hint("pass --credentials <file.jsonl|-> with one {\"clientApiKey\": \"…\"} (or clientSessionToken) a line, as for bulk backup")
            .with_code(EXIT_USAGE));
        }
        (true, Some(_)) if !args.client_id.is_empty() => {
            return usage(
                "--client-id is for a migration between stores of your own; with portal the clients are the lines of --credentials".into(),
            );
        }
        _ => {}
    }
    let mut keyring = crate::kms::keyring(&settings.kms, "--kms").await?;
    if let Some(calls) = args.kms_rate_limit {
        keyring = backup_flow::KmsRateLimit::per_second(calls).keyring(&keyring);
    }
    let concurrency = usize::from(args.concurrency);
    let mut tally = Tally::default();
    let bar = Bar::new(None);
    if portal_side {
        with_portal(
            settings,
            &args,
            keyring,
            (&from_uri, &to_uri),
            &mut tally,
            &bar,
        )
        .await?;
    } else {
        let from = crate::store::open_own(&from_uri, "--from").await?;
        let to = crate::store::open_own(&to_uri, "--to").await?;
        let migration = Migration::new(keyring, Arc::clone(&from), to)
            .map_err(|e| Failure::flow("cannot migrate", e))?;
        let clients = crate::store::clients(Some(from.as_ref()), &from_uri, args.client_id)?;
        let mut done = std::pin::pin!(migration.run(clients, concurrency));
        while let Some(client) = done.next().await {
            match client {
                Ok(client) => tally.print_client(&client)?,
                Err(e) => tally.errors.print(At::client(""), &e)?,
            }
            bar.finished(tally.not_moved());
        }
    }
    bar.done();
    tally.print_summary(concurrency)?;
    tally.outcome(&from_uri, &to_uri)
}

/// A migration with `portal` on one side: one client session per credentials line, read a
/// line at a time and run `--concurrency` lines at once.
async fn with_portal(
    settings: &Settings,
    args: &MigrateArgs,
    keyring: envelope::Keyring,
    (from_uri, to_uri): (&StoreUri, &StoreUri),
    tally: &mut Tally,
    bar: &Bar,
) -> Result<(), Failure> {
    let migration = if matches!(from_uri, StoreUri::Portal) {
        let to = crate::store::open_own(to_uri, "--to").await?;
        PortalMigration::from_portal(keyring, to)
    } else {
        let from = crate::store::open_own(from_uri, "--from").await?;
        PortalMigration::to_portal(keyring, from)
    }
    .map_err(|e| Failure::flow("cannot migrate", e))?;
    let portal = settings.transport(args.rate_limit)?;
    let input = open_input(args.credentials.as_deref().unwrap_or("-".as_ref()))?;
    tally.lines = Some(0);
    let run = LineRun::new(usize::from(args.concurrency)).run(
        input,
        |numbered| {
            let (migration, portal) = (migration.clone(), portal.clone());
            async move {
                let client = numbered
                    .parsed
                    .map_err(backup_flow::Error::Invalid)
                    .and_then(|line| {
                        line.credential.client(&portal).map_err(|_| {
                            backup_flow::Error::Invalid(
                                "the line's credential cannot go into a request header".into(),
                            )
                        })
                    });
                migration
                    .migrate_client(SessionLine::new(numbered.line, client))
                    .await
            }
        },
        |event| {
            if let LineEvent::Finished(client) = event {
                tally
                    .print_client(&client)
                    .map_err(|f| std::io::Error::other(f.message()))?;
                bar.finished(tally.not_moved());
            }
            Ok(())
        },
    );
    let read = run
        .await
        .map_err(|e| Failure::caused_by("the migration stopped", e))?;
    tally.lines = Some(read.selected);
    Ok(())
}

/// An object's line: what became of it, and its pair's status at Portal when Portal is a side.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pair_status: Option<&'a str>,
    #[serde(flatten)]
    moved: &'a Moved,
}

/// The end of the run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    kind: &'static str,
    clients: usize,
    /// Credentials lines read (with `portal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<u64>,
    moved: usize,
    already_moved: usize,
    conflicts: usize,
    bad_source: usize,
    skipped: usize,
    errors: usize,
    concurrency: usize,
}

/// What the run found so far.
#[derive(Default)]
struct Tally {
    clients: usize,
    lines: Option<u64>,
    moved: usize,
    already_moved: usize,
    conflicts: usize,
    bad_source: usize,
    skipped: usize,
    errors: Errors,
}

impl Tally {
    /// Prints the lines of one client and counts them.
    fn print_client(&mut self, client: &MigratedClient) -> Result<(), Failure> {
        let id = client.client_id.as_str();
        if !id.is_empty() {
            self.clients = self.clients.saturating_add(1);
        }
        let at = At::client(id).line(client.line);
        let objects = match &client.objects {
            Ok(objects) => objects,
            Err(e) => return self.errors.print(at, e),
        };
        for object in objects {
            let at = at.key(&object.key);
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
                    let line = ObjectLine {
                        pair_status: object.pair_status.as_deref(),
                        moved,
                    };
                    item_lines::item("object", at, &line)?;
                }
                Err(e) => self.errors.print(at, e)?,
            }
        }
        Ok(())
    }

    /// Objects (and clients) not on the target so far, for the progress bar.
    fn not_moved(&self) -> u64 {
        let not_moved = self
            .conflicts
            .saturating_add(self.bad_source)
            .saturating_add(self.errors.count());
        u64::try_from(not_moved).unwrap_or(u64::MAX)
    }

    fn print_summary(&self, concurrency: usize) -> Result<(), Failure> {
        item_lines::print(&Summary {
            kind: "summary",
            clients: self.clients,
            lines: self.lines,
            moved: self.moved,
            already_moved: self.already_moved,
            conflicts: self.conflicts,
            bad_source: self.bad_source,
            skipped: self.skipped,
            errors: self.errors.count(),
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
            self.conflicts,
            self.bad_source,
            self.errors.count()
        );
        if self.bad_source > 0 {
            return Err(Failure::new(format!(
                "migration incomplete: {} source objects do not open as the share their name says, and were not copied; {not_moved}",
                self.bad_source
            ))
            .hint("restore those objects from a copy, or back the clients up again")
            .with_code(EXIT_ATTENTION));
        }
        if self.conflicts > 0 || self.errors.permanent() > 0 {
            let failure = Failure::new(format!("migration incomplete: {not_moved}"));
            let failure = if self.conflicts > 0 {
                failure.hint("a conflict is an object the target already holds with other bytes: it was left alone; compare the two (verify --store-wide) and remove the wrong one, then run migrate again")
            } else {
                failure
            };
            return Err(failure.with_code(EXIT_FAILED));
        }
        if self.errors.count() > 0 {
            return Err(Failure::new(format!("migration incomplete: {not_moved}"))
                .with_code(self.errors.code()));
        }
        if on_target == 0 {
            return Err(Failure::new(format!(
                "nothing to migrate: {from} holds no client ciphertext for the clients asked"
            ))
            .hint(if self.lines.is_some() {
                "check --from and --credentials"
            } else {
                "check --from (and --client-id)"
            }));
        }
        eprintln!(
            "migrated {} client ciphertexts of {} clients to {to} ({} had been moved before); every one was read back and opened there; {from} is unchanged",
            on_target, self.clients, self.already_moved
        );
        Ok(ExitCode::SUCCESS)
    }
}
