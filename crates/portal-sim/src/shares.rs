//! MPC share material in Portal's formats, mathematically real.
//!
//! * Every wallet has a real private key ([`WalletKey`]); its public key is in `/clients/me`
//!   (`publicKey`), in every share (`pubkey`, `x`/`y`) and behind the wallet's address.
//! * Each share pair is a fresh 2-of-2 dealing of that key ([`eject::deal`]): a random line
//!   through the key evaluated at two random Birkhoff x values (rank 0), so a backup pair's
//!   client share and custodian share combine into the wallet's key, as Portal's do.
//! * Client shares (signing and backup) are **unpadded standard base64 of a JSON `MpcShare`**:
//!   `clientId`, `share` (a decimal big integer), `ssid` (base64), the pair id
//!   (`signingSharePairId` or `backupSharePairId`), `pubkey{X,Y}`, `partialPubkey`, `allY`,
//!   `p`, `q`, `pederson` and `bks`, with big integers of realistic length, so a share is about
//!   7 KiB of text like Portal's. The Paillier, Pedersen and partial-key values are random
//!   digits: eject does not read them.
//! * Custodian backup shares are the **JSON text** of the object Portal's Custodian API
//!   documents (`backupSharePairId`, `clientBk`, `pailler_p`, `pedersenClient_n`, ...).

use std::sync::Arc;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use portal_api::Curve;
use portal_api::SecretShare;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::rng::SimRng;

/// Digits of a 256-bit number (a coordinate).
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

/// A wallet's real private key and its public key, shared by every share of the wallet.
#[derive(Debug, Clone)]
pub(crate) struct WalletKey {
    curve: eject::Curve,
    /// The drawn key; every dealing reduces it the same way.
    secret: Arc<Zeroizing<[u8; 32]>>,
    /// The reduced key in hex (secp256k1 big-endian, ed25519 scalar little-endian).
    private_key_hex: Arc<Zeroizing<String>>,
    public: eject::PublicKey,
}

fn fill(rng: &mut SimRng) -> impl FnMut(&mut [u8]) + '_ {
    |buf: &mut [u8]| {
        let bytes = Zeroizing::new(rng.bytes(buf.len()));
        buf.copy_from_slice(&bytes);
    }
}

impl WalletKey {
    /// A fresh random key on `curve` (ed25519 for any curve the crate does not know).
    pub(crate) fn random(rng: &mut SimRng, curve: &Curve) -> Self {
        let curve = match curve {
            Curve::Secp256k1 => eject::Curve::Secp256k1,
            _ => eject::Curve::Ed25519,
        };
        loop {
            let drawn = Zeroizing::new(rng.bytes(32));
            let mut secret = Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(&drawn);
            // A key that reduces to zero (never in practice) is drawn again.
            if let Ok(dealt) = eject::deal(curve, &secret, &mut fill(rng)) {
                return Self {
                    curve,
                    secret: Arc::new(secret),
                    private_key_hex: Arc::new(dealt.private_key_hex()),
                    public: dealt.public_key().clone(),
                };
            }
        }
    }

    /// A fresh 2-of-2 dealing of this key: new line, new Birkhoff x values.
    fn deal(&self, rng: &mut SimRng) -> Option<eject::Dealt> {
        eject::deal(self.curve, &self.secret, &mut fill(rng)).ok()
    }

    /// `publicKey` as Portal shows it in `/clients/me`: stringified JSON.
    pub(crate) fn public_key_json(&self) -> String {
        self.public.portal_json()
    }

    /// The wallet's address: EIP-55 (secp256k1) or Solana (ed25519).
    pub(crate) fn address(&self) -> String {
        self.public.address()
    }

