//! Custodian shares, envelope-encrypted, in a [`BackupStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use envelope::{EncryptionContext, Keyring};
use portal_api::SecretShare;
use storage::{BackupKey, BackupStore, ObjectVersion, PutOptions, ShareKind, StorageError};

use crate::error::Error;

/// The backup methods probed by [`ShareVault::fetch`] when the store cannot list: Portal's
/// documented methods, bare and per curve (`GDRIVE`, `GDRIVE-SECP256K1`, `GDRIVE-ED25519`,
/// …). Change them with [`ShareVault::with_known_methods`].
pub const KNOWN_METHOD_BASES: [&str; 7] = [
    "GDRIVE", "ICLOUD", "PASSKEY", "PASSWORD", "CUSTOM", "FIREBASE", "UNKNOWN",
];

/// The curve suffixes of per-curve backup methods.
const CURVE_SUFFIXES: [&str; 2] = ["SECP256K1", "ED25519"];

/// Prefix of the generation written in the share-pair-id slot of keys in
/// [`WriteStrategy::Generations`].
const GENERATION_PREFIX: &str = "gen-";

/// How a new share replaces the previous share of the same client and backup method, chosen
/// from the store's [`Capabilities`](storage::Capabilities). Either way the previous share
/// stays readable until the new one is durably stored.
///
/// A backup replaces only the share the store held when the request arrived: if another
/// request stored a share of the same client and method in the meantime (a slow write
/// overtaken by a newer one, on another replica or past the request deadline), this one
/// changes nothing and fails with [`Error::Superseded`]. [`CompareAndSwap`] and
/// [`Generations`] guarantee that; [`Overwrite`] cannot, and there the last write to land
/// wins.
///
/// [`CompareAndSwap`]: WriteStrategy::CompareAndSwap
/// [`Generations`]: WriteStrategy::Generations
/// [`Overwrite`]: WriteStrategy::Overwrite
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteStrategy {
    /// The store overwrites atomically and can compare and swap
    /// ([`Capabilities::compare_and_swap`](storage::Capabilities::compare_and_swap):
    /// PostgreSQL, S3, GCS, Azure, the file store): the version stored under
    /// [`BackupKey::custodian_backup`]`(client, method)` is read as the request arrives, and
    /// the new share is put with [`PutMode::Update`](storage::PutMode::Update) from that
    /// version (or create-only when nothing was stored). A reader sees the old share or the
    /// new one, never neither.
    CompareAndSwap,
    /// The store overwrites atomically but cannot compare (a Portal-like or replicated
    /// store): a put with [`PutMode::Overwrite`](storage::PutMode::Overwrite). A write still
    /// under way when a newer one lands can land after it and replace it.
    Overwrite,
    /// The store cannot overwrite atomically but can create-only and list: each share is
    /// written create-only as the generation after the newest one stored when the request
    /// arrived (`gen-00000000000000000001`, … in the key's share-pair-id slot); fetch returns
    /// the newest generation per method; older generations are deleted once the new one is
    /// stored (when the store can delete).
    Generations,
}

/// What the store held for one client and method when a backup request arrived: what its
/// write may replace.
enum Arrival {
    /// This version (compare and swap from it).
    Version(ObjectVersion),
    /// Nothing (create only).
    Absent,
    /// Unknown: the store cannot compare (overwrite).
    Unversioned,
    /// These generations, oldest first (create the next one only).
    Generations(Vec<(u64, BackupKey)>),
}

/// Custodian backup shares, envelope-encrypted with a [`Keyring`] and kept in a
/// [`BackupStore`]: the storage half of the webhook server, usable on its own.
///
/// Each share is sealed with the encryption context of its key ([`storage::context`]:
/// `client-id`, `purpose` = `custodian-backup`, `backup-method`), so a ciphertext moved to
/// another client or method does not open, and stored under
/// [`BackupKey::custodian_backup`]`(client, method)`.
///
/// ```
/// use std::sync::Arc;
/// use custodian_webhook::ShareVault;
/// use custodian_webhook::portal_api::SecretShare;
/// use envelope::{Keyring, local::LocalKek};
/// use storage::memory::MemoryStore;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let keyring = Keyring::new().with(Arc::new(LocalKek::generate()?));
/// let vault = ShareVault::new(keyring, Arc::new(MemoryStore::new()))?;
/// vault.store("cl_1", "GDRIVE-SECP256K1", &SecretShare::new("{\"share\":\"…\"}".into())).await?;
/// let shares = vault.fetch("cl_1").await?;
/// assert_eq!(shares[0].expose_secret(), "{\"share\":\"…\"}");
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct ShareVault {
    keyring: Keyring,
    store: Arc<dyn BackupStore>,
    strategy: WriteStrategy,
    known_methods: Vec<String>,
}

