//! The confinement policy as data: which namespaces, which mounts, which
//! Landlock rules, which rlimits and which system calls.
//!
//! Everything here is a pure function of the job (and of a few facts about the
//! host that the caller resolves first), so unit tests can check the policy
//! without confining anything. The Linux modules (`namespaces`, `mounts`,
//! `rlimit`, `landlock`, `seccomp`) only apply what these functions return.
//!
//! The syscall lists live here and only here: the seccomp filter is built from
//! them, and `sandbox-runner policy --json` prints them for the packaging check
//! of the daemon's systemd unit.

use crate::netguard::Cidr;
use hook_protocol::{Limits, NetworkPolicy};
use std::path::{Path, PathBuf};

/// Where the bot's writable tmpfs is mounted inside the sandbox.
pub const WORKSPACE: &str = "/workspace";
/// Where `runtime.harness_dir` is bound inside the sandbox.
pub const HARNESS_DIR: &str = "/harness";
/// Prefix of the binds of `runtime.python_path` entries (`/pylib/0`, ...).
pub const PYLIB_PREFIX: &str = "/pylib";
/// The only environment the interpreter gets.
pub const ENV: &[&str] = &["LANG=C.UTF-8"];
/// TCP ports a network bot may connect to: the web, over HTTP and HTTPS.
pub const WEB_PORTS: &[u16] = &[80, 443];
/// TCP port of DNS; only towards the host's own name servers (DNS over TCP).
pub const DNS_PORT: u16 = 53;
/// Bytes of interpreter stdout/stderr kept for diagnostics.
pub const DIAG_KEEP_BYTES: usize = 16 * 1024;

/// How the runner gets the privileges it needs to confine itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Started as root: no user namespace; the hook drops to
    /// `runtime.sandbox_uid/gid`.
    Root,
    /// Started as an ordinary user: an unprivileged user namespace gives the
    /// runner the capabilities it needs inside, and nothing outside.
    UserNamespace,
}

impl Mode {
    /// Chosen from the effective uid at start-up.
    pub fn for_euid(euid: u32) -> Mode {
        if euid == 0 {
            Mode::Root
        } else {
            Mode::UserNamespace
        }
    }
}

/// Whether the hook may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A fresh, empty network namespace; no sockets at all.
    Denied,
    /// The host's network namespace; TCP `connect` is checked by the runner's
    /// seccomp user-notification supervisor (see `netguard`).
    Guarded,
}

impl Network {
    pub fn from_policy(p: &NetworkPolicy) -> Network {
        if p.allowed {
            Network::Guarded
        } else {
            Network::Denied
        }
    }
}

/// A Linux namespace the runner unshares.
///
/// No cgroup namespace: it only virtualises the view of `/proc/self/cgroup`
/// and cgroupfs, and the sandbox mounts neither, so it would hide nothing
/// while costing the systemd unit a `RestrictNamespaces=` exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    User,
    Mount,
    Pid,
    Ipc,
    Uts,
    Net,
}

impl Namespace {
    pub fn name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Mount => "mnt",
            Namespace::Pid => "pid",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Net => "net",
        }
    }

    /// Every namespace the runner may ever create, for `policy --json`.
    pub const ALL: [Namespace; 6] = [
        Namespace::User,
        Namespace::Mount,
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Net,
    ];
}

/// The namespaces to unshare, in one `unshare(2)` call.
pub fn namespaces(mode: Mode, network: Network) -> Vec<Namespace> {
    let mut v = Vec::new();
    if mode == Mode::UserNamespace {
        v.push(Namespace::User);
    }
    v.extend([
        Namespace::Mount,
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Uts,
    ]);
    if network == Network::Denied {
        v.push(Namespace::Net);
    }
    v
}

// ---------------------------------------------------------------------------
// Mounts

/// Facts about the host the mount plan is built from (resolved by
/// `mounts::resolve_host`, which is the only part that touches the disk).
#[derive(Debug, Clone, PartialEq)]
pub struct HostLayout {
    /// `runtime.system_dirs` (canonical): bound read-only, first.
    pub system_dirs: Vec<PathBuf>,
    /// Canonical path of the interpreter binary (`/usr/bin/python3.11`).
    pub python: PathBuf,
    /// Its standard library (`/usr/lib/python3.11`).
    pub stdlib: PathBuf,
    /// Shared-library directories the interpreter and its extension modules
    /// load from (`/usr/lib/x86_64-linux-gnu`, or a pyenv prefix's `lib`).
    pub lib_dirs: Vec<PathBuf>,
    /// The ELF loader: (canonical host file, path the binary asks for).
    pub loader: (PathBuf, PathBuf),
    /// Public CA certificates for TLS, as (host source, target, is_dir):
    /// `/etc/ssl/certs` (never all of `/etc/ssl`, which holds
    /// `private/`), and the CA bundle at OpenSSL's default `cert.pem`.
    pub tls: Vec<(PathBuf, PathBuf, bool)>,
    /// The harness directory (canonical).
    pub harness_dir: PathBuf,
    /// `runtime.python_path` entries (canonical), in order.
    pub python_path: Vec<PathBuf>,
    /// Name servers of the host, from its `resolv.conf`.
    pub nameservers: Vec<std::net::IpAddr>,
}

/// What a path inside the sandbox may be used for; becomes Landlock rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathAccess {
    /// Read files and list directories; no execute, no write.
    ReadOnly,
    /// Read and execute one file (the interpreter, the loader).
    Execute,
    /// Read and write a device node (`/dev/null`).
    DeviceReadWrite,
    /// Read a device node (`/dev/urandom`, ...).
    DeviceRead,
    /// Create, write, remove anything but devices, sockets and executables.
    Workspace,
}

/// One read-only bind mount of a host path.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the new root.
    pub target: PathBuf,
    pub is_dir: bool,
    pub access: PathAccess,
}

/// The whole new root.
#[derive(Debug, Clone, PartialEq)]
pub struct RootPlan {
    pub binds: Vec<Bind>,
    /// Small files written into the root before it is made read-only.
    pub files: Vec<(PathBuf, String)>,
    pub workspace: WorkspacePlan,
}

/// The workspace tmpfs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspacePlan {
    pub target: PathBuf,
    pub size_bytes: u64,
    pub inodes: u64,
    pub uid: u32,
    pub gid: u32,
}

