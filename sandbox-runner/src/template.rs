//! Fork templates (`sandbox-runner --template`): one confined interpreter
//! that forks one child per hook, so a hook costs a `fork` instead of a
//! whole interpreter start (README.md, "Fork templates").
//!
//! The template is confined exactly like a hook (the same order of steps,
//! the same fail-closed checks: `sandbox::launch` with `Role::Template`),
//! with a seccomp allowlist that adds only what forking one child at a time
//! needs (`policy::template_seccomp_policy`) and a CPU limit for its whole
//! life. Each child, before it reads its job, lowers its CPU limit to a
//! hook's and installs, on top of the template's filters (whose gate and
//! kill list are already the hook's), a filter that narrows the template's
//! allowlist to exactly the hook's, which the runner builds here and hands
//! over as bytes (`seccomp::child_programs`); the template's identity,
//! rlimits,
//! `no_new_privs` and Landlock domain are already a hook's. So the child's
//! end state is a fresh hook's.
//!
//! This side of it is the supervisor: it reads jobs, one JSON document per
//! line on stdin, and prints one outcome per line on stdout. The child for
//! the next job is forked ahead of it: once the template is ready, and
//! again once a hook's outcome is out, the runner makes the next hook's
//! pipes and passes the template's ends over the control socket
//! (`SCM_RIGHTS`); the child confines itself and blocks reading its input.
//! A job is handed over by writing it there, and from then on the child is
//! supervised with the same loop as any hook (`sandbox::supervise`: the
//! harness input, the wall deadline from the hand-over, the output caps,
//! the outcome check).
//!
//! The control socket (seqpacket), runner → template:
//!
//! * `P` + placeholder pid, hooks and CPU seconds after which to retire,
//!   count (u32 each) + per filter: length (u32), bytes: the hook's
//!   filters, once, first;
//! * `J` + the hook's CPU budget in seconds (u32), with three descriptors
//!   (input, stdout/stderr, result): fork the child for one hook, which
//!   reads its job from the input;
//! * `K`: kill the running child (deadline, output cap, or its result is
//!   complete); ignored when none runs;
//! * `C` + a bot's compiled code (the `code` of its `CompiledBot`, base64
//!   text), sent between jobs once a job has shown it: the template decodes
//!   and unmarshals it once, and a child whose job carries exactly that text
//!   uses the result instead of decoding its own (it checks everything else
//!   about the artifact as always). Only up to [`MAX_CODE_MESSAGE`] bytes.
//!
//! template → runner: `R` (ready, once, after its warm-up); `F` +
//! `step<TAB>message` (the child could not confine itself; it exits without
//! running the bot); `S` + status (i32: the exit code, or 128 + signal) once
//! the child is reaped and the workspace emptied, ready for the next job.
//! Anything else, or EOF, ends the template: the runner kills its namespace
//! and exits.
//!
//! Only jobs with a hash seed (a seeded bot's, which all share that seed)
//! and without network get a template: a hash seed is fixed at the
//! interpreter's start, and a network bot's connect supervisor listens on
//! one process's seccomp filter.

use crate::cli::write_outcome;
use crate::sandbox::{self, Ends, Options, Role, Seen, Target};
use crate::{namespaces, policy, seccomp};
use hook_protocol::{HookError, HookJob, HookOutcome, MAX_JOB_BYTES, WarmSpec};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessage, MsgFlags, recv, send, sendmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a template may take from its exec to `R`, and a child's end
/// to its `S` after a kill.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The largest `C` message: well within a seqpacket socket's default send
/// buffer. A bot whose code is larger has each child decode it.
const MAX_CODE_MESSAGE: usize = 160 * 1024;

/// The runner's end of a template's control socket.
pub(crate) struct Control {
    pub(crate) sock: OwnedFd,
    /// `K` sent for the running child.
    killed: bool,
    /// `S` received for the running child.
    status: bool,
    /// The template ended or broke the protocol.
    pub(crate) gone: bool,
    /// A job was handed over and its `S` is due.
    running: bool,
}

impl Control {
    fn new(sock: OwnedFd) -> Control {
        Control {
            sock,
            killed: false,
            status: false,
            gone: false,
            running: false,
        }
    }

    fn status_received(&self) -> bool {
        self.status
    }

