//! The simulated Portal: custodians, clients, credentials, wallets, share pairs and their
//! lifecycle, and every check Portal would make. Pure and synchronous; the HTTP layer in
//! [`crate::server`] holds it behind a mutex and never across an `await`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use portal_api::client_api::{
    BackupSharePair as WireBackupPair, ClientDetails, ClientMetadata, Custodian as WireCustodian,
    EjectableBackupShares, Environment, Namespace, SharePairStatusUpdate,
    SigningSharePair as WireSigningPair, Wallet as WireWallet,
};
use portal_api::custodian_api::{
    ClientList, ClientSession, CreatedClient, EnableEjectRequest, EnableEjectResponse,
    ListMetadata, MAX_TAKE,
};
use portal_api::mpc::{CurveShare, CurveShares};
use portal_api::{
    ApiKey, BackupMethod, Curve, SecretShare, SharePairStatus, SharePairUpdateStatus,
};

use zeroize::Zeroizing;

use crate::clock::{Clock, Millis, format_iso, parse_iso};
use crate::config::StatusView;
use crate::error_body::ApiError;
use crate::report::{Recorder, ViolationKind};
use crate::rng::SimRng;
use crate::shares::{self, WalletKey};

/// A Client Session Token expires after this long without use.
const SESSION_IDLE: i64 = 24 * 3600 * 1000;
/// ... and after this long in any case.
const SESSION_MAX: i64 = 7 * 24 * 3600 * 1000;
/// Default eject window.
const EJECT_DEFAULT: i64 = 5 * 60 * 1000;
/// Shortest eject window Portal accepts.
const EJECT_MIN: i64 = 60 * 1000;

const ID_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";

/// A custodian and its credentials, as the admin helpers hand them out.
#[derive(Debug)]
#[non_exhaustive]
pub struct SimCustodian {
    /// The custodian id.
    pub id: String,
    /// Its Custodian (Portal) API key.
    pub api_key: ApiKey,
}

/// A client with all the credentials a test needs, as the admin helpers hand them out.
#[derive(Debug)]
#[non_exhaustive]
pub struct SimClient {
    /// The owning custodian.
    pub custodian_id: String,
    /// The owning custodian's API key.
    pub custodian_api_key: ApiKey,
    /// The client id.
    pub client_id: String,
    /// The client's API key.
    pub client_api_key: ApiKey,
    /// A Client Session Token of the client.
    pub client_session_token: ApiKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CredentialKind {
    ApiKey,
    Session,
}

struct Credential {
    client_id: String,
    kind: CredentialKind,
    issued: Millis,
    last_used: Millis,
}

struct Custodian {
    id: String,
    name: String,
    environment_id: String,
}

struct Client {
    id: String,
    custodian_id: String,
    created_at: Millis,
    ejected_at: Option<Millis>,
    is_account_abstracted: bool,
    /// Wallet ids, one per curve.
    wallets: BTreeMap<Curve, String>,
}

struct Wallet {
    id: String,
    client_id: String,
    curve: Curve,
    created_at: Millis,
    key: WalletKey,
    address: String,
    ejectable_until: Option<Millis>,
    /// Whether a backup's shares were handed out for eject (prepare-eject or
    /// ejectable-backup-shares).
    eject_shares_served: bool,
    signing_pairs: Vec<String>,
    backup_pairs: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SigningStatus {
    StoredDatabase,
    StoredClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BackupStatus {
    /// `STORED_CUSTODIAN_BACKUP_SHARE`
    CustodianShare,
    /// `STORED_CLIENT_BACKUP_SHARE_KEY`
    ClientShareKey,
    /// `STORED_CLIENT_BACKUP_SHARE`
    ClientShare,
}

impl BackupStatus {
    fn wire(self) -> SharePairStatus {
        match self {
            Self::CustodianShare => SharePairStatus::StoredCustodianBackupShare,
            Self::ClientShareKey => SharePairStatus::StoredClientBackupShareKey,
            Self::ClientShare => SharePairStatus::StoredClientBackupShare,
        }
    }
}

struct SigningPair {
    id: String,
    wallet_id: String,
    client_id: String,
    created_at: Millis,
    status: SigningStatus,
    client_share: SecretShare,
}

struct BackupPair {
    id: String,
    wallet_id: String,
    client_id: String,
    created_at: Millis,
    method: BackupMethod,
    status: BackupStatus,
    client_share: SecretShare,
    custodian_share: SecretShare,
    cipher_text: Option<String>,
}

/// One curve of a backup that passed the checks and waits for the webhook (if any).
pub(crate) struct PlannedBackup {
    curve: Curve,
    wallet_id: String,
    backup_pair_id: String,
    client_share: SecretShare,
    /// The custodian backup share (JSON text) to keep or deliver.
    pub(crate) custodian_share: SecretShare,
    /// The `backupMethod` the webhook sees, e.g. `CUSTOM-SECP256K1`.
    pub(crate) webhook_method: String,
}

/// A backup that passed the checks.
pub(crate) struct BackupPlan {
    pub(crate) client_id: String,
    pub(crate) items: Vec<PlannedBackup>,
}

/// One curve of a recover that passed the checks.
pub(crate) struct PlannedRecover {
    curve: Curve,
    wallet_id: String,
    /// The backup pair recovered from.
    pub(crate) backup_pair_id: String,
    /// The custodian share the webhook must give back (Self-Managed mode).
    pub(crate) custodian_share: SecretShare,
}

/// A recover that passed the checks.
pub(crate) struct RecoverPlan {
    pub(crate) client_id: String,
    pub(crate) items: Vec<PlannedRecover>,
}

/// All simulated state.
pub(crate) struct State {
    backup_with_portal: bool,
    backup_method: BackupMethod,
    status_view: StatusView,
    pub(crate) rng: SimRng,
    pub(crate) clock: Clock,
    custodians: BTreeMap<String, Custodian>,
    custodian_keys: HashMap<String, String>,
    clients: BTreeMap<String, Client>,
    client_order: Vec<String>,
    credentials: HashMap<String, Credential>,
    wallets: HashMap<String, Wallet>,
    signing: HashMap<String, SigningPair>,
    backups: HashMap<String, BackupPair>,
    pub(crate) recorder: Recorder,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("backup_with_portal", &self.backup_with_portal)
            .field("custodians", &self.custodians.len())
            .field("clients", &self.clients.len())
            .field("wallets", &self.wallets.len())
            .field("signing_pairs", &self.signing.len())
            .field("backup_pairs", &self.backups.len())
            .finish_non_exhaustive()
    }
}

fn copy(share: &SecretShare) -> SecretShare {
    SecretShare::from(share.expose_secret())
}

fn key_copy(key: &ApiKey) -> ApiKey {
    ApiKey::from(key.expose_secret())
}

impl State {
    pub(crate) fn new(
        backup_with_portal: bool,
        backup_method: BackupMethod,
        status_view: StatusView,
        rng: SimRng,
    ) -> Self {
        Self {
            backup_with_portal,
            backup_method,
            status_view,
            rng,
            clock: Clock::default(),
            custodians: BTreeMap::new(),
            custodian_keys: HashMap::new(),
            clients: BTreeMap::new(),
            client_order: Vec::new(),
            credentials: HashMap::new(),
            wallets: HashMap::new(),
            signing: HashMap::new(),
            backups: HashMap::new(),
            recorder: Recorder::default(),
        }
    }

