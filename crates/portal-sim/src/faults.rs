//! Fault injection, per route: error rate and status, 429 with `Retry-After`, added latency,
//! dropped connections (closed without a response, before or after the request took effect).
//!
//! Rules are set at start ([`SimConfig::faults`](crate::SimConfig::faults), `--fault` on the
//! command line) and changed at run time ([`Simulator::set_faults`](crate::Simulator::set_faults),
//! `PUT /_sim/faults`). Each rule is written as text too:
//!
//! ```text
//! <route>: key=value, key=value, ...
//! ```
//!
//! `<route>` is `*` (every API route), a method (`GET`), a route template as in
//! [`portal_api::paths`] (`/v1/backup`) or both (`PATCH /api/v3/clients/me/backup-share-pairs`).
//! Keys: `error` (rate 0..1), `status` (of injected errors, default 503), `throttle` (rate of
//! 429s), `retry-after` (seconds, default 1), `latency-ms`, `drop` (rate of connections closed
//! before the request is handled), `drop-after` (rate of connections closed after the request
//! took effect: the client sees a failure although the change was made), `times` (stop after
//! injecting this many faults).
//!
//! ```
//! use portal_sim::FaultRule;
//!
//! let rule: FaultRule = "GET *: error=0.2, status=503".parse()?;
//! assert_eq!(rule.error_rate, 0.2);
//! assert_eq!(rule.to_string(), "GET *: error=0.2, status=503");
//! # Ok::<(), portal_sim::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::rng::SimRng;

/// Which requests a [`FaultRule`] applies to: a method, a route template, both, or everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RouteSelector {
    method: Option<String>,
    path: Option<String>,
}

impl RouteSelector {
    /// Every API route (`*`).
    #[must_use]
    pub fn any() -> Self {
        Self::default()
    }

    /// Every route of one method (`GET`).
    #[must_use]
    pub fn method(method: &str) -> Self {
        Self {
            method: Some(method.to_ascii_uppercase()),
            path: None,
        }
    }

    /// One route template from [`portal_api::paths`], any method.
    #[must_use]
    pub fn path(template: &str) -> Self {
        Self {
            method: None,
            path: Some(template.to_owned()),
        }
    }

    /// One method on one route template.
    #[must_use]
    pub fn route(method: &str, template: &str) -> Self {
        Self {
            method: Some(method.to_ascii_uppercase()),
            path: Some(template.to_owned()),
        }
    }

    /// Whether a request with this method on this route template is selected.
    #[must_use]
    pub fn matches(&self, method: &str, template: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| p == template)
    }
}

impl fmt::Display for RouteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.method, &self.path) {
            (None, None) => f.write_str("*"),
            (Some(m), None) => write!(f, "{m} *"),
            (None, Some(p)) => f.write_str(p),
            (Some(m), Some(p)) => write!(f, "{m} {p}"),
        }
    }
}

impl FromStr for RouteSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut words = s.split_whitespace();
        let first = words.next();
        let second = words.next();
        if words.next().is_some() {
            return Err(Error::invalid_fault(
                "a route is `*`, METHOD, /path or METHOD /path",
            ));
        }
        let path_of = |w: &str| -> Result<Option<String>, Error> {
            match w {
                "*" => Ok(None),
                p if p.starts_with('/') => Ok(Some(p.to_owned())),
                _ => Err(Error::invalid_fault(
                    "a route path starts with `/` or is `*`",
                )),
            }
        };
        let method_of = |w: &str| -> Result<Option<String>, Error> {
            if w.bytes().all(|b| b.is_ascii_alphabetic()) && !w.is_empty() {
                Ok(Some(w.to_ascii_uppercase()))
            } else {
                Err(Error::invalid_fault("an http method is letters only"))
            }
        };
        match (first, second) {
            (None, _) => Err(Error::invalid_fault("the route is empty")),
            (Some(w), None) if w == "*" || w.starts_with('/') => Ok(Self {
                method: None,
                path: path_of(w)?,
            }),
            (Some(w), None) => Ok(Self {
                method: method_of(w)?,
                path: None,
            }),
            (Some(m), Some(p)) => Ok(Self {
                method: method_of(m)?,
                path: path_of(p)?,
            }),
        }
    }
}

