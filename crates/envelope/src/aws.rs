//! The `aws-kms` key-encryption key: AWS KMS through the official `aws-sdk-kms`. Feature
//! `aws-kms`.
//!
//! * **Seal:** [`generate_data_key`](KeyEncryptionKey::generate_data_key) is one
//!   `GenerateDataKey` call (AES-256): KMS draws the data key and returns it with its wrapped
//!   form, so a seal costs one round trip. [`wrap`](KeyEncryptionKey::wrap) (used when AWS is
//!   not the first KEK of a keyring, and by rewrap) is one `Encrypt`.
//! * **Open:** one `Decrypt`, pinned (`KeyId`) to the key ARN recorded in the envelope, so a
//!   ciphertext blob can never be decrypted under another key than the one it names.
//! * **Context:** the encryption context goes to KMS as its `EncryptionContext` map, entry by
//!   entry, so it appears in CloudTrail and in key-policy conditions (`kms:EncryptionContext:…`).
//! * **Key reference:** the key ARN that KMS returned (an alias is resolved by KMS, and the
//!   envelope records the key it actually used).
//! * **Current key:** [`current_key_ref`](KeyEncryptionKey::current_key_ref) of a key ARN is
//!   that ARN (no call); of an alias (name or ARN) or a bare key id, the `KeyMetadata.Arn` of
//!   one `DescribeKey`, asked on every call because an alias can be repointed (`UpdateAlias`).
//! * **Which keys an alias opens:** only key ARNs of the account and region the alias belongs
//!   to (an alias ARN names them; an alias name learns them from its first `DescribeKey` or
//!   wrap, then keeps them), plus the key ARNs listed with [`AwsKmsBuilder::with_also_open`].
//!   An alias only ever points at keys of its own account and region, so the keys rotated out
//!   of it stay openable without a list; the list is for keys elsewhere (a key of the account
//!   or region you migrated from). A wrapped key naming any other key is refused with
//!   [`KmsError::KeyNotAllowed`] **before** any `Decrypt` call: the key ARN comes from the
//!   unauthenticated envelope header, and an attacker who can write to the store could
//!   otherwise name a key of *their* account whose key policy lets you decrypt.
//! * **Rewrap inside AWS:** [`AwsKms::re_encrypt`] moves a wrapped key to another AWS key with
//!   `ReEncrypt`, without the data key leaving KMS.
//!
//! Configuration comes from the AWS SDK's own chain ([`AwsKmsBuilder::build`] calls
//! `aws_config::defaults`: `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, web identity, IMDS
//! and so on), or hand in your own client with [`AwsKmsBuilder::with_client`].
//!
//! The SDK's own buffers (the request and response bodies that carry the data key) are not
//! zeroized; the data key is copied out of the response at once.
//!
//! # IAM: grant each identity only the keys it needs
//!
//! This KEK refuses foreign key ARNs itself, but IAM is the wall that holds when code does not:
//! never grant `kms:Decrypt` on `"Resource": "*"` (that lets a forged envelope name a key of
//! another account whose key policy trusts you). Name the keys:
//!
//! | who | actions | resource |
//! |---|---|---|
//! | backup (seals) | `kms:GenerateDataKey`, `kms:Encrypt` | the current key ARN (or `kms:RequestAlias` on the alias) |
//! | verify, recover, webhook (open) | `kms:Decrypt` | the current key ARN and each key listed with `also-open`, by ARN |
//! | rotate | the above, and `kms:DescribeKey` | the target key (an alias is resolved with `DescribeKey`) |
//!
//! ```json
//! { "Effect": "Allow", "Action": "kms:Decrypt",
//!   "Resource": [ "arn:aws:kms:eu-west-1:111122223333:key/NEW-KEY-ID",
//!                 "arn:aws:kms:eu-west-1:111122223333:key/OLD-KEY-ID" ],
//!   "Condition": { "StringEquals": { "kms:EncryptionContext:purpose": "client-backup" } } }
//! ```
//!
//! To let an alias open a key of another account or region (the one you migrated from):
//! `AwsKmsBuilder::new().with_key_id("alias/backup").with_also_open(["arn:…:key/OLD-KEY-ID"])`,
//! or on the command line `--kms 'aws-kms:alias/backup?also-open=arn:…:key/OLD-KEY-ID'`. To stop
//! opening a retired key of the alias's own account, rotate away from it and take
//! `kms:Decrypt` on it away (or schedule its deletion).
//!
//! ```no_run
//! # #[cfg(feature = "aws-kms")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use envelope::{EncryptionContext, Keyring, aws::AwsKmsBuilder};
//!
//! // The key from PORTAL_BACKUP_AWS_KMS_KEY_ID, region and credentials from the SDK chain.
//! let kek = AwsKmsBuilder::from_env().build().await?;
//! let keyring = Keyring::new().with(Arc::new(kek));
//! let ctx = EncryptionContext::new().with("client-id", "cl_1")?;
//! let sealed = envelope::seal(&keyring, &ctx, b"share").await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::context::EncryptionContext;
use crate::error::{BoxError, KmsError};
use crate::kek::{KeyEncryptionKey, KeyRef, MAX_KEY_ID_LEN, WrappedKey};
use crate::secret::{DATA_KEY_LEN, DataKey};

