//! The async HTTP client (feature `client`).
//!
//! Build one with [`ClientBuilder`]; clones are cheap and share the connection pool and the
//! rate limiters.
//!
//! # Secrets
//! Credentials are taken as [`ApiKey`] and turned once into a sensitive `Authorization`
//! header value; neither `Debug` of the client nor any error shows them. Response bodies that
//! carry shares are read into zeroizing buffers. Copies held inside the HTTP and TLS stack are
//! not under our control and are not wiped.

mod rate_limit;
mod retry;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::{Host, Url};
use zeroize::{Zeroize, Zeroizing};

pub use rate_limit::RateLimit;
use rate_limit::RateLimiter;
use retry::Replay;
pub use retry::RetryConfig;

use crate::client_api::{
    BackupSharePair, CipherTextResponse, ClientDetails, EjectClientRequest, EjectableBackupShares,
    PrepareEjectRequest, PrepareEjectResponse, SharePairStatusUpdate, SigningSharePair,
    StoreCipherTextRequest,
};
use crate::custodian_api::{
    ClientList, ClientSession, CreateClientRequest, CreateSessionRequest, CreatedClient,
    EnableEjectRequest, EnableEjectResponse, ListClientsQuery,
};
use crate::error::{Error, JsonError, Result, TransportKind};
use crate::mpc::{
    BackupRequest, BackupResponse, GenerateRequest, GenerateResponse, RecoverRequest,
    RecoverResponse, secret_json,
};
use crate::paths;
use crate::secret::ApiKey;

/// Default base URL of the Client and Custodian APIs.
pub const DEFAULT_API_BASE_URL: &str = "https://api.portalhq.io";
/// Default base URL of the Enclave MPC API.
pub const DEFAULT_MPC_BASE_URL: &str = "https://mpc-client.portalhq.io";
/// Default total timeout of one HTTP attempt. MPC operations take seconds, so this is generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Which kind of client credential is configured (shown in `Debug`, never the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CredentialKind {
    ClientApiKey,
    ClientSessionToken,
}