    /// A cuid-like id (`c` + 24 base-36 characters), Portal's id style.
    fn new_id(&mut self) -> String {
        format!("c{}", self.rng.chars(ID_ALPHABET, 24))
    }

    /// A UUID-shaped secret key.
    fn new_key(&mut self) -> ApiKey {
        let h = self.rng.chars(HEX, 32);
        let part = |a: usize, b: usize| h.get(a..b).unwrap_or("0");
        ApiKey::new(format!(
            "{}-{}-4{}-a{}-{}",
            part(0, 8),
            part(8, 12),
            part(13, 16),
            part(17, 20),
            part(20, 32)
        ))
    }

    // ---- admin -------------------------------------------------------------------------

    pub(crate) fn create_custodian(&mut self, name: &str, key: Option<&ApiKey>) -> SimCustodian {
        let id = self.new_id();
        let environment_id = self.new_id();
        let api_key = key.map_or_else(|| self.new_key(), key_copy);
        self.custodian_keys
            .insert(api_key.expose_secret().to_owned(), id.clone());
        self.custodians.insert(
            id.clone(),
            Custodian {
                id: id.clone(),
                name: name.to_owned(),
                environment_id,
            },
        );
        SimCustodian { id, api_key }
    }

    /// A key of the custodian (the first one registered).
    pub(crate) fn custodian_key(&self, custodian_id: &str) -> Option<ApiKey> {
        self.custodian_keys
            .iter()
            .find(|(_, id)| id.as_str() == custodian_id)
            .map(|(k, _)| ApiKey::from(k.as_str()))
    }

    /// A new client of an existing custodian, with every credential.
    pub(crate) fn sim_client(&mut self, custodian_id: &str) -> Option<SimClient> {
        let custodian_api_key = self.custodian_key(custodian_id)?;
        Some(self.sim_client_with(custodian_id, custodian_api_key))
    }

    /// A new client of the custodian whose id and key are given.
    pub(crate) fn sim_client_with(
        &mut self,
        custodian_id: &str,
        custodian_api_key: ApiKey,
    ) -> SimClient {
        let created = self.new_client(custodian_id, false);
        SimClient {
            custodian_id: custodian_id.to_owned(),
            custodian_api_key,
            client_id: created.id,
            client_api_key: created.client_api_key,
            client_session_token: created.client_session_token,
        }
    }

    // ---- auth --------------------------------------------------------------------------

