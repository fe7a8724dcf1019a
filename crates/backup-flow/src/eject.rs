//! Eject: each wallet's private key, rebuilt from its client and custodian backup shares and
//! verified against its public key (`portal-backup-eject`). Through Portal as the custodian
//! ([`CustodianFlow::eject`]), or offline for Self-Managed Backups from our own store and the
//! custodian shares our webhook kept ([`Flow::eject_offline`]), with no Portal call at all.

use std::collections::BTreeMap;

use envelope::Opener;
use portal_api::SecretShare;
use portal_api::client_api::{BackupSharePair, EjectClientRequest, PrepareEjectRequest, Wallet};
use portal_api::custodian_api::EnableEjectRequest;
use portal_api::{BackupMethod, ClientApi, Curve, CustodianApi};
use storage::{BackupStoreExt as _, ShareKind};

use crate::backup::open_text;
use crate::error::{Error, Result};
use crate::flow::{CustodianFlow, Flow};
use crate::identity::ShareId;
use crate::recover::{choose_backup_pair, into_secret_share};

/// What [`CustodianFlow::eject`] does besides rebuilding the keys.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EjectOptions {
    /// Eject the newest completed pair of this backup method (Portal's multi-backup) instead of
    /// the newest completed pair of any method. Its custodian share comes from the client-side
    /// `prepare-eject`, which takes a method.
    pub backup_method: Option<BackupMethod>,
    /// After **every** wallet's key was rebuilt and verified, mark the client ejected at
    /// Portal (`POST /api/v3/clients/me/eject`, irreversible). Off unless asked for.
    pub mark_ejected: bool,
}

impl EjectOptions {
    /// The defaults: newest completed pair, the client is not marked ejected.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Eject the pairs of `method`.
    #[must_use]
    pub fn with_backup_method(mut self, method: BackupMethod) -> Self {
        self.backup_method = Some(method);
        self
    }

    /// Mark the client ejected once every wallet verified.
    #[must_use]
    pub fn marking_ejected(mut self) -> Self {
        self.mark_ejected = true;
        self
    }
}

/// One wallet's verified key.
#[derive(Debug)]
#[non_exhaustive]
pub struct EjectedWallet {
    /// The wallet id (unknown offline: Portal is not asked).
    pub wallet_id: Option<String>,
    /// The wallet's curve.
    pub curve: Curve,
    /// The backup share pair both shares come from.
    pub backup_share_pair_id: String,
    /// The pair's backup method, when Portal said.
    pub backup_method: Option<BackupMethod>,
    /// The rebuilt, verified private key (zeroized on drop, redacted `Debug`).
    pub key: eject::RebuiltKey,
}

/// The result of an eject. Every wallet in it was verified; an eject that could not verify a
/// wallet returns an error instead, and no key.
#[derive(Debug)]
#[non_exhaustive]
pub struct EjectReport {
    /// The client.
    pub client_id: String,
    /// One entry per wallet.
    pub wallets: Vec<EjectedWallet>,
    /// Whether the client was marked ejected at Portal by this call.
    pub marked_ejected: bool,
    /// Offline: custodian shares in the webhook's store whose pair has no client half in our
    /// store (a backup whose client ciphertext was never stored), by pair id.
    pub unmatched_custodian_pairs: Vec<String>,
}

async fn mark(client: &ClientApi) -> Result<()> {
    client
        .eject_client(&EjectClientRequest {
            client_platform: "SERVER".into(),
            client_platform_version: concat!("portal-backup/", env!("CARGO_PKG_VERSION")).into(),
        })
        .await
        .map_err(Error::portal("POST", portal_api::paths::CLIENT_EJECT))
}

fn eject_curve(curve: &Curve) -> Result<eject::Curve> {
    match curve {
        Curve::Secp256k1 => Ok(eject::Curve::Secp256k1),
        Curve::Ed25519 => Ok(eject::Curve::Ed25519),
        other => Err(Error::Unexpected(format!(
            "a wallet on a curve this version cannot eject: {}",
            other.as_str()
        ))),
    }
}

