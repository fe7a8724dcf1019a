//! Portal's routes: the Enclave MPC API, the Client API and the Custodian API.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use portal_api::client_api::{
    EjectClientRequest, PrepareEjectRequest, PrepareEjectResponse, SharePairStatusUpdate,
    StoreCipherTextRequest,
};
use portal_api::custodian_api::{CreateClientRequest, CreateSessionRequest, EnableEjectRequest};
use portal_api::mpc::{BackupRequest, GenerateRequest, RecoverRequest};
use portal_api::paths;
use serde_json::json;

use super::Simulator;
use super::caller::*;
use crate::error_body::ApiError;
use crate::report::ViolationKind;

/// Portal's routes, each with its handler (both hosts' paths on one router).
pub(super) fn portal() -> Router<Simulator> {
    Router::new()
        .route(paths::MPC_GENERATE, post(generate))
        .route(paths::MPC_BACKUP, post(backup))
        .route(paths::MPC_RECOVER, post(recover))
        .route(paths::CLIENT_ME, get(client_me))
        .route(paths::BACKUP_SHARE_PAIRS, patch(update_backup_pairs))
        // The Swift SDK sends the status update with a trailing slash.
        .route(
            &format!("{}/", paths::BACKUP_SHARE_PAIRS),
            patch(update_backup_pairs),
        )
        .route(paths::BACKUP_SHARE_PAIR, patch(store_cipher_text))
        .route(paths::BACKUP_SHARE_PAIR_CIPHER_TEXT, get(cipher_text))
        .route(paths::SIGNING_SHARE_PAIRS, patch(update_signing_pairs))
        .route(
            &format!("{}/", paths::SIGNING_SHARE_PAIRS),
            patch(update_signing_pairs),
        )
        .route(paths::WALLET_BACKUP_SHARE_PAIRS, get(wallet_backup_pairs))
        .route(paths::WALLET_SIGNING_SHARE_PAIRS, get(wallet_signing_pairs))
        .route(paths::WALLET_PREPARE_EJECT, post(prepare_eject))
        .route(paths::WALLET_EJECTABLE_BACKUP_SHARES, get(client_ejectable))
        .route(paths::WALLET_COMPLETE_EJECT, patch(complete_eject))
        .route(paths::CLIENT_EJECT, post(eject_client))
        .route(
            paths::CUSTODIAN_CLIENTS,
            post(custodian_create_client).get(custodian_list_clients),
        )
        .route(paths::CUSTODIAN_CLIENT, get(custodian_get_client))
        .route(
            paths::CUSTODIAN_CLIENT_SESSIONS,
            post(custodian_create_session),
        )
        .route(paths::CUSTODIAN_ENABLE_EJECT, patch(custodian_enable_eject))
        .route(
            paths::CUSTODIAN_EJECTABLE_BACKUP_SHARES,
            get(custodian_ejectable),
        )
}
// ---- Enclave MPC API ---------------------------------------------------------------------

pub(super) async fn generate(call: ClientCall) -> Answer {
    let _request: GenerateRequest = call.parse_or_default()?;
    call.caller.json(|state, client| state.generate(client))
}

pub(super) async fn backup(call: ClientCall) -> Answer {
    let request: BackupRequest = call.parse()?;
    let generate_response = request.parse_generate_response().map_err(|_| {
        ApiError::bad_request("generateResponse must be the JSON text of a /v1/generate response")
    })?;
    let client = call.caller;
    let plan = client
        .sim
        .state()
        .prepare_backup(&client.id, &generate_response)?;
    if let Some(webhook) = &client.sim.inner.webhook {
        for item in &plan.items {
            webhook
                .deliver(&plan.client_id, &item.webhook_method, &item.custodian_share)
                .await
                .map_err(|step| client.webhook_failed("backup", &step))?;
        }
    }
    client.json(|state, _| Ok(state.commit_backup(plan)))
}

pub(super) async fn recover(call: ClientCall) -> Answer {
    let request: RecoverRequest = call.parse()?;
    let backup_response = request.parse_backup_response().map_err(|_| {
        ApiError::bad_request("backupResponse must be the JSON text of a /v1/backup response")
    })?;
    let client = call.caller;
    let plan = client
        .sim
        .state()
        .prepare_recover(&client.id, &backup_response)?;
    if let Some(webhook) = &client.sim.inner.webhook {
        for item in &plan.items {
            webhook
                .fetch_contains(&plan.client_id, &item.custodian_share)
                .await
                .map_err(|step| {
                    let detail = format!("{step} (backup pair {})", item.backup_pair_id);
                    client.webhook_failed("recover", &detail)
                })?;
        }
    }
    client.json(|state, _| Ok(state.commit_recover(plan)))
}

