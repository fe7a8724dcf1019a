//! `--store` URIs.
//!
//! | URI | store |
//! |---|---|
//! | `portal` | Portal-Managed Backups: the ciphertext goes to Portal (`clientCipherText`) |
//! | `file:<dir>`, `file:///<absolute dir>` | `storage::fs::FsStore` in `<dir>` (created `0700`) |
//! | a bare path (`./backups`, `/srv/backups`, `backups`) | the same as `file:<path>` |
//! | `memory`, `memory:` | `storage::memory::MemoryStore`: this process only (demos, tests) |
//!
//! A bare path must not be `portal` or `memory` and must not look like `scheme:…`; write
//! `file:` before such a path. The storage issue's other schemes (`postgres://`, `s3://`,
//! `gs://`, `az://`) are recognised and refused with a clear error until their backends exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_flow::CiphertextStore;
use storage::BackupKey;
use storage::fs::FsStore;
use storage::memory::MemoryStore;

use crate::failure::Failure;

/// A parsed `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreUri {
    Portal,
    File(PathBuf),
    Memory,
}

const PLANNED: [&str; 6] = ["postgres", "postgresql", "s3", "gs", "az", "azure"];

impl StoreUri {
    /// Parses a `--store` value.
    pub(crate) fn parse(uri: &str) -> Result<Self, Failure> {
        let uri = uri.trim();
        match uri {
            "portal" => return Ok(Self::Portal),
            "memory" | "memory:" => return Ok(Self::Memory),
            "" => return Err(Failure::new("--store is empty")),
            _ => {}
        }
        if let Some(path) = uri.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Failure::new(format!(
                    "store URI {uri:?}: file:// takes an absolute path (file:///srv/backups); write file:<dir> for a relative one"
                )));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(path) = uri.strip_prefix("file:") {
            if path.is_empty() {
                return Err(Failure::new("store URI file: names no directory"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = uri.split_once(':')
            && !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        {
            let scheme = scheme.to_ascii_lowercase();
            return Err(if PLANNED.contains(&scheme.as_str()) {
                Failure::new(format!(
                    "the {scheme} store is not available in this portal-backup yet"
                ))
                .hint("use portal, file:<dir> or memory")
            } else {
                Failure::new(format!("unknown store scheme {scheme:?} in {uri:?}")).hint(
                    "use portal, file:<dir> or memory (write file:<path> for a path with a colon)",
                )
            });
        }
        Ok(Self::File(PathBuf::from(uri)))
    }

    /// The store.
    pub(crate) fn open(&self) -> Result<CiphertextStore, Failure> {
        Ok(match self {
            Self::Portal => CiphertextStore::Portal,
            Self::File(dir) => CiphertextStore::Own(Arc::new(open_dir(dir)?)),
            Self::Memory => {
                tracing::warn!("the memory store keeps nothing after this process exits");
                CiphertextStore::Own(Arc::new(MemoryStore::new()))
            }
        })
    }
}

pub(crate) fn open_dir(dir: &Path) -> Result<FsStore, Failure> {
    FsStore::new(dir)
        .map_err(|e| Failure::caused_by(format!("cannot open the file store {}", dir.display()), e))
}

/// The client ids that have a directory in a file store (its layout is
/// `{root}/{client id}/…`, see `storage::fs`).
pub(crate) fn file_store_clients(dir: &Path) -> Result<Vec<String>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::caused_by(format!("cannot list the file store {}", dir.display()), e)
    })?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            Failure::caused_by(format!("cannot list the file store {}", dir.display()), e)
        })?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let Some(name) = entry.file_name().to_str()
            && is_dir
            && BackupKey::check_client_id(name).is_ok()
        {
            ids.push(name.to_owned());
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let file = |p: &str| Ok(StoreUri::File(PathBuf::from(p)));
        let parse = |s: &str| StoreUri::parse(s).map_err(|e| e.render());
        assert_eq!(parse("portal"), Ok(StoreUri::Portal));
        assert_eq!(parse("memory"), Ok(StoreUri::Memory));
        assert_eq!(parse("memory:"), Ok(StoreUri::Memory));
        assert_eq!(parse("file:backups"), file("backups"));
        assert_eq!(parse("file:///srv/b"), file("/srv/b"));
        assert_eq!(parse("/srv/b"), file("/srv/b"));
        assert_eq!(parse("./portal"), file("./portal"));
        assert_eq!(parse("backups"), file("backups"));
        assert_eq!(parse("file:a:b"), file("a:b"));
        assert!(parse("file://relative").is_err());
        assert!(parse("file:").is_err());
        assert!(
            parse("s3://bucket/x")
                .unwrap_err()
                .contains("not available")
        );
        assert!(
            parse("ftp://x")
                .unwrap_err()
                .contains("unknown store scheme")
        );
    }
}
