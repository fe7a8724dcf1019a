//! [`Flow`]: the keyring, the stores and the journal every operation shares, and the two
//! Portal roles an operation can act as ([`ClientFlow`], [`CustodianFlow`]).

use std::path::Path;
use std::sync::Arc;

use envelope::Keyring;
use portal_api::{ClientApi, CustodianApi};
use storage::BackupStore;

use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::stores::StoreFactory;

/// What every operation shares: the KEKs, where the ciphertexts go, and the journal that
/// makes every operation resumable. It holds no Portal credential, and the operations fall
/// into three kinds by what they need:
///
/// * store-only, on the flow itself: [`rotate`](Self::rotate) (and
///   [`rotation`](Self::rotation) over a streamed listing),
///   [`verify_stored`](Self::verify_stored), [`verify_store_wide`](Self::verify_store_wide)
///   (and [`verify_streamed`](Self::verify_streamed)),
///   [`eject_offline`](Self::eject_offline); they call no Portal route;
/// * one client's session, on [`session`](Self::session)`(client)`: backup, recover, verify;
///   and [`bulk_backup`](Self::bulk_backup), which opens one session per input line;
/// * the custodian's, on [`custodian`](Self::custodian)`(custodian)`: eject.
///
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Flow {
    pub(crate) keyring: Keyring,
    pub(crate) stores: Arc<dyn StoreFactory>,
    pub(crate) signing_store: Option<Arc<dyn BackupStore>>,
    /// Where the custodian webhook keeps the custodian backup shares (Self-Managed Backups):
    /// a backup found at Portal counts as done only if a custodian share is there too.
    pub(crate) custodian_store: Option<Arc<dyn BackupStore>>,
    /// Ask Portal for a new backup even when its newest completed one is stored and opens.
    pub(crate) force_new_backup: bool,
    pub(crate) journal: Journal,
}

impl Flow {
    /// A flow over a keyring, the ciphertext stores (an `Arc<dyn BackupStore>` of your own,
    /// or [`PortalManaged`](crate::PortalManaged)) and a state directory.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring; [`Error::Journal`] when the state directory
    /// cannot be created.
    pub fn new(keyring: Keyring, stores: impl StoreFactory, state_dir: &Path) -> Result<Self> {
        if keyring.is_empty() {
            return Err(Error::Invalid(
                "at least one key-encryption key is needed".into(),
            ));
        }
        Ok(Self {
            keyring,
            stores: Arc::new(stores),
            signing_store: None,
            custodian_store: None,
            force_new_backup: false,
            journal: Journal::open(state_dir)?,
        })
    }

    /// Also seal and store the new signing shares that [`ClientFlow::recover`] returns, in
    /// `store`, before they are confirmed to Portal.
    #[must_use]
    pub fn with_signing_store(mut self, store: Arc<dyn BackupStore>) -> Self {
        self.signing_store = Some(store);
        self
    }

    /// With Self-Managed Backups, the store of the custodian webhook: [`ClientFlow::backup`]
    /// then counts a backup it finds at Portal as done only if that store holds a custodian
    /// share of the client too.
    #[must_use]
    pub fn with_custodian_store(mut self, store: Arc<dyn BackupStore>) -> Self {
        self.custodian_store = Some(store);
        self
    }

    /// Makes [`ClientFlow::backup`] ask Portal for a new backup even when the client's
    /// newest completed backup is stored and opens (the journal still resumes an unfinished
    /// one rather than start another).
    #[must_use]
    pub fn forcing_new_backups(mut self, force: bool) -> Self {
        self.force_new_backup = force;
        self
    }

    /// The operations of the client that `client` acts as, over that session's store.
    #[must_use]
    pub fn session(&self, client: ClientApi) -> ClientFlow {
        let store = self.stores.session_store(&client);
        ClientFlow {
            on: OnStore {
                flow: self.clone(),
                store,
            },
            client,
        }
    }

    /// The operations of the custodian.
    #[must_use]
    pub fn custodian(&self, custodian: CustodianApi) -> CustodianFlow {
        CustodianFlow {
            flow: self.clone(),
            custodian,
        }
    }

    /// The keyring.
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The store of your own that a store-only `operation` works on.
    pub(crate) fn on_own_store(&self, operation: &str) -> Result<OnStore> {
        let store = self.stores.own_store().ok_or_else(|| {
            Error::Invalid(format!(
                "{operation} needs a store of your own: Portal keeps each client's ciphertexts behind that client's credential, and cannot list them"
            ))
        })?;
        Ok(OnStore {
            flow: self.clone(),
            store,
        })
    }
}

/// One client's session: backup, recover and verify of the client that its
/// [`ClientApi`] acts as. Made by [`Flow::session`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientFlow {
    pub(crate) on: OnStore,
    pub(crate) client: ClientApi,
}

impl ClientFlow {
    /// The flow this session belongs to.
    #[must_use]
    pub fn flow(&self) -> &Flow {
        &self.on.flow
    }

    /// The client role it acts as.
    #[must_use]
    pub fn client(&self) -> &ClientApi {
        &self.client
    }

    /// The session's ciphertext store's name, as reported in results (`portal`, `fs`, …).
    #[must_use]
    pub fn store_name(&self) -> &'static str {
        self.on.store.name()
    }
}

/// The custodian's operations: eject through Portal. Made by [`Flow::custodian`]; cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct CustodianFlow {
    pub(crate) flow: Flow,
    pub(crate) custodian: CustodianApi,
}

impl CustodianFlow {
    /// The flow this belongs to.
    #[must_use]
    pub fn flow(&self) -> &Flow {
        &self.flow
    }
}

/// A flow bound to one store: what the operations work on once the store is known.
#[derive(Clone, Debug)]
pub(crate) struct OnStore {
    pub(crate) flow: Flow,
    pub(crate) store: Arc<dyn BackupStore>,
}

impl OnStore {
    /// Every object the store holds for `client_id`.
    pub(crate) async fn list_client(&self, client_id: &str) -> Result<Vec<storage::BackupKey>> {
        self.store
            .list(client_id)
            .await
            .map_err(|e| Error::store_listing(client_id, e))
    }
}
