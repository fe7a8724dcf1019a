//! The identity every share is bound to: the encryption context it is sealed under and the
//! key it is stored under. Both come from the share's [`BackupKey`] and the vocabulary of
//! [`storage::context`], so that sealing, the restore drill, recovery, verification and the
//! custodian webhook can never disagree about what a share is.

use envelope::EncryptionContext;
use portal_api::Curve;
use storage::{BackupKey, ShareKind};

use crate::error::{Error, Result};

/// The context the object stored under `key` must have been sealed under: what a store-wide
/// operation checks before it touches an object, so that a ciphertext moved (or forged) into
/// another share's place is never rewrapped as if it were that share.
pub(crate) fn expected_context(key: &BackupKey) -> Result<EncryptionContext> {
    let entries = storage::context::entries(key)
        .map_err(|e| Error::Invalid(format!("{key}: {}", storage::Report(&e))))?;
    EncryptionContext::from_entries(entries).map_err(|e| Error::Invalid(format!("{key}: {e}")))
}

/// Which of a client's shares: a backup share (by backup share pair id) or a signing share
/// (by signing share pair id), on one curve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShareId<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) pair_id: &'a str,
    pub(crate) curve: &'a Curve,
    /// [`ShareKind::ClientBackup`] (by backup share pair id) or [`ShareKind::ClientSigning`]
    /// (by signing share pair id).
    pub(crate) kind: ShareKind,
}

impl ShareId<'_> {
    /// Runs `then` with the identity of the `kind` share stored under `key`, which names its
    /// client, pair and curve (a key that names no pair or curve is [`Error::Invalid`]).
    pub(crate) async fn of_stored<T>(
        key: &BackupKey,
        kind: ShareKind,
        then: impl AsyncFnOnce(&ShareId<'_>) -> Result<T>,
    ) -> Result<T> {
        let (Some(pair_id), Some(curve)) = (key.share_pair_id(), key.curve()) else {
            return Err(Error::Invalid(format!(
                "{key}: the key names no pair or curve"
            )));
        };
        let curve = Curve::from_wire(curve);
        let id = ShareId {
            client_id: key.client_id(),
            pair_id,
            curve: &curve,
            kind,
        };
        then(&id).await
    }

    /// The KEK context shared by every share of one client and purpose: what the KMS sees
    /// (and logs) for the one data key of a backup.
    pub(crate) fn kek_context(client_id: &str, kind: ShareKind) -> Result<EncryptionContext> {
        EncryptionContext::from_entries(storage::context::kek_entries(client_id, kind))
            .map_err(|e| Error::Invalid(format!("client id: {e}")))
    }

    /// The full context of this one share.
    pub(crate) fn context(&self) -> Result<EncryptionContext> {
        expected_context(&self.key()?)
    }

    /// Where the share's ciphertext is stored.
    pub(crate) fn key(&self) -> Result<BackupKey> {
        BackupKey::builder(self.kind, self.client_id)
            .share_pair_id(self.pair_id)
            .curve(self.curve.as_str())
            .build()
            .map_err(|e| Error::Unexpected(format!("Portal id not usable as a store key: {e}")))
    }
}
