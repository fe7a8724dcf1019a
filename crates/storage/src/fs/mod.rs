//! A store in a directory: one file per key, atomic and crash-safe.
//!
//! # Layout
//! The object of a key lives at `{root}/{path form}`, for example
//! `{root}/cl_123/client-backup/SECP256K1/bsp_456/~` (see
//! [`BackupKey`](crate::BackupKey#path-form)). Directories are created `0700` and files `0600`
//! (the process umask can only narrow that). Nothing else is stored: no index, no lock file.
//!
//! # How a put works
//! 1. The body is written to a new temporary file `.tmp-{pid}-{random}` in the key's
//!    directory (created exclusively, mode `0600`), then `fsync`ed.
//! 2. Overwrite: the temporary file is `rename`d onto the key's file, which atomically
//!    replaces it. Create only: the temporary file is hard-linked (`link`) to the key's name,
//!    which atomically fails with `EEXIST` if any file is there — so of two processes racing
//!    to create one key, exactly one wins — and then the temporary name is removed.
//! 3. The directory is `fsync`ed, so the new name survives a machine crash.
//!
//! # Compare and swap
//! A key's version ([`BackupStore::get_versioned`]) is the SHA-256 of its body, so an object
//! replaced by the very same bytes counts as unchanged (harmless for ciphertexts, which
//! never repeat). A [`PutMode::Update`] writes its temporary file first, then takes an
//! exclusive `flock` on the key's directory, hashes the file under the key's name, and
//! renames the temporary file over it only if the hash is the version given; otherwise it
//! fails with [`StorageError::Conflict`] and removes the temporary file. Overwrites and
//! deletes take the same lock, so nothing replaces or removes the file between the
//! comparison and the rename; a create-only put needs no lock (it cannot succeed while the
//! file exists). The lock holds between processes and threads alike, needs no file of its
//! own, and dies with its holder. After taking it, a writer checks that the directory is
//! still the one under that name (a delete may prune it and a put create it again). All keys
//! of one directory (the backup methods of one share pair, or a client's custodian shares)
//! share the lock; it is held for a read, a hash and a rename.
//!
//! A crash at any point leaves the old complete file or the new complete file under the
//! key's name, never a torn or empty one; at worst a stray temporary file remains. Key
//! parts never start with `.`, so temporary files can never be mistaken for objects: `get`
//! and `list` ignore them, each put removes stale ones (older than [`STALE_TEMP_AGE`]) from
//! its directory, and [`FsStore::clean_temp_files`] sweeps the whole tree (call it at
//! start-up).
//!
//! # Requirements
//! A local Unix file system with hard links and atomic `rename` (ext4, XFS, btrfs, APFS,
//! ZFS). Not for NFS without care, nor for file systems without hard links (FAT, some FUSE
//! mounts): create-only puts then fail with a [`StorageError::Backend`]. On a
//! case-insensitive file system, client ids that differ only in case share files. The root
//! must be private to the service's user: paths below it are trusted.
//!
//! # Batches
//! [`BackupStore::read_clients`] reads a batch of up to 16 clients on one pool thread, and
//! [`BackupStore::put_many`] runs the puts of a batch side by side, so that store-wide work
//! hands off to the blocking pool once a batch for its reads rather than once an object.
//!
//! File operations run on Tokio's blocking pool, so the store needs a Tokio runtime. Under
//! steady load that pool keeps adding threads up to its default bound of 512, each with its
//! stack and allocator arena resident; a long store-wide run stays flat in memory with a lower
//! bound (`tokio::runtime::Builder::max_blocking_threads`; the `portal-backup` CLI uses 64).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{BackupStore, Capabilities, ObjectVersion, PutMode, PutOptions};

mod batch;

/// The name prefix of temporary files. Key parts never start with `.`.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Temporary files older than this are removed by the next put into their directory.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(15 * 60);

const NAME: &str = "fs";

