//! Self-Managed Backups: delivering custodian backup shares to the integrator's webhook and
//! fetching them back, as Portal does.
//!
//! `POST {base}/backup` `{backupMethod, clientId, share}` must answer 2xx, then
//! `POST {base}/backup/fetch` `{clientId}` must answer 200 `{"backupShares": [...]}` with the
//! share among them. Every call carries `X-Webhook-Secret` and has a deadline (10 s by
//! default). The share is never logged.

use axum::http::{HeaderName, HeaderValue};
use portal_api::SecretShare;
use portal_api::webhook::{BACKUP_PATH, BackupRequest, FETCH_PATH, FetchRequest, FetchResponse};
use zeroize::Zeroizing;

use crate::Error;
use crate::config::WebhookConfig;

/// `X-Webhook-Secret`, in the lower case a `HeaderName` constant must have.
const SECRET_HEADER: HeaderName = HeaderName::from_static("x-webhook-secret");
/// Largest fetch answer read (shares are a few KiB each).
const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024;

/// A configured webhook.
#[derive(Debug)]
pub(crate) struct Webhook {
    http: reqwest::Client,
    backup_url: String,
    fetch_url: String,
    secret: HeaderValue,
}

impl Webhook {
    pub(crate) fn new(config: &WebhookConfig) -> Result<Self, Error> {
        let base = config.base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|_| Error::InvalidConfig {
            reason: "the webhook url is not a valid absolute url",
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::InvalidConfig {
                reason: "the webhook url must be http or https",
            });
        }
        let mut secret = HeaderValue::from_str(config.secret.expose_secret()).map_err(|_| {
            Error::InvalidConfig {
                reason: "the webhook secret contains characters not allowed in a header",
            }
        })?;
        secret.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // Idle connections are dropped before a webhook closes them on its side (the
            // custodian webhook after 5 s): reusing one the server is closing at that moment
            // fails the delivery with a transport error that no webhook could prevent.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| Error::InvalidConfig {
                reason: "the webhook http client could not be initialised",
            })?;
        Ok(Self {
            http,
            backup_url: format!("{base}{BACKUP_PATH}"),
            fetch_url: format!("{base}{FETCH_PATH}"),
            secret,
        })
    }

    async fn post(&self, url: &str, body: Zeroizing<Vec<u8>>) -> Result<reqwest::Response, String> {
        self.http
            .post(url)
            .header(SECRET_HEADER, self.secret.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "no answer within the deadline".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "transport error".to_owned()
                }
            })
    }

    /// `POST /backup` with the share, then `POST /backup/fetch` must give it back.
    pub(crate) async fn deliver(
        &self,
        client_id: &str,
        backup_method: &str,
        share: &SecretShare,
    ) -> Result<(), String> {
        let body = BackupRequest {
            backup_method: backup_method.to_owned(),
            client_id: client_id.to_owned(),
            share,
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&body).map_err(|_| "encode".to_owned())?);
        let response = self
            .post(&self.backup_url, bytes)
            .await
            .map_err(|e| format!("POST /backup: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "POST /backup answered {}",
                response.status().as_u16()
            ));
        }
        self.fetch_contains(client_id, share).await
    }

    /// `POST /backup/fetch` must answer 200 with `share` among `backupShares`.
    pub(crate) async fn fetch_contains(
        &self,
        client_id: &str,
        share: &SecretShare,
    ) -> Result<(), String> {
        let body = Zeroizing::new(
            serde_json::to_vec(&FetchRequest {
                client_id: client_id.to_owned(),
            })
            .map_err(|_| "encode".to_owned())?,
        );
        let mut response = self
            .post(&self.fetch_url, body)
            .await
            .map_err(|e| format!("POST /backup/fetch: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("POST /backup/fetch answered {status}"));
        }
        let mut bytes = Zeroizing::new(Vec::new());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len().saturating_add(chunk.len()) > MAX_FETCH_BYTES {
                        return Err("POST /backup/fetch answer too large".to_owned());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return Err("POST /backup/fetch: body could not be read".to_owned()),
            }
        }
        let answer: FetchResponse = serde_json::from_slice(&bytes)
            .map_err(|_| "POST /backup/fetch answer is not {\"backupShares\": [...]}".to_owned())?;
        if answer.backup_shares.iter().any(|s| s == share) {
            Ok(())
        } else {
            Err("POST /backup/fetch did not return the custodian backup share".to_owned())
        }
    }
}
