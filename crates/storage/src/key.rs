//! What a stored object is called: [`BackupKey`] and its path form.

use std::fmt;
use std::str::FromStr;

use crate::error::StorageError;

/// Longest part of a key (client id, share pair id, curve, backup method), in bytes.
pub const MAX_PART_LEN: usize = 128;

/// Longest path form of a key, in bytes: five parts and four separators.
pub const MAX_PATH_LEN: usize = 5 * MAX_PART_LEN + 4;

/// The path segment that stands for an absent optional part. It is outside the parts'
/// charset, so it never collides with a real value.
pub const ABSENT: &str = "~";

/// Which share an object holds. The path form uses the kebab-case name
/// ([`ShareKind::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ShareKind {
    /// The client's backup share, encrypted by us (Portal's `clientCipherText`). Keyed by
    /// backup share pair id and curve; a backup method may be recorded.
    ClientBackup,
    /// A custodian backup share received by the Self-Managed Backups webhook. Keyed by backup
    /// method (`GDRIVE`, `PASSWORD-SECP256K1`, …); curve and share pair id are optional.
    CustodianBackup,
    /// A client signing share (after generate or recover). Keyed by signing share pair id and
    /// curve; never has a backup method.
    ClientSigning,
}

impl ShareKind {
    /// Every kind, in path order.
    pub const ALL: [Self; 3] = [
        Self::ClientBackup,
        Self::CustodianBackup,
        Self::ClientSigning,
    ];

    /// The name used in the path form: `client-backup`, `custodian-backup`, `client-signing`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientBackup => "client-backup",
            Self::CustodianBackup => "custodian-backup",
            Self::ClientSigning => "client-signing",
        }
    }
}

impl fmt::Display for ShareKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ShareKind {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(StorageError::InvalidKey {
                part: "share kind",
                reason: "is not client-backup, custodian-backup or client-signing",
            })
    }
}

/// The name of one stored object: whose share it is, which kind, and which share.
///
/// | part | client backup | custodian backup | client signing |
/// |---|---|---|---|
/// | client id | required | required | required |
/// | share pair id | required (backup share pair id) | optional | required (signing share pair id) |
/// | curve | required | optional | required |
/// | backup method | optional | required | absent |
///
/// # Rules for every part
/// 1 to [`MAX_PART_LEN`] (128) bytes of ASCII letters, digits, `-`, `_` and `.`, not
/// starting with `.`. So a part is never empty, `.` or `..`, never holds a path separator,
/// and never names a hidden or temporary file. The curve is normalised to upper case
/// (`secp256k1` → `SECP256K1`, as Portal's canonical names); every other part is
/// case-sensitive and kept as given.
///
/// # Path form
/// `{client id}/{share kind}/{curve}/{share pair id}/{backup method}`, with [`ABSENT`] (`~`)
/// for an absent part, for example
///
/// * `cl_123/client-backup/SECP256K1/bsp_456/~`
/// * `cl_123/custodian-backup/~/~/GDRIVE-SECP256K1`
/// * `cl_123/client-signing/ED25519/ssp_789/~`
///
/// The form is stable: stores that name objects by path (files, object stores, key-value
/// services) use it as is, under their own root or prefix, and every object of one client
/// lies under [`BackupKey::client_prefix`]. [`BackupKey::from_path`] accepts exactly the
/// strings [`BackupKey::to_path`] makes. A store on a case-insensitive file system must not
/// be given client ids that differ only in case.
///
/// ```
/// use storage::{BackupKey, ShareKind};
///
/// let key = BackupKey::client_backup("cl_123", "bsp_456", "secp256k1")?;
/// assert_eq!(key.to_path(), "cl_123/client-backup/SECP256K1/bsp_456/~");
/// assert_eq!(BackupKey::from_path(&key.to_path())?, key);
///
/// let key = BackupKey::custodian_backup("cl_123", "GDRIVE")?;
/// assert_eq!(key.kind(), ShareKind::CustodianBackup);
/// assert_eq!(key.share_pair_id(), None);
///
/// assert!(BackupKey::client_backup("../etc", "bsp_456", "ED25519").is_err());
/// # Ok::<_, storage::StorageError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupKey {
    client_id: String,
    kind: ShareKind,
    curve: Option<String>,
    share_pair_id: Option<String>,
    backup_method: Option<String>,
}

impl BackupKey {
    /// The key of a client backup share ciphertext.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] when a part breaks the [rules](Self#rules-for-every-part).
    pub fn client_backup(
        client_id: impl Into<String>,
        backup_share_pair_id: impl Into<String>,
        curve: impl Into<String>,
    ) -> Result<Self, StorageError> {
        Self::builder(ShareKind::ClientBackup, client_id)
            .share_pair_id(backup_share_pair_id)
            .curve(curve)
            .build()
    }

    /// The key of a custodian backup share, as the Self-Managed Backups webhook stores it: one
    /// per client and backup method.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] when a part breaks the [rules](Self#rules-for-every-part).
    pub fn custodian_backup(
        client_id: impl Into<String>,
        backup_method: impl Into<String>,
    ) -> Result<Self, StorageError> {
        Self::builder(ShareKind::CustodianBackup, client_id)
            .backup_method(backup_method)
            .build()
    }

