//! Properties: a random key dealt at random Birkhoff x values rebuilds exactly, and any change to
//! a share, the curve, the pair or the public key is refused (no key comes back).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod support;

use eject::{ClientShare, Curve, CustodianShare, Error, Expected, combine, deal};
use proptest::prelude::*;
use serde_json::Value;
use support::byte_source;

fn curve() -> impl Strategy<Value = Curve> {
    prop_oneof![Just(Curve::Secp256k1), Just(Curve::Ed25519)]
}

/// A dealt wallet: (dealt key hex, client JSON, custodian JSON, Portal publicKey).
fn dealt(curve: Curve, key: [u8; 32], seed: [u8; 32]) -> Option<(String, Value, Value, String)> {
    let dealt = deal(curve, &key, &mut byte_source(seed)).ok()?;
    let client = serde_json::from_str(&dealt.client_share_json("cl_p", "bsp_p")).unwrap();
    let custodian = serde_json::from_str(&dealt.custodian_share_json("cl_p", "bsp_p")).unwrap();
    Some((
        dealt.private_key_hex().to_string(),
        client,
        custodian,
        dealt.public_key().portal_json(),
    ))
}

fn try_combine(
    curve: Curve,
    client: &Value,
    custodian: &Value,
    expected: &Expected<'_>,
) -> Result<String, Error> {
    let client = ClientShare::parse(&client.to_string())?;
    let custodian = CustodianShare::parse(&custodian.to_string())?;
    combine(curve, &client, &custodian, expected).map(|k| k.private_key_hex().to_string())
}

/// Replaces one digit of a decimal string by another digit (a different number, never ≡ mod a
/// prime group order: the difference k·10^j has no prime factor above 7).
/// The leading digit is kept, so the number stays below 2^256 (it stays parsable).
fn change_digit(text: &str, at: usize, by: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = if bytes.len() > 1 {
        1 + at % (bytes.len() - 1)
    } else {
        0
    };
    let d = bytes[i] - b'0';
    bytes[i] = b'0' + (d + 1 + by % 9) % 10;
    String::from_utf8(bytes).unwrap()
}

