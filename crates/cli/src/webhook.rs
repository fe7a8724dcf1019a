//! `serve-webhook`: the Self-Managed Backups webhook server (`custodian-webhook`) over the
//! KEKs of `--kms` and the store of `--store`, with its metrics on `--metrics-listen`.

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
    /// that is the sole way in); the allowlist is then checked per request, and there is no
    /// per-peer connection cap unless --max-connections-per-peer sets one
    #[arg(long)]
    pub(crate) trust_forwarded_for: bool,
    /// Serve plain HTTP on a non-loopback address because a TLS-terminating proxy or load
    /// balancer is in front (without it, plain HTTP is refused there; Portal calls https://)
    #[arg(long, conflicts_with = "tls_cert")]
    pub(crate) behind_tls_proxy: bool,
    /// Most connections one peer address (an IPv6 /64) may hold at once; 0: no cap
    /// [default: 256, or no cap with --trust-forwarded-for]
    #[arg(long, value_name = "N")]
    pub(crate) max_connections_per_peer: Option<usize>,
    /// Also serve GET /metrics (Prometheus), /healthz and /readyz in plain HTTP on this
    /// address; keep it private (it needs no secret)
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) metrics_listen: Option<SocketAddr>,
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
    let tls = args.tls_cert.is_some() && args.tls_key.is_some();
    if !tls && !args.behind_tls_proxy && !args.listen.ip().to_canonical().is_loopback() {
        return Err(Failure::new(format!(
            "refusing to serve plain HTTP on {}, which is not a loopback address",
            args.listen
        ))
        .hint(
            "pass --tls-cert <pem> --tls-key <pem> to serve HTTPS, or --behind-tls-proxy when \
             a TLS-terminating proxy is the only way in",
        )
        .with_code(2));
    }
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
    if let Some(max) = args.max_connections_per_peer {
        builder = builder.with_max_connections_per_peer(max);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.with_tls(
            TlsConfig::from_pem_files(cert, key).map_err(|e| config("invalid TLS files", e))?,
        );
    }
    let server = builder
        .build()
        .map_err(|e| config("invalid webhook configuration", e))?;
    let listener = bind(args.listen).await?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let local = local_addr(&listener)?;
    let metrics_local = metrics_listener.as_ref().map(local_addr).transpose()?;
    println!(
        "{}",
        serde_json::json!({
            "listening": local.to_string(),
            "tls": server.is_tls(),
            "metrics_listening": metrics_local.map(|a| a.to_string()),
        })
    );
    // One signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let served = server.serve(listener, wait_for(stopped.clone()));
    let metrics_served = async {
        match metrics_listener {
            Some(listener) => server.serve_metrics(listener, wait_for(stopped)).await,
            None => Ok(()),
        }
    };
    let (served, metrics_served) = tokio::join!(served, metrics_served);
    served.map_err(|e| Failure::caused_by("the webhook server failed", e))?;
    metrics_served.map_err(|e| Failure::caused_by("the metrics listener failed", e))?;
    Ok(ExitCode::SUCCESS)
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::caused_by(format!("cannot listen on {addr}"), e))
}

fn local_addr(listener: &tokio::net::TcpListener) -> Result<SocketAddr, Failure> {
    listener
        .local_addr()
        .map_err(|e| Failure::caused_by("cannot read the listen address", e))
}

/// Completes once `stopped` turns true (or its sender is gone).
async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
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
