//! An in-process fake of the parts of Google Cloud Storage's XML API that object_store's GCS
//! client uses (no GCS emulator can be installed from the registries CI reaches):
//!
//! * `PUT /{bucket}/{object}`: stores; `x-goog-if-generation-match: 0` makes it create-only
//!   (`412 Precondition Failed` when the object exists), another number a compare-and-swap on
//!   the generation; answers with `ETag` and `x-goog-generation`;
//! * `GET`/`HEAD /{bucket}/{object}`: the body with `Content-Length`, `ETag`, `Last-Modified`
//!   and `x-goog-generation`, or `404 NoSuchKey`;
//! * `DELETE /{bucket}/{object}`: `204`, or `404 NoSuchKey`;
//! * `GET /{bucket}?list-type=2&prefix=…[&delimiter=/]`: a `ListBucketResult`, paginated with
//!   `continuation-token` in pages of [`PAGE`] (small, so that the client's pagination is
//!   exercised);
//! * an unknown bucket: `404 NoSuchBucket`.
//!
//! The object name arrives percent-encoded as one path segment (`a%2Fb`), as object_store
//! sends it. Every operation on one bucket holds one lock, so create-only puts are atomic.
//! Point object_store at it with a service-account key holding `gcs_base_url` and
//! `disable_oauth: true`, as object_store's own tests do with fake-gcs-server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use object_store::ClientOptions;
use object_store::gcp::GoogleCloudStorageBuilder;
use storage::object::ObjectStoreStore;

/// Objects per page of a listing.
pub const PAGE: usize = 3;

const LAST_MODIFIED: &str = "Thu, 01 Jan 2026 00:00:00 GMT";
const LAST_MODIFIED_ISO: &str = "2026-01-01T00:00:00.000Z";

#[derive(Debug)]
struct Object {
    body: Bytes,
    generation: u64,
}

#[derive(Debug, Default)]
struct Buckets {
    buckets: HashMap<String, BTreeMap<String, Object>>,
    next_generation: u64,
}

type Shared = Arc<Mutex<Buckets>>;

#[derive(Debug)]
pub struct FakeGcs {
    state: Shared,
    pub base_url: String,
}

/// The fake shared by this test process, served from its own thread and runtime (so that
/// it outlives each test's runtime).
pub fn shared() -> &'static FakeGcs {
    static FAKE: OnceLock<FakeGcs> = OnceLock::new();
    FAKE.get_or_init(|| {
        let state = Shared::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{bucket}", get(list))
            .route("/{bucket}/{*object}", any(object))
            // GCS takes single-request uploads up to 5 TiB; axum buffers 2 MiB by default.
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(Arc::clone(&state));
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
        });
        FakeGcs { state, base_url }
    })
}

impl FakeGcs {
    /// Creates a new, empty bucket with a unique name; returns its name.
    pub fn new_bucket(&self) -> String {
        let mut state = self.state.lock().unwrap();
        let name = format!("portal-backup-{}", state.buckets.len());
        state.buckets.insert(name.clone(), BTreeMap::new());
        name
    }

    /// The service-account key that points object_store here without OAuth.
    pub fn service_account_key(&self) -> String {
        format!(
            r#"{{"gcs_base_url": "{}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#,
            self.base_url
        )
    }

    /// An object_store GCS client of `bucket` on this fake.
    pub fn gcs(&self, bucket: &str) -> GoogleCloudStorageBuilder {
        GoogleCloudStorageBuilder::new()
            .with_service_account_key(self.service_account_key())
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .with_bucket_name(bucket)
    }

    /// Our store over a new bucket, under `prefix`.
    pub fn store(&self, prefix: &str) -> ObjectStoreStore {
        let gcs = self.gcs(&self.new_bucket()).build().unwrap();
        ObjectStoreStore::new(Arc::new(gcs), prefix)
            .unwrap()
            .with_name("gcs")
    }

