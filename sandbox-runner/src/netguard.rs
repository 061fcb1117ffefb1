//! Outbound TCP for network bots: which addresses, and how the check is made
//! below Python.
//!
//! # Design
//! A network bot stays in the host's network namespace (it needs a route to
//! the internet), so the kernel alone would let it reach loopback, the LAN,
//! the cloud metadata service, or a service listening on one of the host's
//! own addresses. Landlock restricts ports, not addresses. So:
//!
//! 1. seccomp: `socket` only for `AF_INET`/`AF_INET6` `SOCK_STREAM` (TCP);
//!    UDP, raw, packet, netlink and unix sockets are refused; `bind`,
//!    `listen`, `accept` are refused; `sendto` may carry neither a
//!    destination nor `MSG_FASTOPEN` (which would connect without
//!    `connect`); `sendmsg` is refused outright, because its ancillary data
//!    (routing headers, IP options, source and interface choice) is out of
//!    seccomp's sight and ordinary clients never call it.
//! 2. `setsockopt` is limited to an allowlist of (level, option) pairs that
//!    ordinary HTTP clients use (`policy::SETSOCKOPT_ALLOWED`); every option
//!    that steers a connection's route, source or interface (IPv6 routing
//!    and hop-by-hop headers, IP options, `SO_BINDTODEVICE`, `SO_MARK`,
//!    transparent and free binds, `TCP_FASTOPEN_CONNECT`, ...) gets
//!    `ENOPROTOOPT`, which libraries treat as "option not available".
//! 3. The seccomp gate answers every `connect` (and every allowlisted
//!    `setsockopt`) with `SECCOMP_RET_USER_NOTIF`. The hook process hands
//!    the listener to the outer runner process (the supervisor) before it
//!    execs the interpreter.
//! 4. For each `connect`, from whichever thread, the supervisor copies the
//!    `sockaddr` out of the hook's memory (`process_vm_readv`), decides
//!    with [`check`], asks the kernel how it would route the destination
//!    ([`route_verdict`]), and if both pass, connects a socket of its own
//!    (same family, owned by the hook's uid, with the hook socket's
//!    non-blocking mode and the allowlisted options the hook set) to its own
//!    checked copy of the address, then installs that socket in place of the
//!    hook's (`SECCOMP_IOCTL_NOTIF_ADDFD`). The hook's `connect` returns what
//!    the supervisor's returned. Because the kernel never re-reads the
//!    hook's memory (no `SECCOMP_USER_NOTIF_FLAG_CONTINUE` for `connect`) and
//!    the hook never holds a socket the supervisor did not connect, a second
//!    thread rewriting the address after the check changes nothing: there is
//!    no TOCTOU window. `unotify` has the steps.
//! 5. Refused destinations get `ENETUNREACH` (distinct from Landlock's
//!    `EACCES`, so tests can tell which layer answered), and the runner
//!    writes `refused connect to ADDR: WHY` on stderr.
//!
//! # Which destinations
//! In this order:
//! * `deny_cidrs` (the operator's; the daemon's own addresses) refuse.
//! * The host's name servers are reachable on TCP port 53 only (DNS over
//!   TCP: the sandbox's `resolv.conf` says `use-vc`).
//! * [`THIS_HOST`] ranges (loopback, the unspecified address, which the kernel
//!   connects to the host, multicast and broadcast) and every address
//!   assigned to the host's interfaces (listed by the runner over rtnetlink
//!   before the hook starts, never taken from the job) refuse, and no
//!   `allow_cidrs` entry reopens them.
//! * Only ports 80 and 443.
//! * `allow_cidrs` (the operator's exceptions) allow, then the [`REFUSED`]
//!   ranges (private, link-local, shared, documentation, ...) refuse.
//! * Last, the kernel's own routing decides: the supervisor asks it
//!   (`RTM_GETROUTE`, with the hook's uid, TCP and the port, as the real
//!   connect would) how it would route the destination, and refuses anything
//!   but a unicast route off the host. That catches what no address list
//!   shows: AnyIP `local` routes, broadcast addresses, and addresses added
//!   after the hook started. The window left is the microseconds between that
//!   lookup and the supervisor's `connect`.
//!
//! Each rule applies to the address and to every IPv4 address embedded in it
//! ([`embedded_v4`]: v4-mapped, v4-compatible, SIIT, NAT64, 6to4, Teredo,
//! ISATAP), so `64:ff9b::7f00:1` is refused like `127.0.0.1`.
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