fn refused(curve: &Curve, pair_id: &str) -> impl FnOnce(eject::Error) -> Error {
    let (curve, pair_id) = (curve.as_str().to_owned(), pair_id.to_owned());
    move |source| Error::Eject {
        curve,
        pair_id,
        source,
    }
}

impl CustodianFlow {
    /// Ejects `client_id`'s wallets through Portal, as the custodian: for each wallet, opens
    /// an eject window, gets the custodian backup share of the chosen pair (see
    /// [`EjectOptions::backup_method`]), opens the client backup share, rebuilds the private
    /// key and verifies it against both shares and the wallet's `publicKey`. Marks the client
    /// ejected only when asked and only after every wallet verified. Nothing is deleted
    /// anywhere.
    ///
    /// The client ciphertext comes from the custodian's ejectable-shares answer when Portal
    /// keeps it ([`StoreFactory::ciphertext_kept_by_portal`](crate::StoreFactory)), else from
    /// the flow's store of your own, else from the client's session store, on a session the
    /// custodian opens (the one client call an eject makes, with [`mark_ejected`](Self::mark_ejected)
    /// and a backup method's `prepare-eject`).
    ///
    /// # Errors
    /// [`Error::PairMismatch`] when Portal's custodian share belongs to another pair than the
    /// one opened; [`Error::Eject`] when the shares do not rebuild the wallet's key (nothing is
    /// returned then); [`Error::WrongIdentity`] for a client ciphertext that does not open as
    /// its share; Portal and store errors.
    pub async fn eject(&self, client_id: &str, options: &EjectOptions) -> Result<EjectReport> {
        let custodian = &self.custodian;
        let details = custodian
            .get_client(client_id)
            .await
            .map_err(Error::portal("GET", portal_api::paths::CUSTODIAN_CLIENT))?;
        if details.wallets.is_empty() {
            return Err(Error::Unexpected(
                "the client has no wallet to eject".into(),
            ));
        }
        let mut session: Option<ClientApi> = None;
        let mut wallets = Vec::new();
        for wallet in &details.wallets {
            let pair = choose_backup_pair(wallet, options.backup_method.as_ref(), "eject")?;
            let key = self
                .eject_wallet(client_id, wallet, pair, options, &mut session)
                .await?;
            wallets.push(EjectedWallet {
                wallet_id: Some(wallet.id.clone()),
                curve: wallet.curve.clone(),
                backup_share_pair_id: pair.id.clone(),
                backup_method: pair.backup_method.clone(),
                key,
            });
        }
        // Reached only when every wallet verified.
        let marked_ejected = if options.mark_ejected {
            let client = client_session(custodian, client_id, &mut session).await?;
            mark(client).await?;
            true
        } else {
            false
        };
        Ok(EjectReport {
            client_id: client_id.to_owned(),
            wallets,
            marked_ejected,
            unmatched_custodian_pairs: Vec::new(),
        })
    }

    /// Marks the client ejected at Portal (`POST /api/v3/clients/me/eject`, irreversible), on
    /// a new client session the custodian opens. Call it only once every wallet's key is
    /// verified and kept, as [`eject`](Self::eject) does with [`EjectOptions::mark_ejected`].
    ///
    /// # Errors
    /// Portal's error.
    pub async fn mark_ejected(&self, client_id: &str) -> Result<()> {
        let mut session = None;
        let client = client_session(&self.custodian, client_id, &mut session).await?;
        mark(client).await
    }

