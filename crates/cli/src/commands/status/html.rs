//! The HTML report of `status`: one self-contained page (inline CSS, no script, no external
//! asset, a Content-Security-Policy that forbids loading any), every text escaped. It holds
//! what the JSON lines hold, which is never a secret: ids, verdicts, counts.

use std::fmt::Write as _;

use backup_flow::Finding;
use backup_flow::fleet::{ClientStatus, CurveStatus, StatusSummary, UnusableLine, Verdict};

use super::table::duration;

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1d2330; background: #fafbfc; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; }
.cards { display: flex; flex-wrap: wrap; gap: .75rem; }
.card { background: #fff; border: 1px solid #d8dde6; border-radius: 6px; padding: .6rem 1rem; min-width: 7rem; }
.card b { display: block; font-size: 1.4rem; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { border: 1px solid #d8dde6; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
code { font: 12px ui-monospace, monospace; word-break: break-all; }
.attention { color: #a4161a; font-weight: 600; }
.unchecked { color: #8a5a00; }
.ejected { color: #555; }
.ok { color: #1b7a35; }
ul { margin: 0; padding-left: 1.1rem; }
";

/// The page.
pub(super) fn report(
    summary: &StatusSummary,
    rows: &[ClientStatus],
    unusable: &[UnusableLine],
    stopped: Option<&str>,
) -> String {
    let mut page = String::with_capacity(4096_usize.saturating_add(rows.len().saturating_mul(512)));
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str("<title>portal-backup status</title>\n<style>");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<h1>Status of every client</h1>\n");
    if let Some(why) = stopped {
        let _ = writeln!(
            page,
            "<p class=\"attention\">The run stopped before the end of Portal's client listing; only the clients before that are counted: <code>{}</code></p>",
            esc(why)
        );
    }

    page.push_str("<div class=\"cards\">\n");
    card(&mut page, "clients", summary.clients, "");
    for (verdict, count) in &summary.verdicts {
        card(&mut page, verdict.as_str(), *count, verdict.as_str());
    }
    page.push_str("</div>\n");

    if !summary.reasons.is_empty() {
        page.push_str("<h2>Reasons</h2>\n<table>\n<tr><th>reason</th><th>clients</th></tr>\n");
        for (reason, count) in &summary.reasons {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{count}</td></tr>",
                esc(reason.as_str())
            );
        }
        page.push_str("</table>\n");
    }

    let requests = &summary.requests;
    let projection = &summary.projection;
    page.push_str("<h2>Portal requests</h2>\n<table>\n");
    let _ = writeln!(
        page,
        "<tr><th>this run</th><td>{} ({} listing pages of {}, {} credential lookups, {} ciphertext reads): {} per client{}</td></tr>",
        requests.total(),
        requests.listing_pages,
        summary.take,
        requests.credential_lookups,
        requests.ciphertext_reads,
        summary.requests_per_client,
        if summary.deep {
            ", with the restore drill"
        } else {
            ", presence only"
        }
    );
    let _ = writeln!(
        page,
        "<tr><th>{} clients</th><td>{} requests: {} at {}</td></tr>",
        projection.clients,
        projection.requests,
        esc(&duration(projection.seconds)),
        esc(projection.binding_limit)
    );
    page.push_str("</table>\n");

    let more = summary
        .clients
        .saturating_sub(summary.verdicts.get(&Verdict::Ok).copied().unwrap_or(0))
        .saturating_sub(u64::try_from(rows.len()).unwrap_or(u64::MAX));
    page.push_str("<h2>Clients not ok (those that need attention first)</h2>\n");
    if rows.is_empty() && stopped.is_none() {
        page.push_str("<p>None: every client is ok.</p>\n");
    } else if rows.is_empty() {
        page.push_str("<p>None among the clients counted.</p>\n");
    } else {
        page.push_str("<table>\n<tr><th>client</th><th>verdict</th><th>reasons</th><th>wallets</th><th>orphans</th><th>errors</th></tr>\n");
        for row in rows {
            client_row(&mut page, row);
        }
        page.push_str("</table>\n");
        if more > 0 {
            let _ = writeln!(page, "<p>… and {more} more: see the JSON lines.</p>");
        }
    }

    if !unusable.is_empty() {
        page.push_str("<h2>Credential lines that gave no session</h2>\n<table>\n<tr><th>line</th><th>why</th></tr>\n");
        for line in unusable {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td></tr>",
                line.line,
                esc(&line.reason)
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn card(page: &mut String, label: &str, count: u64, class: &str) {
    let _ = writeln!(
        page,
        "<div class=\"card\"><b class=\"{}\">{count}</b>{}</div>",
        esc(class),
        esc(label)
    );
}

fn client_row(page: &mut String, row: &ClientStatus) {
    let reasons: Vec<&str> = row.reasons.iter().map(|r| r.as_str()).collect();
    let _ = write!(
        page,
        "<tr><td><code>{}</code></td><td class=\"{}\">{}</td><td>{}</td><td><ul>",
        esc(&row.client_id),
        row.verdict.as_str(),
        row.verdict.as_str(),
        esc(&reasons.join(", "))
    );
    for curve in &row.curves {
        let _ = write!(page, "<li>{}</li>", esc(&describe(curve)));
    }
    if row.curves.is_empty() {
        page.push_str("<li>no wallet</li>");
    }
    page.push_str("</ul></td><td>");
    match &row.orphans {
        Some(orphans) => {
            let _ = write!(page, "{}", orphans.len());
        }
        None => page.push_str("not listable"),
    }
    page.push_str("</td><td>");
    for error in &row.errors {
        let _ = write!(page, "<code>{}</code><br>", esc(error));
    }
    page.push_str("</td></tr>\n");
}

/// One wallet in words.
fn describe(curve: &CurveStatus) -> String {
    let yes_no = |v: Option<bool>, unknown: &str| match v {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => unknown.to_owned(),
    };
    let mut text = format!("{}: ", curve.curve);
    match &curve.newest_completed {
        None => text.push_str("no completed backup"),
        Some(pair) => {
            let _ = write!(
                text,
                "newest completed {}, stored {}",
                pair.id,
                yes_no(curve.stored, "not checked")
            );
            match &curve.drill {
                Some(Finding::Ok) => text.push_str(", opens"),
                Some(Finding::Missing) => text.push_str(", nothing to open"),
                Some(Finding::WrongIdentity { .. }) => text.push_str(", does not open"),
                _ => {}
            }
            if curve.custodian_share.is_some() {
                let _ = write!(
                    text,
                    ", custodian share {}",
                    yes_no(curve.custodian_share, "")
                );
            }
        }
    }
    if !curve.incomplete.is_empty() {
        let _ = write!(text, "; {} incomplete", curve.incomplete.len());
    }
    text
}

/// Text escaped for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc(r#"<img src="http://x" onerror='a()'>&"#),
            "&lt;img src=&quot;http://x&quot; onerror=&#39;a()&#39;&gt;&amp;"
        );
    }
}
