//! `CustodianFlow::status` against portal-sim: every client of the custodian walked through
//! the paged listing, each with its exact verdict and reasons (backed up, not backed up,
//! incomplete, deleted, corrupted, orphaned, without custodian share, ejected, Portal-held
//! with and without credentials), and the Portal requests counted as Portal saw them.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // tests: a panic is a failure

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use backup_flow::envelope::Keyring;
use backup_flow::fleet::{
    CiphertextsAt, ClientSessions, ClientStatus, Reason, StatusOptions, StatusSummary, Verdict,
};
use backup_flow::portal_api::client_api::{EjectClientRequest, SharePairStatusUpdate};
use backup_flow::portal_api::{ApiKey, SharePairUpdateStatus};
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions, ShareKind};
use backup_flow::{CustodianFlow, Flow};
use custodian_webhook::{WebhookSecrets, WebhookServer};
use futures_util::StreamExt as _;
use portal_sim::{BackupMode, PortalSim, SimClient, SimConfig, WebhookConfig};
use support::{custodian_client, generated_client, keyring, own, portal, portal_client};

use Reason::{
    CustodianShareUnchecked, DoesNotOpen, HeldByPortalUnchecked, IncompletePairs, NoCustodianShare,
    NotBackedUp, NotStored, Orphans,
};

