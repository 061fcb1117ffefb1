//! The supervisor side of seccomp user notification: receive a hook's
//! `connect` (from any of its threads), read its address, decide with
//! `netguard::check` and the kernel's route lookup, connect the hook's own
//! socket from here, and answer. See `netguard` for the design.

use crate::netguard::{self, Allowed, ConnectPolicy};
use crate::rtnetlink;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Everything the supervisor needs for one hook's connects.
pub struct Supervisor {
    /// The seccomp notification listener (received from the hook).
    pub listener: OwnedFd,
    /// A pidfd of the hook process, opened and sent by the hook itself with
    /// the listener. Every task that can raise a notification is a thread of
    /// that process sharing its descriptor table (fork is refused, and the
    /// clone filter requires `CLONE_FILES`), so this one pidfd finds the
    /// socket of a connect from any thread. (A pidfd of the calling thread
    /// would need `PIDFD_THREAD`, which kernels before 6.9 lack.)
    pub hook: OwnedFd,
    pub policy: ConnectPolicy,
    /// The kernel uid the hook's sockets carry: routing rules may select on
    /// it, so the route lookup asks as that uid.
    pub hook_uid: u32,
}

/// Largest `sockaddr` read from a hook (`sockaddr_storage`).
const MAX_SOCKADDR: usize = 128;

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

fn respond(listener: RawFd, id: u64, errno: i32) {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -errno,
        flags: 0,
    };
    // SAFETY: `resp` is a valid seccomp_notif_resp; a failure (the target
    // died meanwhile) needs no handling.
    let _ = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
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
                "sandbox-runner: cannot read the hook's connect address ({e}); \
                 in root mode the runner needs CAP_SYS_PTRACE"
            );
        }
        return Err(libc::EFAULT);
    }
    Ok(buf)
}

fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Result<OwnedFd, i32> {
    // SAFETY: pidfd_getfd takes two fds and flags and returns a new fd or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32) };
    if rc < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn sockopt(fd: &OwnedFd, opt: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: v and len are valid for an int-sized option.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

/// The answer to one `connect`: 0 or an errno. Every notification gets one,
/// whatever fails (a task that is gone makes the answer a no-op).
fn decide(sup: &Supervisor, n: &libc::seccomp_notif) -> i32 {
    let [sockfd, addr, len, ..] = n.data.args;
    let len = len as usize;
    if len > MAX_SOCKADDR {
        return libc::EINVAL;
    }
    // The calling thread's id in the runner's PID namespace: threads share
    // the process's memory, so any of them reads the same bytes.
    let raw = match read_target(n.pid as i32, addr, len) {
        Ok(r) => r,
        Err(e) => return e,
    };
    // The id may have been reused between the notification and the read; a
    // still-valid notification proves the bytes came from the waiting task.
    if !id_valid(sup.listener.as_raw_fd(), n.id) {
        return libc::ESRCH;
    }
    let Some(dest) = netguard::parse_sockaddr(&raw) else {
        return libc::EAFNOSUPPORT;
    };
    let verdict = netguard::check(dest, &sup.policy).and_then(|allowed| match allowed {
        Allowed::NameServer => Ok(()),
        Allowed::Remote => {
            let ip = netguard::canonical(dest.ip());
            let route = rtnetlink::route_type(ip, sup.hook_uid, dest.port());
            netguard::route_verdict(ip, route)
        }
    });
    if let Err(why) = verdict {
        eprintln!("sandbox-runner: refused connect to {dest}: {why}");
        return libc::ENETUNREACH;
    }
    let sock = match pidfd_getfd(&sup.hook, sockfd as i32) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let domain_ok = matches!(
        sockopt(&sock, libc::SO_DOMAIN),
        Some(libc::AF_INET | libc::AF_INET6)
    );
    if !domain_ok
        || sockopt(&sock, libc::SO_TYPE) != Some(libc::SOCK_STREAM)
        || sockopt(&sock, libc::SO_PROTOCOL) != Some(libc::IPPROTO_TCP)
    {
        return libc::EPERM;
    }
    connect(&sock, dest)
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
    loop {
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
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if errno != libc::EINTR {
            return errno;
        }
    }
}

/// Handles one notification on its own thread: a blocking connect must not
/// stall the runner's deadline loop. At most one notification per hook
/// thread is pending, so RLIMIT_NPROC bounds these threads too.
pub fn spawn_handler(sup: Arc<Supervisor>, n: libc::seccomp_notif) {
    let handler = Arc::clone(&sup);
    let spawned = std::thread::Builder::new().spawn(move || {
        let errno = decide(&handler, &n);
        respond(handler.listener.as_raw_fd(), n.id, errno);
    });
    if spawned.is_err() {
        // No thread for it: refuse rather than leave the hook waiting.
        respond(sup.listener.as_raw_fd(), n.id, libc::EAGAIN);
    }
}
