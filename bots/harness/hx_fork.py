"""Fork template: one confined interpreter that forks one child per hook.

`sandbox-runner --template` confines this process exactly like a hook's
(uid, rlimits, no_new_privs, Landlock, seccomp; the seccomp allowlist adds
only what forking needs) and execs `harness.py --template`. The template
loads what every hook needs (`hx_core.warm_up`), then serves jobs from the
runner over its control socket (fd 4; the messages are listed in
sandbox-runner/src/template.rs). It runs no bot code itself: for each job it
forks a child, and the child, before it reads its job,

1. moves the hook's pipes to fds 0-3,
2. lowers its CPU limit to the hook's (it counts from the fork, so from the
   hand-over),
3. becomes dumpable as a fresh hook's interpreter is after its execve,
4. installs, on top of the template's seccomp filters, the one the runner
   built to narrow them to a hook's (each call the template's allowlist
   widened gets the hook's rule back; the child's pid is written into the
   `tgkill` rule), and checks that it took effect (a call the template may
   make and a hook may not, `wait4`, must now fail with EPERM),
5. closes every other descriptor, reseeds `random`, and puts `sys.argv`
   and `sys.modules` back to what a fresh hook has,
6. unless its job is already there, runs the job-independent parts of a
   hook's path on made-up data (`hx_core.prewarm_hook_path`), so that what
   the hook touches of the memory it shares with the template is copied
   before the job, not during the hook,

then runs the hook as `harness.py` does, reading its job from fd 0. The
runner forks the child for a job ahead of it (`J` comes before the job is
known), so the child may wait there, confined, until its job is written.
Anything that fails before the bot runs is reported to the runner (`F`)
and the child exits without running it. The template waits for the child, kills it when the runner
asks (`K`), empties the workspace, and reports (`S`). It retires after the
number of hooks or the CPU time the runner gives it.

Before its first child the template builds the language layer (a bot
without network has the same one in every hook until the hook binds its
source, violation record and clock to it; each child binds its own copy),
and the facades of the modules its bot's code names once it has that code
(`C`); and it moves everything it holds to the garbage collector's
permanent generation (`gc.freeze()`), so that a child's collections walk
only what the child made.
"""

import os
import posix
import sys
import time

import hx_core

CONTROL_FD = 4
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
WORKSPACE = "/workspace"
SIGKILL = 9
SIGXCPU = 24


def fail(ctrl, step, message):
    try:
        ctrl.send(b"F" + f"{step}\t{message}".encode("utf-8", "replace")[:3000])
    finally:
        posix._exit(3)


