//! Eject: the custodian enables eject and receives both backup shares of each wallet.

use envelope::Opener;
use portal_api::common::Curve;
use portal_api::custodian_api::EnableEjectRequest;
use portal_api::secret::SecretShare;
use storage::BackupStoreExt as _;

use crate::backup::open_text;
use crate::error::{Error, Result};
use crate::flow::{CiphertextStore, Flow};
use crate::identity::ShareId;
use crate::recover::into_secret_share;

/// Both backup shares of one ejected wallet. Secrets: `Debug` is redacted, zeroized on drop.
#[derive(Debug)]
#[non_exhaustive]
pub struct EjectedWallet {
    /// The wallet id.
    pub wallet_id: String,
    /// The wallet's curve.
    pub curve: Curve,
    /// The backup share pair the client share comes from.
    pub backup_share_pair_id: String,
    /// The client backup share, opened from its ciphertext.
    pub client_backup_share: SecretShare,
    /// The custodian backup share, as Portal returned it.
    pub custodian_backup_share: SecretShare,
}

impl Flow {
    /// Ejects `client_id`'s wallets: enables eject (this flow's Portal client must hold the
    /// custodian API key), fetches the ejectable custodian shares, opens the client backup
    /// shares and returns both for each wallet. Nothing is deleted anywhere.
    ///
    /// # Errors
    /// Portal and store errors; [`Error::WrongIdentity`] for a client ciphertext that does not
    /// open as its share.
    pub async fn eject(&self, client_id: &str) -> Result<Vec<EjectedWallet>> {
        let details = self
            .portal
            .get_client(client_id)
            .await
            .map_err(Error::portal(
                "GET /api/v3/custodians/me/clients/{clientId}",
            ))?;
        let opener = Opener::new(&self.keyring);
        let mut ejected = Vec::new();
        for wallet in &details.wallets {
            let pair = wallet.latest_completed_backup_pair().ok_or_else(|| {
                Error::Unexpected(format!(
                    "the {} wallet has no completed backup to eject",
                    wallet.curve.as_str()
                ))
            })?;
            self.portal
                .enable_eject(
                    client_id,
                    &EnableEjectRequest {
                        wallet_id: wallet.id.clone(),
                        ejectable_until: None,
                    },
                )
                .await
                .map_err(Error::portal(
                    "PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject",
                ))?;
            let shares = self
                .portal
                .custodian_ejectable_backup_shares(client_id, &wallet.id)
                .await
                .map_err(Error::portal(
                    "GET …/wallets/{walletId}/ejectable-backup-shares",
                ))?;
            let id = ShareId {
                client_id,
                pair_id: &pair.id,
                curve: &wallet.curve,
                signing: false,
            };
            let key = id.key()?;
            let stored = match (&self.target, shares.encrypted_client_backup_share) {
                // Portal keeps the ciphertext and hands it to the custodian here.
                (CiphertextStore::Portal, Some(text)) => text.into_bytes().into(),
                _ => self
                    .store
                    .get_opt(&key)
                    .await
                    .map_err(Error::store("get", &key))?
                    .ok_or_else(|| Error::Drill {
                        key: key.to_string(),
                        reason: "no client backup ciphertext is stored",
                    })?,
            };
            let opened = open_text(&opener, &id, &key, &stored).await?;
            let client_backup_share =
                into_secret_share(opened).ok_or_else(|| Error::WrongIdentity {
                    key: key.to_string(),
                    source: envelope::Error::Decrypt,
                })?;
            ejected.push(EjectedWallet {
                wallet_id: wallet.id.clone(),
                curve: wallet.curve.clone(),
                backup_share_pair_id: pair.id.clone(),
                client_backup_share,
                custodian_backup_share: shares.custodian_backup_share,
            });
        }
        Ok(ejected)
    }
}
