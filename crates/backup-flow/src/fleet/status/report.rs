//! What `status` says of one client: the typed verdict, its reasons, and what was seen per
//! curve.

use serde::Serialize;

use crate::fleet::{Orphan, PairSeen};
use crate::verify::Finding;

/// One client's status, as [`CustodianFlow::status`](crate::CustodianFlow::status) reports
/// it: one JSON line of the `status` command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientStatus {
    /// The Portal client id.
    pub client_id: String,
    /// The verdict: what the reasons add up to.
    pub verdict: Verdict,
    /// Every reason found, each once, in a fixed order.
    pub reasons: Vec<Reason>,
    /// Whether Portal marked the client ejected.
    pub ejected: bool,
    /// Where the client's backup ciphertexts are kept.
    pub ciphertexts: CiphertextsAt,
    /// Whether Portal keeps the custodian backup shares (Portal-Managed Backups); `false`:
    /// Self-Managed Backups, where the webhook's store keeps them.
    pub custodian_shares_with_portal: bool,
    /// Whether the restore drill ran (`deep`) where the ciphertexts could be read.
    pub deep: bool,
    /// One entry per wallet (curve), in Portal's order.
    pub curves: Vec<CurveStatus>,
    /// Stored client ciphertexts that belong to no completed pair; `None` when the store
    /// cannot be listed (Portal's) or its listing failed.
    pub orphans: Option<Vec<Orphan>>,
    /// Portal requests made for this client beyond the listing (ciphertext reads through its
    /// session).
    pub portal_requests: u64,
    /// What could not be checked and why (store or KMS failures); never a secret.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One wallet (curve) of a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CurveStatus {
    /// The curve, as Portal spells it.
    pub curve: String,
    /// The wallet id.
    pub wallet_id: String,
    /// The newest completed backup pair: what a recovery would use. `None`: not backed up.
    pub newest_completed: Option<PairSeen>,
    /// Whether the ciphertext store holds a client ciphertext for `newest_completed`;
    /// `None` when there is no completed pair or it could not be checked.
    pub stored: Option<bool>,
    /// What the restore drill found for it (`deep` only, and only where it was read).
    pub drill: Option<Finding>,
    /// With Self-Managed Backups, whether the webhook's store holds a custodian backup share
    /// for this curve (and the pair's backup method); `None` with Portal-Managed Backups, or
    /// when no webhook store was given.
    pub custodian_share: Option<bool>,
    /// Pairs Portal lists as not completed, newest first.
    pub incomplete: Vec<PairSeen>,
}

/// Where a client's backup ciphertexts are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CiphertextsAt {
    /// In the store of our own, listed and read directly.
    OwnStore,
    /// Behind the client's own routes (Portal-Managed Backups), read through a session of
    /// the client when its credential was given.
    ClientSession,
}

/// The verdict on one client. Only [`Attention`](Self::Attention) fails a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Verdict {
    /// Every curve has a completed backup, stored (and, deep, opening), nothing left over.
    Ok,
    /// Nothing wrong was found, but something could not be checked
    /// ([`Reason::is_unchecked`]).
    Unchecked,
    /// Portal marked the client ejected: it holds its keys itself, and its backups are no
    /// longer the custodian's to keep. Its other reasons are still listed.
    Ejected,
    /// Something needs attention ([`Reason::needs_attention`]).
    Attention,
}

/// One reason behind a [`Verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// A wallet has no completed backup pair, or the client has no wallet at all.
    NotBackedUp,
    /// The newest completed pair of a wallet has no ciphertext in the store.
    NotStored,
    /// The stored ciphertext of a newest completed pair does not open as that share (`deep`).
    DoesNotOpen,
    /// Self-Managed Backups: the webhook's store holds no custodian share for a wallet's
    /// newest completed pair.
    NoCustodianShare,
    /// Portal lists backup pairs that were started and never completed.
    IncompletePairs,
    /// The store holds ciphertexts that belong to no completed pair.
    Orphans,
    /// Something could not be checked: the store or the KMS failed (see `errors`).
    CheckFailed,
    /// The ciphertexts are behind the client's own routes and no credential of the client
    /// was given: held by Portal, not checked.
    HeldByPortalUnchecked,
    /// Self-Managed Backups, but no webhook store was given: the custodian shares were not
    /// checked.
    CustodianShareUnchecked,
}

impl Reason {
    /// Whether this reason alone puts the client in [`Verdict::Attention`].
    #[must_use]
    pub fn needs_attention(self) -> bool {
        !self.is_unchecked()
    }

    /// Whether this reason only says something was not checked ([`Verdict::Unchecked`]).
    #[must_use]
    pub fn is_unchecked(self) -> bool {
        matches!(
            self,
            Self::HeldByPortalUnchecked | Self::CustodianShareUnchecked
        )
    }

    /// The kebab-case name, as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotBackedUp => "not-backed-up",
            Self::NotStored => "not-stored",
            Self::DoesNotOpen => "does-not-open",
            Self::NoCustodianShare => "no-custodian-share",
            Self::IncompletePairs => "incomplete-pairs",
            Self::Orphans => "orphans",
            Self::CheckFailed => "check-failed",
            Self::HeldByPortalUnchecked => "held-by-portal-unchecked",
            Self::CustodianShareUnchecked => "custodian-share-unchecked",
        }
    }
}

impl Verdict {
    /// What `reasons` add up to for a client (`ejected`: Portal marked it ejected).
    ///
    /// ```
    /// use backup_flow::fleet::{Reason, Verdict};
    ///
    /// assert_eq!(Verdict::of(false, &[]), Verdict::Ok);
    /// assert_eq!(Verdict::of(false, &[Reason::HeldByPortalUnchecked]), Verdict::Unchecked);
    /// assert_eq!(
    ///     Verdict::of(false, &[Reason::NotStored, Reason::HeldByPortalUnchecked]),
    ///     Verdict::Attention
    /// );
    /// assert_eq!(Verdict::of(true, &[Reason::NotStored]), Verdict::Ejected);
    /// ```
    #[must_use]
    pub fn of(ejected: bool, reasons: &[Reason]) -> Self {
        if ejected {
            Self::Ejected
        } else if reasons.iter().any(|r| r.needs_attention()) {
            Self::Attention
        } else if reasons.is_empty() {
            Self::Ok
        } else {
            Self::Unchecked
        }
    }

    /// The kebab-case name, as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unchecked => "unchecked",
            Self::Ejected => "ejected",
            Self::Attention => "attention",
        }
    }
}

impl ClientStatus {
    /// Whether this client needs attention.
    #[must_use]
    pub fn needs_attention(&self) -> bool {
        self.verdict == Verdict::Attention
    }
}
