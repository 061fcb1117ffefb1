//! Outbound TCP for network bots: which addresses, and how the check is made
//! below Python.
//!
//! # Design
//! A network bot stays in the host's network namespace (it needs a route to
//! the internet), so the kernel alone would let it reach loopback, the LAN or
//! the cloud metadata service. Landlock restricts ports, not addresses. So:
//!
//! 1. seccomp: `socket` only for `AF_INET`/`AF_INET6` `SOCK_STREAM` (TCP);
//!    UDP, raw, packet, netlink and unix sockets are refused; `bind`,
//!    `listen`, `accept` are refused; `sendto`/`sendmsg` may not carry
//!    `MSG_FASTOPEN` (which would connect without `connect`).
//! 2. A first, tiny seccomp filter answers every `connect` with
//!    `SECCOMP_RET_USER_NOTIF`. The hook process hands the listener fd to the
//!    outer runner process (the supervisor) before it execs the interpreter.
//! 3. For each notification the supervisor copies the `sockaddr` out of the
//!    hook's memory (`process_vm_readv`), checks it with [`check`], and if it
//!    passes, takes a duplicate of the hook's socket (`pidfd_getfd`) and calls
//!    `connect` on it *itself*, with its own checked copy of the address. The
//!    hook's `connect` returns what the supervisor's returned. Because the
//!    supervisor never lets the kernel re-read the hook's memory
//!    (no `SECCOMP_USER_NOTIF_FLAG_CONTINUE`), a second thread rewriting the
//!    address after the check changes nothing: there is no TOCTOU window.
//!    Sharing the socket (rather than injecting a fresh one) keeps the hook's
//!    socket options and its non-blocking mode, so `EINPROGRESS` and timeouts
//!    behave as Python expects.
//!    TCP Fast Open cannot side-step this: `MSG_FASTOPEN` is refused by
//!    seccomp, and `TCP_FASTOPEN_CONNECT` only defers the SYN of a `connect`
//!    that went through the supervisor (the kernel then uses that checked
//!    address, never a later `sendmsg` name).
//! 4. Refused destinations get `ENETUNREACH` (distinct from Landlock's
//!    `EACCES`, so tests can tell which layer answered).
//!
//! DNS: the `resolv.conf` bound into the sandbox lists the host's name servers
//! with `options use-vc`, so glibc resolves over TCP port 53, which [`check`]
//! allows towards exactly those servers.
//!
//! Bots without network get a fresh, empty network namespace and no `socket`
//! at all; this module is not involved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address range, `10.0.0.0/8` or `fc00::/7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: [u8; 4], prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    const fn v6(s: [u16; 8], prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
            )),
            prefix,
        }
    }

    /// Whether `ip` lies in this range (v4 never matches a v6 range).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
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

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad CIDR {s:?}");
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

/// Ranges no bot may reach unless the operator lists them in `allow_cidrs`.
pub const REFUSED: &[Cidr] = &[
    Cidr::v4([0, 0, 0, 0], 8),                       // "this network"
    Cidr::v4([10, 0, 0, 0], 8),                      // RFC 1918
    Cidr::v4([100, 64, 0, 0], 10),                   // CGNAT (RFC 6598)
    Cidr::v4([127, 0, 0, 0], 8),                     // loopback
    Cidr::v4([169, 254, 0, 0], 16),                  // link-local, incl. 169.254.169.254
    Cidr::v4([172, 16, 0, 0], 12),                   // RFC 1918
    Cidr::v4([192, 0, 0, 0], 24),                    // IETF protocol assignments
    Cidr::v4([192, 0, 2, 0], 24),                    // TEST-NET-1
    Cidr::v4([192, 168, 0, 0], 16),                  // RFC 1918
    Cidr::v4([198, 18, 0, 0], 15),                   // benchmarking
    Cidr::v4([198, 51, 100, 0], 24),                 // TEST-NET-2
    Cidr::v4([203, 0, 113, 0], 24),                  // TEST-NET-3
    Cidr::v4([224, 0, 0, 0], 4),                     // multicast
    Cidr::v4([240, 0, 0, 0], 4),                     // reserved, broadcast
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),          // unspecified, loopback, v4-compatible
    Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),  // NAT64: could reach private v4
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),     // Teredo
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),     // 6to4: embeds any v4
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // ULA
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
];

/// What the supervisor knows when it checks a `connect`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectPolicy {
    /// Operator exceptions to [`REFUSED`] (`network.allow_cidrs`).
    pub allow: Vec<Cidr>,
    /// Further refused ranges (`network.deny_cidrs`: the daemon's addresses).
    pub deny: Vec<Cidr>,
    /// The host's name servers, reachable on TCP port 53 only.
    pub nameservers: Vec<IpAddr>,
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not port 80 or 443 (or 53 to a name server).
    Port(u16),
    /// In a refused range.
    Address(IpAddr),
    /// Listed in `deny_cidrs`.
    Denied(IpAddr),
}

