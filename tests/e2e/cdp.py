"""A small Chrome DevTools Protocol client for the page tests: starts
Debian's headless `chromium`, speaks CDP over a WebSocket (RFC 6455, written
here on the standard library: the tests need no browser driver package), and
records what the page logs, throws and requests.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path


class WebSocket:
    """A client WebSocket: text frames out (masked), frames in."""

    def __init__(self, url: str):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert m, url
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "the browser closed the WebSocket handshake"
            head += chunk
        status, _, self.rest = head.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        self.sock.settimeout(None)

    def _read(self, n: int) -> bytes:
        while len(self.rest) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            if op == 0x8:
                raise EOFError
            if op in (0x9, 0xA):
                continue  # the browser does not ping its debugging clients
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()


class Browser:
    """Headless Chromium with one page, driven over CDP."""

    def __init__(self):
        exe = shutil.which("chromium")
        assert exe, "chromium is not installed (tests/steps/deps.sh: deps_chromium)"
        self.profile = tempfile.mkdtemp(prefix="mcpmp-chromium-")
        args = [exe, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps",
                "--disable-gpu", "--mute-audio", "--hide-scrollbars", "about:blank"]
        if os.geteuid() == 0:
            # Chromium's own sandbox refuses to run as root; the page runs
            # only this project's script.
            args.insert(1, "--no-sandbox")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        ws = None
        for line in iter(self.proc.stderr.readline, b""):
            m = re.search(rb"DevTools listening on (ws://\S+)", line)
            if m:
                ws = m.group(1).decode()
                break
        assert ws, "chromium exited without its DevTools address"
        threading.Thread(target=lambda: self.proc.stderr.read(), daemon=True).start()
        port = re.match(r"ws://[^:]+:(\d+)/", ws).group(1)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.replies: dict[int, queue.Queue] = {}
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.arrived = threading.Condition()
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        # Called on the reader thread for an event of that method (they may
        # send only with wait=False: replies arrive on this thread).
        self.handlers: dict[str, object] = {}
        threading.Thread(target=self._reader, daemon=True).start()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _reader(self):
        while True:
            try:
                msg = json.loads(self.ws.recv())
            except (EOFError, OSError):
                return
            if "id" in msg:
                with self.lock:
                    q = self.replies.get(msg["id"])
                if q:
                    q.put(msg)
                continue
            method, p = msg.get("method"), msg.get("params", {})
            handler = self.handlers.get(method)
            if handler:
                handler(p)
            with self.arrived:
                self.events.append(msg)
                self.arrived.notify_all()
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                self.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                self.console_errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                self.console_errors.append(f'{p["entry"]["text"]} ({p["entry"].get("url", "")})')
            elif method == "Network.requestWillBeSent":
                self.requests.append(p["request"]["url"])
            elif method == "Page.javascriptDialogOpening":
                self.dialogs.append(p.get("message", ""))
                self.send("Page.handleJavaScriptDialog", {"accept": False}, wait=False)

    def send(self, method: str, params: dict | None = None, wait: bool = True, timeout: float = 30):
        with self.lock:
            self.next_id += 1
            i = self.next_id
            q: queue.Queue = queue.Queue()
            self.replies[i] = q
        self.ws.send(json.dumps({"id": i, "method": method, "params": params or {}}))
        if not wait:
            return None
        msg = q.get(timeout=timeout)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    def navigate(self, url: str) -> None:
        """Loads `url` and returns once its `load` event fired."""
        before = len(self.events)
        self.send("Page.navigate", {"url": url})
        with self.arrived:
            loaded = self.arrived.wait_for(
                lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events[before:]), timeout=30)
        if not loaded:
            raise TimeoutError(f"{url} did not load")

    def wait_event(self, method: str, predicate=lambda p: True, timeout: float = 30) -> dict:
        """The params of the first event `method` (since the browser started)
        for which `predicate` holds, waiting for it to arrive."""
        def found():
            return next((e["params"] for e in self.events
                         if e.get("method") == method and predicate(e.get("params", {}))), None)
        with self.arrived:
            if not self.arrived.wait_for(lambda: found() is not None, timeout=timeout):
                raise TimeoutError(f"no {method} within {timeout} s")
            return found()

    def eval(self, expr: str, timeout: float = 30):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                      timeout=timeout + 5)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("exception", {}).get("description", str(r["exceptionDetails"])))
        return r["result"].get("value")

    def wait_for(self, predicate_js: str, timeout: float = 10):
        """Resolves in the page as soon as `predicate_js` (an expression) is
        true, re-evaluated on every change of the document (a
        MutationObserver: no polling); raises after `timeout` seconds with the
        verification status shown then."""
        js = f"""new Promise((resolve, reject) => {{
            const test = () => {{ try {{ return !!({predicate_js}); }} catch (e) {{ return false; }} }};
            if (test()) return resolve(true);
            const obs = new MutationObserver(() => {{ if (test()) {{ obs.disconnect(); resolve(true); }} }});
            obs.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
            setTimeout(() => {{ obs.disconnect(); reject(new Error('timed out: ' +
                (document.getElementById('verify-status') || {{}}).textContent)); }}, {int(timeout * 1000)});
        }})"""
        return self.eval(js, timeout=timeout)

    def text(self, selector: str) -> str:
        return self.eval(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''")

    def color_scheme(self, scheme: str) -> None:
        self.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def screenshot(self, path: Path, max_height: int = 4000) -> None:
        """The page from its top, up to `max_height` CSS pixels of it."""
        m = self.send("Page.getLayoutMetrics")["cssContentSize"]
        params: dict = {"format": "png", "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": 0, "width": m["width"], "height": min(m["height"], max_height), "scale": 1}}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", wait=False)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
