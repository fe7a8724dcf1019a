//! The human table of `status`: the clients not ok (those that need attention first), then
//! the counts, the Portal requests and the 10,000-client projection.

use std::fmt::Write as _;
use std::io::Write as _;

use backup_flow::fleet::{ClientStatus, StatusSummary};

use crate::failure::Failure;

/// Where the table goes.
pub(super) enum To {
    Stdout,
    Stderr,
}

/// Prints the table; `more` clients not ok are not named.
pub(super) fn print(
    to: To,
    rows: &[ClientStatus],
    more: u64,
    summary: &StatusSummary,
) -> Result<(), Failure> {
    let text = render(rows, more, summary);
    let written = match to {
        To::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        To::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
    written.map_err(|e| Failure::caused_by("cannot print the table", e))
}

/// The table as text.
pub(super) fn render(rows: &[ClientStatus], more: u64, summary: &StatusSummary) -> String {
    let mut text = String::new();
    if !rows.is_empty() {
        let width = rows
            .iter()
            .map(|r| r.client_id.chars().count())
            .max()
            .unwrap_or(0)
            .max("CLIENT".len());
        let _ = writeln!(text, "{:<width$}  {:<9}  REASONS", "CLIENT", "VERDICT");
        for row in rows {
            let reasons: Vec<&str> = row.reasons.iter().map(|r| r.as_str()).collect();
            let _ = writeln!(
                text,
                "{:<width$}  {:<9}  {}",
                printable(&row.client_id),
                row.verdict.as_str(),
                reasons.join(", ")
            );
        }
        if more > 0 {
            let _ = writeln!(text, "… and {more} more (see the JSON lines)");
        }
        text.push('\n');
    }
    let verdicts: Vec<String> = summary
        .verdicts
        .iter()
        .map(|(v, n)| format!("{n} {}", v.as_str()))
        .collect();
    let _ = writeln!(
        text,
        "{} clients{}{}",
        summary.clients,
        if verdicts.is_empty() { "" } else { ": " },
        verdicts.join(", ")
    );
    if !summary.reasons.is_empty() {
        let reasons: Vec<String> = summary
            .reasons
            .iter()
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect();
        let _ = writeln!(text, "reasons: {}", reasons.join(", "));
    }
    let requests = &summary.requests;
    let _ = writeln!(
        text,
        "Portal requests: {} ({} listing pages, {} credential lookups, {} ciphertext reads), {} per client",
        requests.total(),
        requests.listing_pages,
        requests.credential_lookups,
        requests.ciphertext_reads,
        summary.requests_per_client
    );
    let projection = &summary.projection;
    let _ = writeln!(
        text,
        "{} clients would take {} requests: {} at {}",
        projection.clients,
        projection.requests,
        duration(projection.seconds),
        projection.binding_limit
    );
    text
}

/// `1h 02m 03s`.
pub(super) fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A client id as a terminal may show it: control characters (an escape sequence in a hostile
/// id) replaced.
fn printable(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_clock() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(6030), "1h 40m 30s");
        assert_eq!(duration(61), "1m 01s");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\u{fffd}[2Jb");
    }
}
