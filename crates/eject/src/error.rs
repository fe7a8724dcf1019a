//! Why a combination was refused. No message ever contains share material or key bytes.

use std::fmt;

/// One of the two backup shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The client backup share (the decoded `MpcShare`).
    Client,
    /// The custodian backup share (the flat JSON object).
    Custodian,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Custodian => "custodian",
        })
    }
}

/// A public key the rebuilt key was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Against {
    /// `pubkey` of the client backup share.
    ClientShare,
    /// `x`, `y` of the custodian backup share.
    CustodianShare,
    /// The wallet's `publicKey` in Portal's `/clients/me`.
    PortalWallet,
}

impl fmt::Display for Against {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientShare => "the client share's public key",
            Self::CustodianShare => "the custodian share's public key",
            Self::PortalWallet => "the wallet's public key at Portal",
        })
    }
}

/// Why two shares were not combined into a key. When any of these is returned, no key exists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A share is not in Portal's format; `reason` names the field, never its value.
    #[error("the {side} backup share is malformed: {reason}")]
    Malformed {
        /// Which share.
        side: Side,
        /// What is wrong (field names only).
        reason: String,
    },
    /// A Birkhoff rank other than 0: this needs general Birkhoff interpolation.
    #[error(
        "the {side} share's Birkhoff rank is {rank}; only rank 0 (Lagrange interpolation) is supported"
    )]
    RankNotSupported {
        /// Which party's rank.
        side: Side,
        /// The rank found.
        rank: u64,
    },
    /// The client share's `bks` and the custodian share's `clientBk` / `serverBk` differ: the
    /// two shares were not dealt together.
    #[error(
        "the client share's Birkhoff x of the {party} differs from the custodian share's {field}: the shares were not dealt together"
    )]
    BirkhoffMismatch {
        /// `client` or `server`.
        party: &'static str,
        /// `clientBk` or `serverBk`.
        field: &'static str,
    },
    /// Both parties have the same Birkhoff x: interpolation is impossible.
    #[error("both shares have the same Birkhoff x value; they cannot be interpolated")]
    SameX,
    /// The two shares name different backup share pairs.
    #[error(
        "the client share belongs to backup share pair {client}, the custodian share to {custodian}"
    )]
    PairMismatch {
        /// The client share's `backupSharePairId`.
        client: String,
        /// The custodian share's `backupSharePairId`.
        custodian: String,
    },
    /// The shares belong to another pair than the one being opened.
    #[error(
        "the {side} share belongs to backup share pair {found}, but pair {expected} is being opened"
    )]
    WrongPair {
        /// Which share.
        side: Side,
        /// The pair being opened.
        expected: String,
        /// The pair the share names (empty when it names none).
        found: String,
    },
    /// The two shares name different clients.
    #[error("the client share is for client {client}, the custodian share for client {custodian}")]
    ClientMismatch {
        /// The client share's `clientId`.
        client: String,
        /// The custodian share's `clientId`.
        custodian: String,
    },
    /// The rebuilt key's public point is not the expected public key: a changed share, a share
    /// of another wallet or the wrong curve. Nothing was returned.
    #[error("the rebuilt key does not match {against}; refusing it")]
    PublicKeyMismatch {
        /// What it was compared with.
        against: Against,
    },
    /// The interpolation gave zero, which is no private key.
    #[error("the shares interpolate to zero, which is no private key")]
    ZeroKey,
    /// curve25519-dalek and arkworks disagree on the encoding of one point (a bug, never input).
    #[error("the ed25519 libraries disagree on the public key's encoding")]
    LibrariesDisagree,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn malformed(side: Side, reason: impl Into<String>) -> Error {
    Error::Malformed {
        side,
        reason: reason.into(),
    }
}
