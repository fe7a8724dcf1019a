//! `--kms` URIs: `local:<key file>`, `aws-kms:<key id>[?also-open=<key ARN>[&also-open=…]]`,
//! `gcp-kms:<crypto key name>`, `pkcs11:<token label>/<key label>`. The cloud and HSM schemes
//! exist only when the matching cargo feature is compiled in; otherwise they fail with an error
//! naming the feature.
//!
//! `also-open` lists key ARNs an AWS KEK may open besides its own: an alias opens only key
//! ARNs of its own account and region (where every key it ever pointed at lives), so a key of
//! another account or region (the one you migrated from) opens only when listed. It is repeated, not comma-separated, because
//! `PORTAL_BACKUP_KMS` separates URIs with commas.

use std::path::Path;
use std::sync::Arc;

use envelope::local::LocalKek;
use envelope::{KeyEncryptionKey, Keyring};

use crate::failure::Failure;

/// The schemes, for error messages.
const SCHEMES: &str = "local:, aws-kms:, gcp-kms:, pkcs11:";

/// The keyring of every URI, in order (the first seals with a data key it generates, the
/// others wrap it too; any one opens).
pub(crate) async fn keyring(uris: &[String], option: &str) -> Result<Keyring, Failure> {
    if uris.is_empty() {
        return Err(Failure::new("no key-encryption key given").hint(format!(
            "pass {option} local:<key file> (make one with `portal-backup keygen --out <file>`), or set PORTAL_BACKUP_KMS"
        )));
    }
    let mut keyring = Keyring::new();
    for uri in uris {
        keyring.push(load(uri.trim()).await?);
    }
    Ok(keyring)
}

/// One key-encryption key from its URI.
pub(crate) async fn load(uri: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    let (scheme, rest) = uri.split_once(':').ok_or_else(|| {
        Failure::new(format!("KMS URI {uri:?} has no scheme"))
            .hint(format!("a KMS URI starts with one of {SCHEMES}"))
    })?;
    if rest.is_empty() {
        return Err(Failure::new(format!("KMS URI {uri:?} names no key")));
    }
    match scheme {
        "local" => LocalKek::from_file(Path::new(rest))
            .map(|kek| Arc::new(kek) as Arc<dyn KeyEncryptionKey>)
            .map_err(|e| {
                Failure::caused_by(
                    format!("cannot load the local key-encryption key {rest}"),
                    e,
                )
            }),
        "aws-kms" => aws(rest).await,
        "gcp-kms" => gcp(rest).await,
        "pkcs11" => pkcs11(rest),
        other => Err(Failure::new(format!("unknown KMS scheme {other:?}"))
            .hint(format!("a KMS URI starts with one of {SCHEMES}"))),
    }
}

/// `<key id>` then an optional query: `?also-open=<key ARN>`, repeated with `&`.
#[cfg_attr(not(feature = "aws-kms"), allow(dead_code))]
fn aws_spec(spec: &str) -> Result<(&str, Vec<&str>), Failure> {
    let (key_id, query) = spec.split_once('?').unwrap_or((spec, ""));
    if key_id.is_empty() {
        return Err(Failure::new(format!("KMS URI aws-kms:{spec} names no key")));
    }
    let mut also_open = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("also-open", arn)) if !arn.is_empty() => also_open.push(arn),
            _ => {
                return Err(Failure::new(format!(
                    "unknown or empty parameter {param:?} in KMS URI aws-kms:{spec}"
                ))
                .hint(
                    "the only parameter is also-open=<key ARN>, repeated with & for several keys",
                ));
            }
        }
    }
    Ok((key_id, also_open))
}

#[cfg(feature = "aws-kms")]
async fn aws(spec: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    let (key_id, also_open) = aws_spec(spec)?;
    envelope::aws::AwsKmsBuilder::from_env()
        .with_key_id(key_id)
        .with_also_open(also_open)
        .build()
        .await
        .map(|kek| Arc::new(kek) as Arc<dyn KeyEncryptionKey>)
        .map_err(|e| Failure::caused_by(format!("cannot set up AWS KMS key {key_id}"), e))
}

#[cfg(not(feature = "aws-kms"))]
async fn aws(_key_id: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    Err(not_compiled("aws-kms"))
}

