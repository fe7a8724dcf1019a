//! Types that hold secret bytes: the data key and decrypted plaintext.
//!
//! Both are zeroized on drop, are neither `Clone` nor `Serialize`, and print as `[REDACTED]`.
//! Every read of the secret bytes goes through a method named `expose_secret`, so an audit can
//! find them all with one search.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A 256-bit data-encryption key.
///
/// Not `Clone`, not `Serialize`; `Debug` is redacted; zeroized on drop. The key lives in a
/// box so that moving a `DataKey` never leaves copies of it behind on the stack.
///
/// ```compile_fail
/// let key = envelope::DataKey::generate().unwrap();
/// let copy = key.clone(); // a data key cannot be cloned
/// ```
///
/// ```compile_fail
/// fn needs_serialize<T: serde::Serialize>(_: &T) {}
/// let key = envelope::DataKey::generate().unwrap();
/// needs_serialize(&key); // a data key cannot be serialized
/// ```
pub struct DataKey(Box<Zeroizing<[u8; DATA_KEY_LEN]>>);

impl DataKey {
    /// Draws a fresh key from the operating system's random number generator.
    ///
    /// # Errors
    /// [`crate::Error::Random`] when the operating system cannot supply randomness.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut key = Self::zeroed();
        crate::random::fill(key.0.as_mut_slice())?;
        Ok(key)
    }

    /// Takes a key from a slice of exactly [`DATA_KEY_LEN`] bytes, for example a KMS's
    /// decrypt response. The caller should zeroize its own copy.
    ///
    /// Returns `None` when the slice has the wrong length.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Self::zeroed();
        if bytes.len() != DATA_KEY_LEN {
            return None;
        }
        key.0.copy_from_slice(bytes);
        Some(key)
    }

    /// Takes a key from an array and wipes the array.
    #[must_use]
    pub fn from_array(mut bytes: [u8; DATA_KEY_LEN]) -> Self {
        let mut key = Self::zeroed();
        key.0.copy_from_slice(&bytes);
        bytes.zeroize();
        key
    }

    /// The key bytes. Keep the borrow short and never copy them anywhere that outlives it.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }

    fn zeroed() -> Self {
        Self(Box::new(Zeroizing::new([0u8; DATA_KEY_LEN])))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// Decrypted bytes: a share, a key, anything that was sealed.
///
/// Not `Clone`, not `Serialize`; `Debug` shows the length only; zeroized on drop.
///
/// ```compile_fail
/// fn check(p: envelope::Plaintext) { let _ = p.clone(); }
/// ```
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The decrypted bytes.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The number of decrypted bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was sealed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hands the bytes over, still zeroizing.
    #[must_use]
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext([REDACTED; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = DataKey::from_array([0xAB; DATA_KEY_LEN]);
        for shown in [format!("{key:?}"), format!("{key:#?}")] {
            assert_eq!(shown, "DataKey([REDACTED])");
            assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        }
    }

    #[test]
    fn debug_never_shows_plaintext() {
        let p = Plaintext::new(Zeroizing::new(b"secret-share-bytes".to_vec()));
        for shown in [format!("{p:?}"), format!("{p:#?}")] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("18 bytes"), "{shown}");
        }
    }

    #[test]
    fn generated_keys_differ_and_are_not_zero() {
        let a = DataKey::generate().unwrap();
        let b = DataKey::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), &[0u8; DATA_KEY_LEN]);
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(DataKey::from_slice(&[1; 31]).is_none());
        assert!(DataKey::from_slice(&[1; 33]).is_none());
        assert_eq!(
            DataKey::from_slice(&[7; 32]).unwrap().expose_secret(),
            &[7; 32]
        );
    }
}