/// Builds a [`Client`].
///
/// ```
/// # #[cfg(feature = "client")] {
/// use std::time::Duration;
/// use portal_api::{ApiKey, ClientBuilder};
/// use portal_api::client::{RateLimit, RetryConfig};
///
/// let client = ClientBuilder::new()
///     .with_api_base_url("http://127.0.0.1:8080")
///     .with_mpc_base_url("http://127.0.0.1:8080")
///     .with_client_api_key(ApiKey::from("test-client-key"))
///     .with_timeout(Duration::from_secs(30))
///     .with_retry(RetryConfig::default().with_max_retries(5))
///     .with_mpc_rate_limit(RateLimit::per_minute(50).with_burst(2))
///     .build()?;
/// assert!(!format!("{client:?}").contains("test-client-key"));
/// # }
/// # Ok::<(), portal_api::Error>(())
/// ```
#[must_use]
pub struct ClientBuilder {
    api_base_url: String,
    mpc_base_url: String,
    client_credential: Option<(CredentialKind, ApiKey)>,
    custodian_api_key: Option<ApiKey>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryConfig,
    api_rate_limit: Option<RateLimit>,
    mpc_rate_limit: Option<RateLimit>,
    max_response_bytes: usize,
    user_agent: String,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field(
                "client_credential",
                &self.client_credential.as_ref().map(|c| c.0),
            )
            .field("custodian_api_key", &self.custodian_api_key.is_some())
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("api_rate_limit", &self.api_rate_limit)
            .field("mpc_rate_limit", &self.mpc_rate_limit)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Portal's production hosts, no credentials, default timeouts, retries and rate limits.
    pub fn new() -> Self {
        Self {
            api_base_url: DEFAULT_API_BASE_URL.to_owned(),
            mpc_base_url: DEFAULT_MPC_BASE_URL.to_owned(),
            client_credential: None,
            custodian_api_key: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryConfig::default(),
            api_rate_limit: Some(RateLimit::CLIENT_API_DEFAULT),
            mpc_rate_limit: Some(RateLimit::MPC_API_DEFAULT),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: concat!("portal-api-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// Base URL of the Client and Custodian APIs (default `https://api.portalhq.io`).
    ///
    /// Must be `https://`, or `http://` to a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`); checked by [`build`](Self::build). A path prefix is kept.
    pub fn with_api_base_url(mut self, url: impl Into<String>) -> Self {
        self.api_base_url = url.into();
        self
    }

    /// Base URL of the Enclave MPC API (default `https://mpc-client.portalhq.io`); same rules
    /// as [`with_api_base_url`](Self::with_api_base_url).
    pub fn with_mpc_base_url(mut self, url: impl Into<String>) -> Self {
        self.mpc_base_url = url.into();
        self
    }

    /// Authenticates Client API and MPC API calls with a Client API Key. Replaces a session
    /// token set before.
    pub fn with_client_api_key(mut self, key: ApiKey) -> Self {
        self.client_credential = Some((CredentialKind::ClientApiKey, key));
        self
    }

    /// Authenticates Client API and MPC API calls with a Client Session Token. Replaces a
    /// Client API Key set before.
    pub fn with_client_session_token(mut self, token: ApiKey) -> Self {
        self.client_credential = Some((CredentialKind::ClientSessionToken, token));
        self
    }

    /// Authenticates Custodian API calls with the Custodian (Portal) API Key.
    pub fn with_custodian_api_key(mut self, key: ApiKey) -> Self {
        self.custodian_api_key = Some(key);
        self
    }

    /// Total timeout of one HTTP attempt (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retry policy (default: 3 retries, 250 ms initial backoff).
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Rate limit of the Client and Custodian APIs (default 200 a minute).
    pub fn with_api_rate_limit(mut self, limit: RateLimit) -> Self {
        self.api_rate_limit = Some(limit);
        self
    }

    /// Rate limit of the Enclave MPC API (default 50 a minute).
    pub fn with_mpc_rate_limit(mut self, limit: RateLimit) -> Self {
        self.mpc_rate_limit = Some(limit);
        self
    }

    /// Turns client-side rate limiting off for both hosts.
    pub fn without_rate_limits(mut self) -> Self {
        self.api_rate_limit = None;
        self.mpc_rate_limit = None;
        self
    }

    /// Largest response body accepted (default 16 MiB).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Validates the settings and builds the client.
    ///
    /// # Errors
    /// [`Error::InvalidBaseUrl`] for a malformed or insecure base URL,
    /// [`Error::InvalidConfig`] for a credential that cannot be sent in a header or an HTTP
    /// stack that cannot be set up.
    pub fn build(self) -> Result<Client> {
        let api_base = parse_base_url("api", &self.api_base_url)?;
        let mpc_base = parse_base_url("mpc", &self.mpc_base_url)?;
        let client_auth = self
            .client_credential
            .map(|(kind, key)| bearer(&key).map(|h| (kind, h)))
            .transpose()?;
        let custodian_auth = self.custodian_api_key.as_ref().map(bearer).transpose()?;
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent)
            .build()
            .map_err(|_| Error::InvalidConfig {
                reason: "the HTTP client could not be initialised",
            })?;
        Ok(Client {
            http,
            shared: Arc::new(Shared {
                api_base,
                mpc_base,
                retry: self.retry,
                max_response_bytes: self.max_response_bytes,
                api_limiter: RateLimiter::new(self.api_rate_limit),
                mpc_limiter: RateLimiter::new(self.mpc_rate_limit),
            }),
            client_auth: client_auth.map(|(kind, h)| Arc::new((kind, h))),
            custodian_auth: custodian_auth.map(Arc::new),
        })
    }
}

/// Parses and checks a base URL: https, or plain http to loopback only; no credentials,
/// query or fragment.
fn parse_base_url(which: &'static str, raw: &str) -> Result<Url> {
    let invalid = |reason| Error::InvalidBaseUrl { which, reason };
    let url = Url::parse(raw).map_err(|_| invalid("not a valid absolute url"))?;
    if url.cannot_be_a_base() {
        return Err(invalid("not a valid base url"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the url are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(url.host()) => Ok(url),
        "http" => Err(invalid("plain http is only allowed to loopback hosts")),
        _ => Err(invalid("the scheme must be https")),
    }
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `Bearer <key>` as a sensitive header value.
fn bearer(key: &ApiKey) -> Result<HeaderValue> {
    let value = Zeroizing::new(format!("Bearer {}", key.expose_secret()));
    let mut header = HeaderValue::from_str(&value).map_err(|_| Error::InvalidConfig {
        reason: "the credential contains characters not allowed in an HTTP header",
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// State shared by all clones of a client.
#[derive(Debug)]
struct Shared {
    api_base: Url,
    mpc_base: Url,
    retry: RetryConfig,
    max_response_bytes: usize,
    api_limiter: RateLimiter,
    mpc_limiter: RateLimiter,
}

/// An async client for Portal's Enclave MPC API, Client API and Custodian API.
///
/// Cheap to clone; clones share the connection pool and the rate limiters, so the limits hold
/// across every clone (and across clients derived with
/// [`with_client_session_token`](Self::with_client_session_token)).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    shared: Arc<Shared>,
    client_auth: Option<Arc<(CredentialKind, HeaderValue)>>,
    custodian_auth: Option<Arc<HeaderValue>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_base_url", &self.shared.api_base.as_str())
            .field("mpc_base_url", &self.shared.mpc_base.as_str())
            .field("client_credential", &self.client_auth.as_ref().map(|a| a.0))
            .field("custodian_api_key", &self.custodian_auth.is_some())
            .field("retry", &self.shared.retry)
            .field("api_rate_limit", &self.shared.api_limiter.limit())
            .field("mpc_rate_limit", &self.shared.mpc_limiter.limit())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
/// Which Portal host a call goes to.
enum Target {
    Api,
    Mpc,
}

#[derive(Clone, Copy, Debug)]
enum Auth {
    Client,
    Custodian,
}

/// One logical request.
struct Call<'a> {
    method: Method,
    host: Target,
    template: &'static str,
    params: &'a [&'a str],
    query: &'a [(&'static str, String)],
    body: Option<Bytes>,
    auth: Auth,
    replay: Replay,
}

impl Client {
    /// Shorthand for [`ClientBuilder::new`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A client acting with a different client credential (e.g. a session token just issued
    /// by [`create_client_session`](Self::create_client_session)), sharing this client's
    /// connection pool, rate limiters, settings and custodian key.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the token cannot be sent in a header.
    pub fn with_client_session_token(&self, token: &ApiKey) -> Result<Self> {
        let header = bearer(token)?;
        Ok(Self {
            client_auth: Some(Arc::new((CredentialKind::ClientSessionToken, header))),
            ..self.clone()
        })
    }

    /// Like [`with_client_session_token`](Self::with_client_session_token), with a Client API
    /// Key.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the key cannot be sent in a header.
    pub fn with_client_api_key(&self, key: &ApiKey) -> Result<Self> {
        let header = bearer(key)?;
        Ok(Self {
            client_auth: Some(Arc::new((CredentialKind::ClientApiKey, header))),
            ..self.clone()
        })
    }

    /// The configured rate limit of the Client and Custodian APIs (`None` = unlimited).
    #[must_use]
    pub fn api_rate_limit(&self) -> Option<RateLimit> {
        self.shared.api_limiter.limit()
    }

    /// The configured rate limit of the Enclave MPC API (`None` = unlimited).
    #[must_use]
    pub fn mpc_rate_limit(&self) -> Option<RateLimit> {
        self.shared.mpc_limiter.limit()
    }

    // ---- Enclave MPC API -------------------------------------------------------------------

    /// `POST /v1/generate` with `{}`: a new wallet's client signing shares.
    ///
    /// Not retried once the request may have reached Portal. Afterwards confirm storage with
    /// [`update_signing_share_pairs`](Self::update_signing_share_pairs).
    ///
    /// # Errors
    /// Any [`Error`]; Portal's error id is in [`Error::error_id`].
    pub async fn generate(&self) -> Result<GenerateResponse> {
        self.generate_with(&GenerateRequest::default()).await
    }

    /// `POST /v1/generate` with explicit options.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn generate_with(&self, request: &GenerateRequest) -> Result<GenerateResponse> {
        self.mpc(paths::MPC_GENERATE, secret_body(request)?).await
    }

    /// `POST /v1/backup` with `{"generateResponse": "<generate_response as JSON text>"}`:
    /// client backup shares keyed by curve, with their backup share pair ids.
    ///
    /// Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn backup(&self, generate_response: &GenerateResponse) -> Result<BackupResponse> {
        let request = BackupRequest::new(generate_response).map_err(encode)?;
        self.mpc(paths::MPC_BACKUP, secret_body(&request)?).await
    }

    /// `POST /v1/recover` with `{"backupResponse": "<backup_response as JSON text>"}`: new
    /// client signing shares.
    ///
    /// Retried only when the connection could not be made. Afterwards confirm storage with
    /// [`update_signing_share_pairs`](Self::update_signing_share_pairs).
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn recover(&self, backup_response: &BackupResponse) -> Result<RecoverResponse> {
        let request = RecoverRequest::new(backup_response).map_err(encode)?;
        self.mpc(paths::MPC_RECOVER, secret_body(&request)?).await
    }

    async fn mpc<T: DeserializeOwned>(&self, template: &'static str, body: Bytes) -> Result<T> {
        let call = Call {
            method: Method::POST,
            host: Target::Mpc,
            template,
            params: &[],
            query: &[],
            body: Some(body),
            auth: Auth::Client,
            replay: Replay::ConnectOnly,
        };
        self.json(call).await
    }

    // ---- Client API ------------------------------------------------------------------------

    /// `GET /api/v3/clients/me`: the client with wallets and share pairs.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn client_me(&self) -> Result<ClientDetails> {
        self.json(self.client_get(paths::CLIENT_ME, &[])).await
    }

    /// `PATCH /api/v3/clients/me/backup-share-pairs/{id}` with `{"clientCipherText"}`: stores
    /// the client backup ciphertext with Portal (Portal-Managed Backups). Safe to retry.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn store_cipher_text(
        &self,
        backup_share_pair_id: &str,
        cipher_text: &str,
    ) -> Result<()> {
        let body = StoreCipherTextRequest {
            client_cipher_text: cipher_text.to_owned(),
        };
        let id = [checked_id("backupSharePairId", backup_share_pair_id)?];
        let call = Call {
            body: Some(plain_body(&body)?),
            ..self.client_call(Method::PATCH, paths::BACKUP_SHARE_PAIR, &id)
        };
        self.empty(call).await
    }

