//! [`ClientApi`]: the client role (Enclave MPC API and Client API routes).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde::de::DeserializeOwned;

use super::base_url::checked_id;
use super::portal::Portal;
use super::retry::Replay;
use super::transport::{Call, Host, encode, plain_body, secret_body};
use crate::client_api::{
    BackupSharePair, CipherTextResponse, ClientDetails, EjectClientRequest, EjectableBackupShares,
    PrepareEjectRequest, PrepareEjectResponse, SharePairStatusUpdate, SigningSharePair,
    StoreCipherTextRequest,
};
use crate::error::Result;
use crate::mpc::{
    BackupRequest, BackupResponse, GenerateRequest, GenerateResponse, RecoverRequest,
    RecoverResponse,
};
use crate::paths;

/// Which kind of client credential a [`ClientApi`] holds (shown in `Debug`, never the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CredentialKind {
    ClientApiKey,
    ClientSessionToken,
}

/// Portal as one client sees it: the Enclave MPC API (generate, backup, recover) and the
/// Client API (`/api/v3/clients/me/...`: the client's wallets, share pairs, ciphertexts and
/// client-side eject), authenticated with a Client API Key or a Client Session Token.
///
/// Made by [`Portal::client_with_api_key`], [`Portal::client_with_session_token`] or, as
/// the custodian, [`CustodianApi::client_session`](super::CustodianApi::client_session).
/// Cheap to clone; clones share the [`Portal`] transport.
///
/// The Custodian API is not reachable from here: a custodian route called through the
/// client role does not compile.
///
/// ```compile_fail,E0599
/// # async fn f(client: portal_api::ClientApi) {
/// // Listing the custodian's clients needs the custodian role.
/// let _ = client.list_clients(&Default::default()).await;
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # async fn f(client: portal_api::ClientApi) {
/// // So does opening a session for a client.
/// let _ = client.create_client_session("cl_1", &Default::default()).await;
/// # }
/// ```
#[derive(Clone)]
pub struct ClientApi {
    portal: Portal,
    kind: CredentialKind,
    auth: Arc<HeaderValue>,
}

impl fmt::Debug for ClientApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientApi")
            .field("credential", &self.kind)
            .field("portal", &self.portal)
            .finish()
    }
}

impl ClientApi {
    pub(super) fn new(portal: Portal, kind: CredentialKind, auth: Arc<HeaderValue>) -> Self {
        Self { portal, kind, auth }
    }

    /// The transport this role calls through (to make another role on the same pool and
    /// rate limits).
    #[must_use]
    pub fn portal(&self) -> &Portal {
        &self.portal
    }

    // ---- Enclave MPC API -------------------------------------------------------------------

    /// `POST /v1/generate` with `{}`: a new wallet's client signing shares.
    ///
    /// Not retried once the request may have reached Portal. Afterwards confirm storage with
    /// [`update_signing_share_pairs`](Self::update_signing_share_pairs).
    ///
    /// # Errors
    /// Any [`Error`](crate::Error); Portal's error id is in [`Error::error_id`](crate::Error::error_id).
    pub async fn generate(&self) -> Result<GenerateResponse> {
        self.generate_with(&GenerateRequest::default()).await
    }

