//! The commands, over `backup_flow::Flow`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use backup_flow::bulk::{
    BulkEvent, BulkOptions, BulkReport, JOB_COMPLETION_INDEX, LineStatus, Shard,
};
use backup_flow::{EjectOptions, Flow, StoreFactory};
use envelope::{KeyEncryptionKey as _, Keyring};
use futures_util::StreamExt as _;
use portal_api::mpc::GenerateResponse;
use portal_api::{
    ApiKey, BackupMethod, ClientApi, CustodianApi, JsonError, Portal, RateLimit, SecretShare,
};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::args::{
    AlreadyBackedUp, BulkBackup, BulkCommand, Command, EjectArgs, EjectCommand, Global,
    RateLimitArg,
};
use crate::failure::{
    EXIT_FAILED, EXIT_RETRYABLE, EXIT_ROTATE_INCOMPLETE, EXIT_USAGE, EXIT_VERIFY_FAILED, Failure,
};
use crate::store::StoreUri;
use crate::{demo, kms, output, progress, store_wide};

/// The global options, with the credentials moved into secret types at once.
pub(crate) struct Settings {
    api_key: Option<ApiKey>,
    custodian_api_key: Option<ApiKey>,
    api_url: String,
    mpc_url: String,
    kms: Vec<String>,
    store: String,
    state_dir: Option<PathBuf>,
}

fn secret(value: Option<String>) -> Option<ApiKey> {
    value.filter(|v| !v.is_empty()).map(ApiKey::new)
}

impl Settings {
    pub(crate) fn new(global: Global) -> Self {
        Self {
            api_key: secret(global.api_key),
            custodian_api_key: secret(global.custodian_api_key),
            api_url: global.portal_api_url,
            mpc_url: global.portal_mpc_url,
            kms: global
                .kms
                .into_iter()
                .filter(|k| !k.trim().is_empty())
                .collect(),
            store: global.store,
            state_dir: global.state_dir,
        }
    }

    /// The connection to Portal, with no credential.
    fn transport(&self, rate: Option<RateLimitArg>) -> Result<Portal, Failure> {
        let mut builder = Portal::builder()
            .with_api_base_url(&self.api_url)
            .with_mpc_base_url(&self.mpc_url)
            .with_user_agent(concat!("portal-backup/", env!("CARGO_PKG_VERSION")));
        match rate {
            None => {}
            Some(RateLimitArg::Off) => builder = builder.without_rate_limits(),
            Some(RateLimitArg::PerMinute(n)) => {
                let limit = RateLimit::per_minute(n).with_burst((n / 60).clamp(1, 10));
                builder = builder
                    .with_api_rate_limit(limit)
                    .with_mpc_rate_limit(limit);
            }
        }
        builder
            .build()
            .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
    }

    /// The client of `--api-key`.
    fn client(&self) -> Result<ClientApi, Failure> {
        let key = self.api_key.as_ref().ok_or_else(|| {
            Failure::new("no Client API Key given")
                .hint("set PORTAL_CLIENT_API_KEY (or pass --api-key)")
        })?;
        self.transport(None)?
            .client_with_api_key(key)
            .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
    }

    /// The custodian of `--custodian-api-key`.
    fn custodian(&self) -> Result<CustodianApi, Failure> {
        let key = self.custodian_api_key.as_ref().ok_or_else(|| {
            Failure::new("no Custodian API Key given")
                .hint("set PORTAL_CUSTODIAN_API_KEY (or pass --custodian-api-key)")
        })?;
        self.transport(None)?
            .custodian(key)
            .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
    }

