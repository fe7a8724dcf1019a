//! The `portal-sim` binary: a Portal simulator for local development.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use portal_api::{ApiKey, BackupMethod};
use portal_sim::{FaultRule, PortalSim, SimConfig, StatusView, WebhookConfig};

const AFTER_HELP: &str = "\
ROUTES
  One server answers both Portal hosts. Point both base URLs of your client at it:
    API host (https://api.portalhq.io)          -> http://<listen>
    MPC host (https://mpc-client.portalhq.io)   -> http://<listen>
  Enclave MPC: POST /v1/generate, /v1/backup, /v1/recover
  Client API:  /api/v3/clients/me[...] (share pairs, ciphertexts, eject)
  Custodian:   /api/v3/custodians/me/clients[...] (clients, sessions, enable-eject, ejectable shares)

GETTING KEYS
  A default custodian exists at start (key: --custodian-api-key, or random). Make a client:
    curl -s -X POST http://127.0.0.1:8787/_sim/clients
  -> {\"custodianId\", \"custodianApiKey\", \"clientId\", \"clientApiKey\", \"clientSessionToken\"}
  or call POST /api/v3/custodians/me/clients with the custodian key, as with Portal.
  Keys are never printed or logged.

WITH THIS SDK
  portal_api::Portal::builder()
      .with_api_base_url(\"http://127.0.0.1:8787\")
      .with_mpc_base_url(\"http://127.0.0.1:8787\")
      .build()?
      .client_with_api_key(&ApiKey::from(client_api_key))   (or .custodian(&key))
  (plain http is accepted for loopback hosts only.) Any other client: same base URL, header
  `Authorization: Bearer <key>`.

FAULTS (--fault, repeatable; also PUT/POST/DELETE /_sim/faults at run time)
  '<route>: key=value, ...'   route = * | METHOD | /template | METHOD /template
  keys: error=<0..1> status=<400..599> throttle=<0..1> retry-after=<s> latency-ms=<ms>
        drop=<0..1> (close without response) drop-after=<0..1> (close after the effect) times=<n>
  e.g. --fault 'GET *: error=0.2, status=503' --fault 'POST /v1/backup: throttle=1, times=1'

REPORT
  curl -s 'http://127.0.0.1:8787/_sim/report?format=text'   (JSON without ?format=text)
  Lists backup pairs marked stored without a ciphertext, out-of-order status changes, webhook
  failures and every request Portal would reject. DELETE /_sim/report resets it.

SELF-MANAGED BACKUPS
  --mode self-managed --webhook-url http://127.0.0.1:9000 --webhook-secret s3cret
  Each custodian backup share is POSTed to <url>/backup {backupMethod, clientId, share}, then
  <url>/backup/fetch {clientId} must answer {\"backupShares\": [...]} containing it, within the
  deadline, or /v1/backup fails with WEBHOOK_FAILED.";

/// A wire-faithful simulator of Portal's Enclave MPC, Client and Custodian APIs, with fault
/// injection and an invariant report, for local development against this SDK or any other
/// Portal client.
#[derive(Debug, Parser)]
#[command(name = "portal-sim", version, after_help = AFTER_HELP)]
struct Args {
    /// Address to listen on (keep it on loopback: admin routes have no authentication).
    #[arg(long, env = "PORTAL_SIM_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,

    /// Who keeps custodian backup shares and client ciphertexts.
    #[arg(long, env = "PORTAL_SIM_MODE", value_enum, default_value_t = Mode::PortalManaged)]
    mode: Mode,

    /// Base URL of the Self-Managed Backup webhook (required with --mode self-managed).
    #[arg(long, env = "PORTAL_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,

    /// Value of the X-Webhook-Secret header sent to the webhook.
    #[arg(long, env = "PORTAL_SIM_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,

    /// Deadline of each webhook call, in milliseconds (Portal: 10000).
    #[arg(long, default_value_t = 10_000)]
    webhook_timeout_ms: u64,

    /// Seed for ids, shares and faults: the same requests in the same order give the same run.
    #[arg(long, env = "PORTAL_SIM_SEED")]
    seed: Option<u64>,

    /// A fault rule, e.g. 'GET *: error=0.2, status=503' (repeatable; see FAULTS below).
    #[arg(long = "fault", value_name = "RULE")]
    faults: Vec<String>,

    /// How share-pair statuses show in /clients/me.
    #[arg(long, value_enum, default_value_t = View::Summary)]
    status_view: View,

    /// backupMethod of backup pairs made by /v1/backup.
    #[arg(long, default_value = "CUSTOM")]
    backup_method: String,

    /// A fixed API key for the default custodian (random when absent).
    #[arg(long, env = "PORTAL_SIM_CUSTODIAN_API_KEY", hide_env_values = true)]
    custodian_api_key: Option<String>,

    /// Log filter (tracing-subscriber EnvFilter syntax); RUST_LOG works too.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Portal stores custodian shares and client ciphertexts (backupWithPortalEnabled).
    PortalManaged,
    /// Custodian shares go to your webhook; no ciphertexts are stored with Portal.
    SelfManaged,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum View {
    /// completed / incomplete, as Portal's docs show.
    Summary,
    /// The raw lifecycle states (STORED_CLIENT, STORED_CLIENT_BACKUP_SHARE, ...).
    Raw,
}

fn config(args: Args) -> Result<SimConfig, String> {
    let mut config = SimConfig::new()
        .with_listen(args.listen)
        .with_backup_method(BackupMethod::from_wire(&args.backup_method))
        .with_status_view(match args.status_view {
            View::Summary => StatusView::Summary,
            View::Raw => StatusView::Raw,
        });
    if let Some(seed) = args.seed {
        config = config.with_seed(seed);
    }
    if let Some(key) = args.custodian_api_key {
        config = config.with_custodian_api_key(ApiKey::new(key));
    }
    for text in &args.faults {
        let rule: FaultRule = text.parse().map_err(|e| format!("--fault {text:?}: {e}"))?;
        config = config.with_fault(rule);
    }
    if let Mode::SelfManaged = args.mode {
        let url = args
            .webhook_url
            .ok_or("--mode self-managed needs --webhook-url")?;
        let secret = args
            .webhook_secret
            .ok_or("--mode self-managed needs --webhook-secret")?;
        config = config.with_webhook(
            WebhookConfig::new(url, ApiKey::new(secret))
                .with_timeout(Duration::from_millis(args.webhook_timeout_ms)),
        );
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = match config(args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("portal-sim: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let sim = match PortalSim::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("portal-sim: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("portal-sim listening on {}", sim.base_url());
    println!(
        "  api and mpc base url: {0}; new client: curl -s -X POST {0}/_sim/clients",
        sim.base_url()
    );
    println!("  default custodian id: {}", sim.default_custodian().id);
    let result = sim
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portal-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