    /// Whether the template has said something (or ended) since the last
    /// message read: between jobs, only a child that ended early does.
    fn pending(&self) -> bool {
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Between jobs.
    fn reset(&mut self) {
        self.killed = false;
        self.status = false;
        self.running = false;
    }

    fn send(&mut self, msg: &[u8]) {
        if send(self.sock.as_raw_fd(), msg, MsgFlags::MSG_NOSIGNAL).is_err() {
            self.gone = true;
        }
    }

    /// Asks the template to kill the running child (once per job).
    pub(crate) fn kill_child(&mut self) {
        if !self.killed {
            self.killed = true;
            self.send(b"K");
        }
    }

    /// One message from the template: `Some(status)` when it reports the
    /// child's end; an `F` report goes to `errors` as a failed step.
    pub(crate) fn receive(&mut self, errors: &mut Vec<u8>) -> Option<WaitStatus> {
        let mut buf = [0u8; 4096];
        let n = match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return None,
            Err(_) => 0,
        };
        let msg = &buf[..n];
        match msg.first() {
            Some(b'S') if n == 5 => {
                let code = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
                let pid = Pid::from_raw(0);
                self.status = true;
                Some(match code.checked_sub(128).map(Signal::try_from) {
                    Some(Ok(sig)) if code > 128 => WaitStatus::Signaled(pid, sig, false),
                    _ => WaitStatus::Exited(pid, code),
                })
            }
            Some(b'F') => {
                let text = String::from_utf8_lossy(&msg[1..]).replace('\n', " ");
                let line = if text.contains('\t') {
                    text
                } else {
                    format!("fork\t{text}")
                };
                errors.extend_from_slice(line.as_bytes());
                errors.push(b'\n');
                None
            }
            _ => {
                // EOF or a message out of protocol: the template is done.
                self.gone = true;
                Some(WaitStatus::Exited(
                    Pid::from_raw(0),
                    hook_protocol::exit::INTERNAL,
                ))
            }
        }
    }

    /// Waits for one message until `until`; `None` at the time limit.
    fn wait_message(&mut self, until: Instant) -> Option<Vec<u8>> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, sandbox::poll_timeout(left)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(_) => {
                    self.gone = true;
                    return Some(Vec::new());
                }
            }
            let mut buf = [0u8; 4096];
            match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    if n == 0 {
                        self.gone = true;
                    }
                    return Some(buf[..n].to_vec());
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(_) => {
                    self.gone = true;
                    return Some(Vec::new());
                }
            }
        }
    }
}

/// How many hooks a template for `spec` serves before it retires: the
/// spec's `retire_after_hooks` when it is lower than the runner's limit.
fn retire_hooks(spec: &WarmSpec) -> u32 {
    let limit = policy::TEMPLATE_RETIRE_HOOKS as u32;
    spec.retire_after_hooks.map_or(limit, |n| n.min(limit))
}

/// The `P` message: the filters each child installs on top of the
/// template's (`seccomp::child_programs`, with the pid placeholder), and
/// when the template retires.
fn programs_message(spec: &WarmSpec) -> Result<Vec<u8>, String> {
    let programs = seccomp::child_programs(&policy::template_seccomp_policy())?;
    let mut msg = b"P".to_vec();
    msg.extend_from_slice(&seccomp::PID_PLACEHOLDER.to_ne_bytes());
    msg.extend_from_slice(&retire_hooks(spec).to_ne_bytes());
    msg.extend_from_slice(&(policy::TEMPLATE_RETIRE_CPU_SECS as u32).to_ne_bytes());
    msg.extend_from_slice(&(programs.len() as u32).to_ne_bytes());
    for p in &programs {
        msg.extend_from_slice(&(p.len() as u32).to_ne_bytes());
        msg.extend_from_slice(p);
    }
    Ok(msg)
}

fn internal(message: impl Into<String>) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::internal(message),
    }
}

/// The outcome of a job of which nothing of the bot ran: the daemon runs
/// it again, fresh.
fn nothing_ran(message: impl std::fmt::Display) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::nothing_ran(message),
    }
}

