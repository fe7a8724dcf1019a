//! Property tests of `BackupKey`: validation never panics, the path form round-trips, is
//! injective, and never leaves the store's root.
#![allow(clippy::unwrap_used)] // the `check_path` helper runs outside a #[test] fn

use std::path::{Component, Path};

use proptest::prelude::*;
use storage::{BackupKey, MAX_PATH_LEN, ShareKind};

/// A valid part: 1 to 128 bytes of the charset, not starting with `.`.
fn part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}"
}

/// Anything, biased towards the dangerous: separators, dots, `~`, NUL, non-ASCII, long.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./\\\\~a-zA-Z0-9\\x00é_-]{0,8}",
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        "[a-z]{120,140}",
        part(),
    ]
}

fn kind() -> impl Strategy<Value = ShareKind> {
    prop::sample::select(ShareKind::ALL.to_vec())
}

fn build(
    kind: ShareKind,
    client: &str,
    pair: Option<&String>,
    curve: Option<&String>,
    method: Option<&String>,
) -> Result<BackupKey, storage::StorageError> {
    let mut b = BackupKey::builder(kind, client);
    if let Some(p) = pair {
        b = b.share_pair_id(p.as_str());
    }
    if let Some(c) = curve {
        b = b.curve(c.as_str());
    }
    if let Some(m) = method {
        b = b.backup_method(m.as_str());
    }
    b.build()
}

/// Every property of a key's path form.
fn check_path(key: &BackupKey) -> Result<(), TestCaseError> {
    let path = key.to_path();
    prop_assert!(path.len() <= MAX_PATH_LEN);
    prop_assert_eq!(path.split('/').count(), 5);
    for segment in path.split('/') {
        prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
        prop_assert!(!segment.contains(['\\', '\0']));
    }
    prop_assert_eq!(&BackupKey::from_path(&path).unwrap(), key);
    prop_assert!(path.starts_with(&BackupKey::client_prefix(key.client_id()).unwrap()));
    // Joined under a root, it stays below the root: only normal components.
    let root = Path::new("/srv/backups");
    let joined = root.join(&path);
    prop_assert!(joined.starts_with(root));
    prop_assert!(
        Path::new(&path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validation_never_panics_and_accepted_keys_are_safe(
        kind in kind(),
        client in nasty(),
        pair in proptest::option::of(nasty()),
        curve in proptest::option::of(nasty()),
        method in proptest::option::of(nasty()),
    ) {
        if let Ok(key) = build(kind, &client, pair.as_ref(), curve.as_ref(), method.as_ref()) {
            check_path(&key)?;
        }
    }

    #[test]
    fn valid_parts_always_make_a_key(
        client in part(), pair in part(), curve in part(), method in part(),
    ) {
        let keys = [
            BackupKey::client_backup(&client, &pair, &curve).unwrap(),
            BackupKey::custodian_backup(&client, &method).unwrap(),
            BackupKey::client_signing(&client, &pair, &curve).unwrap(),
            build(ShareKind::CustodianBackup, &client, Some(&pair), Some(&curve), Some(&method))
                .unwrap(),
        ];
        for key in &keys {
            check_path(key)?;
            prop_assert_eq!(key.client_id(), client.as_str());
        }
        let upper = curve.to_ascii_uppercase();
        prop_assert_eq!(keys[0].curve(), Some(upper.as_str()));
    }

    #[test]
    fn distinct_keys_have_distinct_paths(
        a in (kind(), part(), part(), part(), part()),
        b in (kind(), part(), part(), part(), part()),
    ) {
        let make = |(k, c, p, cu, m): &(ShareKind, String, String, String, String)| {
            let method = (*k != ShareKind::ClientSigning).then_some(m);
            build(*k, c, Some(p), Some(cu), method).unwrap()
        };
        let (ka, kb) = (make(&a), make(&b));
        prop_assert_eq!(ka == kb, ka.to_path() == kb.to_path());
    }

    #[test]
    fn from_path_never_panics_and_accepts_only_canonical_paths(s in nasty()) {
        if let Ok(key) = BackupKey::from_path(&s) {
            prop_assert_eq!(key.to_path(), s);
        }
    }

    #[test]
    fn from_path_of_near_paths(
        parts in proptest::collection::vec(nasty(), 0..8),
    ) {
        let s = parts.join("/");
        if let Ok(key) = BackupKey::from_path(&s) {
            prop_assert_eq!(key.to_path(), s);
            check_path(&key)?;
        }
    }
}
