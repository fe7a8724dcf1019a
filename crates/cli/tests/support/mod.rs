//! Fixtures shared by the CLI's test binaries.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)] // test fixtures: a broken one should panic

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Json, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The custodian shares a [`webhook`] received, by client id, as received.
pub type Shares = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// A minimal Self-Managed Backups webhook (a store of our own needs Self-Managed Backups) that
/// keeps every share it receives in `shares`; returns its base URL.
pub async fn webhook(shares: Shares) -> String {
    async fn backup(State(shares): State<Shares>, Json(body): Json<Value>) -> StatusCode {
        let client = body["clientId"].as_str().unwrap().to_owned();
        let share = body["share"].as_str().unwrap().to_owned();
        shares
            .lock()
            .unwrap()
            .entry(client)
            .or_default()
            .push(share);
        StatusCode::OK
    }
    async fn fetch(State(shares): State<Shares>, Json(body): Json<Value>) -> Json<Value> {
        let list = shares
            .lock()
            .unwrap()
            .get(body["clientId"].as_str().unwrap())
            .cloned()
            .unwrap_or_default();
        Json(json!({ "backupShares": list }))
    }
    let app = axum::Router::new()
        .route("/backup", axum::routing::post(backup))
        .route("/backup/fetch", axum::routing::post(fetch))
        .with_state(shares);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