    /// The key of a client signing share.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] when a part breaks the [rules](Self#rules-for-every-part).
    pub fn client_signing(
        client_id: impl Into<String>,
        signing_share_pair_id: impl Into<String>,
        curve: impl Into<String>,
    ) -> Result<Self, StorageError> {
        Self::builder(ShareKind::ClientSigning, client_id)
            .share_pair_id(signing_share_pair_id)
            .curve(curve)
            .build()
    }

    /// A builder for any kind, for the optional parts.
    ///
    /// ```
    /// use storage::{BackupKey, ShareKind};
    /// let key = BackupKey::builder(ShareKind::ClientBackup, "cl_1")
    ///     .share_pair_id("bsp_1")
    ///     .curve("ED25519")
    ///     .backup_method("PASSWORD")
    ///     .build()?;
    /// assert_eq!(key.to_path(), "cl_1/client-backup/ED25519/bsp_1/PASSWORD");
    /// # Ok::<_, storage::StorageError>(())
    /// ```
    pub fn builder(kind: ShareKind, client_id: impl Into<String>) -> BackupKeyBuilder {
        BackupKeyBuilder {
            kind,
            client_id: client_id.into(),
            curve: None,
            share_pair_id: None,
            backup_method: None,
        }
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The kind of share.
    #[must_use]
    pub fn kind(&self) -> ShareKind {
        self.kind
    }

    /// The share pair id (backup or signing), if the key has one.
    #[must_use]
    pub fn share_pair_id(&self) -> Option<&str> {
        self.share_pair_id.as_deref()
    }

    /// The curve (upper case), if the key has one.
    #[must_use]
    pub fn curve(&self) -> Option<&str> {
        self.curve.as_deref()
    }

    /// The backup method, if the key has one.
    #[must_use]
    pub fn backup_method(&self) -> Option<&str> {
        self.backup_method.as_deref()
    }

    /// The [path form](Self#path-form).
    #[must_use]
    pub fn to_path(&self) -> String {
        self.to_string()
    }

    /// The path segments, in order (the path form joins them with `/`).
    #[must_use]
    pub fn segments(&self) -> [&str; 5] {
        [
            &self.client_id,
            self.kind.as_str(),
            self.curve.as_deref().unwrap_or(ABSENT),
            self.share_pair_id.as_deref().unwrap_or(ABSENT),
            self.backup_method.as_deref().unwrap_or(ABSENT),
        ]
    }

    /// Parses the [path form](Self#path-form). Accepts exactly what
    /// [`to_path`](Self::to_path) makes.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] for anything else.
    pub fn from_path(path: &str) -> Result<Self, StorageError> {
        const SHAPE: StorageError = StorageError::InvalidKey {
            part: "path",
            reason: "is not client/kind/curve/share-pair-id/backup-method",
        };
        if path.len() > MAX_PATH_LEN {
            return Err(SHAPE);
        }
        let mut it = path.split('/');
        let (Some(client), Some(kind), Some(curve), Some(pair), Some(method), None) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) else {
            return Err(SHAPE);
        };
        let opt = |s: &str| (s != ABSENT).then(|| s.to_owned());
        let key = BackupKeyBuilder {
            kind: kind.parse()?,
            client_id: client.to_owned(),
            curve: opt(curve),
            share_pair_id: opt(pair),
            backup_method: opt(method),
        }
        .build()?;
        if key.curve.as_deref() != opt(curve).as_deref() {
            return Err(StorageError::InvalidKey {
                part: "curve",
                reason: "must be upper case in the path form",
            });
        }
        Ok(key)
    }

    /// The prefix under which every object of one client lies in the path form: the client id
    /// followed by `/`. Stores that list by prefix use it.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] when the client id breaks the
    /// [rules](Self#rules-for-every-part).
    pub fn client_prefix(client_id: &str) -> Result<String, StorageError> {
        check_part("client id", client_id)?;
        Ok(format!("{client_id}/"))
    }

    /// Checks a client id against the [rules](Self#rules-for-every-part), as
    /// [`BackupStore::list`](crate::BackupStore::list) does.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`].
    pub fn check_client_id(client_id: &str) -> Result<(), StorageError> {
        check_part("client id", client_id)
    }
}

impl fmt::Display for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e] = self.segments();
        write!(f, "{a}/{b}/{c}/{d}/{e}")
    }
}

impl FromStr for BackupKey {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_path(s)
    }
}

/// Builds a [`BackupKey`] of any kind; made by [`BackupKey::builder`]. Checks everything in
/// [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct BackupKeyBuilder {
    kind: ShareKind,
    client_id: String,
    curve: Option<String>,
    share_pair_id: Option<String>,
    backup_method: Option<String>,
}

impl BackupKeyBuilder {
    /// Sets the share pair id (backup or signing).
    pub fn share_pair_id(mut self, id: impl Into<String>) -> Self {
        self.share_pair_id = Some(id.into());
        self
    }