/// The provider name recorded in envelopes.
pub const PROVIDER: &str = "aws-kms";
/// Environment variable [`AwsKmsBuilder::from_env`] reads for the key: a key ARN, key id,
/// alias name (`alias/…`) or alias ARN.
pub const ENV_KEY_ID: &str = "PORTAL_BACKUP_AWS_KMS_KEY_ID";

/// Why an [`AwsKms`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No key was configured.
    #[error("missing AWS KMS key id (set it with `with_key_id` or {ENV_KEY_ID})")]
    MissingKeyId,
    /// The key id is empty or longer than a key reference allows.
    #[error("invalid AWS KMS key id {0:?}")]
    InvalidKeyId(String),
    /// The SDK configuration has no region (set `AWS_REGION` or use `with_region`).
    #[error("no AWS region configured (set AWS_REGION, a profile region, or `with_region`)")]
    MissingRegion,
    /// A key listed with [`AwsKmsBuilder::with_also_open`] is not a full key ARN.
    #[error(
        "{0:?} is not a key ARN (arn:<partition>:kms:<region>:<account>:key/<key id>); only key ARNs can be listed to open as well"
    )]
    InvalidAlsoOpen(String),
}

/// Builds an [`AwsKms`].
#[must_use]
#[derive(Default)]
pub struct AwsKmsBuilder {
    key_id: Option<String>,
    client: Option<Client>,
    region: Option<String>,
    endpoint_url: Option<String>,
    also_open: Vec<String>,
}

impl fmt::Debug for AwsKmsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsBuilder")
            .field("key_id", &self.key_id)
            .field("client", &self.client.as_ref().map(|_| "<provided>"))
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("also_open", &self.also_open)
            .finish()
    }
}

