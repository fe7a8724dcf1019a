//! An in-repo HTTP fake of Cloud KMS's REST `:encrypt` and `:decrypt`
//! (`POST /v1/{name}:encrypt`) and `GetCryptoKey` (`GET /v1/{name}`, with the `primary`
//! version), wire-compatible with what `google-cloud-kms-v1` sends: JSON with
//! camelCase fields, standard base64 bytes, int64 checksums as strings. Keys have integer
//! versions (rotation adds one and makes it primary; the primary can also be moved to an existing
//! version, as `UpdateCryptoKeyPrimaryVersion` does), AAD is honoured (AES-256-GCM), request
//! CRC32C checksums are checked and response checksums computed. Switches corrupt a checksum,
//! drop a `verified…` flag or answer with another key's name, so that the backend's refusals
//! can be tested; it counts requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

pub const KEY: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/k";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub corrupt_ciphertext_crc: bool,
    pub corrupt_plaintext_crc: bool,
    pub drop_verified_plaintext: bool,
    pub drop_verified_aad: bool,
    pub answer_with_other_key: bool,
    pub unavailable: bool,
}

#[derive(Default)]
struct Key {
    /// Version n is `versions[n - 1]`.
    versions: Vec<[u8; 32]>,
    primary: usize,
}

#[derive(Default)]
pub struct FakeState {
    keys: HashMap<String, Key>,
    pub faults: Faults,
}

#[derive(Clone)]
pub struct GcpFake {
    pub endpoint: String,
    pub state: Arc<Mutex<FakeState>>,
    pub encrypts: Arc<AtomicUsize>,
    pub decrypts: Arc<AtomicUsize>,
    pub gets: Arc<AtomicUsize>,
}

impl std::fmt::Debug for GcpFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpFake")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn crc(bytes: &[u8]) -> String {
    crc32c::crc32c(bytes).to_string()
}

