//! The journal: what each backup has done, in the state directory, so that a crash at any
//! point is resumed without asking Portal for a new backup (which would orphan the pairs it
//! already made).
//!
//! It holds ids and *sealed* shares only, never a plaintext share or a key.
//!
//! The layout, and which steps are synced and why that is enough: see [`Journal`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use portal_api::Curve;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How far a backup got. Steps only move forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub(crate) enum Step {
    /// `/v1/backup` is about to be called (or was, and its answer was lost).
    Requested,
    /// Portal's backup shares are sealed and recorded here.
    Sealed,
    /// The ciphertexts are durably in the store.
    Stored,
    /// The restore drill opened every stored ciphertext.
    Verified,
    /// Portal has the pairs as `STORED_CLIENT_BACKUP_SHARE`.
    Confirmed,
}

impl Step {
    /// The step's name as written in the journal and reports.
    #[must_use]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Sealed => "sealed",
            Self::Stored => "stored",
            Self::Verified => "verified",
            Self::Confirmed => "confirmed",
        }
    }
}

/// One sealed backup share as recorded in the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SealedShare {
    pub(crate) curve: Curve,
    pub(crate) backup_share_pair_id: String,
    /// The envelope's text form (`pbe1.…`): ciphertext, safe on disk.
    pub(crate) ciphertext: String,
}

/// The journal record of one backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BackupRecord {
    pub(crate) version: u32,
    pub(crate) client_id: String,
    pub(crate) backup_id: String,
    pub(crate) step: Step,
    /// How many times `/v1/backup` was called for this backup (more than one means an
    /// earlier answer was lost in a crash; its pairs stay unconfirmed at Portal).
    pub(crate) backup_requests: u32,
    pub(crate) shares: Vec<SealedShare>,
}