/// A [`BackupStore`] in a directory; see the [module docs](self).
///
/// ```
/// use storage::{BackupKey, BackupStore, BackupStoreExt, fs::FsStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = FsStore::new(dir.path().join("backups"))?;
/// let key = BackupKey::client_backup("cl_1", "bsp_1", "ED25519")?;
/// store.put_new(&key, "ciphertext".into()).await?;
/// assert_eq!(store.get(&key).await?, "ciphertext");
/// assert!(store.path_of(&key).ends_with("cl_1/client-backup/ED25519/bsp_1/~"));
/// # Ok::<_, storage::StorageError>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store under `root`, which is created (mode `0700`, with missing parents) if it does
    /// not exist.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when `root` cannot be created or is not a directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        match DirBuilder::new().recursive(true).mode(0o700).create(&root) {
            Ok(()) => {}
            Err(e) => return Err(io_error(e, "cannot create the root directory")),
        }
        let meta = fs::metadata(&root).map_err(|e| io_error(e, "cannot read the root"))?;
        if !meta.is_dir() {
            return Err(io_error(
                io::Error::other("not a directory"),
                "the root is not a directory",
            ));
        }
        Ok(Self { root })
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`'s object.
    #[must_use]
    pub fn path_of(&self, key: &BackupKey) -> PathBuf {
        key_path(&self.root, key)
    }

    /// Removes every temporary file under the root last modified more than `older_than`
    /// ago, and returns how many it removed. Temporary files are what a process killed in
    /// the middle of a put leaves; they are never read. `Duration::ZERO` removes them all —
    /// only do that when no other process is writing.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the tree cannot be read.
    pub async fn clean_temp_files(&self, older_than: Duration) -> Result<usize, StorageError> {
        let root = self.root.clone();
        blocking(move || {
            let mut removed = 0usize;
            sweep(&root, 0, older_than, &mut removed)?;
            Ok(removed)
        })
        .await
    }
}

/// Removes stale temporary files under `dir` (at most the depth of a key's directory).
fn sweep(
    dir: &Path,
    depth: usize,
    older_than: Duration,
    removed: &mut usize,
) -> Result<(), StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e, "cannot read a directory")),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(e, "cannot read a directory"))?;
        let file_type = entry
            .file_type()
            .map_err(|e| io_error(e, "cannot read a directory entry"))?;
        if file_type.is_dir() && depth < 4 {
            sweep(&entry.path(), depth.saturating_add(1), older_than, removed)?;
        } else if file_type.is_file() && is_temp(&entry.file_name()) && is_stale(&entry, older_than)
        {
            match fs::remove_file(entry.path()) {
                Ok(()) => *removed = removed.saturating_add(1),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e, "cannot remove a temporary file")),
            }
        }
    }
    Ok(())
}

fn is_temp(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX))
}

fn is_stale(entry: &fs::DirEntry, older_than: Duration) -> bool {
    if older_than.is_zero() {
        return true;
    }
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > older_than)
}

/// The file of `key` under `root`.
fn key_path(root: &Path, key: &BackupKey) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(key.segments());
    path
}

fn io_error(e: io::Error, context: &'static str) -> StorageError {
    StorageError::Backend {
        backend: NAME,
        source: Box::new(FsError { context, source: e }),
    }
}

/// An I/O error with what the store was doing.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
struct FsError {
    context: &'static str,
    #[source]
    source: io::Error,
}

async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Backend {
            backend: NAME,
            source: Box::new(e),
        })?
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the missing directories of `dir` below `root` (mode `0700`), `fsync`ing the
/// parent of each one created.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    let Ok(relative) = dir.strip_prefix(root) else {
        return Err(io::Error::other("key directory outside the root"));
    };
    let mut path = root.to_path_buf();
    for part in relative {
        let parent = path.clone();
        path.push(part);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn temp_name() -> Result<String, StorageError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| StorageError::Backend {
        backend: NAME,
        source: e.to_string().into(),
    })?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TEMP_PREFIX}{}-{hex}", std::process::id()))
}

/// Writes `body` to a new temporary file in `dir` and `fsync`s it.
fn write_temp(dir: &Path, body: &[u8]) -> Result<PathBuf, io::Error> {
    let name = temp_name().map_err(io::Error::other)?;
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let written = file.write_all(body).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

fn put_blocking(
    root: &Path,
    target: &Path,
    key: &BackupKey,
    body: &[u8],
    mode: PutMode,
) -> Result<(), StorageError> {
    let Some(dir) = target.parent() else {
        return Err(io_error(io::Error::other("no parent"), "bad key path"));
    };
    // Nothing stored is never the version given: refuse before creating directories.
    if matches!(mode, PutMode::Update(_)) && !target.exists() {
        return Err(StorageError::Conflict { key: key.clone() });
    }
    // A concurrent delete may prune the (empty) directories between creating them and
    // creating the temporary file: try again a few times.
    let mut attempts = 0u8;
    let temp = loop {
        match write_temp(dir, body) {
            Ok(temp) => break temp,
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                attempts = attempts.saturating_add(1);
                match create_dirs(root, dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(e, "cannot create the key's directory")),
                }
            }
            Err(e) => return Err(io_error(e, "cannot write a temporary file")),
        }
    };
    let published = match &mode {
        PutMode::Create => match fs::hard_link(&temp, target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists { key: key.clone() })
            }
            Err(e) => Err(io_error(e, "cannot link the new file into place")),
        },
        PutMode::Overwrite => KeyLock::acquire_for_write(target).and_then(|_lock| {
            fs::rename(&temp, target)
                .map_err(|e| io_error(e, "cannot rename the new file into place"))
        }),
        PutMode::Update(expected) => {
            KeyLock::acquire_for_write(target).and_then(|_lock| match read_version(target)? {
                Some(current) if current == *expected => fs::rename(&temp, target)
                    .map_err(|e| io_error(e, "cannot rename the new file into place")),
                _ => Err(StorageError::Conflict { key: key.clone() }),
            })
        }
    };
    if mode == PutMode::Create || published.is_err() {
        // After a link, or a failed rename, the temporary name must go. Not fsynced: if it
        // comes back after a crash, it is a stray temporary file and gets swept.
        let _ = fs::remove_file(&temp);
    }
    published?;
    sync_dir(dir).map_err(|e| io_error(e, "cannot fsync the key's directory"))?;
    remove_stale_temps(dir);
    Ok(())
}

/// An exclusive `flock` on a key's directory, released when dropped (or when the process
/// dies). See the module docs.
struct KeyLock {
    _dir: File,
}

impl KeyLock {
    /// Takes the lock of the directory of `target`, waiting while another writer holds it.
    /// `None` when the directory does not exist (then nothing is stored under the key).
    fn acquire(target: &Path) -> Result<Option<Self>, StorageError> {
        let Some(path) = target.parent() else {
            return Err(io_error(io::Error::other("no parent"), "bad key path"));
        };
        // A delete may prune the directory between opening and locking it; a put then
        // creates it again: lock what is there now.
        for _ in 0..100 {
            let dir = match File::open(path) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error(e, "cannot open the key's directory")),
            };
            dir.lock()
                .map_err(|e| io_error(e, "cannot lock the key's directory"))?;
            let locked = dir
                .metadata()
                .map_err(|e| io_error(e, "cannot read the key's directory"))?;
            match fs::metadata(path) {
                Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {
                    return Ok(Some(Self { _dir: dir }));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e, "cannot read the key's directory")),
            }
        }
        Err(io_error(
            io::Error::other("the directory kept being replaced"),
            "cannot lock the key's directory",
        ))
    }

    /// As [`acquire`](Self::acquire) for a writer whose temporary file is in the directory
    /// (so it exists, and no delete can prune it).
    fn acquire_for_write(target: &Path) -> Result<Self, StorageError> {
        Self::acquire(target)?.ok_or_else(|| {
            io_error(
                io::Error::other("the directory is gone"),
                "cannot lock the key's directory",
            )
        })
    }
}

/// The version of a body: its SHA-256, in hex.
fn version_of(body: &[u8]) -> ObjectVersion {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    ObjectVersion::new(Some(hex), None)
}

/// The version of what is stored at `target`, `None` when nothing is.
fn read_version(target: &Path) -> Result<Option<ObjectVersion>, StorageError> {
    match read_file(target) {
        Ok(body) => Ok(Some(version_of(&body))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e, "cannot read the key's file")),
    }
}

/// Best effort: removes temporary files older than [`STALE_TEMP_AGE`] from `dir`.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if is_temp(&entry.file_name()) && is_stale(&entry, STALE_TEMP_AGE) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The whole regular file at `target`.
fn read_file(target: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(target)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("the key's path is not a regular file"));
    }
    let mut body = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut body)?;
    Ok(body)
}

fn get_blocking(target: &Path, key: &BackupKey) -> Result<Bytes, StorageError> {
    match read_file(target) {
        Ok(body) => Ok(Bytes::from(body)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(StorageError::NotFound { key: key.clone() })
        }
        Err(e) => Err(io_error(e, "cannot read the key's file")),
    }
}

fn delete_blocking(root: &Path, target: &Path) -> Result<(), StorageError> {
    let Some(dir) = target.parent() else {
        return Ok(());
    };
    {
        // Under the key's lock: a compare-and-swap put cannot bring the file back.
        let Some(_lock) = KeyLock::acquire(target)? else {
            return Ok(());
        };
        match fs::remove_file(target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(e, "cannot remove the key's file")),
        }
    }
    sync_dir(dir).map_err(|e| io_error(e, "cannot fsync the key's directory"))?;
    // Prune the directories left empty, up to (not including) the root. `remove_dir` fails
    // on a non-empty directory, which ends the walk.
    let mut dir = dir;
    while dir != root && dir.starts_with(root) {
        if fs::remove_dir(dir).is_err() {
            break;
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => break,
        }
    }
    Ok(())
}

/// The names of the entries of `dir` that are directories (or, at the last level, files) and
/// do not start with `.`; empty when `dir` is gone.
fn children(dir: &Path, files: bool) -> Result<Vec<String>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(e, "cannot list a directory")),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(e, "cannot list a directory")),
        };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let wanted = if files {
            file_type.is_file()
        } else {
            file_type.is_dir()
        };
        if let Some(name) = entry.file_name().to_str()
            && wanted
            && !name.starts_with('.')
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Client directories that hold at least one key (a client whose objects were all deleted
/// may leave empty directories behind).
fn list_clients_blocking(root: &Path) -> Result<Vec<String>, StorageError> {
    let mut clients = Vec::new();
    for name in children(root, false)? {
        if BackupKey::check_client_id(&name).is_ok() && !list_blocking(root, &name)?.is_empty() {
            clients.push(name);
        }
    }
    clients.sort_unstable();
    Ok(clients)
}

/// How many client ids the directory walk of [`FsStore::stream_clients`] runs ahead of the
/// reader.
const STREAM_AHEAD: usize = 256;

/// [`list_clients_blocking`] as the directory is read, unsorted, into `tx` (until the reader
/// goes away). Only the names in flight are held, however many clients there are.
fn stream_clients_blocking(
    root: &Path,
    tx: &tokio::sync::mpsc::Sender<Result<String, StorageError>>,
) {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            let _ = tx.blocking_send(Err(io_error(e, "cannot list a directory")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(io_error(e, "cannot list a directory")));
                return;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.')
            || !entry.file_type().is_ok_and(|t| t.is_dir())
            || BackupKey::check_client_id(&name).is_err()
        {
            continue;
        }
        let item = match list_blocking(root, &name) {
            Ok(keys) if keys.is_empty() => continue,
            Ok(_) => Ok(name),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

fn list_blocking(root: &Path, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
    let mut keys = Vec::new();
    let client_dir = root.join(client_id);
    for kind in children(&client_dir, false)? {
        let kind_dir = client_dir.join(&kind);
        for curve in children(&kind_dir, false)? {
            let curve_dir = kind_dir.join(&curve);
            for pair in children(&curve_dir, false)? {
                let pair_dir = curve_dir.join(&pair);
                for method in children(&pair_dir, true)? {
                    // Anything that is not a key's canonical path is not ours: skip it.
                    let path = format!("{client_id}/{kind}/{curve}/{pair}/{method}");
                    if let Ok(key) = BackupKey::from_path(&path) {
                        keys.push(key);
                    }
                }
            }
        }
    }
    keys.sort_by_cached_key(BackupKey::to_path);
    Ok(keys)
}

#[async_trait::async_trait]
impl BackupStore for FsStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        // Exhaustive inside this crate: a new mode must be handled here before it compiles.
        let mode = options.mode;
        let (root, target, key) = (self.root.clone(), self.path_of(key), key.clone());
        blocking(move || put_blocking(&root, &target, &key, &body, mode)).await
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        let (target, key) = (self.path_of(key), key.clone());
        blocking(move || get_blocking(&target, &key)).await
    }

    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        let (target, key) = (self.path_of(key), key.clone());
        blocking(move || {
            let body = get_blocking(&target, &key)?;
            let version = version_of(&body);
            Ok((body, version))
        })
        .await
    }

    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        let (root, target) = (self.root.clone(), self.path_of(key));
        blocking(move || delete_blocking(&root, &target)).await
    }

    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        BackupKey::check_client_id(client_id)?;
        let (root, client_id) = (self.root.clone(), client_id.to_owned());
        blocking(move || list_blocking(&root, &client_id)).await
    }

    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        let root = self.root.clone();
        blocking(move || list_clients_blocking(&root)).await
    }

    /// The clients as the root directory is read (in its order, not sorted): the first
    /// arrives before the last is found, and only the names in flight are held.
    fn stream_clients(&self) -> crate::ClientStream<'_> {
        let root = self.root.clone();
        // The walk starts when the stream is first read (on the reader's runtime).
        futures_util::stream::once(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(STREAM_AHEAD);
            tokio::task::spawn_blocking(move || stream_clients_blocking(&root, &tx));
            futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
        })
        .flatten()
        .boxed()
    }

    fn batch_size(&self) -> usize {
        batch::BATCH_SIZE
    }

    async fn read_clients(&self, client_ids: &[String]) -> Vec<crate::batch::ClientObjects> {
        self.read_batch(client_ids).await
    }

    async fn put_many(&self, puts: Vec<crate::batch::Put>) -> Vec<Result<(), StorageError>> {
        self.put_batch(puts).await
    }
}
