//! Which accepted connections are served: the allowlist checked at accept time, a cap per peer
//! address and the global cap. A refused connection is closed before a byte is read, and it
//! never holds a slot of either cap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::allow::Allowlist;
use crate::metrics::{ConnectionGauge, WebhookMetrics};

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer is not in the allowlist.
    DisallowedPeer,
    /// The peer already holds its share of connections.
    PeerLimit,
    /// Every connection slot is taken.
    GlobalLimit,
}

/// The admission rules of one server.
#[derive(Debug)]
pub(crate) struct Admission {
    /// `Some` when the allowlist is decided by the TCP peer (forwarded-for not trusted) and
    /// is not "any address".
    allowlist: Option<Allowlist>,
    per_peer: Option<usize>,
    slots: Arc<Semaphore>,
    peers: Mutex<HashMap<IpAddr, usize>>,
    metrics: Option<WebhookMetrics>,
}

/// What an admitted connection holds until it ends: a global slot, a slot of its peer, and
/// its place in the open-connections gauge.
#[derive(Debug)]
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _peer: Option<PeerSlot>,
    _gauge: Option<ConnectionGauge>,
}

#[derive(Debug)]
struct PeerSlot {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self
            .admission
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = peers.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                peers.remove(&self.key);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(
        allowlist: Option<Allowlist>,
        per_peer: Option<usize>,
        max_connections: usize,
        metrics: Option<WebhookMetrics>,
    ) -> Self {
        Self {
            allowlist: allowlist.filter(|list| !list.is_any()),
            per_peer,
            slots: Arc::new(Semaphore::new(max_connections)),
            peers: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Admits a connection from `peer`, or says (and counts) why not. Never waits.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let result = self.try_admit(peer);
        if let (Err(refusal), Some(metrics)) = (&result, &self.metrics) {
            metrics.connection_refused(*refusal);
        }
        result
    }

    fn try_admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let peer = peer.to_canonical();
        if let Some(list) = &self.allowlist
            && !list.allows(peer)
        {
            return Err(Refusal::DisallowedPeer);
        }
        let peer_slot = match self.per_peer {
            None => None,
            Some(max) => {
                let key = peer_key(peer);
                let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
                let count = peers.entry(key).or_insert(0);
                if *count >= max {
                    return Err(Refusal::PeerLimit);
                }
                *count = count.saturating_add(1);
                Some(PeerSlot {
                    admission: Arc::clone(self),
                    key,
                })
            }
        };
        // On failure the peer slot taken above is given back by its drop.
        let slot = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Refusal::GlobalLimit)?;
        Ok(Admitted {
            _slot: slot,
            _peer: peer_slot,
            _gauge: self.metrics.as_ref().map(WebhookMetrics::connection_opened),
        })
    }
}

/// The unit a per-peer cap counts: an IPv4 address, or an IPv6 /64 (one host commonly holds a
/// whole /64, so counting single IPv6 addresses would cap nothing).
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
            u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_and_allowlist() {
        let admission = Arc::new(Admission::new(
            Some(Allowlist::parse(["127.0.0.0/8", "2001:db8::/32"]).unwrap()),
            Some(2),
            3,
            Some(WebhookMetrics::new()),
        ));
        assert_eq!(
            admission.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::DisallowedPeer
        );
        let a1 = admission.admit(ip("127.0.0.2")).unwrap();
        let a2 = admission.admit(ip("::ffff:127.0.0.2")).unwrap();
        assert_eq!(
            admission.admit(ip("127.0.0.2")).unwrap_err(),
            Refusal::PeerLimit
        );
        // Another peer is not throttled by the first one's cap.
        let b1 = admission.admit(ip("127.0.0.3")).unwrap();
        // The global cap (3) is reached; a refused peer slot is given back.
        assert_eq!(
            admission.admit(ip("127.0.0.4")).unwrap_err(),
            Refusal::GlobalLimit
        );
        drop(b1);
        let c1 = admission.admit(ip("127.0.0.4")).unwrap();
        drop((a1, a2));
        assert!(
            admission
                .peers
                .lock()
                .unwrap()
                .get(&ip("127.0.0.2"))
                .is_none()
        );
        let _a3 = admission.admit(ip("127.0.0.2")).unwrap();
        // One IPv6 /64 counts as one peer.
        drop(c1);
        let admission = Arc::new(Admission::new(None, Some(1), 10, None));
        let _v6 = admission.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8::ffff:2")).unwrap_err(),
            Refusal::PeerLimit
        );
        assert!(admission.admit(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn no_per_peer_cap_when_off() {
        let admission = Arc::new(Admission::new(None, None, 100, None));
        let held: Vec<_> = (0..100)
            .map(|_| admission.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(held.len(), 100);
        assert!(admission.peers.lock().unwrap().is_empty());
    }
}