    async fn eject_wallet(
        &self,
        client_id: &str,
        wallet: &Wallet,
        pair: &BackupSharePair,
        options: &EjectOptions,
        session: &mut Option<ClientApi>,
    ) -> Result<eject::RebuiltKey> {
        let curve = eject_curve(&wallet.curve)?;
        self.custodian
            .enable_eject(
                client_id,
                &EnableEjectRequest {
                    wallet_id: wallet.id.clone(),
                    ejectable_until: None,
                },
            )
            .await
            .map_err(Error::portal(
                "PATCH",
                portal_api::paths::CUSTODIAN_ENABLE_EJECT,
            ))?;
        let (custodian_text, portal_ciphertext) = match &options.backup_method {
            // Only the client-side route takes a method.
            Some(method) => {
                let client = client_session(&self.custodian, client_id, session).await?;
                let prepared = client
                    .prepare_eject(
                        &wallet.id,
                        &PrepareEjectRequest {
                            backup_method: method.clone(),
                        },
                    )
                    .await
                    .map_err(Error::portal(
                        "POST",
                        portal_api::paths::WALLET_PREPARE_EJECT,
                    ))?;
                (prepared.share, None)
            }
            None => {
                let shares = self
                    .custodian
                    .ejectable_backup_shares(client_id, &wallet.id)
                    .await
                    .map_err(Error::portal(
                        "GET",
                        portal_api::paths::CUSTODIAN_EJECTABLE_BACKUP_SHARES,
                    ))?;
                (
                    shares.custodian_backup_share,
                    shares.encrypted_client_backup_share,
                )
            }
        };
        let custodian = eject::CustodianShare::parse(custodian_text.expose_secret())
            .map_err(refused(&wallet.curve, &pair.id))?;
        drop(custodian_text);
        if custodian.backup_share_pair_id() != Some(pair.id.as_str()) {
            return Err(Error::PairMismatch {
                curve: wallet.curve.as_str().to_owned(),
                opened: pair.id.clone(),
                custodian: custodian
                    .backup_share_pair_id()
                    .unwrap_or("none")
                    .to_owned(),
            });
        }
        let id = ShareId {
            client_id,
            pair_id: &pair.id,
            curve: &wallet.curve,
            kind: ShareKind::ClientBackup,
        };
        let key = id.key()?;
        let stores = &self.flow.stores;
        let stored = match portal_ciphertext {
            // Portal keeps the ciphertext and hands it to the custodian here.
            Some(text) if stores.ciphertext_kept_by_portal() => text.into_bytes().into(),
            _ => {
                let store = match stores.own_store() {
                    Some(own) => own,
                    None => stores
                        .session_store(client_session(&self.custodian, client_id, session).await?),
                };
                store
                    .get_opt(&key)
                    .await
                    .map_err(Error::store("get", &key))?
                    .ok_or_else(|| Error::Drill {
                        key: key.to_string(),
                        reason: "no client backup ciphertext is stored",
                    })?
            }
        };
        let client = open_client_share(&self.flow.keyring, &id, &key, &stored).await?;
        eject::combine(
            curve,
            &client,
            &custodian,
            &eject::Expected {
                backup_share_pair_id: Some(&pair.id),
                portal_wallet_public_key: wallet.public_key.as_deref(),
            },
        )
        .map_err(refused(&wallet.curve, &pair.id))
    }
}

