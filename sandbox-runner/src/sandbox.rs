//! One hook, start to finish: the order of operations (README.md, "Order of
//! operations", says why each step comes where it does).
//!
//! ```text
//! runner (outer)   read job · close fds · PDEATHSIG · setsid · host addresses
//!                  (network bots) · pipes
//!   └─ ns child    unshare(user? mnt pid ipc uts net?) · id maps (userns)
//!      └─ reaper      PID 1 of the new PID namespace: private / · tmpfs root with
//!         │        read-only binds · workspace tmpfs · pivot_root · detach old root
//!         └─ hook     fds 0-3 · rlimits · drop caps (and uid/gid in root mode)
//!                  · no_new_privs · Landlock · seccomp (gate, hand the
//!                  listener to the runner, kill list, allowlist)
//!                  · execve(python -I -S -B /harness/harness.py)
//! ```
//!
//! The namespaces are entered by a forked child rather than by the runner:
//! after `unshare(CLONE_NEWPID)` a process can no longer create threads, and
//! the supervisor needs them. The outer runner stays outside every restriction
//! it imposes: it writes the
//! harness input, reads the result from fd 3 and the interpreter's
//! stdout/stderr (both capped), answers `connect` and `setsockopt`
//! notifications for network bots (`unotify`), and kills the reaper (hence the whole PID namespace) at the wall
//! deadline or on an output overrun.
//!
//! A step that fails in the reaper or the hook writes `step<TAB>message` to a
//! close-on-exec pipe and exits; the runner turns that into
//! `HookError::Confinement`. The pipe reaching EOF without a message means the
//! interpreter was exec'd: that instant ends `timings.confine_us`.
//!
//! A pre-warmed runner ([`prewarm`]) takes the same steps from a
//! [`WarmSpec`] (everything that decides the confinement, nothing of the
//! hook), waits for the exec, and only then reads its one job; the harness
//! meanwhile loads its modules and blocks reading stdin. The wall deadline
//! counts from the hand-over; the job must match the spec exactly.

use crate::netguard::ConnectPolicy;
use crate::policy::{self, Mode, Network, PathRule, RootPlan, SeccompPolicy};
use crate::{creds, landlock, mounts, namespaces, rlimit, rtnetlink, seccomp, unotify};
use hook_protocol::{
    BotSpec, Hook, HookContext, HookError, HookJob, HookOutcome, MAX_JOB_BYTES, Origin, Timings,
    WarmSpec,
};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2, pipe2};
use serde_json::json;
use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Run-time switches that are not part of the job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Test-only: ask the harness to skip the language layer (`"unchecked":
    /// true`), so the attack suite can prove the OS layer holds on its own.
    pub unchecked_language_layer: bool,
    /// Print when each confinement step finished (stderr lines
    /// `sandbox-runner: step NAME +N us`), for the benchmark.
    pub trace_steps: bool,
}

/// Why the runner could not produce a normal outcome before the hook ran.
fn confinement(step: &str, message: impl Into<String>) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::Confinement {
            step: step.into(),
            message: message.into(),
        },
    }
}

fn internal(message: impl Into<String>) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::internal(message),
    }
}

/// The JSON document the harness reads on stdin (bots/harness/PROTOCOL.md).
pub fn harness_input(job: &HookJob, opts: &Options) -> serde_json::Value {
    let mut v = json!({
        "bot": job.bot,
        "hook": job.hook,
        "context": job.context,
        "state": job.state,
        "limits": {
            "max_posts": job.limits.max_posts,
            "max_post_bytes": job.limits.max_post_bytes,
            "max_state_bytes": job.limits.max_state_bytes,
            "max_output_bytes": job.limits.max_output_bytes,
        },
        "network": job.network.allowed,
        "workspace": policy::WORKSPACE,
        "sys_path": (0..job.runtime.python_path.len())
            .map(|i| policy::pylib_target(i).display().to_string())
            .collect::<Vec<_>>(),
    });
    // What makes the hook deterministic, only when the job carries it: a
    // harness without these fields behaves exactly as before.
    if let Some(entropy) = &job.entropy {
        v["entropy"] = json!(entropy);
    }
    if let Some(now) = &job.now {
        v["now"] = json!(now);
    }
    if let Some(seed) = job.hash_seed {
        v["hash_seed"] = json!(seed);
    }
    if opts.unchecked_language_layer {
        v["unchecked"] = json!(true);
    }
    v
}

/// What the process at the bottom of the sandbox becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The interpreter runs one hook (fresh or pre-warmed).
    Hook,
    /// A fork template (`crate::template`): the interpreter forks one child
    /// per hook; it gets the template's seccomp policy and CPU limit and
    /// the control socket on fd 4.
    Template,
}

/// Everything the forked processes need, computed before the first fork.
struct Prepared {
    role: Role,
    mode: Mode,
    network: Network,
    ids: (u32, u32),
    plan: RootPlan,
    rules: Vec<PathRule>,
    ports: Vec<u16>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The host's name servers (network bots only).
    nameservers: Vec<std::net::IpAddr>,
    /// `Some(runner start)` when steps are traced.
    trace: Option<Instant>,
}

/// The pipes between the runner and the sandbox; `.0` is the read end.
struct Pipes {
    input: (OwnedFd, OwnedFd),
    result: (OwnedFd, OwnedFd),
    diag: (OwnedFd, OwnedFd),
    errors: (OwnedFd, OwnedFd),
    /// (runner end, hook end): carries the seccomp listener fd.
    listener: Option<(OwnedFd, OwnedFd)>,
    /// (runner end, template end): a fork template's control socket.
    control: Option<(OwnedFd, OwnedFd)>,
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("NUL byte in {s:?}"))
}

