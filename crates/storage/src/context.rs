//! The encryption context a stored share is sealed under.
//!
//! One vocabulary for everything that seals or opens a share (the backup flow, the custodian
//! webhook, rotation, verification, migration), so that none of them can disagree about what
//! a ciphertext is bound to. The context names the share's place: a ciphertext copied under
//! another client's, method's or pair's key does not open there.
//!
//! The entries are plain `(name, value)` pairs, so this crate needs no encryption library;
//! the `envelope` crate's `EncryptionContext` is built from them.
//!
//! ```
//! use storage::{BackupKey, context};
//!
//! let key = BackupKey::custodian_backup("cl_1", "GDRIVE")?;
//! assert_eq!(
//!     context::entries(&key)?,
//!     [
//!         (context::CLIENT_ID, "cl_1"),
//!         (context::PURPOSE, "custodian-backup"),
//!         (context::BACKUP_METHOD, "GDRIVE"),
//!     ]
//! );
//! # Ok::<_, storage::StorageError>(())
//! ```

use crate::error::StorageError;
use crate::key::{BackupKey, ShareKind};

/// Entry name: the Portal client id.
pub const CLIENT_ID: &str = "client-id";
/// Entry name: what the share is; its value is the share kind's name
/// ([`ShareKind::as_str`]: `client-backup`, `client-signing`, `custodian-backup`).
pub const PURPOSE: &str = "purpose";
/// Entry name: the backup share pair id of a client backup share.
pub const BACKUP_SHARE_PAIR_ID: &str = "backup-share-pair-id";
/// Entry name: the signing share pair id of a client signing share.
pub const SIGNING_SHARE_PAIR_ID: &str = "signing-share-pair-id";
/// Entry name: the curve (`SECP256K1`, `ED25519`) of a client share.
pub const CURVE: &str = "curve";
/// Entry name: the backup method of a custodian backup share (`GDRIVE`, `PASSWORD`, …).
pub const BACKUP_METHOD: &str = "backup-method";

/// The entries that every share of one client and kind shares: what a KMS sees (and logs)
/// when it wraps the one data key that seals all of them.
#[must_use]
pub fn kek_entries(client_id: &str, kind: ShareKind) -> [(&'static str, &str); 2] {
    [(CLIENT_ID, client_id), (PURPOSE, kind.as_str())]
}

/// Every entry of the context the object stored under `key` is sealed under: the
/// [`kek_entries`], then what tells this share from the client's others of its kind (pair id
/// and curve, or backup method).
///
/// # Errors
/// [`StorageError::InvalidKey`] when `key` lacks a part its kind needs. Keys built by this
/// crate always have them (their constructors and [`BackupKey::from_path`] require them); the
/// error stands in for a panic should that ever change.
pub fn entries(key: &BackupKey) -> Result<Vec<(&'static str, &str)>, StorageError> {
    let mut entries = kek_entries(key.client_id(), key.kind()).to_vec();
    match key.kind() {
        ShareKind::ClientBackup | ShareKind::ClientSigning => {
            let pair_entry = if key.kind() == ShareKind::ClientSigning {
                SIGNING_SHARE_PAIR_ID
            } else {
                BACKUP_SHARE_PAIR_ID
            };
            entries.push((pair_entry, need(key.share_pair_id(), "share pair id")?));
            entries.push((CURVE, need(key.curve(), "curve")?));
        }
        ShareKind::CustodianBackup => {
            entries.push((BACKUP_METHOD, need(key.backup_method(), "backup method")?));
        }
    }
    Ok(entries)
}

fn need<'a>(part: Option<&'a str>, name: &'static str) -> Result<&'a str, StorageError> {
    part.ok_or(StorageError::InvalidKey {
        part: name,
        reason: "is needed by this kind of share's encryption context",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_share_is_bound_to_its_place() {
        let backup = BackupKey::client_backup("cl_1", "bsp_1", "secp256k1").unwrap();
        assert_eq!(
            entries(&backup).unwrap(),
            [
                (CLIENT_ID, "cl_1"),
                (PURPOSE, "client-backup"),
                (BACKUP_SHARE_PAIR_ID, "bsp_1"),
                (CURVE, "SECP256K1"),
            ]
        );
        let signing = BackupKey::client_signing("cl_1", "ssp_1", "ED25519").unwrap();
        assert_eq!(
            entries(&signing).unwrap(),
            [
                (CLIENT_ID, "cl_1"),
                (PURPOSE, "client-signing"),
                (SIGNING_SHARE_PAIR_ID, "ssp_1"),
                (CURVE, "ED25519"),
            ]
        );
        assert_eq!(
            kek_entries("cl_1", ShareKind::ClientBackup),
            [(CLIENT_ID, "cl_1"), (PURPOSE, "client-backup")]
        );
    }
}
