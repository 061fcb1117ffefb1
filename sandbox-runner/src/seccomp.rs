//! The hook's seccomp filters, built from `policy::seccomp_policy`.
//!
//! Three filters are installed, in this order, right before `execve`:
//!
//! 1. **gate** (hand-written BPF): kill any call from another architecture
//!    (32-bit `int 0x80`) or with the x32 bit; answer `clone3` with `ENOSYS`
//!    so glibc falls back to `clone`, whose flags the allowlist can inspect;
//!    for network bots, send `connect` to the runner's user-notification
//!    supervisor (installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, and
//!    `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` so that a connect the
//!    supervisor has taken on completes rather than being cut short by a
//!    signal); and answer `setsockopt` with `ENOPROTOOPT` unless its (level,
//!    option) pair is on the policy's allowlist (an errno of its own, which
//!    libraries read as "not available", where the allowlist's `EPERM` would
//!    be an error). For network bots an allowed pair also goes to the
//!    supervisor, which records it and lets the call proceed unchanged.
//! 2. **kill list**: `SECCOMP_RET_KILL_PROCESS` for calls only an attacker
//!    makes (ptrace, mount, unshare, bpf, io_uring, setuid family...).
//! 3. **allowlist**: default `EPERM`; plain and argument-filtered calls allowed.
//!
//! How several filters combine: the kernel runs all of them and keeps the most
//! restrictive action (KILL > TRAP > ERRNO > USER_NOTIF > ALLOW); between two
//! ERRNO answers the most recently installed filter wins. That is why the
//! allowlist *allows* `clone3`: the gate's `ENOSYS` then stands, whereas an
//! `EPERM` from the newer allowlist would override it and break threads. It
//! is also why the allowlist allows `connect` and `setsockopt`: the gate's
//! USER_NOTIF and `ENOPROTOOPT` then stand. The kill list does not name `seccomp` itself, because the allowlist
//! still has to be installed after it (the allowlist refuses it with EPERM).
//!
//! A fork template's child (`template.rs`) starts with its template's three
//! filters, whose allowlist is a hook's plus what forking needs, and adds
//! one short filter that gives each call the template's allowlist widened
//! back to the hook's rule ([`child_programs`], [`narrowing_program`]): the
//! stack then answers every call as a fresh hook's three filters do, which
//! the tests check by running both stacks in a BPF interpreter.
//!
//! `seccompiler::apply_filter` sets `no_new_privs` itself; the runner sets it
//! before Landlock anyway.

use crate::policy::{ArgCheck, SeccompPolicy};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};

