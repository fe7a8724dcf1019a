//! `portal-backup demo`: the whole job on embedded defaults, against `portal-sim` on loopback,
//! in a temporary directory that is removed at the end.
//!
//! 1. A simulated Portal (Portal-Managed Backups); a client whose app generated its wallet.
//! 2. A local key-encryption key file, as `keygen` writes it.
//! 3. Backup into Portal, with Portal failing the final confirm step: the run fails
//!    (retryable), and running it again resumes after the restore drill, without a second
//!    `/v1/backup`.
//! 4. Verify.
//! 5. A second simulated Portal (Self-Managed Backups, with the custodian webhook keeping the
//!    custodian shares in memory) and a client backed up into a file store; verify; recover.
//! 6. Rotation of the file store to a new key: the new key opens everything, the old one
//!    nothing.
//! 7. The simulators' invariant reports must be clean, or the demo fails.
//!
//! Progress in words on stderr, a JSON summary on stdout.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_flow::{ClientFlow, Flow, PortalManaged, StoreFactory, VerifyReport};
use envelope::Keyring;
use portal_api::RetryConfig;
use portal_api::mpc::GenerateResponse;
use portal_api::{ApiKey, ClientApi};
use portal_sim::{FaultRule, PortalSim, Report, SimConfig, WebhookConfig};
use serde::Serialize;
use serde_json::json;

use crate::failure::{Failure, one_line};
use crate::store::StoreUri;
use crate::{kms, output};

const WEBHOOK_SECRET: &str = "demo-webhook-secret";

fn step(text: impl AsRef<str>) {
    eprintln!("  {}", text.as_ref());
}

fn sim_failure(what: &str) -> impl FnOnce(portal_sim::Error) -> Failure + '_ {
    move |e| Failure::caused_by(format!("cannot start the {what} simulator"), e)
}

fn portal_failure(what: &str) -> impl FnOnce(portal_api::Error) -> Failure + '_ {
    move |e| Failure::caused_by(format!("the demo's {what} failed"), e)
}

/// A Portal client of the simulator: quick retries, no client-side rate limits.
fn client(sim: &PortalSim, key: &ApiKey) -> Result<ClientApi, Failure> {
    sim.portal_builder()
        .with_retry(
            RetryConfig::default()
                .with_max_retries(2)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(40)),
        )
        .build()
        .and_then(|portal| portal.client_with_api_key(key))
        .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
}

/// A new client whose app generated its wallet and confirmed its signing shares.
async fn app_client(sim: &PortalSim) -> Result<(String, ClientApi, GenerateResponse), Failure> {
    let (keys, generate) = sim
        .generated_client()
        .await
        .map_err(portal_failure("wallet generation"))?;
    let client = client(sim, &keys.client_api_key)?;
    Ok((keys.client_id, client, generate))
}

/// The operations of `client`'s session over `stores`.
fn flow(
    client: ClientApi,
    keyring: Keyring,
    stores: Arc<dyn StoreFactory>,
    state: &Path,
) -> Result<ClientFlow, Failure> {
    Flow::new(keyring, stores, state)
        .map(|flow| flow.session(client))
        .map_err(|e| Failure::flow("cannot set up the flow", e))
}

fn verified(report: &VerifyReport) -> Result<String, Failure> {
    if report.is_ok() {
        Ok(format!(
            "{} of {} shares open and are bound to their identity",
            report.checked.len(),
            report.checked.len()
        ))
    } else {
        Err(Failure::new(format!("verification failed: {report:?}")))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    portal_managed: serde_json::Value,
    file_store: serde_json::Value,
    simulator_reports: BTreeMap<&'static str, &'static str>,
    seconds: f64,
    status: &'static str,
}

/// Runs the demo.
pub(crate) async fn run() -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("portal-backup-demo-")
        .tempdir()
        .map_err(|e| Failure::caused_by("cannot make a temporary directory", e))?;
    let result = steps(temp.path(), started).await;
    let cleanup = temp.close();
    let summary = result?;
    cleanup.map_err(|e| Failure::caused_by("cannot remove the temporary directory", e))?;
    step("cleaned up: the temporary directory and both simulators are gone");
    output::print_json(&summary)?;
    Ok(ExitCode::SUCCESS)
}

