//! [`PortalMigration`]: migration between Portal-Managed Backups and a store of one's own.

use std::sync::Arc;

use envelope::{Keyring, Opener};
use futures_util::stream::{Stream, StreamExt as _};
use portal_api::ClientApi;
use portal_api::client_api::ClientDetails;
use storage::portal::PortalStore;
use storage::{BackupKey, BackupStore, ShareKind};

use super::{MigratedClient, MigratedObject, Moved, Target, copy};
use crate::error::{Error, Result};
use crate::identity::ShareId;

/// One client of a [`PortalMigration`]: the session its credential line opens, or why the
/// line cannot be used (reported as that line's error; the run goes on).
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionLine {
    /// The line number in the credentials input, from 1.
    pub line: u64,
    /// The client's session, or why there is none.
    pub client: Result<ClientApi>,
}

impl SessionLine {
    /// Line `line` and what it gave.
    #[must_use]
    pub fn new(line: u64, client: Result<ClientApi>) -> Self {
        Self { line, client }
    }
}

/// Which way the ciphertexts go.
#[derive(Clone, Debug)]
enum Direction {
    FromPortal { to: Arc<dyn BackupStore> },
    ToPortal { from: Arc<dyn BackupStore> },
}

/// Migration to and from Portal-Managed Backups: Portal keeps each client backup ciphertext
/// as the `clientCipherText` of its backup share pair, behind that client's own credential,
/// so the clients come from credential lines (one session each), not from a listing.
///
/// * **From Portal** to a store of one's own: for every backup share pair Portal lists for
///   the client (`GET /api/v3/clients/me`), completed or not, the ciphertext
///   (`GET …/backup-share-pairs/{id}/cipher-text`; a pair without one is skipped) is drilled,
///   created on the target only where nothing is, read back and drilled there.
/// * **To Portal** from a store of one's own: every client backup ciphertext the store holds
///   for the client of the session, whose pair Portal lists for that client, goes to Portal
///   create-only: Portal's `PATCH …/backup-share-pairs/{id}` replaces whatever is there, so the
///   ciphertext is read first: equal bytes are already moved, different bytes a conflict that
///   is never replaced, and only a pair with no ciphertext is written. Then it is read back
///   from Portal and drilled.
///
/// Incomplete pairs' ciphertexts move too (reported with their pair status): a ciphertext
/// stored but never confirmed is what finishes that pair without a new backup, so leaving it
/// behind would cost the client one. Custodian backup shares and client signing shares never
/// go to Portal (Portal keeps client backup ciphertexts only). The source is only read;
/// a rerun after a kill finds what the killed run wrote and reports it as already moved.
///
/// ```no_run
/// # async fn demo(keyring: envelope::Keyring, to: std::sync::Arc<dyn storage::BackupStore>,
/// #     client: portal_api::ClientApi) -> Result<(), backup_flow::Error> {
/// use backup_flow::migrate::{PortalMigration, SessionLine};
/// use futures_util::StreamExt as _;
///
/// let migration = PortalMigration::from_portal(keyring, to)?;
/// let sessions = futures_util::stream::iter([SessionLine::new(1, Ok(client))]);
/// let mut done = std::pin::pin!(migration.run(sessions, 4));
/// while let Some(client) = done.next().await {
///     println!("{}: {} objects", client.client_id, client.objects?.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PortalMigration {
    keyring: Keyring,
    direction: Direction,
}

impl PortalMigration {
    /// From Portal's keeping to `to`, whose ciphertexts `keyring` opens.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring or a target that cannot create only.
    pub fn from_portal(keyring: Keyring, to: Arc<dyn BackupStore>) -> Result<Self> {
        check_keyring(&keyring)?;
        if !to.capabilities().conditional_create {
            return Err(Error::Invalid(format!(
                "the {} store cannot create an object only if none is there, so it cannot be migrated to (a migration never overwrites)",
                to.name()
            )));
        }
        Ok(Self {
            keyring,
            direction: Direction::FromPortal { to },
        })
    }

    /// From `from` to Portal's keeping.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring or a source that cannot list a client's
    /// objects.
    pub fn to_portal(keyring: Keyring, from: Arc<dyn BackupStore>) -> Result<Self> {
        check_keyring(&keyring)?;
        if !from.capabilities().list {
            return Err(Error::Invalid(format!(
                "the {} store cannot list its objects, so it cannot be migrated from",
                from.name()
            )));
        }
        Ok(Self {
            keyring,
            direction: Direction::ToPortal { from },
        })
    }

