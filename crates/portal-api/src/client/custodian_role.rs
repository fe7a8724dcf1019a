//! [`CustodianApi`]: the custodian role (Custodian API routes).

use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::HeaderValue;

use super::base_url::checked_id;
use super::client_role::ClientApi;
use super::portal::Portal;
use super::retry::Replay;
use super::transport::{Call, plain_body};
use crate::client_api::{ClientDetails, EjectableBackupShares};
use crate::custodian_api::{
    ClientList, ClientSession, CreateClientRequest, CreateSessionRequest, CreatedClient,
    EnableEjectRequest, EnableEjectResponse, ListClientsQuery,
};
use crate::error::Result;
use crate::paths;

/// Portal as the custodian sees it: the Custodian API (`/api/v3/custodians/me/...`: create,
/// list and read clients, open client sessions, enable eject, the ejectable backup shares),
/// authenticated with the Custodian (Portal) API Key.
///
/// Made by [`Portal::custodian`]. Cheap to clone; clones share the [`Portal`] transport.
/// Acting as one client is explicit: [`client_session`](Self::client_session) opens a
/// session and returns that client's [`ClientApi`].
///
/// The client routes are not reachable from here: a Client API or MPC route called through
/// the custodian role does not compile.
///
/// ```compile_fail,E0599
/// # async fn f(custodian: portal_api::CustodianApi) {
/// // `/api/v3/clients/me` is the client's own view: it needs the client role.
/// let _ = custodian.client_me().await;
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # async fn f(custodian: portal_api::CustodianApi, generate: portal_api::mpc::GenerateResponse) {
/// // So does an MPC backup.
/// let _ = custodian.backup(&generate).await;
/// # }
/// ```
#[derive(Clone)]
pub struct CustodianApi {
    portal: Portal,
    auth: Arc<HeaderValue>,
}

impl fmt::Debug for CustodianApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodianApi")
            .field("portal", &self.portal)
            .finish_non_exhaustive()
    }
}

impl CustodianApi {
    pub(super) fn new(portal: Portal, auth: Arc<HeaderValue>) -> Self {
        Self { portal, auth }
    }

    /// The transport this role calls through (for example to act as a client just created,
    /// with [`Portal::client_with_api_key`]).
    #[must_use]
    pub fn portal(&self) -> &Portal {
        &self.portal
    }

    /// Opens a session for `client_id` ([`create_client_session`](Self::create_client_session)
    /// with the default request) and returns that client's role on its session token, over
    /// the same transport. Not retried once the request may have reached Portal.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error)(crate::Error).
    pub async fn client_session(&self, client_id: &str) -> Result<ClientApi> {
        let session = self
            .create_client_session(client_id, &CreateSessionRequest::default())
            .await?;
        self.portal
            .client_with_session_token(&session.client_session_token)
    }

    /// `POST /api/v3/custodians/me/clients`: a new client with its API key and a session
    /// token. Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn create_client(&self, request: &CreateClientRequest) -> Result<CreatedClient> {
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..Call::api(Method::POST, paths::CUSTODIAN_CLIENTS, &[])
        };
        self.portal.json(&self.auth, call).await
    }

    /// `GET /api/v3/custodians/me/clients/{clientId}`.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn get_client(&self, client_id: &str) -> Result<ClientDetails> {
        let id = [checked_id("clientId", client_id)?];
        self.portal
            .json(
                &self.auth,
                Call::api(Method::GET, paths::CUSTODIAN_CLIENT, &id),
            )
            .await
    }

    /// `GET /api/v3/custodians/me/clients?cursor=&take=`: one page of clients; pass the
    /// returned `metadata.cursor` to get the next.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
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
            ..Call::api(Method::GET, paths::CUSTODIAN_CLIENTS, &[])
        };
        self.portal.json(&self.auth, call).await
    }

    /// `POST /api/v3/custodians/me/clients/{clientId}/sessions`: a new Client Session Token.
    /// Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn create_client_session(
        &self,
        client_id: &str,
        request: &CreateSessionRequest,
    ) -> Result<ClientSession> {
        let id = [checked_id("clientId", client_id)?];
        let call = Call {
            body: Some(plain_body(request)?),
            replay: Replay::ConnectOnly,
            ..Call::api(Method::POST, paths::CUSTODIAN_CLIENT_SESSIONS, &id)
        };
        self.portal.json(&self.auth, call).await
    }

    /// `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject`: opens an eject window
    /// for a wallet. Safe to retry (it sets the window).
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn enable_eject(
        &self,
        client_id: &str,
        request: &EnableEjectRequest,
    ) -> Result<EnableEjectResponse> {
        let id = [checked_id("clientId", client_id)?];
        let call = Call {
            body: Some(plain_body(request)?),
            ..Call::api(Method::PATCH, paths::CUSTODIAN_ENABLE_EJECT, &id)
        };
        self.portal.json(&self.auth, call).await
    }

    /// `GET /api/v3/custodians/me/clients/{clientId}/wallets/{walletId}/ejectable-backup-shares`.
    /// Retried only when the connection could not be made.
    ///
    /// # Errors
    /// Any [`Error`](crate::Error).
    pub async fn ejectable_backup_shares(
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
            ..Call::api(
                Method::GET,
                paths::CUSTODIAN_EJECTABLE_BACKUP_SHARES,
                &params,
            )
        };
        self.portal.json(&self.auth, call).await
    }
}
