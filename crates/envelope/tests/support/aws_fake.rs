//! An in-process fake of the AWS KMS JSON API (`GenerateDataKey`, `Encrypt`, `Decrypt`,
//! `DescribeKey`, and aliases made with [`AwsFake::set_alias`]) on a loopback port, for the cases moto gets wrong: it refuses disabled keys, binds the
//! encryption context as a map (so `{"a":"bc"}` and `{"ab":"c"}` differ), and can be told to
//! fail the next call with any KMS error code or to answer with another key or a short key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope::local::LocalKek;
use envelope::{DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, WrappedKey};
use serde_json::{Value, json};

#[derive(Debug, Default)]
pub struct FakeState {
    keys: HashMap<String, FakeKey>,
    /// Alias name (`alias/…`) to key ARN, in this fake's one account and region.
    aliases: HashMap<String, String>,
    /// Every call fails with this error code (HTTP 400) while set.
    pub fail_with: Option<&'static str>,
    /// Answer with this key ARN instead of the real one.
    pub answer_with_key: Option<String>,
    /// Return a 16-byte plaintext.
    pub short_plaintext: bool,
    /// (operation, KeyId, EncryptionContext) of every request.
    pub seen: Vec<(String, Option<String>, BTreeMap<String, String>)>,
}

#[derive(Debug)]
struct FakeKey {
    kek: Arc<LocalKek>,
    enabled: bool,
}

#[derive(Debug, Clone)]
pub struct AwsFake {
    pub endpoint: String,
    pub state: Arc<Mutex<FakeState>>,
    pub requests: Arc<AtomicUsize>,
}

impl AwsFake {
    /// Starts the fake on the current tokio runtime (it stops with the runtime).
    pub async fn start() -> Self {
        let fake = Self {
            endpoint: String::new(),
            state: Arc::default(),
            requests: Arc::default(),
        };
        let app = Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            endpoint: format!("http://{addr}"),
            ..fake
        }
    }

    /// A new enabled key; its ARN.
    pub fn create_key(&self) -> String {
        let mut state = self.state.lock().unwrap();
        let arn = format!(
            "arn:aws:kms:us-east-1:111122223333:key/fake-{:04}",
            state.keys.len()
        );
        state.keys.insert(
            arn.clone(),
            FakeKey {
                kek: Arc::new(LocalKek::generate().unwrap()),
                enabled: true,
            },
        );
        arn
    }

    /// A new enabled key with this ARN (any account or region).
    pub fn create_key_with_arn(&self, arn: &str) -> String {
        self.state.lock().unwrap().keys.insert(
            arn.to_owned(),
            FakeKey {
                kek: Arc::new(LocalKek::generate().unwrap()),
                enabled: true,
            },
        );
        arn.to_owned()
    }

    /// The operations the fake received, in order.
    pub fn operations(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.seen.iter().map(|(op, _, _)| op.clone()).collect()
    }

    /// Points alias `name` (`alias/…`) at `arn` (`CreateAlias` or `UpdateAlias`).
    pub fn set_alias(&self, name: &str, arn: &str) {
        self.state
            .lock()
            .unwrap()
            .aliases
            .insert(name.to_owned(), arn.to_owned());
    }

    pub fn set_enabled(&self, arn: &str, enabled: bool) {
        self.state
            .lock()
            .unwrap()
            .keys
            .get_mut(arn)
            .unwrap()
            .enabled = enabled;
    }
}

