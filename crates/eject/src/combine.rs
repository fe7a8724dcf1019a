//! Combining a client and a custodian backup share into a verified private key.

use crate::error::{Against, Error, Result, Side};
use crate::key::{Curve, PortalKeyCheck, PublicKey, RebuiltKey};
use crate::shares::{ClientShare, CustodianShare, parse_wallet_public_key};
use crate::{ed25519, secp256k1};

/// What the rebuilt key must also agree with, besides both shares' public keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    /// The backup share pair being opened: both shares must name it (a share naming none is
    /// accepted only for the client share, whose `backupSharePairId` is optional in Portal's
    /// SDK types).
    pub backup_share_pair_id: Option<&'a str>,
    /// The wallet's `publicKey` from Portal's `/clients/me`, as Portal returned it. When it
    /// parses as a point it must match; when it does not, the result says so
    /// ([`PortalKeyCheck::Unparsable`]).
    pub portal_wallet_public_key: Option<&'a str>,
}

/// Rebuilds the private key of a 2-of-2 wallet on `curve` from its client and custodian backup
/// shares by Lagrange interpolation at zero over their Birkhoff x values, and verifies it: its
/// public point must equal the public key in **both** shares and, when given and parsable,
/// Portal's wallet key. On any mismatch an error is returned and no key exists.
///
/// # Errors
/// [`Error::RankNotSupported`] for ranks other than 0; [`Error::BirkhoffMismatch`],
/// [`Error::PairMismatch`], [`Error::WrongPair`], [`Error::ClientMismatch`] for shares that were
/// not dealt together or not for this pair; [`Error::PublicKeyMismatch`] for a key that is not
/// the wallet's (a changed share, another wallet's share, the wrong curve); [`Error::SameX`],
/// [`Error::ZeroKey`].
pub fn combine(
    curve: Curve,
    client: &ClientShare,
    custodian: &CustodianShare,
    expected: &Expected<'_>,
) -> Result<RebuiltKey> {
    check_identity(client, custodian, expected)?;
    for (side, rank) in [
        (Side::Client, client.client_rank),
        (Side::Custodian, client.server_rank),
    ] {
        if rank != 0 {
            return Err(Error::RankNotSupported { side, rank });
        }
    }
    if client.client_x != custodian.client_bk {
        return Err(Error::BirkhoffMismatch {
            party: "client",
            field: "clientBk",
        });
    }
    if client.server_x != custodian.server_bk {
        return Err(Error::BirkhoffMismatch {
            party: "server",
            field: "serverBk",
        });
    }
    let (s1, x1, s2, x2) = (
        &client.share,
        &client.client_x,
        &custodian.share,
        &custodian.server_bk,
    );
    let secret = match curve {
        Curve::Secp256k1 => secp256k1::interpolate(s1, x1, s2, x2)?,
        Curve::Ed25519 => ed25519::interpolate(s1, x1, s2, x2)?,
    };
    let public = PublicKey::of(curve, &secret)?;
    if *public.affine() != client.public {
        return Err(Error::PublicKeyMismatch {
            against: Against::ClientShare,
        });
    }
    if *public.affine() != custodian.public {
        return Err(Error::PublicKeyMismatch {
            against: Against::CustodianShare,
        });
    }
    let portal = match expected.portal_wallet_public_key {
        None => PortalKeyCheck::NotAvailable,
        Some(text) => match parse_wallet_public_key(text) {
            None => PortalKeyCheck::Unparsable,
            Some(point) if point == *public.affine() => PortalKeyCheck::Matched,
            Some(_) => {
                return Err(Error::PublicKeyMismatch {
                    against: Against::PortalWallet,
                });
            }
        },
    };
    Ok(RebuiltKey {
        curve,
        secret,
        public,
        pair_id: custodian.pair_id.clone().or_else(|| client.pair_id.clone()),
        portal,
    })
}

fn check_identity(
    client: &ClientShare,
    custodian: &CustodianShare,
    expected: &Expected<'_>,
) -> Result<()> {
    if let (Some(c), Some(k)) = (&client.pair_id, &custodian.pair_id)
        && c != k
    {
        return Err(Error::PairMismatch {
            client: c.clone(),
            custodian: k.clone(),
        });
    }
    if let Some(want) = expected.backup_share_pair_id {
        let wrong = |side, found: Option<&String>| Error::WrongPair {
            side,
            expected: want.to_owned(),
            found: found.cloned().unwrap_or_default(),
        };
        if custodian.pair_id.as_deref() != Some(want) {
            return Err(wrong(Side::Custodian, custodian.pair_id.as_ref()));
        }
        if client.pair_id.as_deref().is_some_and(|c| c != want) {
            return Err(wrong(Side::Client, client.pair_id.as_ref()));
        }
    }
    if let (Some(c), Some(k)) = (&client.client_id, &custodian.client_id)
        && c != k
    {
        return Err(Error::ClientMismatch {
            client: c.clone(),
            custodian: k.clone(),
        });
    }
    Ok(())
}