    /// How many objects `bucket` holds.
    pub fn object_count(&self, bucket: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .buckets
            .get(bucket)
            .map_or(0, BTreeMap::len)
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn etag(generation: u64) -> String {
    format!("\"g{generation}\"")
}

async fn object(
    State(state): State<Shared>,
    Path((bucket, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    let state = &mut *state;
    let Some(objects) = state.buckets.get_mut(&bucket) else {
        return error(StatusCode::NOT_FOUND, "NoSuchBucket");
    };
    match method {
        Method::PUT => {
            if headers.contains_key("x-goog-copy-source") {
                return error(StatusCode::NOT_IMPLEMENTED, "NotImplemented");
            }
            if let Some(wanted) = headers.get("x-goog-if-generation-match") {
                let Some(wanted) = wanted.to_str().ok().and_then(|v| v.parse::<u64>().ok()) else {
                    return error(StatusCode::BAD_REQUEST, "InvalidArgument");
                };
                let current = objects.get(&name).map_or(0, |o| o.generation);
                if current != wanted {
                    return error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
                }
            }
            state.next_generation += 1;
            let generation = state.next_generation;
            objects.insert(name, Object { body, generation });
            (
                StatusCode::OK,
                [
                    (header::ETAG, etag(generation)),
                    (
                        header::HeaderName::from_static("x-goog-generation"),
                        generation.to_string(),
                    ),
                ],
            )
                .into_response()
        }
        Method::GET | Method::HEAD => {
            let Some(object) = objects.get(&name) else {
                return error(StatusCode::NOT_FOUND, "NoSuchKey");
            };
            let headers = [
                (header::CONTENT_LENGTH, object.body.len().to_string()),
                (header::ETAG, etag(object.generation)),
                (header::LAST_MODIFIED, LAST_MODIFIED.to_owned()),
                (
                    header::HeaderName::from_static("x-goog-generation"),
                    object.generation.to_string(),
                ),
            ];
            let body = if method == Method::GET {
                object.body.clone()
            } else {
                Bytes::new()
            };
            (StatusCode::OK, headers, body).into_response()
        }
        Method::DELETE => match objects.remove(&name) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => error(StatusCode::NOT_FOUND, "NoSuchKey"),
        },
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    }
}

/// A delimiter listing, in one page: the objects directly under `prefix` and the "directories"
/// (`CommonPrefixes`) below it.
fn list_with_delimiter(
    bucket: &str,
    objects: &BTreeMap<String, Object>,
    prefix: &str,
    delimiter: &str,
) -> Response {
    let mut dirs = std::collections::BTreeSet::new();
    let mut xml = format!(
        "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>{}</Name><Prefix>{}</Prefix><IsTruncated>false</IsTruncated>",
        xml_escape(bucket),
        xml_escape(prefix),
    );
    for (key, object) in objects.iter().filter(|(k, _)| k.starts_with(prefix)) {
        let rest = &key[prefix.len()..];
        match rest.find(delimiter) {
            Some(at) => {
                dirs.insert(format!("{prefix}{}", &rest[..at + delimiter.len()]));
            }
            None => xml.push_str(&format!(
                "<Contents><Key>{}</Key><Generation>{}</Generation><LastModified>{LAST_MODIFIED_ISO}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
                xml_escape(key),
                object.generation,
                xml_escape(&etag(object.generation)),
                object.body.len()
            )),
        }
    }
    for dir in dirs {
        xml.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml_escape(&dir)
        ));
    }
    xml.push_str("</ListBucketResult>");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        xml,
    )
        .into_response()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

async fn list(
    State(state): State<Shared>,
    Path(bucket): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let state = state.lock().unwrap();
    let Some(objects) = state.buckets.get(&bucket) else {
        return error(StatusCode::NOT_FOUND, "NoSuchBucket");
    };
    if query.get("list-type").map(String::as_str) != Some("2") {
        return error(StatusCode::NOT_IMPLEMENTED, "NotImplemented");
    }
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    if let Some(delimiter) = query.get("delimiter") {
        return list_with_delimiter(&bucket, objects, &prefix, delimiter);
    }
    let after = query
        .get("continuation-token")
        .or_else(|| query.get("start-after"))
        .cloned();
    let matching: Vec<(&String, &Object)> = objects
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
        .take(PAGE + 1)
        .collect();
    let truncated = matching.len() > PAGE;
    let page = &matching[..matching.len().min(PAGE)];
    let mut xml = format!(
        "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{PAGE}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        xml_escape(&bucket),
        xml_escape(&prefix),
        page.len()
    );
    for (key, object) in page {
        xml.push_str(&format!(
            "<Contents><Key>{}</Key><Generation>{}</Generation><LastModified>{LAST_MODIFIED_ISO}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
            xml_escape(key),
            object.generation,
            xml_escape(&etag(object.generation)),
            object.body.len()
        ));
    }
    if truncated && let Some((last, _)) = page.last() {
        xml.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            xml_escape(last)
        ));
    }
    xml.push_str("</ListBucketResult>");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        xml,
    )
        .into_response()
}
