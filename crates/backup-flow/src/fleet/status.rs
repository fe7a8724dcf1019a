//! [`CustodianFlow::status`]: every client of the custodian, walked through Portal's paged
//! client listing, each set beside what the stores hold for it.

mod report;
mod sessions;
mod summary;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use envelope::Opener;
use futures_util::stream::{self, BoxStream, Stream, StreamExt as _, TryStreamExt as _};
use portal_api::client_api::ClientDetails;
use portal_api::custodian_api::{ListClientsQuery, MAX_TAKE};
use portal_api::{Curve, CustodianApi};
use storage::{BackupKey, BackupStore, BackupStoreExt as _};

pub use report::{CiphertextsAt, ClientStatus, CurveStatus, Reason, Verdict};
pub use sessions::{ClientSessions, UnusableLine};
pub use summary::{PROJECTED_CLIENTS, PortalRequests, Projection, StatusSummary};

use super::{CurveAssessment, assess, custodian_share_held};
use crate::error::{Error, Result, cause_chain};
use crate::flow::{CustodianFlow, OnStore};
use crate::verify::Finding;

/// How many clients `status` works on at once unless told otherwise.
pub const DEFAULT_STATUS_CONCURRENCY: usize = 16;

/// How a [`CustodianFlow::status`] run goes.
///
/// ```
/// use backup_flow::fleet::StatusOptions;
///
/// let options = StatusOptions::new().deep(true).with_concurrency(32).with_take(500);
/// assert!(options.deep);
/// assert_eq!((options.concurrency, options.take), (32, 100), "Portal allows pages of 100 at most");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StatusOptions {
    /// Run the restore drill: open each newest completed pair's ciphertext as that share.
    pub deep: bool,
    /// Clients worked on at once (store reads, KMS calls, ciphertext reads); `0` counts as 1.
    pub concurrency: usize,
    /// The listing's page size, 1 to [`MAX_TAKE`] (100, the default).
    pub take: u32,
    /// Sessions of the clients whose ciphertexts Portal keeps.
    pub sessions: Arc<ClientSessions>,
}

impl Default for StatusOptions {
    fn default() -> Self {
        Self {
            deep: false,
            concurrency: DEFAULT_STATUS_CONCURRENCY,
            take: MAX_TAKE,
            sessions: Arc::new(ClientSessions::new()),
        }
    }
}

impl StatusOptions {
    /// Presence only, [`DEFAULT_STATUS_CONCURRENCY`], pages of 100, no client session.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the restore drill (`--deep`).
    #[must_use]
    pub fn deep(mut self, deep: bool) -> Self {
        self.deep = deep;
        self
    }

    /// Works on `concurrency` clients at once.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Asks for pages of `take` clients (clamped to 1..=100).
    #[must_use]
    pub fn with_take(mut self, take: u32) -> Self {
        self.take = take.clamp(1, MAX_TAKE);
        self
    }

    /// Reads Portal-held ciphertexts through these client sessions.
    #[must_use]
    pub fn with_sessions(mut self, sessions: Arc<ClientSessions>) -> Self {
        self.sessions = sessions;
        self
    }
}

/// The running walk of [`CustodianFlow::status`]: a stream of one [`ClientStatus`] per
/// client, in the order they finish, that also counts the Portal requests it makes.
///
/// An `Err` item is a listing page Portal would not give (after the retries `portal-api`
/// allows); the walk cannot go past it and ends there. A client that cannot be checked (a
/// store or KMS failure) is a [`ClientStatus`] with [`Reason::CheckFailed`], and the walk
/// goes on.
#[must_use = "a stream does nothing unless polled"]
pub struct StatusRun {
    inner: BoxStream<'static, Result<ClientStatus>>,
    counters: Arc<Counters>,
    lookups: u64,
    take: u32,
    deep: bool,
}

impl std::fmt::Debug for StatusRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusRun")
            .field("requests", &self.requests())
            .field("take", &self.take)
            .field("deep", &self.deep)
            .finish_non_exhaustive()
    }
}

impl StatusRun {
    /// The Portal requests made so far (the credential lookups included).
    #[must_use]
    pub fn requests(&self) -> PortalRequests {
        PortalRequests {
            listing_pages: self.counters.pages.load(Ordering::Relaxed),
            credential_lookups: self.lookups,
            ciphertext_reads: self.counters.reads.load(Ordering::Relaxed),
        }
    }

    /// The number of clients Portal says the custodian has, once the first page is in.
    #[must_use]
    pub fn total_clients(&self) -> Option<u64> {
        match self.counters.total.load(Ordering::Relaxed) {
            u64::MAX => None,
            total => Some(total),
        }
    }

    /// An empty summary for this run, to [`add`](StatusSummary::add) each client to and
    /// [`finish`](StatusSummary::finish) with [`requests`](Self::requests).
    #[must_use]
    pub fn summary(&self) -> StatusSummary {
        StatusSummary::new(self.deep, self.take)
    }
}

