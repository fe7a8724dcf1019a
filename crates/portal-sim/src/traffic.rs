//! Request rates as Portal sees them: requests per host, the busiest second of each host (a
//! sliding window over arrival times), 429s answered, and the optional per-host limit
//! ([`SimConfig::with_rate_limit`](crate::SimConfig::with_rate_limit)) that answers 429 once a
//! host has had that many requests within the last second.
//!
//! Memory stays bounded by the rate: only the arrivals of the last second are kept.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The window over which [`HostTraffic::busiest_second`] and rate limits count requests.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Portal's two hosts, told apart by route: `/v1/…` is the Enclave MPC API
/// (`mpc-client.portalhq.io`), everything else the Client and Custodian APIs
/// (`api.portalhq.io`). Each has its own rate limit at Portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Host {
    /// The Client and Custodian APIs (`/api/v3/…`).
    Api,
    /// The Enclave MPC API (`/v1/…`).
    Mpc,
}

impl Host {
    /// The host a route template or path belongs to.
    ///
    /// ```
    /// use portal_sim::Host;
    ///
    /// assert_eq!(Host::of_route("/v1/backup"), Host::Mpc);
    /// assert_eq!(Host::of_route("/api/v3/clients/me"), Host::Api);
    /// ```
    #[must_use]
    pub fn of_route(route: &str) -> Self {
        if route.starts_with("/v1/") {
            Self::Mpc
        } else {
            Self::Api
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Api => "api",
            Self::Mpc => "mpc",
        })
    }
}

/// What one host saw, in a [`Report`](crate::Report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HostTraffic {
    /// API requests that arrived (admin routes excluded).
    pub requests: u64,
    /// The most requests that arrived within any one second (a sliding window: for every
    /// arrival, the arrivals of the second up to and including it).
    pub busiest_second: u64,
    /// Requests answered 429 Too Many Requests, by an injected throttle fault or by the
    /// simulator's own rate limit.
    pub throttled: u64,
}

/// [`HostTraffic`] of both hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Traffic {
    /// The Client and Custodian APIs.
    pub api: HostTraffic,
    /// The Enclave MPC API.
    pub mpc: HostTraffic,
}

impl Traffic {
    /// The traffic of one host.
    #[must_use]
    pub fn host(&self, host: Host) -> &HostTraffic {
        match host {
            Host::Api => &self.api,
            Host::Mpc => &self.mpc,
        }
    }

    /// 429s answered on both hosts.
    #[must_use]
    pub fn throttled(&self) -> u64 {
        self.api.throttled.saturating_add(self.mpc.throttled)
    }
}

/// The live counters of one host.
#[derive(Debug, Default)]
pub(crate) struct HostCounter {
    traffic: HostTraffic,
    /// Arrival times within the last [`WINDOW`], oldest first.
    recent: VecDeque<Instant>,
}

impl HostCounter {
    /// Records an arrival at `now` and returns how many arrived within the window ending at
    /// `now`, this one included.
    pub(crate) fn arrive(&mut self, now: Instant) -> u64 {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let in_window = u64::try_from(self.recent.len()).unwrap_or(u64::MAX);
        self.traffic.requests = self.traffic.requests.saturating_add(1);
        self.traffic.busiest_second = self.traffic.busiest_second.max(in_window);
        in_window
    }

    pub(crate) fn throttled(&mut self) {
        self.traffic.throttled = self.traffic.throttled.saturating_add(1);
    }

    pub(crate) fn snapshot(&self) -> HostTraffic {
        self.traffic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_second_is_a_sliding_window() {
        let mut c = HostCounter::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The second from 100 to 1099 ms holds 6 arrivals, although no fixed second
        // ([0, 1000) or [1000, 2000) ms) holds more than 5.
        for ms in [0, 100, 400] {
            c.arrive(at(ms));
        }
        assert_eq!(c.arrive(at(900)), 4);
        assert_eq!(c.arrive(at(999)), 5);
        // At 1000 ms the arrival at 0 ms has left the window (exactly one second old).
        assert_eq!(c.arrive(at(1000)), 5);
        assert_eq!(c.arrive(at(1099)), 6);
        // After a pause of more than a second the window is empty again.
        assert_eq!(c.arrive(at(5000)), 1);
        c.throttled();
        let t = c.snapshot();
        assert_eq!(
            (t.requests, t.busiest_second, t.throttled),
            (8, 6, 1),
            "{t:?}"
        );
        assert!(c.recent.len() == 1, "old arrivals are dropped");
    }

    #[test]
    fn hosts_by_route() {
        assert_eq!(Host::of_route("/v1/generate"), Host::Mpc);
        assert_eq!(Host::of_route("/v1/recover"), Host::Mpc);
        assert_eq!(Host::of_route("/api/v3/custodians/me/clients"), Host::Api);
        assert_eq!(Host::of_route("/nope"), Host::Api);
        assert_eq!(Host::Mpc.to_string(), "mpc");
    }
}
