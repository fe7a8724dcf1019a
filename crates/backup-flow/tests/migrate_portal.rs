//! `PortalMigration` against portal-sim with many clients, both ways: Portal-Managed Backups →
//! a store of one's own and back, create-only on either target (Portal's ciphertext is read
//! before its replacing PATCH, and a different one is a conflict that is never overwritten),
//! drilled on the target, a run cut off midway and a rerun that finishes with nothing lost or
//! doubled, and unusable credential lines reported while the run goes on.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // tests: a panic is a failure

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_flow::Error;
use backup_flow::envelope::Keyring;
use backup_flow::migrate::{MigratedClient, PortalMigration, SessionLine};
use backup_flow::portal_api::{ApiKey, ClientApi};
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions};
use futures_util::StreamExt as _;
use portal_sim::PortalSim;

const CLIENTS: usize = 12;

/// A backed-up client: its session and its two backup share pairs, by curve.
struct Client {
    id: String,
    api_key: ApiKey,
    pairs: BTreeMap<String, String>,
}

/// `CLIENTS` clients of a Portal-managed simulator, each backed up into `stores` (Portal's
/// keeping, or a store of one's own).
async fn fleet(
    sim: &PortalSim,
    keyring: &Keyring,
    stores: Arc<dyn backup_flow::StoreFactory>,
) -> Vec<Client> {
    let state = tempfile::tempdir().unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (keys, client, generate) = support::generated_client(sim).await;
        let outcome = support::flow(client, keyring.clone(), Arc::clone(&stores), state.path())
            .backup(&generate)
            .await
            .unwrap();
        clients.push(Client {
            id: keys.client_id.clone(),
            api_key: ApiKey::from(keys.client_api_key.expose_secret()),
            pairs: outcome.backup_share_pair_ids,
        });
    }
    clients
}

fn key(client: &Client, curve: &str) -> BackupKey {
    BackupKey::client_backup(&client.id, &client.pairs[curve], curve).unwrap()
}

/// One credential line per client, then a line that could not be parsed and one whose key
/// Portal refuses.
fn sessions(sim: &PortalSim, clients: &[Client]) -> Vec<SessionLine> {
    let mut lines: Vec<SessionLine> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| SessionLine::new(i as u64 + 1, Ok(support::portal_client(sim, &c.api_key))))
        .collect();
    let n = lines.len() as u64;
    lines.push(SessionLine::new(
        n + 1,
        Err(Error::Invalid("not a credentials line".into())),
    ));
    let refused: ClientApi = support::portal_client(sim, &ApiKey::from("not-a-client-key"));
    lines.push(SessionLine::new(n + 2, Ok(refused)));
    lines
}

async fn run(
    migration: &PortalMigration,
    lines: Vec<SessionLine>,
    concurrency: usize,
) -> Vec<MigratedClient> {
    migration
        .run(futures_util::stream::iter(lines), concurrency)
        .collect()
        .await
}

