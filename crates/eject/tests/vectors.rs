//! Portal's published eject vectors, and the standard encodings, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod support;

use base64::Engine as _;
use eject::{
    Against, ClientShare, Curve, CustodianShare, Error, Expected, PortalKeyCheck, combine, deal,
};
use support::{ED, Numbers, SECP, byte_source, client_json, client_json_lowercase, custodian_json};

fn rebuild(curve: Curve, n: &Numbers<'_>) -> eject::RebuiltKey {
    let client = ClientShare::parse(&client_json(n, "bsp_1")).unwrap();
    let custodian = CustodianShare::parse(&custodian_json(n, "bsp_1")).unwrap();
    combine(curve, &client, &custodian, &Expected::default()).unwrap()
}

#[test]
fn portal_secp256k1_vector_rebuilds_the_published_public_key() {
    let key = rebuild(Curve::Secp256k1, &SECP);
    assert_eq!(key.public_key().x_decimal(), SECP.pub_x);
    assert_eq!(key.public_key().y_decimal(), SECP.pub_y);
    assert_eq!(key.private_key_hex().len(), 64);
    assert!(key.private_key_base58().is_none());
    let hex = key.public_key().to_hex();
    assert!(hex.starts_with("04") && hex.len() == 130, "{hex}");
    let address = key.public_key().address();
    assert!(
        address.starts_with("0x") && address.len() == 42,
        "{address}"
    );
    assert_eq!(key.backup_share_pair_id(), Some("bsp_1"));
    assert_eq!(key.portal_wallet_key(), PortalKeyCheck::NotAvailable);
}

#[test]
fn portal_ed25519_vector_rebuilds_the_published_public_key() {
    let key = rebuild(Curve::Ed25519, &ED);
    assert_eq!(key.public_key().x_decimal(), ED.pub_x);
    assert_eq!(key.public_key().y_decimal(), ED.pub_y);
    let b58 = key.private_key_base58().unwrap();
    let scalar = bs58_decode(&b58);
    assert_eq!(hex_of(&scalar), *key.private_key_hex());
    // A canonical scalar: below 2^253, so the top byte is small.
    assert!(scalar[31] < 0x20);
    let encoded = key.public_key().to_hex();
    assert_eq!(encoded.len(), 64);
    assert_eq!(hex_of(&bs58_decode(&key.public_key().address())), encoded);
}