/// Ranges that reach this host itself or are no TCP peer at all: refused
/// whatever `allow_cidrs` says.
pub const THIS_HOST: &[Cidr] = &[
    Cidr::v4([0, 0, 0, 0], 8),          // "this host": 0.0.0.0 connects to it
    Cidr::v4([127, 0, 0, 0], 8),        // loopback
    Cidr::v4([224, 0, 0, 0], 4),        // multicast
    Cidr::v4([255, 255, 255, 255], 32), // limited broadcast
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), // unspecified: connects to the host
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), // loopback
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), // multicast
];

/// Ranges no bot may reach unless the operator lists them in `allow_cidrs`.
///
/// NAT64's well-known prefix `64:ff9b::/96` is not among them: what it embeds
/// is checked like any IPv4 address ([`embedded_v4`]), so an IPv6-only host
/// behind DNS64 reaches public IPv4 sites and nothing else.
pub const REFUSED: &[Cidr] = &[
    Cidr::v4([10, 0, 0, 0], 8),                      // RFC 1918
    Cidr::v4([100, 64, 0, 0], 10),                   // CGNAT (RFC 6598)
    Cidr::v4([169, 254, 0, 0], 16),                  // link-local, incl. 169.254.169.254
    Cidr::v4([172, 16, 0, 0], 12),                   // RFC 1918
    Cidr::v4([192, 0, 0, 0], 24),                    // IETF protocol assignments
    Cidr::v4([192, 0, 2, 0], 24),                    // TEST-NET-1
    Cidr::v4([192, 168, 0, 0], 16),                  // RFC 1918
    Cidr::v4([198, 18, 0, 0], 15),                   // benchmarking
    Cidr::v4([198, 51, 100, 0], 24),                 // TEST-NET-2
    Cidr::v4([203, 0, 113, 0], 24),                  // TEST-NET-3
    Cidr::v4([240, 0, 0, 0], 4),                     // reserved
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),          // v4-compatible (deprecated)
    Cidr::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),     // SIIT v4-translated
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),     // Teredo
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),     // 6to4: embeds any v4
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // ULA
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
];

/// What the supervisor knows when it checks a `connect`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectPolicy {
    /// Operator exceptions to [`REFUSED`] (`network.allow_cidrs`). They never
    /// reopen [`THIS_HOST`] or [`ConnectPolicy::host`].
    pub allow: Vec<Cidr>,
    /// Further refused ranges (`network.deny_cidrs`: the daemon's addresses).
    pub deny: Vec<Cidr>,
    /// The host's name servers, reachable on TCP port 53 only.
    pub nameservers: Vec<IpAddr>,
    /// Every address assigned to an interface of the host, discovered by the
    /// runner itself (rtnetlink), never taken from the job.
    pub host: Vec<IpAddr>,
}

/// Why a destination was refused. `Display` is the reason the runner logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not port 80 or 443 (or 53 to a name server).
    Port(u16),
    /// In a refused range that `allow_cidrs` does not cover.
    Address(IpAddr),
    /// Listed in `deny_cidrs`.
    Denied(IpAddr),
    /// Loopback, unspecified, multicast or broadcast: the host itself.
    ThisHost(IpAddr),
    /// Assigned to one of the host's interfaces.
    HostAddress(IpAddr),
    /// The kernel would not route it off the host as unicast.
    Route(IpAddr, RouteType),
    /// The kernel has no route for it (the errno of the lookup).
    NoRoute(IpAddr, i32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Port(p) => write!(f, "port {p} is not 80 or 443"),
            Refusal::Address(ip) => write!(
                f,
                "{ip} is in a refused range (private, link-local, reserved, ...)"
            ),
            Refusal::Denied(ip) => write!(f, "{ip} is in deny_cidrs"),
            Refusal::ThisHost(ip) => write!(
                f,
                "{ip} is this host itself (loopback, unspecified, multicast or broadcast; \
                 allow_cidrs cannot reopen it)"
            ),
            Refusal::HostAddress(ip) => write!(
                f,
                "an address of this host ({ip}; allow_cidrs cannot reopen it)"
            ),
            Refusal::Route(ip, t) => write!(f, "this host routes it as {} ({ip})", t.name()),
            Refusal::NoRoute(ip, errno) => write!(
                f,
                "no route to {ip} ({})",
                std::io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

/// The kernel's route type for a destination (`rtm_type`,
/// `<linux/rtnetlink.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteType(pub u8);

impl RouteType {
    /// `RTN_UNICAST`: a gateway or a direct route off the host.
    pub const UNICAST: RouteType = RouteType(1);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "unspecified",
            1 => "unicast",
            2 => "local",
            3 => "broadcast",
            4 => "anycast",
            5 => "multicast",
            6 => "blackhole",
            7 => "unreachable",
            8 => "prohibit",
            9 => "throw",
            10 => "nat",
            _ => "unknown",
        }
    }
}