/// `::ffff:a.b.c.d` is `a.b.c.d` to the kernel: check it as v4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Decides one TCP destination: `deny_cidrs` first, then the name servers'
/// port 53, then ports 80/443 and `allow_cidrs` over the refused ranges.
pub fn check(dest: SocketAddr, policy: &ConnectPolicy) -> Result<(), Refusal> {
    let ip = canonical(dest.ip());
    if policy.deny.iter().any(|c| c.contains(ip)) {
        return Err(Refusal::Denied(ip));
    }
    let port = dest.port();
    if port == crate::policy::DNS_PORT && policy.nameservers.iter().any(|n| canonical(*n) == ip) {
        return Ok(());
    }
    if !crate::policy::WEB_PORTS.contains(&port) {
        return Err(Refusal::Port(port));
    }
    if policy.allow.iter().any(|c| c.contains(ip)) {
        return Ok(());
    }
    if REFUSED.iter().any(|c| c.contains(ip)) {
        return Err(Refusal::Address(ip));
    }
    Ok(())
}

/// Parses the raw `sockaddr` bytes a hook passed to `connect`. Only complete
/// `sockaddr_in`/`sockaddr_in6` are accepted.
pub fn parse_sockaddr(raw: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]);
    let port = u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]);
    if i32::from(family) == libc::AF_INET && raw.len() >= 16 {
        let a: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
    } else if i32::from(family) == libc::AF_INET6 && raw.len() >= 28 {
        let a: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
        Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_loopback_private_link_local_cgnat_and_ula() {
        let p = ConnectPolicy::default();
        for dest in [
            "127.0.0.1:80",
            "127.8.9.10:443",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "172.31.255.255:443",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "100.127.255.255:443",
            "0.0.0.0:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[::]:80",
            "[fd00::1]:443",
            "[fc00::1]:443",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[::ffff:10.0.0.1]:443",
            "[::127.0.0.1]:80",
            "[64:ff9b::a00:1]:80",
            "[2002:a00:1::]:80",
        ] {
            assert!(
                matches!(check(sa(dest), &p), Err(Refusal::Address(_))),
                "{dest} was not refused"
            );
        }
    }

    #[test]
    fn allows_public_addresses_on_web_ports_only() {
        let p = ConnectPolicy::default();
        assert_eq!(check(sa("93.184.216.34:443"), &p), Ok(()));
        assert_eq!(check(sa("1.1.1.1:80"), &p), Ok(()));
        assert_eq!(check(sa("[2606:4700::1111]:443"), &p), Ok(()));
        assert_eq!(check(sa("100.128.0.1:80"), &p), Ok(()), "just past CGNAT");
        assert_eq!(
            check(sa("172.32.0.1:80"), &p),
            Ok(()),
            "just past 172.16/12"
        );
        assert_eq!(check(sa("1.1.1.1:22"), &p), Err(Refusal::Port(22)));
        assert_eq!(check(sa("1.1.1.1:53"), &p), Err(Refusal::Port(53)));
    }

    #[test]
    fn allow_cidrs_open_a_private_test_host_but_deny_cidrs_win() {
        let p = ConnectPolicy {
            allow: vec!["10.77.0.0/24".parse().unwrap()],
            deny: vec![
                "203.0.113.7".parse().unwrap(),
                "10.77.0.9/32".parse().unwrap(),
            ],
            nameservers: vec![],
        };
        assert_eq!(check(sa("10.77.0.2:80"), &p), Ok(()));
        assert_eq!(check(sa("[::ffff:10.77.0.2]:80"), &p), Ok(()));
        assert!(check(sa("10.77.1.2:80"), &p).is_err());
        assert!(matches!(
            check(sa("10.77.0.9:80"), &p),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(check(sa("10.77.0.2:8080"), &p), Err(Refusal::Port(8080)));
    }

    #[test]
    fn name_servers_only_on_port_53() {
        let p = ConnectPolicy {
            nameservers: vec!["127.0.0.53".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(check(sa("127.0.0.53:53"), &p), Ok(()));
        assert!(check(sa("127.0.0.53:80"), &p).is_err());
        assert!(check(sa("127.0.0.1:53"), &p).is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fc00::/129".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains(sa("8.8.8.8:1").ip()));
        assert!(!c.contains(sa("[::1]:1").ip()));
    }

    #[test]
    fn sockaddr_parsing_needs_the_full_structure() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&80u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[169, 254, 169, 254]);
        assert_eq!(parse_sockaddr(&v4), Some(sa("169.254.169.254:80")));
        assert_eq!(parse_sockaddr(&v4[..8]), None);
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(parse_sockaddr(&v6), Some(sa("[::1]:443")));
        let mut unix = vec![0u8; 110];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse_sockaddr(&unix), None);
    }
}
