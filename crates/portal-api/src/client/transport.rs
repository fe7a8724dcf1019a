//! Sending one logical request: rate limiting, the retry loop, bounded zeroizing body reads.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use zeroize::{Zeroize, Zeroizing};

use super::base_url;
use super::portal::Portal;
use super::retry::{self, Replay};
use crate::error::{Error, JsonError, Result, TransportKind};
use crate::mpc::secret_json;

/// Which Portal host a call goes to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Host {
    Api,
    Mpc,
}

/// One logical request, sent with the credential of the role that makes it.
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) host: Host,
    pub(super) template: &'static str,
    pub(super) params: &'a [&'a str],
    pub(super) query: &'a [(&'static str, String)],
    pub(super) body: Option<Bytes>,
    pub(super) replay: Replay,
}

impl<'a> Call<'a> {
    /// A call to the API host without body or query, safe to retry.
    pub(super) fn api(method: Method, template: &'static str, params: &'a [&'a str]) -> Self {
        Self {
            method,
            host: Host::Api,
            template,
            params,
            query: &[],
            body: None,
            replay: Replay::Safe,
        }
    }
}

impl Portal {
    /// Sends `call` authenticated with `auth` and parses the JSON answer.
    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        auth: &HeaderValue,
        call: Call<'_>,
    ) -> Result<T> {
        let (status, body) = self.execute(auth, call).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            status,
            source: JsonError::from(e),
        })
    }

    /// Sends `call` authenticated with `auth`, ignoring the answer's body.
    pub(super) async fn empty(&self, auth: &HeaderValue, call: Call<'_>) -> Result<()> {
        self.execute(auth, call).await.map(drop)
    }

    /// Sends a call with rate limiting and retries; returns the status and body of the first
    /// success.
    async fn execute(
        &self,
        auth: &HeaderValue,
        call: Call<'_>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>)> {
        let (base, limiter) = match call.host {
            Host::Api => (&self.shared.api_base, &self.shared.api_limiter),
            Host::Mpc => (&self.shared.mpc_base, &self.shared.mpc_limiter),
        };
        let url = base_url::route(base, call.template, call.params, call.query)?;
        let mut retry: u32 = 0;
        let result = loop {
            limiter.acquire().await;
            let outcome = self.attempt(&call, &url, auth).await;
            let error = match outcome {
                Ok(done) => break Ok(done),
                Err(error) => error,
            };
            let Some(delay) = self.shared.retry.delay(retry, &error, call.replay) else {
                break Err(error);
            };
            tracing::debug!(
                route = call.template,
                retry,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying portal request"
            );
            tokio::time::sleep(delay).await;
            retry = retry.saturating_add(1);
        };
        if let Some(body) = call.body {
            wipe(body);
        }
        result
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        url: &Url,
        auth: &HeaderValue,
    ) -> Result<(u16, Zeroizing<Vec<u8>>)> {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .header(AUTHORIZATION, auth.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| retry::parse_retry_after(v.as_bytes()));
        let body = read_body(&mut response, self.shared.max_response_bytes).await?;
        tracing::debug!(
            route = call.template,
            status = status.as_u16(),
            "portal response"
        );
        if status.is_success() {
            Ok((status.as_u16(), body))
        } else {
            Err(Error::from_response(status.as_u16(), &body, retry_after))
        }
    }
}

pub(super) fn encode(source: JsonError) -> Error {
    Error::Encode { source }
}

/// A request body that carries shares: serialized into an exact-size buffer.
pub(super) fn secret_body<T: Serialize>(value: &T) -> Result<Bytes> {
    let text = secret_json(value).map_err(encode)?;
    Ok(Bytes::copy_from_slice(text.expose_secret().as_bytes()))
}

/// A request body without secrets.
pub(super) fn plain_body<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| encode(JsonError::from(e)))
}

/// Overwrites a request body once no one else holds it (best effort).
fn wipe(body: Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

fn transport(e: reqwest::Error) -> Error {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Other
    };
    Error::transport(kind, e.without_url())
}

/// Reads a body into a zeroizing buffer, growing it without leaving unwiped copies behind.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Zeroizing<Vec<u8>>> {
    let hint = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(limit);
    let mut buf = Zeroizing::new(Vec::with_capacity(hint));
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        let needed = buf
            .len()
            .checked_add(chunk.len())
            .filter(|n| *n <= limit)
            .ok_or(Error::ResponseTooLarge { limit })?;
        if needed > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                needed.max(buf.capacity().saturating_mul(2)).min(limit),
            ));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk);
        wipe(chunk);
    }
    Ok(buf)
}