async fn steps(dir: &Path, started: Instant) -> Result<Summary, Failure> {
    eprintln!("portal-backup demo: the whole job against a simulated Portal on loopback");
    let state = dir.join("state");

    // 1. Portal, and a client as the app leaves it.
    let managed = PortalSim::start(SimConfig::new())
        .await
        .map_err(sim_failure("Portal-managed"))?;
    step(format!(
        "1. portal-sim (Portal-Managed Backups) listening on {}",
        managed.base_url()
    ));
    let (client_a, portal_a, generate_a) = app_client(&managed).await?;
    step(format!(
        "2. client {client_a}: its app generated a wallet ({}) and confirmed its signing shares",
        curves(&generate_a)
    ));

    // 2. A local key-encryption key.
    let kek_path = dir.join("kek-1");
    let kek = kms::keygen(&kek_path)?;
    let kek_uri = format!("local:{}", kek_path.display());
    let keyring = kms::keyring(std::slice::from_ref(&kek_uri), "--kms").await?;
    step(format!(
        "3. local key-encryption key written with mode 0600 (key id {})",
        envelope::KeyEncryptionKey::key_id(&kek)
    ));

    // 3. Backup, interrupted at the confirm step, then resumed.
    let flow_a = flow(portal_a, keyring.clone(), Arc::new(PortalManaged), &state)?;
    let confirm: FaultRule = "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
        .parse()
        .map_err(|e| Failure::caused_by("bad fault rule", e))?;
    managed
        .add_fault(confirm)
        .map_err(|e| Failure::caused_by("bad fault rule", e))?;
    let interrupted = match flow_a.backup(&generate_a).await {
        Ok(_) => return Err(Failure::new("the interrupted backup did not fail")),
        Err(e) if e.is_retryable() => one_line(&e),
        Err(e) => return Err(Failure::flow("the interrupted backup failed for good", e)),
    };
    managed.clear_faults();
    step(format!(
        "4. backup with Portal failing the final confirm step: stopped, retryable ({interrupted})"
    ));
    let outcome_a = flow_a
        .backup(&generate_a)
        .await
        .map_err(|e| Failure::flow("the resumed backup failed", e))?;
    if outcome_a.resumed_after != Some("verified") || outcome_a.backup_requests != 1 {
        return Err(Failure::new(format!(
            "the resumed backup did not continue the first one: {outcome_a:?}"
        )));
    }
    step(format!(
        "5. backup run again: resumed after the restore drill, no second /v1/backup; confirmed ({})",
        pairs(&outcome_a.backup_share_pair_ids)
    ));
    let verify_a = verified(
        &flow_a
            .verify()
            .await
            .map_err(|e| Failure::flow("verify failed", e))?,
    )?;
    step(format!("6. verify: {verify_a}"));

    // 5. Self-managed: a second client into a file store.
    let webhook = webhook(&keyring).await?;
    let self_managed = PortalSim::start(
        SimConfig::new().with_webhook(WebhookConfig::new(webhook, ApiKey::from(WEBHOOK_SECRET))),
    )
    .await
    .map_err(sim_failure("self-managed"))?;
    let (client_b, portal_b, generate_b) = app_client(&self_managed).await?;
    let store_dir = dir.join("store");
    let store = crate::store::open(&StoreUri::File(store_dir.clone())).await?;
    let flow_b = flow(
        portal_b.clone(),
        keyring.clone(),
        Arc::clone(&store),
        &state,
    )?;
    let outcome_b = flow_b
        .backup(&generate_b)
        .await
        .map_err(|e| Failure::flow("the file-store backup failed", e))?;
    step(format!(
        "7. second portal-sim (Self-Managed Backups, custodian shares to the custodian webhook); client {client_b} backed up into a file store ({})",
        pairs(&outcome_b.backup_share_pair_ids)
    ));
    let verify_b = verified(
        &flow_b
            .verify()
            .await
            .map_err(|e| Failure::flow("verify failed", e))?,
    )?;
    step(format!("8. verify: {verify_b}"));
    let recovered = flow_b
        .recover()
        .await
        .map_err(|e| Failure::flow("recover failed", e))?;
    let recovered_ids: BTreeMap<String, String> = recovered
        .shares
        .iter()
        .map(|(curve, share)| (curve.as_str().to_owned(), share.id.clone()))
        .collect();
    drop(recovered);
    step(format!(
        "9. recover from the file store: Portal issued new signing shares ({}), confirmed; not shown",
        pairs(&recovered_ids)
    ));

    // 6. Rotation to a new key.
    let new_path = dir.join("kek-2");
    kms::keygen(&new_path)?;
    let new_uri = format!("local:{}", new_path.display());
    let new_keyring = kms::keyring(std::slice::from_ref(&new_uri), "--to-kms").await?;
    let rotated = flow_b
        .flow()
        .rotate(&new_keyring, std::slice::from_ref(&client_b))
        .await
        .map_err(|e| Failure::flow("rotate failed", e))?;
    let with_new = flow(portal_b, new_keyring, store, &state)?;
    let verify_new = verified(
        &with_new
            .verify()
            .await
            .map_err(|e| Failure::flow("verify under the new key failed", e))?,
    )?;
    let old_opens = flow_b
        .verify()
        .await
        .map_err(|e| Failure::flow("verify under the old key failed", e))?
        .checked
        .iter()
        .any(|c| c.finding == backup_flow::Finding::Ok);
    if old_opens {
        return Err(Failure::new("the old key still opens a rotated ciphertext"));
    }
    step(format!(
        "10. rotate to a new key: {} ciphertexts rewrapped; under the new key {verify_new}; the old key opens none",
        rotated.rewrapped
    ));

    // 7. The simulators' verdicts.
    let reports = [
        ("portalManaged", managed.report()),
        ("selfManaged", self_managed.report()),
    ];
    let _ = managed.shutdown().await;
    let _ = self_managed.shutdown().await;
    let mut verdicts = BTreeMap::new();
    let mut lines = Vec::new();
    for (name, report) in &reports {
        lines.push(format!("{name}: {}", first_line(report)));
        verdicts.insert(
            *name,
            if report.is_clean() {
                "clean"
            } else {
                "NOT clean"
            },
        );
    }
    step(format!("11. invariant reports: {}", lines.join("; ")));
    if let Some((name, report)) = reports.iter().find(|(_, r)| !r.is_clean()) {
        return Err(Failure::new(format!(
            "the {name} simulator saw something Portal would object to:\n{report}"
        )));
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "demo finished in {seconds:.1} s: every step as expected, both invariant reports clean"
    );
    Ok(Summary {
        portal_managed: json!({
            "clientId": client_a,
            "backupSharePairIds": outcome_a.backup_share_pair_ids,
            "interruptedAt": "confirm",
            "resumedAfter": outcome_a.resumed_after,
            "backupRequests": outcome_a.backup_requests,
            "verify": "ok",
        }),
        file_store: json!({
            "clientId": client_b,
            "backupSharePairIds": outcome_b.backup_share_pair_ids,
            "verify": "ok",
            "recoveredSigningSharePairIds": recovered_ids,
            "rotated": rotated,
            "verifyAfterRotation": "ok",
            "oldKeyOpens": false,
        }),
        simulator_reports: verdicts,
        seconds,
        status: "ok",
    })
}

