//! The simulator's own routes under `/_sim/`: clients, custodians, faults, report, clock.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Simulator;
use super::caller::*;
use crate::Error;
use crate::error_body::ApiError;
use crate::faults::FaultRule;

/// The admin routes under `/_sim/`.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/_sim/health", get(|| async { "ok" }))
        .route("/_sim/custodians", post(admin_create_custodian))
        .route("/_sim/clients", post(admin_create_client))
        .route(
            "/_sim/faults",
            get(admin_get_faults)
                .put(admin_put_faults)
                .post(admin_add_fault)
                .delete(admin_clear_faults),
        )
        .route("/_sim/report", get(admin_report).delete(admin_reset_report))
        .route("/_sim/clock/advance", post(admin_advance_clock))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct AdminCustodianRequest {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct AdminClientRequest {
    custodian_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdminClockRequest {
    seconds: u64,
}

/// A fault rule as JSON, or as its text form.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RuleInput {
    Text(String),
    Rule(FaultRule),
}

impl RuleInput {
    pub(super) fn into_rule(self) -> Result<FaultRule, Error> {
        let rule = match self {
            Self::Text(text) => text.parse()?,
            Self::Rule(rule) => rule,
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// An admin route's error: `{"id": "BAD_REQUEST", "message": ...}` with `status`. Admin routes
/// are outside the API layer, so it is never counted as a rejection.
pub(super) fn admin_error(status: u16, message: impl Into<String>) -> ApiError {
    ApiError::flat(status, "BAD_REQUEST", message)
}

/// An admin route's JSON body; a bad one answers 400 with the parse error.
pub(super) fn admin_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    parse(body).map_err(|e| admin_error(400, e.reason()))
}

/// Like [`admin_body`], with an empty body meaning the default (`{}`).
pub(super) fn admin_body_or_default<T: DeserializeOwned + Default>(
    body: &Bytes,
) -> Result<T, ApiError> {
    parse_or_default(body).map_err(|e| admin_error(400, e.reason()))
}

pub(super) async fn admin_create_custodian(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let request: AdminCustodianRequest = admin_body_or_default(&body)?;
    let custodian = sim.create_custodian(request.name.as_deref().unwrap_or("custodian"));
    Ok(
        Json(json!({"id": custodian.id, "apiKey": custodian.api_key.expose_secret()}))
            .into_response(),
    )
}

pub(super) async fn admin_create_client(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let request: AdminClientRequest = admin_body_or_default(&body)?;
    let created = match request.custodian_id {
        Some(id) => sim.create_client_for(&id),
        None => Ok(sim.create_client()),
    };
    let c = created.map_err(|_| admin_error(404, "unknown custodian"))?;
    Ok(Json(json!({
        "custodianId": c.custodian_id,
        "custodianApiKey": c.custodian_api_key.expose_secret(),
        "clientId": c.client_id,
        "clientApiKey": c.client_api_key.expose_secret(),
        "clientSessionToken": c.client_session_token.expose_secret(),
    }))
    .into_response())
}

pub(super) async fn admin_get_faults(State(sim): State<Simulator>) -> Response {
    Json(sim.faults()).into_response()
}

pub(super) async fn admin_put_faults(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let inputs: Vec<RuleInput> = admin_body(&body)?;
    let rules: Result<Vec<FaultRule>, Error> =
        inputs.into_iter().map(RuleInput::into_rule).collect();
    rules
        .and_then(|rules| sim.set_faults(rules))
        .map_err(|e| admin_error(400, e.to_string()))?;
    Ok(Json(sim.faults()).into_response())
}

pub(super) async fn admin_add_fault(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let input: RuleInput = admin_body(&body)?;
    input
        .into_rule()
        .and_then(|rule| sim.add_fault(rule))
        .map_err(|e| admin_error(400, e.to_string()))?;
    Ok(Json(sim.faults()).into_response())
}

pub(super) async fn admin_clear_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn admin_report(
    State(sim): State<Simulator>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let report = sim.report();
    if query.get("format").is_some_and(|f| f == "text") {
        let mut r = format!("{report}\n").into_response();
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    } else {
        Json(report).into_response()
    }
}

pub(super) async fn admin_reset_report(State(sim): State<Simulator>) -> Response {
    sim.reset_report();
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn admin_advance_clock(State(sim): State<Simulator>, body: Bytes) -> Answer {
    let request: AdminClockRequest = admin_body(&body)?;
    sim.advance_clock(Duration::from_secs(request.seconds));
    Ok(StatusCode::NO_CONTENT.into_response())
}
