//! [`Flow`]: the Portal client, keyring, store and journal that every operation shares.

use std::path::Path;
use std::sync::Arc;

use envelope::Keyring;
use storage::BackupStore;

use crate::error::{Error, Result};
use crate::journal::Journal;

/// Where the client backup ciphertexts live.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CiphertextStore {
    /// With Portal (Portal-Managed Backups): `clientCipherText` on each backup share pair.
    Portal,
    /// In a store of the integrator's own (a directory, a database, a bucket).
    Own(Arc<dyn BackupStore>),
}

/// Everything an operation needs: who we are at Portal, the KEKs, where ciphertext goes, and
/// the journal that makes every operation resumable.
///
/// Cheap to clone; [`Flow::for_client`] gives the same flow acting as another client (the
/// bulk run does this once per input line).
#[derive(Clone, Debug)]
pub struct Flow {
    pub(crate) portal: portal_api::Client,
    pub(crate) keyring: Keyring,
    pub(crate) target: CiphertextStore,
    pub(crate) store: Arc<dyn BackupStore>,
    pub(crate) signing_store: Option<Arc<dyn BackupStore>>,
    /// Where the custodian webhook keeps the custodian backup shares (Self-Managed Backups):
    /// a backup found at Portal counts as done only if a custodian share is there too.
    pub(crate) custodian_store: Option<Arc<dyn BackupStore>>,
    /// Ask Portal for a new backup even when its newest completed one is stored and opens.
    pub(crate) force_new_backup: bool,
    pub(crate) journal: Journal,
}

impl Flow {
    /// A flow over a Portal client (authenticated as a client, or as a custodian for
    /// [`eject`](Self::eject)), a keyring, a ciphertext store and a state directory.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring; [`Error::Journal`] when the state directory
    /// cannot be created.
    pub fn new(
        portal: portal_api::Client,
        keyring: Keyring,
        target: CiphertextStore,
        state_dir: &Path,
    ) -> Result<Self> {
        if keyring.is_empty() {
            return Err(Error::Invalid(
                "at least one key-encryption key is needed".into(),
            ));
        }
        let store = resolve(&portal, &target);
        Ok(Self {
            portal,
            keyring,
            target,
            store,
            signing_store: None,
            custodian_store: None,
            force_new_backup: false,
            journal: Journal::open(state_dir)?,
        })
    }

    /// Also seal and store the new signing shares that [`recover`](Self::recover) returns,
    /// in `store`, before they are confirmed to Portal.
    #[must_use]
    pub fn with_signing_store(mut self, store: Arc<dyn BackupStore>) -> Self {
        self.signing_store = Some(store);
        self
    }

    /// With Self-Managed Backups, the store of the custodian webhook: [`backup`](Self::backup)
    /// then counts a backup it finds at Portal as done only if that store holds a custodian
    /// share of the client too.
    #[must_use]
    pub fn with_custodian_store(mut self, store: Arc<dyn BackupStore>) -> Self {
        self.custodian_store = Some(store);
        self
    }

    /// Makes [`backup`](Self::backup) ask Portal for a new backup even when the client's
    /// newest completed backup is stored and opens (the journal still resumes an unfinished
    /// one rather than start another).
    #[must_use]
    pub fn forcing_new_backups(mut self, force: bool) -> Self {
        self.force_new_backup = force;
        self
    }

    /// The same flow acting through another Portal client (another client API key or
    /// session token; the connection pool and rate limits stay shared).
    #[must_use]
    pub fn for_client(&self, portal: portal_api::Client) -> Self {
        let store = resolve(&portal, &self.target);
        Self {
            portal,
            store,
            ..self.clone()
        }
    }

    /// The ciphertext store's name, as reported in results (`portal`, `fs`, …).
    #[must_use]
    pub fn store_name(&self) -> &'static str {
        self.store.name()
    }

    /// The keyring.
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Every object the store holds for `client_id`.
    pub(crate) async fn list_client(&self, client_id: &str) -> Result<Vec<storage::BackupKey>> {
        self.store
            .list(client_id)
            .await
            .map_err(|source| Error::Store {
                operation: "list",
                key: client_id.to_owned(),
                source: Box::new(source),
            })
    }
}

fn resolve(portal: &portal_api::Client, target: &CiphertextStore) -> Arc<dyn BackupStore> {
    match target {
        CiphertextStore::Portal => Arc::new(storage::portal::PortalStore::new(portal.clone())),
        CiphertextStore::Own(store) => Arc::clone(store),
    }
}
