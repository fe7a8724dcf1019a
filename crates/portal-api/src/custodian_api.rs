//! Custodian API (`https://api.portalhq.io/api/v3/custodians/me/...`): clients, client session
//! tokens and eject. Authenticated with the Custodian (Portal) API Key.
//!
//! `GET /clients/{clientId}` returns a [`ClientDetails`] and `GET .../ejectable-backup-shares`
//! an [`EjectableBackupShares`](crate::client_api::EjectableBackupShares), shared with the
//! Client API.

use serde::{Deserialize, Serialize};

use crate::client_api::{ClientDetails, string_or_number};
use crate::secret::ApiKey;

/// Body of `POST /api/v3/custodians/me/clients`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClientRequest {
    /// Create an account-abstracted client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_account_abstracted: Option<bool>,
}

/// Response of `POST /api/v3/custodians/me/clients`: the new client and its credentials.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedClient {
    /// The new client id.
    pub id: String,
    /// The client's API key. Secret.
    pub client_api_key: ApiKey,
    /// A Client Session Token. Secret.
    pub client_session_token: ApiKey,
    /// Whether the client is account-abstracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_account_abstracted: Option<bool>,
}

/// Body of `POST /api/v3/custodians/me/clients/{clientId}/sessions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// Portal's example sends `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_account_abstracted: Option<bool>,
}

/// Response of `POST /api/v3/custodians/me/clients/{clientId}/sessions`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSession {
    /// The client id.
    pub id: String,
    /// The new Client Session Token (24 h idle expiry, 7 days at most). Secret.
    pub client_session_token: ApiKey,
    /// Whether the client is account-abstracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_account_abstracted: Option<bool>,
}

/// Query of `GET /api/v3/custodians/me/clients?cursor=&take=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClientsQuery {
    /// Continue after this cursor (from the previous page's `metadata.cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size; Portal allows at most 100 and defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take: Option<u32>,
}

/// Largest page size Portal accepts for [`ListClientsQuery::take`].
pub const MAX_TAKE: u32 = 100;

/// Response of `GET /api/v3/custodians/me/clients`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientList {
    /// The clients of this page.
    #[serde(default)]
    pub results: Vec<ClientDetails>,
    /// Paging information.
    #[serde(default)]
    pub metadata: ListMetadata,
}

/// `metadata` of [`ClientList`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMetadata {
    /// Cursor for the next page; `null` on the last page. Accepted as a string or a number.
    #[serde(default, deserialize_with = "string_or_number")]
    pub cursor: Option<String>,
    /// The page size used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take: Option<u32>,
    /// Total number of clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// Body of `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject` (Portal-Managed
/// Backups only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableEjectRequest {
    /// The wallet to make ejectable.
    pub wallet_id: String,
    /// ISO-8601 end of the window, at least one minute ahead; Portal defaults to 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejectable_until: Option<String>,
}

/// Response of `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableEjectResponse {
    /// The end of the eject window.
    pub ejectable_until: String,
}
