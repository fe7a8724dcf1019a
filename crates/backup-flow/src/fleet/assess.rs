//! [`assess`]: what Portal's client record and the store's listing say together about one
//! client's backups, before any ciphertext is opened. Pure: no Portal call, no store call, no
//! KMS call; `status` and `reconcile` build on it.

use std::collections::BTreeMap;

use portal_api::SharePairStatus;
use portal_api::client_api::{BackupSharePair, ClientDetails};
use serde::Serialize;
use storage::{BackupKey, ShareKind};

/// One client, as Portal lists it and as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientAssessment {
    /// The Portal client id.
    pub client_id: String,
    /// Whether Portal marked the client ejected (`ejectedAt` set).
    pub ejected: bool,
    /// Whether the client's environment keeps backup ciphertexts with Portal
    /// (Portal-Managed Backups): then our store is not where they are.
    pub ciphertexts_with_portal: bool,
    /// One entry per wallet (curve), in Portal's order.
    pub curves: Vec<CurveAssessment>,
    /// Client backup ciphertexts in the store that belong to no completed pair of the client.
    pub orphans: Vec<Orphan>,
}

/// One wallet (curve) of a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CurveAssessment {
    /// The curve, as Portal spells it (`SECP256K1`, `ED25519`).
    pub curve: String,
    /// The wallet id.
    pub wallet_id: String,
    /// The newest completed backup pair: what a recovery would use. `None`: the wallet has no
    /// completed backup.
    pub newest_completed: Option<PairSeen>,
    /// Whether the store holds a client backup ciphertext for `newest_completed` (presence
    /// only; opening it is the restore drill's job). `None` when there is no completed pair.
    pub stored: Option<bool>,
    /// Pairs Portal lists as not completed, newest first: backups started and not finished.
    pub incomplete: Vec<PairSeen>,
}

/// A backup share pair, as Portal lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PairSeen {
    /// The backup share pair id.
    pub id: String,
    /// When Portal created it (ISO 8601), if listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Its backup method, if listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_method: Option<String>,
    /// Its status, as Portal reports it.
    pub status: String,
    /// Whether the store holds a client backup ciphertext for it.
    pub stored: bool,
}

/// A stored client backup ciphertext that belongs to no completed pair of its client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Orphan {
    /// The store key (path form).
    pub key: String,
    /// The backup share pair id it is stored for.
    pub backup_share_pair_id: String,
    /// Its curve.
    pub curve: String,
    /// The pair's status, when Portal still lists the pair (an incomplete pair);
    /// `None` when Portal does not list it at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_status: Option<String>,
    /// When Portal created the pair, when it lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Whether the pair is known to be older than the newest completed pair of the same
    /// curve: the only orphans it is safe to delete. An orphan newer than that (a backup
    /// stored and never confirmed) may still be finished; one Portal does not list, or lists
    /// without a time, has no known age.
    pub older_than_newest_completed: bool,
}

impl ClientAssessment {
    /// The wallet entry of `curve`.
    #[must_use]
    pub fn curve(&self, curve: &str) -> Option<&CurveAssessment> {
        self.curves.iter().find(|c| c.curve == curve)
    }
}

