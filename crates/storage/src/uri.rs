//! Choosing a store at run time from a URI, as a command line or a config file names it.
//!
//! | URI | store | feature |
//! |---|---|---|
//! | `portal` | Portal-Managed Backups (needs a Portal client: [`portal::PortalStore`]) | `portal` |
//! | `file:<dir>`, `file:///<absolute dir>` | [`fs::FsStore`] in `<dir>` | `fs` |
//! | `memory`, `memory:` | [`MemoryStore`]: this process only | (always) |
//! | `postgres://…`, `postgresql://…` | [`postgres::PostgresStore`] | `postgres` |
//! | `s3://<bucket>/<prefix>` | [`object::ObjectStoreStore`] on Amazon S3 | `s3` |
//! | `gs://<bucket>/<prefix>` | [`object::ObjectStoreStore`] on Google Cloud Storage | `gcs` |
//! | `az://<container>/<prefix>`, `azure://…` | [`object::ObjectStoreStore`] on Azure Blob Storage | `azure` |
//!
//! Parsing never needs the feature: a URI whose backend was not compiled in parses, and
//! [`StoreUri::open`] answers with [`UriError::NotCompiled`] naming the feature to enable.
//! Passwords in a URI (`postgres://user:secret@host/db`, `?password=…`) never appear in
//! `Debug`, `Display` or an error.
//!
//! ```
//! use storage::uri::StoreUri;
//!
//! let uri = StoreUri::parse("postgres://backup:hunter2@db.internal/backups").unwrap();
//! assert_eq!(uri.feature(), Some("postgres"));
//! assert_eq!(uri.to_string(), "postgres://backup:***@db.internal/backups");
//! ```
//!
//! [`portal::PortalStore`]: https://docs.rs/storage/latest/storage/portal/struct.PortalStore.html
//! [`fs::FsStore`]: https://docs.rs/storage/latest/storage/fs/struct.FsStore.html
//! [`postgres::PostgresStore`]: https://docs.rs/storage/latest/storage/postgres/struct.PostgresStore.html
//! [`object::ObjectStoreStore`]: https://docs.rs/storage/latest/storage/object/struct.ObjectStoreStore.html
//! [`MemoryStore`]: crate::memory::MemoryStore

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::StorageError;
use crate::store::BackupStore;

/// A parsed store URI. See the [module docs](self) for the forms.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUri {
    /// `portal`: the client ciphertext is kept by Portal.
    Portal,
    /// `file:<dir>`: one file per key under a directory.
    File(PathBuf),
    /// `memory`: this process only.
    Memory,
    /// `postgres://…`: the whole connection URI, as libpq and sqlx read it.
    Postgres(SecretUri),
    /// `s3://`, `gs://` or `az://`: a bucket (or container) and an optional key prefix.
    Object {
        /// Which cloud.
        cloud: Cloud,
        /// The whole URI, as `object_store` parses it.
        uri: String,
    },
}

/// The object-store clouds a URI can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cloud {
    /// Amazon S3 and S3-compatible servers (`s3://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://`, `azure://`).
    Azure,
}

impl Cloud {
    /// The cargo feature of this crate that compiles the cloud in.
    #[must_use]
    pub fn feature(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Gcs => "gcs",
            Self::Azure => "azure",
        }
    }
}

/// A connection URI that may hold a password: `Debug` and `Display` show it with the
/// password replaced by `***`; [`SecretUri::expose`] gives the real one to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUri(String);

impl SecretUri {
    /// The URI with its password, for the database driver only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUri({:?})", redact(&self.0))
    }
}

/// Why a store URI cannot be parsed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The URI is empty.
    #[error("the store URI is empty")]
    Empty,
    /// The scheme is not one this crate knows.
    #[error(
        "unknown store scheme {scheme:?} (known: portal, file:, memory, postgres://, s3://, gs://, az://)"
    )]
    UnknownScheme {
        /// The scheme, lower-cased.
        scheme: String,
    },
    /// The URI has a known scheme but breaks its rules.
    #[error("invalid store URI {uri}: {reason}")]
    Invalid {
        /// The URI, password redacted.
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The backend the URI names was not compiled into this build.
    #[error("the {store} store is not compiled in: enable the `{feature}` feature")]
    NotCompiled {
        /// The store: `"postgres"`, `"s3"`, …
        store: &'static str,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },
    /// The URI names Portal's store, which needs a Portal client rather than a URI.
    #[error(
        "the portal store is opened with a Portal client (storage::portal::PortalStore), not from a URI"
    )]
    NeedsPortalClient,
    /// The backend refused to open (cannot connect, bad configuration).
    #[error("cannot open the {store} store")]
    Open {
        /// The store.
        store: &'static str,
        /// The backend's error.
        #[source]
        source: Box<StorageError>,
    },
}