impl AwsKmsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder with the key from [`ENV_KEY_ID`] (if set). Everything else comes from the AWS
    /// SDK's own environment at [`build`](Self::build).
    pub fn from_env() -> Self {
        Self {
            key_id: std::env::var(ENV_KEY_ID).ok().filter(|v| !v.is_empty()),
            ..Self::default()
        }
    }

    /// The key: a key ARN (recommended), a key id, an alias name (`alias/…`) or an alias ARN.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// Key ARNs this KEK may open besides the keys of its own account and region (for an
    /// alias) or its own key (for a key ARN or id): an old key of another region or account
    /// (the one you migrated from) or, for a key ARN, the key it replaced. Each must be a full
    /// key ARN; wraps never use them. Calling it again adds to the list.
    pub fn with_also_open<I, S>(mut self, key_arns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.also_open.extend(key_arns.into_iter().map(Into::into));
        self
    }

    /// Uses this client (its region, credentials, endpoint, retries and interceptors) instead
    /// of loading the SDK's default configuration.
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Uses a client made from this SDK configuration.
    pub fn with_sdk_config(mut self, config: &SdkConfig) -> Self {
        self.client = Some(Client::new(config));
        self
    }

    /// The region, overriding the SDK chain (ignored with [`with_client`](Self::with_client)).
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The endpoint, overriding `AWS_ENDPOINT_URL` (ignored with
    /// [`with_client`](Self::with_client)).
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Builds the KEK, loading the SDK's default configuration unless a client was given. Makes
    /// no KMS call.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing or invalid key id, a listed key that is not a key ARN, or
    /// no region.
    pub async fn build(self) -> Result<AwsKms, ConfigError> {
        let key_id = self.key_id.ok_or(ConfigError::MissingKeyId)?;
        if KeyRef::new(PROVIDER, &key_id).is_err() || key_id.len() > MAX_KEY_ID_LEN {
            return Err(ConfigError::InvalidKeyId(key_id));
        }
        if let Some(bad) = self
            .also_open
            .iter()
            .find(|arn| key_arn_scope(arn).is_none() || arn.len() > MAX_KEY_ID_LEN)
        {
            return Err(ConfigError::InvalidAlsoOpen(bad.clone()));
        }
        let client = match self.client {
            Some(client) => client,
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = self.region {
                    loader = loader.region(Region::new(region));
                }
                if let Some(url) = self.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let config = loader.load().await;
                if config.region().is_none() {
                    return Err(ConfigError::MissingRegion);
                }
                Client::new(&config)
            }
        };
        if client.config().region().is_none() {
            return Err(ConfigError::MissingRegion);
        }
        let matcher = KeyMatcher::parse(&key_id);
        let scope = OnceLock::new();
        if let KeyMatcher::AliasArn { prefix } = &matcher {
            // An alias ARN names its account and region; KMS does not resolve aliases across
            // accounts.
            let _ = scope.set(prefix.clone());
        }
        Ok(AwsKms {
            client,
            key_id,
            matcher,
            also_open: self.also_open,
            scope,
        })
    }
}

/// Which recorded key ARNs the configured key id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMatcher {
    /// A key ARN: exactly that ARN.
    KeyArn,
    /// A bare key id (`1234abcd-…` or `mrk-…`): any key ARN ending in `:key/<id>`.
    KeyId(String),
    /// An alias ARN: claims any key ARN (the alias may have pointed at an older key when the
    /// envelope was sealed); [`AwsKms::admit`] then allows only the alias's own account and
    /// region (`prefix`) and the listed keys, before any KMS call.
    AliasArn { prefix: String },
    /// An alias name: as an alias ARN, with the account and region learnt from `DescribeKey`.
    AliasName,
}

impl KeyMatcher {
    fn parse(key_id: &str) -> Self {
        if let Some(rest) = key_id.strip_prefix("arn:") {
            // arn:partition:kms:region:account:resource
            let mut parts = rest.splitn(5, ':');
            let (partition, service, region, account, resource) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            if resource.starts_with("alias/") {
                return Self::AliasArn {
                    prefix: format!("arn:{partition}:{service}:{region}:{account}:key/"),
                };
            }
            return Self::KeyArn;
        }
        if key_id.starts_with("alias/") {
            return Self::AliasName;
        }
        Self::KeyId(key_id.to_owned())
    }

    fn accepts(&self, configured: &str, recorded: &str) -> bool {
        if recorded == configured {
            return true;
        }
        let is_key_arn = key_arn_scope(recorded).is_some();
        match self {
            Self::KeyArn => false,
            Self::KeyId(id) => is_key_arn && recorded.ends_with(&format!(":key/{id}")),
            Self::AliasArn { .. } | Self::AliasName => is_key_arn,
        }
    }

    fn is_alias(&self) -> bool {
        matches!(self, Self::AliasArn { .. } | Self::AliasName)
    }
}

/// The account-and-region prefix (`arn:<partition>:kms:<region>:<account>:key/`) of a key
/// ARN; `None` for anything else (an alias, a key id, a malformed ARN).
fn key_arn_scope(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let id = resource.strip_prefix("key/")?;
    let valid = !partition.is_empty()
        && service == "kms"
        && !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !id.is_empty()
        && !id.contains(['/', ':']);
    let prefix_len = arn.len().checked_sub(id.len())?;
    valid.then(|| arn.get(..prefix_len)).flatten()
}