impl TryFrom<String> for RouteSelector {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Error> {
        value.parse()
    }
}

impl From<RouteSelector> for String {
    fn from(value: RouteSelector) -> Self {
        value.to_string()
    }
}

/// One fault-injection rule for the routes its [`RouteSelector`] picks.
///
/// For each matching request the latency is added first, then at most one fault is drawn, in
/// this order: dropped connection, 429, error status, dropped-after-effect. Rules are consulted
/// in order and the first one that injects a fault decides; latencies of all matching rules add
/// up. Admin routes under `/_sim/` never see faults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct FaultRule {
    /// The routes this rule applies to.
    pub route: RouteSelector,
    /// Share (0..=1) of requests answered with [`error_status`](Self::error_status).
    pub error_rate: f64,
    /// Status of injected errors (400..=599; default 503).
    pub error_status: u16,
    /// Share (0..=1) of requests answered 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// The `Retry-After` of injected 429s, in seconds (default 1).
    pub retry_after_secs: u64,
    /// Latency added to every matching request, in milliseconds.
    pub latency_ms: u64,
    /// Share (0..=1) of connections closed without a response before the request is handled.
    pub drop_rate: f64,
    /// Share (0..=1) of connections closed without a response after the request was handled
    /// (its effect stays).
    pub drop_after_rate: f64,
    /// Inject at most this many faults, then only add latency; `None` = no limit.
    pub times: Option<u64>,
}

impl Default for FaultRule {
    fn default() -> Self {
        Self::new(RouteSelector::any())
    }
}

impl FaultRule {
    /// A rule for `route` that injects nothing yet.
    #[must_use]
    pub fn new(route: RouteSelector) -> Self {
        Self {
            route,
            error_rate: 0.0,
            error_status: 503,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
            times: None,
        }
    }

    /// Answer a share `rate` of requests with `status`.
    #[must_use]
    pub fn with_error(mut self, rate: f64, status: u16) -> Self {
        self.error_rate = rate;
        self.error_status = status;
        self
    }

    /// Answer a share `rate` of requests 429 with `Retry-After: retry_after` (whole seconds).
    #[must_use]
    pub fn with_throttle(mut self, rate: f64, retry_after: Duration) -> Self {
        self.throttle_rate = rate;
        self.retry_after_secs = retry_after.as_secs();
        self
    }

    /// Add `latency` to every matching request.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Close a share `rate` of connections before handling the request.
    #[must_use]
    pub fn with_drop(mut self, rate: f64) -> Self {
        self.drop_rate = rate;
        self
    }

    /// Close a share `rate` of connections after the request took effect.
    #[must_use]
    pub fn with_drop_after(mut self, rate: f64) -> Self {
        self.drop_after_rate = rate;
        self
    }