impl WorkspacePlan {
    /// tmpfs mount data; `noexec,nosuid,nodev` go in as mount flags.
    pub fn tmpfs_options(&self) -> String {
        format!(
            "size={},nr_inodes={},mode=0700,uid={},gid={}",
            self.size_bytes, self.inodes, self.uid, self.gid
        )
    }
}

/// The devices a CPython process needs, all bound from the host's `/dev`.
pub const DEVICES: &[(&str, PathAccess)] = &[
    ("/dev/null", PathAccess::DeviceReadWrite),
    ("/dev/zero", PathAccess::DeviceRead),
    ("/dev/urandom", PathAccess::DeviceRead),
    ("/dev/random", PathAccess::DeviceRead),
];

/// The mount plan: only the interpreter, its libraries, what TLS needs, the
/// harness, the extra python path, four devices and the workspace.
pub fn root_plan(
    host: &HostLayout,
    network: Network,
    limits: &Limits,
    ids: (u32, u32),
) -> RootPlan {
    let same = |p: &Path, is_dir: bool, access: PathAccess| Bind {
        source: p.to_path_buf(),
        target: p.to_path_buf(),
        is_dir,
        access,
    };
    // System directories first: the binds below may lie inside them.
    let mut binds: Vec<Bind> = host
        .system_dirs
        .iter()
        .map(|d| same(d, true, PathAccess::ReadOnly))
        .collect();
    binds.push(same(&host.python, false, PathAccess::Execute));
    binds.push(same(&host.stdlib, true, PathAccess::ReadOnly));
    for d in &host.lib_dirs {
        binds.push(same(d, true, PathAccess::ReadOnly));
    }
    binds.push(Bind {
        source: host.loader.0.clone(),
        target: host.loader.1.clone(),
        is_dir: false,
        access: PathAccess::Execute,
    });
    for (source, target, is_dir) in &host.tls {
        binds.push(Bind {
            source: source.clone(),
            target: target.clone(),
            is_dir: *is_dir,
            access: PathAccess::ReadOnly,
        });
    }
    binds.push(Bind {
        source: host.harness_dir.clone(),
        target: PathBuf::from(HARNESS_DIR),
        is_dir: true,
        access: PathAccess::ReadOnly,
    });
    for (i, p) in host.python_path.iter().enumerate() {
        binds.push(Bind {
            source: p.clone(),
            target: pylib_target(i),
            is_dir: true,
            access: PathAccess::ReadOnly,
        });
    }
    for (dev, access) in DEVICES {
        binds.push(same(Path::new(dev), false, *access));
    }
    let mut files = Vec::new();
    if network == Network::Guarded {
        files.push((
            PathBuf::from("/etc/resolv.conf"),
            resolv_conf(&host.nameservers),
        ));
    }
    RootPlan {
        binds,
        files,
        workspace: WorkspacePlan {
            target: PathBuf::from(WORKSPACE),
            size_bytes: limits.workspace_bytes,
            inodes: limits.workspace_inodes,
            uid: ids.0,
            gid: ids.1,
        },
    }
}

/// The program interpreter an ELF executable asks for (its `PT_INTERP`), from
/// the file's first bytes. `None` for anything that is not a 64-bit
/// little-endian ELF with such a header inside `head`.
pub fn elf_interpreter(head: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if head.get(0..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? == PT_INTERP {
            let off = usize::try_from(u64_at(ph + 8)?).ok()?;
            let len = usize::try_from(u64_at(ph + 32)?).ok()?;
            let raw = head.get(off..off.checked_add(len)?)?;
            let path = raw.split(|&b| b == 0).next()?;
            let s = std::str::from_utf8(path).ok()?;
            return s.starts_with('/').then(|| PathBuf::from(s));
        }
    }
    None
}

/// `/pylib/N` for the N-th `runtime.python_path` entry.
pub fn pylib_target(i: usize) -> PathBuf {
    PathBuf::from(format!("{PYLIB_PREFIX}/{i}"))
}

/// The interpreter's environment: [`ENV`], plus `PYTHONHASHSEED` when the
/// job has a hash seed (`HookJob::python_hash_seed`: the job's `hash_seed`,
/// else the one its entropy gives): string hashes, and with them the order
/// in which a set of strings iterates, must be the same every time the hook
/// runs.
pub fn interpreter_env(hash_seed: Option<u32>) -> Vec<String> {
    let mut env: Vec<String> = ENV.iter().map(|e| e.to_string()).collect();
    if let Some(seed) = hash_seed {
        env.push(format!("PYTHONHASHSEED={seed}"));
    }
    env
}

/// The interpreter's flags: `runtime.python_args`, unchanged without a hash
/// seed.
///
/// With one, the interpreter must read `PYTHONHASHSEED` from its
/// environment, which `-E` and isolated mode (`-I`, which implies `-E -s
/// -P`) make it ignore. `-E` guards against an environment someone else
/// chose; this one is the runner's own ([`interpreter_env`]), so the runner
/// drops `-E` and replaces `-I` by its other parts, `-s` (no user site
/// directory) and `-P` (no script directory on `sys.path`): the interpreter
/// is then as isolated as before and reads the seed. Combined flags (`-IS`)
/// are taken apart as the interpreter reads them: a flag that takes a value
/// (`-c`, `-m`, `-W`, `-X`) ends its group, and `-c`, `-m`, `-`, `--` or an
/// argument that is no option end the options. The harness checks that the
/// seed took effect and refuses the job otherwise.
pub fn interpreter_args(python_args: &[String], hash_seed: Option<u32>) -> Vec<String> {
    if hash_seed.is_none() {
        return python_args.to_vec();
    }
    let mut out = Vec::with_capacity(python_args.len() + 2);
    let mut isolated = false;
    let mut args = python_args.iter();
    while let Some(arg) = args.next() {
        let Some(flags) = arg
            .strip_prefix('-')
            .filter(|f| !f.is_empty() && !f.starts_with('-'))
        else {
            out.push(arg.clone());
            if arg == "--check-hash-based-pycs" {
                out.extend(args.next().cloned());
            } else if !arg.starts_with("--") || arg == "--" {
                out.extend(args.cloned()); // `-`, `--` or the program: no more options
                break;
            }
            continue;
        };
        let mut kept = String::from("-");
        let mut value_follows = false;
        let mut ends_options = false;
        for (i, c) in flags.char_indices() {
            match c {
                'I' => isolated = true,
                'E' => {}
                'c' | 'm' | 'W' | 'X' => {
                    kept.push_str(&flags[i..]);
                    value_follows = flags.len() == i + 1;
                    ends_options = c == 'c' || c == 'm';
                    break;
                }
                _ => kept.push(c),
            }
        }
        if kept.len() > 1 {
            out.push(kept);
        }
        if value_follows {
            out.extend(args.next().cloned());
        }
        if ends_options {
            out.extend(args.cloned());
            break;
        }
    }
    if isolated {
        // First: options must come before a `-c`, `-m` or the program.
        out.splice(0..0, ["-s".to_string(), "-P".to_string()]);
    }
    out
}