/// Syscall numbers of every name the policy uses (x86_64).
const TABLE: &[(&str, i64)] = &[
    ("access", libc::SYS_access),
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("bpf", libc::SYS_bpf),
    ("brk", libc::SYS_brk),
    ("capget", libc::SYS_capget),
    ("capset", libc::SYS_capset),
    ("chdir", libc::SYS_chdir),
    ("chmod", libc::SYS_chmod),
    ("chroot", libc::SYS_chroot),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("connect", libc::SYS_connect),
    ("delete_module", libc::SYS_delete_module),
    ("dup", libc::SYS_dup),
    ("dup2", libc::SYS_dup2),
    ("dup3", libc::SYS_dup3),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("eventfd2", libc::SYS_eventfd2),
    ("execve", libc::SYS_execve),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("fchdir", libc::SYS_fchdir),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fcntl", libc::SYS_fcntl),
    ("fdatasync", libc::SYS_fdatasync),
    ("finit_module", libc::SYS_finit_module),
    ("flock", libc::SYS_flock),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("fstat", libc::SYS_fstat),
    ("fstatfs", libc::SYS_fstatfs),
    ("fsync", libc::SYS_fsync),
    ("ftruncate", libc::SYS_ftruncate),
    ("futex", libc::SYS_futex),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("getcwd", libc::SYS_getcwd),
    ("getdents64", libc::SYS_getdents64),
    ("getegid", libc::SYS_getegid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getgroups", libc::SYS_getgroups),
    ("getpeername", libc::SYS_getpeername),
    ("getpgrp", libc::SYS_getpgrp),
    ("getpid", libc::SYS_getpid),
    ("getppid", libc::SYS_getppid),
    ("getrandom", libc::SYS_getrandom),
    ("getresgid", libc::SYS_getresgid),
    ("getresuid", libc::SYS_getresuid),
    ("getrusage", libc::SYS_getrusage),
    ("getsockname", libc::SYS_getsockname),
    ("getsockopt", libc::SYS_getsockopt),
    ("gettid", libc::SYS_gettid),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getuid", libc::SYS_getuid),
    ("getxattr", libc::SYS_getxattr),
    ("init_module", libc::SYS_init_module),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("ioctl", libc::SYS_ioctl),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("kill", libc::SYS_kill),
    ("landlock_add_rule", libc::SYS_landlock_add_rule),
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
    ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
    ("link", libc::SYS_link),
    ("linkat", libc::SYS_linkat),
    ("lseek", libc::SYS_lseek),
    ("lstat", libc::SYS_lstat),
    ("madvise", libc::SYS_madvise),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("memfd_secret", libc::SYS_memfd_secret),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("mmap", libc::SYS_mmap),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("mprotect", libc::SYS_mprotect),
    ("mremap", libc::SYS_mremap),
    ("munmap", libc::SYS_munmap),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nanosleep", libc::SYS_nanosleep),
    ("newfstatat", libc::SYS_newfstatat),
    ("open", libc::SYS_open),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pipe", libc::SYS_pipe),
    ("pipe2", libc::SYS_pipe2),
    ("pivot_root", libc::SYS_pivot_root),
    ("poll", libc::SYS_poll),
    ("ppoll", libc::SYS_ppoll),
    ("prctl", libc::SYS_prctl),
    ("pread64", libc::SYS_pread64),
    ("preadv", libc::SYS_preadv),
    ("prlimit64", libc::SYS_prlimit64),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pselect6", libc::SYS_pselect6),
    ("ptrace", libc::SYS_ptrace),
    ("pwrite64", libc::SYS_pwrite64),
    ("pwritev", libc::SYS_pwritev),
    ("quotactl", libc::SYS_quotactl),
    ("read", libc::SYS_read),
    ("readlink", libc::SYS_readlink),
    ("readlinkat", libc::SYS_readlinkat),
    ("readv", libc::SYS_readv),
    ("reboot", libc::SYS_reboot),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmsg", libc::SYS_recvmsg),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("request_key", libc::SYS_request_key),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("rmdir", libc::SYS_rmdir),
    ("rseq", libc::SYS_rseq),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_yield", libc::SYS_sched_yield),
    ("seccomp", libc::SYS_seccomp),
    ("select", libc::SYS_select),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendto", libc::SYS_sendto),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("setfsgid", libc::SYS_setfsgid),
    ("setfsuid", libc::SYS_setfsuid),
    ("setgid", libc::SYS_setgid),
    ("setgroups", libc::SYS_setgroups),
    ("setns", libc::SYS_setns),
    ("setregid", libc::SYS_setregid),
    ("setresgid", libc::SYS_setresgid),
    ("setresuid", libc::SYS_setresuid),
    ("setreuid", libc::SYS_setreuid),
    ("setrlimit", libc::SYS_setrlimit),
    ("sethostname", libc::SYS_sethostname),
    ("setsid", libc::SYS_setsid),
    ("setsockopt", libc::SYS_setsockopt),
    ("setuid", libc::SYS_setuid),
    ("shutdown", libc::SYS_shutdown),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("socket", libc::SYS_socket),
    ("stat", libc::SYS_stat),
    ("statfs", libc::SYS_statfs),
    ("statx", libc::SYS_statx),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("symlink", libc::SYS_symlink),
    ("symlinkat", libc::SYS_symlinkat),
    ("sysinfo", libc::SYS_sysinfo),
    ("tgkill", libc::SYS_tgkill),
    ("time", libc::SYS_time),
    ("times", libc::SYS_times),
    ("truncate", libc::SYS_truncate),
    ("umask", libc::SYS_umask),
    ("umount2", libc::SYS_umount2),
    ("uname", libc::SYS_uname),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("unshare", libc::SYS_unshare),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("utimensat", libc::SYS_utimensat),
    ("wait4", libc::SYS_wait4),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
];

/// Where a hook's filters, built for a fork template's children, hold the
/// child's pid (`tgkill` to its own threads only): above any pid the kernel
/// hands out (`PID_MAX_LIMIT` is 2^22), so no other instruction's constant
/// equals it. Each child writes its own pid over it (`hx_fork.py`).
pub const PID_PLACEHOLDER: u32 = 0x7ead_0001;

/// A network-less hook's three filters (gate, kill list, allowlist), in the
/// order they are installed, as raw `sock_filter` arrays (8 bytes each:
/// code, jt, jf, k in native byte order), with [`PID_PLACEHOLDER`] for the
/// hook's pid: what a fork template's filters and its child's
/// ([`child_programs`]) must amount to.
#[cfg(test)]
pub fn hook_programs() -> Result<Vec<Vec<u8>>, String> {
    let policy = crate::policy::seccomp_policy(crate::policy::Network::Denied, PID_PLACEHOLDER);
    let gate = gate_program(&policy)?;
    let kill = kill_program(&policy)?;
    let allow = allow_program(&policy)?;
    Ok(vec![
        to_bytes(gate.iter().map(|i| (i.code, i.jt, i.jf, i.k))),
        to_bytes(kill.iter().map(|i| (i.code, i.jt, i.jf, i.k))),
        to_bytes(allow.iter().map(|i| (i.code, i.jt, i.jf, i.k))),
    ])
}

/// What a child of a fork template confined by `template` installs on top
/// of the template's filters so that, together, they decide every call as a
/// fresh hook's three filters ([`hook_programs`]) do: the hook's gate and
/// kill list only where the template's differ from them (they are the same
/// byte for byte today, so a child installs neither), and a short filter
/// that gives back to the hook's rule every call whose rule the template's
/// allowlist widened ([`narrowing_program`]), in place of the hook's whole
/// allowlist. The kernel keeps the most restrictive answer of all filters,
/// so the template's allowlist (a superset of the hook's) and this filter
/// leave exactly the hook's; between two `ERRNO` answers the newer filter
/// wins, and both allowlists answer `EPERM` where they refuse, so which one
/// answers makes no difference (the gate's `ENOSYS` and `ENOPROTOOPT`
/// stand because both allowlists allow those calls, as the hook's does).
/// The tests run both stacks of filters over every syscall number and the
/// arguments that matter.
///
/// The hook's gate and allowlist again would cost a child about 0.2 ms of
/// CPU in the kernel, which translates each filter and, under the signal
/// lock, runs it once per syscall number to find what it always allows;
/// the narrowing filter has a few dozen instructions and costs about 0.03.
///
/// # Errors
/// When a program does not compile, or `template` does not allow all that
/// a hook may do (a policy bug).
pub fn child_programs(template: &SeccompPolicy) -> Result<Vec<Vec<u8>>, String> {
    let hook = crate::policy::seccomp_policy(crate::policy::Network::Denied, PID_PLACEHOLDER);
    let mut programs = Vec::new();
    let gate = gate_program(&hook)?;
    if gate_program(template)? != gate {
        programs.push(to_bytes(gate.iter().map(|i| (i.code, i.jt, i.jf, i.k))));
    }
    let kill = kill_program(&hook)?;
    if kill_program(template)? != kill {
        programs.push(to_bytes(kill.iter().map(|i| (i.code, i.jt, i.jf, i.k))));
    }
    let narrow = narrowing_program(template, &hook)?;
    programs.push(to_bytes(narrow.iter().map(|i| (i.code, i.jt, i.jf, i.k))));
    Ok(programs)
}

/// What an allowlist does with one syscall.
#[derive(Debug, PartialEq)]
enum Rule<'a> {
    Refused,
    Always,
    When(&'a [Vec<ArgCheck>]),
}

fn rule<'a>(policy: &'a SeccompPolicy, name: &str) -> Rule<'a> {
    if policy
        .allowed
        .iter()
        .chain(&policy.enosys)
        .any(|n| *n == name)
    {
        return Rule::Always;
    }
    match policy.filtered.iter().find(|f| f.name == name) {
        Some(f) if f.alternatives.iter().any(Vec::is_empty) => Rule::Always,
        Some(f) => Rule::When(&f.alternatives),
        None => Rule::Refused,
    }
}

