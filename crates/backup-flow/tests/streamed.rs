//! Store-wide verify and rotate over a streamed client listing: work starts with the first
//! client while the listing is still open, a failed listing item is reported as an item of its
//! own while the rest goes on, and rotate's proof is counted per client as it finishes.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // tests: a panic is a failure

mod support;

use std::sync::Arc;

use backup_flow::envelope::Keyring;
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{BackupStore, StorageError};
use backup_flow::{Finding, Flow, Rotated};
use futures_util::StreamExt as _;
use support::backups::store_backup;
use support::keyring;

const CLIENTS: usize = 20;

fn client(i: usize) -> String {
    format!("client-{i:03}")
}

/// `CLIENTS` backups of two shares under one data key each, in a memory store.
async fn seeded(keyring: &Keyring) -> Arc<dyn BackupStore> {
    let store = Arc::new(MemoryStore::new());
    for i in 0..CLIENTS {
        let pair = |curve: &str| format!("pair-{i}-{curve}");
        store_backup(store.as_ref(), keyring, &client(i), pair, b"a backup share").await;
    }
    store
}

/// A listing that sends the clients through a channel (the test decides when it ends), with
/// a failed item after the fifth client.
fn listing() -> (
    tokio::sync::mpsc::UnboundedSender<Result<String, StorageError>>,
    impl futures_util::Stream<Item = Result<String, StorageError>> + Send,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, stream)
}

fn send_all(tx: tokio::sync::mpsc::UnboundedSender<Result<String, StorageError>>, from: usize) {
    for i in from..CLIENTS {
        tx.send(Ok(client(i))).unwrap();
        if i == 4 {
            tx.send(Err(StorageError::Unavailable {
                backend: "test",
                source: "the listing hiccupped".into(),
            }))
            .unwrap();
        }
    }
}

#[tokio::test]
async fn verify_starts_before_the_listing_ends_and_goes_on_past_a_failed_listing_item() {
    let keyring = keyring();
    let store = seeded(&keyring).await;
    let state = tempfile::tempdir().unwrap();
    let flow = Flow::new(keyring, Arc::clone(&store), state.path()).unwrap();
    let (tx, clients) = listing();
    tx.send(Ok(client(0))).unwrap();
    let mut checks = std::pin::pin!(flow.verify_streamed(clients, 4));
    // The listing is still open: the first client is drilled all the same.
    let first = checks.next().await.unwrap();
    assert_eq!(first.client_id, client(0));
    send_all(tx, 1);
    let mut all = vec![first];
    while let Some(check) = checks.next().await {
        all.push(check);
    }
    assert_eq!(all.len(), CLIENTS + 1, "every client and the failed item");
    let failed: Vec<_> = all.iter().filter(|c| c.shares.is_err()).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].client_id.is_empty());
    assert!(failed[0].shares.as_ref().unwrap_err().is_retryable());
    for check in all.iter().filter(|c| c.shares.is_ok()) {
        let shares = check.shares.as_ref().unwrap();
        assert_eq!(shares.len(), 2, "{}", check.client_id);
        for share in shares {
            assert_eq!(share.result.as_ref().unwrap().finding, Finding::Ok);
        }
    }
}

#[tokio::test]
async fn rotate_streams_one_result_per_client_with_its_proof_and_goes_on_past_a_failed_item() {
    let old = keyring();
    let new = keyring();
    let store = seeded(&old).await;
    let state = tempfile::tempdir().unwrap();
    let flow = Flow::new(old, Arc::clone(&store), state.path()).unwrap();
    let rotation = flow.rotation(&new).await.unwrap();
    let (tx, clients) = listing();
    tx.send(Ok(client(0))).unwrap();
    let mut done = std::pin::pin!(rotation.run(clients, 4));
    let first = done.next().await.unwrap();
    assert_eq!(
        first.client_id,
        client(0),
        "rotated while the listing is open"
    );
    send_all(tx, 1);
    let mut all = vec![first];
    while let Some(client) = done.next().await {
        all.push(client);
    }
    assert_eq!(all.len(), CLIENTS + 1);
    assert_eq!(all.iter().filter(|c| c.objects.is_err()).count(), 1);
    for client in all.iter().filter(|c| c.objects.is_ok()) {
        let objects = client.objects.as_ref().unwrap();
        assert_eq!(objects.len(), 2);
        for object in objects {
            assert_eq!(
                object.result.as_ref().unwrap(),
                &Rotated::Rewrapped {
                    conflicts_redone: 0
                }
            );
        }
        assert_eq!(
            *client.not_under_target.as_ref().unwrap(),
            0,
            "{}",
            client.client_id
        );
    }
    let journal = rotation.finish().await.unwrap();
    assert_eq!(journal.not_under_target, 0);

    // Done: the new keyring opens everything; a second rotation finds it all current.
    let flow = Flow::new(new.clone(), Arc::clone(&store), state.path()).unwrap();
    let report = flow
        .rotate(&new, &(0..CLIENTS).map(client).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(report.already_current, CLIENTS * 2);
    assert!(report.is_complete());
}
