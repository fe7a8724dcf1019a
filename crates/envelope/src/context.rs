//! The encryption context: the identity a ciphertext is bound to.

use std::collections::BTreeMap;

use crate::error::FormatError;
use crate::wire::Reader;

/// Most entries a context may have.
pub const MAX_CONTEXT_ENTRIES: usize = 32;
/// Longest key of a context entry, in bytes.
pub const MAX_CONTEXT_KEY_LEN: usize = 128;
/// Longest value of a context entry, in bytes.
pub const MAX_CONTEXT_VALUE_LEN: usize = 1024;

/// Key/value pairs that a ciphertext is bound to, such as the client id, the backup share pair
/// id, the curve and the purpose of a share.
///
/// A sealed envelope opens only when the caller names the same context, and the context goes
/// into every key-encryption-key wrap too, so it shows up in a KMS's audit log.
///
/// Its canonical encoding (see [`EncryptionContext::canonical_bytes`]) sorts the entries by key
/// and length-prefixes every key and value, so two different contexts never encode the same:
/// `{"ab": "c"}` and `{"a": "bc"}` differ, unlike with plain concatenation.
///
/// ```
/// use envelope::EncryptionContext;
///
/// let ctx = EncryptionContext::new()
///     .with("client-id", "cl_123")?
///     .with("curve", "SECP256K1")?;
/// assert_eq!(ctx.get("curve"), Some("SECP256K1"));
/// # Ok::<_, envelope::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    entries: BTreeMap<String, String>,
}

