//! The supervisor side of seccomp user notification for network bots: it
//! carries out each `connect` of the hook (from any of its threads) on a
//! socket of its own, and records the allowlisted options the hook sets on
//! its sockets so that the socket it hands back has them too. `netguard`
//! has the design and the address rules; README.md ("Network") what a bot
//! sees.
//!
//! # A connect, step by step (one handler thread per notification)
//! 1. Read what the call names, from outside: the `sockaddr` from the
//!    calling thread's memory (`process_vm_readv`), and the socket from
//!    `/proc/<tid>/fdinfo/<fd>` (its file status flags and inode) and its
//!    `system.sockprotoname` attribute (`TCP` or `TCPv6`). The hook's
//!    descriptor itself is never touched. Then check that the notification
//!    is still pending, which proves the thread (and so the bytes) were the
//!    caller's and not a reused id's.
//! 2. A socket this supervisor connected earlier answers as the kernel
//!    would: `EALREADY` during the handshake, `EISCONN` once connected
//!    (`sockdiag` finds its state); only a failed or closed one connects
//!    again.
//! 3. The address (the supervisor's own parsed copy) is checked:
//!    `netguard::check`, then the kernel's route for it.
//! 4. A new TCP socket of the same family is created with the hook's uid and
//!    gid as fs ids (root mode), so that its owner, which routing rules and
//!    firewall owner matches see, is the hook's, as the route check assumed.
//!    It gets the hook socket's `O_NONBLOCK` and the options recorded for
//!    it, and is connected to the checked address.
//! 5. If that returned 0 or `EINPROGRESS`, the socket replaces the hook's at
//!    the same descriptor number (`SECCOMP_IOCTL_NOTIF_ADDFD` with
//!    `SECCOMP_ADDFD_FLAG_SETFD`, close-on-exec as before); the supervisor
//!    keeps no copy, so the hook's `close` closes the connection. Then the
//!    notification is answered with the connect's result; a failed connect
//!    (`ECONNREFUSED`, `ETIMEDOUT`, ...) installs nothing and passes its
//!    errno back.
//!
//! The hook's memory is read once and the kernel never re-reads it (no
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE` for `connect`), so a thread rewriting
//! the address after the check changes nothing. `SECCOMP_ADDFD_FLAG_SEND`
//! (install and answer in one step) is not used: it makes the call return
//! the new descriptor's number, right for `socket` or `accept` but not for
//! `connect`, which returns 0. Between the two steps only the hook's other
//! threads can see the new socket, already connected or connecting to the
//! checked address.
//!
//! # setsockopt
//! The seccomp gate sends only allowlisted (level, option) pairs here. The
//! supervisor copies the value, records it under the socket's inode and lets
//! the call proceed (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`): level and option
//! are registers the kernel does not re-read differently, and any value of
//! an allowlisted option is allowed anyway, so continuing grants nothing the
//! gate did not.
//!
//! Needs Linux 5.9 (`ADDFD` with `SETFD`); the gate's
//! `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` needs 5.19 and is refused below
//! it, so an older kernel fails closed at step `seccomp`. In root mode the
//! runner needs `CAP_SYS_PTRACE` for the reads of step 1 (the hook runs
//! under another uid); in user-namespace mode the hook has the runner's uid
//! and nothing more is needed.

use crate::netguard::{self, Allowed, ConnectPolicy};
use crate::policy;
use crate::rtnetlink;
use crate::sockdiag::{self, Connection};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};

/// Everything the supervisor needs for one hook's notifications.
pub struct Supervisor {
    /// The seccomp notification listener (received from the hook).
    pub listener: OwnedFd,
    policy: ConnectPolicy,
    /// The kernel uid and gid of the hook: its sockets carry them, and the
    /// route lookup asks as that uid (routing rules may select on it).
    hook_ids: (u32, u32),
    sockets: Mutex<Sockets>,
}