/// A key-encryption key in AWS KMS.
///
/// Build it with [`AwsKmsBuilder`]. [`can_unwrap`](KeyEncryptionKey::can_unwrap) accepts key
/// references by the configured key: a key ARN matches itself only; a key id matches ARNs of
/// that key; an alias (name or ARN) claims key ARNs, since an alias may point at a new key
/// after an envelope was sealed and the ARN recorded then is what `Decrypt` is pinned to. Keys
/// listed with [`AwsKmsBuilder::with_also_open`] are accepted as well.
///
/// Before any `Decrypt` (or `ReEncrypt`), an alias KEK admits only key ARNs of the account and
/// region it belongs to and the listed keys; anything else is
/// [`KmsError::KeyNotAllowed`], with no call to KMS.
pub struct AwsKms {
    client: Client,
    key_id: String,
    matcher: KeyMatcher,
    /// Key ARNs opened besides the configured key and (for an alias) its account and region.
    also_open: Vec<String>,
    /// For an alias: the key-ARN prefix of its account and region, once known.
    scope: OnceLock<String>,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("key_id", &self.key_id)
            .field("region", &self.client.config().region())
            .field("also_open", &self.also_open)
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// A builder.
    pub fn builder() -> AwsKmsBuilder {
        AwsKmsBuilder::new()
    }

    /// The client this KEK calls.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Re-encrypts a data key wrapped by this KEK under `destination` with one `ReEncrypt`
    /// call: the data key never leaves KMS. The source side is pinned to the recorded key ARN.
    /// Use it to move envelopes between AWS keys (or accounts) when rotating; the caller must
    /// be allowed `kms:ReEncryptFrom` on the source key and `kms:ReEncryptTo` on the
    /// destination.
    ///
    /// # Errors
    /// [`KmsError::UnwrapFailed`] when `wrapped` is not this KEK's or does not match
    /// `context`; other [`KmsError`]s as for `unwrap`.
    pub async fn re_encrypt(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
        destination: &Self,
    ) -> Result<WrappedKey, KmsError> {
        if !self.can_unwrap(wrapped.key_ref()) {
            return Err(KmsError::UnwrapFailed);
        }
        let source_arn = wrapped.key_ref().key_id();
        self.admit(source_arn).await?;
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.bytes()))
            .source_key_id(source_arn)
            .set_source_encryption_context(aws_context(context))
            .destination_key_id(&destination.key_id)
            .set_destination_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| classify(e, source_arn, true))?;
        if out.source_key_id().is_some_and(|id| id != source_arn) {
            return Err(KmsError::UnwrapFailed);
        }
        destination.wrapped(out.key_id(), out.ciphertext_blob())
    }

    /// The key ARN the configured key id or alias stands for now: one `DescribeKey`. For an
    /// alias, the first answer also fixes the account and region it may open.
    async fn describe(&self) -> Result<String, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| classify(e, &self.key_id, false))?;
        let arn = out
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_owned)
            .ok_or_else(|| backend("DescribeKey response has no KeyMetadata.Arn"))?;
        self.learn_scope(&arn)?;
        Ok(arn)
    }

    /// Fixes an alias's account and region from a key ARN KMS resolved it to (the first one
    /// wins; an alias never changes account or region). Refuses an ARN outside a known scope.
    fn learn_scope(&self, arn: &str) -> Result<(), KmsError> {
        if !self.matcher.is_alias() {
            return Ok(());
        }
        let prefix = key_arn_scope(arn).ok_or_else(|| {
            backend(format!(
                "KMS resolved {:?} to {arn:?}, not a key ARN",
                self.key_id
            ))
        })?;
        let _ = self.scope.set(prefix.to_owned());
        match self.scope.get() {
            Some(scope) if scope == prefix => Ok(()),
            _ => Err(backend(format!(
                "KMS resolved {:?} to {arn:?}, outside the alias's account and region",
                self.key_id
            ))),
        }
    }

    /// Refuses, before any KMS call that would use it, a recorded key this KEK must not open:
    /// for an alias, a key ARN of another account or region that is not listed with
    /// [`AwsKmsBuilder::with_also_open`]. An alias name learns its account with one
    /// `DescribeKey` the first time (unless a wrap or [`current_key_ref`] already did).
    ///
    /// [`current_key_ref`]: KeyEncryptionKey::current_key_ref
    async fn admit(&self, arn: &str) -> Result<(), KmsError> {
        if !self.matcher.is_alias() || self.also_open.iter().any(|listed| listed == arn) {
            return Ok(());
        }
        if self.scope.get().is_none() {
            self.describe().await?;
        }
        let scope = self.scope.get().map_or("", String::as_str);
        if !scope.is_empty() && arn.starts_with(scope) {
            return Ok(());
        }
        Err(KmsError::KeyNotAllowed {
            key: arn.to_owned(),
            allowed: format!(
                "{:?} opens key ARNs {scope}* and the {} key ARN(s) listed with also-open; \
                 list a key of another account or region there only if it is yours \
                 (with_also_open, or `?also-open=<key ARN>` in a KMS URI)",
                self.key_id,
                self.also_open.len()
            ),
        })
    }

    /// The wrapped key for a response's key ARN and blob, refusing a key this KEK does not
    /// stand for.
    fn wrapped(&self, arn: Option<&str>, blob: Option<&Blob>) -> Result<WrappedKey, KmsError> {
        let arn = arn.ok_or_else(|| backend("KMS response has no KeyId"))?;
        if !self.matcher.accepts(&self.key_id, arn) && arn != self.key_id {
            return Err(backend(format!(
                "KMS used key {arn:?}, which is not the configured key {:?}",
                self.key_id
            )));
        }
        self.learn_scope(arn)?;
        let blob = blob.ok_or_else(|| backend("KMS response has no CiphertextBlob"))?;
        let key_ref = KeyRef::new(PROVIDER, arn).map_err(backend)?;
        WrappedKey::new(key_ref, blob.as_ref().to_vec()).map_err(backend)
    }
}

