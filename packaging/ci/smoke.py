"""Smoke test of a built daemon: does this binary serve and run bots?

Starts `DAEMON serve` on 127.0.0.1 (port 0: the daemon says which port it
got), with its database in STATE and the given runner, bots and Python.
Then:
  1. /healthz must report the start-up sandbox self-check "ok" (a real hook
     through the real runner);
  2. two principals (tokens from `DAEMON token create`) play a GuessBot game
     through MCP (nix/tests/client.py: every bot hook, the commitment and its
     reveal checked);
  3. SIGTERM must end the daemon with exit status 0.
With --uid the daemon and the token commands run as that user (the runner's
user-namespace mode); as root the runner drops each hook to its own uid.

  smoke.py --daemon BIN --runner BIN --bots DIR --state DIR [--uid N]
"""

import argparse
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import urllib.request

CLIENT = pathlib.Path(__file__).resolve().parents[2] / "nix" / "tests" / "client.py"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--bots", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--uid", type=int)
    a = ap.parse_args()

    config = pathlib.Path(a.state) / "config.toml"
    config.write_text(
        f'[bots]\nrunner = "{a.runner}"\nbots_dir = "{a.bots}"\n'
        'python = "/usr/bin/python3"\npython_path = ["/usr/lib/python3/dist-packages"]\n'
    )
    os.chmod(config, 0o644)
    as_user = []
    if a.uid is not None:
        os.chown(a.state, a.uid, a.uid)
        as_user = ["setpriv", f"--reuid={a.uid}", f"--regid={a.uid}", "--clear-groups"]
    env = {"PATH": "/usr/bin:/bin", "HOME": a.state, "MCP_MULTIPLAYER_LOG": "info,rmcp=warn"}
    common = ["--config", str(config), "--state-dir", a.state]

    def tokens(name):
        out = subprocess.run(as_user + [a.daemon, "token", "create", name] + common,
                             env=env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            sys.exit(f"token create {name} failed: {out.stderr}")
        return out.stdout.strip()

    alice, bob = tokens("alice"), tokens("bob")
    log = open(pathlib.Path(a.state) / "daemon.log", "w+b")
    daemon = subprocess.Popen(as_user + [a.daemon, "serve", "--listen", "127.0.0.1:0"] + common,
                              env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE)
    try:
        url = None
        # The daemon prints its address on stderr once it listens.
        for line in daemon.stderr:
            log.write(line)
            m = re.match(rb"mcp-multiplayer listening on (http://\S+)", line)
            if m:
                url = m.group(1).decode()
                break
        if url is None:
            sys.exit(f"the daemon exited before listening (status {daemon.wait()}): {tail(log)}")
        # The rest of stderr goes to the log file, so that the pipe never fills.
        subprocess.Popen(["cat"], stdin=daemon.stderr, stdout=log)

        health = None
        for _ in range(300):
            health = json.load(urllib.request.urlopen(url + "/healthz", timeout=5))
            if health.get("sandbox") != "checking":
                break
            time.sleep(0.1)  # the self-check reports through /healthz only: nothing to block on
        if health.get("sandbox") != "ok":
            sys.exit(f"/healthz: the sandbox self-check did not pass: {health}; {tail(log)}")
        mode = health.get("sandbox_mode", "?")

        game = subprocess.run([sys.executable, str(CLIENT), "play", url, alice, bob],
                              capture_output=True, text=True, timeout=180)
        if game.returncode != 0:
            sys.exit(f"the GuessBot game failed: {game.stdout}{game.stderr}; {tail(log)}")
        result = json.loads(game.stdout)

        daemon.send_signal(signal.SIGTERM)
        status = daemon.wait(timeout=60)
        if status != 0:
            sys.exit(f"the daemon exited with {status} on SIGTERM; {tail(log)}")
        print(f"ok: sandbox self-check ok ({json.dumps(mode)}), GuessBot game won by "
              f"{result['winner']} in {result['count']} messages, clean exit on SIGTERM")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def tail(log):
    log.flush()
    log.seek(0)
    return "daemon log (end):\n" + b"".join(log.readlines()[-20:]).decode(errors="replace")


if __name__ == "__main__":
    main()
