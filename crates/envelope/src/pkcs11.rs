//! The `pkcs11` key-encryption key: AES-256-GCM inside a hardware security module, through
//! PKCS#11 ([`cryptoki`]). Feature `pkcs11`.
//!
//! The KEK is a **non-extractable AES-256 secret key** on a token, found by its label. Each wrap
//! is one `C_Encrypt` with `CKM_AES_GCM`, a fresh 96-bit IV from the operating system and a
//! 128-bit tag; the additional authenticated data is a domain string followed by the canonical
//! encryption context, so it is never empty (SoftHSM 2.6 has undefined behaviour on empty AAD).
//! The data key never leaves the process in the clear except into the HSM.
//!
//! Wrapped data key (60 bytes): `iv (12) ‖ AES-256-GCM ciphertext of the data key (32) ‖ tag (16)`,
//! with AAD `"portal-backup pkcs11 wrap v1" ‖ 00 ‖ canonical(KEK context)`. The key reference is
//! an RFC 7512 URI, `pkcs11:token=<token label>;object=<key label>`.
//!
//! Sessions come from a small pool (one per concurrent call, up to the pool size kept idle), so
//! concurrent seals do not queue on one session; one extra session stays open for the life of
//! the KEK to keep the user logged in. PKCS#11 calls block the calling thread for the duration
//! of the HSM operation (microseconds for SoftHSM; for a network HSM, consider calling the KEK
//! from `spawn_blocking`).
//!
//! ```no_run
//! # #[cfg(feature = "pkcs11")] {
//! use std::sync::Arc;
//! use envelope::{Keyring, pkcs11::Pkcs11KekBuilder};
//!
//! // PORTAL_BACKUP_PKCS11_MODULE, _TOKEN_LABEL, _KEY_LABEL and _PIN from the environment.
//! let kek = Pkcs11KekBuilder::from_env().with_pool_size(8).build()?;
//! let keyring = Keyring::new().with(Arc::new(kek));
//! # }
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::{BoxError, KmsError};
use crate::kek::{KeyEncryptionKey, KeyRef, WrappedKey};
use crate::secret::{DATA_KEY_LEN, DataKey};

/// The provider name recorded in envelopes.
pub const PROVIDER: &str = "pkcs11";
/// Environment variable [`Pkcs11KekBuilder::from_env`] reads for the PKCS#11 module path.
pub const ENV_MODULE: &str = "PORTAL_BACKUP_PKCS11_MODULE";
/// Environment variable [`Pkcs11KekBuilder::from_env`] reads for the token label.
pub const ENV_TOKEN_LABEL: &str = "PORTAL_BACKUP_PKCS11_TOKEN_LABEL";
/// Environment variable [`Pkcs11KekBuilder::from_env`] reads for the key label.
pub const ENV_KEY_LABEL: &str = "PORTAL_BACKUP_PKCS11_KEY_LABEL";
/// Environment variable [`Pkcs11KekBuilder::from_env`] reads for the user PIN.
pub const ENV_PIN: &str = "PORTAL_BACKUP_PKCS11_PIN";
/// Idle sessions kept open by default.
pub const DEFAULT_POOL_SIZE: usize = 4;

const WRAP_AAD_DOMAIN: &[u8] = b"portal-backup pkcs11 wrap v1\0";
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u64 = 128;
/// iv ‖ encrypted data key ‖ tag
const WRAPPED_LEN: usize = IV_LEN + DATA_KEY_LEN + TAG_LEN;

/// Why a [`Pkcs11Kek`] could not be built. Never contains the PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing PKCS#11 setting: {setting} (set it with `{setter}` or {env})")]
    Missing {
        /// The setting.
        setting: &'static str,
        /// The builder method that sets it.
        setter: &'static str,
        /// The environment variable that sets it.
        env: &'static str,
    },
    /// The module could not be loaded or initialized.
    #[error("cannot load PKCS#11 module {path}")]
    Module {
        /// The module path.
        path: PathBuf,
        /// The library's error.
        #[source]
        source: BoxError,
    },
    /// No slot holds a token with the label (or more than one does).
    #[error("{found} tokens labelled {label:?} (expected exactly one)")]
    Token {
        /// The label.
        label: String,
        /// How many tokens have it.
        found: usize,
    },
    /// The user PIN was refused (or the token refused the login for another reason).
    #[error("login to token {label:?} failed")]
    Login {
        /// The token label.
        label: String,
        /// The token's error.
        #[source]
        source: BoxError,
    },
    /// No AES secret key with the label is visible after login (or more than one is).
    #[error("{found} AES keys labelled {label:?} on the token (expected exactly one)")]
    Key {
        /// The key label.
        label: String,
        /// How many keys have it.
        found: usize,
    },
    /// The key exists but is not a non-extractable AES-256 key that may encrypt and decrypt.
    #[error("key {label:?} is not usable as a key-encryption key: {reason}")]
    KeyNotSuitable {
        /// The key label.
        label: String,
        /// Which attribute is wrong.
        reason: &'static str,
    },
    /// Another PKCS#11 call failed while setting up.
    #[error("PKCS#11 call failed while setting up the KEK")]
    Setup(#[source] BoxError),
}

