//! The two inputs, parsed: the client backup share (Portal's `MpcShare`, as JSON or as the
//! unpadded base64 `/v1/backup` returns) and the custodian backup share (the flat JSON object of
//! `ejectable-backup-shares` and of the Self-Managed Backups webhook).

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use zeroize::Zeroizing;

use crate::decimal::parse_be32;
use crate::error::{Result, Side, malformed};

/// Base64 with or without `=` padding (Portal's SDK writes none).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A 256-bit integer from a share, big-endian, wiped on drop.
pub(crate) type Be32 = Zeroizing<[u8; 32]>;

/// A public point as the shares write it: affine coordinates, big-endian.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Affine {
    pub(crate) x: [u8; 32],
    pub(crate) y: [u8; 32],
}

/// A client backup share: the share value, the Birkhoff parameters of both parties and the
/// wallet's public key. `Debug` is redacted; the share value is wiped on drop; not `Clone`.
pub struct ClientShare {
    pub(crate) share: Be32,
    pub(crate) client_x: Be32,
    pub(crate) client_rank: u64,
    pub(crate) server_x: Be32,
    pub(crate) server_rank: u64,
    pub(crate) public: Affine,
    pub(crate) pair_id: Option<String>,
    pub(crate) client_id: Option<String>,
}

/// A custodian backup share: the share value, both Birkhoff x values and the wallet's public
/// key. `Debug` is redacted; the share value is wiped on drop; not `Clone`.
pub struct CustodianShare {
    pub(crate) share: Be32,
    pub(crate) client_bk: Be32,
    pub(crate) server_bk: Be32,
    pub(crate) public: Affine,
    pub(crate) pair_id: Option<String>,
    pub(crate) client_id: Option<String>,
}

impl fmt::Debug for ClientShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientShare")
            .field("backup_share_pair_id", &self.pair_id)
            .field("client_id", &self.client_id)
            .field("share", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CustodianShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodianShare")
            .field("backup_share_pair_id", &self.pair_id)
            .field("client_id", &self.client_id)
            .field("share", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A decimal string that is wiped on drop.
struct SecretText(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self(Zeroizing::new(s)))
    }
}

#[derive(Deserialize)]
struct PointJson {
    #[serde(rename = "X", alias = "x")]
    x: String,
    #[serde(rename = "Y", alias = "y")]
    y: String,
}

#[derive(Deserialize)]
struct BkJson {
    #[serde(rename = "X", alias = "x")]
    x: String,
    #[serde(rename = "Rank", alias = "rank", default, deserialize_with = "rank")]
    rank: u64,
}

