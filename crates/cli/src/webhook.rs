//! `serve-webhook`: the Self-Managed Backups webhook server (`custodian-webhook`) over the
//! KEKs of `--kms` and the store of `--store`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use custodian_webhook::{Allowlist, SECRET_ENV, TlsConfig, WebhookSecrets, WebhookServer};

use crate::failure::Failure;
use crate::kms;
use crate::store;

/// `serve-webhook` options.
#[derive(Args)]
pub(crate) struct ServeWebhook {
    /// Address and port to listen on (port 0: any free port; the address goes to stdout)
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) listen: SocketAddr,
    /// File with the webhook secret, one per line (several during a rotation) [default: the
    /// PORTAL_WEBHOOK_SECRET environment variable; never a command-line value]
    #[arg(long, value_name = "FILE")]
    pub(crate) secret_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key) instead of plain HTTP
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Allowed source addresses (repeatable): `portal` (Portal's published addresses),
    /// `loopback`, or a CIDR block [default: any address]
    #[arg(long = "allow", value_name = "PRESET|CIDR")]
    pub(crate) allow: Vec<String>,
    /// Take the source address from the rightmost X-Forwarded-For entry (only behind a proxy
    /// that is the sole way in)
    #[arg(long)]
    pub(crate) trust_forwarded_for: bool,
    /// Path prefix of the routes: with /portal, Portal's base URL is https://host/portal
    #[arg(long, value_name = "PATH", default_value = "")]
    pub(crate) base_path: String,
}

fn config(summary: &str, e: custodian_webhook::Error) -> Failure {
    Failure::caused_by(summary.to_owned(), e)
}

/// Runs the server until SIGINT or SIGTERM, then finishes the requests in flight.
pub(crate) async fn run(
    kms_uris: &[String],
    store_uri: &str,
    args: ServeWebhook,
) -> Result<ExitCode, Failure> {
    let store = store::open_own(
        &store::parse(store_uri)?,
        "serve-webhook (Portal keeps no custodian shares in Self-Managed mode)",
    )
    .await?;
    let secrets = match &args.secret_file {
        Some(file) => WebhookSecrets::from_file(file),
        None => WebhookSecrets::from_env(SECRET_ENV),
    }
    .map_err(|e| {
        config("no usable webhook secret", e)
            .hint("set PORTAL_WEBHOOK_SECRET or pass --secret-file <file>")
    })?;
    let keyring = kms::keyring(kms_uris, "--kms").await?;
    let allowlist = Allowlist::parse(&args.allow).map_err(|e| config("invalid --allow", e))?;
    let mut builder = WebhookServer::builder()
        .with_keyring(keyring)
        .with_store(store)
        .with_secrets(secrets)
        .with_base_path(args.base_path)
        .with_allowlist(allowlist)
        .with_trust_forwarded_for(args.trust_forwarded_for);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.with_tls(
            TlsConfig::from_pem_files(cert, key).map_err(|e| config("invalid TLS files", e))?,
        );
    }
    let server = builder
        .build()
        .map_err(|e| config("invalid webhook configuration", e))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::caused_by(format!("cannot listen on {}", args.listen), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::caused_by("cannot read the listen address", e))?;
    println!(
        "{}",
        serde_json::json!({"listening": local.to_string(), "tls": server.is_tls()})
    );
    server
        .serve(listener, shutdown_signal())
        .await
        .map_err(|e| Failure::caused_by("the webhook server failed", e))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
