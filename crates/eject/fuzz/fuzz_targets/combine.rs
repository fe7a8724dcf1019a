//! Feeds arbitrary text to everything eject reads from outside: the client share (Portal's
//! `MpcShare` JSON), the custodian share (the flat JSON, or a JSON string holding it), and
//! Portal's wallet public key; then combines whatever parsed, on both curves. Nothing may
//! panic, and a key may come out only when it is the wallet's (checked against the shares'
//! public keys by `combine` itself; here: never for input that did not parse).

#![no_main]

use eject::{ClientShare, Curve, CustodianShare, Expected, combine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Three fields separated by NUL: client share, custodian share, Portal's wallet key.
    let mut parts = text.splitn(3, '\0');
    let (client, custodian, portal) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next(),
    );
    let client = ClientShare::parse(client);
    let custodian = CustodianShare::parse(custodian);
    let (Ok(client), Ok(custodian)) = (client, custodian) else {
        return;
    };
    for curve in [Curve::Secp256k1, Curve::Ed25519] {
        let expected = Expected {
            backup_share_pair_id: custodian.backup_share_pair_id(),
            portal_wallet_public_key: portal,
        };
        if let Ok(key) = combine(curve, &client, &custodian, &expected) {
            assert_eq!(key.curve(), curve);
        }
    }
});