impl GcpFake {
    /// Starts the fake, with crypto key [`KEY`] at version 1, on the current tokio runtime.
    pub async fn start() -> Self {
        let mut fake = Self {
            endpoint: String::new(),
            state: Arc::default(),
            encrypts: Arc::default(),
            decrypts: Arc::default(),
            gets: Arc::default(),
        };
        fake.rotate(KEY);
        let app = Router::new()
            .route(
                "/v1/{*rest}",
                axum::routing::post(handle).get(get_crypto_key),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Adds a version to `key` (creating the key) and makes it primary.
    pub fn rotate(&mut self, key: &str) -> usize {
        let mut material = [0u8; 32];
        getrandom::fill(&mut material).unwrap();
        let mut state = self.state.lock().unwrap();
        let key = state.keys.entry(key.to_owned()).or_default();
        key.versions.push(material);
        key.primary = key.versions.len();
        key.primary
    }

    /// Makes existing version `n` of `key` primary (`UpdateCryptoKeyPrimaryVersion`).
    pub fn set_primary(&self, key: &str, n: usize) {
        let mut state = self.state.lock().unwrap();
        let key = state.keys.get_mut(key).unwrap();
        assert!((1..=key.versions.len()).contains(&n), "no version {n}");
        key.primary = n;
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    /// `GetCryptoKey` requests since the last call.
    pub fn take_gets(&self) -> usize {
        self.gets.swap(0, Ordering::SeqCst)
    }

    /// (encrypt, decrypt) requests since the last call.
    pub fn take_counts(&self) -> (usize, usize) {
        (
            self.encrypts.swap(0, Ordering::SeqCst),
            self.decrypts.swap(0, Ordering::SeqCst),
        )
    }
}

fn status(code: StatusCode, status: &str, message: &str) -> Response {
    (
        code,
        [("content-type", "application/json")],
        json!({"error": {"code": code.as_u16(), "message": message, "status": status}}).to_string(),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

fn bytes_field(body: &Value, field: &str) -> Option<Vec<u8>> {
    match body.get(field) {
        None => Some(Vec::new()),
        Some(v) => STANDARD.decode(v.as_str()?).ok(),
    }
}

/// Checks an optional request checksum; `Ok(true)` if present and right.
fn check_crc(body: &Value, field: &str, bytes: &[u8]) -> Result<bool, String> {
    match body.get(field) {
        None => Ok(false),
        Some(v) => {
            let sent = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            if sent == crc(bytes) {
                Ok(true)
            } else {
                Err(format!("{field} mismatch"))
            }
        }
    }
}

/// `GetCryptoKey`: the crypto key with its primary version, enums as integers (the client asks
/// for `$alt=json;enum-encoding=int`).
async fn get_crypto_key(State(fake): State<GcpFake>, Path(name): Path<String>) -> Response {
    fake.gets.fetch_add(1, Ordering::SeqCst);
    let (primary, faults) = {
        let state = fake.state.lock().unwrap();
        (state.keys.get(&name).map(|k| k.primary), state.faults)
    };
    if faults.unavailable {
        return status(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "try later");
    }
    let Some(primary) = primary else {
        return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such key");
    };
    let answered_key = if faults.answer_with_other_key {
        "projects/p/locations/global/keyRings/r/cryptoKeys/other".to_owned()
    } else {
        name.clone()
    };
    let out = json!({
        "name": name,
        // ENCRYPT_DECRYPT = 1; ENABLED = 1; GOOGLE_SYMMETRIC_ENCRYPTION = 1; SOFTWARE = 1
        "purpose": 1,
        "primary": {
            "name": format!("{answered_key}/cryptoKeyVersions/{primary}"),
            "state": 1,
            "protectionLevel": 1,
            "algorithm": 1,
        },
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        out.to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<GcpFake>, Path(rest): Path<String>, body: Bytes) -> Response {
    let Some((name, method)) = rest.rsplit_once(':') else {
        return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no method");
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let faults = fake.state.lock().unwrap().faults;
    if faults.unavailable {
        return status(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "try later");
    }
    let Some(aad) = bytes_field(&body, "additionalAuthenticatedData") else {
        return invalid("bad aad");
    };
    let aad_verified = match check_crc(&body, "additionalAuthenticatedDataCrc32c", &aad) {
        Ok(v) => v,
        Err(m) => return invalid(&m),
    };
    // A version name encrypts with that version; decrypt takes the crypto key only.
    let (key_name, version) = match name.split_once("/cryptoKeyVersions/") {
        Some((key, v)) => (key.to_owned(), v.parse::<usize>().ok()),
        None => (name.to_owned(), None),
    };
    match method {
        "encrypt" => {
            fake.encrypts.fetch_add(1, Ordering::SeqCst);
            let Some(plaintext) = bytes_field(&body, "plaintext") else {
                return invalid("bad plaintext");
            };
            let plain_verified = match check_crc(&body, "plaintextCrc32c", &plaintext) {
                Ok(v) => v,
                Err(m) => return invalid(&m),
            };
            let (material, n) = {
                let state = fake.state.lock().unwrap();
                let Some(key) = state.keys.get(&key_name) else {
                    return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such key");
                };
                let n = version.unwrap_or(key.primary);
                let Some(material) = key.versions.get(n.wrapping_sub(1)).copied() else {
                    return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such version");
                };
                (material, n)
            };
            let mut nonce = [0u8; 12];
            getrandom::fill(&mut nonce).unwrap();
            let sealed = Aes256Gcm::new((&material).into())
                .encrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &plaintext,
                        aad: &aad,
                    },
                )
                .unwrap();
            let mut ciphertext = u32::try_from(n).unwrap().to_be_bytes().to_vec();
            ciphertext.extend_from_slice(&nonce);
            ciphertext.extend_from_slice(&sealed);
            let mut ciphertext_crc = crc(&ciphertext);
            if faults.corrupt_ciphertext_crc {
                ciphertext_crc = crc(b"corrupted");
            }
            let answered_key = if faults.answer_with_other_key {
                "projects/p/locations/global/keyRings/r/cryptoKeys/other".to_owned()
            } else {
                key_name
            };
            let mut out = json!({
                "name": format!("{answered_key}/cryptoKeyVersions/{n}"),
                "ciphertext": STANDARD.encode(&ciphertext),
                "ciphertextCrc32c": ciphertext_crc,
                "protectionLevel": "SOFTWARE",
            });
            if plain_verified && !faults.drop_verified_plaintext {
                out["verifiedPlaintextCrc32c"] = Value::Bool(true);
            }
            if aad_verified && !faults.drop_verified_aad {
                out["verifiedAdditionalAuthenticatedDataCrc32c"] = Value::Bool(true);
            }
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                out.to_string(),
            )
                .into_response()
        }
        "decrypt" => {
            fake.decrypts.fetch_add(1, Ordering::SeqCst);
            if version.is_some() {
                return invalid("decrypt takes a crypto key name, not a version");
            }
            let Some(ciphertext) = bytes_field(&body, "ciphertext") else {
                return invalid("bad ciphertext");
            };
            if let Err(m) = check_crc(&body, "ciphertextCrc32c", &ciphertext) {
                return invalid(&m);
            }
            let failed = || invalid("Decryption failed: the ciphertext is invalid.");
            if ciphertext.len() < 4 + 12 + 16 {
                return failed();
            }
            let n =
                usize::try_from(u32::from_be_bytes(ciphertext[..4].try_into().unwrap())).unwrap();
            let (material, primary) = {
                let state = fake.state.lock().unwrap();
                let Some(key) = state.keys.get(&key_name) else {
                    return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such key");
                };
                let Some(material) = key.versions.get(n.wrapping_sub(1)).copied() else {
                    return failed();
                };
                (material, key.primary)
            };
            let nonce: [u8; 12] = ciphertext[4..16].try_into().unwrap();
            let Ok(plaintext) = Aes256Gcm::new((&material).into()).decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext[16..],
                    aad: &aad,
                },
            ) else {
                return failed();
            };
            let mut plaintext_crc = crc(&plaintext);
            if faults.corrupt_plaintext_crc {
                plaintext_crc = crc(b"corrupted");
            }
            let out = json!({
                "plaintext": STANDARD.encode(&plaintext),
                "plaintextCrc32c": plaintext_crc,
                "usedPrimary": n == primary,
                "protectionLevel": "SOFTWARE",
            });
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                out.to_string(),
            )
                .into_response()
        }
        _ => status(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown method"),
    }
}

/// A client of the official crate pointed at `endpoint`, with anonymous credentials and no
/// retries.
pub async fn client(endpoint: &str) -> google_cloud_kms_v1::client::KeyManagementService {
    google_cloud_kms_v1::client::KeyManagementService::builder()
        .with_endpoint(endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
        .build()
        .await
        .unwrap()
}
