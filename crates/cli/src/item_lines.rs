//! The JSON lines of the store-wide commands (`verify --store-wide`, `rotate`, `migrate`):
//! one line per item as its client finishes, one `"kind":"error"` line per client or item
//! that could not be handled (the run goes on), and a summary line at the end. Each line is
//! written and flushed at once, so a reader (or a killed run's log) has every finished item.

use std::io::Write as _;

use serde::Serialize;

use crate::failure::{EXIT_FAILED, EXIT_RETRYABLE, Failure};

/// One item line: `{"kind": …, "clientId": …, ["line": …,] ["key": …,] …the item's fields}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a, T> {
    kind: &'static str,
    client_id: &'a str,
    /// The credentials line, for a client read from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    /// The store key, unless the item names it itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(flatten)]
    item: &'a T,
}

/// A client or item that could not be handled.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine<'a> {
    kind: &'static str,
    /// `null` when the client is unknown (a listing or credentials line that failed).
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    key: &'a str,
    error: &'a str,
    retryable: bool,
}

/// Where an item line comes from: its client, credentials line and key.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) line: Option<u64>,
    pub(crate) key: Option<&'a str>,
}

impl<'a> At<'a> {
    /// An item of `client_id`.
    pub(crate) fn client(client_id: &'a str) -> Self {
        Self {
            client_id,
            line: None,
            key: None,
        }
    }

    /// The same client's credentials line.
    pub(crate) fn line(self, line: Option<u64>) -> Self {
        Self { line, ..self }
    }

    /// The same client's object `key`.
    pub(crate) fn key(self, key: &'a str) -> Self {
        Self {
            key: Some(key),
            ..self
        }
    }
}

/// Prints an item line of `kind`.
pub(crate) fn item(kind: &'static str, at: At<'_>, item: &impl Serialize) -> Result<(), Failure> {
    print(&Item {
        kind,
        client_id: at.client_id,
        line: at.line,
        key: at.key,
        item,
    })
}

/// The errors of a run: each printed as it comes, counted for the summary and the exit code.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    count: usize,
    retryable: usize,
}

impl Errors {
    /// Prints the error line of the client or item `at` (the client itself when `at` names no
    /// key) and counts it.
    pub(crate) fn print(&mut self, at: At<'_>, e: &backup_flow::Error) -> Result<(), Failure> {
        self.print_reason(at, &crate::failure::one_line(e), e.is_retryable())
    }

    /// [`print`](Self::print) of an error already rendered as `reason`.
    pub(crate) fn print_reason(
        &mut self,
        at: At<'_>,
        reason: &str,
        retryable: bool,
    ) -> Result<(), Failure> {
        self.count = self.count.saturating_add(1);
        if retryable {
            self.retryable = self.retryable.saturating_add(1);
        }
        print(&ErrorLine {
            kind: "error",
            client_id: Some(at.client_id).filter(|id| !id.is_empty()),
            line: at.line,
            key: at.key.unwrap_or(at.client_id),
            error: reason,
            retryable,
        })
    }

    /// How many.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// How many will not pass by themselves.
    pub(crate) fn permanent(&self) -> usize {
        self.count.saturating_sub(self.retryable)
    }

    /// The exit code they make: 3 when every one may pass on a rerun, else 1.
    pub(crate) fn code(&self) -> u8 {
        if self.permanent() == 0 {
            EXIT_RETRYABLE
        } else {
            EXIT_FAILED
        }
    }
}

/// One compact JSON line on stdout, flushed so that a reader sees it at once.
pub(crate) fn print(line: &impl Serialize) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, line)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::caused_by("cannot write to stdout", e))
}
