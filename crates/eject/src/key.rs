//! The rebuilt key and its encodings.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::ser::{SerializeStruct as _, Serializer};
use zeroize::Zeroizing;

use crate::decimal::format_be32;
use crate::shares::{Affine, Be32};
use crate::{ed25519, secp256k1};

/// The curve of a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Curve {
    /// secp256k1 (EVM chains, Bitcoin).
    Secp256k1,
    /// ed25519 (Solana).
    Ed25519,
}

impl Curve {
    /// Portal's name: `SECP256K1` or `ED25519`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secp256k1 => "SECP256K1",
            Self::Ed25519 => "ED25519",
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A curve name that is neither secp256k1 nor ed25519.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown curve {0:?}: expected secp256k1 or ed25519")]
pub struct UnknownCurve(pub String);

impl FromStr for Curve {
    type Err = UnknownCurve;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "secp256k1" => Ok(Self::Secp256k1),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(UnknownCurve(s.to_owned())),
        }
    }
}

/// A wallet's public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    curve: Curve,
    affine: Affine,
    encoded: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("curve", &self.curve)
            .field("hex", &self.to_hex())
            .finish()
    }
}

impl PublicKey {
    pub(crate) fn of(curve: Curve, secret: &[u8; 32]) -> crate::Result<Self> {
        let (affine, encoded) = match curve {
            Curve::Secp256k1 => secp256k1::public_point(secret)?,
            Curve::Ed25519 => ed25519::public_point(secret)?,
        };
        Ok(Self {
            curve,
            affine,
            encoded,
        })
    }

    pub(crate) fn affine(&self) -> &Affine {
        &self.affine
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The affine x coordinate in decimal, as Portal writes it.
    #[must_use]
    pub fn x_decimal(&self) -> String {
        format_be32(&self.affine.x).to_string()
    }

    /// The affine y coordinate in decimal, as Portal writes it.
    #[must_use]
    pub fn y_decimal(&self) -> String {
        format_be32(&self.affine.y).to_string()
    }

    /// Hex of the standard encoding: secp256k1 SEC1 uncompressed (`04‖X‖Y`, 65 bytes); ed25519
    /// RFC 8032 (32 bytes).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex_lower(&self.encoded)
    }

    /// `publicKey` as Portal's `/clients/me` shows it: `{"X": "<decimal>", "Y": "<decimal>"}`.
    #[must_use]
    pub fn portal_json(&self) -> String {
        serde_json::json!({"X": self.x_decimal(), "Y": self.y_decimal()}).to_string()
    }

    /// The address: EIP-55 checksummed Ethereum address (secp256k1) or Solana address (ed25519,
    /// base58 of the 32-byte encoding).
    #[must_use]
    pub fn address(&self) -> String {
        match self.curve {
            Curve::Secp256k1 => secp256k1::eip55_address(&self.affine),
            Curve::Ed25519 => ed25519::solana_address(&self.encoded),
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    push_hex(&mut out, bytes);
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        for n in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(n), 16).unwrap_or('0'));
        }
    }
}

/// Whether the rebuilt key was also compared with the wallet's `publicKey` at Portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortalKeyCheck {
    /// It equals the key's public point.
    Matched,
    /// Portal's value does not parse as a point (Portal documents it only as "stringified
    /// JSON"): the key was checked against both shares' public keys only.
    Unparsable,
    /// No Portal value was given (offline eject, or shares from files).
    NotAvailable,
}

impl PortalKeyCheck {
    /// A sentence for reports.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Matched => "matches the wallet's public key at Portal",
            Self::Unparsable => {
                "not checked against Portal's wallet key (its publicKey does not parse as a point)"
            }
            Self::NotAvailable => "not checked against Portal's wallet key (Portal not consulted)",
        }
    }
}

