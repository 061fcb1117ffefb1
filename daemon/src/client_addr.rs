//! Which address a request comes from, for per-address limits.
//!
//! The TCP peer is the only address nobody can forge. A reverse proxy in
//! front of the daemon makes every request come from the proxy, and says who
//! its client was by appending to `X-Forwarded-For`; but anyone can send that
//! header, so it is believed only when the peer is a proxy the operator named
//! in `trusted_proxies` (none by default). Behind a chain of trusted proxies
//! the header is read from the right, skipping trusted hops: the first
//! address that is not a trusted proxy is the client. Entries to its left
//! were written by the client itself and prove nothing.
//!
//! Limits are then kept per [`AddrKey`]: the address itself for IPv4, and its
//! /64 for IPv6, because one IPv6 host usually holds a whole /64 and could
//! otherwise step through billions of "addresses".

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// An address range: `ADDR/LEN`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` lies in the range (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<IpRange, String> {
        let bad =
            || format!("{s:?} is not an IP address or range (like 127.0.0.1, ::1 or 10.0.0.0/8)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = unmap(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(IpRange { addr, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client's address: the peer, or what trusted proxies say it was.
///
/// `forwarded` is every `X-Forwarded-For` header value in order. A malformed
/// entry stops the walk at the hop that sent it: that hop is the client as
/// far as anyone can tell.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a str>,
    trusted: &[IpRange],
) -> IpAddr {
    let peer = unmap(peer);
    let trusts = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !trusts(peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            break;
        };
        client = ip;
        if !trusts(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]:port` or
/// `v4:port` (some proxies add the port).
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(unmap(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(unmap(sa.ip()));
    }
    None
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The unit per-address limits count in: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match unmap(ip) {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & (u128::MAX << 64);
                AddrKey(IpAddr::V6(Ipv6Addr::from(net)))
            }
            v4 => AddrKey(v4),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_headers_are_ignored_unless_the_peer_is_a_trusted_proxy() {
        // No trusted proxies (the default): a forged header changes nothing,
        // not even from loopback.
        for peer in ["127.0.0.1", "203.0.113.9", "::1"] {
            assert_eq!(
                client_addr(ip(peer), ["198.51.100.1"], &[]),
                ip(peer),
                "{peer}"
            );
        }
        // A trusted proxy's peer is not.
        let t = ranges(&["127.0.0.1"]);
        assert_eq!(
            client_addr(ip("203.0.113.9"), ["198.51.100.1"], &t),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let t = ranges(&["127.0.0.1", "10.0.0.0/8"]);
        // The client forged two entries; the proxy appended the real one.
        assert_eq!(
            client_addr(ip("127.0.0.1"), ["6.6.6.6, 7.7.7.7, 198.51.100.4"], &t),
            ip("198.51.100.4")
        );
        // Two trusted hops, headers split over several lines.
        assert_eq!(
            client_addr(ip("127.0.0.1"), ["6.6.6.6", "198.51.100.4, 10.1.2.3"], &t),
            ip("198.51.100.4")
        );
        // No header at all: the proxy itself.
        assert_eq!(client_addr(ip("127.0.0.1"), [], &t), ip("127.0.0.1"));
        // A malformed entry stops at the hop that appended it.
        assert_eq!(
            client_addr(ip("127.0.0.1"), ["198.51.100.4, garbage, 10.1.2.3"], &t),
            ip("10.1.2.3")
        );
        // Ports and IPv4-mapped forms are understood.
        assert_eq!(
            client_addr(ip("::ffff:127.0.0.1"), ["[2001:db8::1]:4711"], &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), ["198.51.100.4:555"], &t),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.200.1.1")) && !r.contains(ip("11.0.0.1")));
        let r: IpRange = "::1".parse().unwrap();
        assert!(r.contains(ip("::1")) && !r.contains(ip("::2")));
        let r: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(r.contains(ip("1.2.3.4")) && !r.contains(ip("::1")));
        let r: IpRange = "::ffff:192.0.2.1".parse().unwrap();
        assert!(r.contains(ip("192.0.2.1")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "1.2.3.4/x"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_addresses_count_per_slash_64() {
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2:aaaa::1")),
            AddrKey::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(AddrKey::of(ip("::ffff:192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::9")).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
