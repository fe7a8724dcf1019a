//! Per-client credentials as JSON Lines: the input of every command that acts as many
//! clients (`bulk backup`, and the fleet commands that need client sessions), read a line at
//! a time and run with bounded concurrency.
//!
//! # Input: one client a line
//!
//! ```text
//! {"clientApiKey": "<Client API Key>", "generateResponse": {"SECP256K1": {"share": "…", "id": "…"}, "ED25519": {"share": "…", "id": "…"}}}
//! {"clientSessionToken": "<Client Session Token>", "generateResponse": "<the same object as a JSON string>"}
//! {"clientApiKey": "<Client API Key>"}
//! ```
//!
//! * Each line is one JSON object (UTF-8, at most [`MAX_LINE_BYTES`] bytes) with exactly one
//!   of `clientApiKey` and `clientSessionToken` (the client's credential). A command that
//!   needs it also takes `generateResponse`: the client's `/v1/generate` response, as the
//!   JSON object Portal returned or as a string holding it (the form `/v1/backup` takes).
//!   Other fields are ignored.
//! * Lines are numbered from 1 in the order of the input; blank lines are skipped but keep
//!   their number, so a result's `line` is the line an editor shows.
//! * A line that cannot be used (not JSON, a credential missing or doubled, too long) fails
//!   on its own, with a reason that never quotes the line (it holds secrets); the run goes on.
//! * With a [`Shard`] `i/n`, a run takes the lines whose index (line number − 1) is `i`
//!   modulo `n`: the `n` shards together take every line exactly once.
//!
//! [`LineRun`] reads the input on a thread of its own into one fixed, zeroized buffer and
//! keeps at most `concurrency` lines in flight, so memory stays flat whatever the input's
//! length.

mod reader;
mod run;
mod shard;

use portal_api::mpc::GenerateResponse;
use portal_api::{ApiKey, ClientApi, Portal};
use serde::Deserialize;

pub use run::{LineEvent, LineRun, LinesRead};
pub use shard::{JOB_COMPLETION_INDEX, JobShardError, Shard};

/// The longest input line accepted, in bytes (1 MiB). A longer line fails on its own.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A client's credential, as one input line gives it. `Debug` shows which kind, never the
/// secret.
#[derive(Debug)]
pub enum ClientCredential {
    /// `clientApiKey`.
    ApiKey(ApiKey),
    /// `clientSessionToken`.
    SessionToken(ApiKey),
}

impl ClientCredential {
    /// The client role this credential acts as, over `portal`'s transport (so every line of
    /// a run shares its connection pool and rate limits).
    ///
    /// # Errors
    /// [`portal_api::Error`] when the credential cannot go into a request header.
    pub fn client(&self, portal: &Portal) -> portal_api::Result<ClientApi> {
        match self {
            Self::ApiKey(key) => portal.client_with_api_key(key),
            Self::SessionToken(token) => portal.client_with_session_token(token),
        }
    }
}

/// One usable input line.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClientLine {
    /// The client's credential.
    pub credential: ClientCredential,
    /// `generateResponse`, when the line has one.
    pub generate_response: Option<GenerateResponse>,
}

/// One input line as read: its number and the line, or why it cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub struct NumberedLine {
    /// The line number, from 1.
    pub line: u64,
    /// The line, or the reason it is unusable (never quoting it).
    pub parsed: Result<ClientLine, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLine {
    #[serde(default)]
    client_api_key: Option<ApiKey>,
    #[serde(default)]
    client_session_token: Option<ApiKey>,
    #[serde(
        default,
        deserialize_with = "optional_generate_response",
        rename = "generateResponse"
    )]
    generate_response: Option<GenerateResponse>,
}

fn optional_generate_response<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<GenerateResponse>, D::Error> {
    portal_api::mpc::generate_response_object_or_string(deserializer).map(Some)
}

/// Writes one result line (`result` as JSON and a newline) and flushes it, so that a reader
/// of the output sees each client as it finishes.
///
/// # Errors
/// Writing or serializing failed.
pub fn write_result_line<W: std::io::Write, T: serde::Serialize>(
    output: &mut W,
    result: &T,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *output, result)?;
    output.write_all(b"\n")?;
    output.flush()
}

/// Parses one input line. Errors name the position, never the input.
///
/// ```
/// use backup_flow::client_lines::{ClientCredential, parse_line};
///
/// let line = parse_line(br#"{"clientSessionToken":"t"}"#)?;
/// assert!(matches!(line.credential, ClientCredential::SessionToken(_)));
/// assert!(line.generate_response.is_none());
/// let both = parse_line(br#"{"clientApiKey":"k","clientSessionToken":"t"}"#).unwrap_err();
/// assert!(both.contains("both"));
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
/// Why the line cannot be used.
pub fn parse_line(line: &[u8]) -> Result<ClientLine, String> {
    let parsed: WireLine = serde_json::from_slice(line).map_err(|e| {
        let e = portal_api::JsonError::from(e);
        format!(
            "not a client line: invalid JSON ({}) at column {}",
            e.category(),
            e.column()
        )
    })?;
    let credential = match (parsed.client_api_key, parsed.client_session_token) {
        (Some(key), None) => ClientCredential::ApiKey(key),
        (None, Some(token)) => ClientCredential::SessionToken(token),
        (Some(_), Some(_)) => {
            return Err("the line has both clientApiKey and clientSessionToken; give one".into());
        }
        (None, None) => {
            return Err("the line has neither clientApiKey nor clientSessionToken".into());
        }
    };
    Ok(ClientLine {
        credential,
        generate_response: parsed.generate_response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let parse = |l: &str| parse_line(l.as_bytes());
        let object = parse(
            r#"{"clientApiKey":"k1","generateResponse":{"SECP256K1":{"share":"s","id":"a"}}}"#,
        )
        .unwrap();
        assert_eq!(object.generate_response.unwrap().ids(), ["a"]);
        let string = parse(
            r#"{"clientSessionToken":"t","generateResponse":"{\"ed25519\":{\"share\":\"s\",\"id\":\"b\"}}","extra":1}"#,
        )
        .unwrap();
        assert_eq!(string.generate_response.unwrap().ids(), ["b"]);
        let bare = parse(r#"{"clientApiKey":"k"}"#).unwrap();
        assert!(bare.generate_response.is_none());
        assert!(
            parse(r#"{"clientApiKey":"k","clientSessionToken":"t","generateResponse":{}}"#)
                .unwrap_err()
                .contains("both")
        );
        let bad_type =
            parse(r#"{"clientApiKey":"secret-key-1", "generateResponse": 5}"#).unwrap_err();
        assert!(bad_type.contains("invalid JSON (data)"), "{bad_type}");
        assert!(!bad_type.contains("secret-key-1"));
        assert!(
            parse(r#"{"generateResponse":{}}"#)
                .unwrap_err()
                .contains("neither")
        );
        let debug = format!("{:?}", parse(r#"{"clientApiKey":"secret-key-2"}"#).unwrap());
        assert!(!debug.contains("secret-key-2"), "{debug}");
    }
}
