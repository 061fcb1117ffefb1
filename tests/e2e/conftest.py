"""Shared fixtures for the end-to-end tests.

Every test talks to a real `mcp-multiplayer serve` process on 127.0.0.1:0
with its own SQLite file, through the official Python `mcp` SDK (installed
into .test-deps/py by tests/steps/00-deps.sh). With `MCPMP_TEST_POSTGRES` set
to a PostgreSQL URL (tests/steps/50-postgres.sh), each state directory gets a
schema of its own in that database instead of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("MCPMP_BIN", REPO / "target" / "debug" / "mcp-multiplayer"))

# Both protocol generations the daemon must serve: the initialize handshake
# (negotiates 2025-11-25, with sessions) and the sessionless 2026-07-28.
MODES = ["legacy", "2026-07-28"]


def db_env(state_dir: Path) -> dict:
    """The environment that points a daemon or CLI command using `state_dir`
    at its database: nothing on SQLite; on PostgreSQL a schema named after
    the state directory (created here), like the Rust suite's `db_env`."""
    url = os.environ.get("MCPMP_TEST_POSTGRES")
    if not url:
        return {}
    schema = "t_" + hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    subprocess.run(["psql", "-q", url, "-c", f"CREATE SCHEMA IF NOT EXISTS {schema}"],
                   check=True, capture_output=True)
    sep = "&" if "?" in url else "?"
    return {"MCP_MULTIPLAYER_DATABASE": f"{url}{sep}options=-c%20search_path%3D{schema}"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Daemon:
    def __init__(self, state_dir: Path, extra: list[str] | None = None, env: dict | None = None,
                 uid: int | None = None, bin: Path = BIN):
        """uid: run the daemon (and its CLI) as this unprivileged uid, so the
        sandbox takes its user-namespace mode (needs root to switch)."""
        self.uid = uid
        self.prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        if uid is not None:
            os.chown(state_dir, uid, uid)
        self.state_dir = state_dir
        self.bin = bin
        self.log_path = state_dir / f"daemon-{os.getpid()}-{id(self)}.log"
        self.extra = extra or []
        self.env = {**db_env(state_dir), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.base = ""

    def start(self) -> "Daemon":
        env = dict(os.environ, MCP_MULTIPLAYER_LOG="debug,rmcp=info")
        if self.uid is not None:
            env["HOME"] = str(self.state_dir)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [*self.prefix, str(self.bin), "serve", "--listen", "127.0.0.1:0", "--state-dir", str(self.state_dir), *self.extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        log = open(self.log_path, "ab")
        seen = b""
        assert self.proc.stderr is not None
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"daemon exited before listening:\n{seen.decode(errors='replace')}")
            log.write(line)
            seen += line
            m = re.match(rb"mcp-multiplayer listening on (http://\S+)", line)
            if m:
                self.base = m.group(1).decode()
                break
        log.flush()

        def drain(stream, out):
            for chunk in iter(lambda: stream.readline(), b""):
                out.write(chunk)
                out.flush()
            out.close()

        threading.Thread(target=drain, args=(self.proc.stderr, log), daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return self.base + "/mcp"

    def token(self, name: str) -> str:
        out = subprocess.run(
            [*self.prefix, str(self.bin), "token", "create", name, "--state-dir", str(self.state_dir)],
            check=True, capture_output=True, text=True, env=dict(os.environ, **self.env),
        )
        return out.stdout.strip()

    def metric(self, name: str) -> float:
        text = httpx2.get(self.base + "/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: str = "TERM") -> int:
        if self.proc and self.proc.poll() is None:
            if sig == "KILL":
                self.proc.kill()
            else:
                self.proc.terminate()
            return self.proc.wait(timeout=15)
        return self.proc.returncode if self.proc else 0


@pytest.fixture
def state_dir():
    d = Path(tempfile.mkdtemp(prefix="mcpmp-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(state_dir):
    d = Daemon(state_dir).start()
    yield d
    d.stop()


@contextlib.asynccontextmanager
async def connect(url: str, token: str | None, mode: str = "legacy", message_handler=None):
    """An SDK client acting as the principal that `token` names."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = create_mcp_http_client(headers=headers)
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode,
                          message_handler=message_handler) as client:
            yield client


class ToolFailed(Exception):
    def __init__(self, code: str, message: str, data):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


async def call(client: Client, tool: str, args: dict | None = None, **kw):
    """Calls a tool and returns its structured content; raises ToolFailed on a tool error."""
    r = await client.call_tool(tool, args or {}, **kw)
    sc = r.structured_content
    if r.is_error:
        err = (sc or {}).get("error", {})
        raise ToolFailed(err.get("code", "?"), err.get("message", ""), err.get("data"))
    text = "".join(getattr(c, "text", "") for c in r.content)
    return {**sc, "_text": text}


async def fails(client: Client, tool: str, args: dict | None = None) -> ToolFailed:
    try:
        await call(client, tool, args)
    except ToolFailed as e:
        return e
    raise AssertionError(f"{tool}({args}) succeeded but should have failed")
