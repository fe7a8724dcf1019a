//! Fleet operations: what every client of a custodian needs, seen from Portal and the store
//! together.
//!
//! [`assess`] sets one client's record at Portal (`/clients/me`, or the custodian's client
//! listing) beside what the store holds for it: the newest completed backup pair of each
//! wallet and whether its ciphertext is stored, the pairs left incomplete, and the stored
//! ciphertexts that belong to no completed pair (orphans), with whether each is known to be
//! older than the newest completed pair (the only ones safe to delete).

mod assess;
mod reconcile;
mod reconcile_run;
mod status;

pub use assess::{
    ClientAssessment, CurveAssessment, Orphan, PairSeen, assess, custodian_share_held,
};
pub use reconcile::{ClientReconcile, Done, Open, OrphanPruning};
pub use reconcile_run::{ReconcileLine, ReconcileOptions, ReconcileReport, ReconcileStatus};
pub use status::{
    CiphertextsAt, ClientSessions, ClientStatus, CurveStatus, DEFAULT_STATUS_CONCURRENCY,
    PROJECTED_CLIENTS, PortalRequests, Projection, Reason, StatusOptions, StatusRun, StatusSummary,
    UnusableLine, Verdict,
};