/// What each object became, counted by status; and the lines that failed as a whole.
fn tally(done: &[MigratedClient]) -> (BTreeMap<String, usize>, Vec<u64>) {
    let mut counts = BTreeMap::new();
    let mut failed = Vec::new();
    for client in done {
        match &client.objects {
            Ok(objects) => {
                for object in objects {
                    let status = match &object.result {
                        Ok(moved) => serde_json::to_value(moved).unwrap()["status"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        Err(e) => format!("error: {e}"),
                    };
                    *counts.entry(status).or_default() += 1;
                }
            }
            Err(_) => failed.push(client.line.unwrap()),
        }
    }
    failed.sort_unstable();
    (counts, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_portal_to_a_store_of_ones_own_moves_every_ciphertext_once_and_leaves_a_conflict_alone()
 {
    let sim = support::sim(false).await;
    let keyring = support::keyring();
    let clients = fleet(&sim, &keyring, support::portal_managed()).await;
    let target = Arc::new(MemoryStore::new());
    // On the target already: client 0's ED25519 key holds client 1's ciphertext.
    let foreign = sim
        .stored_cipher_text(&clients[1].pairs["ED25519"])
        .unwrap();
    target
        .put(
            &key(&clients[0], "ED25519"),
            foreign.clone().into_bytes().into(),
            PutOptions::create(),
        )
        .await
        .unwrap();
    let migration =
        PortalMigration::from_portal(keyring, Arc::clone(&target) as Arc<dyn BackupStore>).unwrap();

    let done = run(&migration, sessions(&sim, &clients), 4).await;
    let (counts, failed) = tally(&done);
    assert_eq!(counts.get("moved"), Some(&(CLIENTS * 2 - 1)), "{counts:?}");
    assert_eq!(counts.get("conflict"), Some(&1), "{counts:?}");
    assert_eq!(counts.len(), 2, "nothing else: {counts:?}");
    let n = CLIENTS as u64;
    assert_eq!(
        failed,
        [n + 1, n + 2],
        "the two unusable lines, and only them"
    );
    for client in done.iter().filter(|c| c.objects.is_ok()) {
        for object in client.objects.as_ref().unwrap() {
            assert_eq!(object.pair_status.as_deref(), Some("completed"));
        }
    }
    // The target holds Portal's very ciphertexts; the conflicting object was not replaced.
    for client in &clients {
        for (curve, pair) in &client.pairs {
            let on_target = target.get(&key(client, curve)).await.unwrap();
            let expected = if client.id == clients[0].id && curve == "ED25519" {
                foreign.clone()
            } else {
                sim.stored_cipher_text(pair).unwrap()
            };
            assert_eq!(on_target, expected.into_bytes(), "{}", client.id);
        }
    }

    // A rerun finds everything there: nothing written again.
    let again = run(&migration, sessions(&sim, &clients), 4).await;
    let (counts, _) = tally(&again);
    assert_eq!(counts.get("already-moved"), Some(&(CLIENTS * 2 - 1)));
    assert_eq!(counts.get("moved"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_portal_never_overwrites_and_a_run_cut_off_midway_finishes_on_rerun() {
    let sim = support::sim(false).await;
    let keyring = support::keyring();
    let source: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    // Backed up into a store of our own (as before switching to Portal-Managed Backups).
    let clients = fleet(&sim, &keyring, support::own(Arc::clone(&source))).await;
    let before = source.list_clients().await.unwrap();
    // At Portal already: client 0's SECP256K1 pair holds client 1's ciphertext.
    let foreign = source.get(&key(&clients[1], "SECP256K1")).await.unwrap();
    let foreign = String::from_utf8(foreign.to_vec()).unwrap();
    support::portal_client(&sim, &clients[0].api_key)
        .store_cipher_text(&clients[0].pairs["SECP256K1"], &foreign)
        .await
        .unwrap();
    let migration = PortalMigration::to_portal(keyring, Arc::clone(&source)).unwrap();

    // Cut off: the stream dropped after a third of the clients, whatever was in flight
    // dropped mid-call.
    {
        let mut done =
            std::pin::pin!(migration.run(futures_util::stream::iter(sessions(&sim, &clients)), 4));
        for _ in 0..CLIENTS / 3 {
            done.next().await.unwrap();
        }
    }
    // A PATCH sent before the cut may still be landing.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let partial = clients
        .iter()
        .flat_map(|c| c.pairs.values())
        .filter(|pair| sim.stored_cipher_text(pair).is_some())
        .count();
    assert!(partial < CLIENTS * 2, "{partial} at Portal after the cut");

    let done = run(&migration, sessions(&sim, &clients), 4).await;
    let (counts, failed) = tally(&done);
    let n = CLIENTS as u64;
    assert_eq!(failed, [n + 1, n + 2]);
    assert_eq!(counts.get("conflict"), Some(&1), "{counts:?}");
    // What the cut-off run wrote (all but the conflicting ciphertext found at Portal) is
    // found, not written again; the rest is written now.
    let written_before = partial - 1;
    assert_eq!(
        counts.get("already-moved").copied().unwrap_or(0),
        written_before,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("moved").copied().unwrap_or(0),
        CLIENTS * 2 - 1 - written_before,
        "{counts:?}"
    );
    // Portal holds exactly our ciphertexts, the conflicting one untouched; the source is
    // unchanged.
    for client in &clients {
        for (curve, pair) in &client.pairs {
            let at_portal = sim.stored_cipher_text(pair).unwrap();
            let expected = if client.id == clients[0].id && curve == "SECP256K1" {
                foreign.clone()
            } else {
                String::from_utf8(source.get(&key(client, curve)).await.unwrap().to_vec()).unwrap()
            };
            assert_eq!(at_portal, expected, "{}", client.id);
        }
    }
    assert_eq!(source.list_clients().await.unwrap(), before);

    let again = run(&migration, sessions(&sim, &clients), 8).await;
    let (counts, _) = tally(&again);
    assert_eq!(counts.get("already-moved"), Some(&(CLIENTS * 2 - 1)));
    assert_eq!(counts.get("moved"), None);
}

#[tokio::test]
async fn an_empty_keyring_and_a_target_that_cannot_create_only_are_refused() {
    let store: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    assert!(PortalMigration::from_portal(Keyring::new(), Arc::clone(&store)).is_err());
    assert!(PortalMigration::to_portal(Keyring::new(), store).is_err());
}
