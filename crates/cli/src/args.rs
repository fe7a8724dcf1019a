//! The command line (clap derive). Every global option is also read from an environment
//! variable; secrets are never shown in `--help`.

use std::path::PathBuf;
use std::str::FromStr;

use backup_flow::client_lines::Shard;
use clap::{Args, Parser, Subcommand};
use portal_api::{DEFAULT_API_BASE_URL, DEFAULT_MPC_BASE_URL};

const AFTER_HELP: &str = "\
KMS URIs (--kms, --to-kms; PORTAL_BACKUP_KMS takes a comma-separated list):
  local:<key file>                  a key file made by `portal-backup keygen` (mode 0600)
  aws-kms:<key id, ARN or alias>    AWS KMS (cargo feature `aws-kms`; region and credentials
                                    from the AWS SDK's environment). An alias opens only keys
                                    of its own account and region; list keys elsewhere that it
                                    may open with ?also-open=<key ARN>, repeated with & (quote
                                    the URI)
  gcp-kms:<crypto key name>         Google Cloud KMS, projects/…/cryptoKeys/… (feature `gcp-kms`;
                                    Application Default Credentials)
  pkcs11:<token label>/<key label>  a PKCS#11 HSM (feature `pkcs11`; module and PIN from
                                    PORTAL_BACKUP_PKCS11_MODULE and PORTAL_BACKUP_PKCS11_PIN)
  With several KEKs, each seals every share and any one of them opens it.

Store URIs (--store):
  portal                            Portal-Managed Backups: Portal keeps the ciphertext (default)
  file:<dir>, file:///<dir>, <dir>  a directory of your own (a bare path must not be `portal`
                                    or `memory` and must not look like `scheme:…`)
  memory                            in this process only, gone at exit (demos and tests)
  postgres://user@host/db           PostgreSQL (feature `postgres`; the password from the URI,
                                    PGPASSWORD is not read; tables are created on first use)
  s3://<bucket>/<prefix>            Amazon S3 or S3-compatible (feature `s3`; AWS_* environment)
  gs://<bucket>/<prefix>            Google Cloud Storage (feature `gcs`; GOOGLE_* environment)
  az://<container>/<prefix>         Azure Blob Storage (feature `azure`; AZURE_* environment)

Exit codes:
  0  success
  1  failed; running the same command again will not help until something is changed
     (bulk backup: a line failed for good, or the run stopped)
  2  usage error (bad arguments; bulk backup: a shard JOB_COMPLETION_INDEX and
     --shard-count cannot name)
  3  failed for a reason that may pass (Portal, the KMS or the store unavailable or
     throttling): run the same command again to resume where it stopped (bulk backup:
     every failed line may pass)
  4  the check ran and found backups that are not whole: verify: a share is missing or
     does not open as the share it is stored for (migrate: a source object does not open as
     its share, and was not copied; status: a client needs attention)

Results go to stdout as JSON, logs and progress to stderr (RUST_LOG=info for more).";

/// Back up and recover the MPC key shares of Portal clients.
#[derive(Parser)]
#[command(name = "portal-backup", version, about, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options of every command.
#[derive(Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// The client's Client API Key (prefer the environment variable: a command line is
    /// visible to other users of the machine)
    #[arg(
        long,
        env = "PORTAL_CLIENT_API_KEY",
        hide_env_values = true,
        global = true,
        value_name = "KEY"
    )]
    pub(crate) api_key: Option<String>,

    /// The Custodian (Portal) API Key, for `eject` and `status`
    #[arg(
        long,
        env = "PORTAL_CUSTODIAN_API_KEY",
        hide_env_values = true,
        global = true,
        value_name = "KEY"
    )]
    pub(crate) custodian_api_key: Option<String>,

    /// Base URL of Portal's Client and Custodian APIs (https, or http to a loopback host)
    #[arg(long, env = "PORTAL_API_URL", default_value = DEFAULT_API_BASE_URL, global = true, value_name = "URL")]
    pub(crate) portal_api_url: String,

    /// Base URL of Portal's Enclave MPC API (https, or http to a loopback host)
    #[arg(long, env = "PORTAL_MPC_URL", default_value = DEFAULT_MPC_BASE_URL, global = true, value_name = "URL")]
    pub(crate) portal_mpc_url: String,

    /// A key-encryption key (repeat for several); see KMS URIs below
    #[arg(
        long = "kms",
        env = "PORTAL_BACKUP_KMS",
        value_delimiter = ',',
        global = true,
        value_name = "URI"
    )]
    pub(crate) kms: Vec<String>,

    /// Where the client backup ciphertexts are kept; see Store URIs below
    #[arg(
        long,
        env = "PORTAL_BACKUP_STORE",
        default_value = "portal",
        global = true,
        value_name = "URI"
    )]
    pub(crate) store: String,

    /// Local state (the journal that makes every run resumable) [default:
    /// $XDG_STATE_HOME/portal-backup or ~/.local/state/portal-backup]
    #[arg(
        long,
        env = "PORTAL_BACKUP_STATE_DIR",
        global = true,
        value_name = "DIR"
    )]
    pub(crate) state_dir: Option<PathBuf>,
}

