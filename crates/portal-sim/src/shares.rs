//! Look-alike MPC share material in Portal's formats.
//!
//! * Client shares (signing and backup) are **unpadded standard base64 of a JSON `MpcShare`**:
//!   `clientId`, `share` (a decimal big integer), `ssid` (base64), the pair id
//!   (`signingSharePairId` or `backupSharePairId`), `pubkey{X,Y}`, `partialPubkey`, `allY`,
//!   `p`, `q`, `pederson` and `bks`, with big integers of realistic length, so a share is about
//!   7 KiB of text like Portal's.
//! * Custodian backup shares are the **JSON text** of the object Portal's Custodian API
//!   documents (`backupSharePairId`, `clientBk`, `pailler_p`, `pedersenClient_n`, ...).
//!
//! None of this is real key material: the numbers are random digits. Every call draws new ones.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use portal_api::SecretShare;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::rng::SimRng;

/// Digits of a 256-bit number (a share, a coordinate).
const D256: usize = 77;
/// Digits of a 1024-bit number (Paillier primes).
const D1024: usize = 309;
/// Digits of a 2048-bit number (Pedersen parameters).
const D2048: usize = 617;

/// Decodes base64 with or without `=` padding (Portal's own SDK writes none).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A wallet's public key, shared by every share of the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalletKey {
    x: String,
    y: String,
}

impl WalletKey {
    /// A fresh random public key.
    pub(crate) fn random(rng: &mut SimRng) -> Self {
        Self {
            x: rng.decimal(D256),
            y: rng.decimal(D256),
        }
    }

    /// `publicKey` as Portal shows it in `/clients/me`: stringified JSON.
    pub(crate) fn public_key_json(&self) -> String {
        json!({"X": self.x, "Y": self.y}).to_string()
    }
}

/// Which pair a client share belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PairKind {
    /// A signing share (`signingSharePairId`).
    Signing,
    /// A backup share (`backupSharePairId`).
    Backup,
}

fn point(rng: &mut SimRng) -> Value {
    json!({"X": rng.decimal(D256), "Y": rng.decimal(D256)})
}

fn pedersen(rng: &mut SimRng) -> Value {
    json!({"n": rng.decimal(D2048), "s": rng.decimal(D2048), "t": rng.decimal(D2048)})
}

/// A client share: base64 (standard alphabet, no padding) of a JSON `MpcShare`.
pub(crate) fn client_share(
    rng: &mut SimRng,
    client_id: &str,
    pair_id: &str,
    kind: PairKind,
    key: &WalletKey,
) -> SecretShare {
    let id_field = match kind {
        PairKind::Signing => "signingSharePairId",
        PairKind::Backup => "backupSharePairId",
    };
    let ssid = STANDARD_NO_PAD.encode(rng.bytes(32));
    let mut object = json!({
        "clientId": client_id,
        "share": rng.decimal(D256),
        "ssid": ssid,
        "pubkey": {"X": key.x, "Y": key.y},
        "partialPubkey": {"client": point(rng), "server": point(rng)},
        "allY": {"client": point(rng), "server": point(rng)},
        "p": rng.decimal(D1024),
        "q": rng.decimal(D1024),
        "pederson": {"client": pedersen(rng), "server": pedersen(rng)},
        "bks": {
            "client": {"X": rng.decimal(D256), "Rank": 0},
            "server": {"X": rng.decimal(D256), "Rank": 0}
        }
    });
    if let Some(map) = object.as_object_mut() {
        map.insert(id_field.to_owned(), Value::String(pair_id.to_owned()));
    }
    let text = Zeroizing::new(object.to_string());
    SecretShare::new(STANDARD_NO_PAD.encode(text.as_bytes()))
}