impl Flow {
    /// Ejects a Self-Managed Backups client **without Portal**: the client backup ciphertexts
    /// come from this flow's store of your own (listed), the custodian
    /// backup shares from the caller (the webhook's vault holds the newest per backup method).
    /// Each custodian share is matched with the client ciphertext of its `backupSharePairId`,
    /// opened with the keyring, combined and verified against both shares' public keys. No
    /// Portal call is made (the wallet's `publicKey` at Portal is not consulted).
    ///
    /// Custodian shares whose pair has no stored client half are listed in
    /// [`EjectReport::unmatched_custodian_pairs`]; when no wallet can be ejected at all, that is
    /// an error naming them.
    ///
    /// # Errors
    /// [`Error::NoClientHalf`] when no custodian share has a stored client half;
    /// [`Error::Eject`] when a pair's shares do not rebuild a verified key (no key is returned
    /// then); [`Error::WrongIdentity`]; [`Error::Invalid`] for a store that cannot list or an
    /// unreadable custodian share; store and KMS errors.
    pub async fn eject_offline(
        &self,
        client_id: &str,
        custodian_shares: &[SecretShare],
    ) -> Result<EjectReport> {
        let on = self.on_own_store("offline eject")?;
        if !on.store.capabilities().list {
            return Err(Error::Invalid(format!(
                "offline eject lists the client's ciphertexts, and the {} store cannot list",
                on.store.name()
            )));
        }
        let keys = on.store.list(client_id).await.map_err(|e| Error::Store {
            operation: "list",
            key: client_id.to_owned(),
            source: Box::new(e),
        })?;
        // Client backup halves in our store, by pair id.
        let halves: BTreeMap<&str, &str> = keys
            .iter()
            .filter(|k| k.kind() == ShareKind::ClientBackup)
            .filter_map(|k| Some((k.share_pair_id()?, k.curve()?)))
            .collect();
        let mut wallets = Vec::new();
        let mut unmatched = Vec::new();
        for text in custodian_shares {
            let custodian = eject::CustodianShare::parse(text.expose_secret()).map_err(|e| {
                Error::Invalid(format!("a custodian share from the webhook's store: {e}"))
            })?;
            let Some(pair_id) = custodian.backup_share_pair_id().map(str::to_owned) else {
                return Err(Error::Invalid(
                    "a custodian share from the webhook's store names no backupSharePairId".into(),
                ));
            };
            let Some(curve) = halves.get(pair_id.as_str()) else {
                unmatched.push(pair_id);
                continue;
            };
            let curve = Curve::from_wire(curve);
            let id = ShareId {
                client_id,
                pair_id: &pair_id,
                curve: &curve,
                kind: ShareKind::ClientBackup,
            };
            let key = id.key()?;
            let stored = on
                .store
                .get(&key)
                .await
                .map_err(Error::store("get", &key))?;
            let client = open_client_share(&self.keyring, &id, &key, &stored).await?;
            let rebuilt = eject::combine(
                eject_curve(&curve)?,
                &client,
                &custodian,
                &eject::Expected {
                    backup_share_pair_id: Some(&pair_id),
                    portal_wallet_public_key: None,
                },
            )
            .map_err(refused(&curve, &pair_id))?;
            wallets.push(EjectedWallet {
                wallet_id: None,
                curve,
                backup_share_pair_id: pair_id,
                backup_method: None,
                key: rebuilt,
            });
        }
        if wallets.is_empty() {
            return Err(Error::NoClientHalf {
                client_id: client_id.to_owned(),
                pairs: unmatched,
            });
        }
        Ok(EjectReport {
            client_id: client_id.to_owned(),
            wallets,
            marked_ejected: false,
            unmatched_custodian_pairs: unmatched,
        })
    }
}

/// The client role of `client_id`, on a session the custodian opens the first time it is
/// needed.
async fn client_session<'s>(
    custodian: &CustodianApi,
    client_id: &str,
    session: &'s mut Option<ClientApi>,
) -> Result<&'s ClientApi> {
    if session.is_none() {
        let client = custodian
            .client_session(client_id)
            .await
            .map_err(Error::portal(
                "POST",
                portal_api::paths::CUSTODIAN_CLIENT_SESSIONS,
            ))?;
        *session = Some(client);
    }
    session
        .as_ref()
        .ok_or_else(|| Error::Unexpected("no client session".into()))
}

async fn open_client_share(
    keyring: &envelope::Keyring,
    id: &ShareId<'_>,
    key: &storage::BackupKey,
    stored: &[u8],
) -> Result<eject::ClientShare> {
    let opener = Opener::new(keyring);
    let opened = open_text(&opener, id, key, stored).await?;
    let share: SecretShare = into_secret_share(opened).ok_or_else(|| Error::WrongIdentity {
        key: key.to_string(),
        source: envelope::Error::Decrypt,
    })?;
    eject::ClientShare::parse(share.expose_secret()).map_err(refused(id.curve, id.pair_id))
}
