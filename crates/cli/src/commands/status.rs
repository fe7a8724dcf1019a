//! `status`: every client of the custodian, Portal's client listing beside the stores. One
//! JSON line per client as it finishes and a summary line; a table on a terminal; an HTML
//! report on request. Only the clients a report names are kept, never every result.

mod html;
mod table;

use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;
use std::sync::Arc;

use backup_flow::fleet::{
    ClientSessions, ClientStatus, StatusOptions, StatusSummary, UnusableLine, Verdict,
};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::args::StatusArgs;
use crate::failure::{EXIT_ATTENTION, EXIT_USAGE, Failure};
use crate::progress;

use super::Settings;
use super::lines::{open_input, open_output};

/// How many clients the terminal table names (the JSON lines name every one).
const TABLE_ROWS: usize = 50;
/// How many clients the HTML report names.
const HTML_ROWS: usize = 10_000;

/// The last JSON line: the flow's summary, and what the CLI adds to it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryLine<'a> {
    #[serde(flatten)]
    summary: &'a StatusSummary,
    #[serde(skip_serializing_if = "<[UnusableLine]>::is_empty")]
    unusable_credential_lines: &'a [UnusableLine],
    /// Set when the listing stopped before its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
    exit_code: u8,
}

pub(super) async fn status(settings: &Settings, args: StatusArgs) -> Result<ExitCode, Failure> {
    let key = settings.custodian_api_key.as_ref().ok_or_else(|| {
        Failure::new("no Custodian API Key given")
            .hint("set PORTAL_CUSTODIAN_API_KEY (or pass --custodian-api-key)")
            .with_code(EXIT_USAGE)
    })?;
    let portal = settings.transport(args.rate_limit)?;
    let custodian = portal
        .custodian(key)
        .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))?;
    let (uri, stores) = settings.store().await?;
    if args.credentials.is_some() && !matches!(uri, crate::store::StoreUri::Portal) {
        return Err(Failure::new(
            "--credentials is for the ciphertexts Portal keeps (--store portal); status reads a store of your own directly",
        )
        .with_code(EXIT_USAGE));
    }
    let keyring = crate::kms::keyring(&settings.kms, "--kms").await?;
    let mut flow = settings.flow_with(keyring, stores)?;
    if let Some(uri) = &args.webhook_store {
        let store = crate::store::open_own(
            &crate::store::parse(uri)?,
            "--webhook-store (Portal keeps no custodian shares in Self-Managed mode)",
        )
        .await?;
        flow = flow.with_custodian_store(store);
    }
    let concurrency = usize::from(args.concurrency);
    let (sessions, unusable) = match &args.credentials {
        None => (ClientSessions::new(), Vec::new()),
        Some(path) => ClientSessions::from_lines(&portal, open_input(path)?, concurrency)
            .await
            .map_err(|e| {
                Failure::caused_by(format!("cannot read the credentials {}", path.display()), e)
            })?,
    };
    for line in &unusable {
        eprintln!(
            "warning: credentials line {} gives no session: {}",
            line.line, line.reason
        );
    }
    let mut run = flow.custodian(custodian).status(
        StatusOptions::new()
            .deep(args.deep)
            .with_concurrency(concurrency)
            .with_take(args.page_size)
            .with_sessions(Arc::new(sessions)),
    );

    // JSON lines to --output, else to stdout unless it is a terminal (which gets the table).
    let stdout_terminal = std::io::stdout().is_terminal();
    let mut lines = match (&args.output, stdout_terminal) {
        (Some(path), _) => Some(open_output(Some(path))?),
        (None, false) => Some(open_output(None)?),
        (None, true) => None,
    };
    let table_to = if args.output.is_none() && stdout_terminal {
        Some(table::To::Stdout)
    } else if std::io::stderr().is_terminal() {
        Some(table::To::Stderr)
    } else {
        None
    };
    let keep = match (&args.html, &table_to) {
        (Some(_), _) => HTML_ROWS,
        (None, Some(_)) => TABLE_ROWS,
        (None, None) => 0,
    };
    let mut named = Named::new(keep);
    let bar = progress::Bar::new(None);
    let mut summary = run.summary();
    let mut stopped = None;
    while let Some(next) = run.next().await {
        if let Some(total) = run.total_clients() {
            bar.set_total(total);
        }
        match next {
            Ok(client) => {
                summary.add(&client);
                if let Some(out) = lines.as_mut() {
                    write_line(out, &client)?;
                }
                named.offer(client);
                bar.finished(0);
                if summary.needing_attention() > 0 {
                    bar.note(format!("({} need attention)", summary.needing_attention()));
                }
            }
            Err(e) => {
                stopped = Some(Failure::flow("the client listing stopped", e));
                break;
            }
        }
    }
    bar.done();
    summary.finish(run.requests());
    let code = match &stopped {
        Some(failure) => failure.code(),
        None if summary.needing_attention() > 0 => EXIT_ATTENTION,
        None => 0,
    };
    let end = SummaryLine {
        summary: &summary,
        unusable_credential_lines: &unusable,
        stopped: stopped.as_ref().map(Failure::message),
        exit_code: code,
    };
    if let Some(out) = lines.as_mut() {
        write_line(out, &end)?;
    }
    let rows = named.into_sorted();
    if let Some(to) = table_to {
        table::print(to, &rows, named_more(&summary, rows.len()), &summary)?;
    }
    if let Some(path) = &args.html {
        std::fs::write(
            path,
            html::report(&summary, &rows, &unusable, end.stopped.as_deref()),
        )
        .map_err(|e| {
            Failure::caused_by(format!("cannot write the report {}", path.display()), e)
        })?;
    }
    if let Some(failure) = stopped {
        return Err(failure);
    }
    if code == EXIT_ATTENTION {
        return Err(Failure::new(format!(
            "{} of {} clients need attention; their JSON lines say why",
            summary.needing_attention(),
            summary.clients
        ))
        .with_code(EXIT_ATTENTION));
    }
    Ok(ExitCode::SUCCESS)
}

/// Clients not ok that a report cannot name (beyond its rows).
fn named_more(summary: &StatusSummary, named: usize) -> u64 {
    let not_ok = summary
        .clients
        .saturating_sub(summary.verdicts.get(&Verdict::Ok).copied().unwrap_or(0));
    not_ok.saturating_sub(u64::try_from(named).unwrap_or(u64::MAX))
}

/// One compact JSON line, flushed so that a reader sees it at once.
fn write_line(out: &mut Box<dyn Write + Send>, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| Failure::caused_by("cannot write the result lines", e))
}

/// The clients a report names: those not ok, the ones that need attention first, at most
/// `cap` of them (a client that needs attention displaces one that does not).
struct Named {
    cap: usize,
    rows: Vec<ClientStatus>,
}

impl Named {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            rows: Vec::new(),
        }
    }

    fn offer(&mut self, client: ClientStatus) {
        if client.verdict == Verdict::Ok || self.cap == 0 {
            return;
        }
        if self.rows.len() < self.cap {
            self.rows.push(client);
            return;
        }
        if let Some(lesser) = self.rows.iter().position(|r| r.verdict < client.verdict)
            && let Some(slot) = self.rows.get_mut(lesser)
        {
            *slot = client;
        }
    }

    fn into_sorted(self) -> Vec<ClientStatus> {
        let mut rows = self.rows;
        rows.sort_by(|a, b| {
            b.verdict
                .cmp(&a.verdict)
                .then_with(|| a.client_id.cmp(&b.client_id))
        });
        rows
    }
}