    /// Sets the curve (`SECP256K1`, `ED25519`; normalised to upper case).
    pub fn curve(mut self, curve: impl Into<String>) -> Self {
        self.curve = Some(curve.into());
        self
    }

    /// Sets the backup method (`GDRIVE`, `PASSWORD-SECP256K1`, …).
    pub fn backup_method(mut self, method: impl Into<String>) -> Self {
        self.backup_method = Some(method.into());
        self
    }

    /// The key.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] when a part breaks the
    /// [rules](BackupKey#rules-for-every-part), or a part the kind requires is missing, or
    /// one it forbids is present (see the table on [`BackupKey`]).
    pub fn build(self) -> Result<BackupKey, StorageError> {
        let Self {
            kind,
            client_id,
            curve,
            share_pair_id,
            backup_method,
        } = self;
        check_part("client id", &client_id)?;
        for (part, value) in [
            ("curve", &curve),
            ("share pair id", &share_pair_id),
            ("backup method", &backup_method),
        ] {
            if let Some(v) = value {
                check_part(part, v)?;
            }
        }
        let missing = |part| StorageError::InvalidKey {
            part,
            reason: "is required for this share kind",
        };
        match kind {
            ShareKind::ClientBackup | ShareKind::ClientSigning => {
                if share_pair_id.is_none() {
                    return Err(missing("share pair id"));
                }
                if curve.is_none() {
                    return Err(missing("curve"));
                }
            }
            ShareKind::CustodianBackup => {
                if backup_method.is_none() {
                    return Err(missing("backup method"));
                }
            }
        }
        if kind == ShareKind::ClientSigning && backup_method.is_some() {
            return Err(StorageError::InvalidKey {
                part: "backup method",
                reason: "is not allowed for a client signing share",
            });
        }
        Ok(BackupKey {
            client_id,
            kind,
            curve: curve.map(|c| c.to_ascii_uppercase()),
            share_pair_id,
            backup_method,
        })
    }
}

fn check_part(part: &'static str, value: &str) -> Result<(), StorageError> {
    let invalid = |reason| StorageError::InvalidKey { part, reason };
    if value.is_empty() {
        return Err(invalid("is empty"));
    }
    if value.len() > MAX_PART_LEN {
        return Err(invalid("is longer than 128 bytes"));
    }
    if value.starts_with('.') {
        return Err(invalid("starts with '.'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            "holds a character other than ASCII letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_forms_of_each_kind() {
        let k = BackupKey::client_signing("cl", "ssp", "ed25519").unwrap();
        assert_eq!(k.to_path(), "cl/client-signing/ED25519/ssp/~");
        let k = BackupKey::builder(ShareKind::CustodianBackup, "cl")
            .backup_method("PASSWORD-ED25519")
            .curve("ED25519")
            .share_pair_id("bsp")
            .build()
            .unwrap();
        assert_eq!(
            k.to_path(),
            "cl/custodian-backup/ED25519/bsp/PASSWORD-ED25519"
        );
        assert_eq!(k.to_path().parse::<BackupKey>().unwrap(), k);
    }

    #[test]
    fn required_and_forbidden_parts() {
        let b = || BackupKey::builder(ShareKind::ClientBackup, "cl");
        assert!(b().curve("ED25519").build().is_err());
        assert!(b().share_pair_id("p").build().is_err());
        assert!(
            BackupKey::builder(ShareKind::CustodianBackup, "cl")
                .build()
                .is_err()
        );
        assert!(
            BackupKey::builder(ShareKind::ClientSigning, "cl")
                .share_pair_id("p")
                .curve("ED25519")
                .backup_method("GDRIVE")
                .build()
                .is_err()
        );
    }

    #[test]
    fn bad_parts_are_rejected() {
        let long = "a".repeat(MAX_PART_LEN + 1);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "a\\b", "~", "a b", "é", "a\0", &long,
        ] {
            assert!(
                BackupKey::custodian_backup(bad, "GDRIVE").is_err(),
                "{bad:?}"
            );
            assert!(BackupKey::custodian_backup("cl", bad).is_err(), "{bad:?}");
        }
        assert!(BackupKey::custodian_backup("a".repeat(MAX_PART_LEN), "x").is_ok());
        assert!(BackupKey::custodian_backup("a..b", "x.y").is_ok());
    }

    #[test]
    fn from_path_is_strict() {
        for bad in [
            "cl/client-backup/secp256k1/bsp/~",
            "cl/client-backup/SECP256K1/bsp",
            "cl/client-backup/SECP256K1/bsp/~/",
            "/cl/client-backup/SECP256K1/bsp/~",
            "cl/Client-Backup/SECP256K1/bsp/~",
            "cl/client-backup/~/bsp/~",
            "cl/custodian-backup/~/~/~",
            "cl//SECP256K1/bsp/~",
        ] {
            assert!(BackupKey::from_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_prefix_is_a_strict_prefix() {
        let k = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
        assert!(
            k.to_path()
                .starts_with(&BackupKey::client_prefix("cl_1").unwrap())
        );
        assert!(
            !k.to_path()
                .starts_with(&BackupKey::client_prefix("cl_").unwrap())
        );
        assert!(BackupKey::client_prefix("a/b").is_err());
    }
}