/// The journal directory: what each backup has done, so that a crash at any point is resumed
/// without asking Portal for a new backup.
///
/// # Layout
///
/// Per backup, in `<state dir>/journal/`:
///
/// * `backup-<id>.json`: the record (client, backup id, how many `/v1/backup` calls, the
///   sealed shares, and the step it was written at). Written only at
///   [`Step::Requested`] and [`Step::Sealed`], always atomically and durably: a temporary file
///   is written and fsynced, renamed over the record, and the directory fsynced. After a crash
///   or a power loss it holds the last record written, never a torn mix.
/// * `backup-<id>.stored`, then renamed to `.verified`, then to `.confirmed`: an empty marker
///   for each later step, created or renamed **without an fsync**. It never touches the record
///   file.
///
/// The step of a backup is the furthest of the record's and its marker's. Journals written by
/// earlier versions (the record rewritten at every step, no markers) load unchanged.
///
/// # Which steps are durable, and why that is enough
///
/// A step is synced before the action that depends on it only where losing it could break a
/// promise; where losing it only makes a resumed run redo an idempotent action, it is not.
/// Per backup that is 4 fsyncs (2 durable records × file + directory) instead of 10, and the
/// journal I/O runs on tokio's blocking pool, so that concurrent backups' fsyncs overlap (the
/// file system commits them together) instead of stalling the async workers.
///
/// * [`Step::Requested`] is durable **before `/v1/backup` is sent**: `/v1/backup` is never
///   called for a backup without the journal knowing (`backupRequests` counts every call,
///   including one whose answer was lost).
/// * [`Step::Sealed`] is durable **before anything is stored**: the sealed shares cannot be
///   fetched from Portal again, and once a ciphertext may be stored for a pair, losing the
///   record would make a resumed run ask for new pairs and leave a ciphertext stored for a pair
///   never completed.
/// * [`Step::Stored`], [`Step::Verified`] and [`Step::Confirmed`] are markers, not synced.
///   Each is created only after its action succeeded, so a marker that exists is true; a
///   marker lost in a power loss leaves the backup at an earlier step, and the resumed run
///   repeats actions that are idempotent: it puts the same ciphertext again (create-only
///   where the store can, accepted only when byte-for-byte the recorded one), reads it back
///   and opens it again, and sends the `STORED_CLIENT_BACKUP_SHARE` update for pairs Portal
///   may already hold as stored. What confirming depends on is not the journal's durability
///   but the *store's* (a put returns once the ciphertext is durable) and the restore drill,
///   which ran after that put returned (in this run, or in an earlier one whose `verified`
///   marker survived, since a marker exists only once its step succeeded): a pair is never
///   marked stored at Portal before its ciphertext is durable in the store and opened again,
///   whatever the journal lost.
///
/// A SIGKILL loses nothing the kernel was given (the page cache survives the process), so the
/// syncs matter only for an operating-system crash or a power loss; the crash soak (SIGKILL)
/// checks the step logic, the argument above the choice of syncs.
#[derive(Clone, Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating, mode 0700) the journal under `state_dir`.
    ///
    /// # Errors
    /// [`Error::Journal`] when the directory cannot be created.
    pub(crate) fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("journal");
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|source| Error::Journal {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The id of the backup of `generate`'s signing share pairs for `client_id`: the same
    /// generate response always names the same backup, so running it again resumes it.
    pub(crate) fn backup_id(client_id: &str, signing_pair_ids: &[String]) -> String {
        let mut ids: Vec<&str> = signing_pair_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        let mut hash = Sha256::new();
        hash.update(b"portal-backup backup id v1\0");
        hash.update(client_id.as_bytes());
        for id in ids {
            hash.update(b"\0");
            hash.update(id.as_bytes());
        }
        hex::encode(hash.finalize().get(..16).unwrap_or_default())
    }

    fn path(&self, backup_id: &str) -> PathBuf {
        self.dir.join(format!("backup-{backup_id}.json"))
    }

    /// The marker file of `step` (one of the steps after [`Step::Sealed`]).
    fn marker(&self, backup_id: &str, step: Step) -> PathBuf {
        self.dir
            .join(format!("backup-{backup_id}.{}", step.as_str()))
    }

    /// The record of `backup_id`, at the furthest step its record or marker says.
    pub(crate) async fn load(&self, backup_id: &str) -> Result<Option<BackupRecord>> {
        let journal = self.clone();
        let backup_id = backup_id.to_owned();
        blocking(&self.dir, move || journal.load_blocking(&backup_id)).await
    }

    fn load_blocking(&self, backup_id: &str) -> Result<Option<BackupRecord>> {
        let path = self.path(backup_id);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(journal_error(&path, source)),
        };
        let mut record: BackupRecord = serde_json::from_slice(&text).map_err(|e| {
            journal_error(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        if record.version != 1 || record.backup_id != backup_id {
            return Err(journal_error(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a v1 record of this backup",
                ),
            ));
        }
        if record.step >= Step::Sealed {
            for step in MARKED.iter().rev() {
                let marker = self.marker(backup_id, *step);
                if marker
                    .try_exists()
                    .map_err(|source| journal_error(&marker, source))?
                {
                    record.step = record.step.max(*step);
                    break;
                }
            }
        }
        Ok(Some(record))
    }

    /// Records that `record` reached `record.step`: durably for [`Step::Requested`] and
    /// [`Step::Sealed`] (see [`Journal`] for why), as an unsynced marker for
    /// the later steps. Returns once that is done.
    pub(crate) async fn record(&self, record: &BackupRecord) -> Result<()> {
        let journal = self.clone();
        if record.step <= Step::Sealed {
            let path = self.path(&record.backup_id);
            let json = serde_json::to_vec_pretty(record).map_err(|e| {
                journal_error(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?;
            blocking(&self.dir, move || journal.save_blocking(&path, &json)).await
        } else {
            let (backup_id, step) = (record.backup_id.clone(), record.step);
            blocking(&self.dir, move || journal.mark_blocking(&backup_id, step)).await
        }
    }

    /// Every backup the journal holds that has not reached [`Step::Confirmed`], with its
    /// sealed shares (backups still at [`Step::Requested`] have none).
    pub(crate) async fn unfinished(&self) -> Result<Vec<BackupRecord>> {
        let journal = self.clone();
        blocking(&self.dir, move || journal.unfinished_blocking()).await
    }

    fn unfinished_blocking(&self) -> Result<Vec<BackupRecord>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| journal_error(&self.dir, e))?;
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| journal_error(&self.dir, e))?;
            let name = entry.file_name();
            let Some(backup_id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("backup-"))
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if let Some(record) = self.load_blocking(backup_id)?
                && record.step < Step::Confirmed
                && !record.shares.is_empty()
            {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.backup_id.cmp(&b.backup_id));
        Ok(records)
    }

    /// Replaces the sealed shares of a recorded backup (after a key rotation rewrapped
    /// them), durably, keeping the step its record file holds: its markers stay valid.
    pub(crate) async fn replace_shares(&self, record: &BackupRecord) -> Result<()> {
        let journal = self.clone();
        let record = record.clone();
        blocking(&self.dir, move || {
            let path = journal.path(&record.backup_id);
            let on_disk: BackupRecord = std::fs::read(&path)
                .map_err(|e| journal_error(&path, e))
                .and_then(|text| {
                serde_json::from_slice(&text).map_err(|e| {
                    journal_error(
                        &path,
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    )
                })
            })?;
            let updated = BackupRecord {
                shares: record.shares,
                ..on_disk
            };
            let json = serde_json::to_vec_pretty(&updated).map_err(|e| {
                journal_error(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?;
            journal.save_blocking(&path, &json)
        })
        .await
    }

    /// Writes the record atomically and durably: after a crash the file holds this record or
    /// the previous one, never a torn mix, and once this returns, this one.
    fn save_blocking(&self, path: &Path, json: &[u8]) -> Result<()> {
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&self.dir)?;
            file.write_all(json)?;
            file.as_file().sync_all()?;
            file.persist(path).map_err(|e| e.error)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|source| journal_error(path, source))
    }

    /// Moves the backup's marker on to `step` (renaming the previous step's marker, or
    /// creating one), without an fsync.
    fn mark_blocking(&self, backup_id: &str, step: Step) -> Result<()> {
        let target = self.marker(backup_id, step);
        let previous = MARKED
            .iter()
            .position(|s| *s == step)
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| MARKED.get(i));
        if let Some(previous) = previous {
            match std::fs::rename(self.marker(backup_id, *previous), &target) {
                Ok(()) => return Ok(()),
                // Resumed from an older journal, or the earlier marker was lost: create it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(journal_error(&target, source)),
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&target)
            .map(drop)
            .map_err(|source| journal_error(&target, source))
    }
}

/// The steps recorded by a marker file rather than a durable record, in order.
const MARKED: [Step; 3] = [Step::Stored, Step::Verified, Step::Confirmed];

/// Runs blocking file work on tokio's blocking pool, so that an fsync never stalls the async
/// workers (and the fsyncs of concurrent backups are in flight together).
async fn blocking<T: Send + 'static>(
    dir: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(journal_error(dir, std::io::Error::other(e))),
    }
}