/// Builds a [`Pkcs11Kek`].
///
/// `Debug` never shows the PIN.
#[must_use]
pub struct Pkcs11KekBuilder {
    module: Option<PathBuf>,
    token_label: Option<String>,
    key_label: Option<String>,
    pin: Option<AuthPin>,
    pool_size: usize,
}

impl Default for Pkcs11KekBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Pkcs11KekBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KekBuilder")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &self.pin.as_ref().map(|_| "[REDACTED]"))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl Pkcs11KekBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            module: None,
            token_label: None,
            key_label: None,
            pin: None,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    /// A builder with the settings found in the environment: [`ENV_MODULE`],
    /// [`ENV_TOKEN_LABEL`], [`ENV_KEY_LABEL`] and [`ENV_PIN`]. Unset variables leave the setting
    /// empty; `with_*` calls afterwards override.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let mut builder = Self::new();
        builder.module = var(ENV_MODULE).map(PathBuf::from);
        builder.token_label = var(ENV_TOKEN_LABEL);
        builder.key_label = var(ENV_KEY_LABEL);
        builder.pin = var(ENV_PIN).map(AuthPin::from);
        builder
    }

    /// The path of the PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub fn with_module(mut self, path: impl Into<PathBuf>) -> Self {
        self.module = Some(path.into());
        self
    }

    /// The label of the token that holds the key.
    pub fn with_token_label(mut self, label: impl Into<String>) -> Self {
        self.token_label = Some(label.into());
        self
    }

    /// The label (`CKA_LABEL`) of the AES-256 key.
    pub fn with_key_label(mut self, label: impl Into<String>) -> Self {
        self.key_label = Some(label.into());
        self
    }

    /// The user PIN. Prefer [`from_env`](Self::from_env) ([`ENV_PIN`]) over a value that
    /// passes through command lines or logs.
    pub fn with_pin(mut self, pin: impl Into<String>) -> Self {
        self.pin = Some(AuthPin::from(pin.into()));
        self
    }

    /// How many idle sessions to keep open (at least 1; default [`DEFAULT_POOL_SIZE`]). More
    /// concurrent calls than that open extra sessions, closed again after use.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Loads the module, finds the token, logs in and finds the key.
    ///
    /// Loads and initializes each module once per process (with `CKF_OS_LOCKING_OK`), shared
    /// by every KEK on it; a module that another part of the process initialized already is
    /// used as it is.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing setting, a module that does not load, a token or key that
    /// is not found exactly once, a refused login or a key that is extractable, not AES-256 or
    /// not allowed to encrypt and decrypt.
    pub fn build(self) -> Result<Pkcs11Kek, ConfigError> {
        let module = self.module.ok_or(ConfigError::Missing {
            setting: "module path",
            setter: "with_module",
            env: ENV_MODULE,
        })?;
        let token_label = self.token_label.ok_or(ConfigError::Missing {
            setting: "token label",
            setter: "with_token_label",
            env: ENV_TOKEN_LABEL,
        })?;
        let key_label = self.key_label.ok_or(ConfigError::Missing {
            setting: "key label",
            setter: "with_key_label",
            env: ENV_KEY_LABEL,
        })?;
        let pin = self.pin.ok_or(ConfigError::Missing {
            setting: "user PIN",
            setter: "with_pin",
            env: ENV_PIN,
        })?;
        let module_error = |source: CkError| ConfigError::Module {
            path: module.clone(),
            source: Box::new(source),
        };
        let ctx = module_context(&module).map_err(module_error)?;
        let setup = |e: CkError| ConfigError::Setup(Box::new(e));

        let mut slots = Vec::new();
        for slot in ctx.get_slots_with_token().map_err(setup)? {
            if ctx.get_token_info(slot).map_err(setup)?.label() == token_label {
                slots.push(slot);
            }
        }
        let slot = match slots.as_slice() {
            [slot] => *slot,
            other => {
                return Err(ConfigError::Token {
                    label: token_label,
                    found: other.len(),
                });
            }
        };

        // Kept open for the life of the KEK: the login lasts as long as one session does.
        let anchor = ctx.open_ro_session(slot).map_err(setup)?;
        match anchor.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => {
                return Err(ConfigError::Login {
                    label: token_label,
                    source: Box::new(e),
                });
            }
        }
        drop(pin);

        let found = anchor
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(key_label.as_bytes().to_vec()),
            ])
            .map_err(setup)?;
        let key = match found.as_slice() {
            [key] => *key,
            other => {
                return Err(ConfigError::Key {
                    label: key_label,
                    found: other.len(),
                });
            }
        };
        check_key(&anchor, key).map_err(|reason| ConfigError::KeyNotSuitable {
            label: key_label.clone(),
            reason,
        })?;

        let key_id = format!(
            "pkcs11:token={};object={}",
            pct_encode(&token_label),
            pct_encode(&key_label)
        );
        KeyRef::new(PROVIDER, &key_id).map_err(|e| ConfigError::Setup(Box::new(e)))?;
        Ok(Pkcs11Kek {
            ctx,
            slot,
            key,
            key_id,
            module,
            pool_size: self.pool_size,
            pool: Mutex::new(Vec::new()),
            _anchor: Mutex::new(anchor),
        })
    }
}

