"""Entry point of the Python harness that hosts one bot hook.

`sandbox-runner` execs `python3 -I -S -B /harness/harness.py` inside the
sandbox with the job on stdin; the outcome goes to fd 3 (see PROTOCOL.md).
`harness.py --check FILE` prints the language-layer verdict instead.

`-I` keeps the script's own folder off `sys.path`, so it is added here for the
harness's modules (`hx_*`); everything else lives in them.
"""

import sys
import time

START_NS = time.perf_counter_ns()
sys.path.insert(0, __file__.rpartition("/")[0] or ".")

import hx_core  # noqa: E402

hx_core.START_NS = START_NS

if __name__ == "__main__":
    code = hx_core.main(sys.argv[1:])
    # The real streams: after a hook, sys.stdout and sys.stderr are the
    # bot's sealed print capture, whose functions bot code may have replaced.
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # Skip interpreter teardown: it costs a millisecond or two per hook, and
    # no bot finalizer should run after the outcome is written.
    import posix

    posix._exit(code)
