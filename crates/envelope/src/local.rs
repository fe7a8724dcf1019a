//! The `local` key-encryption key: AES-256-GCM under a 32-byte key held in a file or an
//! environment variable. For development, tests, and teams whose key file lives on an
//! encrypted volume or in a secret manager; a KMS or HSM keeps the key out of the process.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::kek::{KeyEncryptionKey, KeyRef, WrappedKey};
use crate::secret::{DATA_KEY_LEN, DataKey};

/// The provider name recorded in envelopes.
pub const PROVIDER: &str = "local";
/// The environment variable [`LocalKek::from_env`] reads.
pub const ENV_VAR: &str = "PORTAL_BACKUP_LOCAL_KEK";

const KEY_PREFIX: &str = "portal-backup-local-kek-v1:";
const WRAP_AAD_DOMAIN: &[u8] = b"portal-backup local-kek wrap v1\0";
const FINGERPRINT_DOMAIN: &[u8] = b"portal-backup local-kek fingerprint v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// nonce ‖ encrypted data key ‖ tag
const WRAPPED_LEN: usize = NONCE_LEN + DATA_KEY_LEN + TAG_LEN;

/// Why a local key could not be loaded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalKeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file can be read by its group or by others.
    #[error(
        "key file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is owned by another user than the one running the process: that user
    /// could replace the key (root is not exempt).
    #[error(
        "key file {path} is owned by uid {owner}, not by the user running this process (uid {user}); chown it to that user"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The effective user id of this process.
        user: u32,
    },
    /// The key is not in the `portal-backup-local-kek-v1:<base64 of 32 bytes>` form.
    #[error("{origin} does not hold a local key-encryption key in the expected form")]
    Malformed {
        /// Where the key came from (a path or the environment variable's name).
        origin: String,
    },
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    /// The operating system's RNG failed.
    #[error("could not generate a key")]
    Random(#[source] crate::Error),
}

/// AES-256-GCM key wrapping under a local 32-byte key.
///
/// Each wrap uses a fresh random nonce and binds the canonical encryption context as AAD. The
/// [`key_id`](KeyEncryptionKey::key_id) is a fingerprint (an HMAC of a fixed label under the
/// key), never the key.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("kek");
/// let kek = envelope::local::LocalKek::generate_file(&path)?;
/// let same = envelope::local::LocalKek::from_file(&path)?;
/// use envelope::KeyEncryptionKey;
/// assert_eq!(kek.key_id(), same.key_id());
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct LocalKek {
    cipher: Aes256Gcm,
    key_id: String,
}

impl LocalKek {
    /// A KEK with a fresh random key held only in memory (tests, demos).
    ///
    /// # Errors
    /// [`crate::Error::Random`] when the system RNG fails.
    pub fn generate() -> Result<Self, crate::Error> {
        let key = DataKey::generate()?;
        Ok(Self::from_key(key.expose_secret()))
    }

