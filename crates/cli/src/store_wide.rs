//! `verify --store-wide` output: one JSON line per stored share as its client finishes, one
//! per client or share that could not be checked, and a summary line at the end. Only the
//! counts and the keys of bad shares are kept, never the reports.

use std::process::ExitCode;

use backup_flow::{Finding, StoredClientCheck};
use serde::Serialize;

use crate::failure::{EXIT_ATTENTION, Failure};
use crate::item_lines::{self, At, Errors};

/// How many bad keys the closing error names (every one is in its own JSON line).
const NAMED_IN_ERROR: usize = 20;

/// The end of the run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    kind: &'static str,
    clients: usize,
    checked: usize,
    ok: usize,
    not_ok: usize,
    errors: usize,
    concurrency: usize,
}

/// What the run found so far.
#[derive(Default)]
pub(crate) struct Tally {
    clients: usize,
    checked: usize,
    not_ok: Vec<String>,
    errors: Errors,
}

impl Tally {
    /// Prints the lines of one client and counts them.
    pub(crate) fn print_client(&mut self, client: &StoredClientCheck) -> Result<(), Failure> {
        let id = client.client_id.as_str();
        if !id.is_empty() {
            self.clients = self.clients.saturating_add(1);
        }
        let shares = match &client.shares {
            Ok(shares) => shares,
            Err(e) => return self.errors.print(At::client(id), e),
        };
        for share in shares {
            match &share.result {
                Ok(check) => {
                    self.checked = self.checked.saturating_add(1);
                    if check.finding != Finding::Ok {
                        self.not_ok.push(check.key.clone());
                    }
                    item_lines::item("share", At::client(id), check)?;
                }
                Err(e) => self.errors.print(At::client(id).key(&share.key), e)?,
            }
        }
        Ok(())
    }

    /// Clients and shares that could not be checked so far, and shares that failed, for the
    /// progress bar.
    pub(crate) fn failed(&self) -> u64 {
        u64::try_from(self.not_ok.len().saturating_add(self.errors.count())).unwrap_or(u64::MAX)
    }

    /// Prints the summary line.
    pub(crate) fn print_summary(&self, concurrency: usize) -> Result<(), Failure> {
        item_lines::print(&Summary {
            kind: "summary",
            clients: self.clients,
            checked: self.checked,
            ok: self.checked.saturating_sub(self.not_ok.len()),
            not_ok: self.not_ok.len(),
            errors: self.errors.count(),
            concurrency,
        })
    }

    /// The exit: 4 when a share does not open as itself (or there was none to check), else
    /// 3 or 1 when something could not be checked (3 when all of it may pass), else 0.
    pub(crate) fn outcome(&self) -> Result<ExitCode, Failure> {
        let clients = self.clients;
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
        if self.errors.count() > 0 {
            return Err(Failure::new(format!(
                "verification incomplete: {} clients or shares could not be checked (see the lines with \"kind\":\"error\"); the {} checked open as themselves",
                self.errors.count(), self.checked
            ))
            .with_code(self.errors.code()));
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
        if self.errors.count() == 0 {
            String::new()
        } else {
            format!(", and {} could not be checked", self.errors.count())
        }
    }
}
