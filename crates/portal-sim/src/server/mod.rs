//! The HTTP side: the axum router with every Portal route, the API layer (faults, rejection
//! counting, request log without secrets), the admin routes under `/_sim/`, and [`PortalSim`],
//! a running server on loopback.

mod admin;
mod api_layer;
mod caller;
mod listener;
mod routes;
mod running;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::middleware;
use portal_api::client_api::ClientDetails;
use portal_api::{ApiKey, BackupMethod};
use zeroize::Zeroizing;

use crate::Error;
use crate::config::SimConfig;
use crate::faults::{FaultRule, FaultState};
use crate::report::{Recorder, Report};
use crate::rng::SimRng;
use crate::state::{SimClient, SimCustodian, State as SimState};
use crate::traffic::Host;
use crate::webhook::Webhook;

pub use running::PortalSim;

/// Mixed into the seed of the fault stream, so faults do not depend on how many ids and shares
/// were drawn before.
const FAULT_STREAM: u64 = 0x5EED_FA17_0000_0001;

/// A simulated Portal: the state, the fault rules and the report, shared by every clone.
///
/// [`PortalSim::start`] runs one on a loopback port; [`Simulator::router`] gives the axum
/// router to embed elsewhere (dropped-connection faults then answer 503 instead, since only
/// [`PortalSim`]'s listener can close a connection without a response).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<SimState>,
    faults: Mutex<FaultState>,
    webhook: Option<Webhook>,
    default_custodian: SimCustodian,
    /// Requests per second accepted by the API host (0 = unlimited).
    rate_limit_api: AtomicU32,
    /// The same for the MPC host.
    rate_limit_mpc: AtomicU32,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("state", &*self.state())
            .field("webhook", &self.inner.webhook.is_some())
            .field("default_custodian", &self.inner.default_custodian.id)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Builds a simulator (no server) from a configuration.
    ///
    /// # Errors
    /// [`Error::InvalidFault`] for an invalid fault rule, [`Error::InvalidConfig`] for an
    /// unusable webhook URL or secret.
    pub fn new(config: SimConfig) -> Result<Self, Error> {
        for rule in &config.faults {
            rule.validate()?;
        }
        let webhook = match &config.mode {
            crate::BackupMode::SelfManaged(w) => Some(Webhook::new(w)?),
            crate::BackupMode::PortalManaged => None,
        };
        let (state_rng, fault_rng) = match config.seed {
            Some(seed) => (SimRng::seeded(seed), SimRng::seeded(seed ^ FAULT_STREAM)),
            None => (SimRng::from_os(), SimRng::from_os()),
        };
        let mut state = SimState::new(
            config.mode.backup_with_portal(),
            config.backup_method,
            config.status_view,
            state_rng,
        );
        let custodian = state.create_custodian("portal-sim", config.custodian_api_key.as_ref());
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Mutex::new(FaultState::new(config.faults, fault_rng)),
                webhook,
                default_custodian: custodian,
                rate_limit_api: AtomicU32::new(config.rate_limit_api.unwrap_or(0)),
                rate_limit_mpc: AtomicU32::new(config.rate_limit_mpc.unwrap_or(0)),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fault_state(&self) -> MutexGuard<'_, FaultState> {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The custodian created at start (its key is
    /// [`SimConfig::custodian_api_key`](crate::SimConfig::custodian_api_key) when set).
    #[must_use]
    pub fn default_custodian(&self) -> SimCustodian {
        let custodian = &self.inner.default_custodian;
        SimCustodian {
            id: custodian.id.clone(),
            api_key: ApiKey::from(custodian.api_key.expose_secret()),
        }
    }

    /// Creates another custodian with a random API key.
    #[must_use]
    pub fn create_custodian(&self, name: &str) -> SimCustodian {
        self.state().create_custodian(name, None)
    }

    /// Creates a client of the default custodian and returns every credential a test needs.
    #[must_use]
    pub fn create_client(&self) -> SimClient {
        let custodian = &self.inner.default_custodian;
        self.state().sim_client_with(
            &custodian.id,
            ApiKey::from(custodian.api_key.expose_secret()),
        )
    }

    /// Creates a client of the given custodian.
    ///
    /// # Errors
    /// [`Error::UnknownCustodian`] if there is no such custodian.
    pub fn create_client_for(&self, custodian_id: &str) -> Result<SimClient, Error> {
        self.state()
            .sim_client(custodian_id)
            .ok_or(Error::UnknownCustodian)
    }

    /// The invariant report so far.
    #[must_use]
    pub fn report(&self) -> Report {
        self.state().recorder.snapshot()
    }

    /// Clears the report (violations, rejections and counters).
    pub fn reset_report(&self) {
        self.state().recorder = Recorder::default();
    }

    /// Replaces every fault rule.
    ///
    /// # Errors
    /// [`Error::InvalidFault`] if a rule is invalid; nothing changes then.
    pub fn set_faults(&self, rules: Vec<FaultRule>) -> Result<(), Error> {
        for rule in &rules {
            rule.validate()?;
        }
        self.fault_state().set(rules);
        Ok(())
    }

    /// Adds one fault rule after the existing ones.
    ///
    /// # Errors
    /// [`Error::InvalidFault`] if the rule is invalid.
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), Error> {
        rule.validate()?;
        self.fault_state().push(rule);
        Ok(())
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.fault_state().set(Vec::new());
    }

    /// Changes the rate limit of `host` (see
    /// [`SimConfig::with_rate_limit`](crate::SimConfig::with_rate_limit); `None` = no limit,
    /// 0 is raised to 1).
    pub fn set_rate_limit(&self, host: Host, per_second: Option<u32>) {
        let value = per_second.map_or(0, |n| n.max(1));
        self.rate_limit_cell(host).store(value, Ordering::Relaxed);
    }

    /// The rate limit of `host` in force, if any.
    #[must_use]
    pub fn rate_limit(&self, host: Host) -> Option<u32> {
        let value = self.rate_limit_cell(host).load(Ordering::Relaxed);
        (value > 0).then_some(value)
    }

    fn rate_limit_cell(&self, host: Host) -> &AtomicU32 {
        match host {
            Host::Api => &self.inner.rate_limit_api,
            Host::Mpc => &self.inner.rate_limit_mpc,
        }
    }

    /// The fault rules in force.
    #[must_use]
    pub fn faults(&self) -> Vec<FaultRule> {
        self.fault_state().rules()
    }

    /// Moves the simulated clock forward (eject windows and session tokens expire).
    pub fn advance_clock(&self, by: Duration) {
        self.state().advance_clock(by);
    }

    /// The backup method Portal records for the backups that follow (the configured one until
    /// this is called). With several methods a client gets one completed pair per method, as
    /// with Portal's multi-backup.
    pub fn set_backup_method(&self, method: BackupMethod) {
        self.state().set_backup_method(method);
    }

    /// The real private key of a wallet in hex (secp256k1 big-endian, ed25519 scalar
    /// little-endian): what an eject must rebuild. For tests; a real Portal has no such thing.
    #[must_use]
    pub fn wallet_private_key_hex(&self, wallet_id: &str) -> Option<Zeroizing<String>> {
        self.state().wallet_private_key_hex(wallet_id)
    }

    /// What `GET /clients/me` shows for a client, without going through HTTP.
    #[must_use]
    pub fn client_details(&self, client_id: &str) -> Option<ClientDetails> {
        self.state().client_me(client_id)
    }

    /// The client ciphertext Portal holds for a backup share pair, if any.
    #[must_use]
    pub fn stored_cipher_text(&self, backup_share_pair_id: &str) -> Option<String> {
        self.state().stored_cipher_text(backup_share_pair_id)
    }

    /// The axum router: every Portal route (on one host; both base URLs can point at it) and
    /// the admin routes under `/_sim/`.
    pub fn router(&self) -> Router {
        routes::portal()
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                api_layer::api_layer,
            ))
            .merge(admin::routes())
            .fallback(api_layer::unknown_route)
            .method_not_allowed_fallback(api_layer::method_not_allowed)
            .with_state(self.clone())
    }
}