    /// The client a Client API Key or session token belongs to.
    pub(crate) fn auth_client(&mut self, token: &str) -> Result<String, ApiError> {
        let now = self.clock.now();
        if self.custodian_keys.contains_key(token) {
            return Err(ApiError::auth_failed(
                "a custodian api key cannot call the client api",
            ));
        }
        let Some(cred) = self.credentials.get_mut(token) else {
            return Err(ApiError::auth_failed("unknown api key"));
        };
        if cred.kind == CredentialKind::Session
            && (now.saturating_sub(cred.last_used) > SESSION_IDLE
                || now.saturating_sub(cred.issued) > SESSION_MAX)
        {
            return Err(ApiError::auth_failed("client session token expired"));
        }
        cred.last_used = now;
        Ok(cred.client_id.clone())
    }

    /// The custodian a Custodian API Key belongs to.
    pub(crate) fn auth_custodian(&self, token: &str) -> Result<String, ApiError> {
        if self.credentials.contains_key(token) {
            return Err(ApiError::auth_failed(
                "a client credential cannot call the custodian api",
            ));
        }
        self.custodian_keys
            .get(token)
            .cloned()
            .ok_or_else(|| ApiError::auth_failed("unknown api key"))
    }

    fn issue_credential(&mut self, client_id: &str, kind: CredentialKind) -> ApiKey {
        let key = self.new_key();
        let now = self.clock.now();
        self.credentials.insert(
            key.expose_secret().to_owned(),
            Credential {
                client_id: client_id.to_owned(),
                kind,
                issued: now,
                last_used: now,
            },
        );
        key
    }

    // ---- Custodian API -----------------------------------------------------------------

    pub(crate) fn create_client(
        &mut self,
        custodian_id: &str,
        is_account_abstracted: bool,
    ) -> Result<CreatedClient, ApiError> {
        if !self.custodians.contains_key(custodian_id) {
            return Err(ApiError::custodian(404, "NOT_FOUND", "Custodian not found"));
        }
        Ok(self.new_client(custodian_id, is_account_abstracted))
    }

    fn new_client(&mut self, custodian_id: &str, is_account_abstracted: bool) -> CreatedClient {
        let id = self.new_id();
        let created_at = self.clock.stamp();
        self.clients.insert(
            id.clone(),
            Client {
                id: id.clone(),
                custodian_id: custodian_id.to_owned(),
                created_at,
                ejected_at: None,
                is_account_abstracted,
                wallets: BTreeMap::new(),
            },
        );
        self.client_order.push(id.clone());
        let client_api_key = self.issue_credential(&id, CredentialKind::ApiKey);
        let client_session_token = self.issue_credential(&id, CredentialKind::Session);
        CreatedClient {
            id,
            client_api_key,
            client_session_token,
            is_account_abstracted: Some(is_account_abstracted),
        }
    }

    fn custodian_client(&self, custodian_id: &str, client_id: &str) -> Result<&Client, ApiError> {
        self.clients
            .get(client_id)
            .filter(|c| c.custodian_id == custodian_id)
            .ok_or_else(|| ApiError::custodian(404, "NOT_FOUND", "Client not found"))
    }

    pub(crate) fn create_session(
        &mut self,
        custodian_id: &str,
        client_id: &str,
    ) -> Result<ClientSession, ApiError> {
        let aa = self
            .custodian_client(custodian_id, client_id)?
            .is_account_abstracted;
        let token = self.issue_credential(client_id, CredentialKind::Session);
        Ok(ClientSession {
            id: client_id.to_owned(),
            client_session_token: token,
            is_account_abstracted: Some(aa),
        })
    }

    pub(crate) fn custodian_get_client(
        &self,
        custodian_id: &str,
        client_id: &str,
    ) -> Result<ClientDetails, ApiError> {
        let client = self.custodian_client(custodian_id, client_id)?;
        Ok(self.details(client))
    }

    pub(crate) fn list_clients(
        &self,
        custodian_id: &str,
        cursor: Option<&str>,
        take: Option<&str>,
    ) -> Result<ClientList, ApiError> {
        let take = match take {
            None => MAX_TAKE,
            Some(t) => t
                .parse::<u32>()
                .ok()
                .filter(|t| (1..=MAX_TAKE).contains(t))
                .ok_or_else(|| {
                    ApiError::custodian(400, "BAD_REQUEST", "take must be between 1 and 100")
                })?,
        };
        let mine: Vec<&Client> = self
            .client_order
            .iter()
            .filter_map(|id| self.clients.get(id))
            .filter(|c| c.custodian_id == custodian_id)
            .collect();
        let start = match cursor.filter(|c| !c.is_empty()) {
            None => 0,
            Some(cursor) => mine
                .iter()
                .position(|c| c.id == cursor)
                .map(|i| i.saturating_add(1))
                .ok_or_else(|| ApiError::custodian(400, "BAD_REQUEST", "invalid cursor"))?,
        };
        let take_n = usize::try_from(take).unwrap_or(usize::MAX);
        let page: Vec<&Client> = mine.iter().skip(start).take(take_n).copied().collect();
        let next = if start.saturating_add(page.len()) < mine.len() {
            page.last().map(|c| c.id.clone())
        } else {
            None
        };
        Ok(ClientList {
            results: page.iter().map(|c| self.details(c)).collect(),
            metadata: ListMetadata {
                cursor: next,
                take: Some(take),
                total: Some(u64::try_from(mine.len()).unwrap_or(u64::MAX)),
            },
        })
    }