    /// `GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text`: the stored client backup
    /// ciphertext.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn cipher_text(&self, backup_share_pair_id: &str) -> Result<String> {
        let id = [checked_id("backupSharePairId", backup_share_pair_id)?];
        let response: CipherTextResponse = self
            .json(self.client_get(paths::BACKUP_SHARE_PAIR_CIPHER_TEXT, &id))
            .await?;
        Ok(response.cipher_text)
    }

    /// `PATCH /api/v3/clients/me/backup-share-pairs` (204): status update of backup pairs.
    /// Safe to retry.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn update_backup_share_pairs(&self, update: &SharePairStatusUpdate) -> Result<()> {
        let call = Call {
            body: Some(plain_body(update)?),
            ..self.client_call(Method::PATCH, paths::BACKUP_SHARE_PAIRS, &[])
        };
        self.empty(call).await
    }

    /// `PATCH /api/v3/clients/me/signing-share-pairs` (204): status update of signing pairs,
    /// required after generate and recover. Safe to retry.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn update_signing_share_pairs(&self, update: &SharePairStatusUpdate) -> Result<()> {
        let call = Call {
            body: Some(plain_body(update)?),
            ..self.client_call(Method::PATCH, paths::SIGNING_SHARE_PAIRS, &[])
        };
        self.empty(call).await
    }

    /// `GET /api/v3/clients/me/wallets/{walletId}/backup-share-pairs`.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn wallet_backup_share_pairs(&self, wallet_id: &str) -> Result<Vec<BackupSharePair>> {
        let id = [checked_id("walletId", wallet_id)?];
        self.json(self.client_get(paths::WALLET_BACKUP_SHARE_PAIRS, &id))
            .await
    }

    /// `GET /api/v3/clients/me/wallets/{walletId}/signing-share-pairs`.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn wallet_signing_share_pairs(
        &self,
        wallet_id: &str,
    ) -> Result<Vec<SigningSharePair>> {
        let id = [checked_id("walletId", wallet_id)?];
        self.json(self.client_get(paths::WALLET_SIGNING_SHARE_PAIRS, &id))
            .await
    }

    /// `POST /api/v3/clients/me/wallets/{walletId}/prepare-eject`: the custodian backup share
    /// for a client-side eject. Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn prepare_eject(
        &self,
        wallet_id: &str,
        request: &PrepareEjectRequest,
    ) -> Result<PrepareEjectResponse> {
        let id = [checked_id("walletId", wallet_id)?];
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..self.client_call(Method::POST, paths::WALLET_PREPARE_EJECT, &id)
        };
        self.json(call).await
    }

    /// `GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares`. Portal clears the
    /// wallet's eject window as a side effect, so this is retried only when the connection
    /// could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn ejectable_backup_shares(&self, wallet_id: &str) -> Result<EjectableBackupShares> {
        let id = [checked_id("walletId", wallet_id)?];
        let call = Call {
            replay: Replay::ConnectOnly,
            ..self.client_get(paths::WALLET_EJECTABLE_BACKUP_SHARES, &id)
        };
        self.json(call).await
    }

    /// `PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject` (not confirmed by
    /// Portal's reference). Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn complete_eject(&self, wallet_id: &str) -> Result<()> {
        let id = [checked_id("walletId", wallet_id)?];
        let call = Call {
            replay: Replay::ConnectOnly,
            ..self.client_call(Method::PATCH, paths::WALLET_COMPLETE_EJECT, &id)
        };
        self.empty(call).await
    }

    /// `POST /api/v3/clients/me/eject`: marks the client and its wallets ejected
    /// (irreversible). Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn eject_client(&self, request: &EjectClientRequest) -> Result<()> {
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..self.client_call(Method::POST, paths::CLIENT_EJECT, &[])
        };
        self.empty(call).await
    }

    // ---- Custodian API ---------------------------------------------------------------------

    /// `POST /api/v3/custodians/me/clients`: a new client with its API key and a session
    /// token. Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn create_client(&self, request: &CreateClientRequest) -> Result<CreatedClient> {
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..self.custodian_call(Method::POST, paths::CUSTODIAN_CLIENTS, &[])
        };
        self.json(call).await
    }

    /// `GET /api/v3/custodians/me/clients/{clientId}`.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn get_client(&self, client_id: &str) -> Result<ClientDetails> {
        let id = [checked_id("clientId", client_id)?];
        self.json(self.custodian_call(Method::GET, paths::CUSTODIAN_CLIENT, &id))
            .await
    }

    /// `GET /api/v3/custodians/me/clients?cursor=&take=`: one page of clients; pass the
    /// returned `metadata.cursor` to get the next.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn list_clients(&self, query: &ListClientsQuery) -> Result<ClientList> {
        let mut pairs = Vec::new();
        if let Some(cursor) = &query.cursor {
            pairs.push(("cursor", cursor.clone()));
        }
        if let Some(take) = query.take {
            pairs.push(("take", take.to_string()));
        }
        let call = Call {
            query: &pairs,
            ..self.custodian_call(Method::GET, paths::CUSTODIAN_CLIENTS, &[])
        };
        self.json(call).await
    }

    /// `POST /api/v3/custodians/me/clients/{clientId}/sessions`: a new Client Session Token.
    /// Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn create_client_session(
        &self,
        client_id: &str,
        request: &CreateSessionRequest,
    ) -> Result<ClientSession> {
        let id = [checked_id("clientId", client_id)?];
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..self.custodian_call(Method::POST, paths::CUSTODIAN_CLIENT_SESSIONS, &id)
        };
        self.json(call).await
    }

    /// `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject`: opens an eject window
    /// for a wallet. Safe to retry (it sets the window).
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn enable_eject(
        &self,
        client_id: &str,
        request: &EnableEjectRequest,
    ) -> Result<EnableEjectResponse> {
        let id = [checked_id("clientId", client_id)?];
        let call = Call {
            body: Some(plain_body(request)?),
            ..self.custodian_call(Method::PATCH, paths::CUSTODIAN_ENABLE_EJECT, &id)
        };
        self.json(call).await
    }

    /// `GET /api/v3/custodians/me/clients/{clientId}/wallets/{walletId}/ejectable-backup-shares`.
    /// Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn custodian_ejectable_backup_shares(
        &self,
        client_id: &str,
        wallet_id: &str,
    ) -> Result<EjectableBackupShares> {
        let params = [
            checked_id("clientId", client_id)?,
            checked_id("walletId", wallet_id)?,
        ];
        let call = Call {
            replay: Replay::ConnectOnly,
            ..self.custodian_call(
                Method::GET,
                paths::CUSTODIAN_EJECTABLE_BACKUP_SHARES,
                &params,
            )
        };
        self.json(call).await
    }

    // ---- plumbing --------------------------------------------------------------------------

    fn client_call<'a>(
        &self,
        method: Method,
        template: &'static str,
        params: &'a [&'a str],
    ) -> Call<'a> {
        Call {
            method,
            host: Target::Api,
            template,
            params,
            query: &[],
            body: None,
            auth: Auth::Client,
            replay: Replay::Safe,
        }
    }

    fn client_get<'a>(&self, template: &'static str, params: &'a [&'a str]) -> Call<'a> {
        self.client_call(Method::GET, template, params)
    }

    fn custodian_call<'a>(
        &self,
        method: Method,
        template: &'static str,
        params: &'a [&'a str],
    ) -> Call<'a> {
        Call {
            auth: Auth::Custodian,
            ..self.client_call(method, template, params)
        }
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let (status, body) = self.execute(call).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            status,
            source: JsonError::from(e),
        })
    }

    async fn empty(&self, call: Call<'_>) -> Result<()> {
        self.execute(call).await.map(drop)
    }

    fn url(&self, call: &Call<'_>) -> Result<Url> {
        let mut url = match call.host {
            Target::Api => self.shared.api_base.clone(),
            Target::Mpc => self.shared.mpc_base.clone(),
        };
        let segments = paths::fill(call.template, call.params).ok_or(Error::InvalidConfig {
            reason: "route parameters do not match the route",
        })?;
        {
            let mut path = url.path_segments_mut().map_err(|()| Error::InvalidConfig {
                reason: "base url cannot take a path",
            })?;
            path.pop_if_empty().extend(segments);
        }
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Sends a call with rate limiting and retries; returns the status and body of the first
    /// success.
    async fn execute(&self, call: Call<'_>) -> Result<(u16, Zeroizing<Vec<u8>>)> {
        let auth =
            match call.auth {
                Auth::Client => self.client_auth.as_ref().map(|a| a.1.clone()).ok_or(
                    Error::MissingCredential {
                        credential: "client api key or client session token",
                    },
                )?,
                Auth::Custodian => {
                    self.custodian_auth
                        .as_deref()
                        .cloned()
                        .ok_or(Error::MissingCredential {
                            credential: "custodian api key",
                        })?
                }
            };
        let url = self.url(&call)?;
        let limiter = match call.host {
            Target::Api => &self.shared.api_limiter,
            Target::Mpc => &self.shared.mpc_limiter,
        };
        let mut retry: u32 = 0;
        let result = loop {
            limiter.acquire().await;
            let outcome = self.attempt(&call, &url, &auth).await;
            let error = match outcome {
                Ok(done) => break Ok(done),
                Err(error) => error,
            };
            let Some(delay) = self.shared.retry.delay(retry, &error, call.replay) else {
                break Err(error);
            };
            tracing::debug!(
                route = call.template,
                retry,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying portal request"
            );
            tokio::time::sleep(delay).await;
            retry = retry.saturating_add(1);
        };
        if let Some(body) = call.body {
            wipe(body);
        }
        result
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        url: &Url,
        auth: &HeaderValue,
    ) -> Result<(u16, Zeroizing<Vec<u8>>)> {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .header(AUTHORIZATION, auth.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| retry::parse_retry_after(v.as_bytes()));
        let body = read_body(&mut response, self.shared.max_response_bytes).await?;
        tracing::debug!(
            route = call.template,
            status = status.as_u16(),
            "portal response"
        );
        if status.is_success() {
            Ok((status.as_u16(), body))
        } else {
            Err(Error::from_response(status.as_u16(), &body, retry_after))
        }
    }
}