    /// A KEK from raw key bytes.
    #[must_use]
    pub fn from_key(key: &[u8; DATA_KEY_LEN]) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(FINGERPRINT_DOMAIN);
        let fingerprint = mac.finalize().into_bytes();
        let key_id = format!(
            "fp:{}",
            hex::encode(fingerprint.get(..16).unwrap_or_default())
        );
        Self {
            cipher: Aes256Gcm::new(key.into()),
            key_id,
        }
    }

    /// Writes a new random key to `path` (which must not exist) with mode 0600, and returns
    /// the KEK.
    ///
    /// # Errors
    /// [`LocalKeyError::Io`] when the file exists or cannot be written.
    pub fn generate_file(path: &Path) -> Result<Self, LocalKeyError> {
        let key = DataKey::generate().map_err(LocalKeyError::Random)?;
        // Sized up front: a string that grows would leave copies of the key behind.
        let encoded_len = key.expose_secret().len().div_ceil(3).saturating_mul(4);
        let mut text = Zeroizing::new(String::with_capacity(
            KEY_PREFIX
                .len()
                .saturating_add(encoded_len)
                .saturating_add(1),
        ));
        let capacity = text.capacity();
        text.push_str(KEY_PREFIX);
        STANDARD.encode_string(key.expose_secret(), &mut text);
        text.push('\n');
        debug_assert_eq!(text.capacity(), capacity, "the key file text reallocated");
        let io = |source| LocalKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_parent_dir(path).map_err(io)?;
        Ok(Self::from_key(key.expose_secret()))
    }

    /// Loads the key from a file written by [`generate_file`](Self::generate_file). Refuses a
    /// file that its group or others can read, and (on Unix) one not owned by the user running
    /// the process: root is not exempt, since whoever owns the file can replace the key.
    ///
    /// # Errors
    /// [`LocalKeyError`] for an unreadable, too open, foreign-owned or malformed file.
    pub fn from_file(path: &Path) -> Result<Self, LocalKeyError> {
        let io = |source| LocalKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        #[cfg(unix)]
        check_private(
            path,
            &file.metadata().map_err(io)?,
            rustix::process::geteuid().as_raw(),
        )?;
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut std::io::BufReader::new(file), &mut text).map_err(io)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Loads the key from the environment variable [`ENV_VAR`], in the same form as the file.
    ///
    /// # Errors
    /// [`LocalKeyError::MissingEnv`] or [`LocalKeyError::Malformed`].
    pub fn from_env() -> Result<Self, LocalKeyError> {
        let value =
            Zeroizing::new(std::env::var(ENV_VAR).map_err(|_| LocalKeyError::MissingEnv(ENV_VAR))?);
        Self::parse(&value, ENV_VAR)
    }

    fn parse(text: &str, origin: &str) -> Result<Self, LocalKeyError> {
        let malformed = || LocalKeyError::Malformed {
            origin: origin.to_owned(),
        };
        let encoded = text.trim().strip_prefix(KEY_PREFIX).ok_or_else(malformed)?;
        let bytes = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| malformed())?);
        let key: &[u8; DATA_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self::from_key(key))
    }

    fn aad(context: &EncryptionContext) -> Vec<u8> {
        let mut aad =
            Vec::with_capacity(WRAP_AAD_DOMAIN.len().saturating_add(context.encoded_len()));
        aad.extend_from_slice(WRAP_AAD_DOMAIN);
        context.encode_into(&mut aad);
        aad
    }

    fn key_ref(&self) -> KeyRef {
        // "local" and "fp:" + 32 hex digits pass `KeyRef::check`.
        KeyRef::validated(PROVIDER, &self.key_id)
    }
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for LocalKek {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The fingerprint, as every wrap records it (a local key never changes).
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        Ok(self.key_ref())
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::random::fill(&mut nonce).map_err(rng_error)?;
        self.wrap_with_nonce(key, context, nonce)
    }

    /// Draws the data key and the wrap nonce with one system call instead of two.
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        let mut random = Zeroizing::new([0u8; DATA_KEY_LEN + NONCE_LEN]);
        crate::random::fill(random.as_mut_slice()).map_err(rng_error)?;
        let (key, nonce) = random.split_at(DATA_KEY_LEN);
        let key = DataKey::from_slice(key).ok_or(KmsError::UnwrapFailed)?;
        let nonce = nonce.try_into().map_err(|_| KmsError::UnwrapFailed)?;
        let wrapped = self.wrap_with_nonce(&key, context, nonce)?;
        Ok((key, wrapped))
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
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(DATA_KEY_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| KmsError::UnwrapFailed)?;
        let tag = Tag::try_from(tag).map_err(|_| KmsError::UnwrapFailed)?;
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        key.copy_from_slice(body);
        self.cipher
            .decrypt_inout_detached(&nonce, &Self::aad(context), key.as_mut_slice().into(), &tag)
            .map_err(|_| KmsError::UnwrapFailed)?;
        Ok(DataKey::from_array(*key))
    }
}

/// A key file must be readable by its owner only, and owned by the user running the process
/// (`user`, the effective uid). Root gets no exception: a file another user owns is a file that
/// user can replace, choosing the key every new backup is sealed under.
#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata, user: u32) -> Result<(), LocalKeyError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LocalKeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.uid() != user {
        return Err(LocalKeyError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            user,
        });
    }
    Ok(())
}