    /// Stop injecting faults after `n` of them.
    #[must_use]
    pub fn with_times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Checks rates and statuses.
    ///
    /// # Errors
    /// [`Error::InvalidFault`] for a rate outside `0..=1` or an error status outside
    /// `400..=599`.
    pub fn validate(&self) -> Result<(), Error> {
        for rate in [
            self.error_rate,
            self.throttle_rate,
            self.drop_rate,
            self.drop_after_rate,
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::invalid_fault("rates are between 0 and 1"));
            }
        }
        if !(400..=599).contains(&self.error_status) {
            return Err(Error::invalid_fault(
                "the error status is between 400 and 599",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.error_rate > 0.0 {
            parts.push(format!(
                "error={}, status={}",
                self.error_rate, self.error_status
            ));
        }
        if self.throttle_rate > 0.0 {
            parts.push(format!(
                "throttle={}, retry-after={}",
                self.throttle_rate, self.retry_after_secs
            ));
        }
        if self.latency_ms > 0 {
            parts.push(format!("latency-ms={}", self.latency_ms));
        }
        if self.drop_rate > 0.0 {
            parts.push(format!("drop={}", self.drop_rate));
        }
        if self.drop_after_rate > 0.0 {
            parts.push(format!("drop-after={}", self.drop_after_rate));
        }
        if let Some(n) = self.times {
            parts.push(format!("times={n}"));
        }
        write!(f, "{}: {}", self.route, parts.join(", "))
    }
}

impl FromStr for FaultRule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (route, settings) = s
            .split_once(':')
            .ok_or_else(|| Error::invalid_fault("expected `<route>: key=value, ...`"))?;
        let mut rule = Self::new(route.trim().parse()?);
        for item in settings.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::invalid_fault("settings are key=value"))?;
            let value = value.trim();
            let rate = || -> Result<f64, Error> {
                value
                    .parse()
                    .map_err(|_| Error::invalid_fault("a rate is a number between 0 and 1"))
            };
            let int = || -> Result<u64, Error> {
                value
                    .parse()
                    .map_err(|_| Error::invalid_fault("expected a whole number"))
            };
            match key.trim() {
                "error" => rule.error_rate = rate()?,
                "status" => {
                    rule.error_status = u16::try_from(int()?)
                        .map_err(|_| Error::invalid_fault("status out of range"))?;
                }
                "throttle" => rule.throttle_rate = rate()?,
                "retry-after" => rule.retry_after_secs = int()?,
                "latency-ms" => rule.latency_ms = int()?,
                "drop" => rule.drop_rate = rate()?,
                "drop-after" => rule.drop_after_rate = rate()?,
                "times" => rule.times = Some(int()?),
                _ => {
                    return Err(Error::invalid_fault(
                        "unknown key (error, status, throttle, retry-after, latency-ms, drop, drop-after, times)",
                    ));
                }
            }
        }
        rule.validate()?;
        Ok(rule)
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injection {
    /// Handle it normally.
    None,
    /// Answer with this status.
    Error(u16),
    /// Answer 429 with this `Retry-After` (seconds).
    Throttle(u64),
    /// Close the connection without handling the request.
    Drop,
    /// Handle the request, then close the connection without a response.
    DropAfter,
}

/// The live rules with their remaining budgets, and the random source.
#[derive(Debug)]
pub(crate) struct FaultState {
    rules: Vec<(FaultRule, Option<u64>)>,
    rng: SimRng,
}

impl FaultState {
    pub(crate) fn new(rules: Vec<FaultRule>, rng: SimRng) -> Self {
        let mut state = Self {
            rules: Vec::new(),
            rng,
        };
        state.set(rules);
        state
    }

    pub(crate) fn set(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules
            .into_iter()
            .map(|r| {
                let left = r.times;
                (r, left)
            })
            .collect();
    }

    pub(crate) fn push(&mut self, rule: FaultRule) {
        let left = rule.times;
        self.rules.push((rule, left));
    }

