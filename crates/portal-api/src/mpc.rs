//! Enclave MPC API v1 (`https://mpc-client.portalhq.io`): `/v1/generate`, `/v1/backup`,
//! `/v1/recover`.
//!
//! Every response is a curve-keyed envelope, [`CurveShares`]:
//!
//! ```json
//! { "SECP256K1": { "share": "<base64 MpcShare>", "id": "<pair id>" },
//!   "ED25519":   { "share": "<base64 MpcShare>", "id": "<pair id>" } }
//! ```
//!
//! The `id` is the signing share pair id for generate and recover, and the backup share pair id
//! for backup. The keys are serialized upper case and accepted in lower case too.
//!
//! The `/v1/backup` and `/v1/recover` requests carry the previous response as a JSON **string**,
//! not a nested object; [`BackupRequest::new`] and [`RecoverRequest::new`] build that string.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::common::Curve;
use crate::error::JsonError;
use crate::secret::SecretShare;

/// One curve's share and its share pair id: `{"share": "...", "id": "..."}`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurveShare {
    /// The client share: unpadded standard base64 of a JSON `MpcShare` object. Secret.
    pub share: SecretShare,
    /// The share pair id: signing pair (generate, recover) or backup pair (backup).
    pub id: String,
}

impl CurveShare {
    /// Builds a share entry.
    #[must_use]
    pub fn new(share: SecretShare, id: impl Into<String>) -> Self {
        Self {
            share,
            id: id.into(),
        }
    }
}

/// The curve-keyed envelope of every generate, backup and recover response.
///
/// Both curves are optional on the wire so that a response missing one still parses; Portal
/// normally returns both. Keys of curves this crate does not know are ignored.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurveShares {
    /// The `SECP256K1` entry (also accepted as `secp256k1`).
    #[serde(
        rename = "SECP256K1",
        alias = "secp256k1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secp256k1: Option<CurveShare>,
    /// The `ED25519` entry (also accepted as `ed25519`).
    #[serde(
        rename = "ED25519",
        alias = "ed25519",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ed25519: Option<CurveShare>,
}

impl CurveShares {
    /// The entry for one curve; `None` for a curve that is absent or unknown.
    #[must_use]
    pub fn get(&self, curve: &Curve) -> Option<&CurveShare> {
        match curve {
            Curve::Secp256k1 => self.secp256k1.as_ref(),
            Curve::Ed25519 => self.ed25519.as_ref(),
            _ => None,
        }
    }

    /// The entries that are present, `SECP256K1` first.
    pub fn iter(&self) -> impl Iterator<Item = (Curve, &CurveShare)> {
        self.secp256k1
            .as_ref()
            .map(|s| (Curve::Secp256k1, s))
            .into_iter()
            .chain(self.ed25519.as_ref().map(|s| (Curve::Ed25519, s)))
    }

    /// The share pair ids that are present, `SECP256K1` first.
    #[must_use]
    pub fn ids(&self) -> Vec<String> {
        self.iter().map(|(_, s)| s.id.clone()).collect()
    }
}

/// Parses a `/v1/generate` response given as the JSON object Portal returned or as a JSON
/// string holding that object (the form `/v1/backup` takes). A string form is unescaped into
/// a zeroizing buffer.
///
/// ```
/// use portal_api::mpc::parse_generate_response;
///
/// let object = r#"{"SECP256K1":{"share":"c2VjcmV0","id":"sp_1"}}"#;
/// assert_eq!(parse_generate_response(object)?.ids(), ["sp_1"]);
/// let string = serde_json::to_string(object)?;
/// assert_eq!(parse_generate_response(&string)?.ids(), ["sp_1"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`JsonError`] when the text is neither form; it gives the position, never the input.
pub fn parse_generate_response(text: &str) -> Result<GenerateResponse, JsonError> {
    if text.trim_start().starts_with('"') {
        let inner: SecretShare = serde_json::from_str(text)?;
        parse_secret_json(&inner)
    } else {
        Ok(serde_json::from_str(text)?)
    }
}

/// A serde `deserialize_with` for a field holding a `/v1/generate` response as an object or as
/// a JSON string holding it (see [`parse_generate_response`]).
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Line {
///     #[serde(deserialize_with = "portal_api::mpc::generate_response_object_or_string")]
///     generate_response: portal_api::mpc::GenerateResponse,
/// }
/// let line: Line = serde_json::from_str(r#"{"generate_response":"{\"ED25519\":{\"share\":\"s\",\"id\":\"b\"}}"}"#)?;
/// assert_eq!(line.generate_response.ids(), ["b"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// # Errors
/// The deserializer's error when the value is neither form.
pub fn generate_response_object_or_string<'de, D>(
    deserializer: D,
) -> Result<GenerateResponse, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::{self, MapAccess, Visitor};

    struct ObjectOrString;
    impl<'de> Visitor<'de> for ObjectOrString {
        type Value = GenerateResponse;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the /v1/generate response, as an object or a JSON string")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            GenerateResponse::deserialize(de::value::MapAccessDeserializer::new(map))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            serde_json::from_str(text).map_err(|e| E::custom(JsonError::from(e)))
        }
    }
    deserializer.deserialize_any(ObjectOrString)
}

/// Response of `POST /v1/generate`: new client signing shares, keyed by curve.
pub type GenerateResponse = CurveShares;
/// Response of `POST /v1/backup`: client backup shares with their backup share pair ids.
pub type BackupResponse = CurveShares;
/// Response of `POST /v1/recover`: new client signing shares, keyed by curve.
pub type RecoverResponse = CurveShares;

