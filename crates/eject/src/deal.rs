//! Dealing a key into a client and a custodian backup share, the way Portal's 2-of-2 backup does
//! (a random line through the key, evaluated at two random Birkhoff x values, rank 0). Used by
//! the simulator and by tests; combining the two shares gives the key back.

use std::fmt;

use serde_json::json;
use zeroize::Zeroizing;

use crate::decimal::format_be32;
use crate::error::Result;
use crate::key::{Curve, PublicKey};
use crate::shares::Be32;
use crate::{ed25519, secp256k1};

/// A key dealt into two shares. Secret: `Debug` is redacted, wiped on drop, not `Clone`.
pub struct Dealt {
    curve: Curve,
    secret: Be32,
    client_share: Be32,
    client_x: Be32,
    custodian_share: Be32,
    server_x: Be32,
    public: PublicKey,
}

impl fmt::Debug for Dealt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dealt")
            .field("curve", &self.curve)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Deals `secret` on `curve` into two shares at random Birkhoff x values drawn from `random`
/// (which fills a buffer with random bytes). `secret` is in the key's output encoding:
/// big-endian for secp256k1, the little-endian scalar for ed25519; it is reduced mod the group
/// order.
///
/// # Errors
/// [`Error::ZeroKey`](crate::Error::ZeroKey) when `secret` reduces to zero.
pub fn deal(curve: Curve, secret: &[u8; 32], random: &mut dyn FnMut(&mut [u8])) -> Result<Dealt> {
    let [d, s1, x1, s2, x2] = match curve {
        Curve::Secp256k1 => secp256k1::deal(secret, random)?,
        Curve::Ed25519 => ed25519::deal(secret, random)?,
    };
    let public = PublicKey::of(curve, &d)?;
    Ok(Dealt {
        curve,
        secret: d,
        client_share: s1,
        client_x: x1,
        custodian_share: s2,
        server_x: x2,
        public,
    })
}

impl Dealt {
    /// The wallet's public key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The dealt key, reduced, in hex (the same form as
    /// [`RebuiltKey::private_key_hex`](crate::RebuiltKey::private_key_hex)).
    #[must_use]
    pub fn private_key_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        for b in self.secret.iter() {
            for n in [b >> 4, b & 0x0f] {
                out.push(char::from_digit(u32::from(n), 16).unwrap_or('0'));
            }
        }
        out
    }

    /// The client share value in decimal.
    #[must_use]
    pub fn client_share_decimal(&self) -> Zeroizing<String> {
        format_be32(&self.client_share)
    }

    /// The custodian share value in decimal.
    #[must_use]
    pub fn custodian_share_decimal(&self) -> Zeroizing<String> {
        format_be32(&self.custodian_share)
    }

    /// The client's Birkhoff x (`bks.client.X`, `clientBk`) in decimal.
    #[must_use]
    pub fn client_x_decimal(&self) -> String {
        format_be32(&self.client_x).to_string()
    }

    /// The server's Birkhoff x (`bks.server.X`, `serverBk`) in decimal.
    #[must_use]
    pub fn server_x_decimal(&self) -> String {
        format_be32(&self.server_x).to_string()
    }

    /// A minimal client backup share (`MpcShare` JSON) with the fields eject reads.
    #[must_use]
    pub fn client_share_json(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> Zeroizing<String> {
        let share = self.client_share_decimal();
        Zeroizing::new(
            json!({
                "clientId": client_id,
                "backupSharePairId": backup_share_pair_id,
                "share": share.as_str(),
                "pubkey": {"X": self.public.x_decimal(), "Y": self.public.y_decimal()},
                "bks": {
                    "client": {"X": self.client_x_decimal(), "Rank": 0},
                    "server": {"X": self.server_x_decimal(), "Rank": 0}
                }
            })
            .to_string(),
        )
    }

    /// A minimal custodian backup share (the flat JSON object) with the fields eject reads.
    #[must_use]
    pub fn custodian_share_json(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> Zeroizing<String> {
        let share = self.custodian_share_decimal();
        Zeroizing::new(
            json!({
                "backupSharePairId": backup_share_pair_id,
                "clientBk": self.client_x_decimal(),
                "clientId": client_id,
                "serverBk": self.server_x_decimal(),
                "share": share.as_str(),
                "x": self.public.x_decimal(),
                "y": self.public.y_decimal(),
            })
            .to_string(),
        )
    }
}
