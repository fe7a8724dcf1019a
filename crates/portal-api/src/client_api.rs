//! Client API v3 (`https://api.portalhq.io/api/v3/clients/me/...`): the parts that backup,
//! recovery and eject need. Authenticated with a Client API Key or a Client Session Token.
//!
//! Timestamps are kept as the ISO-8601 strings Portal sends. Fields Portal documents as
//! nullable serialize as `null` when absent; optional fields are left out.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::common::{BackupMethod, Curve, SharePairStatus, SharePairUpdateStatus};
use crate::secret::SecretShare;

/// `GET /api/v3/clients/me` (and the custodian's `GET /api/v3/custodians/me/clients/{id}`):
/// the client with its wallets and share pairs. The source of truth for lifecycle state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientDetails {
    /// The client id.
    pub id: String,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the client was ejected; `null` while it is not.
    #[serde(default)]
    pub ejected_at: Option<String>,
    /// Whether the client uses account abstraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_account_abstracted: Option<bool>,
    /// The custodian owning this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custodian: Option<Custodian>,
    /// The custodian environment, including whether Portal stores backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Addresses per chain namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ClientMetadata>,
    /// One wallet per curve.
    #[serde(default)]
    pub wallets: Vec<Wallet>,
}

impl ClientDetails {
    /// Builds a client with only an id; the rest empty.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            created_at: None,
            ejected_at: None,
            is_account_abstracted: None,
            custodian: None,
            environment: None,
            metadata: None,
            wallets: Vec::new(),
        }
    }

    /// The wallet for a curve, if there is one.
    #[must_use]
    pub fn wallet(&self, curve: &Curve) -> Option<&Wallet> {
        self.wallets.iter().find(|w| &w.curve == curve)
    }

    /// `environment.backupWithPortalEnabled`, `false` when absent: whether client backup
    /// ciphertexts are stored with Portal (Portal-Managed Backups).
    #[must_use]
    pub fn backup_with_portal_enabled(&self) -> bool {
        self.environment
            .as_ref()
            .and_then(|e| e.backup_with_portal_enabled)
            .unwrap_or(false)
    }
}

/// The custodian of a client: `{id, name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Custodian {
    /// Custodian id.
    pub id: String,
    /// Custodian name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The custodian environment a client belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// Environment id.
    pub id: String,
    /// Environment name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether Portal stores client backup ciphertexts (Portal-Managed Backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_with_portal_enabled: Option<bool>,
    /// Whether multi-backup is enabled (seen in a third-party typing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_multi_backup_enabled: Option<bool>,
}

/// `metadata` of a client: addresses per chain namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientMetadata {
    /// Keyed by namespace: `eip155`, `solana`, `bip122`, `stellar`, `tron`, ...
    #[serde(default)]
    pub namespaces: BTreeMap<String, Namespace>,
}

/// One namespace entry of [`ClientMetadata`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// The address on this namespace.
    pub address: String,
    /// The curve the address derives from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<Curve>,
    /// Bitcoin address variants (`{p2wpkh: {mainnet, testnet}}`), kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitcoin: Option<serde_json::Value>,
}

/// A wallet (one per curve) with its share pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    /// Wallet id.
    pub id: String,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The wallet's curve.
    pub curve: Curve,
    /// The public key, as stringified JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Until when eject is enabled; `null` when it is not.
    #[serde(default)]
    pub ejectable_until: Option<String>,
    /// Backup share pairs, one or more per backup method.
    #[serde(default)]
    pub backup_share_pairs: Vec<BackupSharePair>,
    /// Signing share pairs.
    #[serde(default)]
    pub signing_share_pairs: Vec<SigningSharePair>,
}

impl Wallet {
    /// The newest `completed` backup pair, by `createdAt` (ISO-8601 strings sort in time
    /// order); pairs without a timestamp count as oldest.
    #[must_use]
    pub fn latest_completed_backup_pair(&self) -> Option<&BackupSharePair> {
        self.backup_share_pairs
            .iter()
            .filter(|p| p.status == SharePairStatus::Completed)
            .max_by(|a, b| a.created_at.cmp(&b.created_at))
    }
}

/// A backup share pair, as listed in a wallet or by the wallet-scoped listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSharePair {
    /// The backup share pair id.
    pub id: String,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The backup method (absent in some listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_method: Option<BackupMethod>,
    /// The pair status.
    pub status: SharePairStatus,
}

/// A signing share pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningSharePair {
    /// The signing share pair id.
    pub id: String,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The pair status.
    pub status: SharePairStatus,
}

/// Body of `PATCH /api/v3/clients/me/backup-share-pairs/{backupSharePairId}`: stores the
/// client backup ciphertext with Portal (Portal-Managed Backups).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreCipherTextRequest {
    /// The encrypted client backup share, as text.
    pub client_cipher_text: String,
}

/// Response of `GET /api/v3/clients/me/backup-share-pairs/{backupSharePairId}/cipher-text`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CipherTextResponse {
    /// The stored client backup ciphertext.
    pub cipher_text: String,
}

/// Body of `PATCH /api/v3/clients/me/backup-share-pairs` and
/// `PATCH /api/v3/clients/me/signing-share-pairs` (both answer 204).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharePairStatusUpdate {
    /// Backup share pair ids (backup-share-pairs route only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_share_pair_ids: Option<Vec<String>>,
    /// Signing share pair ids (signing-share-pairs route only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_share_pair_ids: Option<Vec<String>>,
    /// The new status.
    pub status: SharePairUpdateStatus,
}