/// Body of `POST /v1/generate`. Portal documents `{}`; the SDK may send the optional fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    /// Ask for a pre-generated wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pre_generated: Option<bool>,
    /// A JSON-encoded metadata object, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_str: Option<String>,
}

/// Body of `POST /v1/backup`: `{"generateResponse": "<the generate response as JSON text>"}`.
///
/// The field is a string holding JSON, and it carries signing shares, so it is a
/// [`SecretShare`].
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRequest {
    /// The `/v1/generate` (or `/v1/recover`) response, serialized as JSON text.
    pub generate_response: SecretShare,
}

impl BackupRequest {
    /// Builds the request from a generate (or recover) response.
    ///
    /// # Errors
    /// Only if serialization fails, which the types here cannot cause in practice.
    pub fn new(generate_response: &GenerateResponse) -> Result<Self, JsonError> {
        Ok(Self {
            generate_response: secret_json(generate_response)?,
        })
    }

    /// Parses the embedded generate response (what a server does on receipt).
    ///
    /// # Errors
    /// If the string is not a JSON curve envelope.
    pub fn parse_generate_response(&self) -> Result<GenerateResponse, JsonError> {
        parse_secret_json(&self.generate_response)
    }
}

/// Body of `POST /v1/recover`: `{"backupResponse": "<the backup response as JSON text>"}`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverRequest {
    /// The `/v1/backup` response (with the decrypted client backup shares), as JSON text.
    pub backup_response: SecretShare,
}

impl RecoverRequest {
    /// Builds the request from a backup response.
    ///
    /// # Errors
    /// Only if serialization fails, which the types here cannot cause in practice.
    pub fn new(backup_response: &BackupResponse) -> Result<Self, JsonError> {
        Ok(Self {
            backup_response: secret_json(backup_response)?,
        })
    }

    /// Parses the embedded backup response (what a server does on receipt).
    ///
    /// # Errors
    /// If the string is not a JSON curve envelope.
    pub fn parse_backup_response(&self) -> Result<BackupResponse, JsonError> {
        parse_secret_json(&self.backup_response)
    }
}

/// Serializes share-bearing data into a zeroizing string without leaving reallocated,
/// unwiped copies: the exact length is measured first, then written into a buffer of exactly
/// that capacity.
///
/// # Errors
/// If `value` fails to serialize.
pub fn secret_json<T: Serialize + ?Sized>(value: &T) -> Result<SecretShare, JsonError> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *buf, value)?;
    let text = std::str::from_utf8(&buf).map_err(|_| JsonError::invalid_utf8())?;
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    out.push_str(text);
    Ok(SecretShare::from(out))
}

/// Parses share-bearing JSON text held in a secret.
///
/// # Errors
/// If the text is not valid JSON for `T`; the error never quotes the input.
pub fn parse_secret_json<T: DeserializeOwned>(text: &SecretShare) -> Result<T, JsonError> {
    Ok(serde_json::from_str(text.expose_secret())?)
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "eyJjbGllbnRJZCI6IiIsInNoYXJlIjoiMTIzIiwic3NpZCI6ImFiYyJ9";
    const S2: &str = "eyJjbGllbnRJZCI6IiIsInNoYXJlIjoiNDU2Iiwic3NpZCI6ImRlZiJ9";

    fn sample() -> CurveShares {
        CurveShares {
            secp256k1: Some(CurveShare::new(S1.into(), "sp-secp")),
            ed25519: Some(CurveShare::new(S2.into(), "sp-ed")),
        }
    }

    #[test]
    fn envelope_uses_upper_case_keys_and_accepts_lower_case() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["SECP256K1"]["share"], S1);
        assert_eq!(json["ED25519"]["id"], "sp-ed");
        let lower = format!(
            r#"{{"secp256k1":{{"share":"{S1}","id":"sp-secp"}},"ed25519":{{"share":"{S2}","id":"sp-ed"}}}}"#
        );
        let parsed: CurveShares = serde_json::from_str(&lower).unwrap();
        assert_eq!(parsed, sample());
        assert_eq!(parsed.ids(), ["sp-secp", "sp-ed"]);
        assert_eq!(parsed.get(&Curve::Ed25519).unwrap().id, "sp-ed");
        assert!(parsed.get(&Curve::Other("BLS".into())).is_none());
    }

    #[test]
    fn backup_request_holds_a_json_string() {
        let req = BackupRequest::new(&sample()).unwrap();
        let body = serde_json::to_value(&req).unwrap();
        let inner = body["generateResponse"].as_str().unwrap();
        let reparsed: CurveShares = serde_json::from_str(inner).unwrap();
        assert_eq!(reparsed, sample());
        assert_eq!(req.parse_generate_response().unwrap(), sample());
        assert!(!format!("{req:?}").contains(S1));
    }

    #[test]
    fn recover_request_holds_a_json_string() {
        let req = RecoverRequest::new(&sample()).unwrap();
        let body = serde_json::to_string(&req).unwrap();
        let back: RecoverRequest = serde_json::from_str(&body).unwrap();
        assert_eq!(back.parse_backup_response().unwrap(), sample());
        assert!(body.starts_with(r#"{"backupResponse":"{\"SECP256K1\""#));
    }

    #[test]
    fn debug_of_envelope_is_redacted() {
        let text = format!("{:#?}", sample());
        assert!(!text.contains(S1) && !text.contains(S2));
        assert!(text.contains("sp-secp"));
    }

    #[test]
    fn generate_request_default_is_empty_object() {
        assert_eq!(
            serde_json::to_string(&GenerateRequest::default()).unwrap(),
            "{}"
        );
    }
}