fn error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("x-amzn-errortype", code),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        json!({"__type": code, "message": format!("fake: {code}")}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn context_of(body: &Value) -> (EncryptionContext, BTreeMap<String, String>) {
    let mut ctx = EncryptionContext::new();
    let mut map = BTreeMap::new();
    if let Some(entries) = body["EncryptionContext"].as_object() {
        for (k, v) in entries {
            let v = v.as_str().unwrap();
            ctx.insert(k.as_str(), v).unwrap();
            map.insert(k.clone(), v.to_owned());
        }
    }
    (ctx, map)
}

fn blob(arn: &str, wrapped: &WrappedKey) -> String {
    let mut out = u16::try_from(arn.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(arn.as_bytes());
    out.extend_from_slice(wrapped.bytes());
    STANDARD.encode(out)
}

fn parse_blob(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let len = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
    let arn = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?.to_owned();
    Some((arn, bytes.get(2 + len..)?.to_vec()))
}

async fn handle(State(fake): State<AwsFake>, headers: HeaderMap, body: Bytes) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let (ctx, map) = context_of(&body);
    let key_id = body["KeyId"].as_str().map(str::to_owned);
    // Take what we need from the state, then release the lock before any await.
    let (fail, answer_with, short, key) = {
        let mut state = fake.state.lock().unwrap();
        state.seen.push((op.clone(), key_id.clone(), map));
        let fail = state.fail_with;
        let lookup = match op.as_str() {
            "Decrypt" => STANDARD
                .decode(body["CiphertextBlob"].as_str().unwrap_or_default())
                .ok()
                .and_then(|b| parse_blob(&b))
                .map(|(arn, _)| arn),
            _ => key_id.clone().map(|id| {
                // An alias name or alias ARN stands for the key it points at.
                let alias = id
                    .split_once(":alias/")
                    .map_or(id.clone(), |(_, name)| format!("alias/{name}"));
                state.aliases.get(&alias).cloned().unwrap_or(id)
            }),
        };
        let key = lookup.and_then(|arn| {
            state
                .keys
                .get(&arn)
                .map(|k| (arn.clone(), Arc::clone(&k.kek), k.enabled))
        });
        (
            fail,
            state.answer_with_key.clone(),
            state.short_plaintext,
            key,
        )
    };
    if let Some(code) = fail {
        return error(code);
    }
    let Some((arn, kek, enabled)) = key else {
        return error(match op.as_str() {
            "Decrypt" => "InvalidCiphertextException",
            _ => "NotFoundException",
        });
    };
    if !enabled && op != "DescribeKey" {
        return error("DisabledException");
    }
    let answer_arn = answer_with.unwrap_or_else(|| arn.clone());
    match op.as_str() {
        "GenerateDataKey" | "Encrypt" => {
            let dek = if op == "Encrypt" {
                let plain = STANDARD
                    .decode(body["Plaintext"].as_str().unwrap())
                    .unwrap();
                DataKey::from_slice(&plain).unwrap()
            } else {
                DataKey::generate().unwrap()
            };
            let wrapped = kek.wrap(&dek, &ctx).await.unwrap();
            let plaintext = if short {
                STANDARD.encode(&dek.expose_secret()[..16])
            } else {
                STANDARD.encode(dek.expose_secret())
            };
            let mut out = json!({"KeyId": answer_arn, "CiphertextBlob": blob(&arn, &wrapped)});
            if op == "GenerateDataKey" {
                out["Plaintext"] = Value::String(plaintext);
            }
            ok(out)
        }
        "DescribeKey" => ok(json!({"KeyMetadata": {
            "Arn": answer_arn,
            "KeyId": arn.rsplit('/').next().unwrap_or_default(),
            "AWSAccountId": "111122223333",
            "Enabled": enabled,
            "KeyState": "Enabled",
            "KeyUsage": "ENCRYPT_DECRYPT",
        }})),
        "Decrypt" => {
            if key_id.as_deref().is_some_and(|pinned| pinned != arn) {
                return error("IncorrectKeyException");
            }
            let bytes = STANDARD
                .decode(body["CiphertextBlob"].as_str().unwrap())
                .unwrap();
            let (_, inner) = parse_blob(&bytes).unwrap();
            let Ok(inner) = WrappedKey::new(KeyRef::new("local", kek.key_id()).unwrap(), inner)
            else {
                return error("InvalidCiphertextException");
            };
            match kek.unwrap(&inner, &ctx).await {
                Ok(dek) => {
                    let plain = if short {
                        &dek.expose_secret()[..16]
                    } else {
                        &dek.expose_secret()[..]
                    };
                    ok(json!({"KeyId": answer_arn, "Plaintext": STANDARD.encode(plain)}))
                }
                Err(_) => error("InvalidCiphertextException"),
            }
        }
        _ => error("UnsupportedOperationException"),
    }
}
