//! `FsStore`: the conformance kit (directly and through `Arc<dyn BackupStore>`), its file
//! layout and permissions, and what it does with stray temporary files.
#![allow(clippy::unwrap_used)] // the `tree` helper is test code outside a #[test] fn

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use storage::conformance::check_store;
use storage::fs::{FsStore, TEMP_PREFIX};
use storage::{BackupKey, BackupStore, BackupStoreExt, PutOptions};

mod fs_store {
    storage::store_conformance_tests!({
        let dir = tempfile::tempdir().unwrap();
        let store = storage::fs::FsStore::new(dir.path()).unwrap();
        (dir, store)
    });
}

mod fs_store_through_arc_dyn {
    storage::store_conformance_tests!({
        let dir = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(storage::fs::FsStore::new(dir.path()).unwrap());
        (dir, store)
    });
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_leaves_nothing_behind_and_keeps_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let theirs = BackupKey::custodian_backup("cl_real", "GDRIVE").unwrap();
    store
        .put_new(&theirs, Bytes::from_static(b"keep"))
        .await
        .unwrap();
    let before = tree(dir.path());
    check_store(&store).await.unwrap();
    let shared: Arc<dyn BackupStore> = Arc::new(store.clone());
    check_store(&shared).await.unwrap();
    assert_eq!(tree(dir.path()), before);
    assert_eq!(store.get(&theirs).await.unwrap(), "keep");
}

#[tokio::test]
async fn layout_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new").join("root");
    let store = FsStore::new(&root).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1").unwrap();
    store
        .put_new(&key, Bytes::from_static(b"ct"))
        .await
        .unwrap();
    let file = root.join("cl_1/client-backup/SECP256K1/bsp_1/~");
    assert_eq!(store.path_of(&key), file);
    assert_eq!(std::fs::read(&file).unwrap(), b"ct");
    assert_eq!(mode(&file), 0o600);
    for d in [
        "cl_1",
        "cl_1/client-backup",
        "cl_1/client-backup/SECP256K1",
        "cl_1/client-backup/SECP256K1/bsp_1",
    ] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
    store
        .put_overwrite(&key, Bytes::from_static(b"ct2"))
        .await
        .unwrap();
    assert_eq!(mode(&file), 0o600);
    // Deleting the last key prunes the empty directories, not the root.
    store.delete(&key).await.unwrap();
    assert!(tree(&root).is_empty(), "{:?}", tree(&root));
    assert!(root.is_dir());
}

#[tokio::test]
async fn stray_temp_files_are_ignored_then_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1").unwrap();
    store
        .put_new(&key, Bytes::from_static(b"ct"))
        .await
        .unwrap();
    let key_dir = store.path_of(&key).parent().unwrap().to_owned();
    // What a writer killed before its rename leaves behind, and foreign files.
    std::fs::write(key_dir.join(format!("{TEMP_PREFIX}1-00")), b"torn").unwrap();
    std::fs::write(dir.path().join("cl_1/client-backup/notes.txt"), b"x").unwrap();
    std::fs::write(key_dir.join("lower"), b"x").unwrap(); // a valid key, written by hand
    std::fs::create_dir(dir.path().join("cl_1/client-backup/secp256k1")).unwrap();
    let listed = store.list("cl_1").await.unwrap();
    let lower = BackupKey::builder(storage::ShareKind::ClientBackup, "cl_1")
        .share_pair_id("bsp_1")
        .curve("SECP256K1")
        .backup_method("lower")
        .build()
        .unwrap();
    assert_eq!(listed, [lower, key.clone()]); // in path order: `~` sorts last
    assert_eq!(store.get(&key).await.unwrap(), "ct");
    // Fresh temp files survive an age-limited sweep, and go with a zero age.
    assert_eq!(
        store
            .clean_temp_files(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.clean_temp_files(Duration::ZERO).await.unwrap(), 1);
    assert!(!key_dir.join(format!("{TEMP_PREFIX}1-00")).exists());
    assert_eq!(store.get(&key).await.unwrap(), "ct");
}

#[tokio::test]
async fn create_only_never_replaces_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    store
        .put(&key, Bytes::from_static(b"one"), PutOptions::create())
        .await
        .unwrap();
    let err = store
        .put(&key, Bytes::from_static(b"two"), PutOptions::create())
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(store.get(&key).await.unwrap(), "one");
    let names = tree(dir.path());
    assert!(names.iter().all(|n| !n.contains(TEMP_PREFIX)), "{names:?}");
}

#[test]
fn a_file_as_root_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    assert!(FsStore::new(file.path()).is_err());
}