/// The process's context for a module: loaded and initialized once (`C_Initialize` must not
/// run concurrently or twice), then shared by every KEK on that module.
fn module_context(module: &Path) -> Result<Pkcs11, CkError> {
    static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = modules.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Initialized by another part of the process (another library, or a test): use it.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e),
    }
    modules.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

/// A non-extractable AES-256 key that may encrypt and decrypt, or the reason why not.
fn check_key(session: &Session, key: ObjectHandle) -> Result<(), &'static str> {
    let attributes = session
        .get_attributes(
            key,
            &[
                AttributeType::ValueLen,
                AttributeType::Extractable,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
            ],
        )
        .map_err(|_| "its attributes cannot be read")?;
    let (mut len_ok, mut non_extractable, mut encrypt, mut decrypt) = (false, false, false, false);
    for attribute in attributes {
        match attribute {
            Attribute::ValueLen(len) => len_ok = usize::from(len) == DATA_KEY_LEN,
            Attribute::Extractable(extractable) => non_extractable = !extractable,
            Attribute::Encrypt(allowed) => encrypt = allowed,
            Attribute::Decrypt(allowed) => decrypt = allowed,
            _ => {}
        }
    }
    if !len_ok {
        return Err("not a 256-bit key");
    }
    if !non_extractable {
        return Err("CKA_EXTRACTABLE is not false");
    }
    if !(encrypt && decrypt) {
        return Err("CKA_ENCRYPT and CKA_DECRYPT must both be true");
    }
    Ok(())
}

/// RFC 7512 percent-encoding of a path attribute value: keeps unreserved characters.
fn pct_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// AES-256-GCM key wrapping by a non-extractable AES key on a PKCS#11 token.
///
/// Build it with [`Pkcs11KekBuilder`]. `Debug` shows the module, the key reference and the
/// pool size, never the PIN.
pub struct Pkcs11Kek {
    ctx: Pkcs11,
    slot: Slot,
    key: ObjectHandle,
    key_id: String,
    module: PathBuf,
    pool_size: usize,
    pool: Mutex<Vec<Session>>,
    /// Keeps the user logged in; never used for cryptography.
    _anchor: Mutex<Session>,
}

impl fmt::Debug for Pkcs11Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Kek")
            .field("module", &self.module)
            .field("key_id", &self.key_id)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// A session borrowed from the pool; returned on drop unless an error made it suspect.
struct Pooled<'a> {
    kek: &'a Pkcs11Kek,
    session: Option<Session>,
}

impl Pooled<'_> {
    fn session(&self) -> Result<&Session, KmsError> {
        self.session.as_ref().ok_or_else(|| KmsError::Unavailable {
            source: "PKCS#11 session already discarded".into(),
        })
    }

    /// Closes the session instead of returning it to the pool.
    fn discard(&mut self) {
        self.session = None;
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut pool = self.kek.pool.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < self.kek.pool_size {
                pool.push(session);
            }
        }
    }
}

impl Pkcs11Kek {
    /// A builder.
    pub fn builder() -> Pkcs11KekBuilder {
        Pkcs11KekBuilder::new()
    }

