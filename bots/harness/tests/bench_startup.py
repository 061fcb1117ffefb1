"""Start-up cost of the harness, outside any sandbox.

    /usr/bin/python3 bots/harness/tests/bench_startup.py [N]

Spawns every variant the same way (empty environment, a pipe on fd 3,
`-I -S -B`), interleaved so that machine load hits all of them alike, and
prints p50/p90 wall times. "bare" is `python3 -I -S -B -c pass` with the same
spawn; the difference to it is what the harness costs. Not a test: numbers
depend on the machine. Compile the harness first
(`python3 -m compileall -q bots/harness`), as an installation would.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import hxrun

TRIVIAL = """
class Bot:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_init(self):
        self.ctx.post("hi", 1)
"""
IMPORTS = "import json, hashlib, random\n" + TRIVIAL


def spawn(args, stdin):
    r, w = os.pipe()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={},
        close_fds=False,
        preexec_fn=lambda: os.dup2(w, 3),
    )
    os.close(w)
    p.communicate(stdin)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    dt = time.perf_counter() - t0
    return dt, out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    py = [hxrun.PYTHON, "-I", "-S", "-B"]
    here = os.path.dirname(os.path.abspath(__file__))
    big = open(os.path.join(here, "..", "..", "blackjack.py")).read() if os.path.exists(
        os.path.join(here, "..", "..", "blackjack.py")
    ) else None
    variants = {
        "bare python -I -S -B -c pass": (py + ["-c", "pass"], b""),
        "trivial hook (checked)": (py + [hxrun.HARNESS], json.dumps(hxrun.job(TRIVIAL)).encode()),
        "trivial hook (unchecked)": (
            py + [hxrun.HARNESS],
            json.dumps(hxrun.job(TRIVIAL, unchecked=True)).encode(),
        ),
        "hook importing json,hashlib,random": (
            py + [hxrun.HARNESS],
            json.dumps(hxrun.job(IMPORTS)).encode(),
        ),
    }
    if big is not None:
        variants["inspect of blackjack.py (368 lines)"] = (
            py + [hxrun.HARNESS],
            json.dumps(hxrun.job(big, "inspect")).encode(),
        )
    times = {k: [] for k in variants}
    for _ in range(n):
        for name, (args, stdin) in variants.items():
            dt, out = spawn(args, stdin)
            if name.startswith("bare"):
                assert out == b""
            else:
                assert json.loads(out)["status"] == "ok", out
            times[name].append(dt)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {n} runs each")
    for name, ts in times.items():
        ts.sort()
        p50 = statistics.median(ts) * 1000
        p90 = ts[int(len(ts) * 0.9)] * 1000
        print(f"{name:40s} p50 {p50:6.1f} ms   p90 {p90:6.1f} ms")


if __name__ == "__main__":
    main()