fn journal_error(path: &Path, source: std::io::Error) -> Error {
    Error::Journal {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_id_ignores_order_and_separates_clients() {
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let a = Journal::backup_id("cl_1", &ids(&["s1", "s2"]));
        assert_eq!(a, Journal::backup_id("cl_1", &ids(&["s2", "s1"])));
        assert_ne!(a, Journal::backup_id("cl_2", &ids(&["s1", "s2"])));
        assert_ne!(a, Journal::backup_id("cl_1s1", &ids(&["s2"])));
        assert_eq!(a.len(), 32);
    }

    #[tokio::test]
    async fn records_round_trip_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let record = BackupRecord {
            version: 1,
            client_id: "cl_1".into(),
            backup_id: "abc".into(),
            step: Step::Sealed,
            backup_requests: 1,
            shares: vec![SealedShare {
                curve: Curve::Secp256k1,
                backup_share_pair_id: "bsp_1".into(),
                ciphertext: "pbe1.AAAA".into(),
            }],
        };
        journal.record(&record).await.unwrap();
        let back = journal.load("abc").await.unwrap().unwrap();
        assert_eq!(back.step, Step::Sealed);
        assert_eq!(back.shares, record.shares);
        assert!(journal.load("other").await.unwrap().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("journal"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
            let file = std::fs::metadata(journal.path("abc"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(file & 0o077, 0, "tempfile creates 0600 files");
        }
    }

    fn record_at(step: Step) -> BackupRecord {
        BackupRecord {
            version: 1,
            client_id: "cl_1".into(),
            backup_id: "b1".into(),
            step,
            backup_requests: 1,
            shares: vec![SealedShare {
                curve: Curve::Ed25519,
                backup_share_pair_id: "bsp_1".into(),
                ciphertext: "pbe1.AAAA".into(),
            }],
        }
    }

    #[tokio::test]
    async fn later_steps_are_markers_that_never_touch_the_sealed_record() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.record(&record_at(Step::Requested)).await.unwrap();
        journal.record(&record_at(Step::Sealed)).await.unwrap();
        let sealed = std::fs::read(journal.path("b1")).unwrap();
        for step in [Step::Stored, Step::Verified, Step::Confirmed] {
            journal.record(&record_at(step)).await.unwrap();
            let back = journal.load("b1").await.unwrap().unwrap();
            assert_eq!(back.step, step);
            assert_eq!(back.shares, record_at(step).shares);
            assert_eq!(std::fs::read(journal.path("b1")).unwrap(), sealed);
        }
        // One marker at a time: each step renames the previous one.
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["backup-b1.confirmed", "backup-b1.json"]);

        // A power loss may drop the unsynced marker: the backup is back at `sealed`, with its
        // shares, and the resumed run repeats the idempotent steps.
        std::fs::remove_file(journal.marker("b1", Step::Confirmed)).unwrap();
        let back = journal.load("b1").await.unwrap().unwrap();
        assert_eq!(back.step, Step::Sealed);
        assert_eq!(back.shares, record_at(Step::Sealed).shares);
        // Recording `verified` with no `stored` marker left creates it.
        journal.record(&record_at(Step::Verified)).await.unwrap();
        let back = journal.load("b1").await.unwrap().unwrap();
        assert_eq!(back.step, Step::Verified);
    }

    #[tokio::test]
    async fn records_of_earlier_versions_load_at_their_step() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        // Earlier versions rewrote the whole record at every step.
        let old = serde_json::to_vec_pretty(&record_at(Step::Verified)).unwrap();
        std::fs::write(journal.path("b1"), old).unwrap();
        assert_eq!(
            journal.load("b1").await.unwrap().unwrap().step,
            Step::Verified
        );
        // A marker behind the record's own step does not move it back.
        journal.record(&record_at(Step::Stored)).await.unwrap();
        assert_eq!(
            journal.load("b1").await.unwrap().unwrap().step,
            Step::Verified
        );
        journal.record(&record_at(Step::Confirmed)).await.unwrap();
        assert_eq!(
            journal.load("b1").await.unwrap().unwrap().step,
            Step::Confirmed
        );
    }
}
