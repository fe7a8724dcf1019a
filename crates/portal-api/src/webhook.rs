//! The Self-Managed Backups webhook: what Portal sends to the custodian's server and what it
//! expects back.
//!
//! One definition for every side of the conversation: the webhook server keeps shares with
//! these types, the simulator calls it with them, and tests speak them, so the three cannot
//! drift apart.
//!
//! ```
//! use portal_api::SecretShare;
//! use portal_api::webhook::{BackupRequest, FetchResponse};
//!
//! let request: BackupRequest = serde_json::from_str(
//!     r#"{"backupMethod":"GDRIVE","clientId":"cl_1","share":"{\"share\":\"…\"}"}"#,
//! )?;
//! assert_eq!(request.backup_method, "GDRIVE");
//!
//! let answer = FetchResponse { backup_shares: vec![request.share] };
//! assert!(serde_json::to_string(&answer)?.starts_with(r#"{"backupShares":["#));
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::SecretShare;

/// The header that carries the webhook secret on every call. Header names are
/// case-insensitive; this is how Portal's documentation spells it.
pub const SECRET_HEADER: &str = "X-Webhook-Secret";

/// Where, below the webhook's base URL, Portal sends a custodian backup share to keep.
pub const BACKUP_PATH: &str = "/backup";

/// Where, below the webhook's base URL, Portal asks for a client's custodian backup shares
/// (right after every [`BACKUP_PATH`] call, to check the share was kept, and at recovery).
pub const FETCH_PATH: &str = "/backup/fetch";

/// How long Portal waits for an answer before it reports the webhook as failed.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST {base}/backup`: one custodian backup share to keep, replacing any older share of the
/// same client and backup method.
///
/// Generic over how the share is held, so that a caller can send a borrowed share
/// (`BackupRequest<&SecretShare>`) without another copy of the secret.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRequest<S = SecretShare> {
    /// The backup method the share belongs to (`GDRIVE`, `PASSWORD-ED25519`, …): a free-form
    /// string, "subject to change" per Portal.
    pub backup_method: String,
    /// The Portal client id.
    pub client_id: String,
    /// The custodian backup share, a JSON string opaque to the webhook; kept exactly as
    /// received.
    pub share: S,
}

/// `POST {base}/backup/fetch`: which client's shares Portal wants.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchRequest {
    /// The Portal client id.
    pub client_id: String,
}

/// The answer to [`FetchRequest`]: every custodian backup share kept for the client, exactly
/// as received; Portal picks the one it needs.
///
/// Generic over how a share is held, so that a server can answer from borrowed strings
/// (`FetchResponse<&str>`) without another copy of the secrets.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchResponse<S = SecretShare> {
    /// The shares.
    pub backup_shares: Vec<S>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_are_portal_s() {
        let request = BackupRequest {
            backup_method: "GDRIVE".into(),
            client_id: "cl_1".into(),
            share: SecretShare::from("s"),
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"backupMethod":"GDRIVE","clientId":"cl_1","share":"s"}"#
        );
        assert_eq!(
            serde_json::to_string(&FetchRequest {
                client_id: "cl_1".into()
            })
            .unwrap(),
            r#"{"clientId":"cl_1"}"#
        );
        let answer: FetchResponse = serde_json::from_str(r#"{"backupShares":["a","b"]}"#).unwrap();
        assert_eq!(answer.backup_shares.len(), 2);
        assert_eq!(answer.backup_shares[1].expose_secret(), "b");
    }

    #[test]
    fn a_request_without_a_field_is_refused() {
        assert!(serde_json::from_str::<BackupRequest>(r#"{"clientId":"c","share":"s"}"#).is_err());
        assert!(serde_json::from_str::<FetchRequest>("{}").is_err());
    }

    #[test]
    fn debug_never_shows_a_share() {
        let request = BackupRequest {
            backup_method: "GDRIVE".into(),
            client_id: "cl_1".into(),
            share: SecretShare::from("the-share-itself"),
        };
        assert!(!format!("{request:?}").contains("the-share-itself"));
    }
}
