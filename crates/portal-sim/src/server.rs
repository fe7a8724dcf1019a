//! The HTTP side: the axum router with every Portal route, the API layer (faults, rejection
//! counting, request log without secrets), the admin routes under `/_sim/`, and [`PortalSim`],
//! a running server on loopback.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::serve::{IncomingStream, Listener};
use portal_api::client_api::{
    ClientDetails, EjectClientRequest, PrepareEjectRequest, PrepareEjectResponse,
    SharePairStatusUpdate, StoreCipherTextRequest,
};
use portal_api::custodian_api::{CreateClientRequest, CreateSessionRequest, EnableEjectRequest};
use portal_api::mpc::{BackupRequest, GenerateRequest, RecoverRequest};
use portal_api::{ApiKey, BackupMethod, JsonError, paths};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::Error;
use crate::config::SimConfig;
use crate::error_body::{ApiError, RejectionNote};
use crate::faults::{FaultRule, FaultState, Injection};
use crate::report::{Recorder, Report, ViolationKind};
use crate::rng::SimRng;
use crate::state::{SimClient, SimCustodian, State as SimState};
use crate::traffic::Host;
use crate::webhook::Webhook;

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
        let api = Router::new()
            .route(paths::MPC_GENERATE, post(generate))
            .route(paths::MPC_BACKUP, post(backup))
            .route(paths::MPC_RECOVER, post(recover))
            .route(paths::CLIENT_ME, get(client_me))
            .route(paths::BACKUP_SHARE_PAIRS, patch(update_backup_pairs))
            // The Swift SDK sends the status update with a trailing slash.
            .route(
                &format!("{}/", paths::BACKUP_SHARE_PAIRS),
                patch(update_backup_pairs),
            )
            .route(paths::BACKUP_SHARE_PAIR, patch(store_cipher_text))
            .route(paths::BACKUP_SHARE_PAIR_CIPHER_TEXT, get(cipher_text))
            .route(paths::SIGNING_SHARE_PAIRS, patch(update_signing_pairs))
            .route(
                &format!("{}/", paths::SIGNING_SHARE_PAIRS),
                patch(update_signing_pairs),
            )
            .route(paths::WALLET_BACKUP_SHARE_PAIRS, get(wallet_backup_pairs))
            .route(paths::WALLET_SIGNING_SHARE_PAIRS, get(wallet_signing_pairs))
            .route(paths::WALLET_PREPARE_EJECT, post(prepare_eject))
            .route(paths::WALLET_EJECTABLE_BACKUP_SHARES, get(client_ejectable))
            .route(paths::WALLET_COMPLETE_EJECT, patch(complete_eject))
            .route(paths::CLIENT_EJECT, post(eject_client))
            .route(
                paths::CUSTODIAN_CLIENTS,
                post(custodian_create_client).get(custodian_list_clients),
            )
            .route(paths::CUSTODIAN_CLIENT, get(custodian_get_client))
            .route(
                paths::CUSTODIAN_CLIENT_SESSIONS,
                post(custodian_create_session),
            )
            .route(paths::CUSTODIAN_ENABLE_EJECT, patch(custodian_enable_eject))
            .route(
                paths::CUSTODIAN_EJECTABLE_BACKUP_SHARES,
                get(custodian_ejectable),
            )
            .route_layer(middleware::from_fn_with_state(self.clone(), api_layer));
        let admin = Router::new()
            .route("/_sim/health", get(|| async { "ok" }))
            .route("/_sim/custodians", post(admin_create_custodian))
            .route("/_sim/clients", post(admin_create_client))
            .route(
                "/_sim/faults",
                get(admin_get_faults)
                    .put(admin_put_faults)
                    .post(admin_add_fault)
                    .delete(admin_clear_faults),
            )
            .route("/_sim/report", get(admin_report).delete(admin_reset_report))
            .route("/_sim/clock/advance", post(admin_advance_clock));
        api.merge(admin)
            .fallback(unknown_route)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.clone())
    }
}

// ---- the API layer ---------------------------------------------------------------------

