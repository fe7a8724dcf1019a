//! How a command fails: a one-line summary, the whole cause chain, Portal's status and error
//! id when Portal refused, a hint, and an exit code that tells retryable failures apart.
//!
//! Nothing here ever formats a secret: the messages come from our own types and from
//! `portal_api::Error`, whose `Display` leaves out Portal's free-text message (it may echo a
//! request) and every credential.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::process::ExitCode;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Exit code: failed, and running the same command again will not help by itself.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit code: a usage error (what clap reports for bad arguments, and bad settings found later).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: failed for a reason that may pass; running the same command again resumes.
pub(crate) const EXIT_RETRYABLE: u8 = 3;
/// Exit code: something needs attention: `verify` found a share that is missing or does not
/// open as its identity; `reconcile` (or `status`) left a client not whole.
pub(crate) const EXIT_ATTENTION: u8 = 4;
/// Exit code: `rotate` left objects that are not under the new keys (some failed, or the
/// header count after the rewrap is not zero); the report says which. Running it again
/// resumes.
pub(crate) const EXIT_ROTATE_INCOMPLETE: u8 = 5;

/// A failed command.
#[derive(Debug)]
pub(crate) struct Failure {
    summary: String,
    source: Option<BoxError>,
    hint: Option<String>,
    code: u8,
}

impl Failure {
    /// A failure with no underlying error.
    pub(crate) fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            source: None,
            hint: None,
            code: EXIT_FAILED,
        }
    }

    /// `summary`, caused by `source`.
    pub(crate) fn caused_by(summary: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(summary)
        }
    }

    /// `summary`, caused by a flow error; retryable when the flow says so.
    pub(crate) fn flow(summary: impl Into<String>, source: backup_flow::Error) -> Self {
        let retryable = source.is_retryable();
        let failure = Self::caused_by(summary, source);
        if retryable {
            failure.retryable()
        } else {
            failure
        }
    }

    /// Adds a hint line.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Marks the failure as one that may pass (exit code 3).
    #[must_use]
    pub(crate) fn retryable(mut self) -> Self {
        self.code = EXIT_RETRYABLE;
        self
    }

    /// Sets the exit code.
    #[must_use]
    pub(crate) fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }

    /// The exit code as a number.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// The summary and its cause chain on one line (for machine-readable summaries).
    pub(crate) fn message(&self) -> String {
        match self.source.as_deref() {
            Some(source) => format!(
                "{}: {}",
                self.summary,
                one_line(source as &(dyn StdError + 'static))
            ),
            None => self.summary.clone(),
        }
    }

    /// The text printed on stderr.
    pub(crate) fn render(&self) -> String {
        let mut text = format!("error: {}\n", self.summary);
        let mut portal = None;
        let mut cause = self
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        while let Some(error) = cause {
            let _ = writeln!(text, "  caused by: {error}");
            portal = portal.or_else(|| portal_refusal(error));
            cause = error.source();
        }
        if let Some((status, id)) = portal {
            let _ = writeln!(
                text,
                "  Portal refused: http {status}, error id {}",
                id.unwrap_or("(none sent)")
            );
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(text, "  hint: {hint}");
        }
        if self.code == EXIT_RETRYABLE {
            let _ = writeln!(
                text,
                "  this may pass: run the same command again to resume where it stopped (exit code {EXIT_RETRYABLE})"
            );
        }
        text
    }
}

/// Portal's status and error id, when `error` is Portal's refusal.
fn portal_refusal<'a>(error: &'a (dyn StdError + 'static)) -> Option<(u16, Option<&'a str>)> {
    let portal = error
        .downcast_ref::<portal_api::Error>()
        .or_else(|| error.downcast_ref::<Box<portal_api::Error>>().map(|b| &**b))?;
    let status = portal.body().and(portal.status())?;
    Some((status, portal.error_id()))
}

/// `error: cause: cause …` on one line (for logs and result lines): [`storage::Report`].
pub(crate) fn one_line(error: &(dyn StdError + 'static)) -> String {
    storage::Report(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_portal_id_and_retry_advice_are_printed() {
        let portal = portal_api::Error::from_response(
            503,
            br#"{"id":"SERVICE_DOWN","message":"share c2VjcmV0 not taken"}"#,
            None,
        );
        let flow = backup_flow::Error::Portal {
            method: "POST",
            route: portal_api::paths::MPC_BACKUP,
            source: Box::new(portal),
        };
        let text = Failure::flow("backup failed", flow).render();
        assert!(text.starts_with("error: backup failed\n"), "{text}");
        assert!(text.contains("caused by: Portal call `POST /v1/backup` failed"));
        assert!(text.contains("caused by: portal returned http 503, SERVICE_DOWN"));
        assert!(text.contains("Portal refused: http 503, error id SERVICE_DOWN"));
        assert!(text.contains("run the same command again"));
        assert!(
            !text.contains("c2VjcmV0"),
            "Portal's message is never shown"
        );
    }
}
