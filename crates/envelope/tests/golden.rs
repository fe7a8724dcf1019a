//! Golden vectors: envelopes written by v1 of this crate, committed and frozen. This and
#![allow(clippy::unwrap_used)] // helpers of a test binary: a malformed vector file must fail loudly
//! every later version must open them (and reject the negative ones the same way).

use std::sync::Arc;

use envelope::{EncryptionContext, Error, FormatError, KeyEncryptionKey, Keyring, local::LocalKek};
use serde_json::Value;

const V1: &str = include_str!("vectors/v1.json");

fn keyring(case: &Value) -> Keyring {
    case["local_keks_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let bytes: [u8; 32] = hex::decode(k.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            Arc::new(LocalKek::from_key(&bytes)) as Arc<dyn KeyEncryptionKey>
        })
        .collect()
}

fn context(case: &Value) -> EncryptionContext {
    let mut ctx = EncryptionContext::new();
    for (k, v) in case["context"].as_object().unwrap() {
        ctx.insert(k.as_str(), v.as_str().unwrap()).unwrap();
    }
    ctx
}

#[tokio::test]
async fn every_v1_vector_opens_or_fails_as_recorded() {
    let doc: Value = serde_json::from_str(V1).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 12, "the vector file lost cases");
    let mut opened = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = envelope::from_text(case["envelope_text"].as_str().unwrap()).unwrap();
        let result = envelope::open(&keyring(case), &context(case), &bytes).await;
        match (case["expect"].as_str().unwrap(), result) {
            ("ok", Ok(plaintext)) => {
                let expected = hex::decode(case["plaintext_hex"].as_str().unwrap()).unwrap();
                assert_eq!(plaintext.expose_secret(), expected.as_slice(), "{name}");
                opened += 1;
            }
            ("decrypt", Err(Error::Decrypt)) => {}
            ("no_matching_kek", Err(Error::NoMatchingKek { .. })) => {}
            ("unsupported_version", Err(Error::Format(FormatError::UnsupportedVersion(2)))) => {}
            ("truncated", Err(Error::Format(FormatError::Truncated(_)))) => {}
            (expect, got) => panic!("{name}: expected {expect}, got {got:?}"),
        }
    }
    assert_eq!(opened, 6);
}

#[test]
fn vectors_inspect_as_v1_suite_1() {
    let doc: Value = serde_json::from_str(V1).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        if case["expect"] != "ok" {
            continue;
        }
        let bytes = envelope::from_text(case["envelope_text"].as_str().unwrap()).unwrap();
        let info = envelope::inspect(&bytes).unwrap();
        assert_eq!((info.version, info.suite), (1, 1));
        assert!(info.kek_context.is_subset_of(&info.context));
        // Text form is canonical: decoding and encoding again gives the same string.
        assert_eq!(
            envelope::to_text(&bytes),
            case["envelope_text"].as_str().unwrap()
        );
    }
}