fn curves(generate: &GenerateResponse) -> String {
    generate
        .iter()
        .map(|(curve, _)| curve.as_str().to_owned())
        .collect::<Vec<_>>()
        .join(" + ")
}

fn pairs(ids: &BTreeMap<String, String>) -> String {
    ids.iter()
        .map(|(curve, id)| format!("{curve} {id}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_line(report: &Report) -> String {
    report
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The custodian webhook, as `serve-webhook` runs it, over a store in memory: it seals the
/// custodian backup shares under the demo's key for the demo's few seconds. Returns its base
/// URL.
async fn webhook(keyring: &Keyring) -> Result<String, Failure> {
    const FAILED: &str = "cannot start the demo webhook";
    let secrets = custodian_webhook::WebhookSecrets::parse(WEBHOOK_SECRET)
        .map_err(|e| Failure::caused_by(FAILED, e))?;
    let server = custodian_webhook::WebhookServer::builder()
        .with_keyring(keyring.clone())
        .with_store(Arc::new(storage::memory::MemoryStore::new()))
        .with_secrets(secrets)
        .build()
        .map_err(|e| Failure::caused_by(FAILED, e))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::caused_by(FAILED, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::caused_by(FAILED, e))?;
    tokio::spawn(async move {
        if let Err(e) = server.serve(listener, std::future::pending()).await {
            tracing::error!(error = %e, "the demo webhook stopped");
        }
    });
    Ok(format!("http://{addr}"))
}
