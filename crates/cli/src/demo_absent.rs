//! `portal-backup demo` in a build without the `demo` feature. The demo runs against
//! `portal-sim`, which the shipped binary does not link: here the command is hidden from
//! `--help` and, if named anyway, says how to get a build that has it.

use std::future::{Ready, ready};
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::args::Cli;
use crate::failure::{EXIT_USAGE, Failure};

/// The command line, with `demo` left out of the help of a build that cannot run it.
pub(crate) fn parse() -> Cli {
    let command = Cli::command().mut_subcommand("demo", |demo| demo.hide(true));
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

/// A usage error naming the feature.
pub(crate) fn run() -> Ready<Result<ExitCode, Failure>> {
    ready(Err(Failure::new(
        "this portal-backup was built without the demo (cargo feature `demo`)",
    )
    .hint("run `cargo xtask demo`, or `cargo run -p portal-backup --features demo -- demo`")
    .with_code(EXIT_USAGE)))
}