/// Sets Portal's record of `client` beside `stored`, the keys the store holds for it (as
/// [`BackupStore::list`](storage::BackupStore::list) gives them; keys of other clients and
/// other kinds are ignored).
///
/// ```
/// use backup_flow::fleet::assess;
/// use portal_api::client_api::ClientDetails;
/// use storage::BackupKey;
///
/// let client: ClientDetails = serde_json::from_value(serde_json::json!({
///     "id": "cl_1",
///     "wallets": [{"id": "w_1", "curve": "SECP256K1", "backupSharePairs": [
///         {"id": "bp_old", "createdAt": "2026-01-01T00:00:00Z", "status": "completed"},
///         {"id": "bp_new", "createdAt": "2026-02-01T00:00:00Z", "status": "completed"},
///         {"id": "bp_half", "createdAt": "2026-03-01T00:00:00Z", "status": "incomplete"}]}]
/// }))?;
/// let stored = [
///     BackupKey::client_backup("cl_1", "bp_new", "SECP256K1")?,
///     BackupKey::client_backup("cl_1", "bp_half", "SECP256K1")?,
///     BackupKey::client_backup("cl_1", "bp_gone", "SECP256K1")?,
/// ];
/// let seen = assess(&client, &stored);
/// let wallet = seen.curve("SECP256K1").unwrap();
/// assert_eq!(wallet.newest_completed.as_ref().unwrap().id, "bp_new");
/// assert_eq!(wallet.stored, Some(true));
/// assert_eq!(wallet.incomplete[0].id, "bp_half");
/// let orphans: Vec<_> = seen.orphans.iter().map(|o| o.backup_share_pair_id.as_str()).collect();
/// assert_eq!(orphans, ["bp_gone", "bp_half"]);
/// assert!(seen.orphans.iter().all(|o| !o.older_than_newest_completed));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn assess(client: &ClientDetails, stored: &[BackupKey]) -> ClientAssessment {
    // (curve, pair id) of every client backup ciphertext the store holds for this client.
    let held: BTreeMap<(&str, &str), &BackupKey> = stored
        .iter()
        .filter(|k| k.kind() == ShareKind::ClientBackup && k.client_id() == client.id)
        .filter_map(|k| Some(((k.curve()?, k.share_pair_id()?), k)))
        .collect();
    let is_held = |curve: &str, pair: &str| held.contains_key(&(curve, pair));

    let curves: Vec<CurveAssessment> = client
        .wallets
        .iter()
        .map(|wallet| {
            let curve = wallet.curve.as_str();
            let seen = |pair: &BackupSharePair| PairSeen {
                id: pair.id.clone(),
                created_at: pair.created_at.clone(),
                backup_method: pair.backup_method.as_ref().map(|m| m.as_str().to_owned()),
                status: pair.status.as_str().to_owned(),
                stored: is_held(curve, &pair.id),
            };
            let newest_completed = wallet.latest_completed_backup_pair().map(seen);
            let mut incomplete: Vec<PairSeen> = wallet
                .backup_share_pairs
                .iter()
                .filter(|p| p.status != SharePairStatus::Completed)
                .map(seen)
                .collect();
            incomplete.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            CurveAssessment {
                curve: curve.to_owned(),
                wallet_id: wallet.id.clone(),
                stored: newest_completed.as_ref().map(|p| p.stored),
                newest_completed,
                incomplete,
            }
        })
        .collect();

    let orphans = held
        .iter()
        .filter_map(|(&(curve, pair_id), key)| {
            let wallet = client.wallets.iter().find(|w| w.curve.as_str() == curve);
            let listed = wallet.and_then(|w| w.backup_share_pairs.iter().find(|p| p.id == pair_id));
            if listed.is_some_and(|p| p.status == SharePairStatus::Completed) {
                return None;
            }
            let newest = wallet
                .and_then(|w| w.latest_completed_backup_pair())
                .and_then(|p| p.created_at.as_deref());
            let created_at = listed.and_then(|p| p.created_at.clone());
            let older = match (created_at.as_deref(), newest) {
                (Some(orphan), Some(newest)) => orphan < newest,
                _ => false,
            };
            Some(Orphan {
                key: key.to_path(),
                backup_share_pair_id: pair_id.to_owned(),
                curve: curve.to_owned(),
                portal_status: listed.map(|p| p.status.as_str().to_owned()),
                created_at,
                older_than_newest_completed: older,
            })
        })
        .collect();

    ClientAssessment {
        client_id: client.id.clone(),
        ejected: client.ejected_at.is_some(),
        ciphertexts_with_portal: client.backup_with_portal_enabled(),
        curves,
        orphans,
    }
}

