//! The invariant report: what a correct client of Portal never causes.
//!
//! * [`ViolationKind::StoredWithoutCipherText`]: a backup pair marked
//!   `STORED_CLIENT_BACKUP_SHARE` while Portal held no ciphertext for it (Portal-managed mode).
//! * [`ViolationKind::OutOfOrderStatus`]: a status change against the lifecycle.
//! * [`ViolationKind::CipherTextReplacedAfterCompletion`]: a different ciphertext stored for a
//!   pair already marked stored (what was proven decryptable is no longer what is kept).
//! * [`ViolationKind::WebhookFailed`]: in Self-Managed mode, the webhook did not take or did
//!   not give back a custodian backup share, so a backup or recover failed.
//! * [`Rejection`]s: every request Portal would refuse (bad credentials, bad bodies, foreign
//!   or unknown ids, forged shares, wrong order), counted by route and reason.
//!
//! * [`ViolationKind::MarkedEjectedEarly`]: a client marked ejected (Portal-managed mode) while
//!   a wallet with a completed backup never had its backup shares handed out for eject.
//!
//! Each kind says whose rule it is ([`ViolationKind::rule`]): a rule Portal enforces itself
//! ([`Rule::Portal`]), or an invariant of this tool that Portal permits ([`Rule::Tool`], e.g.
//! "confirmed without a stored ciphertext": Portal accepts the status change). The report lists
//! the two apart, so a reader knows which violations Portal would have stopped.
//!
//! Injected faults are not violations; they are only counted.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::traffic::{Host, HostCounter, Traffic};

/// What kind of invariant a [`Violation`] broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ViolationKind {
    /// A backup pair was marked `STORED_CLIENT_BACKUP_SHARE` with no ciphertext stored
    /// (Portal-managed mode).
    StoredWithoutCipherText,
    /// A share-pair status change against the lifecycle (e.g. back from
    /// `STORED_CLIENT_BACKUP_SHARE` to `STORED_CLIENT_BACKUP_SHARE_KEY`).
    OutOfOrderStatus,
    /// A different ciphertext replaced the one of a pair already marked stored.
    CipherTextReplacedAfterCompletion,
    /// The Self-Managed Backup webhook failed to store or return a custodian share.
    WebhookFailed,
    /// `POST /clients/me/eject` (irreversible) while a wallet's backup shares were never handed
    /// out for eject: the keys cannot have been rebuilt and verified first.
    MarkedEjectedEarly,
}

/// Whose rule a [`ViolationKind`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Rule {
    /// Portal enforces it: Portal refuses the request or fails the operation.
    Portal,
    /// Portal permits it; this tool promises never to do it.
    Tool,
}

impl ViolationKind {
    /// Whose rule this is: Portal's own, or this tool's invariant that Portal permits.
    #[must_use]
    pub fn rule(self) -> Rule {
        match self {
            Self::OutOfOrderStatus | Self::WebhookFailed => Rule::Portal,
            Self::StoredWithoutCipherText
            | Self::CipherTextReplacedAfterCompletion
            | Self::MarkedEjectedEarly => Rule::Tool,
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StoredWithoutCipherText => {
                "backup pair marked stored without a stored ciphertext"
            }
            Self::OutOfOrderStatus => "share pair status changed out of order",
            Self::CipherTextReplacedAfterCompletion => {
                "ciphertext replaced after the pair was marked stored"
            }
            Self::WebhookFailed => "self-managed backup webhook failed",
            Self::MarkedEjectedEarly => {
                "client marked ejected before every wallet's backup shares were fetched for eject"
            }
        })
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Violation {
    /// What was broken.
    pub kind: ViolationKind,
    /// The client concerned.
    pub client_id: String,
    /// The share pair concerned, if one.
    pub pair_id: Option<String>,
    /// Specifics (statuses, the webhook step); never secrets.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: client {}", self.kind, self.client_id)?;
        if let Some(pair) = &self.pair_id {
            write!(f, ", pair {pair}")?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Requests Portal would refuse, of one route, status and reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Rejection {
    /// The HTTP method.
    pub method: String,
    /// The route template (from [`portal_api::paths`]), or the raw path of an unknown route.
    pub route: String,
    /// The status answered.
    pub status: u16,
    /// Portal's error id answered plus a short reason, e.g. `AUTH_FAILED: unknown api key`.
    pub reason: String,
    /// How many requests.
    pub count: u64,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} x {} {} -> {} {}",
            self.count, self.method, self.route, self.status, self.reason
        )
    }
}