/// The context as a KMS `EncryptionContext` (none for the empty context).
fn aws_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    if context.is_empty() {
        return None;
    }
    Some(
        context
            .as_map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn backend(source: impl Into<BoxError>) -> KmsError {
    KmsError::Backend {
        backend: PROVIDER,
        source: source.into(),
    }
}

/// Maps an SDK error onto [`KmsError`] by the service's error code (KMS error names, which the
/// SDK does not model for every operation, e.g. `AccessDeniedException`).
fn classify<E, R>(err: SdkError<E, R>, key: &str, unwrapping: bool) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let code = match &err {
        SdkError::ServiceError(service) => service.err().code().map(str::to_owned),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return KmsError::Unavailable {
                source: Box::new(err),
            };
        }
        _ => None,
    };
    let key = key.to_owned();
    match code.as_deref() {
        Some("NotFoundException" | "DisabledException" | "KMSInvalidStateException") => {
            KmsError::KeyNotFound {
                key,
                source: Box::new(err),
            }
        }
        Some("AccessDeniedException" | "UnauthorizedException" | "InvalidGrantTokenException") => {
            KmsError::PermissionDenied {
                key,
                source: Box::new(err),
            }
        }
        Some(
            "ThrottlingException"
            | "LimitExceededException"
            | "KMSInternalException"
            | "DependencyTimeoutException"
            | "KeyUnavailableException"
            | "ServiceUnavailableException"
            | "InternalFailure",
        ) => KmsError::Unavailable {
            source: Box::new(err),
        },
        Some("InvalidCiphertextException" | "IncorrectKeyException") if unwrapping => {
            KmsError::UnwrapFailed
        }
        _ => backend(err),
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for AwsKms {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        key_ref.provider() == PROVIDER
            && (self.matcher.accepts(&self.key_id, key_ref.key_id())
                || self.also_open.iter().any(|arn| arn == key_ref.key_id()))
    }

    /// The key ARN a wrap records now: a configured key ARN itself (no call); otherwise the
    /// `KeyMetadata.Arn` of one `DescribeKey` on the configured key id or alias (an alias is
    /// resolved on every call, since it can be repointed; needs `kms:DescribeKey`).
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        let arn = match self.matcher {
            KeyMatcher::KeyArn => self.key_id.clone(),
            _ => self.describe().await?,
        };
        if !self.matcher.accepts(&self.key_id, &arn) {
            return Err(backend(format!(
                "KMS resolved {:?} to {arn:?}, which is not a key of the configured key",
                self.key_id
            )));
        }
        KeyRef::new(PROVIDER, arn).map_err(backend)
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.expose_secret().as_slice()))
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| classify(e, &self.key_id, false))?;
        self.wrapped(out.key_id(), out.ciphertext_blob())
    }

    /// One `GenerateDataKey` call: KMS draws the key and wraps it.
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| classify(e, &self.key_id, false))?;
        let key = out
            .plaintext()
            .and_then(|p| DataKey::from_slice(p.as_ref()))
            .ok_or_else(|| backend(format!("KMS did not return a {DATA_KEY_LEN}-byte key")))?;
        let wrapped = self.wrapped(out.key_id(), out.ciphertext_blob())?;
        drop(out);
        Ok((key, wrapped))
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        if !self.can_unwrap(wrapped.key_ref()) {
            return Err(KmsError::UnwrapFailed);
        }
        let arn = wrapped.key_ref().key_id();
        self.admit(arn).await?;
        let out = self
            .client
            .decrypt()
            .key_id(arn)
            .ciphertext_blob(Blob::new(wrapped.bytes()))
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| classify(e, arn, true))?;
        if out.key_id().is_some_and(|used| used != arn) {
            return Err(KmsError::UnwrapFailed);
        }
        let key = out
            .plaintext()
            .and_then(|p| DataKey::from_slice(p.as_ref()))
            .ok_or(KmsError::UnwrapFailed);
        drop(out);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matching() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let other = "arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab";
        let elsewhere =
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let m = KeyMatcher::parse(arn);
        assert!(m.accepts(arn, arn));
        assert!(!m.accepts(arn, other));

        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let m = KeyMatcher::parse(id);
        assert!(m.accepts(id, arn) && m.accepts(id, elsewhere));
        assert!(!m.accepts(id, other));

        // An alias claims key ARNs; which account and region it admits is `admit`'s.
        let alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/backups";
        let m = KeyMatcher::parse(alias_arn);
        assert_eq!(
            m,
            KeyMatcher::AliasArn {
                prefix: "arn:aws:kms:us-east-1:111122223333:key/".into()
            }
        );
        assert!(m.accepts(alias_arn, arn) && m.accepts(alias_arn, elsewhere));
        assert!(!m.accepts(alias_arn, "arn:aws:kms:us-east-1:111122223333:alias/other"));

        let m = KeyMatcher::parse("alias/backups");
        assert!(m.accepts("alias/backups", elsewhere));
        assert!(!m.accepts("alias/backups", "not-an-arn"));
    }

    #[test]
    fn key_arn_scopes() {
        assert_eq!(
            key_arn_scope("arn:aws:kms:us-east-1:111122223333:key/1234abcd"),
            Some("arn:aws:kms:us-east-1:111122223333:key/")
        );
        assert_eq!(
            key_arn_scope("arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1"),
            Some("arn:aws-cn:kms:cn-north-1:111122223333:key/")
        );
        for not_a_key_arn in [
            "alias/backups",
            "1234abcd",
            "arn:aws:kms:us-east-1:111122223333:alias/backups",
            "arn:aws:kms:us-east-1:1111:key/1234abcd",
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd",
            "arn:aws:kms::111122223333:key/1234abcd",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:us-east-1:111122223333:key/a/b",
        ] {
            assert_eq!(key_arn_scope(not_a_key_arn), None, "{not_a_key_arn}");
        }
    }

    #[test]
    fn builder_needs_a_key_id() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(AwsKmsBuilder::new().build()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingKeyId));
        assert!(err.to_string().contains(ENV_KEY_ID));
        let err = rt
            .block_on(
                AwsKmsBuilder::new()
                    .with_key_id("alias/backups")
                    .with_region("us-east-1")
                    .with_also_open(["alias/old"])
                    .build(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidAlsoOpen(bad) if bad == "alias/old"),
            "{err:?}"
        );
    }
}
