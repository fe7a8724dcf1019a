//! The input and output of the commands that act as many clients: a JSON Lines input of
//! client credentials (a file, or `-` for stdin) and a result-line output (a file, replaced,
//! or stdout).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::failure::Failure;

/// Opens a client-lines input: `-` is stdin.
pub(super) fn open_input(path: &Path) -> Result<Box<dyn BufRead + Send>, Failure> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::caused_by(format!("cannot open the input {}", path.display()), e))?;
    Ok(Box::new(BufReader::new(file)))
}

/// Where result lines go: `path` (created or replaced), else stdout.
pub(super) fn open_output(path: Option<&Path>) -> Result<Box<dyn Write + Send>, Failure> {
    match path {
        None => Ok(Box::new(std::io::stdout())),
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                Failure::caused_by(format!("cannot create the output {}", path.display()), e)
            })?;
            Ok(Box::new(std::io::BufWriter::new(file)))
        }
    }
}