impl fmt::Debug for ShareVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareVault")
            .field("keks", &self.keyring.keks().len())
            .field("store", &self.store.name())
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl ShareVault {
    /// A vault over `store`, sealing with `keyring`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the keyring is empty, or the store can neither overwrite
    /// atomically nor create-only and list (no [`WriteStrategy`] keeps the previous share
    /// readable then).
    pub fn new(keyring: Keyring, store: Arc<dyn BackupStore>) -> Result<Self, Error> {
        if keyring.is_empty() {
            return Err(Error::InvalidConfig {
                reason: "the keyring has no key-encryption key".into(),
            });
        }
        let caps = store.capabilities();
        let strategy = if caps.overwrite && caps.compare_and_swap {
            WriteStrategy::CompareAndSwap
        } else if caps.overwrite {
            WriteStrategy::Overwrite
        } else if caps.conditional_create && caps.list {
            WriteStrategy::Generations
        } else {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "the {} store can neither overwrite atomically nor create-only and list",
                    store.name()
                ),
            });
        };
        let known_methods = KNOWN_METHOD_BASES
            .iter()
            .flat_map(|base| {
                std::iter::once((*base).to_owned())
                    .chain(CURVE_SUFFIXES.iter().map(move |c| format!("{base}-{c}")))
            })
            .collect();
        Ok(Self {
            keyring,
            store,
            strategy,
            known_methods,
        })
    }

    /// Replaces the backup methods probed by [`fetch`](Self::fetch) when the store cannot
    /// list (default: [`KNOWN_METHOD_BASES`], bare and with `-SECP256K1` / `-ED25519`). With
    /// such a store, [`store`](Self::store) refuses other methods.
    #[must_use]
    pub fn with_known_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.known_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// How shares replace each other in this store.
    #[must_use]
    pub fn strategy(&self) -> WriteStrategy {
        self.strategy
    }

    /// The store.
    #[must_use]
    pub fn backing_store(&self) -> &Arc<dyn BackupStore> {
        &self.store
    }

    /// Checks that `client_id` and `backup_method` can name a stored share, and that a share
    /// stored under them can be fetched back; touches nothing.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::UnfetchableMethod`].
    pub fn check(&self, client_id: &str, backup_method: &str) -> Result<(), Error> {
        BackupKey::check_client_id(client_id).map_err(|source| Error::InvalidId {
            field: "clientId",
            source: Box::new(source),
        })?;
        BackupKey::custodian_backup(client_id, backup_method).map_err(|source| {
            Error::InvalidId {
                field: "backupMethod",
                source: Box::new(source),
            }
        })?;
        if !self.store.capabilities().list && !self.known_methods.iter().any(|m| m == backup_method)
        {
            return Err(Error::UnfetchableMethod);
        }
        Ok(())
    }

    /// Seals `share` and stores it as the share of `client_id` and `backup_method`, replacing
    /// the previous one only once the new one is durable, and only if it is still the one
    /// stored when this call began (see [`WriteStrategy`]).
    ///
    /// # Errors
    /// As [`check`](Self::check); [`Error::Seal`] when the KMS fails; [`Error::Superseded`]
    /// when another share of this client and method was stored meanwhile (nothing was
    /// stored; the same share stored meanwhile, by an earlier attempt of this request whose
    /// answer was lost, counts as stored); [`Error::Store`].
    pub async fn store(
        &self,
        client_id: &str,
        backup_method: &str,
        share: &SecretShare,
    ) -> Result<(), Error> {
        self.check(client_id, backup_method)?;
        // Before sealing (a KMS round trip): the write replaces only what is stored now.
        let arrival = self.arrival(client_id, backup_method).await?;
        let context = context(client_id, backup_method).map_err(Error::Seal)?;
        let sealed = Bytes::from(
            envelope::seal(&self.keyring, &context, share.expose_secret().as_bytes())
                .await
                .map_err(Error::Seal)?,
        );
        let key = custodian_key(client_id, backup_method, None)?;
        let options = match arrival {
            Arrival::Version(version) => PutOptions::update(version),
            Arrival::Absent => PutOptions::create(),
            Arrival::Unversioned => PutOptions::overwrite(),
            Arrival::Generations(existing) => {
                return self
                    .store_generation(client_id, backup_method, existing, sealed, share)
                    .await;
            }
        };
        match self.store.put(&key, sealed, options).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_conflict() || e.is_already_exists() => {
                self.unless_already_held(&key, client_id, backup_method, share)
                    .await
            }
            Err(e) => Err(self.store_error("put", e)),
        }
    }

    /// After a write lost to another: `Ok` when what now stands under `key` is this very
    /// share, else [`Error::Superseded`].
    ///
    /// A retry whose first attempt got no answer (a replica killed mid-write, a timeout)
    /// meets that attempt's write, which may land after the retry read the store. Both
    /// carry the same share, so the retry has what it asked for; answering 503 would make
    /// Portal send it a third time for nothing.
    async fn unless_already_held(
        &self,
        key: &BackupKey,
        client_id: &str,
        backup_method: &str,
        share: &SecretShare,
    ) -> Result<(), Error> {
        let Ok(body) = self.store.get(key).await else {
            return Err(self.superseded());
        };
        let Ok(context) = context(client_id, backup_method) else {
            return Err(self.superseded());
        };
        let held = envelope::open(&self.keyring, &context, &body)
            .await
            .ok()
            .and_then(|plain| SecretShare::from_utf8(plain.into_zeroizing()));
        match held {
            Some(held) if held == *share => Ok(()),
            _ => Err(self.superseded()),
        }
    }

    /// What the store holds for `client_id` and `backup_method` now.
    async fn arrival(&self, client_id: &str, backup_method: &str) -> Result<Arrival, Error> {
        let caps = self.store.capabilities();
        match self.strategy {
            WriteStrategy::CompareAndSwap => {
                let key = custodian_key(client_id, backup_method, None)?;
                match self.store.get_versioned(&key).await {
                    Ok((_, version)) => Ok(Arrival::Version(version)),
                    Err(e) if e.is_not_found() && caps.conditional_create => Ok(Arrival::Absent),
                    // No create-only put to guard the first share with; or a wrapper store
                    // that claims compare and swap but does not forward `get_versioned`.
                    Err(e) if e.is_not_found() || e.is_not_supported() => Ok(Arrival::Unversioned),
                    Err(e) => Err(self.store_error("get", e)),
                }
            }
            WriteStrategy::Overwrite => Ok(Arrival::Unversioned),
            WriteStrategy::Generations => Ok(Arrival::Generations(
                self.generations(client_id, backup_method).await?,
            )),
        }
    }

    /// Creates the generation after the newest of `existing` (what was stored when the
    /// request arrived), then deletes `existing`.
    async fn store_generation(
        &self,
        client_id: &str,
        backup_method: &str,
        existing: Vec<(u64, BackupKey)>,
        sealed: Bytes,
        share: &SecretShare,
    ) -> Result<(), Error> {
        let next = existing.last().map_or(1, |(g, _)| g.saturating_add(1));
        let key = custodian_key(client_id, backup_method, Some(next))?;
        match self.store.put(&key, sealed, PutOptions::create()).await {
            Ok(()) => {}
            // Another backup of this client and method created it first (or an earlier
            // attempt of this one, with the same share).
            Err(e) if e.is_already_exists() => {
                return self
                    .unless_already_held(&key, client_id, backup_method, share)
                    .await;
            }
            Err(e) => return Err(self.store_error("put", e)),
        }
        if self.store.capabilities().delete {
            for (_, old) in existing {
                if let Err(e) = self.store.delete(&old).await {
                    tracing::warn!(
                        key = %old,
                        error = %storage::Report(&e),
                        "could not delete an older generation of a custodian share"
                    );
                }
            }
        }
        Ok(())
    }

    /// The generation keys of one client and method, oldest first.
    async fn generations(
        &self,
        client_id: &str,
        backup_method: &str,
    ) -> Result<Vec<(u64, BackupKey)>, Error> {
        let keys = self
            .store
            .list(client_id)
            .await
            .map_err(|e| self.store_error("list", e))?;
        let mut out: Vec<(u64, BackupKey)> = keys
            .into_iter()
            .filter(|k| {
                k.kind() == ShareKind::CustodianBackup && k.backup_method() == Some(backup_method)
            })
            .filter_map(|k| generation(&k).map(|g| (g, k)))
            .collect();
        out.sort_by_key(|(g, _)| *g);
        Ok(out)
    }

    /// Every stored share of `client_id` (the newest per backup method), decrypted, in the
    /// order of their backup methods.
    ///
    /// A stored object that is not a valid envelope or does not open under its context
    /// (tampered, or sealed for another client or method) is skipped and logged as an error,
    /// so the intact shares are still returned; a KMS failure or a missing key-encryption key
    /// fails the whole fetch instead, since then intact shares would be missing.
    ///
    /// With a store that cannot list, the [known methods](Self::with_known_methods) are
    /// probed one by one.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a client id that cannot name a stored object;
    /// [`Error::Open`]; [`Error::Store`].
    pub async fn fetch(&self, client_id: &str) -> Result<Vec<SecretShare>, Error> {
        BackupKey::check_client_id(client_id).map_err(|source| Error::InvalidId {
            field: "clientId",
            source: Box::new(source),
        })?;
        let mut newest: BTreeMap<String, (u64, BackupKey)> = BTreeMap::new();
        if self.store.capabilities().list {
            let keys = self
                .store
                .list(client_id)
                .await
                .map_err(|e| self.store_error("list", e))?;
            for key in keys {
                if key.kind() != ShareKind::CustodianBackup {
                    continue;
                }
                let (Some(method), Some(g)) = (key.backup_method(), generation(&key)) else {
                    continue;
                };
                match newest.get(method) {
                    Some((have, _)) if *have >= g => {}
                    _ => {
                        newest.insert(method.to_owned(), (g, key));
                    }
                }
            }
        } else {
            for method in &self.known_methods {
                newest.insert(method.clone(), (0, custodian_key(client_id, method, None)?));
            }
        }

        let mut shares = Vec::with_capacity(newest.len());
        for (method, (_, key)) in newest {
            let body = match self.store.get(&key).await {
                Ok(body) => body,
                // Deleted between list and get (a newer generation replaced it), or not
                // there when probing.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(self.store_error("get", e)),
            };
            let context = context(client_id, &method).map_err(Error::Open)?;
            match envelope::open(&self.keyring, &context, &body).await {
                Ok(plain) => match SecretShare::from_utf8(plain.into_zeroizing()) {
                    Some(share) => shares.push(share),
                    None => {
                        tracing::error!(key = %key, "stored custodian share is not UTF-8; skipped")
                    }
                },
                Err(e @ (envelope::Error::Format(_) | envelope::Error::Decrypt)) => {
                    tracing::error!(
                        key = %key,
                        error = %envelope::Report(&e),
                        "stored custodian share does not open (tampered or misplaced); skipped"
                    );
                }
                Err(e) => return Err(Error::Open(e)),
            }
        }
        Ok(shares)
    }

    fn superseded(&self) -> Error {
        Error::Superseded {
            store: self.store.name(),
        }
    }

    fn store_error(&self, operation: &'static str, source: StorageError) -> Error {
        Error::Store {
            operation,
            store: self.store.name(),
            source: Box::new(source),
        }
    }
}