/// The `resolv.conf` network bots see: the host's name servers, and
/// `use-vc` so glibc asks them over TCP (UDP is refused by seccomp).
pub fn resolv_conf(nameservers: &[std::net::IpAddr]) -> String {
    let mut s = String::from("# written by sandbox-runner: DNS over TCP only\n");
    for ns in nameservers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s.push_str("options use-vc\n");
    s
}

/// Name servers listed in a `resolv.conf` text.
pub fn parse_nameservers(text: &str) -> Vec<std::net::IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("nameserver"))
                .then(|| it.next())
                .flatten()
                .and_then(|a| a.parse().ok())
        })
        .collect()
}

/// A Landlock path rule, paths as seen inside the new root.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRule {
    pub path: PathBuf,
    pub is_dir: bool,
    pub access: PathAccess,
}

/// Landlock path rules: one per bind plus the workspace. Nothing else (not
/// `/`, not `/etc`) is readable.
pub fn landlock_path_rules(plan: &RootPlan) -> Vec<PathRule> {
    let mut v: Vec<PathRule> = plan
        .binds
        .iter()
        .map(|b| PathRule {
            path: b.target.clone(),
            is_dir: b.is_dir,
            access: b.access,
        })
        .collect();
    for (f, _) in &plan.files {
        v.push(PathRule {
            path: f.clone(),
            is_dir: false,
            access: PathAccess::ReadOnly,
        });
    }
    v.push(PathRule {
        path: plan.workspace.target.clone(),
        is_dir: true,
        access: PathAccess::Workspace,
    });
    v
}

/// TCP ports Landlock lets the hook connect to (none without network). Bind
/// is handled and never granted.
pub fn landlock_connect_ports(network: Network) -> Vec<u16> {
    match network {
        Network::Denied => Vec::new(),
        Network::Guarded => {
            let mut v = WEB_PORTS.to_vec();
            v.push(DNS_PORT);
            v
        }
    }
}

/// Parses `allow_cidrs` / `deny_cidrs`; a malformed entry is a bad job.
pub fn parse_cidrs(list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter().map(|s| s.parse::<Cidr>()).collect()
}

// ---------------------------------------------------------------------------
// rlimits

/// A resource limit to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    AddressSpace,
    FileSize,
    OpenFiles,
    Processes,
    Core,
    MemLock,
    MsgQueue,
}

/// (resource, soft, hard).
pub type RlimitSetting = (Resource, u64, u64);

/// The hook's rlimits: CPU soft = budget, hard = budget + 1 s so
/// SIGXCPU comes first; no core dumps, no locked memory, no POSIX queues.
/// CPU seconds RLIMIT_CPU allows beyond `cpu_secs` for what the process
/// does before it reads its job: the interpreter's start and the harness's
/// warm-up (tens of milliseconds). RLIMIT_CPU counts from the process's
/// start, while a hook's CPU budget counts from the hand-over of its job
/// (for a pre-warmed sandbox, possibly long after the start); the harness
/// refuses a job it reads after more than this much CPU (bots/harness/PROTOCOL.md),
/// so every hook gets at least `cpu_secs` and less than `cpu_secs + 1` of CPU
/// after its job arrives, pre-warmed or not.
pub const WARM_UP_CPU_SECS: u64 = 1;

pub fn rlimits(limits: &Limits) -> Vec<RlimitSetting> {
    let cpu = limits.cpu_secs.saturating_add(WARM_UP_CPU_SECS);
    vec![
        (Resource::Cpu, cpu, cpu.saturating_add(1)),
        (
            Resource::AddressSpace,
            limits.address_space_bytes,
            limits.address_space_bytes,
        ),
        (
            Resource::FileSize,
            limits.file_size_bytes,
            limits.file_size_bytes,
        ),
        (Resource::OpenFiles, limits.open_files, limits.open_files),
        (Resource::Processes, limits.threads, limits.threads),
        (Resource::Core, 0, 0),
        (Resource::MemLock, 0, 0),
        (Resource::MsgQueue, 0, 0),
    ]
}

// ---------------------------------------------------------------------------
// System calls

/// System calls the runner itself makes while confining (outside
/// `@system-service` for most): the daemon's unit must allow them.
pub const CONFINE_SYSCALLS: &[&str] = &[
    "close_range",
    "prctl",
    "setsid",
    "unshare",
    "mount",
    "umount2",
    "pivot_root",
    "chdir",
    "clone",
    "wait4",
    "pidfd_open",
    "prlimit64",
    "sethostname",
    "capget",
    "capset",
    "setgroups",
    "setresgid",
    "setresuid",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "seccomp",
    "sendmsg",
    "recvmsg",
    "ioctl",
    "execve",
    // the connect supervisor (see `unotify`): the hook's sockaddr and option
    // values, its socket's description (/proc/<tid>/fdinfo, the
    // `system.sockprotoname` attribute), a socket of its own with the
    // hook's fs ids (root mode), connected and handed over with
    // SECCOMP_IOCTL_NOTIF_ADDFD (an ioctl)
    "process_vm_readv",
    "getxattr",
    "setfsuid",
    "setfsgid",
    "getsockopt",
    "getsockname",
    "connect",
    // rtnetlink (the host's addresses and routes, see `rtnetlink`)
    "socket",
    "sendto",
    "recvfrom",
    "setsockopt",
];