fn rng_error(e: crate::Error) -> KmsError {
    KmsError::Backend {
        backend: PROVIDER,
        source: Box::new(e),
    }
}

impl LocalKek {
    fn wrap_with_nonce(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
        nonce: [u8; NONCE_LEN],
    ) -> Result<WrappedKey, KmsError> {
        let mut out = vec![0u8; WRAPPED_LEN];
        let (nonce_out, rest) = out.split_at_mut(NONCE_LEN);
        nonce_out.copy_from_slice(&nonce);
        let (body, tag_out) = rest.split_at_mut(DATA_KEY_LEN);
        body.copy_from_slice(key.expose_secret());
        let nonce = Nonce::from(nonce);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &Self::aad(context), body.into())
            .map_err(|_| KmsError::UnwrapFailed)?;
        tag_out.copy_from_slice(&tag);
        // 60 bytes pass `WrappedKey::check`.
        Ok(WrappedKey::validated(self.key_ref(), out))
    }
}

/// Makes a new file's directory entry durable: without it a crash right after `keygen` can
/// lose the file although its contents were synced.
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_fingerprint_only() {
        let key = [0x5Au8; 32];
        let kek = LocalKek::from_key(&key);
        let shown = format!("{kek:?} {kek:#?}");
        assert!(shown.contains("fp:"));
        assert!(!shown.contains(&hex::encode(key)));
        assert!(!shown.contains(&STANDARD.encode(key)));
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let kek = LocalKek::generate_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            LocalKek::generate_file(&path),
            Err(LocalKeyError::Io { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(LocalKek::from_file(&path).unwrap().key_id(), kek.key_id());
    }

    #[cfg(unix)]
    #[test]
    fn readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        LocalKek::generate_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = LocalKek::from_file(&path).unwrap_err();
        assert!(matches!(
            err,
            LocalKeyError::Permissions { mode: 0o640, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
    }

    /// As root (the tests' usual user here) the file is chowned to `nobody` and refused: root
    /// is not exempt. As another user, chown to someone else is not permitted, so the same
    /// rule is checked on the file's real metadata against a different user id.
    #[cfg(unix)]
    #[test]
    fn a_key_file_owned_by_another_user_is_refused() {
        use std::os::unix::fs::MetadataExt as _;
        const NOBODY: u32 = 65534;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        LocalKek::generate_file(&path).unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), me);
        LocalKek::from_file(&path).unwrap();

        let err = if me == 0 {
            std::os::unix::fs::chown(&path, Some(NOBODY), None).unwrap();
            LocalKek::from_file(&path).unwrap_err()
        } else {
            let meta = std::fs::metadata(&path).unwrap();
            check_private(&path, &meta, me.wrapping_add(1)).unwrap_err()
        };
        assert!(
            matches!(err, LocalKeyError::Owner { owner, .. } if owner == if me == 0 { NOBODY } else { me }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chown"), "{err}");
        if me == 0 {
            std::os::unix::fs::chown(&path, Some(0), None).unwrap();
            LocalKek::from_file(&path).unwrap();
        }
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        for text in [
            "",
            "portal-backup-local-kek-v1:",
            "portal-backup-local-kek-v1:AAAA",
            "other-prefix:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            let err = LocalKek::parse(text, "test").unwrap_err();
            assert!(matches!(err, LocalKeyError::Malformed { .. }));
        }
    }

    #[test]
    fn wrap_layout_and_context_binding() {
        let kek = LocalKek::generate().unwrap();
        let ctx = EncryptionContext::new().with("a", "1").unwrap();
        let key = DataKey::generate().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let wrapped = rt.block_on(kek.wrap(&key, &ctx)).unwrap();
        assert_eq!(wrapped.bytes().len(), WRAPPED_LEN);
        assert_eq!(wrapped.key_ref().provider(), PROVIDER);
        let back = rt.block_on(kek.unwrap(&wrapped, &ctx)).unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
        let other = EncryptionContext::new().with("a", "2").unwrap();
        assert!(matches!(
            rt.block_on(kek.unwrap(&wrapped, &other)),
            Err(KmsError::UnwrapFailed)
        ));
    }
}
