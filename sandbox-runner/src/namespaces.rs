//! Process set-up and namespaces: inherited fds, the death signal, the new
//! session, `unshare`, the user-namespace id maps, and `fork`.
//!
//! `unshare(CLONE_NEWPID)` only moves the *children* of the caller into the
//! new PID namespace, so the runner forks a reaper right after it: the reaper
//! is PID 1 there, and when it dies the kernel kills every process of the
//! namespace, which is how the runner tears a hook down.

use crate::policy::Namespace;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Closes every fd above stderr, so nothing the daemon had open reaches the
/// hook.
pub fn close_inherited_fds() -> std::io::Result<()> {
    // SAFETY: close_range only closes descriptors; nothing in this process
    // holds one of them yet (called first thing in main, before any File or
    // socket is opened).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every fd above `keep` close-on-exec (in the hook process, after the
/// fds it keeps were moved to 0..=3).
pub fn cloexec_above(keep: u32) -> std::io::Result<()> {
    // SAFETY: CLOSE_RANGE_CLOEXEC only sets a flag on open descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            keep + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// SIGKILL this process when its parent dies.
pub fn die_with_parent() -> nix::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
}

/// A new session: no controlling terminal, its own process group.
pub fn new_session() -> nix::Result<Pid> {
    nix::unistd::setsid()
}

/// The clone flags for a set of namespaces.
pub fn clone_flags(list: &[Namespace]) -> CloneFlags {
    list.iter().fold(CloneFlags::empty(), |f, ns| {
        f | match ns {
            Namespace::User => CloneFlags::CLONE_NEWUSER,
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Net => CloneFlags::CLONE_NEWNET,
        }
    })
}

/// Unshares all of `list` in one call.
pub fn unshare(list: &[Namespace]) -> nix::Result<()> {
    nix::sched::unshare(clone_flags(list))
}

/// In a fresh user namespace: deny `setgroups` and map `inside` ids to the
/// caller's own outside ids (the only mapping an unprivileged process may
/// write). The hook then runs as `inside` there and as the caller outside.
pub fn write_id_maps(outside: (u32, u32), inside: (u32, u32)) -> std::io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write(
        "/proc/self/uid_map",
        format!("{} {} 1\n", inside.0, outside.0),
    )?;
    std::fs::write(
        "/proc/self/gid_map",
        format!("{} {} 1\n", inside.1, outside.1),
    )?;
    Ok(())
}

/// Sets the UTS name the hook sees (its own namespace).
pub fn set_hostname(name: &str) -> nix::Result<()> {
    nix::unistd::sethostname(name)
}

/// `fork(2)`.
///
/// The runner calls it only while it has a single thread (before the
/// supervisor starts any), so the child may allocate and run ordinary Rust.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the runner is single-threaded whenever it forks (the reaper and
    // the hook process are forked before the supervisor spawns threads), so no
    // lock can be held by a thread that does not exist in the child.
    unsafe { nix::unistd::fork() }
}

/// A pidfd for `pid`; readable once the process has exited.
pub fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// How many bytes wait unread in the pipe `fd` is an end of (`FIONREAD`).
pub fn unread_bytes(fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at
    // `n` for the length of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Ends the calling process at once, without running destructors or atexit
/// handlers (used in forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Whether the write end of `lifeline` is still open somewhere (the read end
/// shows POLLHUP once every writer is gone).
pub fn parent_alive(lifeline: &OwnedFd) -> bool {
    poll_now(lifeline, PollFlags::POLLIN) & PollFlags::POLLHUP.bits() == 0
}

/// Whether the read end of the pipe `writer` writes to is still open.
pub fn reader_alive(writer: &OwnedFd) -> bool {
    poll_now(writer, PollFlags::POLLOUT) & PollFlags::POLLERR.bits() == 0
}

fn poll_now(fd: &OwnedFd, events: PollFlags) -> i16 {
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0].revents().map(|r| r.bits()).unwrap_or(0),
        Err(_) => PollFlags::POLLHUP.bits() | PollFlags::POLLERR.bits(),
    }
}