fn prepare(
    job: &HookJob,
    role: Role,
    trace: Option<Instant>,
) -> Result<Prepared, Box<HookOutcome>> {
    let mode = Mode::for_euid(nix::unistd::geteuid().as_raw());
    let network = Network::from_policy(&job.network);
    let ids = (job.runtime.sandbox_uid, job.runtime.sandbox_gid);
    if ids.0 == 0 || ids.1 == 0 {
        return Err(Box::new(confinement(
            "credentials",
            "sandbox_uid/gid must not be 0",
        )));
    }
    let host = mounts::resolve_host(&job.runtime, network == Network::Guarded)
        .map_err(|e| Box::new(confinement("layout", e)))?;
    let plan = policy::root_plan(&host, network, &job.limits, ids);
    let rules = policy::landlock_path_rules(&plan);
    let ports = policy::landlock_connect_ports(network);
    let python = host.python.display().to_string();
    let hash_seed = job.python_hash_seed();
    let mut argv = vec![cstring(&python).map_err(|e| Box::new(internal(e)))?];
    for a in policy::interpreter_args(&job.runtime.python_args, hash_seed) {
        argv.push(cstring(&a).map_err(|e| Box::new(internal(e)))?);
    }
    argv.push(
        cstring(&format!("{}/harness.py", policy::HARNESS_DIR))
            .map_err(|e| Box::new(internal(e)))?,
    );
    if role == Role::Template {
        // The children put the fresh hook's argv back (`hx_fork.py`).
        argv.push(cstring("--template").map_err(|e| Box::new(internal(e)))?);
    }
    let envp = policy::interpreter_env(hash_seed)
        .iter()
        .map(|e| cstring(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Box::new(internal(e)))?;
    Ok(Prepared {
        role,
        mode,
        network,
        ids,
        plan,
        rules,
        ports,
        argv,
        envp,
        nameservers: host.nameservers,
        trace,
    })
}

fn make_pipes(network: Network, role: Role) -> nix::Result<Pipes> {
    let seqpacket = || {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
    };
    let control = (role == Role::Template).then(seqpacket).transpose()?;
    let listener = (network == Network::Guarded).then(seqpacket).transpose()?;
    Ok(Pipes {
        input: pipe2(OFlag::O_CLOEXEC)?,
        result: pipe2(OFlag::O_CLOEXEC)?,
        diag: pipe2(OFlag::O_CLOEXEC)?,
        errors: pipe2(OFlag::O_CLOEXEC)?,
        listener,
        control,
    })
}

/// Runs one job; the caller prints the outcome. `started` is when the runner
/// began (the wall deadline counts from there).
pub fn run(job: &HookJob, opts: &Options, started: Instant) -> HookOutcome {
    let input = match serde_json::to_vec(&harness_input(job, opts)) {
        Ok(v) => v,
        Err(e) => return internal(format!("serialize harness input: {e}")),
    };
    let launched = match launch(job, opts, started, Role::Hook) {
        Ok(l) => l,
        Err(o) => return *o,
    };
    let Launched {
        ends,
        ns_child,
        connect,
    } = launched;
    supervise(
        job,
        ends,
        &mut Target::Namespace(ns_child),
        &input,
        connect,
        started,
        Seen::default(),
    )
}

/// A sandbox whose processes are started: the runner's ends of the pipes,
/// the namespace child, and what the connect supervisor decides with.
pub(crate) struct Launched {
    pub(crate) ends: Ends,
    pub(crate) ns_child: Pid,
    pub(crate) connect: (ConnectPolicy, (u32, u32)),
}

/// Forks the sandbox for `job` (namespaces, mounts, the hook's confinement
/// and the exec all follow in the children) and returns the runner's side.
pub(crate) fn launch(
    job: &HookJob,
    opts: &Options,
    started: Instant,
    role: Role,
) -> Result<Launched, Box<HookOutcome>> {
    let fail = |o: HookOutcome| Err(Box::new(o));
    let prep = prepare(job, role, opts.trace_steps.then_some(started))?;
    let mut connect_policy = match (
        policy::parse_cidrs(&job.network.allow_cidrs),
        policy::parse_cidrs(&job.network.deny_cidrs),
    ) {
        (Ok(allow), Ok(deny)) => ConnectPolicy {
            allow,
            deny,
            nameservers: prep.nameservers.clone(),
            host: Vec::new(),
        },
        (Err(e), _) | (_, Err(e)) => return fail(internal(format!("network policy: {e}"))),
    };
    if prep.network == Network::Guarded {
        // The host's own addresses, from the kernel, in the network namespace
        // the hook will share: never from the job.
        match rtnetlink::host_addresses() {
            Ok(addrs) => connect_policy.host = addrs,
            Err(errno) => {
                return fail(confinement(
                    "network",
                    format!(
                        "cannot list this host's addresses over rtnetlink ({}); a network \
                         bot cannot be kept off them. Under systemd, RestrictAddressFamilies= \
                         must include AF_NETLINK",
                        std::io::Error::from_raw_os_error(errno)
                    ),
                ));
            }
        }
    }
    let pipes = match make_pipes(prep.network, role) {
        Ok(p) => p,
        Err(e) => return fail(internal(format!("pipes: {e}"))),
    };
    let outside = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    // The kernel uid and gid of the hook (and of its sockets): the sandbox
    // ids in root mode; the caller's ids, which they map to, in a user
    // namespace.
    let hook_ids = match prep.mode {
        Mode::Root => prep.ids,
        Mode::UserNamespace => outside,
    };

    // See the module docs for why a child, not the runner, unshares.
    let child = match namespaces::fork() {
        Err(e) => return fail(internal(format!("fork: {e}"))),
        Ok(ForkResult::Child) => namespace_main(&prep, job, pipes, outside),
        Ok(ForkResult::Parent { child }) => child,
    };
    Ok(Launched {
        ends: runner_ends(pipes),
        ns_child: child,
        connect: (connect_policy, hook_ids),
    })
}

// ---------------------------------------------------------------------------
// Pre-warmed: confined ahead of the job

/// Why a pre-warmed runner ends without running a hook, beyond what an
/// outcome says: no job came, or the job was refused (exit 2).
#[derive(Debug)]
pub enum WarmEnd {
    /// The hook's outcome (or why the sandbox could not be confined).
    Outcome(HookOutcome),
    /// No job arrived, or the job was refused; the bot never ran.
    NoJob(String),
}

/// The job a pre-warmed sandbox is confined for: the spec's limits,
/// network and runtime, and nothing of any bot (the children read only
/// those; the real job replaces it at the hand-over).
pub(crate) fn placeholder_job(spec: &WarmSpec) -> HookJob {
    HookJob {
        version: spec.version,
        bot: BotSpec {
            name: String::new(),
            source: String::new(),
            params: json!({}),
            compiled: None,
        },
        hook: Hook::OnInit,
        context: HookContext {
            channel_id: String::new(),
            bot_id: String::new(),
            players: Vec::new(),
        },
        state: json!({}),
        limits: spec.limits.clone(),
        network: spec.network.clone(),
        runtime: spec.runtime.clone(),
        entropy: None,
        now: None,
        hash_seed: spec.hash_seed,
    }
}

/// Confines a sandbox from `spec`, waits until its interpreter is exec'd,
/// then reads one job from stdin (`prefix`: what was already read after the
/// spec) and runs it. Without a complete job within `spec.idle_ms` (or at
/// EOF) the sandbox is torn down and nothing runs.
pub fn prewarm(spec: &WarmSpec, opts: &Options, started: Instant, prefix: Vec<u8>) -> WarmEnd {
    let placeholder = placeholder_job(spec);
    let Launched {
        ends,
        ns_child,
        connect,
    } = match launch(&placeholder, opts, started, Role::Hook) {
        Ok(l) => l,
        Err(o) => return WarmEnd::Outcome(*o),
    };
    let stop = |end: WarmEnd| {
        let _ = kill(ns_child, Signal::SIGKILL);
        let _ = waitpid(ns_child, None);
        end
    };
    let idle_until = Instant::now() + Duration::from_millis(spec.idle_ms);
    // 1. The confinement steps, up to the exec (or the first that failed).
    let mut seen = Seen::default();
    match wait_for_exec(&ends.errors_r, idle_until, &mut seen.errors) {
        Ok(()) => {}
        Err(why) => return stop(WarmEnd::NoJob(why)),
    }
    if seen
        .errors
        .split(|b| *b == b'\n')
        .any(|l| !l.is_empty() && l[0] != b'@')
    {
        // Reported now, without a job: the bot never runs in it.
        let o = outcome(&placeholder, seen, started, Instant::now());
        return stop(WarmEnd::Outcome(o));
    }
    // 2. The job.
    let raw = match read_job(prefix, idle_until, placeholder.limits.wall_ms) {
        Ok(raw) => raw,
        Err(why) => return stop(WarmEnd::NoJob(why)),
    };
    let handover = Instant::now();
    let job: HookJob = match serde_json::from_slice(&raw) {
        Ok(j) => j,
        Err(e) => return stop(WarmEnd::NoJob(format!("malformed job: {e}"))),
    };
    if let Some(why) = spec.mismatch(&job) {
        return stop(WarmEnd::NoJob(why));
    }
    let input = match serde_json::to_vec(&harness_input(&job, opts)) {
        Ok(v) => v,
        Err(e) => {
            return stop(WarmEnd::Outcome(internal(format!(
                "serialize harness input: {e}"
            ))));
        }
    };
    WarmEnd::Outcome(supervise(
        &job,
        ends,
        &mut Target::Namespace(ns_child),
        &input,
        connect,
        handover,
        seen,
    ))
}

/// Reads the error pipe until EOF (the exec) or a failure line, keeping what
/// it says; `Err` when `until` passes first.
pub(crate) fn wait_for_exec(
    errors: &OwnedFd,
    until: Instant,
    into: &mut Vec<u8>,
) -> Result<(), String> {
    set_nonblocking(errors).map_err(|e| format!("O_NONBLOCK: {e}"))?;
    let mut total = 0usize;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the sandbox was not ready within its idle time".into());
        }
        let mut fds = [PollFd::new(errors.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout(left)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        if drain(errors, into, 4096, &mut total) {
            return Ok(());
        }
        if into
            .split(|b| *b == b'\n')
            .any(|l| !l.is_empty() && l[0] != b'@')
        {
            return Ok(()); // a failed step: the caller reports it
        }
    }
}

pub(crate) fn poll_timeout(d: Duration) -> PollTimeout {
    PollTimeout::from(d.as_millis().clamp(1, 10_000) as u16)
}

/// Reads one job from stdin to EOF: it must begin before `until`, and once
/// it has, arrive whole within `wall_ms`. At most [`MAX_JOB_BYTES`].
fn read_job(mut buf: Vec<u8>, until: Instant, wall_ms: u64) -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut until = if buf.is_empty() {
        until
    } else {
        Instant::now() + Duration::from_millis(wall_ms)
    };
    let mut chunk = vec![0u8; 65536];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(if buf.is_empty() {
                "no job within the idle time; nothing ran".into()
            } else {
                "the job did not arrive whole in time".into()
            });
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout(left)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) if buf.is_empty() => return Err("stdin closed without a job; nothing ran".into()),
            Ok(0) => return Ok(buf),
            Ok(n) => {
                if buf.is_empty() {
                    until = Instant::now() + Duration::from_millis(wall_ms);
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_JOB_BYTES {
                    return Err(format!("job larger than {MAX_JOB_BYTES} bytes"));
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("reading the job: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------
// Inside the sandbox

/// Enters the new namespaces, forks the reaper into them, and exits with the
/// reaper's status.
fn namespace_main(prep: &Prepared, job: &HookJob, pipes: Pipes, outside: (u32, u32)) -> ! {
    let err_fd = pipes.errors.1.as_raw_fd();
    if let Err(e) = namespaces::die_with_parent() {
        fail(err_fd, "namespaces", &format!("PR_SET_PDEATHSIG: {e}"));
    }
    mark(err_fd, prep, "prepare+fork");
    // The runner holds the read end of the error pipe; if it already died,
    // the write end reports POLLERR.
    if !namespaces::reader_alive(&pipes.errors.1) {
        namespaces::exit_now(hook_protocol::exit::INTERNAL);
    }
    if let Err(e) = namespaces::unshare(&policy::namespaces(prep.mode, prep.network)) {
        fail(err_fd, "namespaces", &format!("unshare: {e}"));
    }
    if prep.mode == Mode::UserNamespace
        && let Err(e) = namespaces::write_id_maps(outside, prep.ids)
    {
        fail(
            err_fd,
            "namespaces",
            &format!("user namespace id maps: {e}"),
        );
    }
    // The reaper's PDEATHSIG is set after fork; the lifeline closes if this
    // process died before that, so the reaper can notice and exit.
    let (life_r, life_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(err_fd, "namespaces", &format!("pipe: {e}")),
    };
    let reaper = match namespaces::fork() {
        Err(e) => fail(
            err_fd,
            "namespaces",
            &format!("fork into the PID namespace: {e}"),
        ),
        Ok(ForkResult::Child) => {
            drop(life_w);
            reaper_main(prep, job, pipes, life_r)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop((pipes, life_r));
    loop {
        match waitpid(reaper, None) {
            Ok(WaitStatus::Exited(_, code)) => namespaces::exit_now(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => namespaces::exit_now(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => namespaces::exit_now(hook_protocol::exit::INTERNAL),
        }
    }
}

/// Reports a failed step to the runner and exits.
fn fail(errors: RawFd, step: &str, message: &str) -> ! {
    let line = format!("{step}\t{}\n", message.replace(['\n', '\t'], " "));
    // SAFETY: `errors` is the write end of the error pipe, open in this process.
    let file = unsafe { std::fs::File::from_raw_fd(errors) };
    let _ = std::io::Write::write_all(&mut &file, line.as_bytes());
    std::mem::forget(file);
    namespaces::exit_now(hook_protocol::exit::CONFINEMENT_FAILED)
}

/// With tracing on, records on the error pipe that `step` just finished
/// (`@step<TAB>micros since the runner started`).
fn mark(errors: RawFd, prep: &Prepared, step: &str) {
    if let Some(started) = prep.trace {
        let line = format!("@{step}\t{}\n", started.elapsed().as_micros());
        // SAFETY: `errors` is the write end of the error pipe, open in this process.
        let file = unsafe { std::fs::File::from_raw_fd(errors) };
        let _ = std::io::Write::write_all(&mut &file, line.as_bytes());
        std::mem::forget(file);
    }
}

/// PID 1 of the hook's PID namespace.
fn reaper_main(prep: &Prepared, job: &HookJob, pipes: Pipes, lifeline: OwnedFd) -> ! {
    let err_fd = pipes.errors.1.as_raw_fd();
    if let Err(e) = namespaces::die_with_parent() {
        fail(err_fd, "namespaces", &format!("PR_SET_PDEATHSIG: {e}"));
    }
    if !namespaces::parent_alive(&lifeline) {
        namespaces::exit_now(hook_protocol::exit::INTERNAL);
    }
    drop(lifeline);
    let Pipes {
        input,
        result,
        diag,
        errors,
        listener,
        control,
    } = pipes;
    drop((input.1, result.0, diag.0, errors.0));
    let listener_hook_end = listener.map(|(runner_end, hook_end)| {
        drop(runner_end);
        hook_end
    });
    let control_template_end = control.map(|(runner_end, template_end)| {
        drop(runner_end);
        template_end
    });
    if let Err(e) = namespaces::set_hostname("sandbox") {
        fail(err_fd, "namespaces", &format!("sethostname: {e}"));
    }
    mark(err_fd, prep, "namespaces");
    if let Err(e) = mounts::build_root(&prep.plan) {
        fail(err_fd, "mounts", &e);
    }
    mark(err_fd, prep, "mounts");
    let hook = match namespaces::fork() {
        Err(e) => fail(err_fd, "namespaces", &format!("fork the hook: {e}")),
        Ok(ForkResult::Child) => hook_main(
            prep,
            job,
            [input.0, diag.1, result.1],
            errors.1,
            listener_hook_end,
            control_template_end,
        ),
        Ok(ForkResult::Parent { child }) => child,
    };
    drop((
        input.0,
        diag.1,
        result.1,
        errors.1,
        listener_hook_end,
        control_template_end,
    ));
    let cpu_budget = job.limits.cpu_secs;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == hook => namespaces::exit_now(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == hook => {
                // A SIGKILL after the CPU budget is the hard RLIMIT_CPU.
                let sig = if sig == Signal::SIGKILL && cpu_used_by_children() >= cpu_budget {
                    Signal::SIGXCPU
                } else {
                    sig
                };
                namespaces::exit_now(128 + sig as i32)
            }
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => namespaces::exit_now(hook_protocol::exit::INTERNAL),
        }
    }
}

fn cpu_used_by_children() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| (u.user_time().tv_sec() + u.system_time().tv_sec()).max(0) as u64)
        .unwrap_or(0)
}

/// The hook process: confines itself and execs the interpreter.
fn hook_main(
    prep: &Prepared,
    job: &HookJob,
    stdio: [OwnedFd; 3],
    errors: OwnedFd,
    listener_sock: Option<OwnedFd>,
    control: Option<OwnedFd>,
) -> ! {
    let err_fd = errors.as_raw_fd();
    if let Err(e) = namespaces::die_with_parent() {
        fail(err_fd, "namespaces", &format!("PR_SET_PDEATHSIG: {e}"));
    }
    // fds: 0 = harness input, 1 and 2 = diagnostics, 3 = result. Move the
    // sources above 3 first so no dup2 clobbers another.
    let high: Vec<OwnedFd> = stdio
        .into_iter()
        .map(|fd| match fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10)) {
            // SAFETY: F_DUPFD_CLOEXEC returned a new fd that we now own.
            Ok(n) => unsafe { OwnedFd::from_raw_fd(n) },
            Err(e) => fail(err_fd, "fds", &e.to_string()),
        })
        .collect();
    // Likewise a template's control socket, before anything lands on 0-4.
    let control_high = control.map(|fd| match fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10)) {
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that we now own.
        Ok(n) => unsafe { OwnedFd::from_raw_fd(n) },
        Err(e) => fail(err_fd, "fds", &e.to_string()),
    });
    for (src, dst) in [(0, 0), (1, 1), (1, 2), (2, 3)] {
        if let Err(e) = dup2_raw(high[src].as_raw_fd(), dst) {
            fail(err_fd, "fds", &format!("dup2 to {dst}: {e}"));
        }
    }
    drop(high);
    // A template's control socket: fd 4, kept across the exec.
    let mut keep = 3;
    if let Some(control) = control_high {
        if err_fd == TEMPLATE_CONTROL_FD {
            fail(err_fd, "fds", "the error pipe is on fd 4");
        }
        // dup2 leaves the copy without close-on-exec.
        if let Err(e) = dup2_raw(control.as_raw_fd(), TEMPLATE_CONTROL_FD) {
            fail(err_fd, "fds", &format!("dup2 to 4: {e}"));
        }
        drop(control);
        keep = TEMPLATE_CONTROL_FD as u32;
    }
    if let Err(e) = namespaces::cloexec_above(keep) {
        fail(err_fd, "fds", &e.to_string());
    }
    if let Err(e) = std::env::set_current_dir(policy::WORKSPACE) {
        fail(
            err_fd,
            "mounts",
            &format!("chdir {}: {e}", policy::WORKSPACE),
        );
    }
    mark(err_fd, prep, "fork+fds");
    let limits = match prep.role {
        Role::Hook => policy::rlimits(&job.limits),
        Role::Template => policy::template_rlimits(&job.limits),
    };
    if let Err(e) = rlimit::apply(&limits) {
        fail(err_fd, "rlimits", &e);
    }
    mark(err_fd, prep, "rlimits");
    if let Err(e) = creds::drop_privileges(prep.mode, prep.ids) {
        fail(err_fd, "credentials", &e);
    }
    mark(err_fd, prep, "credentials");
    if let Err(e) = seccomp::set_no_new_privs() {
        fail(err_fd, "no_new_privs", &e);
    }
    if let Err(e) = landlock::restrict_self(&prep.rules, &prep.ports) {
        fail(err_fd, "landlock", &e);
    }
    mark(err_fd, prep, "landlock");
    let policy: SeccompPolicy = match prep.role {
        Role::Hook => policy::seccomp_policy(prep.network, nix::unistd::getpid().as_raw() as u32),
        Role::Template => policy::template_seccomp_policy(),
    };
    match seccomp::install_gate(&policy) {
        Err(e) => fail(err_fd, "seccomp", &e),
        Ok(Some(listener)) => {
            let Some(sock) = listener_sock.as_ref() else {
                fail(err_fd, "seccomp", "no channel for the listener")
            };
            let fds = [listener.as_raw_fd()];
            let sent = sendmsg::<()>(
                sock.as_raw_fd(),
                &[IoSlice::new(b"L")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            );
            if let Err(e) = sent {
                fail(err_fd, "seccomp", &format!("hand over the listener: {e}"));
            }
            // The hook must never hold its own listener.
            drop(listener);
        }
        Ok(None) if prep.network == Network::Guarded => {
            fail(err_fd, "seccomp", "no listener for connect")
        }
        Ok(None) => {}
    }
    drop(listener_sock);
    if let Err(e) = seccomp::install_lists(&policy) {
        fail(err_fd, "seccomp", &e);
    }
    mark(err_fd, prep, "seccomp");
    let err = nix::unistd::execve(&prep.argv[0], &prep.argv, &prep.envp);
    let e = err.err().map(|e| e.to_string()).unwrap_or_default();
    fail(
        err_fd,
        "exec",
        &format!("{}: {e}", prep.argv[0].to_string_lossy()),
    )
}

fn dup2_raw(src: RawFd, dst: RawFd) -> nix::Result<()> {
    // SAFETY: dst is one of 0..=3, which this process owns; dup2 atomically
    // replaces it, and we deliberately keep the new fd open for the exec.
    let mut target = unsafe { OwnedFd::from_raw_fd(dst) };
    // SAFETY: src is a valid open fd borrowed for the call.
    let r = dup2(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(src) },
        &mut target,
    );
    std::mem::forget(target);
    r
}

// ---------------------------------------------------------------------------
// Outside: the supervisor

/// What the supervisor saw.
#[derive(Default)]
pub(crate) struct Seen {
    result: Vec<u8>,
    diag: Vec<u8>,
    diag_total: usize,
    errors: Vec<u8>,
    timed_out: bool,
    overrun: Option<&'static str>,
    pub(crate) exec_at: Option<Instant>,
    child_status: Option<WaitStatus>,
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map(|_| ())
}

/// Reads what is available; `Ok(true)` at EOF.
fn drain(fd: &OwnedFd, into: &mut Vec<u8>, keep: usize, total: &mut usize) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                *total += n;
                let room = keep.saturating_sub(into.len());
                into.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
}

