//! The crate's one error type, and the lenient parser for Portal's error bodies.
//!
//! Nothing in this module ever puts a secret, a request body or a token-bearing URL into a
//! `Display` or `Debug` output. Portal's own error `message` is kept in [`ErrorBody`] but is
//! never part of `Display`, since a server may echo input back.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Longest `id` / `message` / raw text kept from an error body, in characters.
const MAX_FIELD_CHARS: usize = 1024;
/// Longest raw (non-JSON) body text kept, in characters.
const MAX_RAW_CHARS: usize = 512;

/// Everything that can go wrong when talking to Portal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Portal answered HTTP 401: the API key or session token is missing, malformed, revoked
    /// or expired (an expired Client Session Token also shows up here).
    #[error("portal rejected the credentials (http 401{})", body.id_suffix())]
    Unauthorized {
        /// The parsed error body.
        body: ErrorBody,
    },

    /// Portal answered with a non-success status other than 401.
    #[error("portal returned http {status}{}", body.id_suffix())]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The parsed error body.
        body: ErrorBody,
        /// The server's `Retry-After`, if it sent one in delta-seconds form.
        retry_after: Option<Duration>,
    },

    /// The request did not complete: connection, TLS, timeout or I/O failure.
    #[error("request to portal failed ({kind})")]
    Transport {
        /// What kind of failure it was.
        kind: TransportKind,
        /// The underlying error (URLs already stripped).
        #[source]
        source: BoxError,
    },

    /// A success response could not be decoded into the expected type.
    #[error("failed to decode the response of portal (http {status})")]
    Decode {
        /// The HTTP status code of the response.
        status: u16,
        /// Where decoding failed (no input is echoed).
        #[source]
        source: JsonError,
    },

    /// A request body could not be encoded.
    #[error("failed to encode the request body")]
    Encode {
        /// Why encoding failed.
        #[source]
        source: JsonError,
    },

    /// The response body was larger than the client accepts.
    #[error("response body exceeds {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// A base URL was rejected.
    #[error("invalid {which} base url: {reason}")]
    InvalidBaseUrl {
        /// Which base URL: `"api"` or `"mpc"`.
        which: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An argument was rejected before any request was made.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument, e.g. `"walletId"`.
        name: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A client setting was rejected.
    #[error("invalid client configuration: {reason}")]
    InvalidConfig {
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl Error {
    /// Whether repeating the same request later may succeed: HTTP 429, any 5xx, and transport
    /// failures. Whether a request is *safe* to repeat is a separate question that the client
    /// answers per endpoint.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status == 429 || (500..=599).contains(status),
            Self::Transport { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, when Portal answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The parsed error body, when Portal answered with an error status.
    #[must_use]
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Self::Unauthorized { body } | Self::Api { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Portal's error `id` (e.g. `DKG_FAILED`, `AUTH_FAILED`), when it sent one. Branch on
    /// this, never on the deprecated numeric `code`.
    #[must_use]
    pub fn error_id(&self) -> Option<&str> {
        self.body().and_then(|b| b.id.as_deref())
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Builds the error for a non-success status from the raw response body.
    #[must_use]
    pub fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let body = ErrorBody::parse(body);
        if status == 401 {
            Self::Unauthorized { body }
        } else {
            Self::Api {
                status,
                body,
                retry_after,
            }
        }
    }

    /// Builds a transport error from any error type.
    pub fn transport(
        kind: TransportKind,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self::Transport {
            kind,
            source: source.into(),
        }
    }
}

/// The kind of a [`Error::Transport`] failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Connecting failed (DNS, TCP, TLS handshake): the request never reached the server.
    Connect,
    /// The request timed out; it may or may not have reached the server.
    Timeout,
    /// Any other I/O or protocol failure after connecting.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Other => "io",
        })
    }
}

/// A JSON encode or decode failure that records *where* it failed but never the input.
///
/// serde_json's own messages quote offending values (`invalid type: string "..."`), which for
/// share-bearing bodies could be a share; this type keeps only the category and position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid json ({category}) at line {line}, column {column}")]
pub struct JsonError {
    category: &'static str,
    line: usize,
    column: usize,
}

impl JsonError {
    /// Serialized output that was not UTF-8 (cannot happen with serde_json).
    pub(crate) fn invalid_utf8() -> Self {
        Self {
            category: "data",
            line: 0,
            column: 0,
        }
    }