#[cfg(feature = "gcp-kms")]
async fn gcp(name: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    envelope::gcp::GcpKmsBuilder::from_env()
        .with_key_name(name)
        .build()
        .await
        .map(|kek| Arc::new(kek) as Arc<dyn KeyEncryptionKey>)
        .map_err(|e| Failure::caused_by(format!("cannot set up Google Cloud KMS key {name}"), e))
}

#[cfg(not(feature = "gcp-kms"))]
async fn gcp(_name: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    Err(not_compiled("gcp-kms"))
}

/// `<token label>/<key label>`: the token label ends at the first `/`. Module and PIN come
/// from `PORTAL_BACKUP_PKCS11_MODULE` and `PORTAL_BACKUP_PKCS11_PIN`.
#[cfg(feature = "pkcs11")]
fn pkcs11(labels: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    let (token, key) = labels
        .split_once('/')
        .filter(|(t, k)| !t.is_empty() && !k.is_empty())
        .ok_or_else(|| {
            Failure::new(format!(
                "PKCS#11 URI pkcs11:{labels} is not pkcs11:<token label>/<key label>"
            ))
        })?;
    envelope::pkcs11::Pkcs11KekBuilder::from_env()
        .with_token_label(token)
        .with_key_label(key)
        .build()
        .map(|kek| Arc::new(kek) as Arc<dyn KeyEncryptionKey>)
        .map_err(|e| Failure::caused_by(format!("cannot set up PKCS#11 key {labels}"), e))
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11(_labels: &str) -> Result<Arc<dyn KeyEncryptionKey>, Failure> {
    Err(not_compiled("pkcs11"))
}

#[cfg(not(all(feature = "aws-kms", feature = "gcp-kms", feature = "pkcs11")))]
fn not_compiled(feature: &str) -> Failure {
    Failure::new(format!(
        "`{feature}:` key-encryption keys are not compiled into this portal-backup"
    ))
    .hint(format!(
        "build it with the cargo feature `{feature}`: cargo build --release -p portal-backup --features {feature}"
    ))
}

/// Writes a new local key file (mode 0600, never over an existing file).
pub(crate) fn keygen(out: &Path) -> Result<LocalKek, Failure> {
    LocalKek::generate_file(out).map_err(|e| {
        let exists = matches!(
            &e,
            envelope::local::LocalKeyError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists
        );
        let failure = Failure::caused_by(format!("cannot create the key file {}", out.display()), e);
        if exists {
            failure.hint("the file exists; an existing key file is never overwritten (it may be the only key to your backups)")
        } else {
            failure
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_uris_list_keys_to_open_as_well() {
        let old1 = "arn:aws:kms:eu-west-1:111122223333:key/old-1";
        let old2 = "arn:aws:kms:us-east-1:111122223333:key/old-2";
        assert_eq!(aws_spec("alias/backup").unwrap(), ("alias/backup", vec![]));
        assert_eq!(
            aws_spec(&format!("alias/backup?also-open={old1}&also-open={old2}")).unwrap(),
            ("alias/backup", vec![old1, old2])
        );
        for bad in [
            "?also-open=x",
            "alias/backup?also-open=",
            "alias/backup?also_open=x",
            "alias/backup?also-open",
        ] {
            let text = aws_spec(bad).unwrap_err().render();
            assert!(text.contains("aws-kms:"), "{bad}: {text}");
        }
    }

    #[cfg(feature = "aws-kms")]
    #[tokio::test]
    async fn an_aws_uri_refuses_a_listed_key_that_is_not_a_key_arn() {
        // Refused while checking the configuration, before any client or request.
        let text = aws("alias/backup?also-open=alias/old")
            .await
            .err()
            .unwrap()
            .render();
        assert!(text.contains("not a key ARN"), "{text}");
    }

    #[tokio::test]
    async fn uris() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let made = keygen(&path).unwrap();
        let uri = format!("local:{}", path.display());
        let kek = load(&uri).await.unwrap();
        assert_eq!(kek.key_id(), made.key_id());
        assert!(
            keygen(&path)
                .unwrap_err()
                .render()
                .contains("never overwritten")
        );
        for bad in ["local", "local:", "nope:x", "plain"] {
            assert!(load(bad).await.is_err(), "{bad}");
        }
        assert!(keyring(&[], "--kms").await.is_err());
        #[cfg(not(feature = "aws-kms"))]
        {
            let text = load("aws-kms:alias/x").await.err().unwrap().render();
            assert!(text.contains("--features aws-kms"), "{text}");
        }
    }
}