impl EncryptionContext {
    /// An empty context.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an entry.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] when the key is empty, a key or value is too long, or the
    /// context would have more than [`MAX_CONTEXT_ENTRIES`] entries.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), crate::Error> {
        let (key, value) = (key.into(), value.into());
        check_entry(&key, &value).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_CONTEXT_ENTRIES {
            return Err(crate::Error::Invalid(format!(
                "an encryption context has at most {MAX_CONTEXT_ENTRIES} entries"
            )));
        }
        self.entries.insert(key, value);
        Ok(())
    }

    /// Builder form of [`insert`](Self::insert).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn with(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, crate::Error> {
        self.insert(key, value)?;
        Ok(self)
    }

    /// A context of the given entries (a later entry with the same key replaces an earlier
    /// one).
    ///
    /// ```
    /// use envelope::EncryptionContext;
    ///
    /// let ctx = EncryptionContext::from_entries([("client-id", "cl_1"), ("purpose", "x")])?;
    /// assert_eq!(ctx, EncryptionContext::new().with("client-id", "cl_1")?.with("purpose", "x")?);
    /// # Ok::<_, envelope::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`insert`](Self::insert), for the first entry that breaks a rule.
    pub fn from_entries<K, V>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, crate::Error>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut context = Self::new();
        for (key, value) in entries {
            context.insert(key, value)?;
        }
        Ok(context)
    }

    /// The value of an entry.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The entries as a sorted string map, for KMSes that take maps (AWS `EncryptionContext`).
    #[must_use]
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// The number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every entry of `self` is in `other` with the same value.
    #[must_use]
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.entries
            .iter()
            .all(|(k, v)| other.entries.get(k) == Some(v))
    }

    /// The canonical encoding: a big-endian `u16` entry count, then for each entry in
    /// ascending byte order of keys: `u16` key length, key, `u16` value length, value (UTF-8).
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub(crate) fn encoded_len(&self) -> usize {
        // Bounded by the caps: at most 32 * (4 + 128 + 1024) + 2 bytes.
        self.entries
            .iter()
            .map(|(k, v)| 4usize.saturating_add(k.len()).saturating_add(v.len()))
            .fold(2usize, usize::saturating_add)
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        put_u16(out, self.entries.len());
        for (k, v) in &self.entries {
            put_u16(out, k.len());
            out.extend_from_slice(k.as_bytes());
            put_u16(out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// Parses a canonical encoding strictly: keys in strictly ascending order, UTF-8, within
    /// the caps, and nothing left over.
    ///
    /// # Errors
    /// [`FormatError`] naming the rule the bytes break.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, FormatError> {
        Ok(CanonicalContext::parse(bytes)?.to_context())
    }

    /// Whether `canonical` encodes exactly this context, without decoding it.
    pub(crate) fn matches(&self, canonical: CanonicalContext<'_>) -> bool {
        canonical.len() == self.entries.len()
            && canonical
                .entries()
                .zip(&self.entries)
                .all(|((k, v), (mk, mv))| k == mk && v == mv)
    }
}

/// A canonical context encoding borrowed from an envelope, validated once so that reading it
/// again needs no checks and no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CanonicalContext<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> CanonicalContext<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let len = usize::from(r.u16("context entry count")?);
        if len > MAX_CONTEXT_ENTRIES {
            return Err(FormatError::LimitExceeded {
                field: "context entry count",
                actual: len,
                limit: MAX_CONTEXT_ENTRIES,
            });
        }
        let mut previous: Option<&str> = None;
        for _ in 0..len {
            let key = r.str_u16("context key", MAX_CONTEXT_KEY_LEN)?;
            let value = r.str_u16("context value", MAX_CONTEXT_VALUE_LEN)?;
            check_entry(key, value)?;
            if previous.is_some_and(|p| p >= key) {
                return Err(FormatError::Invalid {
                    field: "context",
                    reason: "keys not in strictly ascending order",
                });
            }
            previous = Some(key);
        }
        r.finish()?;
        Ok(Self { bytes, len })
    }

    pub(crate) fn len(self) -> usize {
        self.len
    }

    pub(crate) fn bytes(self) -> &'a [u8] {
        self.bytes
    }

    /// The entries in key order.
    pub(crate) fn entries(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut r = Reader::new(self.bytes);
        let _count = r.u16("context entry count");
        std::iter::from_fn(move || {
            // Validated in `parse`: these reads cannot fail.
            let key = r.str_u16("context key", MAX_CONTEXT_KEY_LEN).ok()?;
            let value = r.str_u16("context value", MAX_CONTEXT_VALUE_LEN).ok()?;
            Some((key, value))
        })
    }

    pub(crate) fn to_context(self) -> EncryptionContext {
        EncryptionContext {
            entries: self
                .entries()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// Whether every entry of `self` is in `other` with the same value (both sorted).
    pub(crate) fn is_subset_of(self, other: Self) -> bool {
        let mut theirs = other.entries();
        self.entries()
            .all(|(k, v)| theirs.by_ref().any(|(ok, ov)| ok == k && ov == v))
    }
}

fn check_entry(key: &str, value: &str) -> Result<(), FormatError> {
    if key.is_empty() {
        return Err(FormatError::Invalid {
            field: "context key",
            reason: "empty",
        });
    }
    if key.len() > MAX_CONTEXT_KEY_LEN {
        return Err(FormatError::LimitExceeded {
            field: "context key length",
            actual: key.len(),
            limit: MAX_CONTEXT_KEY_LEN,
        });
    }
    if value.len() > MAX_CONTEXT_VALUE_LEN {
        return Err(FormatError::LimitExceeded {
            field: "context value length",
            actual: value.len(),
            limit: MAX_CONTEXT_VALUE_LEN,
        });
    }
    Ok(())
}

/// Appends a length that the caps keep below `u16::MAX`.
pub(crate) fn put_u16(out: &mut Vec<u8>, n: usize) {
    let n = u16::try_from(n).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_encoding_is_sorted_and_length_prefixed() {
        let ctx = EncryptionContext::new()
            .with("b", "2")
            .unwrap()
            .with("a", "1")
            .unwrap();
        assert_eq!(
            ctx.canonical_bytes(),
            [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']
        );
    }

    #[test]
    fn concatenation_ambiguity_does_not_collide() {
        let one = EncryptionContext::new().with("ab", "c").unwrap();
        let two = EncryptionContext::new().with("a", "bc").unwrap();
        assert_ne!(one.canonical_bytes(), two.canonical_bytes());
    }

    #[test]
    fn round_trips_and_rejects_unsorted() {
        let ctx = EncryptionContext::new()
            .with("client-id", "c1")
            .unwrap()
            .with("curve", "ED25519")
            .unwrap();
        let bytes = ctx.canonical_bytes();
        assert_eq!(
            EncryptionContext::from_canonical_bytes(&bytes).unwrap(),
            ctx
        );
        let unsorted = [0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0];
        assert!(matches!(
            EncryptionContext::from_canonical_bytes(&unsorted),
            Err(FormatError::Invalid { .. })
        ));
        let duplicate = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        assert!(EncryptionContext::from_canonical_bytes(&duplicate).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        assert!(EncryptionContext::new().with("", "x").is_err());
        assert!(EncryptionContext::new().with("k".repeat(129), "x").is_err());
        assert!(
            EncryptionContext::new()
                .with("k", "v".repeat(1025))
                .is_err()
        );
        let mut ctx = EncryptionContext::new();
        for i in 0..MAX_CONTEXT_ENTRIES {
            ctx.insert(format!("k{i:02}"), "v").unwrap();
        }
        assert!(ctx.insert("one-more", "v").is_err());
        ctx.insert("k00", "replaced").unwrap();
    }

    #[test]
    fn subset() {
        let small = EncryptionContext::new().with("a", "1").unwrap();
        let big = small.clone().with("b", "2").unwrap();
        assert!(small.is_subset_of(&big));
        assert!(!big.is_subset_of(&small));
        let other = EncryptionContext::new().with("a", "2").unwrap();
        assert!(!other.is_subset_of(&big));
    }
}