    /// The failure category: `"syntax"`, `"data"`, `"eof"` or `"io"`.
    #[must_use]
    pub fn category(&self) -> &'static str {
        self.category
    }

    /// The line (1-based) where it failed, 0 if unknown.
    #[must_use]
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column (1-based) where it failed, 0 if unknown.
    #[must_use]
    pub fn column(&self) -> usize {
        self.column
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let category = match e.classify() {
            Category::Io => "io",
            Category::Syntax => "syntax",
            Category::Data => "data",
            Category::Eof => "eof",
        };
        Self {
            category,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// Portal's error body, parsed leniently from every documented shape.
///
/// | shape | example |
/// |---|---|
/// | flat | `{"id": "DKG_FAILED", "message": "…"}` |
/// | wrapped | `{"error": {"id": "AUTH_FAILED", "message": "…", "code": 202}}` |
/// | 2024 schema | `{"error": {"code": 211, "prefix": "", "error": "SIGNING_NETWORK_ERROR", "message": "…"}}` |
/// | custodian | `{"error": "ejectableUntil must be …"}` |
/// | bare string | `"Incorrect API key format"` |
/// | empty, `{}` or not JSON | everything `None`; non-JSON text goes to `raw` |
///
/// Fields are truncated to a bounded length. Parsing never fails and never panics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorBody {
    /// The error id, e.g. `BAD_REQUEST`, `AUTH_FAILED`, `DKG_FAILED`.
    pub id: Option<String>,
    /// The human-readable message, when there is one.
    pub message: Option<String>,
    /// The deprecated numeric code, as text (`"202"`); do not branch on it.
    pub code: Option<String>,
    /// The start of the body when it was not JSON (e.g. a proxy's HTML page).
    pub raw: Option<String>,
}

impl ErrorBody {
    /// Parses an error body of any documented shape. Never fails.
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Self {
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return Self::default();
        }
        match serde_json::from_slice::<serde_json::Value>(trimmed) {
            Ok(value) => Self::from_value(&value),
            Err(_) => Self {
                raw: Some(truncate(&String::from_utf8_lossy(trimmed), MAX_RAW_CHARS)),
                ..Self::default()
            },
        }
    }

    /// Builds an error body with an id and a message (handy for tests and simulators).
    #[must_use]
    pub fn new(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
            message: Some(message.into()),
            ..Self::default()
        }
    }

    fn from_value(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        let mut out = Self::default();
        match value {
            Value::String(s) => out.message = Some(truncate(s, MAX_FIELD_CHARS)),
            Value::Object(map) => {
                match map.get("error") {
                    Some(Value::Object(inner)) => {
                        out.id = string_field(inner.get("id"))
                            .or_else(|| string_field(inner.get("error")));
                        out.message = string_field(inner.get("message"));
                        out.code = code_field(inner.get("code"));
                    }
                    Some(Value::String(s)) => out.message = Some(truncate(s, MAX_FIELD_CHARS)),
                    _ => {}
                }
                out.id = out.id.or_else(|| string_field(map.get("id")));
                out.message = out.message.or_else(|| string_field(map.get("message")));
                out.code = out.code.or_else(|| code_field(map.get("code")));
            }
            _ => {}
        }
        out
    }

    /// `" BAD_REQUEST"`-style suffix for `Display`, only for ids that look like ids.
    fn id_suffix(&self) -> String {
        match self.id.as_deref() {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                format!(", {id}")
            }
            _ => String::new(),
        }
    }
}

fn string_field(v: Option<&serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(truncate(s, MAX_FIELD_CHARS)),
        _ => None,
    }
}