/// Whether `custodian_keys` (what the Self-Managed Backups webhook's store holds for a
/// client) include the custodian backup share of a pair of `curve` made with `backup_method`.
///
/// The webhook keeps one share per client and backup method, the newest Portal sent; Portal
/// names the method either plainly (`PASSWORD`) or per curve (`PASSWORD-SECP256K1`). A share
/// under the pair's method, plain or for its curve, counts; when Portal lists no method for the
/// pair, any custodian share of the client does.
///
/// ```
/// use backup_flow::fleet::custodian_share_held;
/// use storage::BackupKey;
///
/// let held = [BackupKey::custodian_backup("cl_1", "PASSWORD-ED25519")?];
/// assert!(custodian_share_held(&held, "cl_1", "ED25519", Some("PASSWORD")));
/// assert!(!custodian_share_held(&held, "cl_1", "SECP256K1", Some("PASSWORD")));
/// assert!(!custodian_share_held(&held, "cl_1", "ED25519", Some("GDRIVE")));
/// assert!(custodian_share_held(&held, "cl_1", "ED25519", None));
/// # Ok::<(), storage::StorageError>(())
/// ```
#[must_use]
pub fn custodian_share_held(
    custodian_keys: &[BackupKey],
    client_id: &str,
    curve: &str,
    backup_method: Option<&str>,
) -> bool {
    custodian_keys
        .iter()
        .filter(|k| k.kind() == ShareKind::CustodianBackup && k.client_id() == client_id)
        .filter_map(BackupKey::backup_method)
        .any(|held| match backup_method {
            None => true,
            Some(method) => {
                held == method
                    || held
                        .strip_prefix(method)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(curve))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(pairs: serde_json::Value) -> ClientDetails {
        serde_json::from_value(serde_json::json!({
            "id": "cl_1",
            "wallets": [
                {"id": "w_s", "curve": "SECP256K1", "backupSharePairs": pairs},
                {"id": "w_e", "curve": "ED25519", "backupSharePairs": []}
            ]
        }))
        .unwrap()
    }

    fn key(client: &str, pair: &str, curve: &str) -> BackupKey {
        BackupKey::client_backup(client, pair, curve).unwrap()
    }

    #[test]
    fn a_wallet_with_no_completed_pair_is_not_backed_up_and_nothing_is_stored_for_it() {
        let seen = assess(&client(serde_json::json!([])), &[]);
        let ed = seen.curve("ED25519").unwrap();
        assert_eq!((ed.newest_completed.as_ref(), ed.stored), (None, None));
        assert!(seen.orphans.is_empty());
    }

    #[test]
    fn the_newest_completed_pair_counts_and_a_missing_ciphertext_shows() {
        let pairs = serde_json::json!([
            {"id": "a", "createdAt": "2026-01-01T00:00:00Z", "status": "completed"},
            {"id": "b", "createdAt": "2026-02-01T00:00:00Z", "status": "completed"}
        ]);
        let seen = assess(&client(pairs), &[key("cl_1", "a", "SECP256K1")]);
        let s = seen.curve("SECP256K1").unwrap();
        assert_eq!(s.newest_completed.as_ref().unwrap().id, "b");
        assert_eq!(s.stored, Some(false), "only the older pair is stored");
        assert!(
            seen.orphans.is_empty(),
            "an older completed pair is no orphan"
        );
    }

    #[test]
    fn only_orphans_older_than_the_newest_completed_pair_are_marked_safe_to_delete() {
        let pairs = serde_json::json!([
            {"id": "old", "createdAt": "2026-01-01T00:00:00Z", "status": "incomplete"},
            {"id": "done", "createdAt": "2026-02-01T00:00:00Z", "status": "completed"},
            {"id": "new", "createdAt": "2026-03-01T00:00:00Z", "status": "incomplete"},
            {"id": "untimed", "status": "incomplete"}
        ]);
        let stored = [
            key("cl_1", "old", "SECP256K1"),
            key("cl_1", "done", "SECP256K1"),
            key("cl_1", "new", "SECP256K1"),
            key("cl_1", "untimed", "SECP256K1"),
            key("cl_1", "unlisted", "SECP256K1"),
            key("cl_1", "done", "ED25519"),
            key("cl_2", "x", "SECP256K1"),
            BackupKey::custodian_backup("cl_1", "PASSWORD").unwrap(),
        ];
        let seen = assess(&client(pairs), &stored);
        let safe: BTreeMap<&str, bool> = seen
            .orphans
            .iter()
            .map(|o| (o.key.as_str(), o.older_than_newest_completed))
            .collect();
        let k = |pair, curve| key("cl_1", pair, curve).to_path();
        assert_eq!(
            safe,
            BTreeMap::from([
                (k("old", "SECP256K1").as_str(), true),
                (k("new", "SECP256K1").as_str(), false),
                (k("untimed", "SECP256K1").as_str(), false),
                (k("unlisted", "SECP256K1").as_str(), false),
                // A pair id of the other curve's wallet is not that wallet's completed pair.
                (k("done", "ED25519").as_str(), false),
            ])
        );
        let s = seen.curve("SECP256K1").unwrap();
        let incomplete: Vec<&str> = s.incomplete.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(incomplete, ["new", "old", "untimed"]);
        assert_eq!(s.stored, Some(true));
    }
}
