//! [`PortalSim`]: a simulator served on a loopback port.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use portal_api::client_api::SharePairStatusUpdate;
use portal_api::mpc::GenerateResponse;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Simulator;
use super::listener::*;
use crate::Error;
use crate::config::SimConfig;
use crate::state::SimClient;

/// A running simulator: an HTTP server serving both Portal hosts (API and MPC paths) and the
/// admin routes, in front of a [`Simulator`] whose methods it derefs to. Dropping it stops the
/// server; [`shutdown`](Self::shutdown) stops it gracefully
/// and waits.
///
/// ```
/// # async fn run() -> Result<(), portal_sim::Error> {
/// use portal_sim::{PortalSim, SimConfig};
///
/// let sim = PortalSim::start(SimConfig::new().with_seed(1)).await?;
/// let keys = sim.create_client();
/// // A Portal transport pointed at the simulator (see `portal_builder`); use
/// // keys.client_api_key / keys.custodian_api_key, run the flow, then:
/// assert!(sim.report().is_clean(), "{}", sim.report());
/// sim.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
/// ```
pub struct PortalSim {
    sim: Simulator,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for PortalSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalSim")
            .field("base_url", &self.base_url)
            .field("sim", &self.sim)
            .finish_non_exhaustive()
    }
}

impl PortalSim {
    /// Binds [`SimConfig::listen`] (loopback, ephemeral port by default) and serves.
    ///
    /// # Errors
    /// [`Error::Bind`] if the address cannot be bound, and the errors of [`Simulator::new`].
    pub async fn start(config: SimConfig) -> Result<Self, Error> {
        let listen = config.listen;
        let sim = Simulator::new(config)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind { source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { source })?;
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        } else {
            addr
        };
        let base_url = format!("http://{host}");
        let (tx, rx) = oneshot::channel::<()>();
        let app = sim
            .router()
            .into_make_service_with_connect_info::<KillSwitch>();
        let task = tokio::spawn(async move {
            axum::serve(SimListener(listener), app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!(%base_url, "portal-sim listening");
        Ok(Self {
            sim,
            addr,
            base_url,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The simulator behind the server (state, faults, report).
    #[must_use]
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: serves every route of both Portal hosts and `/_sim/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The base URL to use as Portal's API host (`https://api.portalhq.io` in production).
    #[must_use]
    pub fn api_base_url(&self) -> &str {
        &self.base_url
    }

    /// The base URL to use as Portal's MPC host (`https://mpc-client.portalhq.io`).
    #[must_use]
    pub fn mpc_base_url(&self) -> &str {
        &self.base_url
    }

    /// A [`portal_api::Portal`] builder pointed at this simulator: both hosts (API and MPC)
    /// on [`base_url`](Self::base_url), client-side rate limits off (the simulator enforces
    /// Portal's limits itself when asked, [`Simulator::set_rate_limit`]; a test of the
    /// client's limiter sets them back with `with_api_rate_limit` / `with_mpc_rate_limit`),
    /// the builder's defaults otherwise (retries, timeouts).
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use portal_sim::{PortalSim, SimConfig};
    ///
    /// let sim = PortalSim::start(SimConfig::new().with_seed(1)).await?;
    /// let keys = sim.create_client();
    /// let client = sim.portal_builder().build()?.client_with_api_key(&keys.client_api_key)?;
    /// let generated = client.generate().await?;
    /// assert_eq!(generated.ids().len(), 2);
    /// assert!(sim.report().is_clean(), "{}", sim.report());
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    pub fn portal_builder(&self) -> portal_api::PortalBuilder {
        portal_api::Portal::builder()
            .with_api_base_url(self.api_base_url())
            .with_mpc_base_url(self.mpc_base_url())
            .without_rate_limits()
    }

    /// A new client of the default custodian whose app has generated its wallet and confirmed
    /// its signing shares (`POST /v1/generate`, then the signing share pairs marked stored):
    /// the state in which an integrator's backend backs a client up. Returns its credentials
    /// and the generate response the app would hand the backend.
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use portal_sim::{PortalSim, SimConfig};
    ///
    /// let sim = PortalSim::start(SimConfig::new().with_seed(1)).await?;
    /// let (keys, generated) = sim.generated_client().await?;
    /// let details = sim.client_details(&keys.client_id).expect("the client exists");
    /// assert_eq!(details.wallets.len(), generated.ids().len());
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    ///
    /// # Errors
    /// The Portal client's, if the simulator failed a call (an injected fault).
    pub async fn generated_client(
        &self,
    ) -> Result<(SimClient, GenerateResponse), portal_api::Error> {
        let keys = self.create_client();
        let client = self
            .portal_builder()
            .build()?
            .client_with_api_key(&keys.client_api_key)?;
        let generated = client.generate().await?;
        client
            .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generated.ids()))
            .await?;
        Ok((keys, generated))
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    ///
    /// # Errors
    /// [`Error::Server`] if the server task failed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(Error::Server { source }),
                Err(join) => Err(Error::Server {
                    source: io::Error::other(join.to_string()),
                }),
            },
            None => Ok(()),
        }
    }

    /// Serves until `signal` completes, then shuts down gracefully (for the binary).
    ///
    /// # Errors
    /// [`Error::Server`] if the server task failed.
    pub async fn run_until<F: Future<Output = ()> + Send>(self, signal: F) -> Result<(), Error> {
        signal.await;
        self.shutdown().await
    }
}

/// A running simulator is its [`Simulator`] (state, faults, report) plus the server: every
/// `Simulator` method is called on it directly (`sim.create_client()`, `sim.report()`).
impl std::ops::Deref for PortalSim {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Drop for PortalSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
