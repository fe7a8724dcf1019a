//! What a run of the binary printed, for assertion messages; shared by path by the CLI's test
//! binaries.
#![allow(dead_code, unreachable_pub)] // a module of several test binaries

use std::process::Output;

/// The exit code, stdout and stderr of `out`, for a failed assertion to show.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
