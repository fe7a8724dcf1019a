//! Source-address allowlist and the forwarded-for setting.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;

use crate::error::Error;

/// The addresses Portal calls Self-Managed Backup (and alert) webhooks from, as published in
/// Portal's "Self-Managed Backups" and "Alert Webhooks" documentation: `35.203.150.117`,
/// `104.155.171.139`, `35.185.20.23`. The [`Allowlist::portal`] preset (`--allow portal`).
///
/// Portal may change them; the preset is a convenience, not a guarantee. Check Portal's docs
/// when deploying and pass the addresses as CIDRs (`--allow 203.0.113.7/32`) if they differ.
pub const PORTAL_ADDRESSES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(35, 203, 150, 117),
    Ipv4Addr::new(104, 155, 171, 139),
    Ipv4Addr::new(35, 185, 20, 23),
];

/// A block of addresses: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`, or a
/// single address such as `35.203.150.117`).
///
/// ```
/// use custodian_webhook::IpCidr;
/// let net: IpCidr = "10.1.0.0/16".parse()?;
/// assert!(net.contains("10.1.200.3".parse().unwrap()));
/// assert!(!net.contains("10.2.0.1".parse().unwrap()));
/// // IPv4-mapped IPv6 peers (from dual-stack sockets) match IPv4 blocks.
/// assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
/// # Ok::<_, custodian_webhook::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// The block of `prefix` leading bits of `addr`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `prefix` is longer than the address (32 or 128).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, Error> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::InvalidConfig {
                reason: format!("prefix /{prefix} is longer than the address"),
            });
        }
        Ok(Self { addr, prefix })
    }

    /// One address.
    #[must_use]
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Whether `ip` lies in the block.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32u32.saturating_sub(self.prefix.into()));
                let mask = mask.unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128u32.saturating_sub(self.prefix.into()));
                let mask = mask.unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpCidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidConfig {
            reason: format!("{s:?} is not an IP address or CIDR block"),
        };
        match s.split_once('/') {
            None => s.parse().map(Self::host).map_err(|_| invalid()),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
                let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
                Self::new(addr, prefix)
            }
        }
    }
}

/// Which source addresses may call the webhook. Empty means everyone (the secret is still
/// required). The health endpoint is always open.
///
/// Entries are CIDR blocks or the presets `portal` ([`PORTAL_ADDRESSES`]) and `loopback`
/// (`127.0.0.0/8`, `::1`).
///
/// ```
/// use custodian_webhook::Allowlist;
/// let list = Allowlist::parse(["portal", "10.0.0.0/8"])?;
/// assert!(list.allows("35.203.150.117".parse().unwrap()));
/// assert!(list.allows("10.9.8.7".parse().unwrap()));
/// assert!(!list.allows("192.0.2.1".parse().unwrap()));
/// assert!(Allowlist::any().allows("192.0.2.1".parse().unwrap()));
/// # Ok::<_, custodian_webhook::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    blocks: Vec<IpCidr>,
}

impl Allowlist {
    /// Every address (no allowlist).
    #[must_use]
    pub fn any() -> Self {
        Self::default()
    }

    /// Portal's published addresses ([`PORTAL_ADDRESSES`]).
    #[must_use]
    pub fn portal() -> Self {
        Self {
            blocks: PORTAL_ADDRESSES
                .iter()
                .map(|a| IpCidr::host(IpAddr::V4(*a)))
                .collect(),
        }
    }

    /// Loopback addresses (`127.0.0.0/8`, `::1`).
    #[must_use]
    pub fn loopback() -> Self {
        Self {
            blocks: vec![
                IpCidr {
                    addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                    prefix: 8,
                },
                IpCidr::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
        }
    }

    /// A list from presets (`portal`, `loopback`) and CIDR blocks.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an entry that is neither.
    pub fn parse<I, S>(entries: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::any();
        for entry in entries {
            match entry.as_ref().trim() {
                "portal" => list.extend(Self::portal()),
                "loopback" => list.extend(Self::loopback()),
                other => list.blocks.push(other.parse()?),
            }
        }
        Ok(list)
    }

    /// Adds a block.
    #[must_use]
    pub fn with(mut self, block: IpCidr) -> Self {
        self.blocks.push(block);
        self
    }

    /// Adds every block of `other`.
    pub fn extend(&mut self, other: Self) {
        for block in other.blocks {
            if !self.blocks.contains(&block) {
                self.blocks.push(block);
            }
        }
    }

    /// The blocks.
    #[must_use]
    pub fn blocks(&self) -> &[IpCidr] {
        &self.blocks
    }

    /// Whether the list is empty, that is, allows every address.
    #[must_use]
    pub fn is_any(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` may call.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.is_any() || self.blocks.iter().any(|b| b.contains(ip))
    }
}

/// The source address of a request: the TCP peer, or with
/// [`trust_forwarded_for`](crate::WebhookServerBuilder::with_trust_forwarded_for) the
/// rightmost address of the last `X-Forwarded-For` header, which is the one the adjacent
/// proxy appended (addresses further left are chosen by the caller and never trusted).
/// `None` when forwarded-for is trusted but the header is missing or malformed.
pub(crate) fn source_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if !trust_forwarded_for {
        return peer.map(|p| p.to_canonical());
    }
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let rightmost = last.to_str().ok()?.rsplit(',').next()?.trim();
    parse_forwarded_addr(rightmost).map(|ip| ip.to_canonical())
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`, `192.0.2.1:443`.
fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_edges() {
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.1.2.3")));
        assert!(!all.contains(ip("::1")));
        let v6: IpCidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all6: IpCidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db9::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "nope",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<IpCidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn presets() {
        let list = Allowlist::parse(["portal"]).unwrap();
        for a in PORTAL_ADDRESSES {
            assert!(list.allows(IpAddr::V4(a)));
        }
        assert!(!list.allows(ip("35.203.150.118")));
        let lo = Allowlist::parse(["loopback"]).unwrap();
        assert!(lo.allows(ip("127.0.0.1")) && lo.allows(ip("::1")));
        assert!(lo.allows(ip("::ffff:127.0.0.1")));
        assert!(Allowlist::parse(["bogus"]).is_err());
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_of_the_last_header() {
        let peer = Some(ip("10.0.0.1"));
        let mut h = HeaderMap::new();
        assert_eq!(source_address(peer, &h, false), peer);
        assert_eq!(source_address(peer, &h, true), None);
        h.append(
            "x-forwarded-for",
            "1.1.1.1, 35.203.150.117".parse().unwrap(),
        );
        assert_eq!(source_address(peer, &h, false), peer);
        assert_eq!(source_address(peer, &h, true), Some(ip("35.203.150.117")));
        h.append("x-forwarded-for", "[2001:db8::5]:443".parse().unwrap());
        assert_eq!(source_address(peer, &h, true), Some(ip("2001:db8::5")));
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "192.0.2.9:8080".parse().unwrap());
        assert_eq!(source_address(peer, &h, true), Some(ip("192.0.2.9")));
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(source_address(peer, &h, true), None);
    }
}
