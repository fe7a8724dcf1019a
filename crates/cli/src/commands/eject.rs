//! `eject`: each wallet's private key, through Portal or offline.

use std::process::ExitCode;

use backup_flow::{EjectOptions, StoreFactory};
use portal_api::{BackupMethod, SecretShare};
use serde::Serialize;

use crate::args::{EjectArgs, EjectCommand};
use crate::failure::{EXIT_USAGE, Failure};
use crate::{kms, output};

use super::Settings;

pub(super) async fn eject(settings: &Settings, args: EjectArgs) -> Result<ExitCode, Failure> {
    let (client_id, out) = match (args.command, args.client_id, args.out) {
        (Some(EjectCommand::Combine(combine)), _, _) => return crate::combine::run(&combine),
        (None, Some(client_id), Some(out)) => (client_id, out),
        _ => return Err(Failure::new("eject needs --client-id and --out").with_code(EXIT_USAGE)),
    };
    // The keys have somewhere private to go before anything is fetched.
    let file = output::create_private(&out)?;
    let result = async {
        if args.offline {
            eject_offline(settings, &client_id, &args.webhook_store, &args.webhook_kms).await
        } else {
            let custodian = settings.custodian()?;
            let flow = settings.flow().await?.custodian(custodian);
            let mut options = EjectOptions::new();
            if let Some(method) = &args.backup_method {
                options = options.with_backup_method(BackupMethod::from_wire(method));
            }
            // Marked only after the keys are written (below), never inside the eject.
            let report = flow
                .eject(&client_id, &options)
                .await
                .map_err(|e| Failure::flow(format!("eject of client {client_id} failed"), e))?;
            Ok((Some(flow), report))
        }
    }
    .await;
    let (flow, report) = match result {
        Ok(done) => done,
        Err(e) => {
            // No key was rebuilt and verified: nothing is written, no empty file is left.
            let _ = std::fs::remove_file(&out);
            return Err(e);
        }
    };
    output::write_private(file, &out, &KeyFile::of(&report))?;
    let marked_ejected = match (&flow, args.mark_ejected) {
        (Some(flow), true) => {
            flow.mark_ejected(&client_id).await.map_err(|e| {
                Failure::flow(
                    format!(
                        "the keys are in {}, but marking client {client_id} ejected failed",
                        out.display()
                    ),
                    e,
                )
            })?;
            true
        }
        _ => false,
    };
    for pair in &report.unmatched_custodian_pairs {
        tracing::warn!(
            pair_id = %pair,
            "the webhook's custodian share of this backup share pair has no client half in the store (never stored): not ejected"
        );
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wallet<'a> {
        wallet_id: Option<&'a str>,
        curve: &'a str,
        backup_share_pair_id: &'a str,
        backup_method: Option<&'a str>,
        public_key: String,
        address: String,
        checked_against: &'static str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary<'a> {
        client_id: &'a str,
        wallets: Vec<Wallet<'a>>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        unmatched_custodian_pairs: &'a [String],
        out: String,
        marked_ejected: bool,
        status: &'static str,
    }
    output::print_json(&Summary {
        client_id: &client_id,
        wallets: report
            .wallets
            .iter()
            .map(|w| Wallet {
                wallet_id: w.wallet_id.as_deref(),
                curve: w.curve.as_str(),
                backup_share_pair_id: &w.backup_share_pair_id,
                backup_method: w.backup_method.as_ref().map(BackupMethod::as_str),
                public_key: w.key.public_key().to_hex(),
                address: w.key.public_key().address(),
                checked_against: checked_against(&w.key),
            })
            .collect(),
        unmatched_custodian_pairs: &report.unmatched_custodian_pairs,
        out: out.display().to_string(),
        marked_ejected,
        status: "verified",
    })?;
    Ok(ExitCode::SUCCESS)
}

fn checked_against(key: &eject::RebuiltKey) -> &'static str {
    match key.portal_wallet_key() {
        eject::PortalKeyCheck::Matched => {
            "both shares' public keys and the wallet's public key at Portal"
        }
        eject::PortalKeyCheck::Unparsable => {
            "both shares' public keys; not checked against Portal's wallet key (its publicKey does not parse as a point)"
        }
        _ => {
            "both shares' public keys; not checked against Portal's wallet key (Portal not consulted)"
        }
    }
}

/// The key file: one entry per wallet, each the verified key with what it is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyFile<'a> {
    client_id: &'a str,
    wallets: Vec<KeyFileWallet<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyFileWallet<'a> {
    wallet_id: Option<&'a str>,
    backup_method: Option<&'a str>,
    #[serde(flatten)]
    key: &'a eject::RebuiltKey,
}

impl<'a> KeyFile<'a> {
    fn of(report: &'a backup_flow::EjectReport) -> Self {
        Self {
            client_id: &report.client_id,
            wallets: report
                .wallets
                .iter()
                .map(|w| KeyFileWallet {
                    wallet_id: w.wallet_id.as_deref(),
                    backup_method: w.backup_method.as_ref().map(BackupMethod::as_str),
                    key: &w.key,
                })
                .collect(),
        }
    }
}

/// Offline eject: our store and the webhook's, opened with the KMS; Portal is not called.
async fn eject_offline(
    settings: &Settings,
    client_id: &str,
    webhook_store: &Option<String>,
    webhook_kms: &[String],
) -> Result<(Option<backup_flow::CustodianFlow>, backup_flow::EjectReport), Failure> {
    let keyring = kms::keyring(&settings.kms, "--kms").await?;
    let (_, stores) = settings.store().await?;
    if stores.own_store().is_none() {
        return Err(Failure::new(
            "offline eject reads the client ciphertexts from a store of your own, not portal",
        )
        .hint(
            "pass the --store your Self-Managed backups use (file:<dir>, postgres://…, s3://…)",
        ));
    }
    let vault_store = crate::store::open_own(
        &crate::store::parse(webhook_store.as_deref().unwrap_or(&settings.store))?,
        "offline eject (the webhook's custodian shares)",
    )
    .await?;
    let vault_keyring = if webhook_kms.is_empty() {
        kms::keyring(&settings.kms, "--kms").await?
    } else {
        kms::keyring(webhook_kms, "--webhook-kms").await?
    };
    let vault = custodian_webhook::ShareVault::new(vault_keyring, vault_store)
        .map_err(|e| Failure::caused_by("cannot read the webhook's store", e))?;
    let custodian_shares: Vec<SecretShare> = vault
        .fetch(client_id)
        .await
        .map_err(|e| {
            Failure::caused_by("cannot read the custodian shares of the webhook's store", e)
        })?
        .into_iter()
        .map(|share| SecretShare::new(share.expose_secret().to_owned()))
        .collect();
    if custodian_shares.is_empty() {
        return Err(Failure::new(format!(
            "the webhook's store holds no custodian backup share of client {client_id}"
        ))
        .hint("pass the store serve-webhook uses with --webhook-store (and its keys with --webhook-kms)"));
    }
    // No Portal call: no role is made and no base URL is contacted.
    let flow = settings.flow_with(keyring, stores)?;
    let report = flow
        .eject_offline(client_id, &custodian_shares)
        .await
        .map_err(|e| Failure::flow(format!("offline eject of client {client_id} failed"), e))?;
    Ok((None, report))
}
