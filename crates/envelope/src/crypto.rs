//! The cryptography of suite 1: HKDF-SHA-256 derives a payload key, a header-MAC key and a
//! nonce base from the data key; AES-256-GCM encrypts the payload; HMAC-SHA-256 over the
//! header authenticates it and commits the envelope to its one data key.
//!
//! Keys are derived once per data key, not per envelope, so that the two shares of a backup
//! sealed under one data key pay for one derivation and one AES key schedule.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::secret::DataKey;

/// Length of the AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub(crate) const GCM_TAG_LEN: usize = 16;
/// Length of the header tag.
pub(crate) const HEADER_TAG_LEN: usize = 32;

/// Short enough that each HKDF-Expand block is one SHA-256 compression (32 + 20 + 1 ≤ 55).
const KDF_INFO: &[u8] = b"PBEV v1 suite 0x0001";
const OKM_LEN: usize = 32 + 32 + NONCE_LEN;

/// The keys derived from one data key.
pub(crate) struct KeySchedule {
    payload: Aes256Gcm,
    /// HMAC-SHA-256 already keyed, cloned for each header.
    mac: Hmac<Sha256>,
    nonce_base: [u8; NONCE_LEN],
}

impl KeySchedule {
    pub(crate) fn derive(key: &DataKey) -> Self {
        let mut okm = Zeroizing::new([0u8; OKM_LEN]);
        Hkdf::<Sha256>::new(None, key.expose_secret())
            .expand(KDF_INFO, okm.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("76 bytes is a valid HKDF-SHA-256 output length"));
        let (enc, rest) = okm.split_at(32);
        let (mac, nonce_base) = rest.split_at(32);
        Self {
            payload: Aes256Gcm::new_from_slice(enc)
                .unwrap_or_else(|_| unreachable!("the payload key is 32 bytes")),
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(mac)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
            nonce_base: nonce_base
                .try_into()
                .unwrap_or_else(|_| unreachable!("the nonce base is 12 bytes")),
        }
    }

    /// The nonce of the `index`-th envelope sealed under this data key: the derived base
    /// XOR the index, so nonces never repeat under one key.
    pub(crate) fn nonce(&self, index: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.nonce_base;
        for (n, i) in nonce
            .iter_mut()
            .skip(NONCE_LEN - 8)
            .zip(index.to_be_bytes())
        {
            *n ^= i;
        }
        nonce
    }

    /// HMAC-SHA-256 over the header bytes. The MAC key derives from the data key, so the tag
    /// also commits the envelope to that one data key.
    pub(crate) fn header_tag(&self, header: &[u8]) -> [u8; HEADER_TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(header);
        mac.finalize().into_bytes().into()
    }

    /// Checks a header tag in constant time.
    pub(crate) fn verify_header_tag(&self, header: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(header);
        mac.verify_slice(tag).is_ok()
    }

    /// Appends the encryption of `plaintext` and its tag to `out`; the first `aad_len` bytes of
    /// `out` are the associated data. Encrypts straight from `plaintext` into `out`.
    pub(crate) fn seal_payload(
        &self,
        nonce: &[u8; NONCE_LEN],
        out: &mut Vec<u8>,
        aad_len: usize,
        plaintext: &[u8],
    ) -> Result<(), Error> {
        let start = out.len();
        out.resize(start.saturating_add(plaintext.len()), 0);
        let (head, dst) = out.split_at_mut(start);
        let aad = head
            .get(..aad_len)
            .ok_or_else(|| Error::Invalid("associated data beyond the header".into()))?;
        let buf = InOutBuf::new(plaintext, dst)
            .map_err(|_| Error::Invalid("payload buffer of the wrong length".into()))?;
        let tag = self
            .payload
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf)
            .map_err(|_| Error::Invalid("plaintext too long for AES-GCM".into()))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts ciphertext-and-tag into a zeroizing buffer.
    pub(crate) fn open_payload(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let split = sealed
            .len()
            .checked_sub(GCM_TAG_LEN)
            .ok_or(Error::Decrypt)?;
        let (ciphertext, tag) = sealed.split_at(split);
        let tag = Tag::try_from(tag).map_err(|_| Error::Decrypt)?;
        let mut plaintext = Zeroizing::new(vec![0u8; ciphertext.len()]);
        let buf =
            InOutBuf::new(ciphertext, plaintext.as_mut_slice()).map_err(|_| Error::Decrypt)?;
        self.payload
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf, &tag)
            .map_err(|_| Error::Decrypt)?;
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_per_index() {
        let ks = KeySchedule::derive(&DataKey::from_array([1; 32]));
        let n: std::collections::HashSet<_> = (0..1000).map(|i| ks.nonce(i)).collect();
        assert_eq!(n.len(), 1000);
        assert_ne!(ks.nonce(0), ks.nonce(u64::MAX));
    }
}