    fn state_dir(&self) -> Result<PathBuf, Failure> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(state) = var("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
            return Ok(state.join("portal-backup"));
        }
        if let Some(home) = var("HOME") {
            return Ok(home.join(".local/state/portal-backup"));
        }
        Err(Failure::new("no state directory")
            .hint("set PORTAL_BACKUP_STATE_DIR (or pass --state-dir)"))
    }

    async fn store(&self) -> Result<(StoreUri, Arc<dyn StoreFactory>), Failure> {
        let uri = crate::store::parse(&self.store)?;
        let stores = crate::store::open(&uri).await?;
        Ok((uri, stores))
    }

    async fn flow(&self) -> Result<Flow, Failure> {
        let keyring = kms::keyring(&self.kms, "--kms").await?;
        let (_, stores) = self.store().await?;
        self.flow_with(keyring, stores)
    }

    fn flow_with(&self, keyring: Keyring, stores: Arc<dyn StoreFactory>) -> Result<Flow, Failure> {
        let state = self.state_dir()?;
        Flow::new(keyring, stores, &state).map_err(|e| {
            Failure::flow(
                format!("cannot use the state directory {}", state.display()),
                e,
            )
        })
    }
}

/// Runs a command.
pub(crate) async fn run(settings: Settings, command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Keygen { out } => keygen(&out),
        Command::Backup {
            generate_response,
            already,
        } => backup(&settings, &generate_response, &already).await,
        Command::Recover { out, backup_method } => {
            recover(&settings, out.as_deref(), backup_method.as_deref()).await
        }
        Command::Verify {
            store_wide: false, ..
        } => verify(&settings).await,
        Command::Verify {
            store_wide: true,
            client_id,
            concurrency,
            kms_rate_limit,
        } => verify_store_wide(&settings, client_id, concurrency.into(), kms_rate_limit).await,
        Command::Eject(args) => eject(&settings, args).await,
        Command::Rotate {
            to_kms,
            client_id,
            concurrency,
            kms_rate_limit,
        } => {
            rotate(
                &settings,
                &to_kms,
                client_id,
                concurrency.into(),
                kms_rate_limit,
            )
            .await
        }
        Command::Migrate(args) => crate::migrate::run(&settings.kms, args).await,
        Command::Bulk(BulkCommand::Backup(args)) => bulk_backup(&settings, args).await,
        Command::Demo => demo::run().await,
        Command::ServeWebhook(args) => {
            crate::webhook::run(&settings.kms, &settings.store, args).await
        }
    }
}