    fn session(&self) -> Result<Pooled<'_>, KmsError> {
        let idle = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let session = match idle {
            Some(session) => session,
            None => self
                .ctx
                .open_ro_session(self.slot)
                .map_err(|e| classify(e, false))?,
        };
        Ok(Pooled {
            kek: self,
            session: Some(session),
        })
    }

    fn aad(context: &EncryptionContext) -> Vec<u8> {
        let mut aad = WRAP_AAD_DOMAIN.to_vec();
        aad.extend_from_slice(&context.canonical_bytes());
        aad
    }

    /// Idle sessions in the pool now (for tests and metrics).
    #[must_use]
    pub fn idle_sessions(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Maps a PKCS#11 error onto [`KmsError`]. When `unwrapping`, every error that is not about the
/// token, the session or the login reads as [`KmsError::UnwrapFailed`] (tokens report a bad GCM
/// tag differently: SoftHSM says `CKR_GENERAL_ERROR`).
fn classify(e: CkError, unwrapping: bool) -> KmsError {
    let CkError::Pkcs11(rv, _) = &e else {
        return KmsError::Backend {
            backend: PROVIDER,
            source: Box::new(e),
        };
    };
    match rv {
        RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::DeviceRemoved
        | RvError::HostMemory
        | RvError::SessionClosed
        | RvError::SessionCount
        | RvError::SessionHandleInvalid
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::FunctionCanceled
        | RvError::CryptokiNotInitialized => KmsError::Unavailable {
            source: Box::new(e),
        },
        RvError::UserNotLoggedIn | RvError::PinExpired | RvError::KeyFunctionNotPermitted => {
            KmsError::PermissionDenied {
                key: String::from("pkcs11 key"),
                source: Box::new(e),
            }
        }
        RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => KmsError::KeyNotFound {
            key: String::from("pkcs11 key"),
            source: Box::new(e),
        },
        _ if unwrapping => KmsError::UnwrapFailed,
        _ => KmsError::Backend {
            backend: PROVIDER,
            source: Box::new(e),
        },
    }
}

fn backend(source: impl Into<BoxError>) -> KmsError {
    KmsError::Backend {
        backend: PROVIDER,
        source: source.into(),
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for Pkcs11Kek {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The token and key labels, as every wrap records them: a label on a token cannot be
    /// repointed the way an alias can, so this needs no call to the token.
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        KeyRef::new(PROVIDER, &self.key_id).map_err(backend)
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| backend(e.to_string()))?;
        let aad = Self::aad(context);
        let mut pooled = self.session()?;
        let encrypted = {
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(backend)?;
            pooled
                .session()?
                .encrypt(&Mechanism::AesGcm(params), self.key, key.expose_secret())
        };
        let encrypted = match encrypted {
            Ok(bytes) => bytes,
            Err(e) => {
                pooled.discard();
                return Err(classify(e, false));
            }
        };
        drop(pooled);
        if encrypted.len() != DATA_KEY_LEN.saturating_add(TAG_LEN) {
            return Err(backend(format!(
                "C_Encrypt returned {} bytes, expected {}",
                encrypted.len(),
                DATA_KEY_LEN.saturating_add(TAG_LEN)
            )));
        }
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&encrypted);
        let key_ref = KeyRef::new(PROVIDER, &self.key_id).map_err(backend)?;
        WrappedKey::new(key_ref, out).map_err(backend)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        let bytes = wrapped.bytes();
        if bytes.len() != WRAPPED_LEN {
            return Err(KmsError::UnwrapFailed);
        }
        let (iv, encrypted) = bytes.split_at(IV_LEN);
        let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| KmsError::UnwrapFailed)?;
        let aad = Self::aad(context);
        let mut pooled = self.session()?;
        let decrypted = {
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(backend)?;
            pooled
                .session()?
                .decrypt(&Mechanism::AesGcm(params), self.key, encrypted)
        };
        let decrypted = match decrypted {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) => {
                pooled.discard();
                return Err(classify(e, true));
            }
        };
        drop(pooled);
        DataKey::from_slice(&decrypted).ok_or(KmsError::UnwrapFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_never_shows_the_pin() {
        let builder = Pkcs11KekBuilder::new()
            .with_module("/nonexistent/libpkcs11.so")
            .with_token_label("tok")
            .with_key_label("kek")
            .with_pin("s3cr3t-pin-774411");
        let shown = format!("{builder:?} {builder:#?}");
        assert!(!shown.contains("s3cr3t-pin-774411"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
        assert!(shown.contains("tok"));
    }

    #[test]
    fn missing_settings_are_named() {
        let err = Pkcs11KekBuilder::new().build().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Missing {
                env: ENV_MODULE,
                ..
            }
        ));
        let err = Pkcs11KekBuilder::new()
            .with_module("/nonexistent/libpkcs11.so")
            .with_token_label("t")
            .with_key_label("k")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Missing { env: ENV_PIN, .. }));
        assert!(err.to_string().contains(ENV_PIN));
    }

    #[test]
    fn a_module_that_does_not_load_is_reported_without_the_pin() {
        let err = Pkcs11KekBuilder::new()
            .with_module("/nonexistent/libpkcs11.so")
            .with_token_label("t")
            .with_key_label("k")
            .with_pin("pin-that-must-not-show-0987")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Module { .. }));
        let report = crate::Report(&err).to_string();
        assert!(!report.contains("pin-that-must-not-show-0987"), "{report}");
    }

    #[test]
    fn key_ids_are_rfc7512_uris() {
        assert_eq!(pct_encode("my token/1"), "my%20token%2F1");
        assert_eq!(pct_encode("kek-A_1.~"), "kek-A_1.~");
    }
}