/// The commands.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Write a new local key-encryption key file (mode 0600; an existing file is never
    /// overwritten)
    Keygen {
        /// The key file to create
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Back up the client's shares: /v1/backup, seal, store, restore drill, confirm. Running
    /// it again after a failure resumes the same backup
    Backup {
        /// The client's /v1/generate response (JSON), or `-` for stdin
        #[arg(long, value_name = "FILE|-")]
        generate_response: PathBuf,
        #[command(flatten)]
        already: AlreadyBackedUp,
    },
    /// Recover the client's wallet from its newest backup: new signing shares from
    /// /v1/recover, confirmed to Portal
    Recover {
        /// Write the /v1/recover response (the new signing shares) to this new file (mode
        /// 0600) instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Recover from the newest completed backup of this method (GDRIVE, ICLOUD, PASSWORD,
        /// PASSKEY, CUSTOM, ...) [default: the newest completed backup of any method]
        #[arg(long, value_name = "METHOD")]
        backup_method: Option<String>,
    },
    /// The restore drill: check that every backed-up share opens and is bound to its
    /// identity (exit 0 only then; 4 otherwise). Changes nothing
    Verify {
        /// Check everything the store holds instead of the pairs Portal lists for the client
        /// of --api-key: every client of a file store (or those of --client-id), each object
        /// opened as the share its name says, one JSON line per share as it is checked and a
        /// summary line. Needs no API key; cannot see what is missing
        #[arg(long)]
        store_wide: bool,
        /// With --store-wide: only these clients (repeatable)
        #[arg(long = "client-id", value_name = "ID", requires = "store_wide")]
        client_id: Vec<String>,
        /// With --store-wide: KMS calls in flight at most, and meanwhile as many store reads
        /// for other clients (a client's shares open with one KMS call)
        #[arg(long, default_value_t = 16, value_name = "N", requires = "store_wide", value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
        /// With --store-wide: at most this many KMS calls a second, shared by every key of
        /// --kms (KMS quotas are per account and region) [default: no limit]
        #[arg(long, value_name = "PER_SECOND", requires = "store_wide", value_parser = clap::value_parser!(u32).range(1..))]
        kms_rate_limit: Option<u32>,
    },
    /// As the custodian, eject a client's wallets: each wallet's private key, rebuilt from its
    /// two backup shares and verified against its public key, goes to a new file (mode 0600).
    /// Through Portal, or --offline for Self-Managed Backups; `eject combine` for two share
    /// files
    Eject(EjectArgs),
    /// Rewrap every sealed object a store holds for some clients (client backup, signing and
    /// custodian backup shares) under new key-encryption keys, without re-encrypting a share,
    /// then count from the headers what is still not under them (must be 0). Resumable.
    /// Needs a store of your own
    Rotate {
        /// The new key-encryption keys (replace those of --kms); an alias is resolved to the
        /// key it points to now
        #[arg(long = "to-kms", value_name = "URI", required = true, num_args = 1.., value_delimiter = ',')]
        to_kms: Vec<String>,
        /// The clients (repeatable) [default: every client the store lists, or the client of
        /// --api-key]
        #[arg(long = "client-id", value_name = "ID")]
        client_id: Vec<String>,
        /// Clients at the KMS at once, and meanwhile as many store steps (reads, writes, the
        /// proof) for other clients; each client's objects go in turn, so that the shares of a
        /// backup keep one wrapped key
        #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
        /// At most this many KMS calls a second, shared by every key of --kms and --to-kms
        /// (KMS quotas are per account and region) [default: no limit]
        #[arg(long, value_name = "PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
        kms_rate_limit: Option<u32>,
    },
    /// Copy every client ciphertext from one store to another: between stores of your own, or
    /// to or from `portal` with --credentials (create-only on --to, read back and opened there
    /// before it counts as moved; --from is only read). Resumable: a rerun skips what is
    /// already moved. Custodian shares do not move
    Migrate(crate::commands::MigrateArgs),
    /// For every client of a credentials file (JSON Lines), finish what needs no new
    /// /v1/backup: resume journaled sealed backups, confirm stored ciphertexts that open (and,
    /// with Self-Managed Backups, whose custodian share the webhook holds). Report the rest
    /// (exit 4). Deletes nothing unless --prune-orphans --plan
    Reconcile(crate::commands::ReconcileArgs),
    /// As the custodian, the status of every client: Portal's client listing beside the
    /// stores (is the newest completed backup of each wallet stored, and with --deep does it
    /// open; a custodian share in the webhook's store; incomplete pairs; orphans). One JSON
    /// line per client and a summary line; a table on a terminal. Exit 4 when a client needs
    /// attention. Changes nothing
    Status(StatusArgs),
    /// Many clients at once
    #[command(subcommand)]
    Bulk(BulkCommand),
    /// Run the whole job against a simulated Portal on loopback, in a temporary directory:
    /// backup, verify, crash and resume, file store, recover, rotate
    Demo,
    /// Serve the Self-Managed Backups webhook Portal calls with custodian backup shares,
    /// sealed with --kms and kept in --store (a store of your own), until SIGINT or SIGTERM
    ServeWebhook(crate::webhook::ServeWebhook),
}