fn keygen(out: &Path) -> Result<ExitCode, Failure> {
    let kek = kms::keygen(out)?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Made<'a> {
        kms: String,
        provider: &'a str,
        key_id: &'a str,
    }
    output::print_json(&Made {
        kms: format!("local:{}", out.display()),
        provider: kek.provider(),
        key_id: kek.key_id(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The `/v1/generate` response: the object Portal returned, or a JSON string holding it.
/// Errors give the position only, never the input.
pub(crate) fn parse_generate_response(text: &str) -> Result<GenerateResponse, Failure> {
    let invalid = |e: serde_json::Error| {
        let e = JsonError::from(e);
        Failure::new(format!(
            "the generate response is not the JSON of a /v1/generate response: invalid JSON ({}) at line {}, column {}",
            e.category(),
            e.line(),
            e.column()
        ))
    };
    if text.trim_start().starts_with('"') {
        let inner: SecretShare = serde_json::from_str(text).map_err(invalid)?;
        serde_json::from_str(inner.expose_secret()).map_err(invalid)
    } else {
        serde_json::from_str(text).map_err(invalid)
    }
}

async fn backup(
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
async fn with_already(flow: Flow, already: &AlreadyBackedUp) -> Result<Flow, Failure> {
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

fn ids_by_curve(shares: &portal_api::mpc::CurveShares) -> BTreeMap<String, String> {
    shares
        .iter()
        .map(|(curve, share)| (curve.as_str().to_owned(), share.id.clone()))
        .collect()
}

async fn recover(
    settings: &Settings,
    out: Option<&Path>,
    backup_method: Option<&str>,
) -> Result<ExitCode, Failure> {
    let backup_method = backup_method.map(BackupMethod::from_wire);
    // Make sure the new signing shares have somewhere to go before Portal issues them.
    let file = match out {
        Some(path) => Some(output::create_private(path)?),
        None if output::stdout_is_terminal() => {
            return Err(
                Failure::new("refusing to print new signing shares on a terminal")
                    .hint("pass --out <file> (created with mode 0600), or redirect stdout"),
            );
        }
        None => {
            // Before Portal issues anything: a readable file would keep the shares.
            output::refuse_readable_stdout()?;
            None
        }
    };
    let flow = match settings.client() {
        Ok(client) => settings.flow().await.map(|flow| flow.session(client)),
        Err(e) => Err(e),
    };
    let recovered = match flow {
        // Portal is told the new signing shares are stored only after they are written.
        Ok(flow) => flow
            .recover_unconfirmed_using(backup_method.as_ref())
            .await
            .map(|recovered| (flow, recovered))
            .map_err(|e| Failure::flow("recover failed", e)),
        Err(e) => Err(e),
    };
    let (flow, recovered) = match (recovered, out) {
        (Ok(done), _) => done,
        (Err(e), Some(path)) => {
            // Nothing was written: do not leave an empty file behind.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    match (file, out) {
        (Some(file), Some(path)) => {
            output::write_private(file, path, &recovered.shares)?;
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Summary<'a> {
                client_id: &'a str,
                signing_share_pair_ids: BTreeMap<String, String>,
                out: String,
                status: &'static str,
            }
            output::print_json(&Summary {
                client_id: &recovered.client_id,
                signing_share_pair_ids: ids_by_curve(&recovered.shares),
                out: path.display().to_string(),
                status: "recovered",
            })?;
        }
        _ => output::secret_to_stdout(&recovered.shares)?,
    }
    flow.confirm_recovered(&recovered)
        .await
        .map_err(|e| Failure::flow("confirming the new signing shares to Portal failed", e))?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(settings: &Settings) -> Result<ExitCode, Failure> {
    let client = settings.client()?;
    let report = settings
        .flow()
        .await?
        .session(client)
        .verify()
        .await
        .map_err(|e| Failure::flow("verify failed", e))?;
    output::print_json(&report)?;
    if report.is_ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let bad: Vec<String> = report
        .checked
        .iter()
        .filter(|c| c.finding != backup_flow::Finding::Ok)
        .map(|c| {
            let what = match &c.finding {
                backup_flow::Finding::Missing => "nothing is stored".to_owned(),
                backup_flow::Finding::WrongIdentity { reason } => {
                    format!("it does not open as that share ({reason})")
                }
                _ => "it failed the check".to_owned(),
            };
            format!("{} {} ({}): {what}", c.curve, c.backup_share_pair_id, c.key)
        })
        .collect();
    let failure = if report.checked.is_empty() {
        Failure::new(format!(
            "verification failed: client {} has no completed backup to check",
            report.client_id
        ))
    } else {
        Failure::new(format!(
            "verification failed: {} of {} shares of client {} do not open as the share they are stored for:\n    {}",
            bad.len(),
            report.checked.len(),
            report.client_id,
            bad.join("\n    ")
        ))
        .hint("do not recover from these ciphertexts; restore them from a copy, or back the client up again")
    };
    Err(failure.with_code(EXIT_VERIFY_FAILED))
}

async fn verify_store_wide(
    settings: &Settings,
    client_ids: Vec<String>,
    concurrency: usize,
    kms_rate_limit: Option<u32>,
) -> Result<ExitCode, Failure> {
    let (uri, stores) = settings.store().await?;
    let client_ids = match (stores.own_store(), client_ids.is_empty()) {
        (_, false) => client_ids,
        (Some(own), true) => crate::store::clients(own.as_ref(), &uri).await?,
        (None, true) => {
            return Err(Failure::new(
                "no client to verify: Portal's store cannot list its clients",
            )
            .hint("pass --client-id <id>, or a store of your own with --store"));
        }
    };
    let mut keyring = kms::keyring(&settings.kms, "--kms").await?;
    if let Some(calls) = kms_rate_limit {
        keyring = backup_flow::KmsRateLimit::per_second(calls).keyring(&keyring);
    }
    let flow = settings.flow_with(keyring, stores)?;
    let mut tally = store_wide::Tally::default();
    let mut lines = std::pin::pin!(flow.verify_store_wide(&client_ids, concurrency));
    while let Some(client) = lines.next().await {
        tally.print_client(&client)?;
    }
    tally.print_summary(client_ids.len(), concurrency)?;
    tally.outcome(client_ids.len())
}

async fn eject(settings: &Settings, args: EjectArgs) -> Result<ExitCode, Failure> {
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

async fn rotate(
    settings: &Settings,
    to_kms: &[String],
    client_ids: Vec<String>,
    concurrency: usize,
    kms_rate_limit: Option<u32>,
) -> Result<ExitCode, Failure> {
    let (uri, stores) = settings.store().await?;
    let Some(own) = stores.own_store() else {
        return Err(Failure::new(
            "rotate needs a store of your own: Portal's store cannot list or rewrite ciphertexts",
        )
        .hint("pass --store file:<dir> (or postgres://…, s3://…)"));
    };
    let mut from = kms::keyring(&settings.kms, "--kms").await?;
    let mut to = kms::keyring(to_kms, "--to-kms").await?;
    if let Some(calls) = kms_rate_limit {
        let limit = backup_flow::KmsRateLimit::per_second(calls);
        (from, to) = (limit.keyring(&from), limit.keyring(&to));
    }
    let listed = if client_ids.is_empty() && own.capabilities().list {
        Some(crate::store::clients(own.as_ref(), &uri).await?)
    } else {
        None
    };
    let client_ids = if !client_ids.is_empty() {
        client_ids
    } else if let Some(listed) = listed {
        listed
    } else if settings.api_key.is_some() {
        let me = settings
            .client()?
            .client_me()
            .await
            .map_err(|e| Failure::caused_by("cannot find the client of the API key", e))?;
        vec![me.id]
    } else {
        return Err(Failure::new("no client to rotate").hint("pass --client-id <id>"));
    };
    let flow = settings.flow_with(from, stores)?;
    let report = flow
        .rotate_with(&to, &client_ids, concurrency)
        .await
        .map_err(|e| Failure::flow("rotate failed", e))?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary<'a> {
        clients: usize,
        #[serde(flatten)]
        report: &'a backup_flow::RotateReport,
        to_kms: &'a [String],
    }
    output::print_json(&Summary {
        clients: client_ids.len(),
        report: &report,
        to_kms,
    })?;
    if !report.is_complete() {
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.key, f.reason))
            .collect();
        return Err(Failure::new(format!(
            "rotation incomplete: {} objects failed and {} are still not under the new keys{}{}",
            report.failed.len(),
            report.not_under_target,
            if failed.is_empty() { "" } else { ":\n    " },
            failed.join("\n    ")
        ))
        .hint("keep the old keys until a rerun reports notUnderTarget 0 (it resumes where this one stopped)")
        .with_code(EXIT_ROTATE_INCOMPLETE));
    }
    eprintln!(
        "rotated {} objects of {} clients ({} were already under the new keys, {} journal shares rewrapped); nothing is left under other keys: use --kms {} from now on",
        report.rewrapped,
        client_ids.len(),
        report.already_current,
        report.journal_rewrapped,
        to_kms.join(",")
    );
    Ok(ExitCode::SUCCESS)
}

async fn bulk_backup(settings: &Settings, args: BulkBackup) -> Result<ExitCode, Failure> {
    let (shard, report, failure) = match bulk_shard(&args) {
        Err(failure) => (None, None, Some(failure)),
        Ok(shard) => match bulk_run(settings, &args, shard.map(|(s, _)| s)).await {
            Err(failure) => (shard, None, Some(failure)),
            Ok(report) => {
                eprintln!("{}", summary(&report, shard.map(|(s, _)| s)));
                let failure = bulk_failure(&report);
                (shard, Some(report), failure)
            }
        },
    };
    let end = BulkSummary::new(shard, report.as_ref(), failure.as_ref());
    let written = write_bulk_summary(&args, &end);
    match (failure, written) {
        (Some(failure), written) => {
            if let Err(e) = written {
                eprint!("{}", e.render());
            }
            Err(failure)
        }
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(ExitCode::SUCCESS),
    }
}

/// Where a run's shard came from, for its summary.
type ShardSource = &'static str;

/// `--shard`, else the Indexed Job's `JOB_COMPLETION_INDEX` with `--shard-count`; a usage
/// error (exit 2) when they cannot name a shard.
fn bulk_shard(args: &BulkBackup) -> Result<Option<(Shard, ShardSource)>, Failure> {
    if let Some(shard) = args.shard {
        return match args.shard_count {
            Some(count) if count != shard.count() => Err(Failure::new(format!(
                "--shard {shard} and a shard count of {count} (--shard-count or PORTAL_BACKUP_SHARD_COUNT) disagree"
            ))
            .hint("give one of them, or the same count in both")
            .with_code(EXIT_USAGE)),
            _ => Ok(Some((shard, "--shard"))),
        };
    }
    let index = std::env::var_os(JOB_COMPLETION_INDEX).map(|v| v.to_string_lossy().into_owned());
    Shard::from_job_index(index.as_deref(), args.shard_count)
        .map(|shard| shard.map(|s| (s, JOB_COMPLETION_INDEX)))
        .map_err(|e| {
            Failure::caused_by("cannot tell which shard of the input to take", e)
                .hint(format!(
                    "in an Indexed Job, set PORTAL_BACKUP_SHARD_COUNT (or pass --shard-count) to the Job's completions; elsewhere pass --shard i/n, or unset {JOB_COMPLETION_INDEX} and PORTAL_BACKUP_SHARD_COUNT to take every line"
                ))
                .with_code(EXIT_USAGE)
        })
}

async fn bulk_run(
    settings: &Settings,
    args: &BulkBackup,
    shard: Option<Shard>,
) -> Result<BulkReport, Failure> {
    let portal = settings.transport(args.rate_limit)?;
    let flow = with_already(settings.flow().await?, &args.already).await?;
    let stdin = args.input == Path::new("-");
    let input: Box<dyn BufRead + Send> = if stdin {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input).map_err(|e| {
            Failure::caused_by(format!("cannot open the input {}", args.input.display()), e)
        })?;
        Box::new(BufReader::new(file))
    };
    let total = if stdin || !std::io::stderr().is_terminal() {
        None
    } else {
        count_lines(&args.input, shard).ok()
    };
    let bar = progress::Bar::new(total);
    let mut failed = 0u64;
    let hook_bar = bar.clone();
    let mut options = BulkOptions::new()
        .with_concurrency(usize::from(args.concurrency))
        .with_progress(move |event| {
            if let BulkEvent::Finished(result) = event {
                if result.status == LineStatus::Failed {
                    failed = failed.saturating_add(1);
                }
                hook_bar.finished(failed);
            }
        });
    if let Some(shard) = shard {
        options = options.with_shard(shard);
    }
    let report = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                Failure::caused_by(format!("cannot create the output {}", path.display()), e)
            })?;
            flow.bulk_backup(&portal, input, std::io::BufWriter::new(file), options)
                .await
        }
        None => {
            flow.bulk_backup(&portal, input, std::io::stdout(), options)
                .await
        }
    };
    bar.done();
    report.map_err(|e| Failure::caused_by("the bulk backup stopped", e))
}