/// Rejects ids that would change the route: empty, `.` and `..` (which URL path handling
/// would resolve). Everything else is percent-encoded as one path segment.
fn checked_id<'a>(name: &'static str, id: &'a str) -> Result<&'a str> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(Error::InvalidArgument {
            name,
            reason: "must not be empty, `.` or `..`",
        });
    }
    Ok(id)
}

fn encode(source: JsonError) -> Error {
    Error::Encode { source }
}

/// A request body that carries shares: serialized into an exact-size buffer.
fn secret_body<T: Serialize>(value: &T) -> Result<Bytes> {
    let text = secret_json(value).map_err(encode)?;
    Ok(Bytes::copy_from_slice(text.expose_secret().as_bytes()))
}

fn plain_body<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| encode(JsonError::from(e)))
}

/// Overwrites a request body once no one else holds it (best effort).
fn wipe(body: Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

fn transport(e: reqwest::Error) -> Error {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Other
    };
    Error::transport(kind, e.without_url())
}

/// Reads a body into a zeroizing buffer, growing it without leaving unwiped copies behind.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Zeroizing<Vec<u8>>> {
    let hint = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(limit);
    let mut buf = Zeroizing::new(Vec::with_capacity(hint));
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        let needed = buf
            .len()
            .checked_add(chunk.len())
            .filter(|n| *n <= limit)
            .ok_or(Error::ResponseTooLarge { limit })?;
        if needed > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                needed.max(buf.capacity().saturating_mul(2)).min(limit),
            ));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk);
        wipe(chunk);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        for ok in [
            "https://api.portalhq.io",
            "https://example.com/prefix/",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:3000",
            "http://localhost:1234",
            "http://LOCALHOST",
        ] {
            assert!(parse_base_url("api", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "http://[::2]",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "https://user:pw@example.com",
            "https://example.com/?q=1",
            "not a url",
            "mailto:x@example.com",
        ] {
            let err = parse_base_url("api", bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidBaseUrl { which: "api", .. }),
                "{bad}"
            );
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn urls_keep_prefix_and_encode_ids() {
        let client = ClientBuilder::new()
            .with_api_base_url("https://example.com/portal/")
            .build()
            .unwrap();
        let params = ["a/b?c"];
        let call = client.client_get(paths::BACKUP_SHARE_PAIR_CIPHER_TEXT, &params);
        assert_eq!(
            client.url(&call).unwrap().as_str(),
            "https://example.com/portal/api/v3/clients/me/backup-share-pairs/a%2Fb%3Fc/cipher-text"
        );
        assert!(checked_id("walletId", "..").is_err());
        assert!(checked_id("walletId", "").is_err());
        assert!(checked_id("walletId", "w1").is_ok());
    }

    #[test]
    fn debug_hides_credentials() {
        let builder = ClientBuilder::new()
            .with_client_session_token(ApiKey::from("cst-secret-value"))
            .with_custodian_api_key(ApiKey::from("custodian-secret-value"));
        let text = format!("{builder:?} {builder:#?}");
        assert!(!text.contains("secret-value"), "{text}");
        let client = builder.build().unwrap();
        let text = format!("{client:?} {client:#?}");
        assert!(!text.contains("secret-value"), "{text}");
        assert!(text.contains("ClientSessionToken"));
    }

    #[test]
    fn header_unsafe_credentials_are_rejected_without_echo() {
        let err = ClientBuilder::new()
            .with_client_api_key(ApiKey::from("bad\nkey-secret"))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }));
        assert!(!format!("{err} {err:?}").contains("key-secret"));
    }

    #[test]
    fn defaults() {
        let client = ClientBuilder::new().build().unwrap();
        assert_eq!(client.api_rate_limit(), Some(RateLimit::CLIENT_API_DEFAULT));
        assert_eq!(client.mpc_rate_limit(), Some(RateLimit::MPC_API_DEFAULT));
        assert_eq!(client.shared.api_base.as_str(), "https://api.portalhq.io/");
        assert_eq!(
            client.shared.mpc_base.as_str(),
            "https://mpc-client.portalhq.io/"
        );
        let unlimited = ClientBuilder::new().without_rate_limits().build().unwrap();
        assert_eq!(unlimited.api_rate_limit(), None);
    }
}