async fn api_layer(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let kill = request
        .extensions()
        .get::<ConnectInfo<KillSwitch>>()
        .map(|c| c.0.clone());
    let host = Host::of_route(&route);
    let in_last_second = sim
        .state()
        .recorder
        .arrival(host, std::time::Instant::now());
    let limit = sim.rate_limit(host);
    if limit.is_some_and(|limit| in_last_second > u64::from(limit)) {
        sim.state().recorder.throttled(host);
        tracing::info!(%method, %route, %host, "rate limit exceeded: 429");
        return too_many_requests(1);
    }
    let (latency, injection) = sim.fault_state().decide(&method, &route);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if injection != Injection::None {
        sim.state().recorder.fault();
    }
    let injected = match injection {
        Injection::None | Injection::DropAfter => None,
        Injection::Error(status) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let id = if code.is_server_error() {
                "INTERNAL_ERROR"
            } else {
                "BAD_REQUEST"
            };
            Some((code, Json(json!({"id": id, "message": "injected fault"}))).into_response())
        }
        Injection::Throttle(secs) => {
            sim.state().recorder.throttled(host);
            Some(too_many_requests(secs))
        }
        Injection::Drop => Some(drop_connection(kill.as_ref())),
    };
    if let Some(response) = injected {
        tracing::info!(%method, %route, status = response.status().as_u16(), ?injection, "fault injected");
        return response;
    }
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if (400..500).contains(&status) {
        let reason = response
            .extensions()
            .get::<RejectionNote>()
            .map_or_else(|| format!("HTTP {status}"), |n| n.0.clone());
        sim.state()
            .recorder
            .rejection(&method, &route, status, &reason);
    }
    tracing::info!(%method, %route, status, "request");
    if injection == Injection::DropAfter {
        tracing::info!(%method, %route, "fault injected: connection dropped after the request took effect");
        return drop_connection(kill.as_ref());
    }
    response
}

/// Portal's 429 with `Retry-After` in seconds.
fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"id": "TOO_MANY_REQUESTS", "message": "Too many requests"})),
    )
        .into_response();
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// Closes the connection without a response (or answers 503 where that is impossible).
fn drop_connection(kill: Option<&KillSwitch>) -> Response {
    match kill {
        Some(k) => {
            k.trigger();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"id": "INTERNAL_ERROR", "message": "injected fault (connection drop)"})),
        )
            .into_response(),
    }
}

async fn unknown_route(State(sim): State<Simulator>, request: Request) -> Response {
    unrouted(&sim, &request, ApiError::not_found("no such route"), 404)
}

async fn method_not_allowed(State(sim): State<Simulator>, request: Request) -> Response {
    let error = ApiError::flat(405, "BAD_REQUEST", "method not allowed");
    unrouted(&sim, &request, error, 405)
}

/// Counts a request no route took (the API layer never saw it) and its rejection.
fn unrouted(sim: &Simulator, request: &Request, error: ApiError, status: u16) -> Response {
    let mut state = sim.state();
    state.recorder.request();
    state.recorder.rejection(
        request.method().as_str(),
        request.uri().path(),
        status,
        &error.reason(),
    );
    error.into_response()
}

// ---- who is calling ------------------------------------------------------------------------

/// One of Portal's credentialed APIs: whom its bearer token names, and how it shapes the
/// errors of authentication and body parsing.
trait Api: Send + Sync + 'static {
    /// The caller's id for a bearer token, or the 401 Portal answers.
    fn authenticate(state: &mut SimState, token: &str) -> Result<String, ApiError>;

    /// An authentication or body error in this API's shape.
    fn shape(error: ApiError) -> ApiError;
}

/// The Enclave MPC API and the Client API: a Client API key or a client session token.
struct ClientApi;

/// The Custodian API: a Custodian API key; errors as `{"error": ...}`.
struct CustodianApi;

impl Api for ClientApi {
    fn authenticate(state: &mut SimState, token: &str) -> Result<String, ApiError> {
        state.auth_client(token)
    }

    fn shape(error: ApiError) -> ApiError {
        error
    }
}

impl Api for CustodianApi {
    fn authenticate(state: &mut SimState, token: &str) -> Result<String, ApiError> {
        state.auth_custodian(token)
    }

    fn shape(error: ApiError) -> ApiError {
        error.into_custodian()
    }
}

/// The authenticated caller of a route (its `Authorization: Bearer` header), with the
/// simulator it called. An extractor: a route without a body takes it after its `Path`.
struct Caller<A> {
    sim: Simulator,
    /// The client id (Client API) or the custodian id (Custodian API).
    id: String,
    api: PhantomData<A>,
}

type ClientCaller = Caller<ClientApi>;
type CustodianCaller = Caller<CustodianApi>;