/// Why a spec gets no template (`None`: it may have one).
pub fn refusal(spec: &WarmSpec) -> Option<&'static str> {
    if spec.hash_seed.is_none() {
        return Some("a fork template needs a hash seed (a seeded bot's)");
    }
    if spec.network.allowed {
        return Some("network bots get no fork template");
    }
    if spec.retire_after_hooks == Some(0) {
        return Some("retire_after_hooks must be at least 1 (absent: the runner's limit)");
    }
    None
}

/// Reads lines from stdin (raw descriptor, bounded per line).
struct Lines {
    buf: Vec<u8>,
    eof: bool,
}

impl Lines {
    /// The next line (without its newline); `Ok(None)` at EOF; `Err` when
    /// `until` passes first (`"idle"`), the template ends meanwhile
    /// (`"gone"`: it retired or died between jobs) or the line is too long.
    fn next(&mut self, until: Instant, control: &Control) -> Result<Option<Vec<u8>>, String> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let mut chunk = vec![0u8; 65536];
        // A message from the template between jobs (a waiting child that
        // failed) is for the next job; only the socket's end is watched for.
        let mut watch_control = true;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let rest = self.buf.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_JOB_BYTES {
                return Err(format!("job line longer than {MAX_JOB_BYTES} bytes"));
            }
            if self.eof {
                return Ok(None);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("idle".into());
            }
            let mut fds = [
                PollFd::new(fd, PollFlags::POLLIN),
                PollFd::new(control.sock.as_fd(), PollFlags::POLLIN),
            ];
            let watched = if watch_control { 2 } else { 1 };
            match poll(&mut fds[..watched], sandbox::poll_timeout(left)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            // A job that came with the template's end is answered first
            // (its child is gone: "nothing ran", and the daemon reruns it
            // at once); the end is seen on the next wait, or at the top of
            // the loop.
            let stdin_ready = fds[0].any().unwrap_or(true);
            if !stdin_ready && watched == 2 && fds[1].any().unwrap_or(true) {
                let mut byte = [0u8; 1];
                match recv(
                    control.sock.as_raw_fd(),
                    &mut byte,
                    MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(0) => return Err("gone".into()),
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Ok(_) => watch_control = false,
                    Err(_) => return Err("gone".into()),
                }
            }
            if !stdin_ready {
                continue;
            }
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(format!("reading a job: {e}")),
            }
        }
    }

    /// The jobs already written to stdin, read without waiting: what the
    /// daemon sent before the runner saw its template end. Each gets an
    /// answer, so that a job is never left without one.
    fn arrived(&mut self) -> Vec<Vec<u8>> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let mut chunk = vec![0u8; 65536];
        while !self.eof && self.buf.len() <= MAX_JOB_BYTES {
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(1) if fds[0].any().unwrap_or(false) => {}
                Err(Errno::EINTR) => continue,
                _ => break,
            }
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => break,
            }
        }
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let rest = self.buf.split_off(i + 1);
            let mut line = std::mem::replace(&mut self.buf, rest);
            line.pop();
            lines.push(line);
        }
        lines
    }
}

/// Answers the jobs that came before the runner saw its template end:
/// none of them ran, and the daemon reruns them.
fn answer_pending(lines: &mut Lines) {
    for _ in lines.arrived() {
        write_outcome(&nothing_ran("the fork template ended before this job"));
    }
}

