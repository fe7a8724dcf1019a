//! Verification: the restore drill on its own, for every completed backup of a client.

use envelope::Opener;
use portal_api::common::SharePairStatus;
use serde::Serialize;
use storage::BackupStoreExt as _;

use crate::backup::open_text;
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::identity::ShareId;

/// What the drill found for one stored share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Finding {
    /// It opens as the share it is stored for.
    Ok,
    /// Nothing is stored for a pair Portal lists as completed.
    Missing,
    /// Something is stored but it does not open as that share (another share's or client's
    /// ciphertext, tampered, or sealed under keys this keyring lacks).
    WrongIdentity {
        /// Why it did not open.
        reason: String,
    },
}

/// One checked share.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ShareCheck {
    /// The curve.
    pub curve: String,
    /// The backup share pair id.
    pub backup_share_pair_id: String,
    /// The store key's path form.
    pub key: String,
    /// What the drill found.
    pub finding: Finding,
}

/// The result of [`Flow::verify`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VerifyReport {
    /// The Portal client id.
    pub client_id: String,
    /// Every completed backup pair of every wallet, checked.
    pub checked: Vec<ShareCheck>,
}

impl VerifyReport {
    /// Whether every share opens and is bound to its identity (and there was one to check).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        !self.checked.is_empty() && self.checked.iter().all(|c| c.finding == Finding::Ok)
    }
}

impl Flow {
    /// Reads, opens and checks the identity of the ciphertext of every completed backup pair
    /// of the client. Changes nothing, anywhere.
    ///
    /// # Errors
    /// Portal and store failures (a missing or unopenable share is a finding, not an error).
    pub async fn verify(&self) -> Result<VerifyReport> {
        let me = self
            .portal
            .client_me()
            .await
            .map_err(Error::portal("GET /api/v3/clients/me"))?;
        let opener = Opener::new(&self.keyring);
        let mut checked = Vec::new();
        for wallet in &me.wallets {
            let completed = wallet
                .backup_share_pairs
                .iter()
                .filter(|p| p.status == SharePairStatus::Completed);
            for pair in completed {
                checked.push(self.check(&opener, &me.id, &wallet.curve, &pair.id).await?);
            }
        }
        Ok(VerifyReport {
            client_id: me.id,
            checked,
        })
    }

    /// The restore drill over everything the store holds for `client_id`, without asking
    /// Portal: every client backup ciphertext must open as the share its key names (client,
    /// pair, curve). Finds swapped, foreign, tampered and unreadable objects; it cannot know
    /// what is missing, which [`verify`](Self::verify) does from Portal's list of pairs.
    ///
    /// # Errors
    /// A store that cannot list (Portal's), and store failures.
    pub async fn verify_stored(&self, client_id: &str) -> Result<VerifyReport> {
        let keys = self.list_client(client_id).await?;
        let opener = Opener::new(&self.keyring);
        let mut checked = Vec::new();
        for key in keys {
            if key.kind() != storage::ShareKind::ClientBackup {
                continue;
            }
            let (Some(pair_id), Some(curve)) = (key.share_pair_id(), key.curve()) else {
                continue;
            };
            let curve = portal_api::common::Curve::from_wire(curve);
            checked.push(self.check(&opener, client_id, &curve, pair_id).await?);
        }
        Ok(VerifyReport {
            client_id: client_id.to_owned(),
            checked,
        })
    }

    async fn check(
        &self,
        opener: &Opener<'_>,
        client_id: &str,
        curve: &portal_api::common::Curve,
        pair_id: &str,
    ) -> Result<ShareCheck> {
        let id = ShareId {
            client_id,
            pair_id,
            curve,
            signing: false,
        };
        let key = id.key()?;
        let finding = match self.store.get_opt(&key).await {
            Ok(None) => Finding::Missing,
            Ok(Some(stored)) => match open_text(opener, &id, &key, &stored).await {
                Ok(_) => Finding::Ok,
                Err(Error::WrongIdentity { source, .. }) => Finding::WrongIdentity {
                    reason: source.to_string(),
                },
                Err(other) => return Err(other),
            },
            // Portal has no ciphertext for this pair (for example a pair of another method).
            Err(e) if e.is_not_found() => Finding::Missing,
            Err(e) => return Err(Error::store("get", &key)(e)),
        };
        Ok(ShareCheck {
            curve: curve.as_str().to_owned(),
            backup_share_pair_id: pair_id.to_owned(),
            key: key.to_string(),
            finding,
        })
    }
}
