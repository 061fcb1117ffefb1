"""Replay cost: hooks replayed per second for a 200-message GuessBot game.

Not a test (pytest does not collect it): run it by hand on a quiet machine,
after building the binaries it should measure, e.g.

    cargo build --release --workspace
    MCPMP_BIN=target/release/mcp-multiplayer PYTHONPATH=.test-deps/py \\
        /usr/bin/python3 tests/e2e/bench_replay.py

A real daemon (the runner next to it, root mode when run as root) plays a
two-player GuessBot game through the Python SDK until the channel holds 200
messages (max 10^9, so nobody wins), closes it, downloads alice's export
(`GET /channels/ID/export`), then times `mcp-multiplayer replay --db` over the
channel and `mcp-multiplayer replay FILE` over the export, each of which
re-runs every hook in the sandbox one after another (forked from the bot's
fork template once it is up, as the daemon runs them), the latter again with
`[bots] fork_templates = false` (every hook in a pre-warmed or fresh
sandbox), and
`mcp-multiplayer verify FILE`. Prints each summary line and the machine's
load average.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import BIN, Daemon, call, connect  # noqa: E402

MESSAGES = 200


async def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="mcpmp-bench-replay-"))
    cfg = state / "config.toml"
    # Lift the post quotas: the game posts as fast as the bot answers.
    cfg.write_text("[quotas]\nposts_per_second = 1000\npost_burst = 1000\n")
    d = Daemon(state, extra=["--config", str(cfg)]).start()
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {
                "name": "bench", "slots": ["invite:alice", "invite:bob", "bot:referee"],
                "bot_preset": "guess", "bot_params": {"min": 1, "max": 10**9, "max_rounds": 1000},
                "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            clients = {"alice": alice, "bob": bob}
            cursor, guess = 0, 1
            while True:
                s = await call(alice, "sync_messages", {"channel_id": cid, "cursor": cursor, "wait_ms": 10000})
                cursor = s["cursor"]
                turns = [m for m in s["messages"] if m["kind"] == "bot" and m["body"]["type"] == "turn"]
                if not turns:
                    continue
                # The bot has answered the last guess: every hook has run.
                if cursor >= MESSAGES:
                    break
                player = turns[-1]["body"]["data"]["player"]
                await call(clients[player], "post_message", {"channel_id": cid, "body": f"guess {guess}"})
                guess += 1
            await call(alice, "update_channel", {"channel_id": cid, "op": "close"})
            count = (await call(alice, "get_channel_info", {"channel_id": cid}))["message_count"]
        export = state / "export.json"
        r = httpx2.get(f"{d.base}/channels/{cid}/export", headers={"Authorization": f"Bearer {ta}"}, timeout=60)
        r.raise_for_status()
        export.write_bytes(r.content)
    finally:
        d.stop()
    print(f"channel of {count} messages; alice's export {export.stat().st_size} bytes")
    no_templates = state / "no-templates.toml"
    no_templates.write_text("[bots]\nfork_templates = false\n")
    runs = [("replay --db", ["replay", "--db", str(state / "mcp-multiplayer.db"), "--channel", cid]),
            ("replay FILE (the export)", ["replay", str(export)]),
            ("replay FILE, fork templates off", ["replay", str(export), "--config", str(no_templates)])]
    for name, args in runs:
        load = os.getloadavg()
        started = time.monotonic()
        p = subprocess.run([str(BIN), *args, "--json"], capture_output=True, text=True)
        wall = time.monotonic() - started
        report = json.loads(p.stdout)
        verdicts = {}
        for h in report["hooks"]:
            verdicts[h["verdict"]] = verdicts.get(h["verdict"], 0) + 1
        print(f"{name}: exit {p.returncode}; verdicts {verdicts}; load average before "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
        print(f"  {report['hooks_run']} hooks run in the sandbox in {report['run_ms']} ms "
              f"= {report['hooks_run'] * 1000 / report['run_ms']:.1f} hooks/s, "
              f"{report['hooks_forked']} forked from the bot's template "
              f"(whole command {wall:.2f} s, including reading the input)")
    started = time.monotonic()
    p = subprocess.run([str(BIN), "verify", str(export), "--json"], capture_output=True, text=True)
    wall = time.monotonic() - started
    print(f"verify FILE: exit {p.returncode}, verified {json.loads(p.stdout)['verified']}, {wall * 1000:.0f} ms")
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main)