/// A Self-Managed Backups simulator whose webhook keeps the custodian shares in `store`.
async fn self_managed(store: Arc<MemoryStore>) -> PortalSim {
    let server = WebhookServer::builder()
        .with_keyring(keyring())
        .with_store(store)
        .with_secrets(WebhookSecrets::parse(support::WEBHOOK_SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
    let config = SimConfig::new()
        .with_seed(11)
        .with_mode(BackupMode::SelfManaged(WebhookConfig::new(
            url,
            ApiKey::from(support::WEBHOOK_SECRET),
        )));
    PortalSim::start(config).await.unwrap()
}

/// Runs status to its end: every client by id (each exactly once) and the summary.
async fn run(
    flow: &CustodianFlow,
    options: StatusOptions,
) -> (BTreeMap<String, ClientStatus>, StatusSummary) {
    let mut run = flow.status(options);
    let mut summary = run.summary();
    let mut clients = BTreeMap::new();
    while let Some(client) = run.next().await {
        let client = client.unwrap();
        summary.add(&client);
        let id = client.client_id.clone();
        assert!(clients.insert(id.clone(), client).is_none(), "{id} twice");
    }
    summary.finish(run.requests());
    (clients, summary)
}

fn verdicts(clients: &BTreeMap<String, ClientStatus>) -> BTreeMap<String, (Verdict, Vec<Reason>)> {
    clients
        .iter()
        .map(|(id, c)| (id.clone(), (c.verdict, c.reasons.clone())))
        .collect()
}

/// Backs `client` up through the flow into `store`.
async fn back_up(
    sim: &PortalSim,
    keyring: &Keyring,
    store: &Arc<MemoryStore>,
    state: &Path,
) -> SimClient {
    let (keys, client, generate) = generated_client(sim).await;
    support::flow(
        client,
        keyring.clone(),
        own(Arc::clone(store) as Arc<dyn BackupStore>),
        state,
    )
    .backup(&generate)
    .await
    .unwrap();
    keys
}

/// The key of the newest completed pair's ciphertext of `curve`.
fn newest_key(sim: &PortalSim, client_id: &str, curve: &str) -> BackupKey {
    let details = sim.client_details(client_id).unwrap();
    let wallet = details
        .wallets
        .iter()
        .find(|w| w.curve.as_str() == curve)
        .unwrap();
    let pair = wallet.latest_completed_backup_pair().unwrap();
    BackupKey::client_backup(client_id, &pair.id, curve).unwrap()
}

#[tokio::test]
async fn every_client_of_a_self_managed_fleet_gets_its_exact_verdict_over_several_pages() {
    let webhook_store = Arc::new(MemoryStore::new());
    let sim = self_managed(Arc::clone(&webhook_store)).await;
    let keyring = keyring();
    let store = Arc::new(MemoryStore::new());
    let state = tempfile::tempdir().unwrap();
    let mut presence: BTreeMap<String, (Verdict, Vec<Reason>)> = BTreeMap::new();
    let mut deep: BTreeMap<String, (Verdict, Vec<Reason>)> = BTreeMap::new();
    let mut expect =
        |id: &str, shallow: (Verdict, Vec<Reason>), drilled: (Verdict, Vec<Reason>)| {
            presence.insert(id.to_owned(), shallow);
            deep.insert(id.to_owned(), drilled);
        };
    let ok = || (Verdict::Ok, vec![]);
    let attention = |reasons: &[Reason]| (Verdict::Attention, reasons.to_vec());

    // 22 clients backed up and whole.
    let mut whole = Vec::new();
    for _ in 0..22 {
        let keys = back_up(&sim, &keyring, &store, state.path()).await;
        expect(&keys.client_id, ok(), ok());
        whole.push(keys);
    }
    // Not backed up: a wallet and no backup, and a client with no wallet at all.
    for _ in 0..2 {
        let (keys, _, _) = generated_client(&sim).await;
        expect(
            &keys.client_id,
            attention(&[NotBackedUp]),
            attention(&[NotBackedUp]),
        );
    }
    let bare = sim.create_client();
    expect(
        &bare.client_id,
        attention(&[NotBackedUp]),
        attention(&[NotBackedUp]),
    );
    // Backed up, then a backup started and never finished.
    let (keys, client, generate) = generated_client(&sim).await;
    support::flow(
        client.clone(),
        keyring.clone(),
        own(Arc::clone(&store) as Arc<dyn BackupStore>),
        state.path(),
    )
    .backup(&generate)
    .await
    .unwrap();
    client.backup(&generate).await.unwrap();
    expect(
        &keys.client_id,
        attention(&[IncompletePairs]),
        attention(&[IncompletePairs]),
    );
    // Its newest ciphertext deleted from the store.
    let deleted = back_up(&sim, &keyring, &store, state.path()).await;
    store
        .delete(&newest_key(&sim, &deleted.client_id, "SECP256K1"))
        .await
        .unwrap();
    expect(
        &deleted.client_id,
        attention(&[NotStored]),
        attention(&[NotStored]),
    );
    // Its newest ciphertext swapped for another client's: present, and only the drill sees
    // that it does not open.
    let corrupted = back_up(&sim, &keyring, &store, state.path()).await;
    let other = store
        .get(&newest_key(&sim, &whole[0].client_id, "SECP256K1"))
        .await
        .unwrap();
    store
        .put(
            &newest_key(&sim, &corrupted.client_id, "SECP256K1"),
            other,
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    expect(&corrupted.client_id, ok(), attention(&[DoesNotOpen]));
    // A ciphertext stored for a pair Portal does not list.
    let orphaned = back_up(&sim, &keyring, &store, state.path()).await;
    let body = store
        .get(&newest_key(&sim, &orphaned.client_id, "ED25519"))
        .await
        .unwrap();
    let stray = BackupKey::client_backup(&orphaned.client_id, "bp_stray", "ED25519").unwrap();
    store.put(&stray, body, PutOptions::create()).await.unwrap();
    expect(
        &orphaned.client_id,
        attention(&[Orphans]),
        attention(&[Orphans]),
    );
    // The webhook's store lost the client's custodian shares.
    let unshared = back_up(&sim, &keyring, &store, state.path()).await;
    let custodian_keys = webhook_store.list(&unshared.client_id).await.unwrap();
    assert!(
        custodian_keys
            .iter()
            .any(|k| k.kind() == ShareKind::CustodianBackup)
    );
    for key in custodian_keys {
        webhook_store.delete(&key).await.unwrap();
    }
    expect(
        &unshared.client_id,
        attention(&[NoCustodianShare]),
        attention(&[NoCustodianShare]),
    );
    // Ejected: no longer the custodian's to keep, whatever else is true.
    let ejected = back_up(&sim, &keyring, &store, state.path()).await;
    portal_client(&sim, &ejected.client_api_key)
        .eject_client(&EjectClientRequest {
            client_platform: "NATIVE_IOS".into(),
            client_platform_version: "17".into(),
        })
        .await
        .unwrap();
    expect(
        &ejected.client_id,
        (Verdict::Ejected, vec![]),
        (Verdict::Ejected, vec![]),
    );
    assert_eq!(presence.len(), 31);

    let custodian = custodian_client(&sim, &whole[0]);
    let flow = Flow::new(
        keyring.clone(),
        Arc::clone(&store) as Arc<dyn BackupStore>,
        state.path(),
    )
    .unwrap()
    .with_custodian_store(Arc::clone(&webhook_store) as Arc<dyn BackupStore>)
    .custodian(custodian.clone());

    // Pages of 7: 31 clients take 5 pages, and the walk makes no other Portal request.
    sim.reset_report();
    let (clients, summary) =
        run(&flow, StatusOptions::new().with_take(7).with_concurrency(4)).await;
    assert_eq!(verdicts(&clients), presence);
    assert_eq!(summary.requests.listing_pages, 5);
    assert_eq!(summary.requests.total(), 5);
    assert_eq!(
        sim.report().traffic.api.requests,
        5,
        "the count is what Portal saw"
    );
    assert_eq!(summary.clients, 31);
    assert_eq!(summary.needing_attention(), 7);
    assert_eq!(
        summary.verdicts[&Verdict::Ok],
        23,
        "the corrupted one passes without the drill"
    );
    assert_eq!(summary.reasons[&NotBackedUp], 3);
    let whole_one = &clients[&whole[1].client_id];
    assert_eq!(whole_one.ciphertexts, CiphertextsAt::OwnStore);
    assert!(
        whole_one.curves.iter().all(|c| c.stored == Some(true)
            && c.custodian_share == Some(true)
            && c.drill.is_none())
    );
    assert_eq!(whole_one.orphans.as_deref(), Some(&[][..]));
    let orphans = clients[&orphaned.client_id].orphans.clone().unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].backup_share_pair_id, "bp_stray");

    // The restore drill finds the corrupted ciphertext; pages of 100 take one request.
    sim.reset_report();
    let (clients, summary) = run(&flow, StatusOptions::new().deep(true)).await;
    assert_eq!(verdicts(&clients), deep);
    assert_eq!(summary.requests.total(), 1);
    assert_eq!(sim.report().traffic.api.requests, 1);
    assert_eq!(summary.needing_attention(), 8);
    assert!(
        clients[&whole[1].client_id]
            .curves
            .iter()
            .all(|c| c.drill == Some(backup_flow::Finding::Ok))
    );

    // Without the webhook's store the custodian shares are not checked, and say so.
    let unchecked = Flow::new(
        keyring,
        Arc::clone(&store) as Arc<dyn BackupStore>,
        state.path(),
    )
    .unwrap()
    .custodian(custodian);
    let (clients, _) = run(&unchecked, StatusOptions::new()).await;
    assert_eq!(
        (
            clients[&whole[2].client_id].verdict,
            clients[&whole[2].client_id].reasons.clone()
        ),
        (Verdict::Unchecked, vec![CustodianShareUnchecked])
    );
    assert_eq!(
        clients[&unshared.client_id].reasons,
        [CustodianShareUnchecked],
        "only the webhook's store can tell"
    );
}

#[tokio::test]
async fn portal_held_ciphertexts_are_read_through_the_sessions_given_and_counted() {
    let sim = support::sim(false).await;
    let keyring = keyring();
    let state = tempfile::tempdir().unwrap();
    let backed_up = |keyring: Keyring| {
        let sim = &sim;
        let state = state.path().to_owned();
        async move {
            let (keys, client, generate) = generated_client(sim).await;
            support::flow(client, keyring, support::portal_managed(), &state)
                .backup(&generate)
                .await
                .unwrap();
            keys
        }
    };
    // With credentials: whole, a ciphertext that does not open, and one never stored.
    let whole = backed_up(keyring.clone()).await;
    let foreign = backed_up(support::keyring()).await;
    let (unstored, client, generate) = generated_client(&sim).await;
    let backup = client.backup(&generate).await.unwrap();
    client
        .update_backup_share_pairs(&SharePairStatusUpdate::backup(
            backup.ids(),
            SharePairUpdateStatus::StoredClientBackupShare,
        ))
        .await
        .unwrap();
    // Without credentials: backed up (not checked), and not backed up (Portal says so).
    let unchecked = backed_up(keyring.clone()).await;
    let (bare, _, _) = generated_client(&sim).await;

    let lines = format!(
        "{{\"clientApiKey\":\"{}\"}}\n{{\"clientSessionToken\":\"{}\"}}\n\nnot json\n{{\"clientApiKey\":\"{}\"}}\n{{\"clientApiKey\":\"no-such-key\"}}\n",
        whole.client_api_key.expose_secret(),
        foreign.client_session_token.expose_secret(),
        unstored.client_api_key.expose_secret(),
    );
    sim.reset_report();
    let (sessions, unusable) = ClientSessions::from_lines(
        &portal(&sim),
        std::io::Cursor::new(lines.clone().into_bytes()),
        2,
    )
    .await
    .unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.lookups(), 4, "one GET /clients/me per usable line");
    let bad: Vec<u64> = unusable.iter().map(|u| u.line).collect();
    assert_eq!(bad, [4, 6]);
    assert!(unusable.iter().all(|u| !u.reason.contains("no-such-key")));

    let flow = Flow::new(keyring, support::portal_managed(), state.path())
        .unwrap()
        .custodian(custodian_client(&sim, &whole));
    let sessions = Arc::new(sessions);
    let (clients, summary) = run(
        &flow,
        StatusOptions::new()
            .deep(true)
            .with_sessions(Arc::clone(&sessions)),
    )
    .await;
    let attention = |reasons: &[Reason]| (Verdict::Attention, reasons.to_vec());
    assert_eq!(
        verdicts(&clients),
        BTreeMap::from([
            (whole.client_id.clone(), (Verdict::Ok, vec![])),
            (foreign.client_id.clone(), attention(&[DoesNotOpen])),
            (unstored.client_id.clone(), attention(&[NotStored])),
            (
                unchecked.client_id.clone(),
                (Verdict::Unchecked, vec![HeldByPortalUnchecked])
            ),
            (bare.client_id.clone(), attention(&[NotBackedUp])),
        ])
    );
    let checked = &clients[&whole.client_id];
    assert_eq!(checked.ciphertexts, CiphertextsAt::ClientSession);
    assert!(checked.custodian_shares_with_portal && checked.orphans.is_none());
    assert_eq!(checked.portal_requests, 2, "one ciphertext read per curve");
    assert_eq!(clients[&unchecked.client_id].portal_requests, 0);
    assert!(
        clients[&unchecked.client_id]
            .curves
            .iter()
            .all(|c| c.stored.is_none())
    );
    // 4 lookups, 1 page, and 2 reads for each of the 3 clients with a session.
    assert_eq!(
        (
            summary.requests.credential_lookups,
            summary.requests.listing_pages,
            summary.requests.ciphertext_reads
        ),
        (4, 1, 6)
    );
    assert_eq!(sim.report().traffic.api.requests, summary.requests.total());
    assert_eq!(summary.requests_per_client, 2.2);
    // 10,000 clients: 100 pages and 10,000 × 10 ÷ 5 client requests, at 200 a minute.
    assert_eq!(summary.projection.requests, 100 + 20_000);
    assert_eq!(summary.projection.seconds, 20_100 * 60 / 200);

    // Presence only reads the same ciphertexts, and opens none.
    let (clients, _) = run(&flow, StatusOptions::new().with_sessions(sessions)).await;
    assert_eq!(clients[&foreign.client_id].verdict, Verdict::Ok);
    assert_eq!(clients[&unstored.client_id].reasons, [NotStored]);
    assert!(
        clients
            .values()
            .all(|c| c.curves.iter().all(|c| c.drill.is_none()))
    );
}

