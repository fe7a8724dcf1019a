//! Verification: the restore drill on its own, for every completed backup of a client.

use envelope::Opener;
use futures_util::stream::{self, Stream, StreamExt as _};
use portal_api::SharePairStatus;
use serde::Serialize;
use storage::{BackupKey, BackupStoreExt as _, ShareKind, StorageError};

use crate::backup::open_text;
use crate::error::{Error, Result};
use crate::flow::{ClientFlow, Flow, OnStore};
use crate::identity::ShareId;
use crate::stages::Stages;

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

/// How many clients a store-wide drill works on at once unless told otherwise: enough to
/// keep a KMS with a few milliseconds of latency busy, few enough for its default quotas.
pub const DEFAULT_VERIFY_CONCURRENCY: usize = 16;

/// One client of a store-wide drill ([`Flow::verify_store_wide`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct StoredClientCheck {
    /// The Portal client id.
    pub client_id: String,
    /// Each client backup share the store holds for the client, in the store's listing
    /// order; or why the client's objects could not be listed.
    pub shares: Result<Vec<StoredShareCheck>>,
}

/// One stored share of a store-wide drill.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoredShareCheck {
    /// The store key's path form.
    pub key: String,
    /// What the drill found, or why the share could not be checked (the store or the KMS
    /// failed; a share that does not open as its identity is a [`Finding`], not an error).
    pub result: Result<ShareCheck>,
}

/// The result of [`ClientFlow::verify`](crate::ClientFlow::verify) and [`Flow::verify_stored`].
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

impl ClientFlow {
    /// Reads, opens and checks the identity of the ciphertext of every completed backup pair
    /// of the client. Changes nothing, anywhere.
    ///
    /// # Errors
    /// Portal and store failures (a missing or unopenable share is a finding, not an error).
    pub async fn verify(&self) -> Result<VerifyReport> {
        let me = self
            .client
            .client_me()
            .await
            .map_err(Error::portal("GET", portal_api::paths::CLIENT_ME))?;
        let opener = Opener::new(&self.on.flow.keyring);
        let mut checked = Vec::new();
        for wallet in &me.wallets {
            let completed = wallet
                .backup_share_pairs
                .iter()
                .filter(|p| p.status == SharePairStatus::Completed);
            for pair in completed {
                checked.push(
                    self.on
                        .check(&opener, &me.id, &wallet.curve, &pair.id)
                        .await?,
                );
            }
        }
        Ok(VerifyReport {
            client_id: me.id,
            checked,
        })
    }
}

impl Flow {
    /// The restore drill over everything the store holds for `client_id`, without asking
    /// Portal: every client backup ciphertext must open as the share its key names (client,
    /// pair, curve). Finds swapped, foreign, tampered and unreadable objects; it cannot know
    /// what is missing, which [`ClientFlow::verify`] does from Portal's list of pairs.
    ///
    /// # Errors
    /// [`Error::Invalid`] without a store of your own (Portal's cannot list), and store
    /// failures.
    pub async fn verify_stored(&self, client_id: &str) -> Result<VerifyReport> {
        let client = self
            .on_own_store("the stored restore drill")?
            .drill_client(client_id)
            .await;
        let checked = client
            .shares?
            .into_iter()
            .map(|share| share.result)
            .collect::<Result<Vec<_>>>()?;
        Ok(VerifyReport {
            client_id: client.client_id,
            checked,
        })
    }

