//! Client backups written straight into a store, as `backup` leaves them, for the store-wide
//! operations' tests and benchmarks (shared by path with the benches).
#![allow(unreachable_pub)] // a module of test binaries and benches, not of a library

use backup_flow::envelope::{EncryptionContext, Keyring, Sealer, to_text};
use backup_flow::storage::context::{BACKUP_SHARE_PAIR_ID, CLIENT_ID, CURVE, PURPOSE};
use backup_flow::storage::{BackupKey, BackupStore, PutOptions, ShareKind};

/// The curves of a backup: one share each.
pub const CURVES: [&str; 2] = ["SECP256K1", "ED25519"];

/// Stores one backup of `client_id`: `share` for each of [`CURVES`], sealed under one data
/// key with the contexts a backup seals under, created (never overwritten) under the client
/// backup key whose share pair id `pair(curve)` names.
pub async fn store_backup(
    store: &dyn BackupStore,
    keyring: &Keyring,
    client_id: &str,
    pair: impl Fn(&str) -> String,
    share: &[u8],
) {
    let kek_context = EncryptionContext::new()
        .with(CLIENT_ID, client_id)
        .and_then(|c| c.with(PURPOSE, ShareKind::ClientBackup.as_str()))
        .unwrap();
    let sealer = Sealer::new(keyring, kek_context.clone()).await.unwrap();
    for curve in CURVES {
        let pair = pair(curve);
        let context = kek_context
            .clone()
            .with(BACKUP_SHARE_PAIR_ID, pair.as_str())
            .and_then(|c| c.with(CURVE, curve))
            .unwrap();
        let sealed = sealer.seal(&context, share).unwrap();
        let key = BackupKey::client_backup(client_id, &pair, curve).unwrap();
        store
            .put(
                &key,
                to_text(&sealed).into_bytes().into(),
                PutOptions::create(),
            )
            .await
            .unwrap();
    }
}
