//! Rotation: rewrap every stored ciphertext of some clients under a new keyring, without
//! re-encrypting a share and without a plaintext ever leaving the envelope code.

use bytes::Bytes;
use envelope::{Keyring, RewrapMode};
use serde::Serialize;
use storage::{PutOptions, ShareKind};

use crate::error::{Error, Result};
use crate::flow::Flow;

/// What [`Flow::rotate`] did.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RotateReport {
    /// Ciphertexts rewrapped under the new keyring in this run.
    pub rewrapped: usize,
    /// Ciphertexts already wrapped exactly under the new keyring (an earlier, interrupted
    /// run did them): left alone.
    pub already_current: usize,
}

impl Flow {
    /// Rewraps every client backup and client signing ciphertext of `client_ids` in the store
    /// so that exactly the KEKs of `to` can open them (this flow's keyring opens the old
    /// ones). Resumable: a ciphertext already under `to` is skipped, so running it again
    /// after an interruption finishes the rest.
    ///
    /// # Errors
    /// A store that cannot list (Portal) or overwrite, a ciphertext the current keyring
    /// cannot open, or a KMS failure. What was rewrapped before the error stays rewrapped.
    pub async fn rotate(&self, to: &Keyring, client_ids: &[String]) -> Result<RotateReport> {
        let mut report = RotateReport::default();
        for client_id in client_ids {
            let keys = self.list_client(client_id).await?;
            for key in keys {
                if !matches!(
                    key.kind(),
                    ShareKind::ClientBackup | ShareKind::ClientSigning
                ) {
                    continue;
                }
                let stored = self
                    .store
                    .get(&key)
                    .await
                    .map_err(Error::store("get", &key))?;
                let text = std::str::from_utf8(&stored).map_err(|_| Error::Drill {
                    key: key.to_string(),
                    reason: "the stored object is not an envelope",
                })?;
                let sealed = envelope::from_text(text).map_err(|e| Error::WrongIdentity {
                    key: key.to_string(),
                    source: e.into(),
                })?;
                if wrapped_exactly_by(&sealed, to) {
                    report.already_current = report.already_current.saturating_add(1);
                    continue;
                }
                let rewrapped = envelope::rewrap(&self.keyring, &sealed, to, RewrapMode::Replace)
                    .await
                    .map_err(Error::envelope("rewrapping a stored share"))?;
                let body = Bytes::from(envelope::to_text(&rewrapped).into_bytes());
                self.store
                    .put(&key, body, PutOptions::overwrite())
                    .await
                    .map_err(Error::store("put", &key))?;
                report.rewrapped = report.rewrapped.saturating_add(1);
            }
        }
        Ok(report)
    }
}

/// Whether the envelope's wrapped keys are exactly one per KEK of `keyring`.
fn wrapped_exactly_by(sealed: &[u8], keyring: &Keyring) -> bool {
    envelope::inspect(sealed).is_ok_and(|info| {
        info.wrapped_keys.len() == keyring.keks().len()
            && keyring
                .keks()
                .iter()
                .all(|kek| info.wrapped_keys.iter().any(|r| kek.can_unwrap(r)))
    })
}