#[derive(Deserialize)]
struct BksJson {
    client: BkJson,
    server: BkJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientJson {
    share: SecretText,
    pubkey: Option<PointJson>,
    bks: Option<BksJson>,
    backup_share_pair_id: Option<String>,
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustodianJson {
    share: SecretText,
    x: String,
    y: String,
    client_bk: String,
    server_bk: String,
    backup_share_pair_id: Option<String>,
    client_id: Option<String>,
}

/// A rank as a number or a decimal string.
fn rank<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rank {
        Number(u64),
        Text(String),
    }
    match Rank::deserialize(deserializer)? {
        Rank::Number(n) => Ok(n),
        Rank::Text(t) => t.parse().map_err(D::Error::custom),
    }
}

fn number(side: Side, field: &str, text: &str) -> Result<Be32> {
    parse_be32(text).map_err(|e| malformed(side, e.describe(field)))
}

fn public_number(side: Side, field: &str, text: &str) -> Result<[u8; 32]> {
    number(side, field, text).map(|v| *v)
}

fn non_empty(id: Option<String>) -> Option<String> {
    id.filter(|s| !s.is_empty())
}

/// serde_json's message names the line and column and what was expected, never the input.
fn json_reason(e: &serde_json::Error) -> String {
    format!("not the expected JSON object ({e})")
}

impl ClientShare {
    /// Parses a client backup share: the JSON `MpcShare`, or the unpadded standard base64 of it
    /// that `/v1/backup` returns (one curve's `share`). `pubkey` and `bks` are required;
    /// coordinates are accepted as `X`/`Y` or `x`/`y`, an absent rank as 0.
    ///
    /// # Errors
    /// [`Error::Malformed`](crate::Error::Malformed) naming the missing or bad field.
    pub fn parse(text: &str) -> Result<Self> {
        let side = Side::Client;
        let text = text.trim();
        let json: ClientJson = if text.starts_with('{') {
            serde_json::from_str(text).map_err(|e| malformed(side, json_reason(&e)))?
        } else {
            let bytes = Zeroizing::new(
                LENIENT
                    .decode(text)
                    .map_err(|_| malformed(side, "neither JSON nor base64 of JSON"))?,
            );
            serde_json::from_slice(&bytes).map_err(|e| malformed(side, json_reason(&e)))?
        };
        let pubkey = json
            .pubkey
            .ok_or_else(|| malformed(side, "`pubkey` is missing"))?;
        let bks = json
            .bks
            .ok_or_else(|| malformed(side, "`bks` is missing"))?;
        Ok(Self {
            share: number(side, "share", &json.share.0)?,
            client_x: number(side, "bks.client.X", &bks.client.x)?,
            client_rank: bks.client.rank,
            server_x: number(side, "bks.server.X", &bks.server.x)?,
            server_rank: bks.server.rank,
            public: Affine {
                x: public_number(side, "pubkey.X", &pubkey.x)?,
                y: public_number(side, "pubkey.Y", &pubkey.y)?,
            },
            pair_id: non_empty(json.backup_share_pair_id),
            client_id: non_empty(json.client_id),
        })
    }

    /// The backup share pair the share names, if it names one.
    #[must_use]
    pub fn backup_share_pair_id(&self) -> Option<&str> {
        self.pair_id.as_deref()
    }
}

impl CustodianShare {
    /// Parses a custodian backup share: the flat JSON object (`share`, `x`, `y`, `clientBk`,
    /// `serverBk`, `backupSharePairId`, `clientId`, ...). A JSON *string* holding that object
    /// (as `custodianBackupShare` is on the wire) is accepted too.
    ///
    /// # Errors
    /// [`Error::Malformed`](crate::Error::Malformed) naming the missing or bad field.
    pub fn parse(text: &str) -> Result<Self> {
        let side = Side::Custodian;
        let text = text.trim();
        let json: CustodianJson = if text.starts_with('"') {
            let inner = SecretText::deserialize(&mut serde_json::Deserializer::from_str(text))
                .map_err(|e| malformed(side, json_reason(&e)))?;
            serde_json::from_str(&inner.0).map_err(|e| malformed(side, json_reason(&e)))?
        } else {
            serde_json::from_str(text).map_err(|e| malformed(side, json_reason(&e)))?
        };
        Ok(Self {
            share: number(side, "share", &json.share.0)?,
            client_bk: number(side, "clientBk", &json.client_bk)?,
            server_bk: number(side, "serverBk", &json.server_bk)?,
            public: Affine {
                x: public_number(side, "x", &json.x)?,
                y: public_number(side, "y", &json.y)?,
            },
            pair_id: non_empty(json.backup_share_pair_id),
            client_id: non_empty(json.client_id),
        })
    }

    /// The backup share pair the share names, if it names one.
    #[must_use]
    pub fn backup_share_pair_id(&self) -> Option<&str> {
        self.pair_id.as_deref()
    }
}

/// Parses Portal's wallet `publicKey` ("stringified JSON"): `{"X": "<decimal>", "Y": ...}` or
/// with lowercase keys. `None` when it is anything else.
pub(crate) fn parse_wallet_public_key(text: &str) -> Option<Affine> {
    let point: PointJson = serde_json::from_str(text.trim()).ok()?;
    Some(Affine {
        x: *parse_be32(&point.x).ok()?,
        y: *parse_be32(&point.y).ok()?,
    })
}