/// Which kind of connect [`check`] allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Port 53 to one of the host's name servers: no route check (they are
    /// often on the host itself, like systemd-resolved's 127.0.0.53).
    NameServer,
    /// Ports 80/443: allowed if the kernel routes it off the host
    /// ([`route_verdict`]).
    Remote,
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

/// IPv4 addresses an IPv6 address embeds, which a translator, tunnel or
/// relay on the path (possibly on this host) would connect to: v4-compatible
/// `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` (and the
/// local-use `64:ff9b:1::/48` with a /96 prefix), 6to4 `2002:AABB:CCDD::`,
/// Teredo (server, and the client obfuscated by inversion), and ISATAP
/// interface ids `…:0:5efe:a.b.c.d`.
pub fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let seg = ip.segments();
    let low = Ipv4Addr::from(u32::from(seg[6]) << 16 | u32::from(seg[7]));
    let mut v = Vec::new();
    let in_range = |c: &Cidr| c.contains(IpAddr::V6(ip));
    if in_range(&Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96))
        || in_range(&Cidr::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96))
        || in_range(&Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96))
        || in_range(&Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48))
    {
        v.push(low);
    }
    if seg[0] == 0x2002 {
        v.push(Ipv4Addr::from(u32::from(seg[1]) << 16 | u32::from(seg[2])));
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        v.push(Ipv4Addr::from(u32::from(seg[2]) << 16 | u32::from(seg[3])));
        v.push(Ipv4Addr::from(!(u32::from(low))));
    }
    if seg[4] & 0xfdff == 0 && seg[5] == 0x5efe {
        v.push(low);
    }
    v
}

/// The address as the kernel sees it, then every IPv4 address it embeds.
fn forms(ip: IpAddr) -> Vec<IpAddr> {
    let ip = canonical(ip);
    let mut v = vec![ip];
    if let IpAddr::V6(v6) = ip {
        v.extend(embedded_v4(v6).into_iter().map(IpAddr::V4));
    }
    v
}

/// Decides one TCP destination from what is known before the route lookup
/// (see the module docs for the order).
pub fn check(dest: SocketAddr, policy: &ConnectPolicy) -> Result<Allowed, Refusal> {
    let ip = canonical(dest.ip());
    let forms = forms(ip);
    let any_in = |ranges: &[Cidr]| {
        forms
            .iter()
            .copied()
            .find(|f| ranges.iter().any(|c| c.contains(*f)))
    };
    if let Some(f) = any_in(&policy.deny) {
        return Err(Refusal::Denied(f));
    }
    let port = dest.port();
    if port == crate::policy::DNS_PORT && policy.nameservers.iter().any(|n| canonical(*n) == ip) {
        return Ok(Allowed::NameServer);
    }
    if let Some(f) = any_in(THIS_HOST) {
        return Err(Refusal::ThisHost(f));
    }
    if let Some(f) = forms
        .iter()
        .copied()
        .find(|f| policy.host.iter().any(|h| canonical(*h) == *f))
    {
        return Err(Refusal::HostAddress(f));
    }
    if !crate::policy::WEB_PORTS.contains(&port) {
        return Err(Refusal::Port(port));
    }
    if policy.allow.iter().any(|c| c.contains(ip)) {
        return Ok(Allowed::Remote);
    }
    if let Some(f) = any_in(REFUSED) {
        return Err(Refusal::Address(f));
    }
    Ok(Allowed::Remote)
}

