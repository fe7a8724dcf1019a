//! Recovery: open the newest completed backup and have Portal issue new signing shares.

use bytes::Bytes;
use envelope::{Opener, Sealer};
use portal_api::SecretShare;
use portal_api::client_api::{BackupSharePair, SharePairStatusUpdate, Wallet};
use portal_api::mpc::{BackupResponse, CurveShare, RecoverResponse};
use portal_api::{BackupMethod, Curve, SharePairStatus};
use storage::{BackupStoreExt as _, PutOptions};

use crate::backup::open_text;
use crate::error::{Error, Result};
use crate::flow::ClientFlow;
use crate::identity::ShareId;
use storage::ShareKind;

/// The new signing shares from a recovery. They are secrets: `Debug` is redacted and they
/// are zeroized on drop; serialize [`Recovered::shares`] only to a private file or pipe.
#[derive(Debug)]
#[non_exhaustive]
pub struct Recovered {
    /// The Portal client id.
    pub client_id: String,
    /// The `/v1/recover` response: the new signing shares, keyed by curve.
    pub shares: RecoverResponse,
}

impl ClientFlow {
    /// Recovers the client's wallet and confirms the new signing shares to Portal: the
    /// same as [`recover_unconfirmed`](Self::recover_unconfirmed) then
    /// [`confirm_recovered`](Self::confirm_recovered). Use it when a signing store is
    /// configured (the shares are stored sealed before they are confirmed); a caller that keeps
    /// the shares itself should use the two steps and confirm only once they are safe.
    ///
    /// # Errors
    /// As the two steps.
    pub async fn recover(&self) -> Result<Recovered> {
        let recovered = self.recover_unconfirmed().await?;
        self.confirm_recovered(&recovered).await?;
        Ok(recovered)
    }

    /// Opens the newest completed backup's ciphertexts (each bound to its own identity, so a
    /// swapped or foreign ciphertext fails here, before Portal is asked), calls
    /// `/v1/recover`, and stores the new signing shares sealed when a signing store is
    /// configured. Does **not** confirm them: Portal keeps them `STORED_DATABASE` until
    /// [`confirm_recovered`](Self::confirm_recovered).
    ///
    /// # Errors
    /// [`Error::WrongIdentity`] for a ciphertext that does not open as its share;
    /// [`Error::Unexpected`] when a wallet has no completed backup; Portal and store errors.
    pub async fn recover_unconfirmed(&self) -> Result<Recovered> {
        self.recover_unconfirmed_using(None).await
    }

    /// [`recover`](Self::recover) from the newest completed backup of `backup_method` (a client
    /// with several backup methods has one pair per method); `None` is the newest of any method.
    ///
    /// # Errors
    /// As [`recover`](Self::recover); [`Error::Unexpected`] naming the completed methods when a
    /// wallet has no completed backup of `backup_method`.
    pub async fn recover_using(&self, backup_method: Option<&BackupMethod>) -> Result<Recovered> {
        let recovered = self.recover_unconfirmed_using(backup_method).await?;
        self.confirm_recovered(&recovered).await?;
        Ok(recovered)
    }

    /// [`recover_unconfirmed`](Self::recover_unconfirmed) from the newest completed backup of
    /// `backup_method` (`None`: of any method).
    ///
    /// # Errors
    /// As [`recover_unconfirmed`](Self::recover_unconfirmed).
    pub async fn recover_unconfirmed_using(
        &self,
        backup_method: Option<&BackupMethod>,
    ) -> Result<Recovered> {
        let me = self
            .client
            .client_me()
            .await
            .map_err(Error::portal("GET", portal_api::paths::CLIENT_ME))?;
        let opener = Opener::new(&self.on.flow.keyring);
        let mut backup = BackupResponse::default();
        for wallet in &me.wallets {
            let pair = choose_backup_pair(wallet, backup_method, "recover from")?;
            let id = ShareId {
                client_id: &me.id,
                pair_id: &pair.id,
                curve: &wallet.curve,
                kind: ShareKind::ClientBackup,
            };
            let key = id.key()?;
            let stored = self
                .on
                .store
                .get(&key)
                .await
                .map_err(Error::store("get", &key))?;
            let opened = open_text(&opener, &id, &key, &stored).await?;
            let share = into_secret_share(opened).ok_or_else(|| Error::WrongIdentity {
                key: key.to_string(),
                source: envelope::Error::Decrypt,
            })?;
            set(
                &mut backup,
                &wallet.curve,
                CurveShare::new(share, pair.id.clone()),
            )?;
        }
        if backup.iter().next().is_none() {
            return Err(Error::Unexpected("the client has no wallet".into()));
        }
        let shares = self
            .client
            .recover(&backup)
            .await
            .map_err(Error::portal("POST", portal_api::paths::MPC_RECOVER))?;
        drop(backup);
        if let Some(store) = &self.on.flow.signing_store {
            self.store_signing_shares(store.as_ref(), &me.id, &shares)
                .await?;
        }
        Ok(Recovered {
            client_id: me.id,
            shares,
        })
    }