impl Stream for StatusRun {
    type Item = Result<ClientStatus>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

#[derive(Debug)]
struct Counters {
    pages: AtomicU64,
    reads: AtomicU64,
    /// `u64::MAX` until Portal said.
    total: AtomicU64,
}

/// Where the listing stands.
struct Pager {
    custodian: CustodianApi,
    cursor: Option<String>,
    done: bool,
}

impl CustodianFlow {
    /// The status of every client of the custodian: walks Portal's client listing a page at
    /// a time (`GET /api/v3/custodians/me/clients`, `take` clients a page) and reports, per
    /// client and curve, the newest completed backup pair and whether the ciphertext store
    /// holds it (with [`deep`](StatusOptions::deep), whether it opens as that share: the
    /// restore drill of [`ClientFlow::verify`](crate::ClientFlow::verify)); with Self-Managed
    /// Backups, whether the webhook's store ([`Flow::with_custodian_store`](crate::Flow::with_custodian_store))
    /// holds a custodian share for it; pairs left incomplete; orphan ciphertexts; and a
    /// typed [`Verdict`] with its [`Reason`]s. Changes nothing, anywhere.
    ///
    /// With a store of your own, it is listed (one call per client) and read (deep). Without
    /// one (Portal-Managed Backups), the ciphertexts are behind each client's own routes:
    /// they are read through that client's session from
    /// [`sessions`](StatusOptions::sessions), one Portal request per curve, or reported as
    /// [`Reason::HeldByPortalUnchecked`]; orphans cannot be listed there.
    ///
    /// Memory stays flat in the number of clients: one page, and `concurrency` clients in
    /// flight.
    ///
    /// ```no_run
    /// # async fn demo(flow: backup_flow::CustodianFlow) -> backup_flow::Result<()> {
    /// use backup_flow::fleet::StatusOptions;
    /// use futures_util::StreamExt as _;
    ///
    /// let mut run = flow.status(StatusOptions::new().deep(true));
    /// let mut summary = run.summary();
    /// while let Some(client) = run.next().await {
    ///     let client = client?;
    ///     summary.add(&client);
    ///     println!("{} {}", client.client_id, client.verdict.as_str());
    /// }
    /// summary.finish(run.requests());
    /// println!("{} need attention", summary.needing_attention());
    /// # Ok(()) }
    /// ```
    pub fn status(&self, options: StatusOptions) -> StatusRun {
        let take = options.take.clamp(1, MAX_TAKE);
        let counters = Arc::new(Counters {
            pages: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
        });
        let pager = Pager {
            custodian: self.custodian.clone(),
            cursor: None,
            done: false,
        };
        let page_counters = Arc::clone(&counters);
        let pages = stream::try_unfold(pager, move |mut pager| {
            let counters = Arc::clone(&page_counters);
            async move {
                if pager.done {
                    return Ok(None);
                }
                let query = ListClientsQuery {
                    cursor: pager.cursor.clone(),
                    take: Some(take),
                };
                let page = pager
                    .custodian
                    .list_clients(&query)
                    .await
                    .map_err(Error::portal("GET", portal_api::paths::CUSTODIAN_CLIENTS))?;
                counters.pages.fetch_add(1, Ordering::Relaxed);
                if let Some(total) = page.metadata.total {
                    counters.total.store(total, Ordering::Relaxed);
                }
                // The last page has no cursor; an empty page or a cursor that does not move
                // would never end, so they end the walk too.
                match page.metadata.cursor {
                    Some(next)
                        if !page.results.is_empty() && pager.cursor.as_ref() != Some(&next) =>
                    {
                        pager.cursor = Some(next);
                    }
                    _ => pager.done = true,
                }
                Ok(Some((page.results, pager)))
            }
        });
        let this = self.clone();
        let deep = options.deep;
        let sessions = Arc::clone(&options.sessions);
        let client_counters = Arc::clone(&counters);
        let inner = pages
            .map_ok(|results| stream::iter(results.into_iter().map(Ok::<_, Error>)))
            .try_flatten()
            .map(move |client| {
                let this = this.clone();
                let sessions = Arc::clone(&sessions);
                let counters = Arc::clone(&client_counters);
                async move {
                    let client = client?;
                    Ok(this.client_status(client, deep, &sessions, &counters).await)
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .boxed();
        StatusRun {
            inner,
            counters,
            lookups: options.sessions.lookups(),
            take,
            deep: options.deep,
        }
    }

    /// One client: Portal's record beside what the stores hold.
    async fn client_status(
        &self,
        client: ClientDetails,
        deep: bool,
        sessions: &ClientSessions,
        counters: &Counters,
    ) -> ClientStatus {
        let mut errors = Vec::new();
        let mut reads = 0_u64;
        let own = self.flow.stores.own_store();
        let ciphertexts = if own.is_some() {
            CiphertextsAt::OwnStore
        } else {
            CiphertextsAt::ClientSession
        };
        // The store the ciphertexts are read from, and its listing where it can be listed.
        let (store, listed) = match own {
            Some(store) => match store.list(&client.id).await {
                Ok(keys) => (Some(store), Some(keys)),
                Err(e) => {
                    errors.push(cause_chain(&e));
                    (Some(store), None)
                }
            },
            None => (
                sessions
                    .get(&client.id)
                    .map(|session| self.flow.stores.session_store(session)),
                None,
            ),
        };
        let seen = assess(&client, listed.as_deref().unwrap_or_default());
        let self_managed = !client.backup_with_portal_enabled();
        let custodian_keys = match (&self.flow.custodian_store, self_managed) {
            (Some(custodian), true) => match custodian.list(&client.id).await {
                Ok(keys) => Some(keys),
                Err(e) => {
                    errors.push(cause_chain(&e));
                    None
                }
            },
            _ => None,
        };

        let opener = Opener::new(&self.flow.keyring);
        let mut curves = Vec::with_capacity(seen.curves.len());
        for curve in seen.curves {
            let custodian_share = match (&custodian_keys, &curve.newest_completed) {
                (Some(keys), Some(pair)) => Some(custodian_share_held(
                    keys,
                    &client.id,
                    &curve.curve,
                    pair.backup_method.as_deref(),
                )),
                _ => None,
            };
            let (stored, drill) = match (&store, &curve.newest_completed) {
                (Some(store), Some(pair)) => {
                    if listed.is_none() && self.flow.stores.ciphertext_kept_by_portal() {
                        reads = reads.saturating_add(1);
                    }
                    match self
                        .check_pair(
                            store,
                            listed.is_some(),
                            deep,
                            &opener,
                            &client.id,
                            &curve,
                            &pair.id,
                        )
                        .await
                    {
                        Ok(found) => found,
                        Err(e) => {
                            errors.push(cause_chain(&e));
                            (if listed.is_some() { curve.stored } else { None }, None)
                        }
                    }
                }
                _ => (None, None),
            };
            curves.push(CurveStatus {
                stored,
                drill,
                custodian_share,
                curve: curve.curve,
                wallet_id: curve.wallet_id,
                newest_completed: curve.newest_completed,
                incomplete: curve.incomplete,
            });
        }
        counters.reads.fetch_add(reads, Ordering::Relaxed);

        let orphans = listed.is_some().then_some(seen.orphans);
        let mut reasons = BTreeSet::new();
        if curves.is_empty() || curves.iter().any(|c| c.newest_completed.is_none()) {
            reasons.insert(Reason::NotBackedUp);
        }
        let any_completed = curves.iter().any(|c| c.newest_completed.is_some());
        if curves.iter().any(|c| c.stored == Some(false)) {
            reasons.insert(Reason::NotStored);
        }
        if curves
            .iter()
            .any(|c| matches!(c.drill, Some(Finding::WrongIdentity { .. })))
        {
            reasons.insert(Reason::DoesNotOpen);
        }
        if curves.iter().any(|c| c.custodian_share == Some(false)) {
            reasons.insert(Reason::NoCustodianShare);
        }
        if curves.iter().any(|c| !c.incomplete.is_empty()) {
            reasons.insert(Reason::IncompletePairs);
        }
        if orphans.as_ref().is_some_and(|o| !o.is_empty()) {
            reasons.insert(Reason::Orphans);
        }
        if !errors.is_empty() {
            reasons.insert(Reason::CheckFailed);
        }
        if store.is_none() && any_completed {
            reasons.insert(Reason::HeldByPortalUnchecked);
        }
        if self_managed && self.flow.custodian_store.is_none() && any_completed {
            reasons.insert(Reason::CustodianShareUnchecked);
        }
        let reasons: Vec<Reason> = reasons.into_iter().collect();
        ClientStatus {
            verdict: Verdict::of(seen.ejected, &reasons),
            reasons,
            client_id: seen.client_id,
            ejected: seen.ejected,
            ciphertexts,
            custodian_shares_with_portal: !self_managed,
            deep,
            curves,
            orphans,
            portal_requests: reads,
            errors,
        }
    }

    /// Whether the newest completed pair's ciphertext is stored and, deep, what the restore
    /// drill finds. A listed store already answered presence (`listed`); one that cannot be
    /// listed is read.
    #[allow(
        clippy::too_many_arguments,
        reason = "one private step of client_status"
    )]
    async fn check_pair(
        &self,
        store: &Arc<dyn BackupStore>,
        listed: bool,
        deep: bool,
        opener: &Opener<'_>,
        client_id: &str,
        curve: &CurveAssessment,
        pair_id: &str,
    ) -> Result<(Option<bool>, Option<Finding>)> {
        if deep && (!listed || curve.stored == Some(true)) {
            let on = OnStore {
                flow: self.flow.clone(),
                store: Arc::clone(store),
            };
            let check = on
                .check(opener, client_id, &Curve::from_wire(&curve.curve), pair_id)
                .await?;
            let stored = check.finding != Finding::Missing;
            return Ok((Some(stored), Some(check.finding)));
        }
        if listed {
            return Ok((curve.stored, None));
        }
        let key = BackupKey::client_backup(client_id, pair_id, curve.curve.as_str())
            .map_err(|e| Error::Invalid(cause_chain(&e)))?;
        let body = match store.get_opt(&key).await {
            Ok(body) => body,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(Error::store("get", &key)(e)),
        };
        Ok((Some(body.is_some()), None))
    }
}