/// Address families the runner itself opens sockets of (besides the
/// `socketpair` that carries the seccomp listener, which no service manager
/// restricts, and the TCP sockets it connects for network bots, of theirs):
/// netlink, to list the host's addresses, ask its routes and the state of a
/// connection it made (sock_diag). A network hook fails closed
/// (`step: "network"`) without it.
pub const RUNNER_ADDRESS_FAMILIES: &[&str] = &["AF_NETLINK"];
/// Address families a network bot's `socket` may ask for.
pub const BOT_ADDRESS_FAMILIES: &[&str] = &["AF_INET", "AF_INET6"];

/// System calls a hook may make without condition. CPython needs about 45 of
/// these for json/hashlib/requests/threads; the rest are cheap, harmless file
/// and time calls a library may reach for.
pub const BOT_ALLOWED: &[&str] = &[
    // files and descriptors (Landlock decides which paths)
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "lseek",
    "close",
    "close_range",
    "fstat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "open",
    "openat",
    "openat2",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "truncate",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "chmod",
    "fchmod",
    "fchmodat",
    "utimensat",
    "umask",
    "statfs",
    "fstatfs",
    "fadvise64",
    "flock",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "eventfd2",
    // memory
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    // signals (tgkill is argument-filtered)
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    // identity, time, randomness
    "getpid",
    "gettid",
    "getppid",
    "getpgrp",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "getresuid",
    "getresgid",
    "uname",
    "sysinfo",
    "getrusage",
    "times",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getrandom",
    // threads
    "futex",
    "set_robust_list",
    "get_robust_list",
    "set_tid_address",
    "rseq",
    "arch_prctl",
    "sched_yield",
    "sched_getaffinity",
    "membarrier",
    "restart_syscall",
    "exit",
    "exit_group",
    // sockets that already exist (socket() itself is filtered; setsockopt is
    // narrowed by the gate to `SETSOCKOPT_ALLOWED`; sendmsg is left out)
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "shutdown",
    "recvfrom",
    "recvmsg",
    // the one exec: the interpreter itself. Landlock grants Execute on the
    // interpreter and the loader only, and the workspace is noexec.
    "execve",
];

/// System calls that kill the hook at once: no library has a reason to make
/// them, so a bot that does is attacking.
pub const BOT_KILLED: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "perf_event_open",
    "memfd_create",
    "memfd_secret",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capset",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "name_to_handle_at",
    "open_by_handle_at",
    "pidfd_getfd",
    "kcmp",
    "seccomp",
];

/// One comparison on a syscall argument; the alternatives of a rule are ORed,
/// the checks inside one alternative ANDed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    pub arg: u8,
    /// Compare `arg & mask` with `value` (mask `u64::MAX` for equality).
    pub mask: u64,
    pub value: u64,
    /// 32-bit (`int`) or 64-bit (`long`, pointer) argument.
    pub wide: bool,
}

impl ArgCheck {
    fn eq32(arg: u8, value: u64) -> ArgCheck {
        ArgCheck {
            arg,
            mask: u64::from(u32::MAX),
            value,
            wide: false,
        }
    }
    fn masked32(arg: u8, mask: u64, value: u64) -> ArgCheck {
        ArgCheck {
            arg,
            mask,
            value,
            wide: false,
        }
    }
    fn eq64(arg: u8, value: u64) -> ArgCheck {
        ArgCheck {
            arg,
            mask: u64::MAX,
            value,
            wide: true,
        }
    }
    fn masked64(arg: u8, mask: u64, value: u64) -> ArgCheck {
        ArgCheck {
            arg,
            mask,
            value,
            wide: true,
        }
    }
}

/// A syscall allowed only when one of its alternatives matches.
#[derive(Debug, Clone, PartialEq)]
pub struct FilteredSyscall {
    pub name: &'static str,
    pub alternatives: Vec<Vec<ArgCheck>>,
}

/// The hook's whole seccomp policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SeccompPolicy {
    /// Allowed without condition.
    pub allowed: Vec<&'static str>,
    /// Allowed when an argument check matches; otherwise EPERM.
    pub filtered: Vec<FilteredSyscall>,
    /// Kill the process.
    pub killed: Vec<&'static str>,
    /// Answered ENOSYS so glibc falls back (`clone3` → `clone`); this filter is
    /// installed last, because of two errno filters the last one wins.
    pub enosys: Vec<&'static str>,
    /// Sent to the runner's user-notification supervisor (`connect`).
    pub notify: Vec<&'static str>,
    /// The (level, option) pairs `setsockopt` may set; the gate answers every
    /// other pair `ENOPROTOOPT` (see `SETSOCKOPT_ALLOWED`).
    pub setsockopt: Vec<(i32, i32)>,
    /// Whether the allowed pairs go to the supervisor (network bots), which
    /// records them for the socket it connects in the hook's place and lets
    /// the call proceed; otherwise they are allowed outright.
    pub setsockopt_notify: bool,
}

/// `CLONE_NEW*` bits valid for `clone(2)` (CLONE_NEWTIME shares its value
/// with CSIGNAL bits and is only accepted by `clone3`/`unshare`).
pub const CLONE_NEW_MASK: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `ioctl` requests CPython uses (isatty, non-blocking, close-on-exec).
// The casts: `libc` types these as glibc's headers do (c_ulong) on the gnu
// targets and as musl's do (c_int) on the static builds.
#[allow(clippy::unnecessary_cast)]
pub const IOCTLS: &[u64] = &[
    libc::TCGETS as u64,
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
    libc::FIONCLEX as u64,
    libc::FIONREAD as u64,
];

/// `MSG_FASTOPEN` would let `sendto` open a TCP connection to an address the
/// supervisor never saw.
pub const MSG_FASTOPEN: u64 = 0x2000_0000;

