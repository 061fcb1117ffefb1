//! One question to the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`,
//! what `ss` reads): in which state is a TCP connection the connect
//! supervisor made for a hook?
//!
//! The supervisor connects a socket of its own and installs it in the hook
//! (see `unotify`), then keeps no descriptor of it, so that the hook's
//! `close` really closes the connection. When the hook calls `connect` on
//! that socket again, the kernel's answer depends on the socket's state
//! (`EALREADY` while the handshake runs, `EISCONN` once connected, a new
//! connection after a failed one); this module finds that state by an exact
//! lookup of the connection's addresses, and checks that the socket found is
//! the same one (by inode). Nothing here connects anything.
//!
//! The request is built and the reply parsed by pure functions, unit-tested
//! on bytes; the exchange goes through `rtnetlink::ask`.

use crate::rtnetlink::{
    self, NLM_F_REQUEST, NLMSG_ERROR, Progress, error_code, finish, messages, push_header,
};
use nix::sys::socket::SockProtocol;
use std::net::{IpAddr, SocketAddr};

// <linux/sock_diag.h>, <linux/inet_diag.h>, <net/tcp_states.h>
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_sockid`: sport, dport, src[4], dst[4], if, cookie[2].
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid, expires,
/// rqueue, wqueue, uid, inode.
const MSG_LEN: usize = 4 + SOCKID_LEN + 5 * 4;
const MSG_STATE: usize = 1;
const MSG_INODE: usize = 4 + SOCKID_LEN + 4 * 4;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_CLOSE: u8 = 7;

/// What became of a connection the supervisor made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The handshake is still running (`SYN_SENT`): a new `connect` gets
    /// `EALREADY`.
    Connecting,
    /// Connected (established, or closing after having been): `EISCONN`.
    Connected,
    /// No socket with these addresses and this inode: the connection failed
    /// or was closed, and the socket may connect again.
    Gone,
}

fn put_ip(sockid: &mut [u8], at: usize, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => sockid[at..at + 4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => sockid[at..at + 16].copy_from_slice(&a.octets()),
    }
}

/// An exact lookup (`SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`) of the TCP
/// socket whose local address is `local` and peer `remote`. Both are of the
/// socket's own family (an IPv6 socket reports v4-mapped addresses, which
/// the kernel looks up among IPv4 connections).
pub fn request(seq: u32, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mut b = Vec::with_capacity(rtnetlink::NLMSG_HDRLEN + REQ_LEN);
    push_header(&mut b, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq);
    b.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    let mut id = [0u8; SOCKID_LEN];
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&remote.port().to_be_bytes());
    put_ip(&mut id, 4, local.ip());
    put_ip(&mut id, 20, remote.ip());
    // idiag_if 0 (any interface), cookie INET_DIAG_NOCOOKIE (not checked).
    id[40..48].copy_from_slice(&[0xff; 8]);
    b.extend_from_slice(&id);
    finish(b)
}

/// Reads the reply to [`request`]: the state of the socket found, if it is
/// the one with `inode`. `ENOENT` from the kernel means no such connection.
pub fn parse_reply(buf: &[u8], seq: u32, inode: u64) -> Result<Progress<Connection>, i32> {
    for (kind, _, s, payload) in messages(buf)? {
        if s != seq {
            continue;
        }
        return match kind {
            NLMSG_ERROR => match -error_code(payload) {
                libc::ENOENT => Ok(Progress::Done(Connection::Gone)),
                e if e > 0 => Err(e),
                _ => Err(libc::EBADMSG),
            },
            SOCK_DIAG_BY_FAMILY if payload.len() >= MSG_LEN => {
                let state = payload[MSG_STATE];
                let at = &payload[MSG_INODE..MSG_INODE + 4];
                let found = u64::from(u32::from_ne_bytes([at[0], at[1], at[2], at[3]]));
                // Another socket on the same addresses (a time-wait
                // remnant has inode 0) says nothing about ours.
                Ok(Progress::Done(if found != inode || state == TCP_CLOSE {
                    Connection::Gone
                } else if matches!(state, TCP_SYN_SENT | TCP_SYN_RECV) {
                    Connection::Connecting
                } else {
                    Connection::Connected
                }))
            }
            _ => Err(libc::EBADMSG),
        };
    }
    Ok(Progress::More)
}

/// The state of the TCP connection `local` → `remote` held by the socket
/// with `inode`. Errors are errnos of the netlink exchange.
pub fn connection(local: SocketAddr, remote: SocketAddr, inode: u64) -> Result<Connection, i32> {
    let seq = rtnetlink::next_seq();
    rtnetlink::ask(
        SockProtocol::NetlinkSockDiag,
        &request(seq, local, remote),
        |buf| parse_reply(buf, seq, inode),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        push_header(&mut b, kind, 0, seq);
        b.extend_from_slice(payload);
        finish(b)
    }

    fn diag_msg(state: u8, inode: u32) -> Vec<u8> {
        let mut m = vec![0u8; MSG_LEN];
        m[0] = libc::AF_INET as u8;
        m[MSG_STATE] = state;
        m[MSG_INODE..MSG_INODE + 4].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    #[test]
    fn request_names_both_ends_of_the_connection_in_network_order() {
        let r = request(
            9,
            "10.0.0.1:40000".parse().unwrap(),
            "93.184.216.34:443".parse().unwrap(),
        );
        let msgs = messages(&r).unwrap();
        assert_eq!(msgs.len(), 1);
        let (kind, flags, seq, p) = msgs[0];
        assert_eq!((kind, flags, seq), (SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 9));
        assert_eq!(p.len(), REQ_LEN);
        assert_eq!(&p[..4], &[libc::AF_INET as u8, 6, 0, 0]);
        let id = &p[8..];
        assert_eq!(&id[0..4], &[0x9c, 0x40, 0x01, 0xbb]);
        assert_eq!(&id[4..8], &[10, 0, 0, 1]);
        assert_eq!(&id[20..24], &[93, 184, 216, 34]);
        assert_eq!(&id[40..48], &[0xff; 8]);

        let r6 = request(
            10,
            "[::ffff:10.0.0.1]:40000".parse().unwrap(),
            "[2001:db8::1]:80".parse().unwrap(),
        );
        let (_, _, _, p6) = messages(&r6).unwrap()[0];
        assert_eq!(p6[0], libc::AF_INET6 as u8);
        assert_eq!(p6[8 + 4 + 10..8 + 4 + 16], [0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(p6[8 + 20], 0x20);
    }

    #[test]
    fn reply_gives_the_state_of_the_same_socket_only() {
        let ask = |msg: &[u8]| parse_reply(msg, 4, 777);
        assert_eq!(
            ask(&reply(SOCK_DIAG_BY_FAMILY, 4, &diag_msg(TCP_SYN_SENT, 777))),
            Ok(Progress::Done(Connection::Connecting))
        );
        assert_eq!(
            ask(&reply(SOCK_DIAG_BY_FAMILY, 4, &diag_msg(1, 777))),
            Ok(Progress::Done(Connection::Connected))
        );
        // CLOSE_WAIT (8): connected from the socket's point of view.
        assert_eq!(
            ask(&reply(SOCK_DIAG_BY_FAMILY, 4, &diag_msg(8, 777))),
            Ok(Progress::Done(Connection::Connected))
        );
        // Another socket (or a time-wait remnant) on the same addresses.
        assert_eq!(
            ask(&reply(SOCK_DIAG_BY_FAMILY, 4, &diag_msg(1, 0))),
            Ok(Progress::Done(Connection::Gone))
        );
        let enoent = reply(NLMSG_ERROR, 4, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(ask(&enoent), Ok(Progress::Done(Connection::Gone)));
        let eperm = reply(NLMSG_ERROR, 4, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(ask(&eperm), Err(libc::EPERM));
        // Another request's reply is not an answer; a short one is an error.
        assert_eq!(
            parse_reply(&reply(SOCK_DIAG_BY_FAMILY, 5, &diag_msg(1, 777)), 4, 777),
            Ok(Progress::More)
        );
        assert_eq!(
            ask(&reply(SOCK_DIAG_BY_FAMILY, 4, &diag_msg(1, 777)[..40])),
            Err(libc::EBADMSG)
        );
    }

    #[test]
    fn the_kernel_reports_a_live_connection_and_forgets_a_closed_one() {
        use std::os::unix::fs::MetadataExt;
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let inode = std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&client)
        ))
        .unwrap()
        .ino();
        assert_eq!(connection(local, remote, inode), Ok(Connection::Connected));
        assert_eq!(
            connection(local, remote, inode + 1),
            Ok(Connection::Gone),
            "another inode"
        );
        drop(client);
        assert_eq!(connection(local, remote, inode), Ok(Connection::Gone));
    }
}
