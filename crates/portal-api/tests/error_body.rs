//! The error-body parser never panics and stays bounded, whatever the server sends.

use portal_api::{Error, ErrorBody};
use proptest::prelude::*;

fn json_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9_ ]{0,20}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("id"),
                        Just("error"),
                        Just("message"),
                        Just("code"),
                        Just("x")
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let body = ErrorBody::parse(&bytes);
        for field in [&body.id, &body.message, &body.raw].into_iter().flatten() {
            prop_assert!(field.chars().count() <= 1024);
        }
        let err = Error::from_response(500, &bytes, None);
        let _ = (err.to_string(), format!("{err:?}"));
    }

    #[test]
    fn never_panics_on_json_shaped_input(text in json_like(), status in 100u16..1000) {
        let body = ErrorBody::parse(text.as_bytes());
        // Whatever the shape, an id is a string that was in the input.
        if let Some(id) = &body.id {
            prop_assert!(text.contains(id.as_str()));
        }
        let err = Error::from_response(status, text.as_bytes(), None);
        prop_assert_eq!(err.status(), Some(status));
        let _ = err.to_string();
    }
}

#[test]
fn deeply_nested_json_does_not_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = ErrorBody::parse(deep.as_bytes());
    assert_eq!(body.id, None);
    let deep = format!("{}1{}", "{\"error\":".repeat(10_000), "}".repeat(10_000));
    let _ = ErrorBody::parse(deep.as_bytes());
}