impl Supervisor {
    pub fn new(listener: OwnedFd, policy: ConnectPolicy, hook_ids: (u32, u32)) -> Supervisor {
        Supervisor {
            listener,
            policy,
            hook_ids,
            sockets: Mutex::new(Sockets::default()),
        }
    }
}

/// Largest `sockaddr` read from a hook (`sockaddr_storage`).
const MAX_SOCKADDR: usize = 128;
/// Largest option value recorded (the allowlist's largest is a `timeval`).
const MAX_OPTION: usize = 64;
/// Sockets remembered at most; the oldest are forgotten first. A forgotten
/// socket loses its recorded options, and a connect on one the supervisor
/// connected is then carried out anew instead of answered `EISCONN`.
const MAX_KNOWN: usize = 4096;

/// What the supervisor knows of the hook's sockets, by inode: stable while
/// the socket lives, unlike descriptor numbers, which the hook reuses.
#[derive(Default)]
struct Sockets {
    by_inode: HashMap<u64, Known>,
    order: VecDeque<u64>,
}

#[derive(Default, Clone)]
struct Known {
    /// Allowlisted options the hook set, the latest value of each pair.
    options: Vec<SockOpt>,
    /// For a socket this supervisor connected: its (local, remote) address.
    connection: Option<(SocketAddr, SocketAddr)>,
}

#[derive(Clone, Debug, PartialEq)]
struct SockOpt {
    level: i32,
    name: i32,
    value: Vec<u8>,
}

impl Sockets {
    fn get(&self, inode: u64) -> Known {
        self.by_inode.get(&inode).cloned().unwrap_or_default()
    }

    fn entry(&mut self, inode: u64) -> &mut Known {
        if !self.by_inode.contains_key(&inode) {
            while self.by_inode.len() >= MAX_KNOWN {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.by_inode.remove(&old);
            }
            self.order.push_back(inode);
        }
        self.by_inode.entry(inode).or_default()
    }

    fn forget(&mut self, inode: u64) {
        if self.by_inode.remove(&inode).is_some() {
            self.order.retain(|i| *i != inode);
        }
    }

    fn set_option(&mut self, inode: u64, opt: SockOpt) {
        let known = self.entry(inode);
        known
            .options
            .retain(|o| (o.level, o.name) != (opt.level, opt.name));
        known.options.push(opt);
    }
}

/// Receives one notification; `None` when the target is already gone.
pub fn recv(listener: RawFd) -> Option<libc::seccomp_notif> {
    // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `n` is a valid, writable seccomp_notif for the ioctl.
    let rc = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
    (rc == 0).then_some(n)
}

fn id_valid(listener: RawFd, id: u64) -> bool {
    // SAFETY: the ioctl reads a u64 id.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
}

/// Answers a notification: the call returns `-1` with `errno`, or 0.
fn respond(listener: RawFd, id: u64, errno: i32) {
    send_response(listener, id, -errno, 0);
}

/// Lets the notified call run as the hook made it.
fn respond_continue(listener: RawFd, id: u64) {
    send_response(
        listener,
        id,
        0,
        libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    );
}

fn send_response(listener: RawFd, id: u64, error: i32, flags: u32) {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error,
        flags,
    };
    // SAFETY: `resp` is a valid seccomp_notif_resp; a failure (the target
    // died meanwhile) needs no handling.
    let _ = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn read_target(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes `buf`, which we own and which is `len` bytes;
    // the remote range is only read by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n != len as isize {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            eprintln!(
                "sandbox-runner: cannot read the hook's memory ({e}); \
                 in root mode the runner needs CAP_SYS_PTRACE"
            );
        }
        return Err(libc::EFAULT);
    }
    Ok(buf)
}

/// A hook's socket as `/proc` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FdInfo {
    /// File status flags and `O_CLOEXEC` (for the descriptor).
    flags: i32,
    inode: u64,
}

