//! The runner's two questions to the host's own network stack, over
//! rtnetlink (`NETLINK_ROUTE`): which addresses the host's interfaces carry
//! (`RTM_GETADDR`), and how the kernel would route one destination
//! (`RTM_GETROUTE`, as `ip route get` does).
//!
//! The connect supervisor needs both to keep network bots off the host itself
//! (see `netguard`): the address list is taken once, before the hook starts;
//! the route lookup is made before every connect, so a local route or an
//! address that no list shows, or that appeared later, is still caught. Both
//! are asked from the outer runner, which never leaves the host's network
//! namespace, and neither trusts anything the job says.
//!
//! Messages are built and parsed by pure functions, unit-tested on bytes;
//! only [`ask`] touches a socket (`sockdiag` asks through it too, on
//! `NETLINK_SOCK_DIAG`). Replies are accepted only from the kernel
//! (netlink port 0) and only with the request's sequence number.

use crate::netguard::RouteType;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recvfrom, sendto,
    setsockopt, socket, sockopt,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

// <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_ANYCAST: u16 = 5;
const RTA_DST: u16 = 1;
const RTA_UID: u16 = 25;
const RTA_IP_PROTO: u16 = 27;
const RTA_DPORT: u16 = 29;
/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER`, not part of the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A reply larger than any one datagram the kernel sends (a dump part is at
/// most 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;
/// A dump the kernel marks as interrupted by a concurrent change is redone.
const DUMP_ATTEMPTS: usize = 3;

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub(crate) fn push_header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish()
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

pub(crate) fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = (buf.len() as u32).to_ne_bytes();
    buf[..4].copy_from_slice(&len);
    buf
}

/// `RTM_GETADDR` dump of every address of every family.
pub fn addr_dump_request(seq: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(NLMSG_HDRLEN + IFADDRMSG_LEN);
    push_header(&mut b, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.extend_from_slice(&[0u8; IFADDRMSG_LEN]); // ifa_family AF_UNSPEC: all
    finish(b)
}

/// `RTM_GETROUTE` for one destination, as a TCP connect to `port` from a
/// socket of kernel uid `uid` would look it up (routing rules may select on
/// uid, protocol and port).
pub fn route_request(seq: u32, dest: IpAddr, uid: u32, port: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(NLMSG_HDRLEN + RTMSG_LEN + 40);
    push_header(&mut b, RTM_GETROUTE, NLM_F_REQUEST, seq);
    let (family, dst_len, addr) = match dest {
        IpAddr::V4(a) => (libc::AF_INET as u8, 32u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, 128u8, a.octets().to_vec()),
    };
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    b.extend_from_slice(&[family, dst_len, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut b, RTA_DST, &addr);
    push_attr(&mut b, RTA_UID, &uid.to_ne_bytes());
    push_attr(&mut b, RTA_IP_PROTO, &[libc::IPPROTO_TCP as u8]);
    push_attr(&mut b, RTA_DPORT, &port.to_be_bytes());
    finish(b)
}

/// One netlink message: (type, flags, seq, payload).
pub(crate) type Message<'a> = (u16, u16, u32, &'a [u8]);

/// Splits a datagram into messages; `Err(EBADMSG)` if one is cut short.
pub(crate) fn messages(buf: &[u8]) -> Result<Vec<Message<'_>>, i32> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let head = buf.get(at..at + NLMSG_HDRLEN).ok_or(libc::EBADMSG)?;
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        let flags = u16::from_ne_bytes([head[6], head[7]]);
        let seq = u32::from_ne_bytes([head[8], head[9], head[10], head[11]]);
        if len < NLMSG_HDRLEN {
            return Err(libc::EBADMSG);
        }
        let payload = buf.get(at + NLMSG_HDRLEN..at + len).ok_or(libc::EBADMSG)?;
        out.push((kind, flags, seq, payload));
        at += align4(len);
    }
    Ok(out)
}

/// The attributes after a fixed-size header: (type, data).
fn attrs(mut rest: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        let Some(data) = rest.get(4..len) else { break };
        out.push((kind, data));
        rest = rest.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

/// The (negative) errno of an `NLMSG_ERROR` payload.
pub(crate) fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(-libc::EBADMSG)
}

/// What a reply datagram told: more to come, the answer, or an error.
#[derive(Debug, PartialEq)]
pub enum Progress<T> {
    More,
    Done(T),
}

/// Folds one datagram of an `RTM_GETADDR` dump into `into`. `Done(true)` at
/// the end of a dump the kernel marked interrupted (redo it).
pub fn parse_addr_dump(
    buf: &[u8],
    seq: u32,
    into: &mut Vec<IpAddr>,
    interrupted: &mut bool,
) -> Result<Progress<bool>, i32> {
    for (kind, flags, s, payload) in messages(buf)? {
        if s != seq {
            continue;
        }
        *interrupted |= flags & NLM_F_DUMP_INTR != 0;
        match kind {
            NLMSG_DONE => return Ok(Progress::Done(*interrupted)),
            NLMSG_ERROR => return Err(-error_code(payload)),
            RTM_NEWADDR if payload.len() >= IFADDRMSG_LEN => {
                let family = i32::from(payload[0]);
                for (t, data) in attrs(&payload[IFADDRMSG_LEN..]) {
                    if !matches!(t, IFA_ADDRESS | IFA_LOCAL | IFA_BROADCAST | IFA_ANYCAST) {
                        continue;
                    }
                    let ip = match (family, data.len()) {
                        (libc::AF_INET, 4) => {
                            IpAddr::from(<[u8; 4]>::try_from(data).map_err(|_| libc::EBADMSG)?)
                        }
                        (libc::AF_INET6, 16) => {
                            IpAddr::from(<[u8; 16]>::try_from(data).map_err(|_| libc::EBADMSG)?)
                        }
                        _ => continue,
                    };
                    if !into.contains(&ip) {
                        into.push(ip);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Progress::More)
}

/// Reads the route type from the reply to [`route_request`]; `Err(errno)`
/// when the kernel has no route (`ENETUNREACH`, `EHOSTUNREACH`, `EACCES` for
/// a prohibit route, ...).
pub fn parse_route_reply(buf: &[u8], seq: u32) -> Result<Progress<RouteType>, i32> {
    for (kind, _, s, payload) in messages(buf)? {
        if s != seq {
            continue;
        }
        match kind {
            NLMSG_ERROR => {
                let code = error_code(payload);
                return Err(if code < 0 { -code } else { libc::EBADMSG });
            }
            RTM_NEWROUTE if payload.len() >= RTMSG_LEN => {
                return Ok(Progress::Done(RouteType(payload[7])));
            }
            _ => return Err(libc::EBADMSG),
        }
    }
    Ok(Progress::More)
}

pub(crate) fn next_seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Sends `request` to the kernel on a fresh netlink socket of `protocol`
/// (`NETLINK_ROUTE` here) and feeds each reply datagram to `on_reply` until it
/// is done. Errors are errnos.
pub fn ask<T>(
    protocol: SockProtocol,
    request: &[u8],
    mut on_reply: impl FnMut(&[u8]) -> Result<Progress<T>, i32>,
) -> Result<T, i32> {
    let errno = |e: nix::errno::Errno| e as i32;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        protocol,
    )
    .map_err(errno)?;
    // The kernel answers at once; the timeout only bounds the unexpected.
    let timeout = nix::sys::time::TimeVal::new(2, 0);
    setsockopt(&sock, sockopt::ReceiveTimeout, &timeout).map_err(errno)?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        request,
        &kernel,
        MsgFlags::empty(),
    )
    .map_err(errno)?;
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (n, from) = recvfrom::<NetlinkAddr>(std::os::fd::AsRawFd::as_raw_fd(&sock), &mut buf)
            .map_err(errno)?;
        // Only the kernel speaks for the kernel: another process may send
        // to our port id.
        if from.is_none_or(|a| a.pid() != 0) {
            continue;
        }
        if let Progress::Done(v) = on_reply(&buf[..n])? {
            return Ok(v);
        }
    }
}

/// Every address assigned to any interface of the host (local, peer,
/// broadcast and anycast addresses, both families), in the runner's network
/// namespace.
///
/// # Errors
/// The errno of the netlink exchange, e.g. `EAFNOSUPPORT` where a service
/// manager forbids `AF_NETLINK` sockets.
pub fn host_addresses() -> Result<Vec<IpAddr>, i32> {
    for _ in 0..DUMP_ATTEMPTS {
        let seq = next_seq();
        let mut found = Vec::new();
        let mut interrupted = false;
        let redo = ask(SockProtocol::NetlinkRoute, &addr_dump_request(seq), |buf| {
            parse_addr_dump(buf, seq, &mut found, &mut interrupted)
        })?;
        if !redo {
            return Ok(found);
        }
    }
    Err(libc::EAGAIN)
}

/// The kernel's route type for a TCP connect to `dest:port` from a socket of
/// kernel uid `uid`; `Err(errno)` when it has no route.
pub fn route_type(dest: IpAddr, uid: u32, port: u16) -> Result<RouteType, i32> {
    let seq = next_seq();
    ask(
        SockProtocol::NetlinkRoute,
        &route_request(seq, dest, uid, port),
        |buf| parse_route_reply(buf, seq),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        push_header(&mut b, kind, flags, seq);
        b.extend_from_slice(payload);
        b.resize(align4(b.len()), 0);
        let len = ((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes();
        b[..4].copy_from_slice(&len);
        b
    }

    fn newaddr(family: u8, attrs_: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = vec![family, 24, 0, 0, 2, 0, 0, 0];
        for (t, d) in attrs_ {
            push_attr(&mut p, *t, d);
        }
        p
    }

    #[test]
    fn route_request_carries_destination_uid_protocol_and_port() {
        let r = route_request(7, "10.213.250.1".parse().unwrap(), 65534, 443);
        assert_eq!(
            r.len(),
            u32::from_ne_bytes(r[..4].try_into().unwrap()) as usize
        );
        let msgs = messages(&r).unwrap();
        assert_eq!(msgs.len(), 1);
        let (kind, flags, seq, payload) = msgs[0];
        assert_eq!((kind, flags, seq), (RTM_GETROUTE, NLM_F_REQUEST, 7));
        assert_eq!(payload[0], libc::AF_INET as u8);
        assert_eq!(payload[1], 32);
        let a = attrs(&payload[RTMSG_LEN..]);
        assert_eq!(
            a,
            vec![
                (RTA_DST, &[10u8, 213, 250, 1][..]),
                (RTA_UID, &65534u32.to_ne_bytes()[..]),
                (RTA_IP_PROTO, &[6u8][..]),
                (RTA_DPORT, &[1u8, 187][..]),
            ]
        );
        let r6 = route_request(8, "2001:db8::1".parse().unwrap(), 0, 80);
        let (_, _, _, p6) = messages(&r6).unwrap()[0];
        assert_eq!((p6[0], p6[1]), (libc::AF_INET6 as u8, 128));
        assert_eq!(attrs(&p6[RTMSG_LEN..])[0].1.len(), 16);
    }

    #[test]
    fn route_reply_gives_the_type_or_the_errno() {
        let mut rt = vec![libc::AF_INET as u8, 32, 0, 0, 255, 2, 254, 2];
        rt.extend_from_slice(&0u32.to_ne_bytes());
        let local = reply(RTM_NEWROUTE, 0, 5, &rt);
        assert_eq!(
            parse_route_reply(&local, 5),
            Ok(Progress::Done(RouteType(2)))
        );
        // Another request's reply is not an answer.
        assert_eq!(parse_route_reply(&local, 6), Ok(Progress::More));
        let err = reply(NLMSG_ERROR, 0, 5, &(-libc::ENETUNREACH).to_ne_bytes());
        assert_eq!(parse_route_reply(&err, 5), Err(libc::ENETUNREACH));
        // A cut-off message is an error, never a verdict.
        assert_eq!(
            parse_route_reply(&local[..local.len() - 8], 5),
            Err(libc::EBADMSG)
        );
        assert_eq!(
            parse_route_reply(&reply(RTM_NEWADDR, 0, 5, &[0; 8]), 5),
            Err(libc::EBADMSG)
        );
    }

    #[test]
    fn addr_dump_collects_every_address_kind_of_both_families() {
        let mut dump = reply(
            RTM_NEWADDR,
            0x2,
            9,
            &newaddr(
                libc::AF_INET as u8,
                &[
                    (IFA_ADDRESS, &[10, 213, 250, 1]),
                    (IFA_LOCAL, &[10, 213, 250, 1]),
                    (IFA_BROADCAST, &[10, 213, 250, 3]),
                    (3, b"eth0\0"), // IFA_LABEL: not an address
                ],
            ),
        );
        let v6: [u8; 16] = "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        dump.extend(reply(
            RTM_NEWADDR,
            0x2,
            9,
            &newaddr(libc::AF_INET6 as u8, &[(IFA_ADDRESS, &v6)]),
        ));
        let mut found = Vec::new();
        let mut intr = false;
        assert_eq!(
            parse_addr_dump(&dump, 9, &mut found, &mut intr),
            Ok(Progress::More)
        );
        let done = reply(NLMSG_DONE, 0x2, 9, &0i32.to_ne_bytes());
        assert_eq!(
            parse_addr_dump(&done, 9, &mut found, &mut intr),
            Ok(Progress::Done(false))
        );
        let want: Vec<IpAddr> = ["10.213.250.1", "10.213.250.3", "2001:db8::7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(found, want);
        // An interrupted dump says so at its end.
        let mut intr = false;
        let marked = reply(RTM_NEWADDR, NLM_F_DUMP_INTR, 9, &newaddr(2, &[]));
        let _ = parse_addr_dump(&marked, 9, &mut found, &mut intr);
        assert_eq!(
            parse_addr_dump(&done, 9, &mut found, &mut intr),
            Ok(Progress::Done(true))
        );
        let err = reply(NLMSG_ERROR, 0, 9, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse_addr_dump(&err, 9, &mut found, &mut intr),
            Err(libc::EPERM)
        );
    }

    #[test]
    fn the_kernel_answers_for_loopback_and_lists_it() {
        // The real exchange: every Linux network namespace with lo up has
        // 127.0.0.1 on it, routed as local (and ::1 where IPv6 is on).
        let addrs = host_addresses().expect("RTM_GETADDR");
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
        assert_eq!(
            route_type("127.0.0.1".parse().unwrap(), 0, 80),
            Ok(RouteType(2))
        );
        assert_eq!(
            route_type("127.255.255.255".parse().unwrap(), 0, 80),
            Ok(RouteType(3)),
            "broadcast"
        );
        if addrs.contains(&"::1".parse().unwrap()) {
            assert_eq!(route_type("::1".parse().unwrap(), 0, 443), Ok(RouteType(2)));
        }
    }
}