/// The seccomp listener, as the hook sent it.
fn receive_listener(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut owned = Vec::new();
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS installed these fds in our table; we own
            // them (and close any we do not expect when `owned` drops).
            owned.extend(fds.iter().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }));
        }
    }
    let mut it = owned.into_iter();
    match (it.next(), it.next()) {
        (Some(listener), None) => Some(listener),
        _ => None,
    }
}

/// A fork template's control socket, at this fd in the template.
const TEMPLATE_CONTROL_FD: RawFd = 4;

/// The runner's ends of the pipes (the sandbox's ends closed here).
pub(crate) struct Ends {
    pub(crate) input_w: OwnedFd,
    pub(crate) result_r: OwnedFd,
    pub(crate) diag_r: OwnedFd,
    pub(crate) errors_r: OwnedFd,
    pub(crate) listener_sock: Option<OwnedFd>,
    /// A fork template's control socket (runner end).
    pub(crate) control: Option<OwnedFd>,
}

fn runner_ends(pipes: Pipes) -> Ends {
    let Pipes {
        input: (input_r, input_w),
        result: (result_r, result_w),
        diag: (diag_r, diag_w),
        errors: (errors_r, errors_w),
        listener,
        control,
    } = pipes;
    drop((input_r, result_w, diag_w, errors_w));
    Ends {
        input_w,
        result_r,
        diag_r,
        errors_r,
        listener_sock: listener.map(|(runner_end, hook_end)| {
            drop(hook_end);
            runner_end
        }),
        control: control.map(|(runner_end, template_end)| {
            drop(template_end);
            runner_end
        }),
    }
}