/// `flags:` (octal) and `ino:` of a `/proc/<pid>/fdinfo/<fd>` text.
fn parse_fdinfo(text: &str) -> Option<FdInfo> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    Some(FdInfo {
        flags: i32::from_str_radix(field("flags")?, 8).ok()?,
        inode: field("ino")?.parse().ok()?,
    })
}

/// The address family of a TCP socket from its `system.sockprotoname`.
fn tcp_family(protoname: &[u8]) -> Option<i32> {
    match protoname.strip_suffix(b"\0").unwrap_or(protoname) {
        b"TCP" => Some(libc::AF_INET),
        b"TCPv6" => Some(libc::AF_INET6),
        _ => None,
    }
}

/// The kernel's errno for a `/proc` read of descriptor `fd` that failed.
fn proc_errno(e: &std::io::Error, fd: i32) -> i32 {
    match e.raw_os_error() {
        Some(libc::ENOENT) => libc::EBADF,
        _ => {
            eprintln!(
                "sandbox-runner: cannot read the hook's descriptor {fd} ({e}); \
                 in root mode the runner needs CAP_SYS_PTRACE"
            );
            libc::EPERM
        }
    }
}

fn fd_info(tid: i32, fd: i32) -> Result<FdInfo, i32> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))
        .map_err(|e| proc_errno(&e, fd))?;
    parse_fdinfo(&text).ok_or(libc::EIO)
}

/// The family of the hook's TCP socket `fd`: `ENOTSOCK` for anything else.
fn socket_family(tid: i32, fd: i32) -> Result<i32, i32> {
    let path = std::ffi::CString::new(format!("/proc/{tid}/fd/{fd}")).map_err(|_| libc::EIO)?;
    let mut name = [0u8; 32];
    // SAFETY: both strings are NUL-terminated and `name` is writable for its
    // length, which is what the kernel is told.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.sockprotoname".as_ptr(),
            name.as_mut_ptr().cast(),
            name.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::ENODATA) => libc::ENOTSOCK,
            _ => proc_errno(&e, fd),
        });
    }
    // Only TCP sockets can exist in a network hook (the seccomp `socket`
    // filter); anything else is refused rather than guessed at.
    tcp_family(&name[..n as usize]).ok_or(libc::EPERM)
}

/// The kernel's own answer when the address is not of the socket's family
/// (`EINVAL` for an IPv4 address too short for an IPv6 socket).
fn family_mismatch(family: i32, dest: SocketAddr, len: usize) -> Option<i32> {
    match (family, dest) {
        (libc::AF_INET, SocketAddr::V4(_)) | (libc::AF_INET6, SocketAddr::V6(_)) => None,
        (libc::AF_INET6, SocketAddr::V4(_)) if len < 24 => Some(libc::EINVAL),
        _ => Some(libc::EAFNOSUPPORT),
    }
}

/// Dispatches one notification: `setsockopt` is recorded at once, `connect`
/// gets a thread of its own (a blocking connect must not stall the runner's
/// deadline loop). At most one notification per hook thread is pending, so
/// RLIMIT_NPROC bounds these threads too.
pub fn handle(sup: &Arc<Supervisor>, n: libc::seccomp_notif) {
    let listener = sup.listener.as_raw_fd();
    match i64::from(n.data.nr) {
        libc::SYS_setsockopt => {
            record_option(sup, &n);
            respond_continue(listener, n.id);
        }
        libc::SYS_connect => {
            let handler = Arc::clone(sup);
            let spawned = std::thread::Builder::new().spawn(move || {
                let errno = carry_out_connect(&handler, &n);
                respond(handler.listener.as_raw_fd(), n.id, errno);
            });
            if spawned.is_err() {
                // No thread for it: refuse rather than leave the hook waiting.
                respond(listener, n.id, libc::EAGAIN);
            }
        }
        _ => respond(listener, n.id, libc::ENOSYS),
    }
}

