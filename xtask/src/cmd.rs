//! Running commands: echo them, run them with inherited output, turn failures into errors.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};

/// An xtask failure: one human-readable message, printed by `main`.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self(err.to_string())
    }
}

pub(crate) type Result<T = ()> = std::result::Result<T, Error>;

/// A command to run, echoed as `$ program args…` before it runs.
#[derive(Debug)]
pub(crate) struct Cmd {
    inner: Command,
    /// Environment variables whose values are not shown (secrets).
    hidden: Vec<String>,
}

/// `cargo` (the one that runs xtask, from `$CARGO`), run in `dir`.
pub(crate) fn cargo(dir: &Path) -> Cmd {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Cmd::new(cargo, dir)
}

impl Cmd {
    pub(crate) fn new(program: impl AsRef<OsStr>, dir: &Path) -> Self {
        let mut inner = Command::new(program);
        inner.current_dir(dir);
        Self {
            inner,
            hidden: Vec::new(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.inner.arg(arg);
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    /// Like [`env`](Self::env), but the value is shown as `***`.
    pub(crate) fn secret_env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.hidden.push(key.to_owned());
        self.env(key, value)
    }

    /// The command line as shown to the user (environment overrides first).
    pub(crate) fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .inner
            .get_envs()
            .filter_map(|(k, v)| {
                let k = k.to_string_lossy();
                let shown = if self.hidden.iter().any(|h| *h == k) {
                    "***".to_owned()
                } else {
                    quote(&v?.to_string_lossy())
                };
                v.map(|_| format!("{k}={shown}"))
            })
            .collect();
        let program = self.inner.get_program().to_string_lossy();
        // `$CARGO` is an absolute path; show it as the user would type it.
        let program = Path::new(program.as_ref())
            .file_name()
            .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned());
        parts.push(program);
        parts.extend(self.inner.get_args().map(|a| quote(&a.to_string_lossy())));
        parts.join(" ")
    }

    /// Runs with inherited stdin/stdout/stderr; fails unless it exits 0.
    pub(crate) fn run(mut self) -> Result {
        let shown = self.display();
        println!("$ {shown}");
        let status = self
            .inner
            .status()
            .map_err(|e| Error::msg(format!("could not start `{shown}`: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::msg(format!("`{shown}` failed ({status})")))
        }
    }

    /// Runs with stderr inherited and returns stdout; fails unless it exits 0.
    pub(crate) fn read(mut self) -> Result<String> {
        let shown = self.display();
        let output = self
            .inner
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Error::msg(format!("could not start `{shown}`: {e}")))?;
        if output.status.success() {
            String::from_utf8(output.stdout)
                .map_err(|_| Error::msg(format!("`{shown}` printed non-UTF-8 output")))
        } else {
            Err(Error::msg(format!("`{shown}` failed ({})", output.status)))
        }
    }

    /// Runs silently and tells whether it could start and exited 0 (for probing tools).
    pub(crate) fn succeeds(mut self) -> bool {
        self.inner
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_shows_env() {
        let shown = Cmd::new("/usr/bin/cargo", Path::new("."))
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace"])
            .display();
        assert_eq!(shown, "RUSTDOCFLAGS='-D warnings' cargo doc --workspace");
        let shown = Cmd::new("run", Path::new("."))
            .secret_env("KEY", "s3cret-value")
            .env("URL", "http://x")
            .display();
        assert_eq!(shown, "KEY=*** URL=http://x run");
    }
}
