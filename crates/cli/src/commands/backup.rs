//! `backup`: one client, from its generate response.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use backup_flow::Flow;
use portal_api::mpc::GenerateResponse;

use crate::args::AlreadyBackedUp;
use crate::failure::Failure;
use crate::output;

use super::Settings;

/// The `/v1/generate` response: the object Portal returned, or a JSON string holding it.
/// Errors give the position only, never the input.
pub(crate) fn parse_generate_response(text: &str) -> Result<GenerateResponse, Failure> {
    portal_api::mpc::parse_generate_response(text).map_err(|e| {
        Failure::new(format!(
            "the generate response is not the JSON of a /v1/generate response: invalid JSON ({}) at line {}, column {}",
            e.category(),
            e.line(),
            e.column()
        ))
    })
}

pub(super) async fn backup(
    settings: &Settings,
    generate_response: &Path,
    already: &AlreadyBackedUp,
) -> Result<ExitCode, Failure> {
    let text = output::read_secret_input(generate_response, "the generate response")?;
    let generate = parse_generate_response(&text)?;
    drop(text);
    let client = settings.client()?;
    let flow = with_already(settings.flow().await?, already).await?;
    let outcome = flow
        .session(client)
        .backup(&generate)
        .await
        .map_err(|e| Failure::flow("backup failed", e))?;
    output::print_json(&outcome)?;
    Ok(ExitCode::SUCCESS)
}

/// How the flow tells a client already backed up (see [`AlreadyBackedUp`]).
pub(super) async fn with_already(flow: Flow, already: &AlreadyBackedUp) -> Result<Flow, Failure> {
    let flow = flow.forcing_new_backups(already.force);
    match &already.webhook_store {
        None => Ok(flow),
        Some(uri) => {
            let store = crate::store::open_own(
                &crate::store::parse(uri)?,
                "--webhook-store (Portal keeps no custodian shares in Self-Managed mode)",
            )
            .await?;
            Ok(flow.with_custodian_store(store))
        }
    }
}

pub(super) fn ids_by_curve(shares: &portal_api::mpc::CurveShares) -> BTreeMap<String, String> {
    shares
        .iter()
        .map(|(curve, share)| (curve.as_str().to_owned(), share.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_responses_parse_in_both_forms_without_echoing_input() {
        let object = r#"{"SECP256K1":{"share":"c2VjcmV0","id":"sp_1"}}"#;
        assert_eq!(parse_generate_response(object).unwrap().ids(), ["sp_1"]);
        let string = serde_json::to_string(object).unwrap();
        assert_eq!(parse_generate_response(&string).unwrap().ids(), ["sp_1"]);
        let bad = parse_generate_response(r#"{"SECP256K1":{"share":5,"id":"c2VjcmV0"}}"#)
            .unwrap_err()
            .render();
        assert!(bad.contains("invalid JSON (data)"), "{bad}");
        assert!(!bad.contains("c2VjcmV0"));
    }
}
