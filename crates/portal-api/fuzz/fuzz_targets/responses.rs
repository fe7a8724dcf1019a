//! Feeds arbitrary bytes to every parser of what Portal (or anything on the path to it) sends
//! back: the error-body parser behind every failed call, and the response types of the calls
//! the backup flow makes. None may panic, whatever the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portal_api::client_api::{CipherTextResponse, ClientDetails, EjectableBackupShares};
use portal_api::custodian_api::{ClientList, EnableEjectResponse};
use portal_api::mpc::CurveShares;
use portal_api::{Error, ErrorBody};

fuzz_target!(|data: &[u8]| {
    let _ = ErrorBody::parse(data);
    for status in [400, 401, 404, 429, 500, 503] {
        let error = Error::from_response(status, data, None);
        // Display and Debug must not panic either (and never echo a share: see the tests).
        let _ = (
            error.to_string(),
            format!("{error:?}"),
            error.is_retryable(),
        );
    }
    let _ = serde_json::from_slice::<CurveShares>(data);
    let _ = serde_json::from_slice::<ClientDetails>(data);
    let _ = serde_json::from_slice::<CipherTextResponse>(data);
    let _ = serde_json::from_slice::<EjectableBackupShares>(data);
    let _ = serde_json::from_slice::<ClientList>(data);
    let _ = serde_json::from_slice::<EnableEjectResponse>(data);
    // A generate response as the string field /v1/backup carries it.
    if let Ok(text) = std::str::from_utf8(data) {
        let request = portal_api::mpc::BackupRequest {
            generate_response: portal_api::SecretShare::from(text),
        };
        let _ = request.parse_generate_response();
    }
});