def serve():
    """`harness.py --template`; returns the exit code."""
    hx_core.warm_up()
    # Every job a template takes has a hash seed (the runner refuses a spec
    # without one, and a job that differs from the spec), so every hook
    # imports `hx_determinism` first thing, fresh or forked: loaded here once.
    __import__("hx_determinism")

    # The language layer of a bot without network is the same for every
    # hook until the hook binds its source, its violation record and its
    # clock to it: built here once, before any child, and each child binds
    # its own copy. (A fresh hook builds the same layer, importing the same
    # modules, before its bot runs.)
    import hx_runtime

    layer, bind_hook = hx_runtime.prepare_layer(False)

    # What a fresh hook has loaded by the time its bot runs; the child puts
    # these back.
    baseline = set(sys.modules)
    baseline.discard("hx_fork")
    fresh_argv = [a for a in sys.argv if a != "--template"]
    fresh_orig_argv = [a for a in sys.orig_argv if a != "--template"]

    import ctypes
    import gc
    import resource
    import select
    import socket
    import struct

    libc = ctypes.CDLL(None, use_errno=True)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    ctrl = socket.socket(fileno=CONTROL_FD)
    ctrl.setblocking(True)
    # The template's memory holds no secret, but nothing of it should be
    # readable by anything else running with its uid.
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.stderr.write("hx_fork: PR_SET_DUMPABLE failed\n")
        return 70

    msg = ctrl.recv(1 << 20)
    if msg[:1] != b"P" or len(msg) < 17:
        return 70
    placeholder, retire_hooks, retire_cpu, count = struct.unpack_from("=IIII", msg, 1)
    at = 17
    programs = []
    for _ in range(count):
        (n,) = struct.unpack_from("=I", msg, at)
        programs.append(bytes(msg[at + 4 : at + 4 + n]))
        at += 4 + n
    if at != len(msg) or not programs:
        return 70
    placeholder_bytes = struct.pack("=I", placeholder)
    # Where the placeholder is an instruction's operand (`k`, the last four
    # of its eight bytes): found once here, patched in each child.
    patches = [
        [i + 4 for i in range(0, len(prog), 8) if prog[i + 4 : i + 8] == placeholder_bytes]
        for prog in programs
    ]

    def install(me):
        """The runner's filters for a child, with `me` for the placeholder pid."""
        mine = struct.pack("=I", me)
        keep = []
        for prog, at in zip(programs, patches):
            b = bytearray(prog)
            for i in at:
                b[i : i + 4] = mine
            buf = ctypes.create_string_buffer(bytes(b), len(b))
            keep.append(buf)
            fprog = SockFprog(len(b) // 8, ctypes.cast(buf, ctypes.c_void_p))
            if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
                return f"PR_SET_SECCOMP: errno {ctypes.get_errno()}"
        # A call the template may make and a hook may not: refused now.
        try:
            os.waitpid(-1, os.WNOHANG)
        except PermissionError:
            return None
        except OSError as e:
            return f"the hook's filters are not in place (wait4: {e})"
        return "the hook's filters are not in place (wait4 allowed)"

    def child(fds, cpu):
        try:
            inp, diag, res = fds
            for src, dst in ((inp, 0), (diag, 1), (diag, 2), (res, 3)):
                os.dup2(src, dst)
            want = (cpu + 1, cpu + 2)  # as policy::rlimits: the budget + 1 s
            resource.setrlimit(resource.RLIMIT_CPU, want)
            if resource.getrlimit(resource.RLIMIT_CPU) != want:
                fail(ctrl, "rlimits", "RLIMIT_CPU did not take")
            # As a fresh hook's interpreter after its execve.
            if libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
                fail(ctrl, "credentials", "PR_SET_DUMPABLE")
            why = install(os.getpid())
            if why is not None:
                fail(ctrl, "seccomp", why)
            ctrl.detach()
            os.closerange(4, 1 << 16)
        except BaseException as e:  # noqa: BLE001 - nothing may run the bot after a failure
            try:
                fail(ctrl, "fork", repr(e))
            finally:
                posix._exit(3)
        # From here on: a fresh hook's path (anything that fails ends the
        # child without a result).
        code = 70
        try:
            import random

            random.seed()
            sys.argv[:] = fresh_argv
            sys.orig_argv[:] = fresh_orig_argv
            for name in [m for m in sys.modules if m not in baseline]:
                del sys.modules[name]
            hx_core.PREPARED_LAYER.append((False, layer, bind_hook))
            # While no job is there yet, the job-independent rest of the
            # path too (busy, the job is already waiting: straight to it).
            if not select.select([0], [], [], 0)[0]:
                hx_core.prewarm_hook_path()
            hx_core.START_NS = time.perf_counter_ns()
            code = hx_core.main_hook(warm=False)
            for stream in (sys.__stdout__, sys.__stderr__):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
        finally:
            posix._exit(code)

    def wait_for(pid, cpu):
        """The child's status (exit code or 128 + signal), killing it on `K`."""
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(ctrl.fileno(), select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        try:
            while True:
                for fd, _ in poller.poll():
                    if fd == pidfd:
                        _, st, ru = os.wait4(pid, 0)
                        if os.WIFEXITED(st):
                            return os.WEXITSTATUS(st)
                        sig = os.WTERMSIG(st)
                        # SIGKILL after the CPU budget is the hard RLIMIT_CPU.
                        if sig == SIGKILL and ru.ru_utime + ru.ru_stime >= cpu:
                            sig = SIGXCPU
                        return 128 + sig
                    m = ctrl.recv(64)
                    os.kill(pid, SIGKILL)
                    if m != b"K":  # the runner is gone or out of protocol
                        os.wait4(pid, 0)
                        posix._exit(0 if not m else 70)
        finally:
            os.close(pidfd)

    # Everything the template holds goes to the collector's permanent
    # generation: a child's collections then walk only what the child made.
    # Otherwise a child's collection of an older generation, which a hook
    # often triggers, walks the template's heap, writing to every object's
    # header and so copying every page of it, during the hook. Bots cannot
    # reach `gc`.
    gc.collect()
    gc.freeze()
    ctrl.send(b"R")
    served = 0
    while True:
        msg, fds, _, _ = socket.recv_fds(ctrl, 1 << 18, 3, socket.MSG_CMSG_CLOEXEC)
        if msg == b"K" and not fds:
            continue  # for a child already reaped
        if msg[:1] == b"C" and not fds:
            hx_core.preload_code(msg[1:])
            if hx_core.PRELOADED_CODE is not None:
                # The facades of the modules the bot's code names, as a
                # child would make them before its job.
                hx_runtime.prepare_facades(layer, hx_core.PRELOADED_CODE[1])
            gc.freeze()
            continue
        if msg[:1] != b"J" or len(msg) != 5 or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return 0 if not msg else 70
        (cpu,) = struct.unpack_from("=I", msg, 1)
        pid = os.fork()
        if pid == 0:
            child(fds, cpu)
            posix._exit(70)  # not reached
        for fd in fds:
            os.close(fd)
        status = wait_for(pid, cpu)
        empty_workspace()
        ctrl.send(b"S" + struct.pack("=i", status))
        served += 1
        if served >= retire_hooks or time.process_time() >= retire_cpu:
            return 0


def empty_workspace():
    """Removes everything a child left in the workspace (fails loudly: a
    workspace that cannot be emptied must not be handed to the next hook)."""
    stack = [(WORKSPACE, False)]
    while stack:
        path, done = stack.pop()
        if done:
            os.rmdir(path)
            continue
        if path != WORKSPACE:
            os.chmod(path, 0o700)
            stack.append((path, True))
        else:
            try:  # a fresh hook finds it 0700; a child may have changed that
                os.chmod(path, 0o700)
            except PermissionError:
                pass  # not ours to change (root mode): neither was it the child's
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    os.unlink(entry.path)