/// The encryption context of one client's share for one backup method: the shared
/// vocabulary of [`storage::context`], so the backup flow's rotation and verification open
/// what the webhook sealed.
fn context(client_id: &str, backup_method: &str) -> Result<EncryptionContext, envelope::Error> {
    let key = BackupKey::custodian_backup(client_id, backup_method)
        .map_err(|e| envelope::Error::Invalid(e.to_string()))?;
    let entries =
        storage::context::entries(&key).map_err(|e| envelope::Error::Invalid(e.to_string()))?;
    EncryptionContext::from_entries(entries)
}

fn custodian_key(
    client_id: &str,
    backup_method: &str,
    generation: Option<u64>,
) -> Result<BackupKey, Error> {
    let mut builder =
        BackupKey::builder(ShareKind::CustodianBackup, client_id).backup_method(backup_method);
    if let Some(g) = generation {
        builder = builder.share_pair_id(format!("{GENERATION_PREFIX}{g:020}"));
    }
    builder.build().map_err(|source| Error::InvalidId {
        field: "backupMethod",
        source: Box::new(source),
    })
}

/// The generation of a custodian key: 0 for the plain key, `n` for `gen-n`; `None` for keys
/// this crate does not write.
fn generation(key: &BackupKey) -> Option<u64> {
    if key.curve().is_some() {
        return None;
    }
    match key.share_pair_id() {
        None => Some(0),
        Some(id) => id.strip_prefix(GENERATION_PREFIX)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_keys() {
        let k = custodian_key("cl", "GDRIVE", Some(7)).unwrap();
        assert_eq!(
            k.to_path(),
            "cl/custodian-backup/~/gen-00000000000000000007/GDRIVE"
        );
        assert_eq!(generation(&k), Some(7));
        assert_eq!(
            generation(&custodian_key("cl", "GDRIVE", None).unwrap()),
            Some(0)
        );
        let other = BackupKey::builder(ShareKind::CustodianBackup, "cl")
            .backup_method("GDRIVE")
            .share_pair_id("bsp_1")
            .build()
            .unwrap();
        assert_eq!(generation(&other), None);
    }
}