impl ClientCaller {
    /// A Self-Managed webhook step failed: records the violation and answers as Portal would.
    pub(super) fn webhook_failed(&self, operation: &str, step: &str) -> ApiError {
        self.sim.state().recorder.violation(
            ViolationKind::WebhookFailed,
            &self.id,
            None,
            format!("{operation}: {step}"),
        );
        ApiError::flat(
            400,
            "WEBHOOK_FAILED",
            format!("self-managed backup webhook failed during {operation}"),
        )
    }
}

// ---- Client API --------------------------------------------------------------------------

pub(super) async fn client_me(client: ClientCaller) -> Answer {
    client.json(|state, client| {
        state
            .client_me(client)
            .ok_or_else(|| ApiError::not_found("client not found"))
    })
}

pub(super) async fn update_backup_pairs(call: ClientCall) -> Answer {
    let update: SharePairStatusUpdate = call.parse()?;
    call.caller.status(StatusCode::NO_CONTENT, |state, client| {
        state.update_backup(client, &update)
    })
}

pub(super) async fn update_signing_pairs(call: ClientCall) -> Answer {
    let update: SharePairStatusUpdate = call.parse()?;
    call.caller.status(StatusCode::NO_CONTENT, |state, client| {
        state.update_signing(client, &update)
    })
}

pub(super) async fn store_cipher_text(Path(pair_id): Path<String>, call: ClientCall) -> Answer {
    let request: StoreCipherTextRequest = call.parse()?;
    call.caller.status(StatusCode::OK, |state, client| {
        state.store_cipher_text(client, &pair_id, request.client_cipher_text)
    })
}

pub(super) async fn cipher_text(Path(pair_id): Path<String>, client: ClientCaller) -> Answer {
    client.json(|state, client| {
        let text = state.cipher_text(client, &pair_id)?;
        Ok(json!({"cipherText": text}))
    })
}

pub(super) async fn wallet_backup_pairs(
    Path(wallet_id): Path<String>,
    client: ClientCaller,
) -> Answer {
    client.json(|state, client| state.wallet_backup_pairs(client, &wallet_id))
}

pub(super) async fn wallet_signing_pairs(
    Path(wallet_id): Path<String>,
    client: ClientCaller,
) -> Answer {
    client.json(|state, client| state.wallet_signing_pairs(client, &wallet_id))
}

pub(super) async fn prepare_eject(Path(wallet_id): Path<String>, call: ClientCall) -> Answer {
    let request: PrepareEjectRequest = call.parse()?;
    call.caller.json(|state, client| {
        let share = state.prepare_eject(client, &wallet_id, &request.backup_method)?;
        Ok(PrepareEjectResponse { share })
    })
}

pub(super) async fn client_ejectable(
    Path(wallet_id): Path<String>,
    client: ClientCaller,
) -> Answer {
    client.json(|state, client| state.ejectable(client, &wallet_id, true))
}

pub(super) async fn complete_eject(Path(wallet_id): Path<String>, client: ClientCaller) -> Answer {
    client.status(StatusCode::NO_CONTENT, |state, client| {
        state.complete_eject(client, &wallet_id)
    })
}

pub(super) async fn eject_client(call: ClientCall) -> Answer {
    let _request: EjectClientRequest = call.parse()?;
    call.caller.json(|state, client| {
        let at = state.eject_client(client)?;
        Ok(format!("Client ejected at {at}"))
    })
}

// ---- Custodian API -----------------------------------------------------------------------

pub(super) async fn custodian_create_client(call: CustodianCall) -> Answer {
    let request: CreateClientRequest = call.parse_or_default()?;
    let account_abstracted = request.is_account_abstracted.unwrap_or(false);
    call.caller
        .json(|state, custodian| state.create_client(custodian, account_abstracted))
}

pub(super) async fn custodian_list_clients(
    Query(query): Query<HashMap<String, String>>,
    custodian: CustodianCaller,
) -> Answer {
    custodian.json(|state, custodian| {
        state.list_clients(
            custodian,
            query.get("cursor").map(String::as_str),
            query.get("take").map(String::as_str),
        )
    })
}

pub(super) async fn custodian_get_client(
    Path(client_id): Path<String>,
    custodian: CustodianCaller,
) -> Answer {
    custodian.json(|state, custodian| state.custodian_get_client(custodian, &client_id))
}

pub(super) async fn custodian_create_session(
    Path(client_id): Path<String>,
    call: CustodianCall,
) -> Answer {
    let _request: CreateSessionRequest = call.parse_or_default()?;
    call.caller
        .json(|state, custodian| state.create_session(custodian, &client_id))
}

pub(super) async fn custodian_enable_eject(
    Path(client_id): Path<String>,
    call: CustodianCall,
) -> Answer {
    let request: EnableEjectRequest = call.parse()?;
    call.caller
        .json(|state, custodian| state.enable_eject(custodian, &client_id, &request))
}

pub(super) async fn custodian_ejectable(
    Path((client_id, wallet_id)): Path<(String, String)>,
    custodian: CustodianCaller,
) -> Answer {
    custodian.json(|state, custodian| state.custodian_ejectable(custodian, &client_id, &wallet_id))
}
