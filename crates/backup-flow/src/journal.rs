//! The journal: one small JSON file per backup in the state directory, rewritten atomically
//! (temporary file, fsync, rename, directory fsync) at every step.
//!
//! It holds ids and *sealed* shares only, never a plaintext share or a key. Because the
//! sealed shares are written the moment Portal returns them, a crash at any later point is
//! resumed from the journal without asking Portal for a new backup (which would orphan the
//! pairs it already made).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use portal_api::common::Curve;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How far a backup got. Steps only move forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Step {
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
    pub fn as_str(self) -> &'static str {
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

/// The journal directory.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating, mode 0700) the journal under `state_dir`.
    ///
    /// # Errors
    /// [`Error::Journal`] when the directory cannot be created.
    pub fn open(state_dir: &Path) -> Result<Self> {
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

    pub(crate) fn load(&self, backup_id: &str) -> Result<Option<BackupRecord>> {
        let path = self.path(backup_id);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(journal_error(&path, source)),
        };
        let record: BackupRecord = serde_json::from_slice(&text).map_err(|e| {
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
        Ok(Some(record))
    }

    /// Writes the record atomically: after a crash the file holds this record or the previous
    /// one, never a torn mix.
    pub(crate) fn save(&self, record: &BackupRecord) -> Result<()> {
        let path = self.path(&record.backup_id);
        let write = || -> std::io::Result<()> {
            let json = serde_json::to_vec_pretty(record)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let mut file = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&self.dir)?;
            file.write_all(&json)?;
            file.as_file().sync_all()?;
            file.persist(&path).map_err(|e| e.error)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|source| journal_error(&path, source))
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

    #[test]
    fn records_round_trip_and_files_are_private() {
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
        journal.save(&record).unwrap();
        let back = journal.load("abc").unwrap().unwrap();
        assert_eq!(back.step, Step::Sealed);
        assert_eq!(back.shares, record.shares);
        assert!(journal.load("other").unwrap().is_none());
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
}