/// The last word on an [`Allowed::Remote`] destination: the kernel's route
/// lookup for it (`Err(errno)` when it has none) must be unicast.
pub fn route_verdict(ip: IpAddr, route: Result<RouteType, i32>) -> Result<(), Refusal> {
    match route {
        Ok(RouteType::UNICAST) => Ok(()),
        Ok(other) => Err(Refusal::Route(canonical(ip), other)),
        Err(errno) => Err(Refusal::NoRoute(canonical(ip), errno)),
    }
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_private_link_local_cgnat_ula_and_embedded_private_v4() {
        let p = ConnectPolicy::default();
        for dest in [
            "10.1.2.3:80",
            "172.16.0.1:80",
            "172.31.255.255:443",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "100.127.255.255:443",
            "240.0.0.1:80",
            "[fd00::1]:443",
            "[fc00::1]:443",
            "[fe80::1]:80",
            "[::ffff:169.254.169.254]:80",
            "[::ffff:10.0.0.1]:443",
            "[::ffff:0:a00:1]:80",
            "[64:ff9b::a00:1]:80",
            "[64:ff9b:1::a9fe:a9fe]:80",
            "[2002:a00:1::]:80",
            "[2001:db8::1]:443",
        ] {
            assert!(
                matches!(check(sa(dest), &p), Err(Refusal::Address(_))),
                "{dest}: {:?}",
                check(sa(dest), &p)
            );
        }
    }

    #[test]
    fn refuses_this_host_in_every_form_whatever_allow_cidrs_says() {
        let everything = ConnectPolicy {
            allow: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            ..Default::default()
        };
        for p in [ConnectPolicy::default(), everything] {
            for dest in [
                "127.0.0.1:80",
                "127.8.9.10:443",
                "0.0.0.0:80",
                "0.1.2.3:80",
                "255.255.255.255:80",
                "224.0.0.1:80",
                "[::]:80",
                "[::1]:80",
                "[ff02::1]:443",
                "[::ffff:127.0.0.1]:80",
                "[::ffff:0.0.0.0]:80",
                "[::127.0.0.1]:80",
                "[::ffff:0:7f00:1]:80",
                "[64:ff9b::7f00:1]:80",
                "[64:ff9b::]:80",
                "[64:ff9b:1::7f00:1]:80",
                "[2002:7f00:1::1]:443",
                // Teredo: server 127.0.0.1; client 127.0.0.1 inverted.
                "[2001:0:7f00:1::1]:80",
                "[2001:0:808:808::80ff:fffe]:80",
                // ISATAP interface id embedding 127.0.0.1.
                "[2606:4700::5efe:7f00:1]:80",
                "[2606:4700::200:5efe:7f00:1]:80",
            ] {
                assert!(
                    matches!(check(sa(dest), &p), Err(Refusal::ThisHost(_))),
                    "{dest}: {:?}",
                    check(sa(dest), &p)
                );
            }
        }
    }

    #[test]
    fn host_addresses_are_refused_in_every_form_and_allow_cidrs_cannot_reopen_them() {
        let p = ConnectPolicy {
            allow: vec![
                "10.213.250.0/30".parse().unwrap(),
                "2001:db8:1::/64".parse().unwrap(),
            ],
            host: vec![
                ip("10.213.250.1"),
                ip("203.0.113.9"),
                ip("2001:db8:1::1"),
                ip("::ffff:198.51.100.4"),
            ],
            ..Default::default()
        };
        for (dest, refused) in [
            ("10.213.250.1:80", "10.213.250.1"),
            ("10.213.250.1:443", "10.213.250.1"),
            ("[::ffff:10.213.250.1]:80", "10.213.250.1"),
            ("[64:ff9b::a d5:fa01]:80", "10.213.250.1"),
            ("203.0.113.9:443", "203.0.113.9"),
            ("[2002:cb00:7109::1]:80", "203.0.113.9"),
            ("[2001:db8:1::1]:80", "2001:db8:1::1"),
            ("198.51.100.4:80", "198.51.100.4"),
            // Another port: still an address of this host, said first.
            ("10.213.250.1:22", "10.213.250.1"),
        ] {
            let dest = dest.replace(' ', "");
            assert_eq!(
                check(sa(&dest), &p),
                Err(Refusal::HostAddress(ip(refused))),
                "{dest}"
            );
        }
        // Its neighbours inside the allowed ranges stay reachable.
        assert_eq!(check(sa("10.213.250.2:80"), &p), Ok(Allowed::Remote));
        assert_eq!(check(sa("[2001:db8:1::2]:443"), &p), Ok(Allowed::Remote));
    }

    #[test]
    fn allows_public_addresses_on_web_ports_only() {
        let p = ConnectPolicy::default();
        for dest in [
            "93.184.216.34:443",
            "1.1.1.1:80",
            "[2606:4700::1111]:443",
            "[::ffff:1.1.1.1]:443",
            "[64:ff9b::101:101]:443",
            "100.128.0.1:80",
            "172.32.0.1:80",
            "223.255.255.255:80",
        ] {
            assert_eq!(check(sa(dest), &p), Ok(Allowed::Remote), "{dest}");
        }
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
                "1.2.3.0/24".parse().unwrap(),
            ],
            ..Default::default()
        };
        assert_eq!(check(sa("10.77.0.2:80"), &p), Ok(Allowed::Remote));
        assert_eq!(check(sa("[::ffff:10.77.0.2]:80"), &p), Ok(Allowed::Remote));
        assert!(check(sa("10.77.1.2:80"), &p).is_err());
        assert!(matches!(
            check(sa("10.77.0.9:80"), &p),
            Err(Refusal::Denied(_))
        ));
        // deny_cidrs hold for the embedded forms too.
        assert_eq!(
            check(sa("[64:ff9b::102:304]:443"), &p),
            Err(Refusal::Denied(ip("1.2.3.4")))
        );
        assert_eq!(check(sa("10.77.0.2:8080"), &p), Err(Refusal::Port(8080)));
        // allow_cidrs name the address itself, not what it embeds.
        assert!(matches!(
            check(sa("[64:ff9b::a4d:2]:80"), &p),
            Err(Refusal::Address(_))
        ));
    }

    #[test]
    fn name_servers_only_on_port_53_even_on_this_host() {
        let p = ConnectPolicy {
            nameservers: vec![ip("127.0.0.53"), ip("10.0.0.2")],
            host: vec![ip("10.0.0.2")],
            ..Default::default()
        };
        assert_eq!(check(sa("127.0.0.53:53"), &p), Ok(Allowed::NameServer));
        assert_eq!(check(sa("10.0.0.2:53"), &p), Ok(Allowed::NameServer));
        assert!(matches!(
            check(sa("127.0.0.53:80"), &p),
            Err(Refusal::ThisHost(_))
        ));
        assert!(check(sa("10.0.0.2:80"), &p).is_err());
        assert!(check(sa("127.0.0.1:53"), &p).is_err());
    }

    #[test]
    fn only_a_unicast_route_passes_the_route_verdict() {
        let a = ip("198.51.100.7");
        assert_eq!(route_verdict(a, Ok(RouteType::UNICAST)), Ok(()));
        for t in [2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 200] {
            assert_eq!(
                route_verdict(a, Ok(RouteType(t))),
                Err(Refusal::Route(a, RouteType(t)))
            );
        }
        assert_eq!(
            route_verdict(a, Err(libc::ENETUNREACH)),
            Err(Refusal::NoRoute(a, libc::ENETUNREACH))
        );
        assert_eq!(
            route_verdict(ip("::ffff:198.51.100.7"), Ok(RouteType(2))),
            Err(Refusal::Route(a, RouteType(2)))
        );
        assert_eq!(
            Refusal::Route(a, RouteType(2)).to_string(),
            "this host routes it as local (198.51.100.7)"
        );
    }

    #[test]
    fn embedded_v4_forms() {
        let e = |s: &str| embedded_v4(s.parse().unwrap());
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(e("::a00:1"), vec![v4("10.0.0.1")]);
        assert_eq!(e("::ffff:0:a00:1"), vec![v4("10.0.0.1")]);
        assert_eq!(e("64:ff9b::a00:1"), vec![v4("10.0.0.1")]);
        assert_eq!(e("2002:a00:1::"), vec![v4("10.0.0.1")]);
        assert_eq!(
            e("2001:0:a00:1::f5ff:fffe"),
            vec![v4("10.0.0.1"), v4("10.0.0.1")]
        );
        assert_eq!(e("fe80::5efe:a00:1"), vec![v4("10.0.0.1")]);
        assert!(e("2606:4700::1111").is_empty());
        assert!(e("2001:db8::1").is_empty(), "documentation, not Teredo");
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