/// A snapshot of the invariant report. Tests of the rest of the workspace assert
/// [`is_clean`](Self::is_clean); its `Display` lists everything that is not.
///
/// ```
/// let report = portal_sim::Report::default();
/// assert!(report.is_clean());
/// assert_eq!(report.to_string(), "portal-sim report: clean (0 requests, 0 injected faults)");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Report {
    /// Broken invariants, in the order they happened.
    pub violations: Vec<Violation>,
    /// Refused requests, grouped by method, route, status and reason.
    pub rejections: Vec<Rejection>,
    /// API requests seen (admin routes excluded).
    pub requests: u64,
    /// Faults injected (errors, 429s, dropped connections).
    pub faults_injected: u64,
    /// Requests, busiest second and 429s of each Portal host.
    #[serde(default)]
    pub traffic: Traffic,
}

impl Report {
    /// No violations and no rejected requests.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.rejections.is_empty()
    }

    /// Total number of rejected requests.
    #[must_use]
    pub fn rejected_requests(&self) -> u64 {
        self.rejections
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.count))
    }

    /// The violations of one kind.
    pub fn violations_of(&self, kind: ViolationKind) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.kind == kind)
    }

    /// Rejected requests on `route` (a template) whose reason starts with `reason_prefix`
    /// (e.g. an error id such as `AUTH_FAILED`).
    #[must_use]
    pub fn rejected(&self, route: &str, reason_prefix: &str) -> u64 {
        self.rejections
            .iter()
            .filter(|r| r.route == route && r.reason.starts_with(reason_prefix))
            .fold(0u64, |n, r| n.saturating_add(r.count))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let totals = format!(
            "{} requests, {} injected faults",
            self.requests, self.faults_injected
        );
        if self.is_clean() {
            return write!(f, "portal-sim report: clean ({totals})");
        }
        writeln!(
            f,
            "portal-sim report: NOT clean ({} violations, {} rejected requests; {totals})",
            self.violations.len(),
            self.rejected_requests()
        )?;
        for (rule, heading) in [
            (
                Rule::Portal,
                "violations of Portal's rules (Portal refuses these):",
            ),
            (
                Rule::Tool,
                "violations of this tool's invariants (Portal permits these):",
            ),
        ] {
            let mut of_rule = self.violations.iter().filter(|v| v.kind.rule() == rule);
            if let Some(first) = of_rule.next() {
                writeln!(f, "{heading}")?;
                for v in std::iter::once(first).chain(of_rule) {
                    writeln!(f, "  - {v}")?;
                }
            }
        }
        if !self.rejections.is_empty() {
            writeln!(f, "rejected requests:")?;
            for r in &self.rejections {
                writeln!(f, "  - {r}")?;
            }
        }
        Ok(())
    }
}

/// The live recorder behind [`Report`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    violations: Vec<Violation>,
    rejections: BTreeMap<(String, String, u16, String), u64>,
    requests: u64,
    faults: u64,
    api: HostCounter,
    mpc: HostCounter,
}

impl Recorder {
    pub(crate) fn violation(
        &mut self,
        kind: ViolationKind,
        client_id: &str,
        pair_id: Option<&str>,
        detail: impl Into<String>,
    ) {
        let detail = detail.into();
        tracing::warn!(?kind, client_id, pair_id, detail = %detail, "invariant violated");
        self.violations.push(Violation {
            kind,
            client_id: client_id.to_owned(),
            pair_id: pair_id.map(str::to_owned),
            detail,
        });
    }