impl<A: Api> Caller<A> {
    fn authenticate(sim: &Simulator, headers: &HeaderMap) -> Result<Self, ApiError> {
        let id = bearer(headers)
            .and_then(|token| A::authenticate(&mut sim.state(), &token))
            .map_err(A::shape)?;
        Ok(Self {
            sim: sim.clone(),
            id,
            api: PhantomData,
        })
    }

    /// Runs one state call as this caller and answers its value as JSON (200), or its error.
    fn json<T: Serialize>(
        &self,
        call: impl FnOnce(&mut SimState, &str) -> Result<T, ApiError>,
    ) -> Answer {
        let value = call(&mut self.sim.state(), &self.id)?;
        Ok(Json(value).into_response())
    }

    /// Runs one state call as this caller and answers `status` with no body, or its error.
    fn status(
        &self,
        status: StatusCode,
        call: impl FnOnce(&mut SimState, &str) -> Result<(), ApiError>,
    ) -> Answer {
        call(&mut self.sim.state(), &self.id)?;
        Ok(status.into_response())
    }
}

impl<A: Api> FromRequestParts<Simulator> for Caller<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sim: &Simulator) -> Result<Self, ApiError> {
        Self::authenticate(sim, &parts.headers)
    }
}

/// The caller of a route that takes a JSON body, and that body. The body is read before the
/// caller is authenticated (a body over axum's limit answers 413 whatever the credential), and
/// parsed after, by the handler, so a bad credential answers 401 before a bad body answers 400.
struct Call<A> {
    caller: Caller<A>,
    body: Bytes,
}

type ClientCall = Call<ClientApi>;
type CustodianCall = Call<CustodianApi>;

impl<A: Api> Call<A> {
    /// The body as JSON; the error names where parsing failed, never the input.
    fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse(&self.body).map_err(A::shape)
    }

    /// Like [`parse`](Self::parse), with an empty body meaning the default (`{}`).
    fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        parse_or_default(&self.body).map_err(A::shape)
    }
}

impl<A: Api> FromRequest<Simulator> for Call<A> {
    type Rejection = Response;

    async fn from_request(request: Request, sim: &Simulator) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, sim)
            .await
            .map_err(IntoResponse::into_response)?;
        let caller = Caller::authenticate(sim, &headers).map_err(IntoResponse::into_response)?;
        Ok(Self { caller, body })
    }
}

// ---- helpers -----------------------------------------------------------------------------

/// The bearer token, or Portal's 401 for a missing or malformed header.
fn bearer(headers: &HeaderMap) -> Result<Zeroizing<String>, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized_bare("Authorization header is missing"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized_bare("Incorrect API key format"))?;
    let token = text
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(' '))
        .ok_or_else(|| ApiError::unauthorized_bare("Incorrect API key format"))?;
    Ok(Zeroizing::new(token.to_owned()))
}

/// Parses a JSON body; the error names where parsing failed, never the input.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {}", JsonError::from(e))))
}

/// Like [`parse`], with an empty body meaning the default (`{}`).
fn parse_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.trim_ascii().is_empty() {
        Ok(T::default())
    } else {
        parse(body)
    }
}

type Answer = Result<Response, ApiError>;

// ---- Enclave MPC API ---------------------------------------------------------------------

async fn generate(call: ClientCall) -> Answer {
    let _request: GenerateRequest = call.parse_or_default()?;
    call.caller.json(|state, client| state.generate(client))
}

async fn backup(call: ClientCall) -> Answer {
    let request: BackupRequest = call.parse()?;
    let generate_response = request.parse_generate_response().map_err(|_| {
        ApiError::bad_request("generateResponse must be the JSON text of a /v1/generate response")
    })?;
    let client = call.caller;
    let plan = client
        .sim
        .state()
        .prepare_backup(&client.id, &generate_response)?;
    if let Some(webhook) = &client.sim.inner.webhook {
        for item in &plan.items {
            webhook
                .deliver(&plan.client_id, &item.webhook_method, &item.custodian_share)
                .await
                .map_err(|step| client.webhook_failed("backup", &step))?;
        }
    }
    client.json(|state, _| Ok(state.commit_backup(plan)))
}