/// A custodian backup share: the JSON text Portal documents for `custodianBackupShare` and
/// sends to Self-Managed Backup webhooks.
pub(crate) fn custodian_backup_share(
    rng: &mut SimRng,
    client_id: &str,
    pair_id: &str,
    key: &WalletKey,
) -> SecretShare {
    let mut d = |n| rng.decimal(n);
    let object = json!({
        "backupSharePairId": pair_id,
        "clientBk": d(D256),
        "clientId": client_id,
        "clientPartialPubKey_x": d(D256),
        "clientPartialPubKey_y": d(D256),
        "pailler_p": d(D1024),
        "pailler_q": d(D1024),
        "pedersenClient_n": d(D2048),
        "pedersenClient_s": d(D2048),
        "pedersenClient_t": d(D2048),
        "pedersenServer_n": d(D2048),
        "pedersenServer_s": d(D2048),
        "pedersenServer_t": d(D2048),
        "serverBk": d(D256),
        "serverPartialPubKey_x": d(D256),
        "serverPartialPubKey_y": d(D256),
        "share": d(D256),
        "ssid": STANDARD_NO_PAD.encode(rng.bytes(32)),
        "x": key.x,
        "y": key.y,
        "yClient_x": rng.decimal(D256),
        "yClient_y": rng.decimal(D256),
        "yServer_x": rng.decimal(D256),
        "yServer_y": rng.decimal(D256),
    });
    SecretShare::new(object.to_string())
}

/// Why a share string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShareParseError {
    /// Not base64.
    Base64,
    /// Not a JSON object with `clientId`, `share` and `ssid` strings.
    Object,
}

/// Checks that a share string has Portal's shape: base64 (padding optional) of a JSON object
/// with string fields `clientId`, `share` (decimal) and `ssid`.
pub(crate) fn check_share_shape(share: &str) -> Result<(), ShareParseError> {
    let bytes = Zeroizing::new(
        LENIENT
            .decode(share.trim())
            .map_err(|_| ShareParseError::Base64)?,
    );
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| ShareParseError::Object)?;
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    match (field("clientId"), field("share"), field("ssid")) {
        (Some(_), Some(s), Some(_)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(())
        }
        _ => Err(ShareParseError::Object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_shares_are_unpadded_base64_of_a_share_object() {
        let mut rng = SimRng::seeded(1);
        let key = WalletKey::random(&mut rng);
        let s = client_share(&mut rng, "cl_1", "sp_1", PairKind::Signing, &key);
        let text = s.expose_secret();
        assert!(!text.contains('='));
        assert!(text.len() > 4096, "{}", text.len());
        let decoded = STANDARD_NO_PAD.decode(text).unwrap();
        let v: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(v["clientId"], "cl_1");
        assert_eq!(v["signingSharePairId"], "sp_1");
        assert!(v.get("backupSharePairId").is_none());
        assert_eq!(
            serde_json::from_str::<Value>(&key.public_key_json()).unwrap()["X"],
            v["pubkey"]["X"]
        );
        assert_eq!(check_share_shape(text), Ok(()));
        let again = client_share(&mut rng, "cl_1", "sp_1", PairKind::Signing, &key);
        assert_ne!(again, s);
    }

    #[test]
    fn custodian_shares_are_json_text() {
        let mut rng = SimRng::seeded(2);
        let key = WalletKey::random(&mut rng);
        let s = custodian_backup_share(&mut rng, "cl_1", "bp_1", &key);
        let v: Value = serde_json::from_str(s.expose_secret()).unwrap();
        assert_eq!(v["backupSharePairId"], "bp_1");
        assert!(v["pedersenServer_t"].as_str().unwrap().len() == D2048);
    }

    #[test]
    fn shape_check_refuses_garbage() {
        assert_eq!(check_share_shape("%%%"), Err(ShareParseError::Base64));
        assert_eq!(check_share_shape("e30"), Err(ShareParseError::Object)); // "{}"
        // {"clientId":"","share":"12","ssid":"a"} with padding is accepted.
        let padded = base64::engine::general_purpose::STANDARD
            .encode(r#"{"clientId":"","share":"12","ssid":"a"}"#);
        assert_eq!(check_share_shape(&padded), Ok(()));
    }
}
