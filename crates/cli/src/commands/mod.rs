//! The commands, over `backup_flow::Flow`: one module a command, and the [`Settings`] they
//! share.

mod backup;
mod bulk;
mod eject;
mod keygen;
mod lines;
mod migrate;
mod reconcile;
mod recover;
mod rotate;
mod settings;
mod status;
mod verify;

use std::process::ExitCode;

use crate::args::{BulkCommand, Command};
use crate::failure::Failure;

pub(crate) use migrate::MigrateArgs;
pub(crate) use reconcile::ReconcileArgs;
pub(crate) use settings::Settings;

/// Runs a command.
pub(crate) async fn run(settings: Settings, command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Keygen { out } => keygen::keygen(&out),
        Command::Backup {
            generate_response,
            already,
        } => backup::backup(&settings, &generate_response, &already).await,
        Command::Recover { out, backup_method } => {
            recover::recover(&settings, out.as_deref(), backup_method.as_deref()).await
        }
        Command::Verify {
            store_wide: false, ..
        } => verify::verify(&settings).await,
        Command::Verify {
            store_wide: true,
            client_id,
            concurrency,
            kms_rate_limit,
        } => {
            verify::verify_store_wide(&settings, client_id, concurrency.into(), kms_rate_limit)
                .await
        }
        Command::Eject(args) => eject::eject(&settings, args).await,
        Command::Rotate {
            to_kms,
            client_id,
            concurrency,
            kms_rate_limit,
        } => {
            rotate::rotate(
                &settings,
                &to_kms,
                client_id,
                concurrency.into(),
                kms_rate_limit,
            )
            .await
        }
        Command::Reconcile(args) => reconcile::reconcile(&settings, args).await,
        Command::Migrate(args) => migrate::migrate(&settings, args).await,
        Command::Status(args) => status::status(&settings, args).await,
        Command::Bulk(BulkCommand::Backup(args)) => bulk::bulk_backup(&settings, args).await,
        Command::Demo => crate::demo::run().await,
        Command::ServeWebhook(args) => {
            crate::webhook::run(&settings.kms, &settings.store, args).await
        }
    }
}