/// A private key rebuilt from two backup shares and verified against the public key of both
/// shares (and Portal's, see [`portal_wallet_key`](Self::portal_wallet_key)).
///
/// The key bytes are wiped on drop; `Debug` is redacted; not `Clone`. The only ways to the key are
/// [`private_key_hex`](Self::private_key_hex), [`private_key_base58`](Self::private_key_base58)
/// and `Serialize` (for the key file); each returns or writes into a wiped buffer.
pub struct RebuiltKey {
    pub(crate) curve: Curve,
    pub(crate) secret: Be32,
    pub(crate) public: PublicKey,
    pub(crate) pair_id: Option<String>,
    pub(crate) portal: PortalKeyCheck,
}

impl fmt::Debug for RebuiltKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RebuiltKey")
            .field("curve", &self.curve)
            .field("public", &self.public)
            .field("backup_share_pair_id", &self.pair_id)
            .field("portal_wallet_key", &self.portal)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// What the ed25519 value is, said in every output that carries it.
pub const ED25519_SCALAR_NOTE: &str = "ed25519 private scalar (32 bytes, little-endian), NOT an RFC 8032 seed: it cannot be turned into a standard Solana keypair file; import it only into software that signs with a raw scalar";
/// What the secp256k1 value is.
pub const SECP256K1_KEY_NOTE: &str =
    "secp256k1 private key (32 bytes, big-endian hex), the form Ethereum wallets import";

impl RebuiltKey {
    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The verified public key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The backup share pair the shares came from (when they name it).
    #[must_use]
    pub fn backup_share_pair_id(&self) -> Option<&str> {
        self.pair_id.as_deref()
    }

    /// Whether Portal's wallet key was compared too.
    #[must_use]
    pub fn portal_wallet_key(&self) -> PortalKeyCheck {
        self.portal
    }

    /// The private key as 64 lowercase hex digits: secp256k1 big-endian (an Ethereum private
    /// key); ed25519 the scalar little-endian (see [`ED25519_SCALAR_NOTE`]).
    #[must_use]
    pub fn private_key_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        push_hex(&mut out, self.secret.as_slice());
        out
    }

    /// ed25519 only: the little-endian scalar in base58, Portal's eject format.
    #[must_use]
    pub fn private_key_base58(&self) -> Option<Zeroizing<String>> {
        match self.curve {
            Curve::Ed25519 => {
                let mut out = Zeroizing::new(String::with_capacity(64));
                bs58::encode(self.secret.as_slice()).onto(&mut *out).ok()?;
                Some(out)
            }
            Curve::Secp256k1 => None,
        }
    }

    /// What the private key value is (a sentence for the key file).
    #[must_use]
    pub fn private_key_note(&self) -> &'static str {
        match self.curve {
            Curve::Secp256k1 => SECP256K1_KEY_NOTE,
            Curve::Ed25519 => ED25519_SCALAR_NOTE,
        }
    }
}

/// The key file entry: `curve`, `privateKeyHex`, `privateKeyBase58` (ed25519), `privateKey`
/// (what it is), `publicKey` (hex), `publicKeyX`/`publicKeyY` (decimal), `address`,
/// `backupSharePairId`, `checkedAgainst`. Write it only to a private file.
impl Serialize for RebuiltKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.private_key_hex();
        let base58 = self.private_key_base58();
        let mut s = serializer.serialize_struct("RebuiltKey", 10)?;
        s.serialize_field("curve", self.curve.as_str())?;
        s.serialize_field("privateKeyHex", hex.as_str())?;
        if let Some(b58) = &base58 {
            s.serialize_field("privateKeyBase58", b58.as_str())?;
        }
        s.serialize_field("privateKey", self.private_key_note())?;
        s.serialize_field("publicKey", &self.public.to_hex())?;
        s.serialize_field("publicKeyX", &self.public.x_decimal())?;
        s.serialize_field("publicKeyY", &self.public.y_decimal())?;
        s.serialize_field(
            match self.curve {
                Curve::Secp256k1 => "ethereumAddress",
                Curve::Ed25519 => "solanaAddress",
            },
            &self.public.address(),
        )?;
        s.serialize_field("backupSharePairId", &self.pair_id)?;
        let checked = [
            "the client share's public key",
            "the custodian share's public key",
        ];
        s.serialize_field("checkedAgainst", &checked)?;
        s.serialize_field("portalWalletKey", self.portal.describe())?;
        s.end()
    }
}