    pub(crate) fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|(r, _)| r.clone()).collect()
    }

    /// Decides the latency and the fault for one request.
    pub(crate) fn decide(&mut self, method: &str, template: &str) -> (Duration, Injection) {
        let mut latency = Duration::ZERO;
        let mut outcome = Injection::None;
        for (rule, left) in &mut self.rules {
            if !rule.route.matches(method, template) {
                continue;
            }
            latency = latency.saturating_add(Duration::from_millis(rule.latency_ms));
            if outcome != Injection::None || *left == Some(0) {
                continue;
            }
            let rng = &mut self.rng;
            outcome = if rng.chance(rule.drop_rate) {
                Injection::Drop
            } else if rng.chance(rule.throttle_rate) {
                Injection::Throttle(rule.retry_after_secs)
            } else if rng.chance(rule.error_rate) {
                Injection::Error(rule.error_status)
            } else if rng.chance(rule.drop_after_rate) {
                Injection::DropAfter
            } else {
                Injection::None
            };
            if outcome != Injection::None
                && let Some(n) = left.as_mut()
            {
                *n = n.saturating_sub(1);
            }
        }
        (latency, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_rules() {
        let r: FaultRule = "GET *: error=0.2, status=503".parse().unwrap();
        assert_eq!(r.route, RouteSelector::method("GET"));
        assert_eq!((r.error_rate, r.error_status), (0.2, 503));
        let r: FaultRule = "POST /v1/backup: drop=1, times=2, latency-ms=5"
            .parse()
            .unwrap();
        assert_eq!(r.route, RouteSelector::route("POST", "/v1/backup"));
        assert_eq!(r.times, Some(2));
        assert_eq!(
            r.to_string(),
            "POST /v1/backup: latency-ms=5, drop=1, times=2"
        );
        let r: FaultRule = "*: throttle=0.5, retry-after=0".parse().unwrap();
        assert_eq!(r.route, RouteSelector::any());
        let back: FaultRule = r.to_string().parse().unwrap();
        assert_eq!(back, r);
        let r: FaultRule = "/api/v3/clients/me: drop-after=1".parse().unwrap();
        assert!(r.route.matches("GET", "/api/v3/clients/me"));
        assert!(!r.route.matches("GET", "/v1/backup"));
        for bad in [
            "nothing",
            "GET *: error=2",
            "GET *: status=200, error=1",
            "GET *: bogus=1",
            "G3T *: error=1",
            "GET x: error=1",
            "GET / x: error=1",
        ] {
            assert!(bad.parse::<FaultRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_serialize_with_a_text_route() {
        let r = FaultRule::new(RouteSelector::method("get")).with_error(1.0, 500);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["route"], "GET *");
        let back: FaultRule = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let minimal: FaultRule = serde_json::from_str(r#"{"route":"*","dropRate":1}"#).unwrap();
        assert_eq!(minimal.drop_rate, 1.0);
        assert_eq!(minimal.error_status, 503);
    }

    #[test]
    fn times_limits_injections_and_seeds_repeat() {
        let rule = FaultRule::new(RouteSelector::any())
            .with_error(1.0, 503)
            .with_times(2);
        let mut s = FaultState::new(vec![rule], SimRng::seeded(1));
        assert_eq!(s.decide("GET", "/x").1, Injection::Error(503));
        assert_eq!(s.decide("GET", "/x").1, Injection::Error(503));
        assert_eq!(s.decide("GET", "/x").1, Injection::None);

        let half = || {
            FaultState::new(
                vec![FaultRule::new(RouteSelector::any()).with_error(0.5, 500)],
                SimRng::seeded(42),
            )
        };
        let (mut a, mut b) = (half(), half());
        let seq_a: Vec<_> = (0..64).map(|_| a.decide("GET", "/x").1).collect();
        let seq_b: Vec<_> = (0..64).map(|_| b.decide("GET", "/x").1).collect();
        assert_eq!(seq_a, seq_b);
        assert!(seq_a.contains(&Injection::None) && seq_a.contains(&Injection::Error(500)));
    }

    #[test]
    fn latency_adds_up_and_first_fault_wins() {
        let mut s = FaultState::new(
            vec![
                FaultRule::new(RouteSelector::any()).with_latency(Duration::from_millis(3)),
                FaultRule::new(RouteSelector::method("GET")).with_drop(1.0),
                FaultRule::new(RouteSelector::any())
                    .with_error(1.0, 500)
                    .with_latency(Duration::from_millis(4)),
            ],
            SimRng::seeded(0),
        );
        assert_eq!(
            s.decide("GET", "/x"),
            (Duration::from_millis(7), Injection::Drop)
        );
        assert_eq!(
            s.decide("POST", "/x"),
            (Duration::from_millis(7), Injection::Error(500))
        );
    }
}