/// `--template`: confines a template from `spec`, then serves jobs, one per
/// line, until stdin ends, `spec.idle_ms` pass without a job, or the
/// template retires or fails. Returns the exit code: 0 after a normal end,
/// 2 for a spec that gets no template, 3 when the template could not be
/// confined (its outcome is printed), 70 when it failed later.
pub fn serve(spec: &WarmSpec, opts: &Options, started: Instant, prefix: Vec<u8>) -> i32 {
    if let Some(why) = refusal(spec) {
        write_outcome(&internal(why));
        return hook_protocol::exit::BAD_JOB;
    }
    let placeholder = sandbox::placeholder_job(spec);
    let launched = match sandbox::launch(&placeholder, opts, started, Role::Template) {
        Ok(l) => l,
        Err(o) => {
            write_outcome(&o);
            return crate::cli::exit_code(&o);
        }
    };
    let ns_child = launched.ns_child;
    let stop = |code: i32| {
        let _ = kill(ns_child, Signal::SIGKILL);
        let _ = waitpid(ns_child, None);
        code
    };
    let Ends {
        input_w,
        result_r,
        diag_r,
        errors_r,
        control,
        ..
    } = launched.ends;
    // The template reads nothing on its own stdin and writes no result.
    drop((input_w, result_r));
    let Some(control) = control else {
        write_outcome(&internal("no control socket"));
        return stop(hook_protocol::exit::INTERNAL);
    };
    let mut control = Control::new(control);
    let idle = Duration::from_millis(spec.idle_ms);

    // 1. Confined and exec'd, or the step that failed.
    let mut errors = Vec::new();
    if let Err(why) = sandbox::wait_for_exec(&errors_r, started + READY_WITHIN, &mut errors) {
        write_outcome(&internal(why));
        return stop(hook_protocol::exit::INTERNAL);
    }
    let text = String::from_utf8_lossy(&errors);
    if let Some(line) = text.lines().find(|l| !l.starts_with('@')) {
        let (step, message) = line.split_once('\t').unwrap_or(("unknown", line));
        let o = HookOutcome::Error {
            error: HookError::Confinement {
                step: step.into(),
                message: message.into(),
            },
        };
        write_outcome(&o);
        return stop(hook_protocol::exit::CONFINEMENT_FAILED);
    }
    // 2. The hook's filters, then the template's warm-up.
    match programs_message(spec) {
        Ok(msg) => control.send(&msg),
        Err(e) => {
            write_outcome(&internal(format!("hook filters: {e}")));
            return stop(hook_protocol::exit::INTERNAL);
        }
    }
    match control.wait_message(Instant::now() + READY_WITHIN) {
        Some(m) if m == b"R" => {}
        _ => {
            let diag = drain_now(&diag_r);
            write_outcome(&internal(format!(
                "the fork template did not get ready: {diag}"
            )));
            return stop(hook_protocol::exit::INTERNAL);
        }
    }

    // 3. Jobs. The next job's child is forked and confined ahead of the
    // job, and waits for its input (see `prepare`).
    let mut lines = Lines {
        buf: prefix,
        eof: false,
    };
    let mut next = prepare(&mut control, spec.limits.cpu_secs).ok();
    // The compiled code the template has (`C`), or was offered.
    let mut code_sent: Option<String> = None;
    loop {
        if control.gone {
            answer_pending(&mut lines);
            eprintln!("sandbox-runner: fork template ended");
            return stop(hook_protocol::exit::OK);
        }
        let line = match lines.next(Instant::now() + idle, &control) {
            Ok(Some(l)) => l,
            Ok(None) => return stop(hook_protocol::exit::OK),
            Err(why) if why == "gone" => {
                // Retired (its hooks or its CPU time) or died between jobs:
                // the daemon starts another when it needs one.
                answer_pending(&mut lines);
                eprintln!("sandbox-runner: fork template ended");
                return stop(hook_protocol::exit::OK);
            }
            Err(why) if why == "idle" => {
                eprintln!(
                    "sandbox-runner: fork template had no job for {} ms; it exits",
                    spec.idle_ms
                );
                return stop(hook_protocol::exit::OK);
            }
            Err(why) => {
                write_outcome(&internal(why));
                return stop(hook_protocol::exit::BAD_JOB);
            }
        };
        let job: HookJob = match serde_json::from_slice(&line) {
            Ok(j) => j,
            Err(e) => {
                write_outcome(&nothing_ran(format!("malformed job: {e}")));
                continue;
            }
        };
        if let Some(why) = spec.mismatch(&job) {
            write_outcome(&nothing_ran(why));
            continue;
        }
        let handover = Instant::now();
        let o = match next.take() {
            Some(child) => run_one(&job, opts, &mut control, child, handover),
            None => match prepare(&mut control, spec.limits.cpu_secs) {
                Ok(child) => run_one(&job, opts, &mut control, child, handover),
                Err(o) => *o,
            },
        };
        // The outcome is final once the child's result is complete: it goes
        // out now, and the child's reaping, the emptying of the workspace
        // and the next child's start overlap with the daemon's commit.
        write_outcome(&o);
        await_ready(&mut control);
        if let Some(compiled) = &job.bot.compiled
            && code_sent.as_deref() != Some(compiled.code.as_str())
            && !control.gone
        {
            if compiled.code.len() < MAX_CODE_MESSAGE {
                let mut msg = Vec::with_capacity(1 + compiled.code.len());
                msg.push(b'C');
                msg.extend_from_slice(compiled.code.as_bytes());
                control.send(&msg);
            }
            code_sent = Some(compiled.code.clone());
        }
        if !control.gone {
            next = prepare(&mut control, spec.limits.cpu_secs).ok();
        }
    }
}