/// Records an allowlisted `setsockopt` for the socket it names. Whatever
/// cannot be read is not recorded; the call itself proceeds either way and
/// the kernel answers it (`EBADF`, `EFAULT`, ...) as usual.
fn record_option(sup: &Supervisor, n: &libc::seccomp_notif) {
    let [fd, level, name, value, len, _] = n.data.args;
    let (fd, level, name, len) = (fd as i32, level as i32, name as i32, len as u32 as usize);
    let allowed = policy::SETSOCKOPT_ALLOWED
        .iter()
        .any(|(_, l, o)| (*l, *o) == (level, name));
    if !allowed || len > MAX_OPTION {
        return;
    }
    let tid = n.pid as i32;
    let (Ok(value), Ok(info)) = (read_target(tid, value, len), fd_info(tid, fd)) else {
        return;
    };
    if !id_valid(sup.listener.as_raw_fd(), n.id) {
        return;
    }
    sup.sockets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .set_option(info.inode, SockOpt { level, name, value });
}

/// The answer to one `connect`: 0 or an errno (`EINPROGRESS` included).
/// Every notification gets one, whatever fails (a task that is gone makes
/// the answer a no-op).
fn carry_out_connect(sup: &Supervisor, n: &libc::seccomp_notif) -> i32 {
    let [fd, addr, len, ..] = n.data.args;
    let (fd, len) = (fd as i32, len as u32 as usize);
    if len > MAX_SOCKADDR {
        return libc::EINVAL;
    }
    // The calling thread's id in the runner's PID namespace: its memory and
    // descriptor table are the ones the call names.
    let tid = n.pid as i32;
    let raw = match read_target(tid, addr, len) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let info = match fd_info(tid, fd) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let family = match socket_family(tid, fd) {
        Ok(f) => f,
        Err(e) => return e,
    };
    // The id may have been reused between the notification and the reads;
    // a still-valid notification proves they came from the waiting thread.
    if !id_valid(sup.listener.as_raw_fd(), n.id) {
        return libc::ESRCH;
    }
    let Some(dest) = netguard::parse_sockaddr(&raw) else {
        return libc::EAFNOSUPPORT;
    };
    if let Some(errno) = family_mismatch(family, dest, len) {
        return errno;
    }
    let known = sup
        .sockets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(info.inode);
    if let Some((local, remote)) = known.connection {
        match sockdiag::connection(local, remote, info.inode) {
            Ok(Connection::Connecting) => return libc::EALREADY,
            Ok(Connection::Connected) => return libc::EISCONN,
            Ok(Connection::Gone) => {}
            Err(e) => {
                eprintln!(
                    "sandbox-runner: cannot learn the state of a connection to {remote} \
                     (sock_diag: {}); answering EISCONN",
                    std::io::Error::from_raw_os_error(e)
                );
                return libc::EISCONN;
            }
        }
    }
    let verdict = netguard::check(dest, &sup.policy).and_then(|allowed| match allowed {
        Allowed::NameServer => Ok(()),
        Allowed::Remote => {
            let ip = netguard::canonical(dest.ip());
            let route = rtnetlink::route_type(ip, sup.hook_ids.0, dest.port());
            netguard::route_verdict(ip, route)
        }
    });
    if let Err(why) = verdict {
        eprintln!("sandbox-runner: refused connect to {dest}: {why}");
        return libc::ENETUNREACH;
    }
    let sock = match socket_as(family, sup.hook_ids) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if info.flags & libc::O_NONBLOCK != 0 {
        let nonblock = nix::fcntl::OFlag::O_NONBLOCK;
        if nix::fcntl::fcntl(&sock, nix::fcntl::FcntlArg::F_SETFL(nonblock)).is_err() {
            return libc::EIO;
        }
    }
    for opt in &known.options {
        // The hook's own call with this value may have failed as well; the
        // kernel checks it the same way here.
        let _ = set_option(&sock, opt);
    }
    let result = connect(&sock, dest);
    if result != 0 && result != libc::EINPROGRESS {
        return result;
    }
    let (Some(local), Ok(stat)) = (local_addr(&sock), nix::sys::stat::fstat(&sock)) else {
        return libc::EIO;
    };
    let cloexec = info.flags & libc::O_CLOEXEC != 0;
    if let Err(e) = install(sup.listener.as_raw_fd(), n.id, &sock, fd, cloexec) {
        return e;
    }
    let mut sockets = sup.sockets.lock().unwrap_or_else(PoisonError::into_inner);
    sockets.forget(info.inode);
    *sockets.entry(stat.st_ino) = Known {
        options: known.options,
        connection: Some((local, dest)),
    };
    result
}