impl StoreUri {
    /// Parses a store URI (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`UriError::Empty`], [`UriError::UnknownScheme`] or [`UriError::Invalid`]. A scheme
    /// whose backend is not compiled in still parses.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let uri = uri.trim();
        match uri {
            "" => return Err(UriError::Empty),
            "portal" | "portal:" => return Ok(Self::Portal),
            "memory" | "memory:" => return Ok(Self::Memory),
            _ => {}
        }
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err(UriError::UnknownScheme {
                scheme: String::new(),
            });
        };
        let invalid = |reason| UriError::Invalid {
            uri: redact(uri),
            reason,
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let path = match rest.strip_prefix("//") {
                    Some(path) if path.starts_with('/') => path,
                    Some(_) => {
                        return Err(invalid(
                            "file:// takes an absolute path (file:///srv/backups); write file:<dir> for a relative one",
                        ));
                    }
                    None => rest,
                };
                if path.is_empty() {
                    return Err(invalid("it names no directory"));
                }
                Ok(Self::File(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                if !rest.starts_with("//") {
                    return Err(invalid(
                        "write postgres://[user[:password]@]host[:port]/database",
                    ));
                }
                Ok(Self::Postgres(SecretUri(uri.to_owned())))
            }
            "s3" => object(Cloud::S3, uri, rest).map_err(invalid),
            "gs" => object(Cloud::Gcs, uri, rest).map_err(invalid),
            "az" | "azure" => object(Cloud::Azure, uri, rest).map_err(invalid),
            other => Err(UriError::UnknownScheme {
                scheme: other.to_owned(),
            }),
        }
    }

    /// The cargo feature of this crate that the store needs; `None` for `memory`.
    #[must_use]
    pub fn feature(&self) -> Option<&'static str> {
        match self {
            Self::Portal => Some("portal"),
            Self::File(_) => Some("fs"),
            Self::Memory => None,
            Self::Postgres(_) => Some("postgres"),
            Self::Object { cloud, .. } => Some(cloud.feature()),
        }
    }

    /// Opens the store. `portal` is not opened here: it needs a Portal client
    /// (`storage::portal::PortalStore::new`), so it answers [`UriError::NeedsPortalClient`].
    ///
    /// # Errors
    /// [`UriError::NotCompiled`] when the backend's feature is off; [`UriError::Open`] when
    /// the backend cannot open (a directory it cannot create, a database it cannot reach).
    pub async fn open(&self) -> Result<Arc<dyn BackupStore>, UriError> {
        match self {
            Self::Portal => Err(UriError::NeedsPortalClient),
            Self::Memory => Ok(Arc::new(crate::memory::MemoryStore::new())),
            Self::File(dir) => open_file(dir),
            Self::Postgres(uri) => open_postgres(uri).await,
            Self::Object { cloud, uri } => open_object(*cloud, uri).await,
        }
    }
}

fn object(cloud: Cloud, uri: &str, rest: &str) -> Result<StoreUri, &'static str> {
    let bucket = rest
        .strip_prefix("//")
        .ok_or("write <scheme>://<bucket>[/<prefix>]")?
        .split('/')
        .next()
        .unwrap_or_default();
    if bucket.is_empty() {
        return Err("it names no bucket");
    }
    Ok(StoreUri::Object {
        cloud,
        uri: uri.to_owned(),
    })
}

#[cfg(all(feature = "fs", unix))]
fn open_file(dir: &std::path::Path) -> Result<Arc<dyn BackupStore>, UriError> {
    let store = crate::fs::FsStore::new(dir).map_err(|source| UriError::Open {
        store: "fs",
        source: Box::new(source),
    })?;
    Ok(Arc::new(store))
}

#[cfg(not(all(feature = "fs", unix)))]
fn open_file(_dir: &std::path::Path) -> Result<Arc<dyn BackupStore>, UriError> {
    Err(UriError::NotCompiled {
        store: "fs",
        feature: "fs",
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(uri: &SecretUri) -> Result<Arc<dyn BackupStore>, UriError> {
    let store = crate::postgres::PostgresStore::connect(uri.expose())
        .await
        .map_err(|source| UriError::Open {
            store: "postgres",
            source: Box::new(source),
        })?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_uri: &SecretUri) -> Result<Arc<dyn BackupStore>, UriError> {
    Err(UriError::NotCompiled {
        store: "postgres",
        feature: "postgres",
    })
}

async fn open_object(cloud: Cloud, uri: &str) -> Result<Arc<dyn BackupStore>, UriError> {
    let compiled = match cloud {
        Cloud::S3 => cfg!(feature = "s3"),
        Cloud::Gcs => cfg!(feature = "gcs"),
        Cloud::Azure => cfg!(feature = "azure"),
    };
    if !compiled {
        return Err(UriError::NotCompiled {
            store: cloud.feature(),
            feature: cloud.feature(),
        });
    }
    open_compiled_object(cloud, uri)
}

#[cfg(feature = "object-store")]
fn open_compiled_object(cloud: Cloud, uri: &str) -> Result<Arc<dyn BackupStore>, UriError> {
    let store =
        crate::object::ObjectStoreStore::from_url(uri).map_err(|source| UriError::Open {
            store: cloud.feature(),
            source: Box::new(source),
        })?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "object-store"))]
fn open_compiled_object(cloud: Cloud, _uri: &str) -> Result<Arc<dyn BackupStore>, UriError> {
    Err(UriError::NotCompiled {
        store: cloud.feature(),
        feature: cloud.feature(),
    })
}

impl fmt::Display for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Portal => f.write_str("portal"),
            Self::File(dir) => write!(f, "file:{}", dir.display()),
            Self::Memory => f.write_str("memory"),
            Self::Postgres(uri) => fmt::Display::fmt(uri, f),
            Self::Object { uri, .. } => f.write_str(&redact(uri)),
        }
    }
}

