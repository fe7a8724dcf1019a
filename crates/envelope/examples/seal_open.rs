//! Seals a share with a local key-encryption key, prints what the envelope's header says, and
//! opens it again. Run with `cargo run -p portal-backup-envelope --example seal_open`.
//!
//! The key file is written to a fresh temporary directory (mode 0600) and removed at the end;
//! nothing secret is printed.

use std::sync::Arc;

use envelope::{EncryptionContext, Keyring, Report, local::LocalKek};

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", Report(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("local.kek");
    let kek = LocalKek::generate_file(&key_file)?;
    println!(
        "local KEK written (mode 0600), key id {}",
        envelope::KeyEncryptionKey::key_id(&kek)
    );
    let keyring = Keyring::new().with(Arc::new(LocalKek::from_file(&key_file)?));

    let context = EncryptionContext::new()
        .with("client-id", "cl_demo")?
        .with("backup-share-pair-id", "bsp_demo")?
        .with("curve", "SECP256K1")?
        .with("purpose", "client-backup")?;
    // A stand-in for a Portal share: unpadded base64 of a JSON object, several KiB.
    let share = format!("{{\"share\":\"{}\"}}", "7".repeat(4000));

    let sealed = envelope::seal(&keyring, &context, share.as_bytes()).await?;
    let text = envelope::to_text(&sealed);
    let info = envelope::inspect(&sealed)?;
    println!(
        "sealed {} bytes into a v{} envelope of {} bytes ({} as text); wrapped by {}",
        share.len(),
        info.version,
        sealed.len(),
        text.len(),
        info.wrapped_keys
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("bound to context {:?}", info.context.as_map());

    let opened = envelope::open(&keyring, &context, &envelope::from_text(&text)?).await?;
    if opened.expose_secret() != share.as_bytes() {
        return Err("opened bytes differ from the sealed share".into());
    }
    println!(
        "opened: {} bytes, identical to the sealed share",
        opened.len()
    );

    let wrong = context.clone().with("curve", "ED25519")?;
    match envelope::open(&keyring, &wrong, &sealed).await {
        Err(envelope::Error::Decrypt) => {
            println!("opening under another identity fails, as it must")
        }
        other => return Err(format!("expected a decrypt failure, got {other:?}").into()),
    }
    Ok(())
}