    /// The restore drill of [`verify_stored`](Self::verify_stored) over many clients, as a
    /// stream of one result per client in the order they finish. Nothing is held beyond the clients in flight, and a client or share that cannot
    /// be checked (a store or KMS failure) is reported in its [`StoredClientCheck`] while the
    /// others go on.
    ///
    /// A client is the unit of work: its shares are opened one after the other through one
    /// [`Opener`], so the shares of a backup sealed under one data key cost one KMS call. At
    /// most `concurrency` KMS calls are in flight ([`DEFAULT_VERIFY_CONCURRENCY`] keeps a KMS
    /// with a few milliseconds of latency busy; `0` counts as 1), and meanwhile at most
    /// `concurrency` other clients are being read from the store: twice `concurrency` clients
    /// in flight in all.
    ///
    /// Without a store of your own, every client's check is an [`Error::Invalid`].
    pub fn verify_store_wide<'a>(
        &'a self,
        client_ids: &'a [String],
        concurrency: usize,
    ) -> impl Stream<Item = StoredClientCheck> + Send + 'a {
        self.verify_streamed(
            stream::iter(client_ids.iter().cloned().map(Ok)),
            concurrency,
        )
    }

    /// [`verify_store_wide`](Self::verify_store_wide) over a listing as it streams in
    /// ([`BackupStore::stream_clients`](storage::BackupStore::stream_clients)): work starts
    /// with the first client and only the clients in flight are held, so memory stays flat
    /// however many clients the store holds. A listing failure is an item of its own (with an
    /// empty [`client_id`](StoredClientCheck::client_id) and the error in
    /// [`shares`](StoredClientCheck::shares)), and the run goes on with whatever the listing
    /// gives next.
    pub fn verify_streamed<'a, S>(
        &'a self,
        clients: S,
        concurrency: usize,
    ) -> impl Stream<Item = StoredClientCheck> + Send + 'a
    where
        S: Stream<Item = std::result::Result<String, StorageError>> + Send + 'a,
    {
        // At most `concurrency` KMS calls and `concurrency` store reads in flight, each for
        // other clients: the reads of the next clients go on while the KMS calls of the
        // previous ones are in flight, so a client's time is not its read plus its KMS call.
        // Without a store of our own each client says so (the error is not `Clone`).
        let on = self
            .on_own_store("the store-wide restore drill")
            .map_err(|e| match e {
                Error::Invalid(reason) => reason,
                other => other.to_string(),
            });
        let batch = on.as_ref().map_or(1, |on| on.store.batch_size());
        Stages::run_batches(concurrency, batch, clients, move |listed, stages| {
            let on = on.clone();
            async move {
                let (ids, failed) = crate::stages::split_listed(listed);
                let mut done: Vec<StoredClientCheck> = failed
                    .into_iter()
                    .map(|source| StoredClientCheck {
                        client_id: String::new(),
                        shares: Err(Error::client_listing(source)),
                    })
                    .collect();
                let reads = match on {
                    Ok(on) => stages.store(on.read_clients(ids)).await,
                    Err(reason) => ids
                        .into_iter()
                        .map(|client_id| ReadClient {
                            client_id,
                            shares: Err(Error::Invalid(reason.clone())),
                        })
                        .collect(),
                };
                let opened = futures_util::future::join_all(
                    reads
                        .into_iter()
                        .map(|read| stages.kms(open_client(&self.keyring, read))),
                )
                .await;
                done.extend(opened);
                done
            }
        })
        .flat_map(stream::iter)
    }
}

impl OnStore {
    /// Drills one client: its objects read, then opened.
    async fn drill_client(&self, client_id: &str) -> StoredClientCheck {
        open_client(
            &self.flow.keyring,
            self.read_client(client_id.to_owned()).await,
        )
        .await
    }

    /// [`read_client`](Self::read_client) of each client; in one store call where the store
    /// takes batches.
    async fn read_clients(&self, client_ids: Vec<String>) -> Vec<ReadClient> {
        if self.store.batch_size() <= 1 {
            let mut reads = Vec::with_capacity(client_ids.len());
            for client_id in client_ids {
                reads.push(self.read_client(client_id).await);
            }
            return reads;
        }
        let read = self.store.read_clients(&client_ids).await;
        client_ids
            .into_iter()
            .zip(read)
            .map(|(client_id, objects)| {
                let shares = objects
                    .map_err(|e| Error::store_listing(&client_id, e))
                    .map(|objects| {
                        objects
                            .into_iter()
                            .filter(|(key, _)| key.kind() == ShareKind::ClientBackup)
                            .map(|(key, object)| {
                                let body = match object {
                                    Ok(object) => Ok(Some(object.body)),
                                    Err(e) if e.is_not_found() => Ok(None),
                                    Err(e) => Err(Error::store("get", &key)(e)),
                                };
                                (key, body)
                            })
                            .collect()
                    });
                ReadClient { client_id, shares }
            })
            .collect()
    }

