//! The API layer every Portal route passes: fault injection, rate limits, rejection
//! counting and the request log (without secrets).

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Simulator;
use super::listener::*;
use crate::error_body::{ApiError, RejectionNote};
use crate::faults::Injection;
use crate::traffic::Host;

pub(super) async fn api_layer(
    State(sim): State<Simulator>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let kill = request
        .extensions()
        .get::<ConnectInfo<KillSwitch>>()
        .map(|c| c.0.clone());
    let host = Host::of_route(&route);
    let in_last_second = sim
        .state()
        .recorder
        .arrival(host, std::time::Instant::now());
    let limit = sim.rate_limit(host);
    if limit.is_some_and(|limit| in_last_second > u64::from(limit)) {
        sim.state().recorder.throttled(host);
        tracing::info!(%method, %route, %host, "rate limit exceeded: 429");
        return too_many_requests(1);
    }
    let (latency, injection) = sim.fault_state().decide(&method, &route);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if injection != Injection::None {
        sim.state().recorder.fault();
    }
    let injected = match injection {
        Injection::None | Injection::DropAfter => None,
        Injection::Error(status) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let id = if code.is_server_error() {
                "INTERNAL_ERROR"
            } else {
                "BAD_REQUEST"
            };
            Some((code, Json(json!({"id": id, "message": "injected fault"}))).into_response())
        }
        Injection::Throttle(secs) => {
            sim.state().recorder.throttled(host);
            Some(too_many_requests(secs))
        }
        Injection::Drop => Some(drop_connection(kill.as_ref())),
    };
    if let Some(response) = injected {
        tracing::info!(%method, %route, status = response.status().as_u16(), ?injection, "fault injected");
        return response;
    }
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if (400..500).contains(&status) {
        let reason = response
            .extensions()
            .get::<RejectionNote>()
            .map_or_else(|| format!("HTTP {status}"), |n| n.0.clone());
        sim.state()
            .recorder
            .rejection(&method, &route, status, &reason);
    }
    tracing::info!(%method, %route, status, "request");
    if injection == Injection::DropAfter {
        tracing::info!(%method, %route, "fault injected: connection dropped after the request took effect");
        return drop_connection(kill.as_ref());
    }
    response
}

/// Portal's 429 with `Retry-After` in seconds.
pub(super) fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"id": "TOO_MANY_REQUESTS", "message": "Too many requests"})),
    )
        .into_response();
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// Closes the connection without a response (or answers 503 where that is impossible).
pub(super) fn drop_connection(kill: Option<&KillSwitch>) -> Response {
    match kill {
        Some(k) => {
            k.trigger();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"id": "INTERNAL_ERROR", "message": "injected fault (connection drop)"})),
        )
            .into_response(),
    }
}

pub(super) async fn unknown_route(State(sim): State<Simulator>, request: Request) -> Response {
    unrouted(&sim, &request, ApiError::not_found("no such route"), 404)
}

pub(super) async fn method_not_allowed(State(sim): State<Simulator>, request: Request) -> Response {
    let error = ApiError::flat(405, "BAD_REQUEST", "method not allowed");
    unrouted(&sim, &request, error, 405)
}

/// Counts a request no route took (the API layer never saw it) and its rejection.
pub(super) fn unrouted(
    sim: &Simulator,
    request: &Request,
    error: ApiError,
    status: u16,
) -> Response {
    let mut state = sim.state();
    state.recorder.request();
    state.recorder.rejection(
        request.method().as_str(),
        request.uri().path(),
        status,
        &error.reason(),
    );
    error.into_response()
}