async fn recover(call: ClientCall) -> Answer {
    let request: RecoverRequest = call.parse()?;
    let backup_response = request.parse_backup_response().map_err(|_| {
        ApiError::bad_request("backupResponse must be the JSON text of a /v1/backup response")
    })?;
    let client = call.caller;
    let plan = client
        .sim
        .state()
        .prepare_recover(&client.id, &backup_response)?;
    if let Some(webhook) = &client.sim.inner.webhook {
        for item in &plan.items {
            webhook
                .fetch_contains(&plan.client_id, &item.custodian_share)
                .await
                .map_err(|step| {
                    let detail = format!("{step} (backup pair {})", item.backup_pair_id);
                    client.webhook_failed("recover", &detail)
                })?;
        }
    }
    client.json(|state, _| Ok(state.commit_recover(plan)))
}

impl ClientCaller {
    /// A Self-Managed webhook step failed: records the violation and answers as Portal would.
    fn webhook_failed(&self, operation: &str, step: &str) -> ApiError {
        self.sim.state().recorder.violation(
            ViolationKind::WebhookFailed,
            &self.id,
            None,
            format!("{operation}: {step}"),
        );
        ApiError::flat(
            400,
            "WEBHOOK_FAILED",
            format!("self-managed backup webhook failed during {operation}"),
        )
    }
}

// ---- Client API --------------------------------------------------------------------------

async fn client_me(client: ClientCaller) -> Answer {
    client.json(|state, client| {
        state
            .client_me(client)
            .ok_or_else(|| ApiError::not_found("client not found"))
    })
}

async fn update_backup_pairs(call: ClientCall) -> Answer {
    let update: SharePairStatusUpdate = call.parse()?;
    call.caller.status(StatusCode::NO_CONTENT, |state, client| {
        state.update_backup(client, &update)
    })
}

async fn update_signing_pairs(call: ClientCall) -> Answer {
    let update: SharePairStatusUpdate = call.parse()?;
    call.caller.status(StatusCode::NO_CONTENT, |state, client| {
        state.update_signing(client, &update)
    })
}

async fn store_cipher_text(Path(pair_id): Path<String>, call: ClientCall) -> Answer {
    let request: StoreCipherTextRequest = call.parse()?;
    call.caller.status(StatusCode::OK, |state, client| {
        state.store_cipher_text(client, &pair_id, request.client_cipher_text)
    })
}

async fn cipher_text(Path(pair_id): Path<String>, client: ClientCaller) -> Answer {
    client.json(|state, client| {
        let text = state.cipher_text(client, &pair_id)?;
        Ok(json!({"cipherText": text}))
    })
}

async fn wallet_backup_pairs(Path(wallet_id): Path<String>, client: ClientCaller) -> Answer {
    client.json(|state, client| state.wallet_backup_pairs(client, &wallet_id))
}

async fn wallet_signing_pairs(Path(wallet_id): Path<String>, client: ClientCaller) -> Answer {
    client.json(|state, client| state.wallet_signing_pairs(client, &wallet_id))
}

async fn prepare_eject(Path(wallet_id): Path<String>, call: ClientCall) -> Answer {
    let request: PrepareEjectRequest = call.parse()?;
    call.caller.json(|state, client| {
        let share = state.prepare_eject(client, &wallet_id, &request.backup_method)?;
        Ok(PrepareEjectResponse { share })
    })
}

async fn client_ejectable(Path(wallet_id): Path<String>, client: ClientCaller) -> Answer {
    client.json(|state, client| state.ejectable(client, &wallet_id, true))
}

async fn complete_eject(Path(wallet_id): Path<String>, client: ClientCaller) -> Answer {
    client.status(StatusCode::NO_CONTENT, |state, client| {
        state.complete_eject(client, &wallet_id)
    })
}

async fn eject_client(call: ClientCall) -> Answer {
    let _request: EjectClientRequest = call.parse()?;
    call.caller.json(|state, client| {
        let at = state.eject_client(client)?;
        Ok(format!("Client ejected at {at}"))
    })
}

// ---- Custodian API -----------------------------------------------------------------------

async fn custodian_create_client(call: CustodianCall) -> Answer {
    let request: CreateClientRequest = call.parse_or_default()?;
    let account_abstracted = request.is_account_abstracted.unwrap_or(false);
    call.caller
        .json(|state, custodian| state.create_client(custodian, account_abstracted))
}

async fn custodian_list_clients(
    Query(query): Query<HashMap<String, String>>,
    custodian: CustodianCaller,
) -> Answer {
    custodian.json(|state, custodian| {
        state.list_clients(
            custodian,
            query.get("cursor").map(String::as_str),
            query.get("take").map(String::as_str),
        )
    })
}

async fn custodian_get_client(Path(client_id): Path<String>, custodian: CustodianCaller) -> Answer {
    custodian.json(|state, custodian| state.custodian_get_client(custodian, &client_id))
}