    pub(crate) fn enable_eject(
        &mut self,
        custodian_id: &str,
        client_id: &str,
        request: &EnableEjectRequest,
    ) -> Result<EnableEjectResponse, ApiError> {
        self.custodian_client(custodian_id, client_id)?;
        if !self.backup_with_portal {
            return Err(ApiError::custodian(
                400,
                "BAD_REQUEST",
                "Eject is only available for Portal-Managed Backups",
            ));
        }
        let now = self.clock.now();
        let until = match request.ejectable_until.as_deref() {
            None => now.saturating_add(EJECT_DEFAULT),
            Some(text) => parse_iso(text)
                .filter(|t| *t >= now.saturating_add(EJECT_MIN))
                .ok_or_else(|| {
                    ApiError::custodian(
                        400,
                        "BAD_REQUEST",
                        "ejectableUntil must be a valid date at least 1 minute from now.",
                    )
                })?,
        };
        let wallet_id = request.wallet_id.clone();
        self.completed_backup(client_id, &wallet_id)
            .map_err(|e| e.into_custodian())?;
        if let Some(w) = self.wallets.get_mut(&wallet_id) {
            w.ejectable_until = Some(until);
        }
        Ok(EnableEjectResponse {
            ejectable_until: format_iso(until),
        })
    }

    pub(crate) fn custodian_ejectable(
        &mut self,
        custodian_id: &str,
        client_id: &str,
        wallet_id: &str,
    ) -> Result<EjectableBackupShares, ApiError> {
        self.custodian_client(custodian_id, client_id)?;
        self.ejectable(client_id, wallet_id, false)
            .map_err(ApiError::into_custodian)
    }

    // ---- views -------------------------------------------------------------------------

    fn signing_status(&self, s: SigningStatus) -> SharePairStatus {
        match (self.status_view, s) {
            (StatusView::Raw, SigningStatus::StoredDatabase) => SharePairStatus::StoredDatabase,
            (StatusView::Raw, SigningStatus::StoredClient) => SharePairStatus::StoredClient,
            (_, SigningStatus::StoredClient) => SharePairStatus::Completed,
            (_, SigningStatus::StoredDatabase) => SharePairStatus::Incomplete,
        }
    }

    fn backup_status(&self, s: BackupStatus) -> SharePairStatus {
        match (self.status_view, s) {
            (StatusView::Raw, s) => s.wire(),
            (_, BackupStatus::ClientShare) => SharePairStatus::Completed,
            _ => SharePairStatus::Incomplete,
        }
    }

    fn wire_backup_pairs(&self, wallet: &Wallet, with_method: bool) -> Vec<WireBackupPair> {
        wallet
            .backup_pairs
            .iter()
            .filter_map(|id| self.backups.get(id))
            .map(|p| WireBackupPair {
                id: p.id.clone(),
                created_at: Some(format_iso(p.created_at)),
                backup_method: with_method.then(|| p.method.clone()),
                status: self.backup_status(p.status),
            })
            .collect()
    }

    fn wire_signing_pairs(&self, wallet: &Wallet) -> Vec<WireSigningPair> {
        wallet
            .signing_pairs
            .iter()
            .filter_map(|id| self.signing.get(id))
            .map(|p| WireSigningPair {
                id: p.id.clone(),
                created_at: Some(format_iso(p.created_at)),
                status: self.signing_status(p.status),
            })
            .collect()
    }

    fn details(&self, client: &Client) -> ClientDetails {
        let custodian = self.custodians.get(&client.custodian_id);
        let mut details = ClientDetails::new(client.id.clone());
        details.created_at = Some(format_iso(client.created_at));
        details.ejected_at = client.ejected_at.map(format_iso);
        details.is_account_abstracted = Some(client.is_account_abstracted);
        details.custodian = custodian.map(|c| WireCustodian {
            id: c.id.clone(),
            name: Some(c.name.clone()),
        });
        details.environment = custodian.map(|c| Environment {
            id: c.environment_id.clone(),
            name: Some("portal-sim".to_owned()),
            backup_with_portal_enabled: Some(self.backup_with_portal),
            is_multi_backup_enabled: Some(true),
        });
        let mut metadata = ClientMetadata::default();
        for wallet in client
            .wallets
            .values()
            .filter_map(|id| self.wallets.get(id))
        {
            let namespace = match wallet.curve {
                Curve::Secp256k1 => "eip155",
                _ => "solana",
            };
            metadata.namespaces.insert(
                namespace.to_owned(),
                Namespace {
                    address: wallet.address.clone(),
                    curve: Some(wallet.curve.clone()),
                    bitcoin: None,
                },
            );
            details.wallets.push(WireWallet {
                id: wallet.id.clone(),
                created_at: Some(format_iso(wallet.created_at)),
                curve: wallet.curve.clone(),
                public_key: Some(wallet.key.public_key_json()),
                ejectable_until: wallet.ejectable_until.map(format_iso),
                backup_share_pairs: self.wire_backup_pairs(wallet, true),
                signing_share_pairs: self.wire_signing_pairs(wallet),
            });
        }
        details.metadata = Some(metadata);
        details
    }

