"""FetchBot against an HTTP server on 127.0.0.1 run by the test.

The harness alone does not confine networking; the sandbox's refusal of
loopback and private ranges is tested with the runner, not here.
"""

import hashlib
import http.server
import threading
import time

import pytest

from conftest import DIST_PACKAGES, Table

PAGE = (
    "<html><head><title>Widget</title><style>body{color:red}</style>"
    "<script>var price='$1.00';</script></head>"
    "<body><h1>Blue widget</h1><p>Only <b>$19.99</b> today &amp; tomorrow</p></body></html>"
).encode()
BIG = b"x" * 5000


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/item":
            body, ctype, status = PAGE, "text/html; charset=utf-8", 200
        elif self.path == "/slow":
            # A slow server (the behaviour under test, not synchronisation):
            # 4 KiB every 0.2 s, 40 times.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(40 * 4096))
            self.end_headers()
            try:
                for i in range(40):
                    self.wfile.write(b"s" * 4096)
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        elif self.path == "/oddcharset":
            body, ctype, status = "caf\u00e9 menu".encode(), "text/plain; charset=x-no-such-charset", 200
        elif self.path == "/big":
            body, ctype, status = BIG, "application/octet-stream", 200
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/item")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            body, ctype, status = b"nope", "text/plain", 404
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch_table(params=None):
    t = Table("fetch", ["alice"], params=params, network=True, sys_path=[DIST_PACKAGES])
    t.init()
    return t


def test_fetch_reports_status_hash_type_extract_and_price(server):
    t = fetch_table()
    posts = t.say("alice", f"fetch {server}/item")
    assert [p["type"] for p in posts] == ["fetch"]
    r = posts[0]["body"]
    assert r["status"] == 200
    assert r["sha256"] == hashlib.sha256(PAGE).hexdigest()
    assert r["bytes"] == len(PAGE) and r["truncated"] is False
    assert r["content_type"].startswith("text/html")
    assert "Blue widget" in r["extract"] and "<" not in r["extract"] and "color" not in r["extract"]
    assert "& tomorrow" in r["extract"]
    assert r["price"] == "$19.99"  # the script's $1.00 is not text


def test_fetch_object_body_redirect_and_404(server):
    t = fetch_table({"price_regex": r"widget"})
    r = t.say("alice", {"url": f"{server}/moved"})[0]["body"]
    assert r["final_url"] == f"{server}/item" and r["status"] == 200 and r["price"] == "widget"
    r = t.say("alice", f"{server}/missing")[0]["body"]
    assert r["status"] == 404 and r["sha256"] == hashlib.sha256(b"nope").hexdigest()


def test_fetch_truncates_at_max_bytes(server):
    t = fetch_table({"max_bytes": 1000})
    r = t.say("alice", f"{server}/big")[0]["body"]
    assert r["truncated"] == "size" and r["bytes"] == 1000
    assert r["sha256"] == hashlib.sha256(BIG[:1000]).hexdigest()


def test_fetch_error_and_ignored_messages(server):
    t = fetch_table()
    assert t.say("alice", "no url here") == []
    # a port nobody listens on: take the server's port + 0 on a closed socket
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    posts = t.say("alice", f"fetch http://127.0.0.1:{port}/")
    assert posts[0]["type"] == "fetch_error" and "error" in posts[0]["body"]


def test_unknown_charset_falls_back_to_utf8(server):
    t = fetch_table()
    r = t.say("alice", f"{server}/oddcharset")[0]["body"]
    assert r["status"] == 200 and "caf\u00e9" in r["extract"]


def test_a_slow_download_stops_at_the_time_budget(server):
    t = fetch_table({"timeout": 1})
    started = time.monotonic()
    r = t.say("alice", f"{server}/slow")[0]["body"]
    assert r["truncated"] == "time" and 0 < r["bytes"] < 40 * 4096
    assert r["sha256"] == hashlib.sha256(b"s" * r["bytes"]).hexdigest()
    assert time.monotonic() - started < 4
