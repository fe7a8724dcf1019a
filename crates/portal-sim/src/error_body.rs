//! Portal-like error responses, and the note that lets the report count them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// How the error body is shaped on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"id": "...", "message": "..."}` (Enclave MPC and Client API).
    Flat,
    /// `{"error": "..."}` (Custodian API).
    Custodian,
    /// A bare JSON string (Portal's 401s for a missing or malformed header).
    Bare,
}

/// An error answer Portal would give. Carries a reason for the report.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: u16,
    id: &'static str,
    message: String,
    shape: Shape,
}

/// Attached to error responses so the API layer can count the rejection with its reason.
#[derive(Debug, Clone)]
pub(crate) struct RejectionNote(pub(crate) String);

impl ApiError {
    pub(crate) fn flat(status: u16, id: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            id,
            message: message.into(),
            shape: Shape::Flat,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::flat(400, "BAD_REQUEST", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::flat(404, "NOT_FOUND", message)
    }

    pub(crate) fn state_invalid(message: impl Into<String>) -> Self {
        Self::flat(400, "STATE_INVALID", message)
    }

    pub(crate) fn auth_failed(message: impl Into<String>) -> Self {
        Self::flat(401, "AUTH_FAILED", message)
    }

    /// A 401 with a bare JSON string body, as Portal answers a missing or malformed header.
    pub(crate) fn unauthorized_bare(message: &'static str) -> Self {
        Self {
            status: 401,
            id: "AUTH_FAILED",
            message: message.to_owned(),
            shape: Shape::Bare,
        }
    }

    /// A Custodian API error: `{"error": "message"}`.
    pub(crate) fn custodian(status: u16, id: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            id,
            message: message.into(),
            shape: Shape::Custodian,
        }
    }

    /// The same error in the Custodian API's shape (bare-string 401s stay as they are).
    pub(crate) fn into_custodian(self) -> Self {
        match self.shape {
            Shape::Flat => Self {
                shape: Shape::Custodian,
                ..self
            },
            _ => self,
        }
    }

    /// `ID: message`, as counted in the report.
    pub(crate) fn reason(&self) -> String {
        format!("{}: {}", self.id, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let note = RejectionNote(self.reason());
        let body = match self.shape {
            Shape::Flat => json!({"id": self.id, "message": self.message}),
            Shape::Custodian => json!({"error": self.message}),
            Shape::Bare => json!(self.message),
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(note);
        response
    }
}
