//! Drives the webhook's real request handling (`WebhookServer::router`, the routes and the
//! guard middleware Portal's requests go through) with arbitrary requests: method, path,
//! `X-Webhook-Secret`, `Content-Type`, `Content-Length`, `X-Forwarded-For`, the peer address
//! and the body, which is either raw bytes or a well-formed `/backup` or `/backup/fetch`
//! body with arbitrary field values (so that the fuzzer reaches the vault, not only the JSON
//! parser). Two servers: the defaults (any source), and an allowlist of loopback with a base
//! path and trusted forwarded-for.
//!
//! It asserts, whatever the input:
//! * nothing panics;
//! * the store is written only by a 2xx answer to `POST <base>/backup` with the right secret;
//!   any other request, and every rejected one, leaves it untouched;
//! * a 2xx `/backup` wrote the share; no answer is a 500 (the store and the KEK here cannot
//!   fail);
//! * no answer echoes the share or the secret sent.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, header};
use bytes::Bytes;
use custodian_webhook::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use custodian_webhook::storage::memory::MemoryStore;
use custodian_webhook::storage::{BackupKey, BackupStore, Capabilities, PutOptions, StorageError};
use custodian_webhook::{Allowlist, WebhookSecrets, WebhookServer};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

const SECRET: &str = "fuzz-webhook-secret-0123456789";
const SHARE_MARKER: &str = "zqxj-share-";

/// A memory store that counts what changes it.
#[derive(Debug, Default)]
struct CountingStore {
    inner: MemoryStore,
    writes: AtomicU64,
}

#[async_trait::async_trait]
impl BackupStore for CountingStore {
    fn name(&self) -> &'static str {
        "counting-memory"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, body, options).await
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        self.inner.list(client_id).await
    }
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        self.inner.list_clients().await
    }
}

struct Fixed {
    runtime: tokio::runtime::Runtime,
    keyring: Keyring,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
        keyring: Keyring::new()
            .with(Arc::new(LocalKek::from_key(&[7; 32])) as Arc<dyn KeyEncryptionKey>),
    })
}

/// Reads the input front to back; past its end every read is empty or zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    /// A length-prefixed slice (length byte, at most what is left).
    fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte()).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }
    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

fuzz_target!(|data: &[u8]| {
    let fixed = fixed();
    let mut input = Input(data);
    let choice = input.byte();
    let restricted = choice & 1 == 1;
    let base = if restricted { "/hooks" } else { "" };

    let store = Arc::new(CountingStore::default());
    let mut builder = WebhookServer::builder()
        .with_keyring(fixed.keyring.clone())
        .with_store(Arc::clone(&store) as Arc<dyn BackupStore>)
        .with_secrets(WebhookSecrets::parse(SECRET).unwrap());
    if restricted {
        builder = builder
            .with_base_path(base)
            .with_allowlist(Allowlist::loopback())
            .with_trust_forwarded_for(true);
    }
    let server = builder.build().unwrap();

    let method = match (choice >> 1) & 7 {
        0 | 1 | 2 => Method::POST,
        3 => Method::GET,
        4 => Method::PUT,
        5 => Method::DELETE,
        _ => match Method::from_bytes(input.bytes()) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    let path = match input.byte() % 6 {
        0 | 1 => format!("{base}/backup"),
        2 => format!("{base}/backup/fetch"),
        3 => "/healthz".to_owned(),
        _ => input.text(),
    };
    let flags = input.byte();
    let secret: Option<Vec<u8>> = match flags & 3 {
        0 | 1 => Some(SECRET.as_bytes().to_vec()),
        2 => None,
        _ => Some(input.bytes().to_vec()),
    };
    let content_type = match (flags >> 2) & 3 {
        0 => Some(b"application/json".to_vec()),
        1 => None,
        _ => Some(input.bytes().to_vec()),
    };
    let declared_length = (flags >> 4) & 3;
    let forwarded = (flags & 0x40 != 0).then(|| input.bytes().to_vec());
    let peer = match input.byte() % 4 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        2 => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => Some(IpAddr::V4(Ipv4Addr::new(
            input.byte(),
            input.byte(),
            input.byte(),
            input.byte(),
        ))),
    };

    // The body: raw, or a well-formed request body with arbitrary values.
    let mut share = String::new();
    let body: Vec<u8> = match input.byte() % 4 {
        0 => input.rest().to_vec(),
        1 | 2 => {
            let method = input.text();
            let client = input.text();
            // A marker that no answer of the server contains, then arbitrary text.
            share = format!("{SHARE_MARKER}{}", String::from_utf8_lossy(input.rest()));
            serde_json::json!({"backupMethod": method, "clientId": client, "share": share})
                .to_string()
                .into_bytes()
        }
        _ => serde_json::json!({"clientId": String::from_utf8_lossy(input.rest())})
            .to_string()
            .into_bytes(),
    };
    let length: Option<Vec<u8>> = match declared_length {
        0 => Some(body.len().to_string().into_bytes()),
        1 => None,
        2 => Some(format!("{}", body.len().saturating_add(usize::from(flags))).into_bytes()),
        _ => Some(b"18446744073709551616".to_vec()),
    };

    let mut request = match Request::builder()
        .method(method.clone())
        .uri(path.as_str())
        .body(Body::from(body))
    {
        Ok(request) => request,
        Err(_) => return,
    };
    let headers = request.headers_mut();
    let mut set = |name: &'static str, value: Option<Vec<u8>>| {
        if let Some(value) = value
            && let Ok(value) = HeaderValue::from_bytes(&value)
        {
            headers.insert(name, value);
        }
    };
    set("x-webhook-secret", secret.clone());
    set(header::CONTENT_TYPE.as_str(), content_type);
    set(header::CONTENT_LENGTH.as_str(), length);
    set("x-forwarded-for", forwarded);
    let right_secret = request
        .headers()
        .get("x-webhook-secret")
        .is_some_and(|v| v.as_bytes() == SECRET.as_bytes());
    if let Some(ip) = peer {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    }
    let request_path = request.uri().path().to_owned();

    let response = fixed
        .runtime
        .block_on(server.router().oneshot(request))
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let body = fixed
        .runtime
        .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .unwrap();

    let writes = store.writes.load(Ordering::SeqCst);
    let is_backup = method == Method::POST && request_path == format!("{base}/backup");
    if writes > 0 {
        assert!(
            status.is_success() && is_backup && right_secret,
            "the store was written by a {method} {request_path:?} answered {status}"
        );
    }
    if status.is_success() && is_backup {
        assert!(writes > 0, "a 2xx /backup stored nothing");
    }
    assert_ne!(
        status.as_u16(),
        500,
        "an internal error: {:?}",
        String::from_utf8_lossy(&body)
    );
    let answer = String::from_utf8_lossy(&body);
    if !share.is_empty() {
        assert!(
            !answer.contains(SHARE_MARKER),
            "the answer echoes the share"
        );
    }
    assert!(!answer.contains(SECRET), "the answer echoes the secret");
});