impl fmt::Debug for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUri({self})")
    }
}

/// Query parameters whose values are secrets in libpq and object-store URIs.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "secret",
    "secret_access_key",
    "access_key",
    "sas_token",
    "sig",
    "token",
];

/// The URI with the password of its user info and the values of secret query parameters
/// replaced by `***`.
fn redact(uri: &str) -> String {
    let (before_query, query) = match uri.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (uri, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        // Not `scheme://…` (an invalid URI being reported): hide any user info wholesale.
        None => match (before_query.split_once(':'), before_query.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}:***@{host}"),
            _ => before_query.to_owned(),
        },
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let file = |p: &str| StoreUri::File(PathBuf::from(p));
        let parse = |s: &str| StoreUri::parse(s).unwrap();
        assert_eq!(parse("portal"), StoreUri::Portal);
        assert_eq!(parse(" memory "), StoreUri::Memory);
        assert_eq!(parse("memory:"), StoreUri::Memory);
        assert_eq!(parse("file:backups"), file("backups"));
        assert_eq!(parse("file:a:b"), file("a:b"));
        assert_eq!(parse("file:///srv/b"), file("/srv/b"));
        assert!(matches!(parse("postgresql://h/db"), StoreUri::Postgres(_)));
        for (uri, cloud) in [
            ("s3://bucket/prefix", Cloud::S3),
            ("S3://bucket", Cloud::S3),
            ("gs://bucket/a/b", Cloud::Gcs),
            ("az://container/p", Cloud::Azure),
            ("azure://container", Cloud::Azure),
        ] {
            assert_eq!(
                parse(uri),
                StoreUri::Object {
                    cloud,
                    uri: uri.to_owned()
                }
            );
        }
    }

    #[test]
    fn rejects_with_typed_errors() {
        let err = |s: &str| StoreUri::parse(s).unwrap_err();
        assert!(matches!(err(""), UriError::Empty));
        assert!(matches!(err("   "), UriError::Empty));
        assert!(matches!(err("ftp://x"), UriError::UnknownScheme { scheme } if scheme == "ftp"));
        assert!(matches!(err("backups"), UriError::UnknownScheme { .. }));
        for bad in [
            "file:",
            "file://relative",
            "s3://",
            "s3:bucket",
            "gs:///x",
            "postgres:db",
        ] {
            assert!(matches!(err(bad), UriError::Invalid { .. }), "{bad}");
        }
    }

    #[test]
    fn passwords_never_show() {
        for uri in [
            "postgres://u:hunter2@h:5432/db",
            "postgres://u:hunter2@h/db?sslmode=require&password=hunter2",
            "postgres://h/db?PASSWORD=hunter2",
            "postgres://u:p%40hunter2@h/db",
            "az://c/p?sig=hunter2&sv=1",
        ] {
            let parsed = StoreUri::parse(uri).unwrap();
            for shown in [format!("{parsed}"), format!("{parsed:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
                assert!(shown.contains("***"), "{shown}");
            }
        }
        let invalid = StoreUri::parse("postgres:u:hunter2@h").unwrap_err();
        assert!(!invalid.to_string().contains("hunter2"), "{invalid}");
        let shown = StoreUri::parse("postgres://u@h/db").unwrap().to_string();
        assert_eq!(shown, "postgres://u@h/db");
    }

    #[tokio::test]
    async fn open_names_the_missing_feature_or_opens() {
        let memory = StoreUri::parse("memory").unwrap().open().await.unwrap();
        assert_eq!(memory.name(), "memory");
        assert!(matches!(
            StoreUri::parse("portal").unwrap().open().await,
            Err(UriError::NeedsPortalClient)
        ));
        let postgres = StoreUri::parse("postgres://127.0.0.1:1/x").unwrap();
        if !cfg!(feature = "postgres") {
            let err = postgres.open().await.unwrap_err();
            assert!(err.to_string().contains("`postgres` feature"), "{err}");
        }
        // Building an S3 client needs no network; without the feature the error names it.
        let s3 = StoreUri::parse("s3://bucket").unwrap().open().await;
        if cfg!(feature = "s3") {
            assert_eq!(s3.unwrap().name(), "s3");
        } else {
            let err = s3.unwrap_err();
            assert!(err.to_string().contains("`s3` feature"), "{err}");
        }
    }
}