    pub(crate) fn rejection(&mut self, method: &str, route: &str, status: u16, reason: &str) {
        let n = self
            .rejections
            .entry((
                method.to_owned(),
                route.to_owned(),
                status,
                reason.to_owned(),
            ))
            .or_insert(0);
        *n = n.saturating_add(1);
    }

    pub(crate) fn request(&mut self) {
        self.requests = self.requests.saturating_add(1);
    }

    /// An API request arriving at `host` at `now`; returns how many arrived at that host
    /// within the last second, this one included.
    pub(crate) fn arrival(&mut self, host: Host, now: std::time::Instant) -> u64 {
        self.request();
        self.host(host).arrive(now)
    }

    /// A 429 answered on `host`.
    pub(crate) fn throttled(&mut self, host: Host) {
        self.host(host).throttled();
    }

    fn host(&mut self, host: Host) -> &mut HostCounter {
        match host {
            Host::Api => &mut self.api,
            Host::Mpc => &mut self.mpc,
        }
    }

    pub(crate) fn fault(&mut self) {
        self.faults = self.faults.saturating_add(1);
    }

    pub(crate) fn snapshot(&self) -> Report {
        Report {
            violations: self.violations.clone(),
            rejections: self
                .rejections
                .iter()
                .map(|((method, route, status, reason), count)| Rejection {
                    method: method.clone(),
                    route: route.clone(),
                    status: *status,
                    reason: reason.clone(),
                    count: *count,
                })
                .collect(),
            requests: self.requests,
            faults_injected: self.faults,
            traffic: Traffic {
                api: self.api.snapshot(),
                mpc: self.mpc.snapshot(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_everything_that_is_not_clean() {
        let mut r = Recorder::default();
        r.request();
        r.request();
        r.fault();
        assert!(r.snapshot().is_clean());
        r.violation(
            ViolationKind::OutOfOrderStatus,
            "cl_1",
            Some("bp_1"),
            "A -> B",
        );
        r.rejection(
            "GET",
            "/api/v3/clients/me",
            401,
            "AUTH_FAILED: unknown api key",
        );
        r.rejection(
            "GET",
            "/api/v3/clients/me",
            401,
            "AUTH_FAILED: unknown api key",
        );
        let report = r.snapshot();
        assert!(!report.is_clean());
        assert_eq!(report.rejected_requests(), 2);
        assert_eq!(report.rejected("/api/v3/clients/me", "AUTH_FAILED"), 2);
        assert_eq!(
            report
                .violations_of(ViolationKind::OutOfOrderStatus)
                .count(),
            1
        );
        let text = report.to_string();
        assert!(
            text.contains("NOT clean (1 violations, 2 rejected requests"),
            "{text}"
        );
        assert!(text.contains("pair bp_1 (A -> B)"), "{text}");
        assert!(
            text.contains(
                "violations of Portal's rules (Portal refuses these):\n  - share pair status"
            ),
            "{text}"
        );
        assert!(!text.contains("Portal permits these"), "{text}");
        r.violation(
            ViolationKind::StoredWithoutCipherText,
            "cl_1",
            Some("bp_2"),
            "",
        );
        let text = r.snapshot().to_string();
        assert!(
            text.contains("violations of this tool's invariants (Portal permits these):\n  - backup pair marked stored without a stored ciphertext"),
            "{text}"
        );
        assert_eq!(ViolationKind::StoredWithoutCipherText.rule(), Rule::Tool);
        assert_eq!(ViolationKind::MarkedEjectedEarly.rule(), Rule::Tool);
        assert_eq!(ViolationKind::OutOfOrderStatus.rule(), Rule::Portal);
        assert!(
            text.contains("2 x GET /api/v3/clients/me -> 401 AUTH_FAILED"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["violations"][0]["kind"], "OUT_OF_ORDER_STATUS");
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