    /// Migrates the client of every session of `sessions` (read as the stream is polled), up
    /// to `concurrency` clients at once (`0` counts as 1), as a stream of one result per line
    /// in the order they finish. A line without a session, or whose client Portal does not
    /// show, is reported in its [`MigratedClient::objects`] and the others go on; only the
    /// clients in flight are held.
    pub fn run<'a, S>(
        &'a self,
        sessions: S,
        concurrency: usize,
    ) -> impl Stream<Item = MigratedClient> + Send + 'a
    where
        S: Stream<Item = SessionLine> + Send + 'a,
    {
        sessions
            .map(move |session| self.migrate_client(session))
            .buffer_unordered(concurrency.max(1))
    }

    /// Migrates the client of one credentials line (what [`run`](Self::run) does for each),
    /// for a caller that schedules the lines itself.
    pub async fn migrate_client(&self, session: SessionLine) -> MigratedClient {
        let line = Some(session.line);
        let failed = |error| MigratedClient {
            client_id: String::new(),
            line,
            objects: Err(error),
        };
        let client = match session.client {
            Ok(client) => client,
            Err(e) => return failed(e),
        };
        let me = match client.client_me().await {
            Ok(me) => me,
            Err(e) => return failed(Error::portal("GET", portal_api::paths::CLIENT_ME)(e)),
        };
        let portal = PortalStore::new(client);
        let opener = Opener::new(&self.keyring);
        let objects = match &self.direction {
            Direction::FromPortal { to } => Ok(from_portal(&opener, &me, &portal, to).await),
            Direction::ToPortal { from } => to_portal(&opener, &me, &portal, from.as_ref()).await,
        };
        MigratedClient {
            client_id: me.id,
            line,
            objects,
        }
    }
}

fn check_keyring(keyring: &Keyring) -> Result<()> {
    if keyring.is_empty() {
        return Err(Error::Invalid(
            "at least one key-encryption key is needed to drill what is moved".into(),
        ));
    }
    Ok(())
}

/// Every backup share pair Portal lists for the client, in its order, to `to`.
async fn from_portal(
    opener: &Opener<'_>,
    me: &ClientDetails,
    portal: &PortalStore,
    to: &Arc<dyn BackupStore>,
) -> Vec<MigratedObject> {
    let mut objects = Vec::new();
    for wallet in &me.wallets {
        for pair in &wallet.backup_share_pairs {
            let id = ShareId {
                client_id: &me.id,
                pair_id: &pair.id,
                curve: &wallet.curve,
                kind: ShareKind::ClientBackup,
            };
            let (key, result) = match id.key() {
                Ok(key) => {
                    let result = from_portal_one(opener, &id, &key, portal, to.as_ref()).await;
                    (key.to_string(), result)
                }
                Err(e) => (format!("{}/{}", wallet.curve, pair.id), Err(e)),
            };
            objects.push(MigratedObject {
                key,
                pair_status: Some(pair.status.as_str().to_owned()),
                result,
            });
        }
    }
    objects
}

async fn from_portal_one(
    opener: &Opener<'_>,
    id: &ShareId<'_>,
    key: &BackupKey,
    portal: &PortalStore,
    to: &dyn BackupStore,
) -> Result<Moved> {
    let body = match portal.get(key).await {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            return Ok(Moved::Skipped {
                reason: "Portal holds no ciphertext for this backup share pair",
            });
        }
        Err(e) => return Err(Error::store("get", key)(e)),
    };
    copy(opener, id, key, body, Target::Store(to)).await
}

/// Every object `from` holds for the client, in the store's listing order, to Portal.
async fn to_portal(
    opener: &Opener<'_>,
    me: &ClientDetails,
    portal: &PortalStore,
    from: &dyn BackupStore,
) -> Result<Vec<MigratedObject>> {
    let keys = from.list(&me.id).await.map_err(|source| Error::Store {
        operation: "list",
        key: me.id.clone(),
        source: Box::new(source),
    })?;
    let mut objects = Vec::with_capacity(keys.len());
    for key in keys {
        let pair = key.share_pair_id().and_then(|pair_id| {
            me.wallets
                .iter()
                .filter(|w| key.curve() == Some(w.curve.as_str()))
                .flat_map(|w| &w.backup_share_pairs)
                .find(|p| p.id == pair_id)
        });
        let pair_status = pair.map(|p| p.status.as_str().to_owned());
        let result = to_portal_one(opener, &key, pair.is_some(), portal, from).await;
        objects.push(MigratedObject {
            key: key.to_string(),
            pair_status,
            result,
        });
    }
    Ok(objects)
}

async fn to_portal_one(
    opener: &Opener<'_>,
    key: &BackupKey,
    listed_by_portal: bool,
    portal: &PortalStore,
    from: &dyn BackupStore,
) -> Result<Moved> {
    match key.kind() {
        ShareKind::ClientBackup => {}
        ShareKind::CustodianBackup => {
            return Ok(Moved::Skipped {
                reason: super::CUSTODIAN_STAYS,
            });
        }
        _ => {
            return Ok(Moved::Skipped {
                reason: "Portal keeps client backup ciphertexts only",
            });
        }
    }
    let (Some(pair_id), Some(curve), true) = (key.share_pair_id(), key.curve(), listed_by_portal)
    else {
        return Ok(Moved::Skipped {
            reason: "Portal lists no backup share pair of this client by this id and curve",
        });
    };
    let curve = portal_api::Curve::from_wire(curve);
    let id = ShareId {
        client_id: key.client_id(),
        pair_id,
        curve: &curve,
        kind: ShareKind::ClientBackup,
    };
    let body = match from.get(key).await {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            return Ok(Moved::Skipped {
                reason: "deleted from the source since it was listed",
            });
        }
        Err(e) => return Err(Error::store("get", key)(e)),
    };
    copy(opener, &id, key, body, Target::Portal(portal)).await
}