    /// `/clients/me` (also used by the Rust API).
    pub(crate) fn client_me(&self, client_id: &str) -> Option<ClientDetails> {
        self.clients.get(client_id).map(|c| self.details(c))
    }

    fn own_wallet(&self, client_id: &str, wallet_id: &str) -> Result<&Wallet, ApiError> {
        self.wallets
            .get(wallet_id)
            .filter(|w| w.client_id == client_id)
            .ok_or_else(|| ApiError::not_found("wallet not found"))
    }

    pub(crate) fn wallet_backup_pairs(
        &self,
        client_id: &str,
        wallet_id: &str,
    ) -> Result<Vec<WireBackupPair>, ApiError> {
        let wallet = self.own_wallet(client_id, wallet_id)?;
        Ok(self.wire_backup_pairs(wallet, false))
    }

    pub(crate) fn wallet_signing_pairs(
        &self,
        client_id: &str,
        wallet_id: &str,
    ) -> Result<Vec<WireSigningPair>, ApiError> {
        let wallet = self.own_wallet(client_id, wallet_id)?;
        Ok(self.wire_signing_pairs(wallet))
    }

    /// The stored ciphertext of a pair (Rust API).
    pub(crate) fn stored_cipher_text(&self, pair_id: &str) -> Option<String> {
        self.backups
            .get(pair_id)
            .and_then(|p| p.cipher_text.clone())
    }

    // ---- Enclave MPC API ---------------------------------------------------------------

    pub(crate) fn generate(&mut self, client_id: &str) -> Result<CurveShares, ApiError> {
        let has_wallet = self
            .clients
            .get(client_id)
            .is_some_and(|c| !c.wallets.is_empty());
        if has_wallet {
            return Err(ApiError::state_invalid("client already has a wallet"));
        }
        let mut out = CurveShares::default();
        for curve in [Curve::Secp256k1, Curve::Ed25519] {
            let wallet_id = self.new_id();
            let pair_id = self.new_id();
            let key = WalletKey::random(&mut self.rng, &curve);
            let address = key.address();
            let share = shares::signing_share(&mut self.rng, client_id, &pair_id, &key);
            let created_at = self.clock.stamp();
            self.signing.insert(
                pair_id.clone(),
                SigningPair {
                    id: pair_id.clone(),
                    wallet_id: wallet_id.clone(),
                    client_id: client_id.to_owned(),
                    created_at,
                    status: SigningStatus::StoredDatabase,
                    client_share: copy(&share),
                },
            );
            self.wallets.insert(
                wallet_id.clone(),
                Wallet {
                    id: wallet_id.clone(),
                    client_id: client_id.to_owned(),
                    curve: curve.clone(),
                    created_at,
                    key,
                    address,
                    ejectable_until: None,
                    eject_shares_served: false,
                    signing_pairs: vec![pair_id.clone()],
                    backup_pairs: Vec::new(),
                },
            );
            if let Some(c) = self.clients.get_mut(client_id) {
                c.wallets.insert(curve.clone(), wallet_id);
            }
            let entry = Some(CurveShare::new(share, pair_id));
            match curve {
                Curve::Secp256k1 => out.secp256k1 = entry,
                _ => out.ed25519 = entry,
            }
        }
        Ok(out)
    }

    /// Checks the shape of a share and that `issued` is exactly what Portal handed out.
    fn check_issued(sent: &SecretShare, issued: &SecretShare, what: &str) -> Result<(), ApiError> {
        shares::check_share_shape(sent.expose_secret()).map_err(|_| {
            ApiError::flat(
                400,
                "SHARE_PARSING_FAILED",
                format!("{what} could not be parsed"),
            )
        })?;
        if sent != issued {
            return Err(ApiError::flat(
                400,
                "DKG_REFRESH_MISMATCH",
                format!("{what} is not the share Portal issued for this pair"),
            ));
        }
        Ok(())
    }

    /// The wallet of the `kind` share pair a `curve` entry names, which must be of that curve.
    fn entry_wallet(
        &self,
        curve: &Curve,
        kind: &str,
        wallet_id: &str,
    ) -> Result<&Wallet, ApiError> {
        let wallet = self
            .wallets
            .get(wallet_id)
            .ok_or_else(|| ApiError::not_found("wallet not found"))?;
        if wallet.curve != *curve {
            return Err(ApiError::bad_request(format!(
                "the {curve} entry names a {kind} share pair of curve {}",
                wallet.curve
            )));
        }
        Ok(wallet)
    }