/// `eject` options.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct EjectArgs {
    /// Combine two shares given as files instead
    #[command(subcommand)]
    pub(crate) command: Option<EjectCommand>,
    /// The client to eject
    #[arg(long, value_name = "ID", required = true)]
    pub(crate) client_id: Option<String>,
    /// The file to create for the keys (mode 0600; never an existing file)
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) out: Option<PathBuf>,
    /// Eject the newest completed backup of this method (GDRIVE, ICLOUD, PASSWORD, PASSKEY,
    /// CUSTOM, ...) [default: the newest completed backup of any method]
    #[arg(long, value_name = "METHOD", conflicts_with = "offline")]
    pub(crate) backup_method: Option<String>,
    /// After every wallet's key was rebuilt, verified and written, mark the client ejected at
    /// Portal (POST /api/v3/clients/me/eject). IRREVERSIBLE; never done without this flag
    #[arg(long, conflicts_with = "offline")]
    pub(crate) mark_ejected: bool,
    /// Self-Managed Backups, without Portal: client ciphertexts from --store, custodian
    /// shares from the webhook's store (--webhook-store), both opened with the KMS; no Portal
    /// call is made
    #[arg(long)]
    pub(crate) offline: bool,
    /// With --offline: the store `serve-webhook` keeps custodian shares in [default: --store]
    #[arg(long, value_name = "URI", requires = "offline")]
    pub(crate) webhook_store: Option<String>,
    /// With --offline: the key-encryption keys of the webhook's store (repeatable)
    /// [default: --kms]
    #[arg(
        long = "webhook-kms",
        value_name = "URI",
        requires = "offline",
        value_delimiter = ','
    )]
    pub(crate) webhook_kms: Vec<String>,
}