    /// `POST /v1/generate` with explicit options.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn generate_with(&self, request: &GenerateRequest) -> Result<GenerateResponse> {
        self.mpc(paths::MPC_GENERATE, secret_body(request)?).await
    }

    /// `POST /v1/backup` with `{"generateResponse": "<generate_response as JSON text>"}`:
    /// client backup shares keyed by curve, with their backup share pair ids.
    ///
    /// Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
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
    /// Any [`Error`](crate::Error).
    pub async fn recover(&self, backup_response: &BackupResponse) -> Result<RecoverResponse> {
        let request = RecoverRequest::new(backup_response).map_err(encode)?;
        self.mpc(paths::MPC_RECOVER, secret_body(&request)?).await
    }

    async fn mpc<T: DeserializeOwned>(&self, template: &'static str, body: Bytes) -> Result<T> {
        let call = Call {
            method: Method::POST,
            host: Host::Mpc,
            template,
            params: &[],
            query: &[],
            body: Some(body),
            replay: Replay::ConnectOnly,
        };
        self.portal.json(&self.auth, call).await
    }

    // ---- Client API ------------------------------------------------------------------------

    /// `GET /api/v3/clients/me`: the client with wallets and share pairs.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn client_me(&self) -> Result<ClientDetails> {
        self.portal
            .json(&self.auth, Call::api(Method::GET, paths::CLIENT_ME, &[]))
            .await
    }

    /// `PATCH /api/v3/clients/me/backup-share-pairs/{id}` with `{"clientCipherText"}`: stores
    /// the client backup ciphertext with Portal (Portal-Managed Backups). Safe to retry.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
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
            ..Call::api(Method::PATCH, paths::BACKUP_SHARE_PAIR, &id)
        };
        self.portal.empty(&self.auth, call).await
    }

    /// `GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text`: the stored client backup
    /// ciphertext.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn cipher_text(&self, backup_share_pair_id: &str) -> Result<String> {
        let id = [checked_id("backupSharePairId", backup_share_pair_id)?];
        let response: CipherTextResponse = self
            .portal
            .json(
                &self.auth,
                Call::api(Method::GET, paths::BACKUP_SHARE_PAIR_CIPHER_TEXT, &id),
            )
            .await?;
        Ok(response.cipher_text)
    }

    /// `PATCH /api/v3/clients/me/backup-share-pairs` (204): status update of backup pairs.
    /// Safe to retry.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn update_backup_share_pairs(&self, update: &SharePairStatusUpdate) -> Result<()> {
        let call = Call {
            body: Some(plain_body(update)?),
            ..Call::api(Method::PATCH, paths::BACKUP_SHARE_PAIRS, &[])
        };
        self.portal.empty(&self.auth, call).await
    }

    /// `PATCH /api/v3/clients/me/signing-share-pairs` (204): status update of signing pairs,
    /// required after generate and recover. Safe to retry.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn update_signing_share_pairs(&self, update: &SharePairStatusUpdate) -> Result<()> {
        let call = Call {
            body: Some(plain_body(update)?),
            ..Call::api(Method::PATCH, paths::SIGNING_SHARE_PAIRS, &[])
        };
        self.portal.empty(&self.auth, call).await
    }

    /// `GET /api/v3/clients/me/wallets/{walletId}/backup-share-pairs`.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn wallet_backup_share_pairs(&self, wallet_id: &str) -> Result<Vec<BackupSharePair>> {
        let id = [checked_id("walletId", wallet_id)?];
        self.portal
            .json(
                &self.auth,
                Call::api(Method::GET, paths::WALLET_BACKUP_SHARE_PAIRS, &id),
            )
            .await
    }

    /// `GET /api/v3/clients/me/wallets/{walletId}/signing-share-pairs`.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn wallet_signing_share_pairs(
        &self,
        wallet_id: &str,
    ) -> Result<Vec<SigningSharePair>> {
        let id = [checked_id("walletId", wallet_id)?];
        self.portal
            .json(
                &self.auth,
                Call::api(Method::GET, paths::WALLET_SIGNING_SHARE_PAIRS, &id),
            )
            .await
    }

    /// `POST /api/v3/clients/me/wallets/{walletId}/prepare-eject`: the custodian backup share
    /// for a client-side eject. Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn prepare_eject(
        &self,
        wallet_id: &str,
        request: &PrepareEjectRequest,
    ) -> Result<PrepareEjectResponse> {
        let id = [checked_id("walletId", wallet_id)?];
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..Call::api(Method::POST, paths::WALLET_PREPARE_EJECT, &id)
        };
        self.portal.json(&self.auth, call).await
    }

    /// `GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares`. Portal clears the
    /// wallet's eject window as a side effect, so this is retried only when the connection
    /// could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn ejectable_backup_shares(&self, wallet_id: &str) -> Result<EjectableBackupShares> {
        let id = [checked_id("walletId", wallet_id)?];
        let call = Call {
            replay: Replay::ConnectOnly,
            ..Call::api(Method::GET, paths::WALLET_EJECTABLE_BACKUP_SHARES, &id)
        };
        self.portal.json(&self.auth, call).await
    }

    /// `PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject` (not confirmed by
    /// Portal's reference). Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn complete_eject(&self, wallet_id: &str) -> Result<()> {
        let id = [checked_id("walletId", wallet_id)?];
        let call = Call {
            replay: Replay::ConnectOnly,
            ..Call::api(Method::PATCH, paths::WALLET_COMPLETE_EJECT, &id)
        };
        self.portal.empty(&self.auth, call).await
    }

    /// `POST /api/v3/clients/me/eject`: marks the client and its wallets ejected
    /// (irreversible). Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn eject_client(&self, request: &EjectClientRequest) -> Result<()> {
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..Call::api(Method::POST, paths::CLIENT_EJECT, &[])
        };
        self.portal.empty(&self.auth, call).await
    }
}