#[tokio::test]
async fn list_clients_names_clients_with_objects_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    assert!(store.list_clients().await.unwrap().is_empty());
    let a = BackupKey::client_backup("cl_b", "bsp_1", "SECP256K1").unwrap();
    let b = BackupKey::custodian_backup("cl_a", "GDRIVE").unwrap();
    store.put_new(&a, Bytes::from_static(b"x")).await.unwrap();
    store.put_new(&b, Bytes::from_static(b"y")).await.unwrap();
    std::fs::create_dir(dir.path().join(".hidden")).unwrap();
    assert_eq!(store.list_clients().await.unwrap(), ["cl_a", "cl_b"]);
    store.delete(&a).await.unwrap();
    assert_eq!(store.list_clients().await.unwrap(), ["cl_a"]);
}

/// Directories left without a key (a put that crashed after creating them, leaving only its
/// temporary file; a stray file that is no key) name no client, listed or streamed; a client
/// whose first branches are empty and whose one key is further on is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_directories_but_no_key_is_not_listed() {
    use futures_util::TryStreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let crashed = BackupKey::client_backup("cl_crashed", "bsp_1", "SECP256K1").unwrap();
    let pair_dir = store.path_of(&crashed).parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&pair_dir).unwrap();
    std::fs::write(pair_dir.join(format!("{TEMP_PREFIX}crashed")), b"x").unwrap();
    std::fs::write(pair_dir.join("not-a-method!"), b"x").unwrap();
    // Empty branches first (in name order and, on most file systems, directory order too),
    // then the one key.
    let late = BackupKey::client_backup("cl_late", "bsp_9", "SECP256K1").unwrap();
    let late_pair = store.path_of(&late).parent().unwrap().to_path_buf();
    let curves = late_pair.parent().unwrap().parent().unwrap().to_path_buf();
    for empty in ["AAAA/bsp_0", "BBBB"] {
        std::fs::create_dir_all(curves.join(empty)).unwrap();
    }
    store
        .put_new(&late, Bytes::from_static(b"x"))
        .await
        .unwrap();

    assert_eq!(store.list_clients().await.unwrap(), ["cl_late"]);
    let streamed: Vec<String> = store.stream_clients().try_collect().await.unwrap();
    assert_eq!(streamed, ["cl_late"]);
}

/// Another process's writer, played by the test: it holds the key directory's `flock`,
/// replaces the file meanwhile, and only then lets go. A compare-and-swap put from the
/// version read before must wait for the lock, then find the file changed and refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_waits_for_the_key_lock_and_compares_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path()).unwrap());
    let key = BackupKey::custodian_backup("cl_lock", "GDRIVE").unwrap();
    store
        .put_new(&key, Bytes::from_static(b"one"))
        .await
        .unwrap();
    let (_, version) = store.get_versioned(&key).await.unwrap();
    let path = store.path_of(&key);
    let key_dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    key_dir.lock().unwrap();

    let update = {
        let (store, key) = (Arc::clone(&store), key.clone());
        tokio::spawn(async move {
            store
                .put(
                    &key,
                    Bytes::from_static(b"late"),
                    PutOptions::update(version),
                )
                .await
        })
    };
    let overwrite = {
        let (store, key) = (Arc::clone(&store), key.clone());
        tokio::spawn(async move { store.put_overwrite(&key, Bytes::from_static(b"last")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !update.is_finished() && !overwrite.is_finished(),
        "a compare-and-swap put or an overwrite went ahead while the key was locked"
    );
    // The other writer's change, made while it holds the lock.
    let temp = path.with_file_name(format!("{TEMP_PREFIX}test"));
    std::fs::write(&temp, b"two").unwrap();
    std::fs::rename(&temp, &path).unwrap();
    key_dir.unlock().unwrap();

    let e = update.await.unwrap().unwrap_err();
    assert!(e.is_conflict(), "{e}");
    overwrite.await.unwrap().unwrap();
    assert_eq!(store.get(&key).await.unwrap(), "last");
}

/// `stream_clients` walks the directory as it is read: clients with objects only, each once
/// (in the directory's order), and an empty store streams nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_clients_names_clients_with_objects_once() {
    use futures_util::TryStreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let none: Vec<String> = store.stream_clients().try_collect().await.unwrap();
    assert!(none.is_empty());
    for i in 0..600 {
        let client = format!("cl_{i:04}");
        for method in ["GDRIVE", "PASSWORD"] {
            let key = BackupKey::custodian_backup(&client, method).unwrap();
            store.put_new(&key, Bytes::from_static(b"x")).await.unwrap();
        }
    }
    // Emptied (a client whose objects were deleted), hidden and foreign directories.
    let gone = BackupKey::client_backup("cl_gone", "bsp_1", "SECP256K1").unwrap();
    store
        .put_new(&gone, Bytes::from_static(b"x"))
        .await
        .unwrap();
    store.delete(&gone).await.unwrap();
    std::fs::create_dir(dir.path().join(".hidden")).unwrap();
    std::fs::write(dir.path().join("stray-file"), b"not a client").unwrap();
    let mut streamed: Vec<String> = store.stream_clients().try_collect().await.unwrap();
    streamed.sort();
    assert_eq!(streamed, store.list_clients().await.unwrap());
    assert_eq!(streamed.len(), 600);
}