    pub(crate) fn prepare_backup(
        &mut self,
        client_id: &str,
        generate_response: &CurveShares,
    ) -> Result<BackupPlan, ApiError> {
        if generate_response.iter().next().is_none() {
            return Err(ApiError::bad_request("generateResponse holds no shares"));
        }
        let mut checked = Vec::new();
        for (curve, entry) in generate_response.iter() {
            let pair = self
                .signing
                .get(&entry.id)
                .filter(|p| p.client_id == client_id)
                .ok_or_else(|| ApiError::not_found("signing share pair not found"))?;
            let wallet = self.entry_wallet(&curve, "signing", &pair.wallet_id)?;
            Self::check_issued(&entry.share, &pair.client_share, "the signing share")?;
            if wallet.signing_pairs.last() != Some(&pair.id) {
                return Err(ApiError::flat(
                    400,
                    "DKG_REFRESH_MISMATCH",
                    "the signing share was replaced by a newer one",
                ));
            }
            if pair.status != SigningStatus::StoredClient {
                return Err(ApiError::state_invalid(
                    "the signing share pair is not confirmed STORED_CLIENT",
                ));
            }
            checked.push((curve, wallet.id.clone(), wallet.key.clone()));
        }
        let mut items = Vec::new();
        for (curve, wallet_id, key) in checked {
            let backup_pair_id = self.new_id();
            let (client_share, custodian_share) =
                shares::backup_shares(&mut self.rng, client_id, &backup_pair_id, &key);
            items.push(PlannedBackup {
                webhook_method: format!("{}-{}", self.backup_method, curve),
                curve,
                wallet_id,
                backup_pair_id,
                client_share,
                custodian_share,
            });
        }
        Ok(BackupPlan {
            client_id: client_id.to_owned(),
            items,
        })
    }

    pub(crate) fn commit_backup(&mut self, plan: BackupPlan) -> CurveShares {
        let mut out = CurveShares::default();
        for item in plan.items {
            let created_at = self.clock.stamp();
            self.backups.insert(
                item.backup_pair_id.clone(),
                BackupPair {
                    id: item.backup_pair_id.clone(),
                    wallet_id: item.wallet_id.clone(),
                    client_id: plan.client_id.clone(),
                    created_at,
                    method: self.backup_method.clone(),
                    status: BackupStatus::CustodianShare,
                    client_share: copy(&item.client_share),
                    custodian_share: item.custodian_share,
                    cipher_text: None,
                },
            );
            if let Some(w) = self.wallets.get_mut(&item.wallet_id) {
                w.backup_pairs.push(item.backup_pair_id.clone());
            }
            let entry = Some(CurveShare::new(item.client_share, item.backup_pair_id));
            match item.curve {
                Curve::Secp256k1 => out.secp256k1 = entry,
                _ => out.ed25519 = entry,
            }
        }
        out
    }

    pub(crate) fn prepare_recover(
        &mut self,
        client_id: &str,
        backup_response: &CurveShares,
    ) -> Result<RecoverPlan, ApiError> {
        if backup_response.iter().next().is_none() {
            return Err(ApiError::bad_request("backupResponse holds no shares"));
        }
        let mut items = Vec::new();
        for (curve, entry) in backup_response.iter() {
            let pair = self
                .backups
                .get(&entry.id)
                .filter(|p| p.client_id == client_id)
                .ok_or_else(|| ApiError::not_found("backup share pair not found"))?;
            let wallet = self.entry_wallet(&curve, "backup", &pair.wallet_id)?;
            Self::check_issued(&entry.share, &pair.client_share, "the backup share")?;
            if pair.status != BackupStatus::ClientShare {
                return Err(ApiError::state_invalid(
                    "the backup share pair is not completed (STORED_CLIENT_BACKUP_SHARE)",
                ));
            }
            items.push(PlannedRecover {
                curve,
                wallet_id: wallet.id.clone(),
                backup_pair_id: pair.id.clone(),
                custodian_share: copy(&pair.custodian_share),
            });
        }
        Ok(RecoverPlan {
            client_id: client_id.to_owned(),
            items,
        })
    }

    pub(crate) fn commit_recover(&mut self, plan: RecoverPlan) -> CurveShares {
        let mut out = CurveShares::default();
        for item in plan.items {
            let Some(key) = self.wallets.get(&item.wallet_id).map(|w| w.key.clone()) else {
                continue;
            };
            let pair_id = self.new_id();
            let share = shares::signing_share(&mut self.rng, &plan.client_id, &pair_id, &key);
            let created_at = self.clock.stamp();
            self.signing.insert(
                pair_id.clone(),
                SigningPair {
                    id: pair_id.clone(),
                    wallet_id: item.wallet_id.clone(),
                    client_id: plan.client_id.clone(),
                    created_at,
                    status: SigningStatus::StoredDatabase,
                    client_share: copy(&share),
                },
            );
            if let Some(w) = self.wallets.get_mut(&item.wallet_id) {
                w.signing_pairs.push(pair_id.clone());
            }
            let entry = Some(CurveShare::new(share, pair_id));
            match item.curve {
                Curve::Secp256k1 => out.secp256k1 = entry,
                _ => out.ed25519 = entry,
            }
        }
        out
    }

