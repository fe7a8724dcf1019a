//! Webhook secrets (`X-Webhook-Secret`) and the custodian share type.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::error::Error;

/// The environment variable the CLI (and [`WebhookSecrets::from_env`] callers, by
/// convention) read the secret from.
pub const SECRET_ENV: &str = "PORTAL_WEBHOOK_SECRET";

/// At most this many secrets are valid at once.
pub const MAX_SECRETS: usize = 16;

/// Longest accepted secret, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;

/// The secrets that `X-Webhook-Secret` is checked against. Any one of them is accepted, so a
/// secret can be rotated without downtime: add the new one, change it in Portal's dashboard,
/// then remove the old one.
///
/// Only a SHA-256 digest of each secret is kept (zeroized on drop), and a presented secret is
/// hashed and compared with every digest in constant time, without stopping at the first
/// match; neither the position of a difference nor the length of a secret shows in the
/// timing. Secrets come from a file or an environment variable, never from a command-line
/// argument (which other local users can read in the process list).
///
/// # Format
/// One secret per line. Surrounding whitespace is trimmed; empty lines and lines starting
/// with `#` are ignored. A secret is 1 to [`MAX_SECRET_LEN`] bytes of visible ASCII (what an
/// HTTP header value can carry; spaces inside are allowed).
///
/// ```
/// use custodian_webhook::WebhookSecrets;
///
/// let secrets = WebhookSecrets::parse("# rotation in progress\nold-secret\nnew-secret\n")?;
/// assert_eq!(secrets.len(), 2);
/// assert!(secrets.verify(b"new-secret"));
/// assert!(!secrets.verify(b"another"));
/// assert_eq!(format!("{secrets:?}"), "WebhookSecrets { count: 2, .. }");
/// # Ok::<_, custodian_webhook::Error>(())
/// ```
pub struct WebhookSecrets {
    digests: Vec<Zeroizing<[u8; 32]>>,
}

impl WebhookSecrets {
    /// Parses secrets in the [format](Self#format).
    ///
    /// # Errors
    /// [`Error::InvalidSecret`] when there is no secret, more than [`MAX_SECRETS`], or one
    /// breaks the format. The message never contains a secret.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut digests = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            check_secret(line)?;
            if digests.len() >= MAX_SECRETS {
                return Err(Error::InvalidSecret {
                    reason: "more than 16 secrets",
                });
            }
            digests.push(digest(line.as_bytes()));
        }
        if digests.is_empty() {
            return Err(Error::InvalidSecret {
                reason: "no secret given",
            });
        }
        Ok(Self { digests })
    }

    /// Reads secrets from a file in the [format](Self#format). The file's bytes are wiped
    /// after parsing. On Unix the file must not be readable, writable or executable by its
    /// group or others (`chmod 600`), like the local KEK file.
    ///
    /// # Errors
    /// [`Error::SecretFile`] when the file cannot be read; [`Error::SecretFilePermissions`]
    /// when its group or others have access; [`Error::InvalidSecret`] when it is not UTF-8;
    /// otherwise as [`parse`](Self::parse).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let io = |source| Error::SecretFile {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let metadata = file.metadata().map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::SecretFilePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        // Sized up front (plus one byte to see the end) so that reading does not reallocate.
        let capacity = usize::try_from(metadata.len())
            .unwrap_or(0)
            .saturating_add(1);
        let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::InvalidSecret {
            reason: "the secret file is not UTF-8",
        })?;
        Self::parse(text)
    }

    /// Reads secrets from the environment variable `var` (conventionally [`SECRET_ENV`]), in
    /// the [format](Self#format): several secrets are separated by newlines.
    ///
    /// # Errors
    /// [`Error::InvalidSecret`] when the variable is unset or not UTF-8; otherwise as
    /// [`parse`](Self::parse).
    pub fn from_env(var: &str) -> Result<Self, Error> {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| Error::InvalidSecret {
            reason: "the secret environment variable is unset or not UTF-8",
        })?);
        Self::parse(&value)
    }

    /// How many secrets are valid.
    #[must_use]
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Always false: a set holds at least one secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the secrets, compared in constant time against every one.
    #[must_use]
    pub fn verify(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let mut matched = Choice::from(0);
        for d in &self.digests {
            matched |= d.ct_eq(&*presented);
        }
        bool::from(matched)
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("count", &self.digests.len())
            .finish_non_exhaustive()
    }
}

fn digest(bytes: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&Sha256::digest(bytes));
    out
}

fn check_secret(secret: &str) -> Result<(), Error> {
    if secret.len() > MAX_SECRET_LEN {
        return Err(Error::InvalidSecret {
            reason: "a secret is longer than 1024 bytes",
        });
    }
    if !secret.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(Error::InvalidSecret {
            reason: "a secret holds a character other than visible ASCII",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_secrets_any_one_accepted() {
        let s = WebhookSecrets::parse("  a-secret  \n\n# comment\nb-secret\r\n").unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.verify(b"a-secret"));
        assert!(s.verify(b"b-secret"));
        assert!(!s.verify(b"a-secre"));
        assert!(!s.verify(b""));
        assert!(!s.verify(b"# comment"));
    }

    #[test]
    fn bad_secret_sets_are_rejected_without_echoing_them() {
        for bad in ["", "\n# only a comment\n", "tab\tinside", "caf\u{e9}"] {
            let err = WebhookSecrets::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("inside"), "{err}");
        }
        let many = (0..17).map(|i| format!("s{i}\n")).collect::<String>();
        assert!(WebhookSecrets::parse(&many).is_err());
        assert!(WebhookSecrets::parse(&"x".repeat(MAX_SECRET_LEN + 1)).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let s = WebhookSecrets::parse("hunter2-hunter2").unwrap();
        for text in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