#[test]
fn the_same_vectors_parse_in_every_spelling_portal_uses() {
    for (curve, n) in [(Curve::Secp256k1, &SECP), (Curve::Ed25519, &ED)] {
        let expected = rebuild(curve, n).private_key_hex();
        let lower = ClientShare::parse(&client_json_lowercase(n, "bsp_1")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(client_json(n, "bsp_1"));
        let from_b64 = ClientShare::parse(&b64).unwrap();
        // custodianBackupShare is a JSON string on the wire.
        let wire = serde_json::to_string(&custodian_json(n, "bsp_1")).unwrap();
        let custodian = CustodianShare::parse(&wire).unwrap();
        for client in [lower, from_b64] {
            let key = combine(curve, &client, &custodian, &Expected::default()).unwrap();
            assert_eq!(key.private_key_hex(), expected);
        }
    }
}

#[test]
fn standard_keys_give_the_standard_points_and_addresses() {
    let mut one = [0u8; 32];
    one[31] = 1;
    let secp = deal(Curve::Secp256k1, &one, &mut byte_source([1; 32])).unwrap();
    assert_eq!(
        secp.public_key().address(),
        "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    );
    assert_eq!(
        secp.public_key().x_decimal(),
        "55066263022277343669578718895168534326250603453777594175500187360389116729240"
    );
    let mut one_le = [0u8; 32];
    one_le[0] = 1;
    let ed = deal(Curve::Ed25519, &one_le, &mut byte_source([2; 32])).unwrap();
    // The ed25519 base point B (RFC 8032).
    assert_eq!(
        ed.public_key().x_decimal(),
        "15112221349535400772501151409588531511454012693041857206046113283949847762202"
    );
    assert_eq!(
        ed.public_key().y_decimal(),
        "46316835694926478169428394003475163141307993866256225615783033603165251855960"
    );
    assert_eq!(
        ed.public_key().to_hex(),
        "5866666666666666666666666666666666666666666666666666666666666666"
    );
}

#[test]
fn portal_wallet_key_is_checked_when_it_parses() {
    let client = ClientShare::parse(&client_json(&SECP, "bsp_1")).unwrap();
    let custodian = CustodianShare::parse(&custodian_json(&SECP, "bsp_1")).unwrap();
    let same = format!(r#"{{"X":"{}","Y":"{}"}}"#, SECP.pub_x, SECP.pub_y);
    let check = |text: &str| {
        let expected = Expected {
            backup_share_pair_id: Some("bsp_1"),
            portal_wallet_public_key: Some(text),
        };
        combine(Curve::Secp256k1, &client, &custodian, &expected)
    };
    assert_eq!(
        check(&same).unwrap().portal_wallet_key(),
        PortalKeyCheck::Matched
    );
    let lower = format!(r#"{{"x":"{}","y":"{}"}}"#, SECP.pub_x, SECP.pub_y);
    assert_eq!(
        check(&lower).unwrap().portal_wallet_key(),
        PortalKeyCheck::Matched
    );
    for unparsable in ["", "0x04abcdef", r#"{"X":1}"#, "not json"] {
        assert_eq!(
            check(unparsable).unwrap().portal_wallet_key(),
            PortalKeyCheck::Unparsable
        );
    }
    let other = format!(r#"{{"X":"{}","Y":"{}"}}"#, ED.pub_x, ED.pub_y);
    assert!(matches!(
        check(&other),
        Err(Error::PublicKeyMismatch {
            against: Against::PortalWallet
        })
    ));
}

#[test]
fn refusals_name_what_is_wrong_and_never_a_value() {
    let client = ClientShare::parse(&client_json(&SECP, "bsp_1")).unwrap();
    let custodian = CustodianShare::parse(&custodian_json(&SECP, "bsp_2")).unwrap();
    let err = combine(Curve::Secp256k1, &client, &custodian, &Expected::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the client share belongs to backup share pair bsp_1, the custodian share to bsp_2"
    );
    let custodian = CustodianShare::parse(&custodian_json(&SECP, "bsp_1")).unwrap();
    let expected = Expected {
        backup_share_pair_id: Some("bsp_9"),
        ..Expected::default()
    };
    let err = combine(Curve::Secp256k1, &client, &custodian, &expected).unwrap_err();
    assert!(matches!(err, Error::WrongPair { .. }), "{err}");
    assert!(err.to_string().contains("bsp_9") && err.to_string().contains("bsp_1"));
    // The wrong curve: the point does not match.
    let err = combine(Curve::Ed25519, &client, &custodian, &Expected::default()).unwrap_err();
    assert!(matches!(err, Error::PublicKeyMismatch { .. }), "{err}");
    // Rank 1 is refused as not supported.
    let ranked = client_json(&SECP, "bsp_1").replacen("\"Rank\":0", "\"Rank\":1", 1);
    let err = combine(
        Curve::Secp256k1,
        &ClientShare::parse(&ranked).unwrap(),
        &custodian,
        &Expected::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not supported") || err.to_string().contains("only rank 0"));
    // A bad share value is named, its value is not.
    let bad = client_json(&SECP, "bsp_1").replace(SECP.s1, "12x4");
    let err = ClientShare::parse(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the client backup share is malformed: `share` is not a decimal integer"
    );
    for e in [format!("{client:?}"), format!("{custodian:?}")] {
        assert!(!e.contains(SECP.s1) && !e.contains(SECP.s2), "{e}");
    }
}

#[test]
fn the_key_file_entry_says_what_each_value_is() {
    let key = rebuild(Curve::Ed25519, &ED);
    let text = serde_json::to_string(&key).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["privateKeyHex"], key.private_key_hex().as_str());
    assert!(
        v["privateKey"]
            .as_str()
            .unwrap()
            .contains("NOT an RFC 8032 seed")
    );
    assert_eq!(v["solanaAddress"], key.public_key().address());
    assert!(!format!("{key:?}").contains(key.private_key_hex().as_str()));
}

fn bs58_decode(text: &str) -> Vec<u8> {
    // base58 alphabet decode, independent of the crate under test.
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut out: Vec<u8> = Vec::new();
    for c in text.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        for b in out.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend(out);
    full
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