fn rule_names(policy: &SeccompPolicy) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = policy
        .allowed
        .iter()
        .chain(&policy.enosys)
        .copied()
        .chain(policy.filtered.iter().map(|f| f.name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const EPERM_K: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// A filter that leaves, on top of `template`'s allowlist, exactly `hook`'s:
/// each syscall the two allowlists treat differently gets the hook's rule
/// (allowed when one of its alternatives matches, else `EPERM`), every other
/// call is allowed (the template's allowlist already decides it as the
/// hook's would), and a call from another architecture is killed, as the
/// gate does. The argument checks compare as the allowlist's (seccompiler's
/// `Eq` and `MaskedEq`): the low 32 bits of an `int` argument, both halves
/// of a wide one.
///
/// # Errors
/// When `template` refuses a call `hook` allows, or allows only some of
/// what `hook` allows of it: no filter on top could give that back.
pub fn narrowing_program(
    template: &SeccompPolicy,
    hook: &SeccompPolicy,
) -> Result<Vec<libc::sock_filter>, String> {
    for name in rule_names(hook) {
        let ok = match (rule(template, name), rule(hook, name)) {
            (Rule::Always, _) | (_, Rule::Refused) => true,
            (Rule::When(t), Rule::When(h)) => h.iter().all(|alt| t.contains(alt)),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "the template's allowlist does not allow all that a hook's does of {name}"
            ));
        }
    }
    let mut differing = Vec::new();
    for name in rule_names(template) {
        let (t, h) = (rule(template, name), rule(hook, name));
        if t != h {
            differing.push((nr(name)? as u32, rule_block(&h)?));
        }
    }
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    // One test per differing call, then ALLOW, then the calls' blocks: the
    // test at `i` jumps over the tests after it, the ALLOW and the blocks
    // before its own.
    let n = differing.len();
    let mut before = 0;
    for (i, (number, block)) in differing.iter().enumerate() {
        let jt = u8::try_from(n - i + before)
            .map_err(|_| "the narrowing filter is too long for one jump")?;
        p.push(jump(JEQ_K, *number, jt, 0));
        before += block.len();
    }
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    for (_, block) in differing {
        p.extend(block);
    }
    Ok(p)
}