async fn custodian_create_session(Path(client_id): Path<String>, call: CustodianCall) -> Answer {
    let _request: CreateSessionRequest = call.parse_or_default()?;
    call.caller
        .json(|state, custodian| state.create_session(custodian, &client_id))
}

async fn custodian_enable_eject(Path(client_id): Path<String>, call: CustodianCall) -> Answer {
    let request: EnableEjectRequest = call.parse()?;
    call.caller
        .json(|state, custodian| state.enable_eject(custodian, &client_id, &request))
}

async fn custodian_ejectable(
    Path((client_id, wallet_id)): Path<(String, String)>,
    custodian: CustodianCaller,
) -> Answer {
    custodian.json(|state, custodian| state.custodian_ejectable(custodian, &client_id, &wallet_id))
}

// ---- admin routes --------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AdminCustodianRequest {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AdminClientRequest {
    custodian_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminClockRequest {
    seconds: u64,
}

/// A fault rule as JSON, or as its text form.
#[derive(Deserialize)]
#[serde(untagged)]
enum RuleInput {
    Text(String),
    Rule(FaultRule),
}

impl RuleInput {
    fn into_rule(self) -> Result<FaultRule, Error> {
        let rule = match self {
            Self::Text(text) => text.parse()?,
            Self::Rule(rule) => rule,
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// An admin route's error: `{"id": "BAD_REQUEST", "message": ...}` with `status`. Admin routes
/// are outside the API layer, so it is never counted as a rejection.
fn admin_error(status: u16, message: impl Into<String>) -> ApiError {
    ApiError::flat(status, "BAD_REQUEST", message)
}

/// An admin route's JSON body; a bad one answers 400 with the parse error.
fn admin_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    parse(body).map_err(|e| admin_error(400, e.reason()))
}

/// Like [`admin_body`], with an empty body meaning the default (`{}`).
fn admin_body_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    parse_or_default(body).map_err(|e| admin_error(400, e.reason()))
}

async fn admin_create_custodian(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let request: AdminCustodianRequest = admin_body_or_default(&body)?;
    let custodian = sim.create_custodian(request.name.as_deref().unwrap_or("custodian"));
    Ok(
        Json(json!({"id": custodian.id, "apiKey": custodian.api_key.expose_secret()}))
            .into_response(),
    )
}

async fn admin_create_client(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let request: AdminClientRequest = admin_body_or_default(&body)?;
    let created = match request.custodian_id {
        Some(id) => sim.create_client_for(&id),
        None => Ok(sim.create_client()),
    };
    let c = created.map_err(|_| admin_error(404, "unknown custodian"))?;
    Ok(Json(json!({
        "custodianId": c.custodian_id,
        "custodianApiKey": c.custodian_api_key.expose_secret(),
        "clientId": c.client_id,
        "clientApiKey": c.client_api_key.expose_secret(),
        "clientSessionToken": c.client_session_token.expose_secret(),
    }))
    .into_response())
}

async fn admin_get_faults(State(sim): State<Simulator>) -> Response {
    Json(sim.faults()).into_response()
}

async fn admin_put_faults(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let inputs: Vec<RuleInput> = admin_body(&body)?;
    let rules: Result<Vec<FaultRule>, Error> =
        inputs.into_iter().map(RuleInput::into_rule).collect();
    rules
        .and_then(|rules| sim.set_faults(rules))
        .map_err(|e| admin_error(400, e.to_string()))?;
    Ok(Json(sim.faults()).into_response())
}

async fn admin_add_fault(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let input: RuleInput = admin_body(&body)?;
    input
        .into_rule()
        .and_then(|rule| sim.add_fault(rule))
        .map_err(|e| admin_error(400, e.to_string()))?;
    Ok(Json(sim.faults()).into_response())
}

async fn admin_clear_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_report(
    State(sim): State<Simulator>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let report = sim.report();
    if query.get("format").is_some_and(|f| f == "text") {
        let mut r = format!("{report}\n").into_response();
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    } else {
        Json(report).into_response()
    }
}

async fn admin_reset_report(State(sim): State<Simulator>) -> Response {
    sim.reset_report();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_advance_clock(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let request: AdminClockRequest = admin_body(&body)?;
    sim.advance_clock(Duration::from_secs(request.seconds));
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- the listener that can drop connections ------------------------------------------------

/// Per-connection switch: once triggered, the connection reads EOF and refuses writes, so the
/// pending response is never sent and the socket is closed.
#[derive(Clone, Debug, Default)]
struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A TCP listener whose connections carry a [`KillSwitch`].
#[derive(Debug)]
struct SimListener(TcpListener);

/// A TCP stream that a [`KillSwitch`] can cut.
#[derive(Debug)]
struct KillableStream {
    inner: TcpStream,
    kill: KillSwitch,
}

impl Listener for SimListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    // Small request/response exchanges: do not wait for more data to batch.
                    let _ = inner.set_nodelay(true);
                    return (
                        KillableStream {
                            inner,
                            kill: KillSwitch::default(),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, SimListener>> for KillSwitch {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().kill.clone()
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.is_triggered() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_triggered() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.is_triggered() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---- a running server ------------------------------------------------------------------------

/// A running simulator: an HTTP server serving both Portal hosts (API and MPC paths) and the
/// admin routes. Dropping it stops the server; [`shutdown`](Self::shutdown) stops it gracefully
/// and waits.
///
/// ```
/// # async fn run() -> Result<(), portal_sim::Error> {
/// use portal_sim::{PortalSim, SimConfig};
///
/// let sim = PortalSim::start(SimConfig::new().with_seed(1)).await?;
/// let keys = sim.create_client();
/// // Point portal_api::ClientBuilder's api and mpc base urls at sim.base_url(), use
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

    /// See [`Simulator::default_custodian`].
    #[must_use]
    pub fn default_custodian(&self) -> SimCustodian {
        self.sim.default_custodian()
    }

    /// See [`Simulator::create_custodian`].
    #[must_use]
    pub fn create_custodian(&self, name: &str) -> SimCustodian {
        self.sim.create_custodian(name)
    }

    /// See [`Simulator::create_client`].
    #[must_use]
    pub fn create_client(&self) -> SimClient {
        self.sim.create_client()
    }

    /// See [`Simulator::create_client_for`].
    ///
    /// # Errors
    /// [`Error::UnknownCustodian`] if there is no such custodian.
    pub fn create_client_for(&self, custodian_id: &str) -> Result<SimClient, Error> {
        self.sim.create_client_for(custodian_id)
    }

    /// See [`Simulator::report`].
    #[must_use]
    pub fn report(&self) -> Report {
        self.sim.report()
    }

    /// See [`Simulator::reset_report`].
    pub fn reset_report(&self) {
        self.sim.reset_report();
    }

    /// See [`Simulator::set_faults`].
    ///
    /// # Errors
    /// [`Error::InvalidFault`] if a rule is invalid.
    pub fn set_faults(&self, rules: Vec<FaultRule>) -> Result<(), Error> {
        self.sim.set_faults(rules)
    }

    /// See [`Simulator::add_fault`].
    ///
    /// # Errors
    /// [`Error::InvalidFault`] if the rule is invalid.
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), Error> {
        self.sim.add_fault(rule)
    }

    /// See [`Simulator::clear_faults`].
    pub fn clear_faults(&self) {
        self.sim.clear_faults();
    }

    /// See [`Simulator::set_rate_limit`].
    pub fn set_rate_limit(&self, host: Host, per_second: Option<u32>) {
        self.sim.set_rate_limit(host, per_second);
    }

    /// See [`Simulator::rate_limit`].
    #[must_use]
    pub fn rate_limit(&self, host: Host) -> Option<u32> {
        self.sim.rate_limit(host)
    }

    /// See [`Simulator::advance_clock`].
    pub fn advance_clock(&self, by: Duration) {
        self.sim.advance_clock(by);
    }

    /// See [`Simulator::set_backup_method`].
    pub fn set_backup_method(&self, method: BackupMethod) {
        self.sim.set_backup_method(method);
    }

    /// See [`Simulator::wallet_private_key_hex`].
    #[must_use]
    pub fn wallet_private_key_hex(&self, wallet_id: &str) -> Option<Zeroizing<String>> {
        self.sim.wallet_private_key_hex(wallet_id)
    }

    /// See [`Simulator::client_details`].
    #[must_use]
    pub fn client_details(&self, client_id: &str) -> Option<ClientDetails> {
        self.sim.client_details(client_id)
    }

    /// See [`Simulator::stored_cipher_text`].
    #[must_use]
    pub fn stored_cipher_text(&self, backup_share_pair_id: &str) -> Option<String> {
        self.sim.stored_cipher_text(backup_share_pair_id)
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