/// A TCP socket of `family` owned by `ids`: in root mode the runner's
/// thread takes them as its fs ids for the `socket` call (per thread, and
/// only the owner changes: the socket's inode and credentials, which
/// routing rules, `RTA_UID` and firewall owner matches read), then returns
/// to its own. The owner is read back.
fn socket_as(family: i32, ids: (u32, u32)) -> Result<OwnedFd, i32> {
    // SAFETY: geteuid/getegid cannot fail.
    let own = unsafe { (libc::geteuid(), libc::getegid()) };
    let switch = own != ids;
    if switch {
        // SAFETY: raw setfsgid/setfsuid change this thread's fs ids only
        // (glibc would not broadcast them either); no memory is involved.
        unsafe {
            libc::syscall(libc::SYS_setfsgid, ids.1);
            libc::syscall(libc::SYS_setfsuid, ids.0);
        }
    }
    // SAFETY: socket takes integers and returns a new fd or -1.
    let rc = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    };
    let errno = last_errno();
    if switch {
        // SAFETY: as above, back to the thread's own ids.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, own.0);
            libc::syscall(libc::SYS_setfsgid, own.1);
        }
    }
    if rc < 0 {
        return Err(errno);
    }
    // SAFETY: the kernel just returned this fd to us.
    let sock = unsafe { OwnedFd::from_raw_fd(rc) };
    match nix::sys::stat::fstat(&sock) {
        Ok(st) if (st.st_uid, st.st_gid) == ids => Ok(sock),
        _ => {
            eprintln!(
                "sandbox-runner: a socket for the hook is not owned by {}:{}; refusing the connect",
                ids.0, ids.1
            );
            Err(libc::EPERM)
        }
    }
}

fn set_option(sock: &OwnedFd, opt: &SockOpt) -> Result<(), i32> {
    // SAFETY: `value` is a live buffer of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            opt.level,
            opt.name,
            opt.value.as_ptr().cast(),
            opt.value.len() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(last_errno()) }
}