/// One syscall's rule as a block that ends in RET on every path.
fn rule_block(rule: &Rule) -> Result<Vec<libc::sock_filter>, String> {
    let mut out = Vec::new();
    match rule {
        Rule::Always => out.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW)),
        Rule::Refused => out.push(stmt(RET_K, EPERM_K)),
        Rule::When(alternatives) => {
            for alt in *alternatives {
                // Each word compared: load, mask unless the whole word
                // counts, and on a mismatch jump to the next alternative.
                let mut checks: Vec<libc::sock_filter> = Vec::new();
                for c in alt {
                    let value = c.value & c.mask;
                    let lo = 16 + 8 * u32::from(c.arg);
                    let mut words = vec![(lo, c.mask as u32, value as u32)];
                    if c.wide {
                        words.insert(0, (lo + 4, (c.mask >> 32) as u32, (value >> 32) as u32));
                    }
                    for (offset, mask, value) in words {
                        checks.push(stmt(LD_W_ABS, offset));
                        if mask != u32::MAX {
                            checks.push(stmt(ALU_AND_K, mask));
                        }
                        checks.push(jump(JEQ_K, value, 0, 0));
                    }
                }
                checks.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
                let len = checks.len();
                for (j, ins) in checks.iter_mut().enumerate() {
                    if ins.code == JEQ_K {
                        ins.jf = u8::try_from(len - j - 1)
                            .map_err(|_| "an alternative is too long for one jump")?;
                    }
                }
                out.extend(checks);
            }
            out.push(stmt(RET_K, EPERM_K));
        }
    }
    Ok(out)
}

fn to_bytes(prog: impl Iterator<Item = (u16, u8, u8, u32)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, jt, jf, k) in prog {
        out.extend_from_slice(&code.to_ne_bytes());
        out.push(jt);
        out.push(jf);
        out.extend_from_slice(&k.to_ne_bytes());
    }
    out
}

/// What a child does with [`hook_programs`]: every `k` equal to
/// [`PID_PLACEHOLDER`] becomes `pid` (the Python side does the same).
#[cfg(test)]
pub fn patch_pid(prog: &mut [u8], pid: u32) {
    for ins in prog.chunks_exact_mut(8) {
        if ins[4..8] == PID_PLACEHOLDER.to_ne_bytes() {
            ins[4..8].copy_from_slice(&pid.to_ne_bytes());
        }
    }
}

/// The x86_64 number of a syscall name.
pub fn number(name: &str) -> Option<i64> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