#[tokio::test]
async fn a_listing_page_portal_will_not_give_ends_the_walk_with_an_error_after_the_clients_so_far()
{
    let sim = support::sim(false).await;
    let first = sim.create_client();
    for _ in 0..11 {
        let _ = sim.create_client();
    }
    let state = tempfile::tempdir().unwrap();
    let flow = Flow::new(keyring(), support::portal_managed(), state.path())
        .unwrap()
        .custodian(custodian_client(&sim, &first));
    let mut run = flow.status(StatusOptions::new().with_take(5).with_concurrency(1));
    let mut seen = vec![run.next().await.unwrap().unwrap().client_id];
    assert_eq!(run.total_clients(), Some(12));
    // The first page is in; every later one fails (after portal-api's retries).
    sim.add_fault(
        "GET /api/v3/custodians/me/clients: error=1.0, status=503"
            .parse::<portal_sim::FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let mut failed = None;
    while let Some(next) = run.next().await {
        match next {
            Ok(client) => seen.push(client.client_id),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    assert_eq!(seen.len(), 5, "the first page's clients, then the error");
    let failed = failed.unwrap();
    assert!(failed.is_retryable(), "{failed}");
    assert!(
        run.next().await.is_none(),
        "the walk cannot go past a missing page"
    );
    assert_eq!(run.requests().listing_pages, 1, "only pages given count");
}