fn expected() -> Expected<'static> {
    Expected {
        backup_share_pair_id: Some("bsp_p"),
        portal_wallet_public_key: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_keys_split_at_random_x_rebuild_exactly(
        curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>()
    ) {
        let Some((hex, client, custodian, portal)) = dealt(curve, key, seed) else {
            return Ok(()); // the key reduced to zero
        };
        let expected = Expected {
            backup_share_pair_id: Some("bsp_p"),
            portal_wallet_public_key: Some(&portal),
        };
        prop_assert_eq!(try_combine(curve, &client, &custodian, &expected).unwrap(), hex);
    }

    #[test]
    fn any_changed_share_value_is_refused(
        curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>(),
        which in 0..2usize, at in any::<usize>(), by in any::<u8>()
    ) {
        let Some((_, mut client, mut custodian, _)) = dealt(curve, key, seed) else {
            return Ok(());
        };
        let share = if which == 0 { &mut client["share"] } else { &mut custodian["share"] };
        *share = Value::String(change_digit(share.as_str().unwrap(), at, by));
        prop_assert!(try_combine(curve, &client, &custodian, &expected()).is_err());
    }

    #[test]
    fn a_changed_birkhoff_x_is_refused(
        curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>(),
        server in any::<bool>(), both in any::<bool>(), at in any::<usize>(), by in any::<u8>()
    ) {
        let Some((_, mut client, mut custodian, _)) = dealt(curve, key, seed) else {
            return Ok(());
        };
        let (party, field) = if server { ("server", "serverBk") } else { ("client", "clientBk") };
        let changed = change_digit(custodian[field].as_str().unwrap(), at, by);
        custodian[field] = Value::String(changed.clone());
        if both {
            // Consistent in both shares: the interpolation runs, the public key check refuses.
            client["bks"][party]["X"] = Value::String(changed);
        }
        prop_assert!(try_combine(curve, &client, &custodian, &expected()).is_err());
    }

    #[test]
    fn a_changed_public_key_is_refused(
        curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>(),
        target in 0..3usize, y in any::<bool>(), at in any::<usize>(), by in any::<u8>()
    ) {
        let Some((_, mut client, mut custodian, portal)) = dealt(curve, key, seed) else {
            return Ok(());
        };
        let mut portal: Value = serde_json::from_str(&portal).unwrap();
        let slot = match (target, y) {
            (0, false) => &mut client["pubkey"]["X"],
            (0, true) => &mut client["pubkey"]["Y"],
            (1, false) => &mut custodian["x"],
            (1, true) => &mut custodian["y"],
            (_, false) => &mut portal["X"],
            (_, true) => &mut portal["Y"],
        };
        *slot = Value::String(change_digit(slot.as_str().unwrap(), at, by));
        let portal = portal.to_string();
        let expected = Expected {
            backup_share_pair_id: Some("bsp_p"),
            portal_wallet_public_key: Some(&portal),
        };
        let result = try_combine(curve, &client, &custodian, &expected);
        prop_assert!(
            matches!(result, Err(Error::PublicKeyMismatch { .. } | Error::Malformed { .. })),
            "{:?}", result.map(|_| "a key")
        );
    }

    #[test]
    fn the_other_curve_is_refused(
        curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>()
    ) {
        let Some((_, client, custodian, _)) = dealt(curve, key, seed) else {
            return Ok(());
        };
        let other = match curve {
            Curve::Secp256k1 => Curve::Ed25519,
            _ => Curve::Secp256k1,
        };
        prop_assert!(try_combine(other, &client, &custodian, &expected()).is_err());
    }

    #[test]
    fn a_wrong_pair_id_is_refused(
        curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>(),
        which in 0..3usize, other in "bsp_[a-z]{1,8}"
    ) {
        let Some((_, mut client, mut custodian, _)) = dealt(curve, key, seed) else {
            return Ok(());
        };
        let mut want = "bsp_p".to_owned();
        match which {
            0 => client["backupSharePairId"] = Value::String(other.clone()),
            1 => custodian["backupSharePairId"] = Value::String(other.clone()),
            _ => want.clone_from(&other),
        }
        prop_assume!(other != "bsp_p");
        let expected = Expected { backup_share_pair_id: Some(&want), portal_wallet_public_key: None };
        let result = try_combine(curve, &client, &custodian, &expected);
        prop_assert!(
            matches!(result, Err(Error::PairMismatch { .. } | Error::WrongPair { .. })),
            "{:?}", result.map(|_| "a key")
        );
    }

    #[test]
    fn the_other_wallets_share_is_refused(
        curve in curve(), key in any::<[u8; 32]>(), other in any::<[u8; 32]>(),
        seed in any::<[u8; 32]>()
    ) {
        prop_assume!(key != other);
        let (Some((_, client, _, _)), Some((_, _, custodian, _))) =
            (dealt(curve, key, seed), dealt(curve, other, seed))
        else {
            return Ok(());
        };
        prop_assert!(try_combine(curve, &client, &custodian, &expected()).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any input is a typed error or a share, never a panic: arbitrary text, and valid shares
    /// with a slice cut out (truncated numbers, broken JSON, missing fields).
    #[test]
    fn garbage_and_cut_shares_never_panic(
        text in ".{0,200}", curve in curve(), key in any::<[u8; 32]>(), seed in any::<[u8; 32]>(),
        from in any::<usize>(), len in 0..40usize
    ) {
        let _ = ClientShare::parse(&text);
        let _ = CustodianShare::parse(&text);
        let Some((_, client, custodian, portal)) = dealt(curve, key, seed) else {
            return Ok(());
        };
        let cut = |v: &Value| {
            let s = v.to_string();
            let at = from % s.len();
            let end = (at + len).min(s.len());
            format!("{}{}", &s[..at], &s[end..])
        };
        let (c, k) = (cut(&client), cut(&custodian));
        if let (Ok(c), Ok(k)) = (ClientShare::parse(&c), CustodianShare::parse(&k)) {
            let expected = Expected {
                backup_share_pair_id: Some("bsp_p"),
                portal_wallet_public_key: Some(&portal[..portal.len().min(from % 200)]),
            };
            let _ = combine(curve, &c, &k, &expected);
        }
    }
}
