//! Results on stdout, secrets only into new private files (or a stdout that is not a
//! terminal), inputs that may hold secrets read into zeroizing buffers.

use std::fs::File;
use std::io::{IsTerminal as _, Read as _, Write};
use std::path::Path;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::failure::Failure;

/// Prints one JSON object and a newline on stdout.
pub(crate) fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::caused_by("cannot write to stdout", e))
}

/// Creates `path` for secrets: a new file (never an existing one), mode 0600.
pub(crate) fn create_private(path: &Path) -> Result<File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| {
        let exists = e.kind() == std::io::ErrorKind::AlreadyExists;
        let failure = Failure::caused_by(format!("cannot create {}", path.display()), e);
        if exists {
            failure.hint("the file exists; secrets are only written to a new file")
        } else {
            failure
        }
    })
}

/// Writes `value` as JSON into a file made by [`create_private`], and syncs it.
pub(crate) fn write_private(
    mut file: File,
    path: &Path,
    value: &impl Serialize,
) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure::caused_by(format!("cannot write {}", path.display()), e);
    let json = secret_json(value).map_err(|e| fail(e.into()))?;
    file.write_all(&json).map_err(fail)?;
    file.write_all(b"\n").map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Writes secret JSON to stdout, refusing a terminal (where it would stay on screen and in
/// scrollback).
pub(crate) fn secret_to_stdout(value: &impl Serialize) -> Result<(), Failure> {
    refuse_readable_stdout()?;
    let json = secret_json(value).map_err(|e| Failure::caused_by("cannot encode the result", e))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&json)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::caused_by("cannot write to stdout", e))
}

/// Pretty JSON of a value that holds secrets, in a zeroizing buffer allocated once at its
/// final size: a growing `Vec` would leave copies of the secret in the blocks it gave back.
/// (serde_json formats numbers in small stack buffers; strings are copied straight in.)
pub(crate) fn secret_json(value: &impl Serialize) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer_pretty(&mut counter, value)?;
    let mut json = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer_pretty(&mut *json, value)?;
    Ok(json)
}

/// A writer that only counts what it is given.
struct ByteCounter(usize);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses to write secrets into a stdout redirected to a regular file that its group or
/// others can read (`recover > shares.json` under the usual umask 022): the shares would sit
/// there readable by every local user.
pub(crate) fn refuse_readable_stdout() -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::PermissionsExt as _;
        let stdout = std::io::stdout();
        let owned = stdout
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Failure::caused_by("cannot inspect stdout", e))?;
        let metadata = File::from(owned)
            .metadata()
            .map_err(|e| Failure::caused_by("cannot inspect stdout", e))?;
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_file() && mode & 0o077 != 0 {
            return Err(Failure::new(format!(
                "refusing to write secrets to stdout: it is redirected to a file that others can read (mode {mode:04o})"
            ))
            .hint("pass --out <file> (created with mode 0600), or redirect into a file made private first (umask 077, or chmod 600 before writing)"));
        }
    }
    Ok(())
}

/// Whether stdout is a terminal.
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Reads a file, or stdin for `-`, into a zeroizing string.
pub(crate) fn read_secret_input(path: &Path, what: &str) -> Result<Zeroizing<String>, Failure> {
    let mut text = Zeroizing::new(String::new());
    let read = if path == Path::new("-") {
        std::io::stdin().lock().read_to_string(&mut text)
    } else {
        File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| Failure::caused_by(format!("cannot read {what} from {}", path.display()), e))?;
    Ok(text)
}