/// The failure a finished run's failed lines make: exit 3 when every one of them may pass,
/// 1 otherwise; `None` when every line is confirmed.
fn bulk_failure(report: &BulkReport) -> Option<Failure> {
    if report.is_success() {
        return None;
    }
    let failure = Failure::new(format!(
        "{} of {} clients failed; their result lines say why",
        report.failed, report.selected
    ));
    Some(if report.failed == report.retryable_failures {
        failure.with_code(EXIT_RETRYABLE).hint(
            "every failure may pass: run the same command again to resume (confirmed clients are skipped)",
        )
    } else {
        failure.with_code(EXIT_FAILED).hint(
            "fix the lines that failed for good; running the same command again skips the confirmed clients",
        )
    })
}

fn summary(report: &BulkReport, shard: Option<Shard>) -> String {
    let shard = shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
    format!(
        "bulk backup{shard}: {} of {} lines taken; {} confirmed ({} already by an earlier run), {} failed ({} may pass on a re-run)",
        report.selected,
        report.lines,
        report.confirmed,
        report.already_confirmed,
        report.failed,
        report.retryable_failures
    )
}

/// The machine-readable end of a bulk run: one JSON object on one line, with the process's
/// exit code, so a job controller can retry only the shards that may pass.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkSummary {
    command: &'static str,
    /// The process's exit code.
    exit_code: u8,
    /// `succeeded`, `failed` (a line failed for good), `retryable` (every failed line may
    /// pass) or `stopped` (the run did not finish; `error` says why).
    outcome: &'static str,
    shard: Option<ShardSummary>,
    #[serde(flatten)]
    counts: Option<BulkCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShardSummary {
    index: u32,
    count: u32,
    /// `--shard` or `JOB_COMPLETION_INDEX`.
    from: ShardSource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkCounts {
    lines: u64,
    selected: u64,
    skipped_by_shard: u64,
    confirmed: u64,
    backed_up: u64,
    already_confirmed: u64,
    failed: u64,
    retryable_failures: u64,
}

impl BulkSummary {
    fn new(
        shard: Option<(Shard, ShardSource)>,
        report: Option<&BulkReport>,
        failure: Option<&Failure>,
    ) -> Self {
        let exit_code = failure.map_or(0, Failure::code);
        let outcome = match (report, exit_code) {
            (None, _) => "stopped",
            (Some(_), 0) => "succeeded",
            (Some(_), EXIT_RETRYABLE) => "retryable",
            (Some(_), _) => "failed",
        };
        Self {
            command: "bulk backup",
            exit_code,
            outcome,
            shard: shard.map(|(shard, from)| ShardSummary {
                index: shard.index(),
                count: shard.count(),
                from,
            }),
            counts: report.map(|r| BulkCounts {
                lines: r.lines,
                selected: r.selected,
                skipped_by_shard: r.skipped_by_shard,
                confirmed: r.confirmed,
                backed_up: r.backed_up(),
                already_confirmed: r.already_confirmed,
                failed: r.failed,
                retryable_failures: r.retryable_failures,
            }),
            // Failed lines say why in their result lines; a stopped run says it here.
            error: failure.filter(|_| report.is_none()).map(Failure::message),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The summary to `--summary` (replaced), and to stdout when the result lines went to
/// `--output`.
fn write_bulk_summary(args: &BulkBackup, summary: &BulkSummary) -> Result<(), Failure> {
    let mut line = serde_json::to_string(summary)
        .map_err(|e| Failure::caused_by("cannot encode the run's summary", e))?;
    line.push('\n');
    if let Some(path) = &args.summary {
        std::fs::write(path, &line).map_err(|e| {
            Failure::caused_by(format!("cannot write the summary {}", path.display()), e)
        })?;
    }
    if args.output.is_some() {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::caused_by("cannot write to stdout", e))?;
    }
    Ok(())
}

/// The non-blank lines of `path` that `shard` takes, for the progress bar; reads the file
/// once in fixed chunks, keeping no line.
fn count_lines(path: &Path, shard: Option<Shard>) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    let (mut index, mut count, mut blank) = (0u64, 0u64, true);
    let mut take = |index: u64, blank: bool| {
        if !blank && shard.is_none_or(|s| s.selects(index)) {
            count = count.saturating_add(1);
        }
    };
    loop {
        let n = file.read(&mut chunk)?;
        let Some(read) = chunk.get(..n).filter(|r| !r.is_empty()) else {
            break;
        };
        for &b in read {
            if b == b'\n' {
                take(index, blank);
                index = index.saturating_add(1);
                blank = true;
            } else if !b.is_ascii_whitespace() {
                blank = false;
            }
        }
    }
    take(index, blank);
    Ok(count)
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

    #[test]
    fn lines_are_counted_per_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "a\n\nb\n  \nc\nd").unwrap();
        assert_eq!(count_lines(&path, None).unwrap(), 4);
        // indexes 0 a, 1 blank, 2 b, 3 blank, 4 c, 5 d
        assert_eq!(count_lines(&path, Some("0/2".parse().unwrap())).unwrap(), 3);
        assert_eq!(count_lines(&path, Some("1/2".parse().unwrap())).unwrap(), 1);
    }
}
