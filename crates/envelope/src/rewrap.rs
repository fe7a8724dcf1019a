//! Rewrapping several envelopes that share one data key with one unwrap and one wrap.

use std::sync::{Arc, Mutex, PoisonError};

use crate::crypto::{GCM_TAG_LEN, KeySchedule};
use crate::error::{Error, Result};
use crate::format::{self, MAX_WRAPPED_KEYS, Parsed};
use crate::kek::{Keyring, WrappedKey};
use crate::open::{open_payload, unwrap_verified};
use crate::secret::DataKey;

/// How many data keys a [`Rewrapper`] keeps.
const REMEMBERED_KEYS: usize = 16;

/// Rewraps envelopes from one keyring to another, [replacing](crate::RewrapMode::Replace)
/// their wrapped keys, and remembers each data key it unwrapped with the wrapped keys it made
/// for it: the shares of one backup, sealed under one data key, then cost one unwrap and one
/// wrap per KEK of `to` together, and come out carrying *identical* wrapped keys, so that
/// opening them later costs one unwrap too (as right after the backup).
///
/// Like [`rewrap`](crate::rewrap), each envelope is proven intact (its header tag verified and
/// its payload decrypted into a zeroizing buffer) before it is rewrapped; a remembered key is
/// used only for an envelope whose header tag it verifies.
///
/// Keep one for a small, related batch (one client's objects): it holds up to 16 data keys
/// in memory (zeroized on drop).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use envelope::{EncryptionContext, KeyEncryptionKey, Keyring, Opener, Rewrapper, Sealer};
/// use envelope::local::LocalKek;
///
/// let kek = |k: LocalKek| Keyring::new().with(Arc::new(k) as Arc<dyn KeyEncryptionKey>);
/// let (old, new) = (kek(LocalKek::generate()?), kek(LocalKek::generate()?));
/// let ctx = |curve: &str| EncryptionContext::new().with("curve", curve);
/// let sealer = Sealer::new(&old, EncryptionContext::new()).await?;
/// let (a, b) = (sealer.seal(&ctx("SECP256K1")?, b"one")?, sealer.seal(&ctx("ED25519")?, b"two")?);
///
/// let rewrapper = Rewrapper::new(&old, &new);
/// let (a, b) = (rewrapper.rewrap(&a).await?, rewrapper.rewrap(&b).await?);
/// let (info_a, info_b) = (envelope::inspect(&a)?, envelope::inspect(&b)?);
/// assert_eq!(info_a.wrapped_keys, info_b.wrapped_keys); // one data key, one wrap
/// assert_eq!(Opener::new(&new).open(&ctx("ED25519")?, &b).await?.expose_secret(), b"two");
/// # Ok::<_, envelope::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Rewrapper<'k> {
    from: &'k Keyring,
    to: &'k Keyring,
    remembered: Mutex<Vec<Arc<Remembered>>>,
}

struct Remembered {
    /// The wrapped keys of the envelopes this data key came from.
    old: Vec<WrappedKey>,
    /// Canonical bytes of their KEK context.
    kek_context: Vec<u8>,
    keys: KeySchedule,
    /// What each of them gets instead.
    new: Vec<WrappedKey>,
}

impl std::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered")
            .field(
                "old",
                &self.old.iter().map(WrappedKey::key_ref).collect::<Vec<_>>(),
            )
            .field(
                "new",
                &self.new.iter().map(WrappedKey::key_ref).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<'k> Rewrapper<'k> {
    /// A rewrapper that opens with `from` and wraps under every KEK of `to`.
    #[must_use]
    pub fn new(from: &'k Keyring, to: &'k Keyring) -> Self {
        Self {
            from,
            to,
            remembered: Mutex::new(Vec::new()),
        }
    }

    /// The envelope with its wrapped keys replaced by wraps under `to`'s KEKs; the payload's
    /// bytes are unchanged.
    ///
    /// # Errors
    /// As [`rewrap`](crate::rewrap) with [`RewrapMode::Replace`](crate::RewrapMode::Replace).
    pub async fn rewrap(&self, envelope: &[u8]) -> Result<Vec<u8>> {
        if self.to.is_empty() {
            return Err(Error::Invalid(
                "rewrap needs at least one key-encryption key".into(),
            ));
        }
        let parsed = format::parse(envelope)?;
        let remembered = match self.recall(&parsed) {
            Some(remembered) => remembered,
            None => self.unwrap_and_wrap(&parsed).await?,
        };
        drop(open_payload(&remembered.keys, &parsed)?);
        Ok(assemble(
            &parsed,
            &remembered.keys,
            &remembered.new,
            envelope.len(),
        ))
    }

    fn recall(&self, parsed: &Parsed<'_>) -> Option<Arc<Remembered>> {
        let remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        remembered
            .iter()
            .filter(|r| {
                r.kek_context == parsed.kek_context.bytes()
                    && parsed.wrapped.iter().any(|w| r.old.iter().any(|o| w.is(o)))
            })
            .find(|r| {
                r.keys
                    .verify_header_tag(parsed.tagged_header, parsed.header_tag)
            })
            .map(Arc::clone)
    }

    async fn unwrap_and_wrap(&self, parsed: &Parsed<'_>) -> Result<Arc<Remembered>> {
        let (_, (key, keys)) = unwrap_verified(self.from.keks(), parsed).await?;
        let new = wrap_under(self.to, &key, parsed).await?;
        let remembered = Arc::new(Remembered {
            old: parsed.wrapped.iter().map(|w| w.to_wrapped_key()).collect(),
            kek_context: parsed.kek_context.bytes().to_vec(),
            keys,
            new,
        });
        let mut all = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if all.len() >= REMEMBERED_KEYS {
            all.remove(0);
        }
        all.push(Arc::clone(&remembered));
        Ok(remembered)
    }
}

/// One wrap of `key` under each KEK of `to` (two KEKs that wrap with the same key add one).
pub(crate) async fn wrap_under(
    to: &Keyring,
    key: &DataKey,
    parsed: &Parsed<'_>,
) -> Result<Vec<WrappedKey>> {
    let kek_context = parsed.kek_context.to_context();
    let mut wrapped: Vec<WrappedKey> = Vec::with_capacity(to.keks().len());
    for kek in to.keks() {
        let fresh = kek.wrap(key, &kek_context).await?;
        if !wrapped.iter().any(|w| w.key_ref() == fresh.key_ref()) {
            wrapped.push(fresh);
        }
    }
    if wrapped.len() > MAX_WRAPPED_KEYS {
        return Err(Error::Invalid(format!(
            "an envelope holds at most {MAX_WRAPPED_KEYS} wrapped keys"
        )));
    }
    Ok(wrapped)
}

/// The envelope again, with `wrapped` as its wrapped keys and a header tag over them.
pub(crate) fn assemble(
    parsed: &Parsed<'_>,
    keys: &KeySchedule,
    wrapped: &[WrappedKey],
    size_hint: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint.saturating_add(256));
    out.extend_from_slice(parsed.fixed_header);
    format::write_wrapped_keys(&mut out, wrapped);
    let tag = keys.header_tag(&out);
    out.extend_from_slice(&tag);
    format::write_payload_len(&mut out, parsed.payload.len().saturating_sub(GCM_TAG_LEN));
    out.extend_from_slice(parsed.payload);
    out
}