/// The process running the hook, as the supervisor reaches it.
pub(crate) enum Target<'a> {
    /// The namespace child; killing it kills the reaper (PDEATHSIG), which
    /// tears down the whole PID namespace.
    Namespace(Pid),
    /// A child of a fork template: killed by the template on a `K` message,
    /// its end reported by the template (`crate::template`).
    Forked(&'a mut crate::template::Control),
}

impl Target<'_> {
    fn kill(&mut self) {
        match self {
            Target::Namespace(pid) => {
                let _ = kill(*pid, Signal::SIGKILL);
            }
            Target::Forked(c) => c.kill_child(),
        }
    }

    /// Kills and reaps, for an early return.
    fn abort(&mut self) {
        self.kill();
        if let Target::Namespace(pid) = self {
            let _ = waitpid(*pid, None);
        }
    }
}

/// Writes the harness input, reads the result and diagnostics, answers
/// connects, and enforces the wall deadline (from `started`) and the output
/// caps. `seen` holds what was read before (a pre-warmed sandbox's steps).
pub(crate) fn supervise(
    job: &HookJob,
    ends: Ends,
    target: &mut Target<'_>,
    input: &[u8],
    // What the connect supervisor decides with, and the hook's kernel
    // uid and gid.
    connect: (ConnectPolicy, (u32, u32)),
    started: Instant,
    mut seen: Seen,
) -> HookOutcome {
    let Ends {
        input_w,
        result_r,
        diag_r,
        errors_r,
        listener_sock,
        control: _,
    } = ends;
    let mut listener_sock = listener_sock;
    let child_fd = match target {
        Target::Namespace(pid) => match namespaces::pidfd_open(*pid) {
            Ok(fd) => Some(fd),
            Err(e) => {
                target.abort();
                return internal(format!("pidfd_open: {e}"));
            }
        },
        Target::Forked(_) => None,
    };
    for fd in [&input_w, &result_r, &diag_r, &errors_r] {
        if let Err(e) = set_nonblocking(fd) {
            target.abort();
            return internal(format!("O_NONBLOCK: {e}"));
        }
    }
    let deadline = started + Duration::from_millis(job.limits.wall_ms);
    let result_cap = job
        .limits
        .max_output_bytes
        .min(hook_protocol::MAX_RESULT_BYTES);
    let mut connect = Some(connect);

    let mut input_w = Some(input_w);
    let mut input_off = 0usize;
    let mut result_r = Some(result_r);
    let mut diag_r = Some(diag_r);
    let mut errors_r = Some(errors_r);
    let mut supervisor: Option<Arc<unotify::Supervisor>> = None;
    let mut killed = false;
    let mut result_total = 0usize;
    let mut err_total = seen.errors.len();

    let mut result_done = false;
    loop {
        if result_done
            || (seen.child_status.is_some()
                && result_r.is_none()
                && diag_r.is_none()
                && errors_r.is_none())
        {
            break;
        }
        let now = Instant::now();
        if now >= deadline && !killed {
            seen.timed_out = true;
            target.kill();
            killed = true;
        }
        if seen.overrun.is_some() && !killed {
            target.kill();
            killed = true;
        }
        let timeout = if killed {
            PollTimeout::from(100u16)
        } else {
            let ms = deadline
                .saturating_duration_since(now)
                .as_millis()
                .min(10_000) as u16;
            PollTimeout::from(ms.max(1))
        };

        // Slots: 0 input, 1 result, 2 diag, 3 errors, 4 listener sock, 5 listener, 6 ns_child.
        let mut slots: Vec<usize> = Vec::new();
        let mut raw: Vec<PollFd> = Vec::new();
        if let Some(fd) = &input_w {
            slots.push(0);
            raw.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(fd) = &result_r {
            slots.push(1);
            raw.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = &diag_r {
            slots.push(2);
            raw.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = &errors_r {
            slots.push(3);
            raw.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = &listener_sock {
            slots.push(4);
            raw.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(sup) = &supervisor {
            slots.push(5);
            raw.push(PollFd::new(sup.listener.as_fd(), PollFlags::POLLIN));
        }
        if seen.child_status.is_none() {
            slots.push(6);
            let fd = match (&child_fd, &*target) {
                (Some(fd), _) => fd.as_fd(),
                (None, Target::Forked(c)) => c.sock.as_fd(),
                (None, Target::Namespace(_)) => unreachable!("a namespace child has a pidfd"),
            };
            raw.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let polled = poll(&mut raw, timeout);
        if let Err(e) = polled
            && e != Errno::EINTR
        {
            drop(raw);
            target.abort();
            return internal(format!("poll: {e}"));
        }
        let ready: Vec<(usize, PollFlags)> = slots
            .iter()
            .zip(&raw)
            .filter_map(|(slot, p)| {
                let r = p.revents().unwrap_or(PollFlags::empty());
                (!r.is_empty()).then_some((*slot, r))
            })
            .collect();
        drop(raw);
        // The error pipe first: its EOF (the exec) must be seen before a
        // result that arrived in the same wake-up.
        let mut ready = ready;
        ready.sort_by_key(|(slot, _)| if *slot == 3 { 0 } else { slot + 1 });
        for (slot, rev) in ready {
            match slot {
                0 => {
                    if let Some(fd) = &input_w {
                        let done = loop {
                            if input_off >= input.len() {
                                break true;
                            }
                            match nix::unistd::write(fd, &input[input_off..]) {
                                Ok(n) => input_off += n,
                                Err(Errno::EINTR) => continue,
                                Err(Errno::EAGAIN) => break false,
                                Err(_) => break true, // EPIPE: the hook is gone
                            }
                        };
                        if done || rev.contains(PollFlags::POLLERR) {
                            input_w = None; // EOF for the harness
                        }
                    }
                }
                1 => {
                    if let Some(fd) = &result_r {
                        let eof = drain(fd, &mut seen.result, result_cap + 1, &mut result_total);
                        if result_total > result_cap {
                            seen.overrun.get_or_insert("result");
                            result_r = None;
                        } else if eof {
                            result_r = None;
                            // A complete outcome is final: tear the namespace
                            // down without waiting for the interpreter's exit.
                            if seen.exec_at.is_some()
                                && serde_json::from_slice::<HookOutcome>(&seen.result).is_ok()
                            {
                                target.kill();
                                result_done = true;
                            }
                        }
                    }
                }
                2 => {
                    if let Some(fd) = &diag_r {
                        let eof = drain(
                            fd,
                            &mut seen.diag,
                            policy::DIAG_KEEP_BYTES,
                            &mut seen.diag_total,
                        );
                        if seen.diag_total > job.limits.max_output_bytes {
                            seen.overrun.get_or_insert("stdout/stderr");
                            diag_r = None;
                        } else if eof {
                            diag_r = None;
                        }
                    }
                }
                3 => {
                    if let Some(fd) = &errors_r
                        && drain(fd, &mut seen.errors, 4096, &mut err_total)
                    {
                        errors_r = None;
                        seen.exec_at = Some(Instant::now());
                    }
                }
                4 => {
                    if let Some(sock) = &listener_sock {
                        if let (Some(listener), Some((policy, hook_ids))) =
                            (receive_listener(sock), connect.take())
                        {
                            supervisor = Some(Arc::new(unotify::Supervisor::new(
                                listener, policy, hook_ids,
                            )));
                        }
                        listener_sock = None;
                    }
                }
                5 => {
                    if let Some(sup) = &supervisor {
                        if rev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                            supervisor = None;
                        } else if let Some(n) = unotify::recv(sup.listener.as_raw_fd()) {
                            unotify::handle(sup, n);
                        }
                    }
                }
                6 => match target {
                    Target::Namespace(pid) => match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                        Ok(st) => seen.child_status = Some(st),
                        Err(_) => seen.child_status = Some(WaitStatus::Exited(*pid, 70)),
                    },
                    Target::Forked(c) => {
                        if let Some(st) = c.receive(&mut seen.errors) {
                            seen.child_status = Some(st);
                        }
                    }
                },
                _ => {}
            }
        }
    }
    let finished = Instant::now();
    if result_done && let Target::Namespace(pid) = target {
        // Killed above; reaping it is quick and leaves no zombie behind.
        let _ = waitpid(*pid, None);
    }
    outcome(job, seen, started, finished)
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.len().saturating_sub(600);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

fn outcome(job: &HookJob, seen: Seen, started: Instant, finished: Instant) -> HookOutcome {
    let err = |error: HookError| HookOutcome::Error { error };
    if seen.timed_out {
        return err(HookError::Timeout {
            message: format!("wall time {} ms exceeded", job.limits.wall_ms),
        });
    }
    if let Some(what) = seen.overrun {
        return err(HookError::OutputOverrun {
            message: format!(
                "the hook's {what} exceeded {} bytes",
                job.limits.max_output_bytes
            ),
        });
    }
    let errors = String::from_utf8_lossy(&seen.errors);
    let mut last = 0u64;
    for (step, at) in errors
        .lines()
        .filter_map(|l| l.strip_prefix('@')?.split_once('\t'))
    {
        let at: u64 = at.parse().unwrap_or(0);
        eprintln!(
            "sandbox-runner: step {step} +{} us",
            at.saturating_sub(last)
        );
        last = at;
    }
    if last > 0
        && let Some(exec_at) = seen.exec_at
    {
        let exec_us = exec_at.saturating_duration_since(started).as_micros() as u64;
        eprintln!(
            "sandbox-runner: step execve +{} us",
            exec_us.saturating_sub(last)
        );
    }
    if let Some(line) = errors.lines().find(|l| !l.starts_with('@')) {
        let (step, message) = line.split_once('\t').unwrap_or(("unknown", line));
        return confinement(step, message);
    }
    let code = match seen.child_status {
        Some(WaitStatus::Exited(_, c)) => c,
        Some(WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
        _ => hook_protocol::exit::INTERNAL,
    };
    if code > 128 {
        let sig = Signal::try_from(code - 128).ok();
        return match sig {
            Some(Signal::SIGXCPU) => err(HookError::Timeout {
                message: format!("CPU time {} s exceeded", job.limits.cpu_secs),
            }),
            Some(Signal::SIGSYS) => err(HookError::Policy {
                line: None,
                message: "forbidden system call: seccomp killed the hook".into(),
            }),
            Some(s) => err(HookError::Exception {
                message: format!("the interpreter was killed by {s}"),
                traceback: tail(&seen.diag),
            }),
            None => internal(format!("reaper exit {code}")),
        };
    }
    let exec_at = seen.exec_at.unwrap_or(finished);
    let timings = Timings {
        confine_us: exec_at.saturating_duration_since(started).as_micros() as u64,
        hook_us: finished.saturating_duration_since(exec_at).as_micros() as u64,
    };
    if seen.result.is_empty() {
        let diag = tail(&seen.diag);
        if diag.contains("MemoryError") {
            return err(HookError::Memory {
                message: format!(
                    "address space limit of {} bytes reached",
                    job.limits.address_space_bytes
                ),
            });
        }
        return internal(format!(
            "the harness exited with {code} and no result: {diag}"
        ));
    }
    let reported = match serde_json::from_slice::<HookOutcome>(&seen.result) {
        Err(e) => return internal(format!("unreadable result from the harness: {e}")),
        Ok(o) => o,
    };
    // Fd 3 is within reach of bot code that got past the language layer: the
    // outcome is held to the protocol's one check (the daemon runs the same
    // one) before anything of it is relayed.
    let checked = job
        .limits
        .enforce(reported, &job.hook, &job.context.players, Origin::Harness);
    match checked {
        HookOutcome::Ok {
            posts,
            state,
            logs,
            manifest,
            ..
        } => HookOutcome::Ok {
            posts,
            state,
            logs,
            timings,
            manifest,
        },
        HookOutcome::Error {
            error: HookError::Exception { message, .. },
        } if message.starts_with("MemoryError") => err(HookError::Memory {
            message: format!(
                "address space limit of {} bytes reached ({message})",
                job.limits.address_space_bytes
            ),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hook_protocol::Limits;

    fn test_job() -> HookJob {
        serde_json::from_value(json!({
            "version": 1,
            "bot": {"name": "b", "source": "x"},
            "hook": {"name": "on_init"},
            "context": {"channel_id": "c", "bot_id": "bot:b", "players": []},
            "state": {},
            "limits": serde_json::to_value(Limits::default()).unwrap(),
            "network": {"allowed": false},
            "runtime": {"python": "/usr/bin/python3", "python_args": [], "harness_dir": "/h",
                        "sandbox_uid": 1, "sandbox_gid": 1}
        }))
        .unwrap()
    }

    fn exited(code: i32) -> Option<WaitStatus> {
        Some(WaitStatus::Exited(Pid::from_raw(1), code))
    }

    fn kind(o: &HookOutcome) -> String {
        serde_json::to_value(o).unwrap()["error"]["kind"]
            .as_str()
            .unwrap_or("ok")
            .to_string()
    }

    #[test]
    fn outcomes_map_deadlines_signals_and_failures() {
        let job = test_job();
        let t = Instant::now();
        let with = |f: &dyn Fn(&mut Seen)| {
            let mut seen = Seen {
                child_status: exited(0),
                exec_at: Some(t),
                ..Seen::default()
            };
            f(&mut seen);
            outcome(&job, seen, t, t)
        };
        assert_eq!(kind(&with(&|s| s.timed_out = true)), "timeout");
        assert_eq!(
            kind(&with(&|s| s.overrun = Some("result"))),
            "output_overrun"
        );
        let o = with(&|s| s.errors = b"landlock\truleset NotEnforced\n".to_vec());
        match o {
            HookOutcome::Error {
                error: HookError::Confinement { step, message },
            } => assert_eq!(
                (step.as_str(), message.as_str()),
                ("landlock", "ruleset NotEnforced")
            ),
            o => panic!("{o:?}"),
        }
        // Trace lines are not failures.
        let o = with(&|s| {
            s.errors = b"@mounts\t10\n".to_vec();
            s.result = br#"{"status":"ok","posts":[],"state":{}}"#.to_vec();
        });
        assert_eq!(kind(&o), "ok");
        assert_eq!(
            kind(&with(&|s| s.child_status = exited(128 + 24))),
            "timeout"
        );
        assert_eq!(
            kind(&with(&|s| s.child_status = exited(128 + 31))),
            "policy"
        );
        assert_eq!(
            kind(&with(&|s| s.child_status = exited(128 + 11))),
            "exception"
        );
        assert_eq!(kind(&with(&|s| s.diag = b"MemoryError".to_vec())), "memory");
        assert_eq!(kind(&with(&|_| {})), "internal", "no result at all");
        assert_eq!(
            kind(&with(&|s| s.result = b"{not json".to_vec())),
            "internal"
        );
        let o = with(&|s| {
            s.result = br#"{"status":"error","error":{"kind":"exception","message":"MemoryError: x","traceback":""}}"#.to_vec()
        });
        assert_eq!(kind(&o), "memory");
        // What fd 3 says is held to the protocol's check: a forged runner
        // error or a post to someone who is not a player is a limit error.
        let o = with(&|s| {
            s.result = br#"{"status":"error","error":{"kind":"confinement","step":"landlock","message":"x"}}"#.to_vec()
        });
        assert_eq!(kind(&o), "limit");
        let o = with(&|s| {
            s.result =
                br#"{"status":"ok","posts":[{"type":"t","body":1,"to":["mallory"]}],"state":{}}"#
                    .to_vec()
        });
        assert_eq!(kind(&o), "limit");
    }

    #[test]
    fn harness_input_carries_unchecked_only_with_the_test_switch() {
        let job: HookJob = serde_json::from_value(json!({
            "version": 1,
            "bot": {"name": "b", "source": "x"},
            "hook": {"name": "on_init"},
            "context": {"channel_id": "c", "bot_id": "bot:b", "players": []},
            "state": {},
            "limits": serde_json::to_value(Limits::default()).unwrap(),
            "network": {"allowed": true},
            "runtime": {"python": "/usr/bin/python3", "python_args": [], "harness_dir": "/h",
                        "python_path": ["/a", "/b"], "sandbox_uid": 1, "sandbox_gid": 1}
        }))
        .unwrap();
        let v = harness_input(&job, &Options::default());
        assert!(v.get("unchecked").is_none());
        assert_eq!(v["network"], json!(true));
        assert_eq!(v["workspace"], json!("/workspace"));
        assert_eq!(v["sys_path"], json!(["/pylib/0", "/pylib/1"]));
        assert!(v.get("entropy").is_none() && v.get("now").is_none(), "{v}");
        let v = harness_input(
            &job,
            &Options {
                unchecked_language_layer: true,
                ..Options::default()
            },
        );
        assert_eq!(v["unchecked"], json!(true));
    }

    #[test]
    fn harness_input_passes_entropy_and_now_through_when_the_job_has_them() {
        let mut job = test_job();
        job.version = hook_protocol::PROTOCOL_VERSION;
        job.entropy = Some("7f".repeat(32).parse().unwrap());
        job.now = Some("2026-11-21T11:31:29.123Z".parse().unwrap());
        let v = harness_input(&job, &Options::default());
        assert_eq!(v["entropy"], json!("7f".repeat(32)));
        assert_eq!(v["now"], json!("2026-11-21T11:31:29.123Z"));
        assert!(v.get("hash_seed").is_none(), "{v}");
        job.hash_seed = Some(4_000_000_000);
        let v = harness_input(&job, &Options::default());
        assert_eq!(v["hash_seed"], json!(4_000_000_000u32));
    }
}
