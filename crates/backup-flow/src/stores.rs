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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use envelope::local::LocalKek;
    use envelope::{KeyEncryptionKey, Keyring};
    use portal_api::{ApiKey, Portal};
    use storage::BackupStore;
    use storage::memory::MemoryStore;

    use super::{PortalManaged, StoreFactory};
    use crate::{Error, Flow};

    fn session() -> portal_api::ClientApi {
        // Never called: building a role sends nothing.
        Portal::builder()
            .build()
            .unwrap()
            .client_with_api_key(&ApiKey::from("unused"))
            .unwrap()
    }

    #[test]
    fn a_store_of_ones_own_is_the_same_for_every_session() {
        let own: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
        let factory: Arc<dyn BackupStore> = Arc::clone(&own);
        assert!(Arc::ptr_eq(&factory.session_store(&session()), &own));
        assert!(Arc::ptr_eq(&factory.own_store().unwrap(), &own));
        assert!(!factory.ciphertext_kept_by_portal());
    }

    #[test]
    fn portal_managed_is_per_session_with_no_store_of_ones_own() {
        assert_eq!(PortalManaged.session_store(&session()).name(), "portal");
        assert!(PortalManaged.own_store().is_none());
        assert!(PortalManaged.ciphertext_kept_by_portal());
        let dynamic: Arc<dyn StoreFactory> = Arc::new(PortalManaged);
        assert!(dynamic.ciphertext_kept_by_portal() && dynamic.own_store().is_none());
    }

    #[tokio::test]
    async fn store_only_operations_refuse_portal_managed_stores_without_calling_anything() {
        let keyring = Keyring::new()
            .with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>);
        let state = tempfile::tempdir().unwrap();
        let flow = Flow::new(keyring.clone(), PortalManaged, state.path()).unwrap();
        let clients = ["cl_1".to_owned()];
        for err in [
            flow.rotate(&keyring, &clients).await.unwrap_err(),
            flow.verify_stored("cl_1").await.unwrap_err(),
            flow.eject_offline("cl_1", &[]).await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Invalid(reason) if reason.contains("a store of your own")),
                "{err}"
            );
        }
    }
}
