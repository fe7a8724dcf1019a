//! [`StoreFactory`]: where each client session's backup ciphertexts are kept, so that the
//! operations never name a concrete store.

use std::fmt;
use std::sync::Arc;

use portal_api::ClientApi;
use storage::BackupStore;
use storage::portal::PortalStore;

/// Gives each client session its ciphertext store.
///
/// A store of your own (a directory, a database, a bucket) keeps every client's ciphertexts:
/// it is the same store for every session, and it is also what the store-only operations
/// ([`Flow::rotate`](crate::Flow::rotate), [`Flow::verify_stored`](crate::Flow::verify_stored),
/// [`Flow::eject_offline`](crate::Flow::eject_offline)) work on. `Arc<dyn BackupStore>` is
/// that factory. With Portal-Managed Backups each client's ciphertexts are kept by Portal
/// behind that client's own credential, so the store is made per session: [`PortalManaged`].
///
/// Implement it to route clients to stores of your own (one store per tenant, say); then
/// answer [`own_store`](Self::own_store) with `None` unless one store holds every client.
pub trait StoreFactory: fmt::Debug + Send + Sync + 'static {
    /// The store of the client that `session` acts as.
    fn session_store(&self, session: &ClientApi) -> Arc<dyn BackupStore>;

    /// The one store that holds every client's ciphertexts, reachable without a Portal
    /// credential; `None` when there is none (Portal-Managed Backups).
    fn own_store(&self) -> Option<Arc<dyn BackupStore>>;

    /// Whether Portal keeps the client backup ciphertexts, so that the custodian's
    /// ejectable-shares answer carries them (`encryptedClientBackupShare`) and an eject needs
    /// no client session to read them. `false` unless Portal keeps them.
    fn ciphertext_kept_by_portal(&self) -> bool {
        false
    }
}

impl StoreFactory for Arc<dyn BackupStore> {
    fn session_store(&self, _session: &ClientApi) -> Arc<dyn BackupStore> {
        Arc::clone(self)
    }

    fn own_store(&self) -> Option<Arc<dyn BackupStore>> {
        Some(Arc::clone(self))
    }
}

impl StoreFactory for Arc<dyn StoreFactory> {
    fn session_store(&self, session: &ClientApi) -> Arc<dyn BackupStore> {
        (**self).session_store(session)
    }

    fn own_store(&self) -> Option<Arc<dyn BackupStore>> {
        (**self).own_store()
    }

    fn ciphertext_kept_by_portal(&self) -> bool {
        (**self).ciphertext_kept_by_portal()
    }
}

/// Portal-Managed Backups: each client's ciphertexts kept by Portal as the `clientCipherText`
/// of its backup share pairs, through a [`PortalStore`] over that client's session.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortalManaged;

impl StoreFactory for PortalManaged {
    fn session_store(&self, session: &ClientApi) -> Arc<dyn BackupStore> {
        Arc::new(PortalStore::new(session.clone()))
    }

    fn own_store(&self) -> Option<Arc<dyn BackupStore>> {
        None
    }

    fn ciphertext_kept_by_portal(&self) -> bool {
        true
    }
}
