//! The identity every share is bound to: the encryption context it is sealed under and the
//! key it is stored under. One place, so that sealing, the restore drill, recovery and
//! verification can never disagree about what a share is.

use envelope::EncryptionContext;
use portal_api::Curve;
use storage::{BackupKey, ShareKind};

use crate::error::{Error, Result};

/// Context key: the Portal client id.
pub const CLIENT_ID: &str = "client-id";
/// Context key: the backup share pair id.
pub const BACKUP_SHARE_PAIR_ID: &str = "backup-share-pair-id";
/// Context key: the signing share pair id.
pub const SIGNING_SHARE_PAIR_ID: &str = "signing-share-pair-id";
/// Context key: the curve (`SECP256K1`, `ED25519`).
pub const CURVE: &str = "curve";
/// Context key: what the share is for.
pub const PURPOSE: &str = "purpose";

/// Purpose of a client backup share.
pub const CLIENT_BACKUP: &str = "client-backup";
/// Purpose of a client signing share.
pub const CLIENT_SIGNING: &str = "client-signing";
/// Context key: the backup method of a custodian backup share (`GDRIVE`, `PASSWORD`, …).
pub const BACKUP_METHOD: &str = "backup-method";
/// Purpose of a custodian backup share, as the custodian webhook seals it.
pub const CUSTODIAN_BACKUP: &str = "custodian-backup";

/// The context the object stored under `key` must have been sealed under: what a store-wide
/// operation checks before it touches an object, so that a ciphertext moved (or forged) into
/// another share's place is never rewrapped as if it were that share.
pub(crate) fn expected_context(key: &BackupKey) -> Result<EncryptionContext> {
    let invalid = |e: envelope::Error| Error::Invalid(format!("{key}: {e}"));
    let missing = |what: &str| Error::Invalid(format!("{key}: the key names no {what}"));
    match key.kind() {
        ShareKind::ClientBackup | ShareKind::ClientSigning => {
            let curve = Curve::from_wire(key.curve().ok_or_else(|| missing("curve"))?);
            ShareId {
                client_id: key.client_id(),
                pair_id: key
                    .share_pair_id()
                    .ok_or_else(|| missing("share pair id"))?,
                curve: &curve,
                signing: key.kind() == ShareKind::ClientSigning,
            }
            .context()
        }
        ShareKind::CustodianBackup => {
            let method = key
                .backup_method()
                .ok_or_else(|| missing("backup method"))?;
            EncryptionContext::new()
                .with(CLIENT_ID, key.client_id())
                .and_then(|c| c.with(BACKUP_METHOD, method))
                .and_then(|c| c.with(PURPOSE, CUSTODIAN_BACKUP))
                .map_err(invalid)
        }
        _ => Err(Error::Invalid(format!(
            "{key}: a kind of share this version does not know"
        ))),
    }
}

/// Which of a client's shares: a backup share (by backup share pair id) or a signing share
/// (by signing share pair id), on one curve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShareId<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) pair_id: &'a str,
    pub(crate) curve: &'a Curve,
    pub(crate) signing: bool,
}

impl ShareId<'_> {
    /// The KEK context shared by every share of one client and purpose: what the KMS sees
    /// (and logs) for the one data key of a backup.
    pub(crate) fn kek_context(client_id: &str, signing: bool) -> Result<EncryptionContext> {
        let purpose = if signing {
            CLIENT_SIGNING
        } else {
            CLIENT_BACKUP
        };
        EncryptionContext::new()
            .with(CLIENT_ID, client_id)
            .and_then(|c| c.with(PURPOSE, purpose))
            .map_err(|e| Error::Invalid(format!("client id: {e}")))
    }

    /// The full context of this one share.
    pub(crate) fn context(&self) -> Result<EncryptionContext> {
        let pair_key = if self.signing {
            SIGNING_SHARE_PAIR_ID
        } else {
            BACKUP_SHARE_PAIR_ID
        };
        Self::kek_context(self.client_id, self.signing)?
            .with(pair_key, self.pair_id)
            .and_then(|c| c.with(CURVE, self.curve.as_str()))
            .map_err(|e| Error::Invalid(format!("share pair id: {e}")))
    }

    /// Where the share's ciphertext is stored.
    pub(crate) fn key(&self) -> Result<BackupKey> {
        let key = if self.signing {
            BackupKey::client_signing(self.client_id, self.pair_id, self.curve.as_str())
        } else {
            BackupKey::client_backup(self.client_id, self.pair_id, self.curve.as_str())
        };
        key.map_err(|e| Error::Unexpected(format!("Portal id not usable as a store key: {e}")))
    }
}