    /// The private key in hex, for tests that check an eject against the truth.
    pub(crate) fn private_key_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(self.private_key_hex.as_str().to_owned())
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

fn client_share_from(
    rng: &mut SimRng,
    client_id: &str,
    pair_id: &str,
    kind: PairKind,
    key: &WalletKey,
    dealt: &eject::Dealt,
) -> SecretShare {
    let id_field = match kind {
        PairKind::Signing => "signingSharePairId",
        PairKind::Backup => "backupSharePairId",
    };
    let ssid = STANDARD_NO_PAD.encode(rng.bytes(32));
    let share = dealt.client_share_decimal();
    let mut object = json!({
        "clientId": client_id,
        "share": share.as_str(),
        "ssid": ssid,
        "pubkey": {"X": key.public.x_decimal(), "Y": key.public.y_decimal()},
        "partialPubkey": {"client": point(rng), "server": point(rng)},
        "allY": {"client": point(rng), "server": point(rng)},
        "p": rng.decimal(D1024),
        "q": rng.decimal(D1024),
        "pederson": {"client": pedersen(rng), "server": pedersen(rng)},
        "bks": {
            "client": {"X": dealt.client_x_decimal(), "Rank": 0},
            "server": {"X": dealt.server_x_decimal(), "Rank": 0}
        }
    });
    if let Some(map) = object.as_object_mut() {
        map.insert(id_field.to_owned(), Value::String(pair_id.to_owned()));
    }
    let text = Zeroizing::new(object.to_string());
    drop(object);
    SecretShare::new(STANDARD_NO_PAD.encode(text.as_bytes()))
}

/// A signing client share: base64 (standard alphabet, no padding) of a JSON `MpcShare`, the
/// client half of a fresh dealing of the wallet's key.
pub(crate) fn signing_share(
    rng: &mut SimRng,
    client_id: &str,
    pair_id: &str,
    key: &WalletKey,
) -> SecretShare {
    let dealt = key.deal(rng);
    match dealt {
        Some(dealt) => client_share_from(rng, client_id, pair_id, PairKind::Signing, key, &dealt),
        None => SecretShare::new(String::new()),
    }
}

/// A backup share pair: the client backup share (base64 of a JSON `MpcShare`) and the custodian
/// backup share (the JSON text Portal documents for `custodianBackupShare` and sends to
/// Self-Managed Backup webhooks), the two halves of one fresh dealing of the wallet's key.
pub(crate) fn backup_shares(
    rng: &mut SimRng,
    client_id: &str,
    pair_id: &str,
    key: &WalletKey,
) -> (SecretShare, SecretShare) {
    let Some(dealt) = key.deal(rng) else {
        return (
            SecretShare::new(String::new()),
            SecretShare::new(String::new()),
        );
    };
    let client = client_share_from(rng, client_id, pair_id, PairKind::Backup, key, &dealt);
    let share = dealt.custodian_share_decimal();
    let mut d = |n| rng.decimal(n);
    let object = json!({
        "backupSharePairId": pair_id,
        "clientBk": dealt.client_x_decimal(),
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
        "serverBk": dealt.server_x_decimal(),
        "serverPartialPubKey_x": d(D256),
        "serverPartialPubKey_y": d(D256),
        "share": share.as_str(),
        "ssid": STANDARD_NO_PAD.encode(rng.bytes(32)),
        "x": key.public.x_decimal(),
        "y": key.public.y_decimal(),
        "yClient_x": rng.decimal(D256),
        "yClient_y": rng.decimal(D256),
        "yServer_x": rng.decimal(D256),
        "yServer_y": rng.decimal(D256),
    });
    let custodian = SecretShare::new(object.to_string());
    drop(object);
    (client, custodian)
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_shares_are_unpadded_base64_of_a_share_object() {
        let mut rng = SimRng::seeded(1);
        let key = WalletKey::random(&mut rng, &Curve::Secp256k1);
        let s = signing_share(&mut rng, "cl_1", "sp_1", &key);
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
        let again = signing_share(&mut rng, "cl_1", "sp_1", &key);
        assert_ne!(again, s);
    }

    #[test]
    fn backup_pairs_combine_into_the_wallet_key_on_both_curves() {
        let mut rng = SimRng::seeded(2);
        for (curve, eject_curve) in [
            (Curve::Secp256k1, eject::Curve::Secp256k1),
            (Curve::Ed25519, eject::Curve::Ed25519),
        ] {
            let key = WalletKey::random(&mut rng, &curve);
            let (client, custodian) = backup_shares(&mut rng, "cl_1", "bp_1", &key);
            let v: Value = serde_json::from_str(custodian.expose_secret()).unwrap();
            assert_eq!(v["backupSharePairId"], "bp_1");
            assert!(v["pedersenServer_t"].as_str().unwrap().len() == D2048);
            let client = eject::ClientShare::parse(client.expose_secret()).unwrap();
            let custodian = eject::CustodianShare::parse(custodian.expose_secret()).unwrap();
            let portal = key.public_key_json();
            let expected = eject::Expected {
                backup_share_pair_id: Some("bp_1"),
                portal_wallet_public_key: Some(&portal),
            };
            let rebuilt = eject::combine(eject_curve, &client, &custodian, &expected).unwrap();
            assert_eq!(rebuilt.private_key_hex(), key.private_key_hex());
            assert_eq!(rebuilt.portal_wallet_key(), eject::PortalKeyCheck::Matched);
            assert_eq!(rebuilt.public_key().address(), key.address());
            // A second backup is a new dealing of the same key.
            let (again, _) = backup_shares(&mut rng, "cl_1", "bp_2", &key);
            let again = eject::ClientShare::parse(again.expose_secret()).unwrap();
            assert!(
                eject::combine(
                    eject_curve,
                    &again,
                    &eject::CustodianShare::parse(
                        backup_shares(&mut rng, "cl_1", "bp_1", &key)
                            .1
                            .expose_secret()
                    )
                    .unwrap(),
                    &eject::Expected::default()
                )
                .is_err()
            );
        }
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