    // ---- Client API: share pairs -------------------------------------------------------

    pub(crate) fn update_signing(
        &mut self,
        client_id: &str,
        update: &SharePairStatusUpdate,
    ) -> Result<(), ApiError> {
        if update.backup_share_pair_ids.is_some() {
            return Err(ApiError::bad_request(
                "backupSharePairIds is not accepted on signing-share-pairs",
            ));
        }
        let ids = update
            .signing_share_pair_ids
            .as_deref()
            .filter(|ids| !ids.is_empty())
            .ok_or_else(|| ApiError::bad_request("signingSharePairIds must be a non-empty list"))?;
        if update.status != SharePairUpdateStatus::StoredClient {
            return Err(ApiError::bad_request(format!(
                "status {} is not valid for signing share pairs (expected STORED_CLIENT)",
                update.status
            )));
        }
        for id in ids {
            self.signing
                .get(id)
                .filter(|p| p.client_id == client_id)
                .ok_or_else(|| ApiError::not_found("signing share pair not found"))?;
        }
        for id in ids {
            if let Some(p) = self.signing.get_mut(id) {
                p.status = SigningStatus::StoredClient;
            }
        }
        Ok(())
    }

    pub(crate) fn update_backup(
        &mut self,
        client_id: &str,
        update: &SharePairStatusUpdate,
    ) -> Result<(), ApiError> {
        if update.signing_share_pair_ids.is_some() {
            return Err(ApiError::bad_request(
                "signingSharePairIds is not accepted on backup-share-pairs",
            ));
        }
        let ids = update
            .backup_share_pair_ids
            .as_deref()
            .filter(|ids| !ids.is_empty())
            .ok_or_else(|| ApiError::bad_request("backupSharePairIds must be a non-empty list"))?;
        let target = match update.status {
            SharePairUpdateStatus::StoredClientBackupShareKey => BackupStatus::ClientShareKey,
            SharePairUpdateStatus::StoredClientBackupShare => BackupStatus::ClientShare,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "status {} is not valid for backup share pairs",
                    update.status
                )));
            }
        };
        for id in ids {
            let pair = self
                .backups
                .get(id)
                .filter(|p| p.client_id == client_id)
                .ok_or_else(|| ApiError::not_found("backup share pair not found"))?;
            if pair.status > target {
                let detail = format!("{} -> {}", pair.status.wire(), target.wire());
                let pair_id = pair.id.clone();
                self.recorder.violation(
                    ViolationKind::OutOfOrderStatus,
                    client_id,
                    Some(&pair_id),
                    detail,
                );
                return Err(ApiError::state_invalid(format!(
                    "backup share pair {pair_id} cannot go back to {}",
                    target.wire()
                )));
            }
        }
        for id in ids {
            let Some(pair) = self.backups.get_mut(id) else {
                continue;
            };
            if pair.status == target {
                continue;
            }
            let missing_cipher = target == BackupStatus::ClientShare
                && self.backup_with_portal
                && pair.cipher_text.is_none();
            pair.status = target;
            if missing_cipher {
                let pair_id = pair.id.clone();
                self.recorder.violation(
                    ViolationKind::StoredWithoutCipherText,
                    client_id,
                    Some(&pair_id),
                    "marked STORED_CLIENT_BACKUP_SHARE before PATCH …/backup-share-pairs/{id} stored a clientCipherText",
                );
            }
        }
        Ok(())
    }

    fn require_portal_managed(&self) -> Result<(), ApiError> {
        if self.backup_with_portal {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "backup with Portal is not enabled for this environment",
            ))
        }
    }

    pub(crate) fn store_cipher_text(
        &mut self,
        client_id: &str,
        pair_id: &str,
        cipher_text: String,
    ) -> Result<(), ApiError> {
        self.require_portal_managed()?;
        if cipher_text.is_empty() {
            return Err(ApiError::bad_request("clientCipherText must not be empty"));
        }
        let pair = self
            .backups
            .get_mut(pair_id)
            .filter(|p| p.client_id == client_id)
            .ok_or_else(|| ApiError::not_found("backup share pair not found"))?;
        let replaced = pair.status == BackupStatus::ClientShare
            && pair
                .cipher_text
                .as_deref()
                .is_some_and(|c| c != cipher_text);
        pair.cipher_text = Some(cipher_text);
        if replaced {
            self.recorder.violation(
                ViolationKind::CipherTextReplacedAfterCompletion,
                client_id,
                Some(pair_id),
                "",
            );
        }
        Ok(())
    }

    pub(crate) fn cipher_text(&self, client_id: &str, pair_id: &str) -> Result<String, ApiError> {
        self.require_portal_managed()?;
        let pair = self
            .backups
            .get(pair_id)
            .filter(|p| p.client_id == client_id)
            .ok_or_else(|| ApiError::not_found("backup share pair not found"))?;
        pair.cipher_text.clone().ok_or_else(|| {
            ApiError::not_found("no ciphertext is stored for this backup share pair")
        })
    }

    // ---- eject -------------------------------------------------------------------------

    /// The newest completed backup pair of a wallet owned by the client.
    fn completed_backup(&self, client_id: &str, wallet_id: &str) -> Result<&BackupPair, ApiError> {
        let wallet = self.own_wallet(client_id, wallet_id)?;
        wallet
            .backup_pairs
            .iter()
            .rev()
            .filter_map(|id| self.backups.get(id))
            .find(|p| p.status == BackupStatus::ClientShare)
            .ok_or_else(|| ApiError::state_invalid("the wallet has no completed backup"))
    }

    pub(crate) fn ejectable(
        &mut self,
        client_id: &str,
        wallet_id: &str,
        clear_window: bool,
    ) -> Result<EjectableBackupShares, ApiError> {
        self.require_portal_managed()?;
        if !self.eject_window_open(client_id, wallet_id)? {
            return Err(ApiError::state_invalid(
                "the wallet is not ejectable (enable-eject first; windows expire)",
            ));
        }
        let pair = self.completed_backup(client_id, wallet_id)?;
        let out = EjectableBackupShares {
            encrypted_client_backup_share: pair.cipher_text.clone(),
            custodian_backup_share: copy(&pair.custodian_share),
        };
        if let Some(w) = self.wallets.get_mut(wallet_id) {
            w.eject_shares_served = true;
            if clear_window {
                w.ejectable_until = None;
            }
        }
        Ok(out)
    }

    /// Whether the custodian opened the wallet's eject window and it has not expired.
    fn eject_window_open(&self, client_id: &str, wallet_id: &str) -> Result<bool, ApiError> {
        let now = self.clock.now();
        Ok(self
            .own_wallet(client_id, wallet_id)?
            .ejectable_until
            .is_some_and(|until| now < until))
    }

    /// The client-side `prepare-eject`: the custodian share of the newest completed pair of
    /// `method`, only inside an enable-eject window.
    pub(crate) fn prepare_eject(
        &mut self,
        client_id: &str,
        wallet_id: &str,
        method: &BackupMethod,
    ) -> Result<SecretShare, ApiError> {
        self.require_portal_managed()?;
        if !self.eject_window_open(client_id, wallet_id)? {
            return Err(ApiError::state_invalid(
                "the wallet is not ejectable (the custodian must enable-eject first; windows expire)",
            ));
        }
        let wallet = self.own_wallet(client_id, wallet_id)?;
        let share = wallet
            .backup_pairs
            .iter()
            .rev()
            .filter_map(|id| self.backups.get(id))
            .find(|p| p.status == BackupStatus::ClientShare && &p.method == method)
            .map(|p| copy(&p.custodian_share))
            .ok_or_else(|| {
                ApiError::state_invalid(format!(
                    "the wallet has no completed backup with method {method}"
                ))
            })?;
        if let Some(w) = self.wallets.get_mut(wallet_id) {
            w.eject_shares_served = true;
        }
        Ok(share)
    }

    pub(crate) fn complete_eject(&self, client_id: &str, wallet_id: &str) -> Result<(), ApiError> {
        self.own_wallet(client_id, wallet_id).map(drop)
    }

    pub(crate) fn eject_client(&mut self, client_id: &str) -> Result<String, ApiError> {
        let now = self.clock.now();
        let client = self
            .clients
            .get(client_id)
            .ok_or_else(|| ApiError::not_found("client not found"))?;
        let unfetched: Vec<String> = client
            .wallets
            .values()
            .filter_map(|id| self.wallets.get(id))
            .filter(|w| !w.eject_shares_served && self.completed_backup(client_id, &w.id).is_ok())
            .map(|w| w.curve.to_string())
            .collect();
        if self.backup_with_portal && client.ejected_at.is_none() && !unfetched.is_empty() {
            self.recorder.violation(
                ViolationKind::MarkedEjectedEarly,
                client_id,
                None,
                format!("wallets never ejected: {}", unfetched.join(", ")),
            );
        }
        let client = self
            .clients
            .get_mut(client_id)
            .ok_or_else(|| ApiError::not_found("client not found"))?;
        let at = *client.ejected_at.get_or_insert(now);
        Ok(format_iso(at))
    }

    /// The backup method Portal records for the backups that follow (`/v1/backup` carries
    /// none: Portal takes it from the SDK's context).
    pub(crate) fn set_backup_method(&mut self, method: BackupMethod) {
        self.backup_method = method;
    }

    /// The real private key of a wallet, in hex (tests compare an eject with it).
    pub(crate) fn wallet_private_key_hex(&self, wallet_id: &str) -> Option<Zeroizing<String>> {
        self.wallets.get(wallet_id).map(|w| w.key.private_key_hex())
    }

    pub(crate) fn advance_clock(&mut self, by: Duration) {
        self.clock.advance(by);
    }
}
