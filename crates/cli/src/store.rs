//! `--store` URIs: `storage::uri` (which parses every form and names the feature a backend
//! needs), plus the CLI's one convenience: a bare path (`./backups`, `/srv/backups`,
//! `backups`) means `file:<path>`.

use std::sync::Arc;

use backup_flow::{PortalManaged, StoreFactory};
use futures_util::StreamExt as _;
use storage::BackupStore;
pub(crate) use storage::uri::StoreUri;
use storage::uri::UriError;

use crate::failure::Failure;

/// Parses a `--store` value.
pub(crate) fn parse(uri: &str) -> Result<StoreUri, Failure> {
    match StoreUri::parse(uri) {
        Ok(parsed) => Ok(parsed),
        Err(UriError::UnknownScheme { scheme }) if !looks_like_scheme(&scheme) => {
            Ok(StoreUri::File(uri.trim().into()))
        }
        Err(UriError::UnknownScheme { scheme }) => {
            Err(Failure::new(format!("unknown store scheme {scheme:?}")).hint(HINT))
        }
        Err(e) => Err(Failure::caused_by("invalid --store", e).hint(HINT)),
    }
}

const HINT: &str = "use portal, file:<dir>, memory, postgres://…, s3://…, gs://… or az://… (write file:<path> for a path with a colon)";

/// A bare path has no scheme before its first colon, or one no URI scheme could be.
fn looks_like_scheme(scheme: &str) -> bool {
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
}

/// The stores for the backup flow: Portal's (one per client session), or one of our own.
pub(crate) async fn open(uri: &StoreUri) -> Result<Arc<dyn StoreFactory>, Failure> {
    if matches!(uri, StoreUri::Portal) {
        return Ok(Arc::new(PortalManaged));
    }
    Ok(Arc::new(open_own(uri, "this command").await?))
}

/// A store of our own; `portal` is refused, naming `what` needs one.
pub(crate) async fn open_own(uri: &StoreUri, what: &str) -> Result<Arc<dyn BackupStore>, Failure> {
    if matches!(uri, StoreUri::Memory) {
        tracing::warn!("the memory store keeps nothing after this process exits");
    }
    uri.open().await.map_err(|e| match e {
        UriError::NeedsPortalClient => {
            Failure::new(format!("{what} needs a store of your own, not portal"))
                .hint("pass --store file:<dir> (or postgres://…, s3://…)")
        }
        UriError::NotCompiled { feature, .. } => Failure::caused_by("unusable --store", e)
            .hint(format!("rebuild portal-backup with `--features {feature}`")),
        UriError::Open { ref source, .. } if source.is_retryable() => {
            Failure::caused_by(format!("cannot open the store {uri}"), e).retryable()
        }
        e => Failure::caused_by(format!("cannot open the store {uri}"), e),
    })
}

/// The clients a store-wide command works on: those given (`--client-id`), else every client
/// `store` holds, as its listing streams in (work starts with the first client; a listing
/// failure comes as an item and ends the listing).
pub(crate) fn clients<'a>(
    store: Option<&'a dyn BackupStore>,
    uri: &StoreUri,
    given: Vec<String>,
) -> Result<storage::ClientStream<'a>, Failure> {
    if !given.is_empty() {
        return Ok(futures_util::stream::iter(given.into_iter().map(Ok)).boxed());
    }
    match store {
        Some(store) if store.capabilities().list => Ok(store.stream_clients()),
        _ => Err(
            Failure::new(format!("the store {uri} cannot list its clients"))
                .hint("pass --client-id <id> (repeatable)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn uris() {
        let file = |p: &str| Ok(StoreUri::File(PathBuf::from(p)));
        let parse = |s: &str| parse(s).map_err(|e| e.render());
        assert_eq!(parse("portal"), Ok(StoreUri::Portal));
        assert_eq!(parse("memory"), Ok(StoreUri::Memory));
        assert_eq!(parse("memory:"), Ok(StoreUri::Memory));
        assert_eq!(parse("file:backups"), file("backups"));
        assert_eq!(parse("file:///srv/b"), file("/srv/b"));
        assert_eq!(parse("/srv/b"), file("/srv/b"));
        assert_eq!(parse("./portal"), file("./portal"));
        assert_eq!(parse("backups"), file("backups"));
        assert_eq!(parse("./a:b"), file("./a:b"));
        assert_eq!(parse("file:a:b"), file("a:b"));
        assert!(parse("file://relative").is_err());
        assert!(parse("file:").is_err());
        assert!(matches!(
            parse("s3://bucket/x"),
            Ok(StoreUri::Object { .. })
        ));
        assert!(matches!(
            parse("postgres://h/db"),
            Ok(StoreUri::Postgres(_))
        ));
        assert!(
            parse("ftp://x")
                .unwrap_err()
                .contains("unknown store scheme")
        );
    }

    #[tokio::test]
    async fn portal_is_refused_where_a_store_of_our_own_is_needed() {
        let err = open_own(&StoreUri::Portal, "rotate").await.unwrap_err();
        assert!(
            err.render().contains("rotate needs a store of your own"),
            "{}",
            err.render()
        );
    }
}