impl SharePairStatusUpdate {
    /// A backup-pair update: `{"backupSharePairIds": [...], "status": ...}`.
    #[must_use]
    pub fn backup(ids: Vec<String>, status: SharePairUpdateStatus) -> Self {
        Self {
            backup_share_pair_ids: Some(ids),
            signing_share_pair_ids: None,
            status,
        }
    }

    /// A signing-pair update to `STORED_CLIENT`:
    /// `{"signingSharePairIds": [...], "status": "STORED_CLIENT"}`.
    #[must_use]
    pub fn signing_stored(ids: Vec<String>) -> Self {
        Self {
            backup_share_pair_ids: None,
            signing_share_pair_ids: Some(ids),
            status: SharePairUpdateStatus::StoredClient,
        }
    }
}

/// Body of `POST /api/v3/clients/me/wallets/{walletId}/prepare-eject`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareEjectRequest {
    /// The backup method whose pair is ejected.
    pub backup_method: BackupMethod,
}

/// Response of `POST /api/v3/clients/me/wallets/{walletId}/prepare-eject`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareEjectResponse {
    /// The custodian backup share, as JSON text. Secret.
    pub share: SecretShare,
}

/// Response of `GET .../wallets/{walletId}/ejectable-backup-shares`, on both the client and
/// the custodian route.
///
/// Parsing also accepts the body wrapped as `{"data": {...}}` (seen in a third-party client).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawEjectable")]
pub struct EjectableBackupShares {
    /// The client backup ciphertext Portal stores; `null` when Portal stores none.
    pub encrypted_client_backup_share: Option<String>,
    /// The custodian backup share, as JSON text. Secret.
    pub custodian_backup_share: SecretShare,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEjectable {
    #[serde(default)]
    data: Option<Box<Self>>,
    #[serde(default)]
    encrypted_client_backup_share: Option<String>,
    #[serde(default)]
    custodian_backup_share: Option<SecretShare>,
}

impl TryFrom<RawEjectable> for EjectableBackupShares {
    type Error = &'static str;

    fn try_from(raw: RawEjectable) -> Result<Self, Self::Error> {
        let raw = match raw {
            RawEjectable {
                data: Some(inner),
                custodian_backup_share: None,
                ..
            } => *inner,
            other => other,
        };
        match raw.custodian_backup_share {
            Some(custodian_backup_share) => Ok(Self {
                encrypted_client_backup_share: raw.encrypted_client_backup_share,
                custodian_backup_share,
            }),
            None => Err("missing field `custodianBackupShare`"),
        }
    }
}

/// Body of `POST /api/v3/clients/me/eject`: marks the client and its wallets ejected
/// (irreversible).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EjectClientRequest {
    /// The platform, e.g. `NATIVE_IOS`; free-form.
    pub client_platform: String,
    /// The platform version.
    pub client_platform_version: String,
}

/// Deserializes a cursor that may arrive as a string or a number.
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        Some(Either::S(s)) => Some(s),
        Some(Either::N(n)) => Some(n.to_string()),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejectable_accepts_flat_and_wrapped() {
        let flat =
            r#"{"encryptedClientBackupShare":"abc","custodianBackupShare":"{\"share\":\"1\"}"}"#;
        let wrapped = format!(r#"{{"data":{flat}}}"#);
        let a: EjectableBackupShares = serde_json::from_str(flat).unwrap();
        let b: EjectableBackupShares = serde_json::from_str(&wrapped).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.encrypted_client_backup_share.as_deref(), Some("abc"));
        let null = r#"{"encryptedClientBackupShare":null,"custodianBackupShare":"x"}"#;
        let c: EjectableBackupShares = serde_json::from_str(null).unwrap();
        assert_eq!(c.encrypted_client_backup_share, None);
        assert!(serde_json::from_str::<EjectableBackupShares>("{}").is_err());
        assert!(!format!("{a:?}").contains("share\\\":\\\"1"));
    }

    #[test]
    fn status_update_omits_the_unused_list() {
        let b = SharePairStatusUpdate::backup(
            vec!["a".into(), "b".into()],
            SharePairUpdateStatus::StoredClientBackupShare,
        );
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"backupSharePairIds":["a","b"],"status":"STORED_CLIENT_BACKUP_SHARE"}"#
        );
        let s = SharePairStatusUpdate::signing_stored(vec!["c".into()]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"signingSharePairIds":["c"],"status":"STORED_CLIENT"}"#
        );
    }

    #[test]
    fn latest_completed_backup_pair_picks_newest_completed() {
        let w: Wallet = serde_json::from_value(serde_json::json!({
            "id": "w", "curve": "SECP256K1",
            "backupSharePairs": [
                {"id": "old", "createdAt": "2024-01-01T00:00:00.000Z", "backupMethod": "CUSTOM", "status": "completed"},
                {"id": "new", "createdAt": "2024-03-01T00:00:00.000Z", "backupMethod": "CUSTOM", "status": "completed"},
                {"id": "newest-incomplete", "createdAt": "2024-05-01T00:00:00.000Z", "backupMethod": "CUSTOM", "status": "incomplete"}
            ]
        }))
        .unwrap();
        assert_eq!(w.latest_completed_backup_pair().unwrap().id, "new");
        assert!(w.signing_share_pairs.is_empty());
    }
}
