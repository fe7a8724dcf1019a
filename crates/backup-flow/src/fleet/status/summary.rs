//! The end of a `status` run: counts per verdict and reason, the Portal requests the run
//! made, and what a 10,000-client run would take under Portal's published rate limits.

use std::collections::BTreeMap;

use portal_api::RateLimit;
use serde::Serialize;

use super::report::{ClientStatus, Reason, Verdict};

/// The fleet size [`StatusSummary::projection`] is made for.
pub const PROJECTED_CLIENTS: u64 = 10_000;

/// The Portal requests a `status` run made, by kind. Transport retries come on top (none
/// when Portal answers every request the first time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PortalRequests {
    /// Pages of `GET /api/v3/custodians/me/clients` (the Custodian API).
    pub listing_pages: u64,
    /// `GET /api/v3/clients/me`, one per credential line, to find whose it is (the Client
    /// API).
    pub credential_lookups: u64,
    /// `GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text`, one per curve of a
    /// client whose ciphertexts Portal keeps and whose credential was given (the Client API).
    pub ciphertext_reads: u64,
}

impl PortalRequests {
    /// All of them.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.listing_pages
            .saturating_add(self.credential_lookups)
            .saturating_add(self.ciphertext_reads)
    }
}

/// How long a run over [`PROJECTED_CLIENTS`] clients would take at the requests per client
/// measured, under Portal's published rate limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Projection {
    /// The fleet size projected.
    pub clients: u64,
    /// The requests such a run makes: the listing pages it needs (`clients ÷ take`, rounded
    /// up) and the per-client requests measured, scaled.
    pub requests: u64,
    /// The limit that binds: the only Portal host `status` calls is `api.portalhq.io`.
    pub binding_limit: &'static str,
    /// That limit, in requests a minute.
    pub requests_per_minute: u32,
    /// The projected run time, in seconds (rounded up). Portal publishes one 200/minute limit
    /// for the Client API's and one for the Custodian API's routes; `portal-api` spends both
    /// from one bucket, so this is the sum of the two (if Portal counts them apart, a run
    /// could be up to that much faster).
    pub seconds: u64,
}

/// The summary of a `status` run: the last JSON line of the `status` command.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StatusSummary {
    /// Always `true`: tells this line from the per-client ones.
    pub summary: bool,
    /// Clients reported.
    pub clients: u64,
    /// Clients per verdict.
    pub verdicts: BTreeMap<Verdict, u64>,
    /// Clients per reason (a client counts once under each of its reasons).
    pub reasons: BTreeMap<Reason, u64>,
    /// Whether the restore drill ran.
    pub deep: bool,
    /// The listing page size used.
    pub take: u32,
    /// The Portal requests made.
    pub requests: PortalRequests,
    /// Requests per client, the listing pages amortised (two decimals).
    pub requests_per_client: f64,
    /// The 10,000-client projection.
    pub projection: Projection,
}

impl StatusSummary {
    /// An empty summary of a run with page size `take`.
    #[must_use]
    pub fn new(deep: bool, take: u32) -> Self {
        Self {
            summary: true,
            clients: 0,
            verdicts: BTreeMap::new(),
            reasons: BTreeMap::new(),
            deep,
            take,
            requests: PortalRequests::default(),
            requests_per_client: 0.0,
            projection: Projection::of(&PortalRequests::default(), 0, take),
        }
    }

    /// Counts one client.
    pub fn add(&mut self, client: &ClientStatus) {
        self.clients = self.clients.saturating_add(1);
        bump(&mut self.verdicts, client.verdict);
        for reason in &client.reasons {
            bump(&mut self.reasons, *reason);
        }
    }

    /// Sets the requests the run made, and the projection from them.
    pub fn finish(&mut self, requests: PortalRequests) {
        self.requests = requests;
        self.requests_per_client = per_client(requests.total(), self.clients);
        self.projection = Projection::of(&requests, self.clients, self.take);
    }

    /// Clients whose verdict is [`Verdict::Attention`].
    #[must_use]
    pub fn needing_attention(&self) -> u64 {
        self.verdicts.get(&Verdict::Attention).copied().unwrap_or(0)
    }
}

impl Projection {
    /// The projection of a run over [`PROJECTED_CLIENTS`] clients with page size `take`, from
    /// `requests` measured over `clients` clients.
    ///
    /// ```
    /// use backup_flow::fleet::{PortalRequests, Projection};
    ///
    /// // 30 clients on one page, each with one credential lookup and two ciphertext reads.
    /// let mut measured = PortalRequests::default();
    /// measured.listing_pages = 1;
    /// measured.credential_lookups = 30;
    /// measured.ciphertext_reads = 60;
    /// let p = Projection::of(&measured, 30, 100);
    /// // 100 pages and 30,000 client requests at 200 a minute.
    /// assert_eq!(p.requests, 30_100);
    /// assert_eq!(p.seconds, 30_100 * 60 / 200);
    /// ```
    #[must_use]
    pub fn of(requests: &PortalRequests, clients: u64, take: u32) -> Self {
        let limit = RateLimit::CLIENT_API_DEFAULT;
        let pages = PROJECTED_CLIENTS.div_ceil(u64::from(take.max(1)));
        let per_client = requests
            .credential_lookups
            .saturating_add(requests.ciphertext_reads);
        let scaled = u128::from(per_client)
            .saturating_mul(u128::from(PROJECTED_CLIENTS))
            .div_ceil(u128::from(clients.max(1)));
        let projected = pages.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
        let per_minute = limit.requests_per_minute();
        let seconds = projected
            .saturating_mul(60)
            .div_ceil(u64::from(per_minute.max(1)));
        Self {
            clients: PROJECTED_CLIENTS,
            requests: projected,
            binding_limit: "api.portalhq.io (Client and Custodian APIs): 200 requests/minute",
            requests_per_minute: per_minute,
            seconds,
        }
    }
}

fn bump<K: Ord>(counts: &mut BTreeMap<K, u64>, key: K) {
    let count = counts.entry(key).or_insert(0);
    *count = count.saturating_add(1);
}

/// `total ÷ clients` to two decimals (0 for no client).
#[allow(
    clippy::cast_precision_loss,
    reason = "request counts stay far below 2^52"
)]
fn per_client(total: u64, clients: u64) -> f64 {
    if clients == 0 {
        return 0.0;
    }
    let ratio = total as f64 / clients as f64;
    (ratio * 100.0).round() / 100.0
}