/// The `setsockopt` (level, option) pairs a hook may set: what ordinary
/// clients use. `http.client`, `urllib3` (hence `requests`) and asyncio set
/// `TCP_NODELAY`; `ssl`, `socket.create_connection` and glibc's resolver
/// over TCP set nothing; keepalive tuning, buffer sizes, linger and
/// socket-level timeouts are common opt-ins and change nothing about where a
/// connection goes. Everything else (IPv6 routing, hop-by-hop and destination
/// headers, IP options, `IP_TOS`, packet-info and next-hop choice,
/// `SO_BINDTODEVICE`, `SO_MARK`, `SO_PRIORITY`, transparent and free binds,
/// `SO_REUSEPORT`, socket filters, `TCP_FASTOPEN_CONNECT`, `TCP_ULP`,
/// `TCP_REPAIR`, `TCP_MD5SIG`, ...) is answered `ENOPROTOOPT` by the seccomp
/// gate: the errno libraries already treat as "option not available here".
pub const SETSOCKOPT_ALLOWED: &[(&str, i32, i32)] = &[
    ("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY),
    ("TCP_KEEPIDLE", libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    ("TCP_KEEPINTVL", libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    ("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (
        "TCP_USER_TIMEOUT",
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
    ),
    ("SO_KEEPALIVE", libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    ("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF),
    ("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF),
    ("SO_LINGER", libc::SOL_SOCKET, libc::SO_LINGER),
    // 20/21: SO_RCVTIMEO_OLD/SO_SNDTIMEO_OLD (64-bit time_t on x86_64);
    // 66/67: the _NEW forms glibc uses with 64-bit time on 32-bit ABIs.
    ("SO_RCVTIMEO", libc::SOL_SOCKET, 20),
    ("SO_SNDTIMEO", libc::SOL_SOCKET, 21),
    ("SO_RCVTIMEO_NEW", libc::SOL_SOCKET, 66),
    ("SO_SNDTIMEO_NEW", libc::SOL_SOCKET, 67),
];

/// The clone flags every thread must share with its process: memory,
/// descriptor table, signal handlers and thread group. glibc's
/// `pthread_create` passes all four, so the hook is one process whose
/// threads all see one descriptor table and one address space (what the
/// connect supervisor reads and writes for whichever thread called
/// `connect`).
pub const CLONE_THREAD_FLAGS: u64 =
    (libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD) as u64;

/// The seccomp policy for a hook whose process id (inside its PID
/// namespace) is `self_pid`.
pub fn seccomp_policy(network: Network, self_pid: u32) -> SeccompPolicy {
    let mut filtered = vec![
        FilteredSyscall {
            name: "clone",
            // Threads only: all of CLONE_THREAD_FLAGS and no CLONE_NEW* bit.
            alternatives: vec![vec![
                ArgCheck::masked64(0, CLONE_THREAD_FLAGS, CLONE_THREAD_FLAGS),
                ArgCheck::masked64(0, CLONE_NEW_MASK, 0),
            ]],
        },
        FilteredSyscall {
            name: "ioctl",
            alternatives: IOCTLS.iter().map(|r| vec![ArgCheck::eq32(1, *r)]).collect(),
        },
        FilteredSyscall {
            name: "prctl",
            alternatives: vec![
                vec![ArgCheck::eq32(0, libc::PR_SET_NAME as u64)],
                vec![ArgCheck::eq32(0, libc::PR_GET_NAME as u64)],
            ],
        },
        FilteredSyscall {
            // Reading limits only: new_limit must be NULL.
            name: "prlimit64",
            alternatives: vec![vec![ArgCheck::eq64(2, 0)]],
        },
        FilteredSyscall {
            // Signals to its own threads only (abort, pthread_kill).
            name: "tgkill",
            alternatives: vec![vec![ArgCheck::eq32(0, u64::from(self_pid))]],
        },
        FilteredSyscall {
            name: "sendto",
            alternatives: vec![vec![
                ArgCheck::masked32(3, MSG_FASTOPEN, 0),
                ArgCheck::eq64(4, 0),
            ]],
        },
    ];
    let mut notify = Vec::new();
    if network == Network::Guarded {
        let mut socket_alts = Vec::new();
        for domain in [libc::AF_INET, libc::AF_INET6] {
            for proto in [0, libc::IPPROTO_TCP] {
                socket_alts.push(vec![
                    ArgCheck::eq32(0, domain as u64),
                    ArgCheck::masked32(1, 0xf, libc::SOCK_STREAM as u64),
                    ArgCheck::eq32(2, proto as u64),
                ]);
            }
        }
        filtered.push(FilteredSyscall {
            name: "socket",
            alternatives: socket_alts,
        });
        // connect is allowed by the allowlist, but an earlier filter sends it
        // to the supervisor, whose answer takes precedence over ALLOW.
        filtered.push(FilteredSyscall {
            name: "connect",
            alternatives: vec![vec![]],
        });
        notify.push("connect");
    }
    SeccompPolicy {
        allowed: BOT_ALLOWED.to_vec(),
        filtered,
        killed: BOT_KILLED.to_vec(),
        enosys: vec!["clone3"],
        setsockopt_notify: !notify.is_empty(),
        notify,
        setsockopt: SETSOCKOPT_ALLOWED
            .iter()
            .map(|(_, level, opt)| (*level, *opt))
            .collect(),
    }
}

/// A fork template's CPU limit (soft; hard one second above): its children
/// lower theirs to a hook's (`rlimits`) before they read their job; the
/// template itself retires well before (see `TEMPLATE_RETIRE_CPU_SECS`).
pub const TEMPLATE_CPU_SECS: u64 = 660;

/// A fork template stops taking jobs after this much CPU of its own.
pub const TEMPLATE_RETIRE_CPU_SECS: u64 = 600;

/// A fork template stops taking jobs after this many hooks.
pub const TEMPLATE_RETIRE_HOOKS: u64 = 20_000;

/// A fork template's rlimits: a hook's, but for the CPU limit, which covers
/// the template's whole life (each child lowers its own to the hook's).
pub fn template_rlimits(limits: &Limits) -> Vec<RlimitSetting> {
    rlimits(limits)
        .into_iter()
        .map(|(r, soft, hard)| match r {
            Resource::Cpu => (r, TEMPLATE_CPU_SECS, TEMPLATE_CPU_SECS + 1),
            _ => (r, soft, hard),
        })
        .collect()
}

/// The flags glibc's `fork()` passes to `clone` (x86_64): a new process,
/// never a new namespace.
pub const FORK_CLONE_FLAGS: u64 =
    (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;

/// A fork template's seccomp policy: a network-less hook's, plus what
/// forking and supervising one child at a time needs. Every child installs
/// a filter on top that gives each of these additions back to the hook's
/// rule (`seccomp::child_programs`), and the kernel keeps the most
/// restrictive answer of all filters, so a child ends up with exactly a
/// hook's allowlist. The additions:
///
/// * `clone` with exactly glibc `fork()`'s flags (no `CLONE_NEW*`, no
///   shared memory), beside the hook's threads-only rule;
/// * `wait4` and `pidfd_open` to reap and watch its child;
/// * `kill` with `SIGKILL` only (the runner's `K` message);
/// * `prlimit64` on itself (pid 0), so a child can lower its CPU limit;
/// * `prctl` `PR_SET_SECCOMP` (filter mode) and `PR_{GET,SET}_DUMPABLE`, so
///   a child can install its filter and the template stays
///   non-dumpable;
/// * `tgkill` to any thread: the template's own rule would be its pid, and
///   would refuse a child's signals to itself; the child's filter narrows
///   it to the child's own pid.
///
/// The kill list is the hook's.
pub fn template_seccomp_policy() -> SeccompPolicy {
    let mut p = seccomp_policy(Network::Denied, 0);
    p.filtered.retain(|f| f.name != "tgkill");
    p.allowed.extend(["tgkill", "wait4", "pidfd_open"]);
    for f in &mut p.filtered {
        match f.name {
            "clone" => f
                .alternatives
                .push(vec![ArgCheck::eq64(0, FORK_CLONE_FLAGS)]),
            "prlimit64" => f.alternatives.push(vec![ArgCheck::eq32(0, 0)]),
            "prctl" => {
                f.alternatives.push(vec![
                    ArgCheck::eq32(0, libc::PR_SET_SECCOMP as u64),
                    ArgCheck::eq32(1, libc::SECCOMP_MODE_FILTER as u64),
                ]);
                for op in [libc::PR_SET_DUMPABLE, libc::PR_GET_DUMPABLE] {
                    f.alternatives.push(vec![ArgCheck::eq32(0, op as u64)]);
                }
            }
            _ => {}
        }
    }
    p.filtered.push(FilteredSyscall {
        name: "kill",
        alternatives: vec![vec![ArgCheck::eq32(1, libc::SIGKILL as u64)]],
    });
    p
}

/// Names of every syscall a hook may make (with network), for `policy --json`.
pub fn bot_syscall_names() -> Vec<&'static str> {
    let p = seccomp_policy(Network::Guarded, 1);
    let mut v: Vec<&'static str> = p.allowed.clone();
    v.extend(p.filtered.iter().map(|f| f.name));
    v.sort_unstable();
    v.dedup();
    v
}

/// Names of every syscall a fork template may make, for `policy --json`.
pub fn template_syscall_names() -> Vec<&'static str> {
    let p = template_seccomp_policy();
    let mut v: Vec<&'static str> = p.allowed.clone();
    v.extend(p.filtered.iter().map(|f| f.name));
    v.sort_unstable();
    v.dedup();
    v
}

/// The `policy --json` document.
pub fn policy_json() -> serde_json::Value {
    let mut confine: Vec<&str> = CONFINE_SYSCALLS.to_vec();
    confine.sort_unstable();
    confine.dedup();
    serde_json::json!({
        "confine_syscalls": confine,
        "bot_syscalls": bot_syscall_names(),
        "template_syscalls": template_syscall_names(),
        "namespaces": Namespace::ALL.iter().map(|n| n.name()).collect::<Vec<_>>(),
        "address_families": {
            "runner": RUNNER_ADDRESS_FAMILIES,
            "bot": BOT_ADDRESS_FAMILIES,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_a_hash_seed_the_interpreter_gets_the_configured_flags_and_lang_only() {
        let configured = args(&["-I", "-S", "-B"]);
        assert_eq!(interpreter_args(&configured, None), configured);
        assert_eq!(interpreter_env(None), vec!["LANG=C.UTF-8".to_string()]);
    }

    #[test]
    fn a_hash_seed_goes_in_the_environment_and_isolation_stops_ignoring_it() {
        assert_eq!(
            interpreter_env(Some(4_294_967_295)),
            args(&["LANG=C.UTF-8", "PYTHONHASHSEED=4294967295"])
        );
        let seed = Some(7);
        let cases: &[(&[&str], &[&str])] = &[
            (&["-I", "-S", "-B"], &["-s", "-P", "-S", "-B"]),
            (&["-ISB"], &["-s", "-P", "-SB"]),
            (&["-E", "-S"], &["-S"]),
            (&["-S", "-EI"], &["-s", "-P", "-S"]),
            // Values of -X and -W are values, even when they look like flags.
            (&["-X", "-I", "-S"], &["-X", "-I", "-S"]),
            (&["-XI", "-I"], &["-s", "-P", "-XI"]),
            (&["-IWignore", "-B"], &["-s", "-P", "-Wignore", "-B"]),
            (&["-W", "error", "-I"], &["-s", "-P", "-W", "error"]),
            (
                &["--check-hash-based-pycs", "never", "-I"],
                &["-s", "-P", "--check-hash-based-pycs", "never"],
            ),
            // After -c, -m, `-` or `--`, nothing is an interpreter flag.
            (&["-I", "-c", "-E"], &["-s", "-P", "-c", "-E"]),
            (&["-Ic", "-E"], &["-s", "-P", "-c", "-E"]),
            (&["--", "-I"], &["--", "-I"]),
            (&["-S", "prog.py", "-E"], &["-S", "prog.py", "-E"]),
            (&[], &[]),
        ];
        for (given, want) in cases {
            assert_eq!(
                interpreter_args(&args(given), seed),
                args(want),
                "{given:?}"
            );
        }
    }

    fn host() -> HostLayout {
        HostLayout {
            system_dirs: Vec::new(),
            python: "/usr/bin/python3.11".into(),
            stdlib: "/usr/lib/python3.11".into(),
            lib_dirs: vec!["/usr/lib/x86_64-linux-gnu".into()],
            loader: (
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
                "/lib64/ld-linux-x86-64.so.2".into(),
            ),
            tls: vec![("/etc/ssl/certs".into(), "/etc/ssl/certs".into(), true)],
            harness_dir: "/opt/mcp/bots/harness".into(),
            python_path: vec!["/usr/lib/python3/dist-packages".into()],
            nameservers: vec!["10.0.0.2".parse().unwrap()],
        }
    }

    #[test]
    fn userns_only_when_not_root_and_net_only_without_network() {
        let r = namespaces(Mode::Root, Network::Denied);
        assert!(!r.contains(&Namespace::User));
        assert!(r.contains(&Namespace::Net));
        let u = namespaces(Mode::UserNamespace, Network::Guarded);
        assert_eq!(u[0], Namespace::User);
        assert!(!u.contains(&Namespace::Net));
        for ns in [Namespace::Mount, Namespace::Pid, Namespace::Ipc] {
            assert!(u.contains(&ns) && r.contains(&ns));
        }
        assert_eq!(Mode::for_euid(0), Mode::Root);
        assert_eq!(Mode::for_euid(1000), Mode::UserNamespace);
    }

    #[test]
    fn elf_interpreter_reads_pt_interp_and_rejects_garbage() {
        // A minimal ELF64 header with one PT_INTERP program header.
        let mut elf = vec![0u8; 0x100];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        let path = b"/nix/store/abc-glibc/lib/ld-linux-x86-64.so.2\0";
        elf[0x48..0x50].copy_from_slice(&0xa0u64.to_le_bytes()); // p_offset
        elf[0x60..0x68].copy_from_slice(&(path.len() as u64).to_le_bytes()); // p_filesz
        elf[0xa0..0xa0 + path.len()].copy_from_slice(path);
        assert_eq!(
            elf_interpreter(&elf),
            Some(PathBuf::from(
                "/nix/store/abc-glibc/lib/ld-linux-x86-64.so.2"
            ))
        );
        assert_eq!(elf_interpreter(&elf[..0x90]), None, "truncated");
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None, "a script");
        let mut relative = elf.clone();
        relative[0xa0] = b'x';
        assert_eq!(elf_interpreter(&relative), None, "a relative loader");
        let mut huge = elf;
        huge[0x60..0x68].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(elf_interpreter(&huge), None, "out-of-range length");
    }

    #[test]
    fn root_plan_binds_only_runtime_paths_and_executes_only_interpreter_and_loader() {
        let plan = root_plan(&host(), Network::Denied, &Limits::default(), (65534, 65534));
        let exec: Vec<_> = plan
            .binds
            .iter()
            .filter(|b| b.access == PathAccess::Execute)
            .map(|b| b.target.clone())
            .collect();
        assert_eq!(
            exec,
            vec![
                PathBuf::from("/usr/bin/python3.11"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        let targets: BTreeSet<_> = plan.binds.iter().map(|b| b.target.clone()).collect();
        assert!(targets.contains(Path::new("/harness")));
        assert!(targets.contains(Path::new("/pylib/0")));
        for forbidden in [
            "/", "/etc", "/proc", "/usr", "/var", "/home", "/root", "/tmp",
        ] {
            assert!(!targets.contains(Path::new(forbidden)), "{forbidden} bound");
        }
        assert!(plan.files.is_empty(), "no resolv.conf without network");
        assert_eq!(
            plan.workspace.tmpfs_options(),
            "size=104857600,nr_inodes=4096,mode=0700,uid=65534,gid=65534"
        );
    }

    #[test]
    fn network_bots_get_a_tcp_only_resolv_conf() {
        let plan = root_plan(&host(), Network::Guarded, &Limits::default(), (1, 1));
        assert_eq!(plan.files.len(), 1);
        assert_eq!(plan.files[0].0, PathBuf::from("/etc/resolv.conf"));
        assert!(plan.files[0].1.contains("nameserver 10.0.0.2\n"));
        assert!(plan.files[0].1.contains("options use-vc"));
        assert_eq!(
            parse_nameservers("# x\nnameserver 1.1.1.1\nnameserver ::1\nsearch lan\n"),
            vec![
                "1.1.1.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn landlock_rules_cover_binds_and_workspace_and_nothing_else() {
        let plan = root_plan(&host(), Network::Guarded, &Limits::default(), (1, 1));
        let rules = landlock_path_rules(&plan);
        let ws: Vec<_> = rules
            .iter()
            .filter(|r| r.access == PathAccess::Workspace)
            .collect();
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].path, PathBuf::from(WORKSPACE));
        assert!(rules.iter().all(|r| r.path != Path::new("/")));
        assert_eq!(rules.len(), plan.binds.len() + plan.files.len() + 1);
        assert_eq!(landlock_connect_ports(Network::Denied), Vec::<u16>::new());
        assert_eq!(landlock_connect_ports(Network::Guarded), vec![80, 443, 53]);
    }

    #[test]
    fn rlimits_follow_limits_with_cpu_hard_one_second_above_soft() {
        let l = Limits::default();
        let r = rlimits(&l);
        // 5 s from the hand-over: one more for the warm-up, hard one above.
        assert!(r.contains(&(Resource::Cpu, 6, 7)));
        assert!(r.contains(&(Resource::AddressSpace, 1 << 30, 1 << 30)));
        assert!(r.contains(&(Resource::FileSize, 32 << 20, 32 << 20)));
        assert!(r.contains(&(Resource::OpenFiles, 64, 64)));
        assert!(r.contains(&(Resource::Processes, 16, 16)));
        assert!(r.contains(&(Resource::Core, 0, 0)));
    }

    fn filtered<'a>(p: &'a SeccompPolicy, name: &str) -> Option<&'a FilteredSyscall> {
        p.filtered.iter().find(|f| f.name == name)
    }

    #[test]
    fn no_socket_and_no_connect_without_network() {
        let p = seccomp_policy(Network::Denied, 2);
        assert!(filtered(&p, "socket").is_none());
        assert!(filtered(&p, "connect").is_none());
        assert!(!p.allowed.contains(&"socket") && !p.allowed.contains(&"connect"));
        assert!(p.notify.is_empty());
    }

    #[test]
    fn socket_only_inet_stream_with_network() {
        let p = seccomp_policy(Network::Guarded, 2);
        let s = filtered(&p, "socket").unwrap();
        assert_eq!(s.alternatives.len(), 4);
        for alt in &s.alternatives {
            let domain = alt.iter().find(|c| c.arg == 0).unwrap().value;
            assert!(domain == libc::AF_INET as u64 || domain == libc::AF_INET6 as u64);
            let ty = alt.iter().find(|c| c.arg == 1).unwrap();
            assert_eq!((ty.mask, ty.value), (0xf, libc::SOCK_STREAM as u64));
        }
        assert_eq!(p.notify, vec!["connect"]);
        for never in [
            "bind",
            "listen",
            "accept",
            "accept4",
            "socketpair",
            "sendmmsg",
        ] {
            assert!(!bot_syscall_names().contains(&never), "{never} allowed");
        }
    }

    #[test]
    fn sendmsg_is_left_out_and_sendto_carries_no_destination_nor_fast_open() {
        let p = seccomp_policy(Network::Guarded, 2);
        assert!(!bot_syscall_names().contains(&"sendmsg"));
        assert!(!bot_syscall_names().contains(&"sendmmsg"));
        let s = filtered(&p, "sendto").unwrap();
        assert_eq!(
            s.alternatives,
            vec![vec![
                ArgCheck::masked32(3, MSG_FASTOPEN, 0),
                ArgCheck::eq64(4, 0)
            ]]
        );
    }

    #[test]
    fn the_setsockopt_allowlist_holds_no_option_that_steers_a_connection() {
        let p = seccomp_policy(Network::Guarded, 2);
        assert_eq!(p.setsockopt.len(), SETSOCKOPT_ALLOWED.len());
        assert!(
            p.setsockopt
                .contains(&(libc::IPPROTO_TCP, libc::TCP_NODELAY))
        );
        for steering in [
            (libc::IPPROTO_IPV6, libc::IPV6_RTHDR),
            (libc::IPPROTO_IPV6, libc::IPV6_HOPOPTS),
            (libc::IPPROTO_IPV6, libc::IPV6_DSTOPTS),
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO),
            (libc::IPPROTO_IPV6, libc::IPV6_NEXTHOP),
            (libc::IPPROTO_IPV6, libc::IPV6_TRANSPARENT),
            (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND),
            (libc::IPPROTO_IP, libc::IP_OPTIONS),
            (libc::IPPROTO_IP, libc::IP_HDRINCL),
            (libc::IPPROTO_IP, libc::IP_TOS),
            (libc::IPPROTO_IP, libc::IP_PKTINFO),
            (libc::IPPROTO_IP, libc::IP_TRANSPARENT),
            (libc::IPPROTO_IP, libc::IP_FREEBIND),
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
            (libc::SOL_SOCKET, libc::SO_MARK),
            (libc::SOL_SOCKET, libc::SO_PRIORITY),
            (libc::SOL_SOCKET, libc::SO_REUSEPORT),
            (libc::SOL_SOCKET, libc::SO_ATTACH_FILTER),
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT),
            (libc::IPPROTO_TCP, libc::TCP_ULP),
            (libc::IPPROTO_TCP, libc::TCP_REPAIR),
        ] {
            assert!(!p.setsockopt.contains(&steering), "{steering:?}");
        }
        assert!(
            p.setsockopt
                .iter()
                .all(|(level, _)| [libc::IPPROTO_TCP, libc::SOL_SOCKET].contains(level)),
            "no IP or IPv6 level option at all"
        );
    }

    #[test]
    fn clone_only_for_threads_and_clone3_is_enosys() {
        let p = seccomp_policy(Network::Denied, 2);
        let c = filtered(&p, "clone").unwrap();
        assert_eq!(c.alternatives.len(), 1);
        let thread = c.alternatives[0][0];
        assert_eq!(
            thread.value & libc::CLONE_THREAD as u64,
            libc::CLONE_THREAD as u64
        );
        assert_eq!(thread.mask, CLONE_THREAD_FLAGS);
        assert_eq!(thread.value, CLONE_THREAD_FLAGS, "shared fd table required");
        assert_eq!(
            CLONE_THREAD_FLAGS & libc::CLONE_FILES as u64,
            libc::CLONE_FILES as u64
        );
        assert_eq!(c.alternatives[0][1].mask, CLONE_NEW_MASK);
        assert_eq!(c.alternatives[0][1].value, 0);
        assert_eq!(p.enosys, vec!["clone3"]);
        assert!(!p.allowed.contains(&"clone3") && !p.allowed.contains(&"fork"));
        assert!(!p.allowed.contains(&"vfork") && !p.allowed.contains(&"kill"));
    }

    #[test]
    fn kill_list_has_the_dangerous_calls_and_does_not_overlap_the_allowlist() {
        let p = seccomp_policy(Network::Guarded, 2);
        for must in [
            "ptrace",
            "mount",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "io_uring_setup",
            "userfaultfd",
            "perf_event_open",
            "memfd_create",
            "setuid",
            "process_vm_readv",
            "process_vm_writev",
        ] {
            assert!(p.killed.contains(&must), "{must} not killed");
        }
        let allowed: BTreeSet<_> = bot_syscall_names().into_iter().collect();
        for k in &p.killed {
            assert!(!allowed.contains(k), "{k} both allowed and killed");
        }
        for ipc in ["shmget", "shmat", "msgget", "semget", "kill", "tkill"] {
            assert!(!allowed.contains(ipc), "{ipc} allowed");
        }
    }

    #[test]
    fn a_template_may_make_a_hooks_syscalls_and_only_wait4_pidfd_open_and_kill_besides() {
        let v = policy_json();
        let names = |key: &str| -> BTreeSet<String> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let template = names("template_syscalls");
        let hook: BTreeSet<String> = {
            let p = seccomp_policy(Network::Denied, 0);
            p.allowed
                .iter()
                .copied()
                .chain(p.filtered.iter().map(|f| f.name))
                .map(String::from)
                .collect()
        };
        assert!(hook.is_subset(&template));
        let extra: Vec<&String> = template.difference(&hook).collect();
        assert_eq!(extra, ["kill", "pidfd_open", "wait4"]);
    }

    #[test]
    fn policy_json_has_the_lists_and_address_families() {
        let v = policy_json();
        assert!(
            v["confine_syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "pivot_root")
        );
        assert!(
            v["bot_syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "socket")
        );
        assert_eq!(
            v["namespaces"],
            serde_json::json!(["user", "mnt", "pid", "ipc", "uts", "net"])
        );
        assert_eq!(
            v["address_families"],
            serde_json::json!({"runner": ["AF_NETLINK"], "bot": ["AF_INET", "AF_INET6"]})
        );
    }
}