    /// Confirms recovered signing shares to Portal (`STORED_CLIENT`). Call it only once the
    /// shares are safely kept: after that, Portal treats them as the client's.
    ///
    /// # Errors
    /// Portal's error.
    pub async fn confirm_recovered(&self, recovered: &Recovered) -> Result<()> {
        self.client
            .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(
                recovered.shares.ids(),
            ))
            .await
            .map_err(Error::portal(
                "PATCH",
                portal_api::paths::SIGNING_SHARE_PAIRS,
            ))
    }

    async fn store_signing_shares(
        &self,
        store: &dyn storage::BackupStore,
        client_id: &str,
        shares: &RecoverResponse,
    ) -> Result<()> {
        let sealer = Sealer::new(
            &self.on.flow.keyring,
            ShareId::kek_context(client_id, ShareKind::ClientSigning)?,
        )
        .await
        .map_err(Error::envelope("wrapping the signing shares' data key"))?;
        for (curve, share) in shares.iter() {
            let id = ShareId {
                client_id,
                pair_id: &share.id,
                curve: &curve,
                kind: ShareKind::ClientSigning,
            };
            let key = id.key()?;
            let sealed = sealer
                .seal(&id.context()?, share.share.expose_secret().as_bytes())
                .map_err(Error::envelope("sealing a signing share"))?;
            let body = Bytes::from(envelope::to_text(&sealed).into_bytes());
            store
                .put(&key, body, PutOptions::create())
                .await
                .map_err(Error::store("put", &key))?;
            // The signing share is the only copy until Portal's pairs are confirmed: prove it.
            let stored = store
                .get_opt(&key)
                .await
                .map_err(Error::store("get", &key))?;
            let opener = Opener::new(&self.on.flow.keyring);
            let opened =
                open_text(&opener, &id, &key, stored.as_deref().unwrap_or_default()).await?;
            if opened.expose_secret() != share.share.expose_secret().as_bytes() {
                return Err(Error::Drill {
                    key: key.to_string(),
                    reason: "the stored signing share does not open to Portal's",
                });
            }
        }
        Ok(())
    }
}

/// The backup pair to open: the newest completed pair of `method`, or of any method when
/// `None`. `what` completes "the … wallet has no completed backup to …".
pub(crate) fn choose_backup_pair<'w>(
    wallet: &'w Wallet,
    method: Option<&BackupMethod>,
    what: &str,
) -> Result<&'w BackupSharePair> {
    let completed = || {
        wallet
            .backup_share_pairs
            .iter()
            .filter(|p| p.status == SharePairStatus::Completed)
    };
    let Some(method) = method else {
        return wallet.latest_completed_backup_pair().ok_or_else(|| {
            Error::Unexpected(format!(
                "the {} wallet has no completed backup to {what}",
                wallet.curve.as_str()
            ))
        });
    };
    completed()
        .filter(|p| p.backup_method.as_ref() == Some(method))
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
        .ok_or_else(|| {
            let mut methods: Vec<&str> = completed()
                .filter_map(|p| p.backup_method.as_ref().map(BackupMethod::as_str))
                .collect();
            methods.sort_unstable();
            methods.dedup();
            Error::Unexpected(format!(
                "the {} wallet has no completed {} backup to {what} (completed backup methods: {})",
                wallet.curve.as_str(),
                method.as_str(),
                if methods.is_empty() {
                    "none".to_owned()
                } else {
                    methods.join(", ")
                }
            ))
        })
}

/// Moves opened bytes into a share string without copying them.
pub(crate) fn into_secret_share(opened: envelope::Plaintext) -> Option<SecretShare> {
    SecretShare::from_utf8(opened.into_zeroizing())
}

fn set(shares: &mut BackupResponse, curve: &Curve, share: CurveShare) -> Result<()> {
    match curve {
        Curve::Secp256k1 => shares.secp256k1 = Some(share),
        Curve::Ed25519 => shares.ed25519 = Some(share),
        other => {
            return Err(Error::Unexpected(format!(
                "a wallet on a curve this version does not know: {}",
                other.as_str()
            )));
        }
    }
    Ok(())
}