/// The pipes of a child forked for the next job: confined, blocked reading
/// its (still empty) input.
struct Child {
    input_w: OwnedFd,
    diag_r: OwnedFd,
    result_r: OwnedFd,
    errors_r: OwnedFd,
    /// A second read end of the input, never read: what is still in the
    /// pipe when the child ends is what it did not read.
    input_peek: OwnedFd,
}

/// Has the template fork the next job's child. The child confines itself
/// (CPU limit, the hook's seccomp filters...) and then blocks reading its
/// input, so none of that is on the next hook's path; it runs no bot code
/// before it has its job. Its CPU limit counts from its fork, like a
/// pre-warmed sandbox's from its start: the second above the hook's budget
/// covers this. `Err` is the outcome of a job that would have run in it.
fn prepare(control: &mut Control, cpu_secs: u64) -> Result<Child, Box<HookOutcome>> {
    let pipes = (|| -> nix::Result<_> {
        Ok((
            pipe2(OFlag::O_CLOEXEC)?,
            pipe2(OFlag::O_CLOEXEC)?,
            pipe2(OFlag::O_CLOEXEC)?,
            pipe2(OFlag::O_CLOEXEC)?,
        ))
    })();
    let ((input_r, input_w), (diag_r, diag_w), (result_r, result_w), (errors_r, errors_w)) =
        match pipes {
            Ok(p) => p,
            Err(e) => return Err(Box::new(nothing_ran(format!("pipes: {e}")))),
        };
    // No confinement step runs on this side: the error pipe's EOF marks
    // the hand-over (`timings.confine_us` is about 0).
    drop(errors_w);
    let mut msg = b"J".to_vec();
    let cpu = u32::try_from(cpu_secs).unwrap_or(u32::MAX);
    msg.extend_from_slice(&cpu.to_ne_bytes());
    let fds = [
        input_r.as_raw_fd(),
        diag_w.as_raw_fd(),
        result_w.as_raw_fd(),
    ];
    let input_peek = match input_r.try_clone() {
        Ok(fd) => fd,
        Err(e) => return Err(Box::new(nothing_ran(format!("pipes: {e}")))),
    };
    control.killed = false;
    let sent = sendmsg::<()>(
        control.sock.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
    drop((input_r, diag_w, result_w));
    if let Err(e) = sent {
        control.gone = true;
        return Err(Box::new(nothing_ran(format!(
            "fork template: hand-over failed ({e})"
        ))));
    }
    control.running = true;
    Ok(Child {
        input_w,
        diag_r,
        result_r,
        errors_r,
        input_peek,
    })
}

/// One job in `child`. When this returns, the child may still be running
/// (it is being killed: its result is complete or it ran out of time or
/// output); [`await_ready`] waits for its end.
fn run_one(
    job: &HookJob,
    opts: &Options,
    control: &mut Control,
    child: Child,
    handover: Instant,
) -> HookOutcome {
    // A child that ended before its job (it could not confine itself, or
    // the template retired or died meanwhile) has not run the bot.
    let mut errors = Vec::new();
    if control.pending() {
        let _ = control.receive(&mut errors);
        control.gone = true;
        let text = String::from_utf8_lossy(&errors);
        if let Some(line) = text.lines().next() {
            let (step, message) = line.split_once('\t').unwrap_or(("fork", line));
            return HookOutcome::Error {
                error: HookError::Confinement {
                    step: step.into(),
                    message: message.into(),
                },
            };
        }
        return nothing_ran("the fork template's child ended before its job");
    }
    let input = match serde_json::to_vec(&sandbox::harness_input(job, opts)) {
        Ok(v) => v,
        Err(e) => return internal(format!("serialize harness input: {e}")),
    };
    let ends = Ends {
        input_w: child.input_w,
        result_r: child.result_r,
        diag_r: child.diag_r,
        errors_r: child.errors_r,
        listener_sock: None,
        control: None,
    };
    let outcome = sandbox::supervise(
        job,
        ends,
        &mut Target::Forked(control),
        &input,
        (Default::default(), (0, 0)),
        handover,
        Seen::default(),
    );
    // A child killed from outside while it waited (the OOM killer, an
    // operator) may be reported only after its job was written. The harness
    // reads its whole input before it looks at the job, so input left in the
    // pipe means that no bot code ran: the daemon reruns such a hook fresh.
    let confinement = matches!(
        outcome,
        HookOutcome::Error {
            error: HookError::Confinement { .. }
        }
    );
    if !confinement
        && !matches!(outcome, HookOutcome::Ok { .. })
        && namespaces::unread_bytes(child.input_peek.as_fd()).is_ok_and(|n| n > 0)
    {
        return nothing_ran("the fork template's child ended before it read its job");
    }
    outcome
}

/// Until the template reports the child reaped and the workspace empty, so
/// that the next job finds it ready.
fn await_ready(control: &mut Control) {
    if control.running && !control.gone && !control.status_received() {
        control.kill_child();
        let until = Instant::now() + READY_WITHIN;
        loop {
            match control.wait_message(until) {
                None => {
                    control.gone = true;
                    break;
                }
                Some(m) if m.first() == Some(&b'S') && m.len() == 5 => break,
                Some(m) if m.first() == Some(&b'F') => {}
                Some(_) => {
                    control.gone = true;
                    break;
                }
            }
        }
    }
    control.reset();
}

/// Whatever the template wrote to its stdout/stderr so far.
fn drain_now(fd: &OwnedFd) -> String {
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut buf = vec![0u8; 16384];
    match nix::unistd::read(fd, &mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(retire_after_hooks: Option<u32>) -> WarmSpec {
        let job: HookJob = serde_json::from_value(serde_json::json!({
            "version": hook_protocol::PROTOCOL_VERSION,
            "bot": {"name": "b", "source": "x"},
            "hook": {"name": "on_init"},
            "context": {"channel_id": "c", "bot_id": "bot:b", "players": []},
            "state": {},
            "limits": serde_json::to_value(hook_protocol::Limits::default()).unwrap(),
            "network": {"allowed": false},
            "runtime": {"python": "/usr/bin/python3", "python_args": [], "harness_dir": "/h",
                        "sandbox_uid": 1, "sandbox_gid": 1},
            "hash_seed": 7
        }))
        .unwrap();
        let mut spec = WarmSpec::of(&job, 1000);
        spec.retire_after_hooks = retire_after_hooks;
        spec
    }

    #[test]
    fn the_programs_message_carries_the_childs_narrowing_filter() {
        let msg = programs_message(&spec(None)).unwrap();
        assert_eq!(msg[0], b'P');
        let word = |at: usize| u32::from_ne_bytes(msg[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(word(1) as u32, seccomp::PID_PLACEHOLDER);
        assert_eq!(word(5) as u64, policy::TEMPLATE_RETIRE_HOOKS);
        assert_eq!(word(9) as u64, policy::TEMPLATE_RETIRE_CPU_SECS);
        let want = seccomp::child_programs(&policy::template_seccomp_policy()).unwrap();
        assert_eq!(word(13), want.len());
        let mut at = 17;
        for program in &want {
            let len = word(at);
            assert_eq!(&msg[at + 4..at + 4 + len], program.as_slice());
            at += 4 + len;
        }
        assert_eq!(at, msg.len());
    }

    #[test]
    fn a_spec_may_retire_its_template_sooner_never_later() {
        let hooks = |spec: &WarmSpec| {
            let msg = programs_message(spec).unwrap();
            u32::from_ne_bytes(msg[5..9].try_into().unwrap())
        };
        assert_eq!(hooks(&spec(Some(3))), 3);
        assert_eq!(
            hooks(&spec(Some(u32::MAX))),
            policy::TEMPLATE_RETIRE_HOOKS as u32
        );
        assert!(refusal(&spec(Some(0))).is_some());
        assert!(refusal(&spec(Some(1))).is_none());
    }
}