fn nr(name: &str) -> Result<i64, String> {
    number(name).ok_or_else(|| format!("unknown syscall {name}"))
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
/// Offsets in `struct seccomp_data`: `nr`, `arch`, and the low (first, on
/// little-endian x86_64) 32 bits of `args[1]` and `args[2]`. `setsockopt`
/// takes `int level, int optname`: the kernel reads only those halves too.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG1_LO: u32 = 16 + 8;
const OFF_ARG2_LO: u32 = 16 + 2 * 8;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The gate filter's program (see the module docs).
pub fn gate_program(policy: &SeccompPolicy) -> Result<Vec<libc::sock_filter>, String> {
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    for name in &policy.enosys {
        p.push(jump(JEQ_K, nr(name)? as u32, 0, 1));
        p.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    for name in &policy.notify {
        p.push(jump(JEQ_K, nr(name)? as u32, 0, 1));
        p.push(stmt(RET_K, libc::SECCOMP_RET_USER_NOTIF));
    }
    // setsockopt: five instructions per allowed pair, then the refusal. The
    // accumulator holds `nr` until this block, which only ends in RET.
    let allowed_pair = if policy.setsockopt_notify {
        libc::SECCOMP_RET_USER_NOTIF
    } else {
        libc::SECCOMP_RET_ALLOW
    };
    let block = policy.setsockopt.len() * 5 + 1;
    let skip = u8::try_from(block).map_err(|_| "setsockopt allowlist too long for one jump")?;
    p.push(jump(JEQ_K, nr("setsockopt")? as u32, 0, skip));
    for (level, opt) in &policy.setsockopt {
        p.push(stmt(LD_W_ABS, OFF_ARG1_LO));
        p.push(jump(JEQ_K, *level as u32, 0, 3));
        p.push(stmt(LD_W_ABS, OFF_ARG2_LO));
        p.push(jump(JEQ_K, *opt as u32, 0, 1));
        p.push(stmt(RET_K, allowed_pair));
    }
    p.push(stmt(
        RET_K,
        libc::SECCOMP_RET_ERRNO | libc::ENOPROTOOPT as u32,
    ));
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    Ok(p)
}

fn condition(c: &ArgCheck) -> Result<SeccompCondition, String> {
    let len = if c.wide {
        SeccompCmpArgLen::Qword
    } else {
        SeccompCmpArgLen::Dword
    };
    let full = if c.wide {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let op = if c.mask == full {
        SeccompCmpOp::Eq
    } else {
        SeccompCmpOp::MaskedEq(c.mask)
    };
    SeccompCondition::new(c.arg, len, op, c.value).map_err(|e| e.to_string())
}

/// The kill-list program.
pub fn kill_program(policy: &SeccompPolicy) -> Result<BpfProgram, String> {
    let mut rules = BTreeMap::new();
    for name in &policy.killed {
        if *name == "seccomp" {
            continue; // see the module docs: the allowlist refuses it instead
        }
        rules.insert(nr(name)?, vec![]);
    }
    compile(rules, SeccompAction::Allow, SeccompAction::KillProcess)
}

/// The allowlist program.
pub fn allow_program(policy: &SeccompPolicy) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in policy.allowed.iter().chain(&policy.enosys) {
        rules.insert(nr(name)?, vec![]);
    }
    for f in &policy.filtered {
        if f.alternatives.iter().any(Vec::is_empty) {
            rules.insert(nr(f.name)?, vec![]);
            continue;
        }
        let alts = f
            .alternatives
            .iter()
            .map(|alt| {
                let conds = alt.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
                SeccompRule::new(conds).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        rules.insert(nr(f.name)?, alts);
    }
    compile(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// Sets `no_new_privs` and checks it took.
pub fn set_no_new_privs() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    // SAFETY: as above; reads the flag back.
    if rc != 0 || unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } != 1 {
        return Err(format!(
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Installs the gate; returns the notification listener when the policy
/// notifies.
pub fn install_gate(policy: &SeccompPolicy) -> Result<Option<OwnedFd>, String> {
    let prog = gate_program(policy)?;
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let notifies = !policy.notify.is_empty() || policy.setsockopt_notify;
    let flags: libc::c_ulong = if notifies {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    } else {
        0
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if notifies && e.raw_os_error() == Some(libc::EINVAL) {
            // WAIT_KILLABLE_RECV is Linux 5.19's; the supervisor's
            // SECCOMP_IOCTL_NOTIF_ADDFD (5.9) is older, so this one refusal
            // stands for both.
            return Err(format!(
                "gate filter with a connect listener: {e} (network bots need Linux 5.19 or later)"
            ));
        }
        return Err(format!("gate filter: {e}"));
    }
    // SAFETY: prctl with integer arguments; 2 means a filter is active.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } != 2 {
        return Err("seccomp mode is not FILTER after installing the gate".into());
    }
    if flags == 0 {
        Ok(None)
    } else {
        // SAFETY: with NEW_LISTENER the kernel returned a fresh fd we own.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }))
    }
}

/// Installs the kill list, then the allowlist. After this the process can
/// install nothing more.
pub fn install_lists(policy: &SeccompPolicy) -> Result<(), String> {
    let kill = kill_program(policy)?;
    seccompiler::apply_filter(&kill).map_err(|e| format!("kill list: {e}"))?;
    let allow = allow_program(policy)?;
    seccompiler::apply_filter(&allow).map_err(|e| format!("allowlist: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, Network};

    #[test]
    fn every_policy_name_has_a_number() {
        for name in policy::BOT_ALLOWED
            .iter()
            .chain(policy::BOT_KILLED)
            .chain(policy::CONFINE_SYSCALLS)
        {
            assert!(number(name).is_some(), "{name}");
        }
        assert_eq!(number("read"), Some(0));
        assert_eq!(number("clone3"), Some(435));
    }

    /// `struct seccomp_data` for one call.
    fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        data
    }

    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
    const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;

    /// Runs a classic BPF program (the instructions seccompiler and this
    /// module emit; any other fails the test) on one call, as the kernel
    /// would.
    fn run(prog: &[libc::sock_filter], data: &[u8]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                }
                ALU_AND_K => acc &= i.k,
                JA => pc += i.k as usize,
                JEQ_K | JGT_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGT_K => acc > i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                c => panic!("unexpected instruction {c:#x}"),
            }
        }
    }

    fn run_gate(prog: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        run(prog, &data(arch, nr as u32, args))
    }

    /// What a stack of filters (oldest first) answers: the kernel runs
    /// them all, newest first, and keeps the first of the most restrictive
    /// actions (`ACTION_ONLY` compared as signed).
    fn decide(stack: &[Vec<libc::sock_filter>], data: &[u8]) -> u32 {
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        let mut ret = libc::SECCOMP_RET_ALLOW;
        for f in stack.iter().rev() {
            let cur = run(f, data);
            if action(cur) < action(ret) {
                ret = cur;
            }
        }
        ret
    }

    /// A seccompiler program as the kernel's `sock_filter` array.
    fn lower(prog: &BpfProgram) -> Vec<libc::sock_filter> {
        from_bytes(&to_bytes(prog.iter().map(|i| (i.code, i.jt, i.jf, i.k))))
    }

    fn from_bytes(prog: &[u8]) -> Vec<libc::sock_filter> {
        prog.chunks_exact(8)
            .map(|b| libc::sock_filter {
                code: u16::from_ne_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_ne_bytes(b[4..8].try_into().unwrap()),
            })
            .collect()
    }

    #[test]
    fn gate_answers_each_class_of_call() {
        let guarded = gate_program(&policy::seccomp_policy(Network::Guarded, 2)).unwrap();
        let denied = gate_program(&policy::seccomp_policy(Network::Denied, 2)).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let nr = |n: &str| number(n).unwrap();
        let allow = libc::SECCOMP_RET_ALLOW;
        let enoprotoopt = libc::SECCOMP_RET_ERRNO | libc::ENOPROTOOPT as u32;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let args = |a: u64, b: u64| [3, a, b, 0, 4, 0];
        // Architecture and x32.
        assert_eq!(run_gate(&guarded, 0x4000_0003, nr("read"), [0; 6]), kill);
        assert_eq!(run_gate(&guarded, x86, 0x4000_0000 + 39, [0; 6]), kill);
        assert_eq!(run_gate(&guarded, x86, nr("read"), [0; 6]), allow);
        // clone3 and connect.
        assert_eq!(
            run_gate(&guarded, x86, nr("clone3"), [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run_gate(&guarded, x86, nr("connect"), [0; 6]),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(run_gate(&denied, x86, nr("connect"), [0; 6]), allow);
        // setsockopt: every allowed pair (to the supervisor, which records
        // it, for network bots), and the steering options.
        let tcp = libc::IPPROTO_TCP as u64;
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        for (prog, pass) in [(&guarded, notify), (&denied, allow)] {
            for (name, level, opt) in policy::SETSOCKOPT_ALLOWED {
                let a = args(*level as u64, *opt as u64);
                assert_eq!(run_gate(prog, x86, nr("setsockopt"), a), pass, "{name}");
            }
            for (level, opt) in [
                (libc::IPPROTO_IPV6, libc::IPV6_RTHDR),
                (libc::IPPROTO_IPV6, libc::IPV6_HOPOPTS),
                (libc::IPPROTO_IPV6, libc::IPV6_DSTOPTS),
                (libc::IPPROTO_IPV6, libc::IPV6_2292RTHDR),
                (libc::IPPROTO_IPV6, libc::IPV6_NEXTHOP),
                (libc::IPPROTO_IPV6, libc::IPV6_TRANSPARENT),
                (libc::IPPROTO_IP, libc::IP_OPTIONS),
                (libc::IPPROTO_IP, libc::IP_HDRINCL),
                (libc::IPPROTO_IP, libc::IP_TRANSPARENT),
                (libc::IPPROTO_IP, libc::IP_FREEBIND),
                (libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
                (libc::SOL_SOCKET, libc::SO_MARK),
                (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT),
                // An allowed option at another level is another option.
                (libc::SOL_SOCKET, libc::TCP_NODELAY),
                (libc::IPPROTO_IP, libc::TCP_NODELAY),
            ] {
                let a = args(level as u64, opt as u64);
                assert_eq!(
                    run_gate(prog, x86, nr("setsockopt"), a),
                    enoprotoopt,
                    "level {level} option {opt}"
                );
            }
            // The kernel reads `int` arguments: high halves change nothing.
            let high = 0xdead_0000_0000_u64;
            let nodelay = args(high | tcp, high | libc::TCP_NODELAY as u64);
            assert_eq!(run_gate(prog, x86, nr("setsockopt"), nodelay), pass);
            let rthdr = args(high | libc::IPPROTO_IPV6 as u64, libc::IPV6_RTHDR as u64);
            assert_eq!(run_gate(prog, x86, nr("setsockopt"), rthdr), enoprotoopt);
            // getsockopt with the same arguments is not touched.
            let a = args(libc::IPPROTO_IPV6 as u64, libc::IPV6_RTHDR as u64);
            assert_eq!(run_gate(prog, x86, nr("getsockopt"), a), allow);
        }
    }

    #[test]
    fn a_childs_pid_patched_into_the_hook_programs_gives_the_programs_built_for_it() {
        let with_placeholder = hook_programs().unwrap();
        for pid in [3u32, 77, 4_194_303] {
            let policy = crate::policy::seccomp_policy(crate::policy::Network::Denied, pid);
            let gate = gate_program(&policy).unwrap();
            let kill = kill_program(&policy).unwrap();
            let allow = allow_program(&policy).unwrap();
            let want = [
                to_bytes(gate.iter().map(|i| (i.code, i.jt, i.jf, i.k))),
                to_bytes(kill.iter().map(|i| (i.code, i.jt, i.jf, i.k))),
                to_bytes(allow.iter().map(|i| (i.code, i.jt, i.jf, i.k))),
            ];
            for (mut got, want) in with_placeholder.clone().into_iter().zip(want) {
                patch_pid(&mut got, pid);
                assert_eq!(got, want, "pid {pid}");
            }
        }
        // The placeholder is there to patch (the tgkill rule), exactly once.
        let n: usize = with_placeholder
            .iter()
            .map(|p| {
                p.chunks_exact(8)
                    .filter(|i| i[4..8] == PID_PLACEHOLDER.to_ne_bytes())
                    .count()
            })
            .sum();
        assert_eq!(n, 1);
    }

    #[test]
    fn the_template_policy_adds_only_what_forking_needs_and_kills_what_a_hook_kills() {
        let hook = crate::policy::seccomp_policy(crate::policy::Network::Denied, 2);
        let t = crate::policy::template_seccomp_policy();
        assert_eq!(t.killed, hook.killed);
        let mut extra: Vec<&str> = t
            .allowed
            .iter()
            .filter(|n| !hook.allowed.contains(n))
            .copied()
            .collect();
        extra.sort_unstable();
        assert_eq!(extra, ["pidfd_open", "tgkill", "wait4"]);
        assert!(!t.allowed.contains(&"seccomp") && !t.allowed.contains(&"ptrace"));
        assert!(kill_program(&t).is_ok() && allow_program(&t).is_ok());
    }

    #[test]
    fn a_templates_child_installs_a_short_narrowing_filter_and_only_what_its_template_lacks() {
        let t = policy::template_seccomp_policy();
        let hook = policy::seccomp_policy(Network::Denied, PID_PLACEHOLDER);
        let programs = child_programs(&t).unwrap();
        // The template's gate and kill list are the hook's: one filter.
        assert_eq!(programs.len(), 1);
        let narrow = from_bytes(&programs[0]);
        assert_eq!(narrow, narrowing_program(&t, &hook).unwrap());
        let allow = allow_program(&hook).unwrap();
        assert!(
            narrow.len() * 8 < allow.len(),
            "{} instructions against the allowlist's {}",
            narrow.len(),
            allow.len()
        );
        // It names the calls the template's allowlist widened, and no other.
        let mut tested: Vec<u32> = narrow
            .iter()
            .take_while(|i| i.code != RET_K || i.k != libc::SECCOMP_RET_ALLOW)
            .filter(|i| i.code == JEQ_K && i.k != AUDIT_ARCH_X86_64)
            .map(|i| i.k)
            .collect();
        let mut want: Vec<u32> = [
            "clone",
            "kill",
            "pidfd_open",
            "prctl",
            "prlimit64",
            "tgkill",
            "wait4",
        ]
        .iter()
        .map(|n| number(n).unwrap() as u32)
        .collect();
        want.sort_unstable();
        tested.sort_unstable();
        assert_eq!(tested, want);
        // A template whose kill list or gate differed would leave the child
        // its own copy of the hook's, before the narrowing filter.
        let mut weaker = t.clone();
        weaker.killed.retain(|n| *n != "ptrace");
        let programs = child_programs(&weaker).unwrap();
        assert_eq!(programs.len(), 2);
        assert_eq!(
            from_bytes(&programs[0]),
            lower(&kill_program(&hook).unwrap())
        );
        let mut other_gate = t.clone();
        other_gate.setsockopt.pop();
        let programs = child_programs(&other_gate).unwrap();
        assert_eq!(programs.len(), 2);
        assert_eq!(from_bytes(&programs[0]), gate_program(&hook).unwrap());
    }

    #[test]
    fn no_narrowing_filter_for_a_template_that_allows_less_than_a_hook() {
        let hook = policy::seccomp_policy(Network::Denied, PID_PLACEHOLDER);
        let mut t = policy::template_seccomp_policy();
        t.allowed.retain(|n| *n != "getpid");
        let e = narrowing_program(&t, &hook).unwrap_err();
        assert!(e.contains("getpid"), "{e}");
        // One alternative of a filtered call left out is refused too.
        let mut t = policy::template_seccomp_policy();
        let ioctl = t.filtered.iter_mut().find(|f| f.name == "ioctl").unwrap();
        ioctl.alternatives.pop();
        let e = narrowing_program(&t, &hook).unwrap_err();
        assert!(e.contains("ioctl"), "{e}");
    }

    /// Values worth trying for an argument that `checks` look at: each
    /// check's value, its neighbours, the value with every bit outside the
    /// mask flipped or one inside it cleared, and with a high half added.
    fn candidates<'a>(checks: impl Iterator<Item = &'a ArgCheck>, pid: u32) -> Vec<u64> {
        let mut v = vec![0, 1, u64::from(u32::MAX), u64::MAX, 1 << 32];
        v.extend([
            u64::from(pid),
            u64::from(pid) + 1,
            u64::from(PID_PLACEHOLDER),
        ]);
        for c in checks {
            let x = c.value & c.mask;
            let low_bit = c.mask & c.mask.wrapping_neg();
            v.extend([
                x,
                x ^ 1,
                x.wrapping_add(1),
                x.wrapping_sub(1),
                x | !c.mask,
                x ^ low_bit,
            ]);
        }
        let high: Vec<u64> = v.iter().map(|x| x | 0xdead_0000_0000).collect();
        v.extend(high);
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn a_templates_filters_and_its_childs_decide_every_call_as_a_fresh_hooks() {
        let pid = 4_321u32;
        let hook = policy::seccomp_policy(Network::Denied, pid);
        let fresh = vec![
            gate_program(&hook).unwrap(),
            lower(&kill_program(&hook).unwrap()),
            lower(&allow_program(&hook).unwrap()),
        ];
        let t = policy::template_seccomp_policy();
        let mut child = vec![
            gate_program(&t).unwrap(),
            lower(&kill_program(&t).unwrap()),
            lower(&allow_program(&t).unwrap()),
        ];
        for mut p in child_programs(&t).unwrap() {
            patch_pid(&mut p, pid);
            child.push(from_bytes(&p));
        }
        let template_alone = child[..3].to_vec();
        let checks = |name: &str| -> Vec<ArgCheck> {
            [&hook, &t]
                .iter()
                .flat_map(|p| p.filtered.iter().filter(|f| f.name == name))
                .flat_map(|f| f.alternatives.iter().flatten().copied())
                .collect()
        };
        let generic = candidates(std::iter::empty(), pid);
        let mut numbers: Vec<u32> = (0..=600).collect();
        numbers.extend([0x4000_0000, 0x4000_0001, 0x4000_0000 + 39, 1_000, u32::MAX]);
        let (mut compared, mut differs_from_template) = (0u64, 0u64);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for arch in [AUDIT_ARCH_X86_64, 0x4000_0003, 0xC000_00B7] {
            for &nr in &numbers {
                let name = TABLE.iter().find(|(_, n)| *n as u32 == nr).map(|(n, _)| *n);
                let own = name.map(checks).unwrap_or_default();
                let cands = if own.is_empty() {
                    generic.clone()
                } else {
                    candidates(own.iter(), pid)
                };
                let mut vectors = vec![[0u64; 6]];
                for a in 0..6 {
                    for &c in &cands {
                        let mut v = [0u64; 6];
                        v[a] = c;
                        vectors.push(v);
                    }
                }
                if !own.is_empty() && arch == AUDIT_ARCH_X86_64 {
                    // Arguments checked together: every pair of candidates.
                    let args: Vec<usize> = {
                        let mut a: Vec<usize> = own.iter().map(|c| usize::from(c.arg)).collect();
                        a.sort_unstable();
                        a.dedup();
                        a
                    };
                    for (i, &a) in args.iter().enumerate() {
                        for &b in &args[i + 1..] {
                            for &x in &cands {
                                for &y in &cands {
                                    let mut v = [0u64; 6];
                                    v[a] = x;
                                    v[b] = y;
                                    vectors.push(v);
                                }
                            }
                        }
                    }
                    for _ in 0..2_000 {
                        let mut v = [0u64; 6];
                        for x in &mut v {
                            *x = cands[(next() % cands.len() as u64) as usize];
                        }
                        vectors.push(v);
                    }
                }
                for args in vectors {
                    let d = data(arch, nr, args);
                    let want = decide(&fresh, &d);
                    let got = decide(&child, &d);
                    assert_eq!(
                        got, want,
                        "arch {arch:#x} nr {nr} ({name:?}) args {args:x?}: child {got:#x}, fresh hook {want:#x}"
                    );
                    compared += 1;
                    if decide(&template_alone, &d) != want {
                        differs_from_template += 1;
                    }
                }
            }
        }
        // The comparison covered calls where the template alone would have
        // answered otherwise (forks, wait4, kill, tgkill to another pid...).
        assert!(compared > 100_000, "{compared}");
        assert!(differs_from_template > 1_000, "{differs_from_template}");
    }

    #[test]
    fn programs_compile_for_both_network_modes() {
        for net in [Network::Denied, Network::Guarded] {
            let p = policy::seccomp_policy(net, 2);
            assert!(kill_program(&p).unwrap().len() > 10);
            assert!(allow_program(&p).unwrap().len() > 100);
            let gate = gate_program(&p).unwrap();
            let notifies = gate.iter().any(|i| i.k == libc::SECCOMP_RET_USER_NOTIF);
            assert_eq!(notifies, net == Network::Guarded);
            assert!(
                gate.iter()
                    .any(|i| i.k == libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32)
            );
        }
    }
}
