//! Secret strings: MPC share material and bearer credentials.
//!
//! Both types wrap a [`Zeroizing<String>`](zeroize::Zeroizing): the bytes are overwritten when
//! the value is dropped, `Debug` prints a fixed placeholder, there is no `Display`, and the only
//! way to read the value is [`expose_secret`](SecretShare::expose_secret), so every access can be
//! found by searching for that one name.
//!
//! They are deliberately **not** `Clone`:
//!
//! ```compile_fail
//! let share = portal_api::SecretShare::new("s3cr3t".to_owned());
//! let _copy = share.clone();
//! ```
//!
//! ```compile_fail
//! let key = portal_api::ApiKey::new("pk_live_x".to_owned());
//! let _copy = key.clone();
//! ```
//!
//! They do implement `Serialize`, because request bodies and the simulator's responses must put
//! them on the wire; serializing is the second audited way out and only happens inside the wire
//! types of this crate.
//!
//! # Known gaps
//! Zeroizing is best effort. Buffers owned by other libraries (serde_json's scratch buffer for
//! strings with escapes, TLS and HTTP buffers) are not under our control and are not wiped.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

macro_rules! secret_string {
    ($(#[$meta:meta])* $name:ident, $label:literal) => {
        $(#[$meta])*
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// Wraps a string. The string is moved, not copied, so no unwiped copy is left behind.
            #[must_use]
            pub fn new(value: String) -> Self {
                Self(Zeroizing::new(value))
            }

            /// Returns the secret value. This is the one audited way to read it.
            #[must_use]
            pub fn expose_secret(&self) -> &str {
                self.0.as_str()
            }

            /// Length of the secret in bytes (safe to log).
            #[must_use]
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether the secret is the empty string.
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// Takes decrypted UTF-8 bytes without leaving an unwiped copy behind: the
            /// buffer becomes the string, and bytes that are not UTF-8 are wiped and give
            /// `None`.
            #[must_use]
            pub fn from_utf8(bytes: Zeroizing<Vec<u8>>) -> Option<Self> {
                let mut bytes = bytes;
                match String::from_utf8(std::mem::take(&mut *bytes)) {
                    Ok(text) => Some(Self::new(text)),
                    Err(e) => {
                        drop(Zeroizing::new(e.into_bytes()));
                        None
                    }
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value.to_owned())
            }
        }

        impl From<Zeroizing<String>> for $name {
            fn from(value: Zeroizing<String>) -> Self {
                Self(value)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "([REDACTED])"))
            }
        }

        impl PartialEq for $name {
            /// Compares in time independent of where the first difference is (the length
            /// is not hidden).
            fn eq(&self, other: &Self) -> bool {
                constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.expose_secret())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_string(SecretVisitor).map(Self)
            }
        }
    };
}

secret_string!(
    /// MPC share material: one share string, or a JSON string that embeds shares (the
    /// `generateResponse` of `/v1/backup`, the `backupResponse` of `/v1/recover`, a custodian
    /// backup share).
    ///
    /// Redacted `Debug`, zeroized on drop, not `Clone`; read it with
    /// [`expose_secret`](Self::expose_secret).
    SecretShare,
    "SecretShare"
);

secret_string!(
    /// A bearer credential: a Client API Key, a Client Session Token or a Custodian (Portal)
    /// API Key.
    ///
    /// Redacted `Debug`, zeroized on drop, not `Clone`; read it with
    /// [`expose_secret`](Self::expose_secret).
    ApiKey,
    "ApiKey"
);

/// Builds the secret directly from the deserializer's string without an intermediate copy
/// where the format allows it.
struct SecretVisitor;

impl Visitor<'_> for SecretVisitor {
    type Value = Zeroizing<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v))
    }
}

/// Equality whose running time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LXNoYXJlLW1hdGVyaWFs";

    #[test]
    fn debug_never_shows_the_value() {
        let share = SecretShare::new(SECRET.to_owned());
        let key = ApiKey::from(SECRET);
        for text in [
            format!("{share:?}"),
            format!("{share:#?}"),
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{:?}", Some(&share)),
        ] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(text.contains("REDACTED"), "{text}");
        }
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let share: SecretShare = serde_json::from_str(&format!("\"{SECRET}\"")).unwrap();
        assert_eq!(share.expose_secret(), SECRET);
        assert_eq!(share.len(), SECRET.len());
        assert_eq!(
            serde_json::to_string(&share).unwrap(),
            format!("\"{SECRET}\"")
        );
        // Escaped strings go through the owned path.
        let escaped: ApiKey = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(escaped.expose_secret(), "a\"b");
    }

    #[test]
    fn equality() {
        assert_eq!(SecretShare::from("abc"), SecretShare::from("abc"));
        assert_ne!(SecretShare::from("abc"), SecretShare::from("abd"));
        assert_ne!(SecretShare::from("abc"), SecretShare::from("abcd"));
        assert!(SecretShare::from("").is_empty());
    }

    #[test]
    fn from_utf8_takes_text_and_refuses_the_rest() {
        let text = SecretShare::from_utf8(Zeroizing::new(b"abc".to_vec())).unwrap();
        assert_eq!(text.expose_secret(), "abc");
        assert!(SecretShare::from_utf8(Zeroizing::new(vec![0xff, 0xfe])).is_none());
    }
}