fn local_addr(sock: &OwnedFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data, large enough for both families.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` is writable for `len` bytes, which the kernel is told.
    let rc = unsafe {
        libc::getsockname(
            sock.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel wrote `len` (at most the storage's size) bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&ss as *const libc::sockaddr_storage).cast::<u8>(),
            (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
        )
    };
    netguard::parse_sockaddr(bytes)
}

/// Puts `sock` at descriptor `fd` of the task waiting on notification `id`,
/// replacing what was there.
fn install(listener: RawFd, id: u64, sock: &OwnedFd, fd: i32, cloexec: bool) -> Result<(), i32> {
    let addfd = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: sock.as_raw_fd() as u32,
        newfd: fd as u32,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: `addfd` is a valid seccomp_notif_addfd; the kernel installs a
    // new reference to `sock`'s file in the target and returns its number.
    let rc = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) };
    match rc {
        _ if rc == fd => Ok(()),
        _ if rc < 0 => Err(last_errno()),
        _ => Err(libc::EIO),
    }
}

/// `connect(2)` on `sock` with the supervisor's own copy of the address;
/// returns 0 or the errno.
fn connect(sock: &OwnedFd, dest: SocketAddr) -> i32 {
    // SAFETY: sockaddr_storage is plain data, large enough for both families.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match dest {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage; both are plain data.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage; both are plain data.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `ss` holds a valid sockaddr of `len` bytes; `sock` is open.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    if rc == 0 {
        return 0;
    }
    match last_errno() {
        // Interrupted, the connection goes on in the background (calling
        // connect again would only say EALREADY): wait for its outcome.
        libc::EINTR => finish_connect(sock),
        e => e,
    }
}

fn finish_connect(sock: &OwnedFd) -> i32 {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return e as i32,
        }
    }
    match nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::SocketError) {
        Ok(e) => e,
        Err(e) => e as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_gives_status_flags_and_inode() {
        let text = "pos:\t0\nflags:\t02004002\nmnt_id:\t10\nino:\t998303\n";
        let info = parse_fdinfo(text).unwrap();
        assert_eq!(info.inode, 998_303);
        assert_ne!(info.flags & libc::O_NONBLOCK, 0);
        assert_ne!(info.flags & libc::O_CLOEXEC, 0);
        assert_eq!(info.flags & libc::O_ACCMODE, libc::O_RDWR);
        let blocking = parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t7\n").unwrap();
        assert_eq!(blocking.flags & (libc::O_NONBLOCK | libc::O_CLOEXEC), 0);
        // Anything unreadable is no description at all.
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t09\nino:\t7\n"), None);
        assert_eq!(parse_fdinfo("flags:\t02\n"), None);
    }

    #[test]
    fn only_tcp_protocol_names_have_a_family() {
        assert_eq!(tcp_family(b"TCP\0"), Some(libc::AF_INET));
        assert_eq!(tcp_family(b"TCPv6\0"), Some(libc::AF_INET6));
        for other in [
            &b"UDP\0"[..],
            b"MPTCP\0",
            b"MPTCPv6\0",
            b"UNIX\0",
            b"",
            b"TCPv",
        ] {
            assert_eq!(tcp_family(other), None, "{other:?}");
        }
    }

    #[test]
    fn an_address_of_the_other_family_gets_the_kernels_errno() {
        let v4: SocketAddr = "93.184.216.34:80".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(family_mismatch(libc::AF_INET, v4, 16), None);
        assert_eq!(family_mismatch(libc::AF_INET6, v6, 28), None);
        assert_eq!(family_mismatch(libc::AF_INET6, v4, 16), Some(libc::EINVAL));
        assert_eq!(
            family_mismatch(libc::AF_INET6, v4, 28),
            Some(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            family_mismatch(libc::AF_INET, v6, 28),
            Some(libc::EAFNOSUPPORT)
        );
    }

    #[test]
    fn known_sockets_keep_the_latest_value_of_each_option_and_stay_bounded() {
        let mut s = Sockets::default();
        let opt = |name, v: u8| SockOpt {
            level: libc::IPPROTO_TCP,
            name,
            value: vec![v, 0, 0, 0],
        };
        s.set_option(1, opt(libc::TCP_NODELAY, 1));
        s.set_option(1, opt(libc::TCP_KEEPIDLE, 30));
        s.set_option(1, opt(libc::TCP_NODELAY, 0));
        assert_eq!(
            s.get(1).options,
            vec![opt(libc::TCP_KEEPIDLE, 30), opt(libc::TCP_NODELAY, 0)]
        );
        assert!(s.get(2).options.is_empty());
        for inode in 10..10 + MAX_KNOWN as u64 {
            s.entry(inode);
        }
        assert_eq!(s.by_inode.len(), MAX_KNOWN);
        assert!(s.get(1).options.is_empty(), "the oldest is forgotten first");
        s.forget(10);
        assert_eq!(s.by_inode.len(), MAX_KNOWN - 1);
        assert_eq!(s.order.len(), MAX_KNOWN - 1);
    }
}
