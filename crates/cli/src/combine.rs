//! `eject combine`: one wallet's key from a client and a custodian backup share given as files,
//! verified like every eject (`portal-backup-eject`), written to a new private file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::failure::Failure;
use crate::output;

/// `eject combine` options.
#[derive(Args)]
pub(crate) struct CombineArgs {
    /// The wallet's curve: secp256k1 or ed25519
    #[arg(long, value_name = "CURVE")]
    pub(crate) curve: String,
    /// The client backup share: the decoded MpcShare JSON, or its base64 as /v1/backup
    /// returns it; `-` for stdin
    #[arg(long, value_name = "FILE|-")]
    pub(crate) client_share: PathBuf,
    /// The custodian backup share: the flat JSON object (or the JSON string holding it)
    #[arg(long, value_name = "FILE")]
    pub(crate) custodian_share: PathBuf,
    /// The backup share pair both shares must belong to [default: any, if they agree]
    #[arg(long, value_name = "ID")]
    pub(crate) backup_share_pair_id: Option<String>,
    /// The wallet's publicKey as Portal's /clients/me shows it, to check against as well
    #[arg(long, value_name = "JSON")]
    pub(crate) public_key: Option<String>,
    /// The file to create for the key (mode 0600; never an existing file)
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

/// Runs `eject combine`.
pub(crate) fn run(args: &CombineArgs) -> Result<ExitCode, Failure> {
    let curve: eject::Curve = args
        .curve
        .parse()
        .map_err(|e| Failure::caused_by("invalid --curve", e))?;
    if args.client_share == Path::new("-") && args.custodian_share == Path::new("-") {
        return Err(Failure::new("only one of the shares can come from stdin"));
    }
    let file = output::create_private(&args.out)?;
    let result = rebuild(args, curve);
    let key = match result {
        Ok(key) => key,
        Err(e) => {
            // Nothing was written: no empty key file is left behind.
            let _ = std::fs::remove_file(&args.out);
            return Err(e);
        }
    };
    output::write_private(file, &args.out, &key)?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary<'a> {
        curve: &'static str,
        backup_share_pair_id: Option<&'a str>,
        public_key: String,
        address: String,
        checked_against: &'static str,
        out: String,
        status: &'static str,
    }
    output::print_json(&Summary {
        curve: key.curve().as_str(),
        backup_share_pair_id: key.backup_share_pair_id(),
        public_key: key.public_key().to_hex(),
        address: key.public_key().address(),
        checked_against: key.portal_wallet_key().describe(),
        out: args.out.display().to_string(),
        status: "verified",
    })?;
    Ok(ExitCode::SUCCESS)
}

fn rebuild(args: &CombineArgs, curve: eject::Curve) -> Result<eject::RebuiltKey, Failure> {
    let client_text = output::read_secret_input(&args.client_share, "the client backup share")?;
    let custodian_text =
        output::read_secret_input(&args.custodian_share, "the custodian backup share")?;
    let refused = |e: eject::Error| Failure::caused_by("the shares were not combined", e);
    let client = eject::ClientShare::parse(&client_text).map_err(refused)?;
    let custodian = eject::CustodianShare::parse(&custodian_text).map_err(refused)?;
    drop((client_text, custodian_text));
    eject::combine(
        curve,
        &client,
        &custodian,
        &eject::Expected {
            backup_share_pair_id: args.backup_share_pair_id.as_deref(),
            portal_wallet_public_key: args.public_key.as_deref(),
        },
    )
    .map_err(refused)
}