    /// Lists one client's objects and reads each client backup share among them.
    async fn read_client(&self, client_id: String) -> ReadClient {
        let keys = match self.list_client(&client_id).await {
            Ok(keys) => keys,
            Err(e) => {
                return ReadClient {
                    client_id,
                    shares: Err(e),
                };
            }
        };
        let mut shares = Vec::new();
        for key in keys {
            if key.kind() != ShareKind::ClientBackup {
                continue;
            }
            let body = match self.store.get_opt(&key).await {
                Ok(body) => Ok(body),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(Error::store("get", &key)(e)),
            };
            shares.push((key, body));
        }
        ReadClient {
            client_id,
            shares: Ok(shares),
        }
    }

    pub(crate) async fn check(
        &self,
        opener: &Opener<'_>,
        client_id: &str,
        curve: &portal_api::Curve,
        pair_id: &str,
    ) -> Result<ShareCheck> {
        let id = ShareId {
            client_id,
            pair_id,
            curve,
            kind: ShareKind::ClientBackup,
        };
        let key = id.key()?;
        let body = match self.store.get_opt(&key).await {
            Ok(body) => body,
            // Portal has no ciphertext for this pair (for example a pair of another method).
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(Error::store("get", &key)(e)),
        };
        let finding = finding(opener, &id, &key, body).await?;
        Ok(ShareCheck {
            curve: curve.as_str().to_owned(),
            backup_share_pair_id: pair_id.to_owned(),
            key: key.to_string(),
            finding,
        })
    }
}

/// Opens what [`OnStore::read_client`] read, through one [`Opener`] (the shares
/// of a backup sealed under one data key cost one KMS call).
async fn open_client(keyring: &envelope::Keyring, read: ReadClient) -> StoredClientCheck {
    let client_id = read.client_id;
    let shares = match read.shares {
        Ok(shares) => shares,
        Err(e) => {
            return StoredClientCheck {
                client_id,
                shares: Err(e),
            };
        }
    };
    let opener = Opener::new(keyring);
    let mut checked = Vec::with_capacity(shares.len());
    for (key, body) in shares {
        let result = match body {
            Ok(body) => open_stored(&opener, &key, body).await,
            Err(e) => Err(e),
        };
        checked.push(StoredShareCheck {
            key: key.to_string(),
            result,
        });
    }
    StoredClientCheck {
        client_id,
        shares: Ok(checked),
    }
}

/// Drills the share read from `key` (which names its pair and curve).
async fn open_stored(
    opener: &Opener<'_>,
    key: &BackupKey,
    body: Option<bytes::Bytes>,
) -> Result<ShareCheck> {
    ShareId::of_stored(key, ShareKind::ClientBackup, async |id| {
        let finding = finding(opener, id, key, body).await?;
        Ok(ShareCheck {
            curve: id.curve.as_str().to_owned(),
            backup_share_pair_id: id.pair_id.to_owned(),
            key: key.to_string(),
            finding,
        })
    })
    .await
}

/// One client's stored shares, read and not yet opened.
struct ReadClient {
    client_id: String,
    shares: Result<Vec<(BackupKey, Result<Option<bytes::Bytes>>)>>,
}

/// What the drill finds in `body`, read from `key` for share `id` (`None`: nothing there).
///
/// # Errors
/// A KMS that could not be reached (a share that does not open as `id` is a finding).
async fn finding(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    body: Option<bytes::Bytes>,
) -> Result<Finding> {
    let Some(stored) = body else {
        return Ok(Finding::Missing);
    };
    match open_text(opener, id, key, &stored).await {
        Ok(_) => Ok(Finding::Ok),
        Err(Error::WrongIdentity { source, .. }) => Ok(Finding::WrongIdentity {
            reason: source.to_string(),
        }),
        Err(other) => Err(other),
    }
}
