//! `verify --store-wide` output: one JSON line per stored share as its client finishes, one
//! per client or share that could not be checked, and a summary line at the end. Only the
//! counts and the keys of bad shares are kept, never the reports.

use std::io::Write as _;
use std::process::ExitCode;

use backup_flow::{Finding, ShareCheck, StoredClientCheck};
use serde::Serialize;

use crate::failure::{EXIT_ATTENTION, EXIT_FAILED, EXIT_RETRYABLE, Failure};

/// How many bad keys the closing error names (every one is in its own JSON line).
const NAMED_IN_ERROR: usize = 20;

/// One output line.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Line<'a> {
    /// A stored share was checked.
    #[serde(rename_all = "camelCase")]
    Share {
        client_id: &'a str,
        #[serde(flatten)]
        check: &'a ShareCheck,
    },
    /// A client could not be listed, or one of its shares could not be checked.
    #[serde(rename_all = "camelCase")]
    Error {
        client_id: &'a str,
        key: &'a str,
        error: String,
        retryable: bool,
    },
    /// The end of the run.
    #[serde(rename_all = "camelCase")]
    Summary {
        clients: usize,
        checked: usize,
        ok: usize,
        not_ok: usize,
        errors: usize,
        concurrency: usize,
    },
}

/// What the run found so far.
#[derive(Default)]
pub(crate) struct Tally {
    checked: usize,
    not_ok: Vec<String>,
    errors: usize,
    retryable_errors: usize,
}

impl Tally {
    /// Prints the lines of one client and counts them.
    pub(crate) fn print_client(&mut self, client: &StoredClientCheck) -> Result<(), Failure> {
        let id = client.client_id.as_str();
        let shares = match &client.shares {
            Ok(shares) => shares,
            Err(e) => return self.print_error(id, id, e),
        };
        for share in shares {
            match &share.result {
                Ok(check) => {
                    self.checked = self.checked.saturating_add(1);
                    if check.finding != Finding::Ok {
                        self.not_ok.push(check.key.clone());
                    }
                    print_line(&Line::Share {
                        client_id: id,
                        check,
                    })?;
                }
                Err(e) => self.print_error(id, &share.key, e)?,
            }
        }
        Ok(())
    }

    fn print_error(
        &mut self,
        client_id: &str,
        key: &str,
        e: &backup_flow::Error,
    ) -> Result<(), Failure> {
        self.errors = self.errors.saturating_add(1);
        let retryable = e.is_retryable();
        if retryable {
            self.retryable_errors = self.retryable_errors.saturating_add(1);
        }
        print_line(&Line::Error {
            client_id,
            key,
            error: crate::failure::one_line(e),
            retryable,
        })
    }

    /// Prints the summary line.
    pub(crate) fn print_summary(&self, clients: usize, concurrency: usize) -> Result<(), Failure> {
        print_line(&Line::Summary {
            clients,
            checked: self.checked,
            ok: self.checked.saturating_sub(self.not_ok.len()),
            not_ok: self.not_ok.len(),
            errors: self.errors,
            concurrency,
        })
    }

    /// The exit: 4 when a share does not open as itself (or there was none to check), else
    /// 3 or 1 when something could not be checked (3 when all of it may pass), else 0.
    pub(crate) fn outcome(&self, clients: usize) -> Result<ExitCode, Failure> {
        if !self.not_ok.is_empty() {
            let more = self.not_ok.len().saturating_sub(NAMED_IN_ERROR);
            let mut named: Vec<&str> = self
                .not_ok
                .iter()
                .take(NAMED_IN_ERROR)
                .map(String::as_str)
                .collect();
            let tail = format!("and {more} more (see the JSON lines)");
            if more > 0 {
                named.push(&tail);
            }
            return Err(Failure::new(format!(
                "verification failed: {} of {} stored shares do not open as the share their name says{}:\n    {}",
                self.not_ok.len(),
                self.checked,
                self.unchecked(),
                named.join("\n    ")
            ))
            .hint("do not recover from these ciphertexts; restore them from a copy, or back the clients up again")
            .with_code(EXIT_ATTENTION));
        }
        if self.errors > 0 {
            let code = if self.errors == self.retryable_errors {
                EXIT_RETRYABLE
            } else {
                EXIT_FAILED
            };
            return Err(Failure::new(format!(
                "verification incomplete: {} clients or shares could not be checked (see the lines with \"kind\":\"error\"); the {} checked open as themselves",
                self.errors, self.checked
            ))
            .with_code(code));
        }
        if self.checked == 0 {
            return Err(Failure::new(
                "verification failed: the store holds no client backup share to check",
            )
            .with_code(EXIT_ATTENTION));
        }
        eprintln!(
            "verified {} stored shares of {clients} clients: every one opens as the share its name says",
            self.checked
        );
        Ok(ExitCode::SUCCESS)
    }

    fn unchecked(&self) -> String {
        if self.errors == 0 {
            String::new()
        } else {
            format!(", and {} could not be checked", self.errors)
        }
    }
}

/// One compact JSON line on stdout, flushed so that a reader sees it at once.
fn print_line(line: &Line<'_>) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, line)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::caused_by("cannot write to stdout", e))
}