/// `status` options.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// Run the restore drill: open each newest completed backup's ciphertext as that share
    /// (one KMS call per client) [default: presence only]
    #[arg(long)]
    pub(crate) deep: bool,
    /// With Portal-Managed Backups (--store portal): client credentials, one client a line
    /// ({"clientApiKey" or "clientSessionToken": "…"}, as for `bulk backup`), to read the
    /// ciphertexts Portal keeps behind each client's routes; `-` for stdin. Clients without a
    /// line are reported held-by-portal-unchecked
    #[arg(long, value_name = "FILE.jsonl|-")]
    pub(crate) credentials: Option<PathBuf>,
    /// Self-Managed Backups: the custodian webhook's store, to check that it holds each
    /// client's custodian share [default: not checked, reported custodian-share-unchecked]
    #[arg(long, value_name = "URI")]
    pub(crate) webhook_store: Option<String>,
    /// Clients checked at once (store reads, KMS calls, ciphertext reads)
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// Clients per page of Portal's client listing (Portal allows 1 to 100)
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) page_size: u32,
    /// Requests a minute to Portal, shared by the whole run; `off` for none [default:
    /// Portal's published limit, 200]
    #[arg(long, value_name = "PER_MINUTE")]
    pub(crate) rate_limit: Option<RateLimitArg>,
    /// Write the JSON lines to this file (replaced) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Also write a self-contained HTML report (no external assets) to this file, replaced:
    /// the summary, then the clients that need attention
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

/// `eject` subcommands.
#[derive(Subcommand)]
pub(crate) enum EjectCommand {
    /// Rebuild and verify one wallet's key from a client backup share and a custodian backup
    /// share given as files (shares obtained any other way). Needs no Portal, KMS or store
    Combine(crate::combine::CombineArgs),
}

/// `bulk` commands.
#[derive(Subcommand)]
pub(crate) enum BulkCommand {
    /// Back up every client of a JSON Lines file, one JSON result line per client. Run it
    /// again to resume: confirmed clients are skipped
    Backup(BulkBackup),
}

/// `bulk backup` options.
#[derive(Args)]
pub(crate) struct BulkBackup {
    /// One client a line: {"clientApiKey" or "clientSessionToken": "…", "generateResponse":
    /// {…}}; `-` for stdin
    #[arg(long, value_name = "FILE.jsonl|-")]
    pub(crate) input: PathBuf,
    /// Clients backed up at once
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// Requests a minute to each Portal host (Client API, MPC API), shared by the whole run;
    /// `off` for none [default: Portal's published limits, 200 and 50]
    #[arg(long, value_name = "PER_MINUTE")]
    pub(crate) rate_limit: Option<RateLimitArg>,
    /// Take only the lines whose index (line number - 1) is i modulo n [default: in a pod of
    /// a Kubernetes Indexed Job, i from JOB_COMPLETION_INDEX and n from --shard-count]
    #[arg(long, value_name = "i/n")]
    pub(crate) shard: Option<Shard>,
    /// The number of shards (the Job's completions) when the shard index comes from
    /// JOB_COMPLETION_INDEX
    #[arg(long, env = "PORTAL_BACKUP_SHARD_COUNT", value_name = "N")]
    pub(crate) shard_count: Option<u32>,
    /// Write the result lines to this file (replaced) instead of stdout; stdout then gets
    /// the run's summary
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Also write the run's summary (one JSON line: exit code, counts, shard) to this file,
    /// replaced; in Kubernetes, /dev/termination-log puts it in the pod's status
    #[arg(long, value_name = "FILE")]
    pub(crate) summary: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) already: AlreadyBackedUp,
}

/// How `backup` and `bulk backup` tell a client already backed up, beyond the journal: from
/// Portal (its newest completed backup of each curve) and the store (a ciphertext that opens
/// as it).
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct AlreadyBackedUp {
    /// Ask Portal for a new backup even when its newest completed one is stored and opens
    #[arg(long)]
    pub(crate) force: bool,
    /// Self-Managed Backups: the custodian webhook's store; a backup found at Portal then
    /// counts as done only if a custodian share of the client is there too
    #[arg(long, value_name = "URI")]
    pub(crate) webhook_store: Option<String>,
}

/// `--rate-limit`: a number of requests a minute, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RateLimitArg {
    PerMinute(u32),
    Off,
}

impl FromStr for RateLimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Self::PerMinute(n)),
            _ => Err("expected a number of requests a minute (at least 1) or `off`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!("off".parse(), Ok(RateLimitArg::Off));
        assert_eq!("120".parse(), Ok(RateLimitArg::PerMinute(120)));
        assert!("0".parse::<RateLimitArg>().is_err());
        assert!("fast".parse::<RateLimitArg>().is_err());
    }
}
