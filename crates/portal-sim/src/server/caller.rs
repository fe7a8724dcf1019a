//! Who is calling: the bearer credential of a route, checked against the role (client or
//! custodian) that the route belongs to, and the JSON body parsers.

use std::marker::PhantomData;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portal_api::JsonError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::Simulator;
use crate::error_body::ApiError;
use crate::state::State as SimState;

/// One of Portal's credentialed APIs: whom its bearer token names, and how it shapes the
/// errors of authentication and body parsing.
pub(super) trait Api: Send + Sync + 'static {
    /// The caller's id for a bearer token, or the 401 Portal answers.
    fn authenticate(state: &mut SimState, token: &str) -> Result<String, ApiError>;

    /// An authentication or body error in this API's shape.
    fn shape(error: ApiError) -> ApiError;
}

/// The Enclave MPC API and the Client API: a Client API key or a client session token.
pub(super) struct ClientApi;

/// The Custodian API: a Custodian API key; errors as `{"error": ...}`.
pub(super) struct CustodianApi;

impl Api for ClientApi {
    fn authenticate(state: &mut SimState, token: &str) -> Result<String, ApiError> {
        state.auth_client(token)
    }

    fn shape(error: ApiError) -> ApiError {
        error
    }
}

impl Api for CustodianApi {
    fn authenticate(state: &mut SimState, token: &str) -> Result<String, ApiError> {
        state.auth_custodian(token)
    }

    fn shape(error: ApiError) -> ApiError {
        error.into_custodian()
    }
}

/// The authenticated caller of a route (its `Authorization: Bearer` header), with the
/// simulator it called. An extractor: a route without a body takes it after its `Path`.
pub(super) struct Caller<A> {
    pub(super) sim: Simulator,
    /// The client id (Client API) or the custodian id (Custodian API).
    pub(super) id: String,
    api: PhantomData<A>,
}

pub(super) type ClientCaller = Caller<ClientApi>;
pub(super) type CustodianCaller = Caller<CustodianApi>;

impl<A: Api> Caller<A> {
    pub(super) fn authenticate(sim: &Simulator, headers: &HeaderMap) -> Result<Self, ApiError> {
        let id = bearer(headers)
            .and_then(|token| A::authenticate(&mut sim.state(), &token))
            .map_err(A::shape)?;
        Ok(Self {
            sim: sim.clone(),
            id,
            api: PhantomData,
        })
    }

    /// Runs one state call as this caller and answers its value as JSON (200), or its error.
    pub(super) fn json<T: Serialize>(
        &self,
        call: impl FnOnce(&mut SimState, &str) -> Result<T, ApiError>,
    ) -> Answer {
        let value = call(&mut self.sim.state(), &self.id)?;
        Ok(Json(value).into_response())
    }

    /// Runs one state call as this caller and answers `status` with no body, or its error.
    pub(super) fn status(
        &self,
        status: StatusCode,
        call: impl FnOnce(&mut SimState, &str) -> Result<(), ApiError>,
    ) -> Answer {
        call(&mut self.sim.state(), &self.id)?;
        Ok(status.into_response())
    }
}

impl<A: Api> FromRequestParts<Simulator> for Caller<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sim: &Simulator) -> Result<Self, ApiError> {
        Self::authenticate(sim, &parts.headers)
    }
}

/// The caller of a route that takes a JSON body, and that body. The body is read before the
/// caller is authenticated (a body over axum's limit answers 413 whatever the credential), and
/// parsed after, by the handler, so a bad credential answers 401 before a bad body answers 400.
pub(super) struct Call<A> {
    pub(super) caller: Caller<A>,
    body: Bytes,
}

pub(super) type ClientCall = Call<ClientApi>;
pub(super) type CustodianCall = Call<CustodianApi>;

impl<A: Api> Call<A> {
    /// The body as JSON; the error names where parsing failed, never the input.
    pub(super) fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse(&self.body).map_err(A::shape)
    }

    /// Like [`parse`](Self::parse), with an empty body meaning the default (`{}`).
    pub(super) fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        parse_or_default(&self.body).map_err(A::shape)
    }
}

impl<A: Api> FromRequest<Simulator> for Call<A> {
    type Rejection = Response;

    async fn from_request(request: Request, sim: &Simulator) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, sim)
            .await
            .map_err(IntoResponse::into_response)?;
        let caller = Caller::authenticate(sim, &headers).map_err(IntoResponse::into_response)?;
        Ok(Self { caller, body })
    }
}

// ---- helpers -----------------------------------------------------------------------------

/// The bearer token, or Portal's 401 for a missing or malformed header.
pub(super) fn bearer(headers: &HeaderMap) -> Result<Zeroizing<String>, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized_bare("Authorization header is missing"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized_bare("Incorrect API key format"))?;
    let token = text
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(' '))
        .ok_or_else(|| ApiError::unauthorized_bare("Incorrect API key format"))?;
    Ok(Zeroizing::new(token.to_owned()))
}

/// Parses a JSON body; the error names where parsing failed, never the input.
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {}", JsonError::from(e))))
}

/// Like [`parse`], with an empty body meaning the default (`{}`).
pub(super) fn parse_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.trim_ascii().is_empty() {
        Ok(T::default())
    } else {
        parse(body)
    }
}

pub(super) type Answer = Result<Response, ApiError>;