fn code_field(v: Option<&serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) => Some(truncate(s, 32)),
        _ => None,
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_shape() {
        let b = ErrorBody::parse(br#"{"id":"DKG_FAILED","message":"dkg failed"}"#);
        assert_eq!(b, ErrorBody::new("DKG_FAILED", "dkg failed"));
    }

    #[test]
    fn flat_shape_without_message() {
        let b = ErrorBody::parse(br#"{"id":"RPC_OP_FAILED"}"#);
        assert_eq!(b.id.as_deref(), Some("RPC_OP_FAILED"));
        assert_eq!(b.message, None);
    }

    #[test]
    fn wrapped_shape() {
        let b = ErrorBody::parse(
            br#"{"error":{"id":"AUTH_FAILED","message":"Invalid API key","code":202}}"#,
        );
        assert_eq!(b.id.as_deref(), Some("AUTH_FAILED"));
        assert_eq!(b.message.as_deref(), Some("Invalid API key"));
        assert_eq!(b.code.as_deref(), Some("202"));
    }

    #[test]
    fn schema_2024_shape() {
        let b = ErrorBody::parse(
            br#"{"error":{"code":211,"prefix":"","error":"SIGNING_NETWORK_ERROR","message":"boom"}}"#,
        );
        assert_eq!(b.id.as_deref(), Some("SIGNING_NETWORK_ERROR"));
        assert_eq!(b.message.as_deref(), Some("boom"));
        assert_eq!(b.code.as_deref(), Some("211"));
    }

    #[test]
    fn custodian_string_error() {
        let b =
            ErrorBody::parse(br#"{"error":"ejectableUntil must be at least 1 minute from now."}"#);
        assert_eq!(b.id, None);
        assert_eq!(
            b.message.as_deref(),
            Some("ejectableUntil must be at least 1 minute from now.")
        );
    }

    #[test]
    fn bare_string() {
        let b = ErrorBody::parse(br#""Incorrect API key format""#);
        assert_eq!(b.message.as_deref(), Some("Incorrect API key format"));
        assert_eq!(b.id, None);
    }

    #[test]
    fn empty_object_and_whitespace() {
        assert_eq!(ErrorBody::parse(b""), ErrorBody::default());
        assert_eq!(ErrorBody::parse(b"  \n"), ErrorBody::default());
        assert_eq!(ErrorBody::parse(b"{}"), ErrorBody::default());
        assert_eq!(ErrorBody::parse(b"[1,2]"), ErrorBody::default());
    }

    #[test]
    fn non_json_is_kept_truncated() {
        let html = format!("<html>{}</html>", "x".repeat(5000));
        let b = ErrorBody::parse(html.as_bytes());
        let raw = b.raw.unwrap();
        assert!(raw.starts_with("<html>"));
        assert_eq!(raw.chars().count(), MAX_RAW_CHARS);
        let b = ErrorBody::parse(&[0xff, 0xfe, b'{']);
        assert!(b.raw.is_some());
    }

    #[test]
    fn status_401_is_its_own_variant() {
        let e = Error::from_response(401, br#""Authorization header is missing""#, None);
        assert!(matches!(e, Error::Unauthorized { .. }));
        assert_eq!(e.status(), Some(401));
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "portal rejected the credentials (http 401)");
    }

    #[test]
    fn retryable_statuses() {
        for (status, retryable) in [
            (400, false),
            (403, false),
            (404, false),
            (409, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (599, true),
        ] {
            let e = Error::from_response(status, b"", None);
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert_eq!(e.status(), Some(status));
        }
        let e = Error::transport(TransportKind::Connect, "refused");
        assert!(e.is_retryable());
        let e = Error::InvalidArgument {
            name: "walletId",
            reason: "must not be empty",
        };
        assert!(!e.is_retryable());
    }

    #[test]
    fn display_shows_id_but_never_message() {
        let e = Error::from_response(
            400,
            br#"{"id":"BAD_REQUEST","message":"share c2VjcmV0 is invalid"}"#,
            None,
        );
        assert_eq!(e.to_string(), "portal returned http 400, BAD_REQUEST");
        assert_eq!(e.error_id(), Some("BAD_REQUEST"));
        // An id that does not look like an id is not displayed.
        let e = Error::from_response(400, br#"{"id":"has spaces c2VjcmV0"}"#, None);
        assert_eq!(e.to_string(), "portal returned http 400");
    }

    #[test]
    fn json_error_does_not_echo_input() {
        let err = serde_json::from_str::<u32>(r#""c2VjcmV0LXNoYXJl""#).unwrap_err();
        assert!(err.to_string().contains("c2VjcmV0LXNoYXJl"));
        let ours = JsonError::from(err);
        assert!(!ours.to_string().contains("c2VjcmV0LXNoYXJl"));
        assert_eq!(ours.category(), "data");
        assert_eq!(ours.line(), 1);
    }

    #[test]
    fn retry_after_is_exposed() {
        let e = Error::from_response(429, b"", Some(Duration::from_secs(3)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}
