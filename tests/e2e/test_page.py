"""The channel page in a real browser: Debian's headless Chromium, driven
over the DevTools protocol (cdp.py), watching a real daemon where two
Python-SDK clients play GuessBot in the real sandbox.

What the page promises and each test checks: new messages appear within 2 s
of their post; the browser itself recomputes the hash chain and checks the
referee's commitment; a tampered database shows "Broken at seq N"; the page
runs under its strict CSP with no console error and no request to another
origin; hostile strings show as text; a revoked link stops an open page.
Screenshots of each state are written to target/test-artifacts/page (and to
docs/ with MCPMP_UPDATE_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from cdp import Browser
from conftest import BIN, REPO, Daemon, call, connect

pytestmark = pytest.mark.anyio

ARTIFACTS = Path(os.environ.get("MCPMP_ARTIFACTS", REPO / "target" / "test-artifacts" / "page"))
UPDATE_DOCS = os.environ.get("MCPMP_UPDATE_DOCS_SCREENSHOTS") == "1"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

VERIFIED = "document.getElementById('verify-status').classList.contains('ok')"


def start(state_dir: Path) -> Daemon:
    """A daemon whose post quota does not slow the test's players."""
    cfg = state_dir / "config.toml"
    cfg.write_text("[quotas]\nposts_per_second = 1000.0\npost_burst = 1000\n")
    return Daemon(state_dir, ["--config", str(cfg)]).start()


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


def shot(b: Browser, name: str, docs_name: str | None = None) -> None:
    b.screenshot(ARTIFACTS / f"{name}.png")
    if UPDATE_DOCS and docs_name:
        # The docs show the top of the page: status, claims, first messages.
        b.screenshot(REPO / "docs" / docs_name, max_height=1300)


def verified_upto(b: Browser, seq: int) -> str:
    """A predicate: the chain is verified at least up to `seq`."""
    return (f"{VERIFIED} && (+(document.getElementById('verify-status').textContent"
            f".match(/Verified up to seq (\\d+)/) || [0, 0])[1]) >= {seq}")


def signed_upto(b: Browser, seq: int) -> None:
    """The status says the chain is verified up to `seq` AND that the
    server's signature, checked in the browser, covers it."""
    status = b.text("#verify-status")
    assert f"Verified up to seq {seq}:" in status, status
    assert "Ed25519 signature (key sha256:" in status and f"covers seq {seq}." in status, status


def both_verifiers(path: Path) -> dict:
    """`mcp-multiplayer verify` and tools/verify_transcript.py on `path`: both
    pass; returns the first's report."""
    p = subprocess.run([str(BIN), "verify", str(path), "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    q = subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "verify_transcript.py"), str(path), "--json"],
                       capture_output=True, text=True)
    assert q.returncode == 0, q.stdout + q.stderr
    return json.loads(p.stdout)


def download(b: Browser, into: Path) -> Path:
    """Clicks the page's download button and returns the file once saved."""
    into.mkdir(parents=True, exist_ok=True)
    b.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(into), "eventsEnabled": True})
    b.eval("document.getElementById('export').click()")
    begun = b.wait_event("Browser.downloadWillBegin")
    done = b.wait_event("Browser.downloadProgress",
                        lambda p: p["guid"] == begun["guid"] and p["state"] != "inProgress")
    assert done["state"] == "completed", done
    return into / begun["suggestedFilename"]


def only_same_origin(b: Browser, base: str) -> None:
    others = [u for u in b.requests if not (u.startswith(base + "/") or u in ("about:blank",))]
    assert others == [], f"requests to other origins: {others}"


async def sync_all(client, cid: str, cursor: int, wait_ms: int = 10000):
    got = await call(client, "sync_messages", {"channel_id": cid, "cursor": cursor, "wait_ms": wait_ms})
    return got["messages"], got["cursor"]


async def play_guessbot(alice, bob, cid: str, on_post):
    """Plays the game to its end by binary search, each player on its turn;
    calls `on_post(seq)` after every guess. Returns every message seen."""
    players = {"alice": alice, "bob": bob}
    seen, cursor = [], 0
    lo, hi = 1, 100
    with anyio.fail_after(120):
        while True:
            msgs, cursor = await sync_all(alice, cid, cursor)
            seen += msgs
            bot = [m for m in seen if m["kind"] == "bot"]
            if any(m["body"]["type"] == "reveal" for m in bot):
                return seen
            turns = [m for m in bot if m["body"]["type"] == "turn"]
            hints = [m for m in bot if m["body"]["type"] == "hint"]
            if not turns or (hints and hints[-1]["seq"] > turns[-1]["seq"]):
                continue  # the next turn is on its way
            last_turn = turns[-1]
            if any(m["kind"] == "user" and m["seq"] > last_turn["seq"] for m in seen):
                continue  # this turn's guess is posted; its hint is coming
            for h in hints:
                if h["body"]["data"]["hint"] == "higher":
                    lo = max(lo, h["body"]["data"]["guess"] + 1)
                elif h["body"]["data"]["hint"] == "lower":
                    hi = min(hi, h["body"]["data"]["guess"] - 1)
            who = last_turn["body"]["data"]["player"]
            posted = await call(players[who], "post_message", {"channel_id": cid, "body": f"guess {(lo + hi) // 2}"})
            await on_post(posted["seq"])


async def test_a_guessbot_game_watched_by_a_spectator_is_live_and_ends_verified_with_the_commitment_checked(
        state_dir, browser):
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {
                "name": "Guess the number", "slots": ["invite:alice", "invite:bob", "bot:referee"],
                "bot_preset": "guess", "join_as": "alice"})
            cid = ch["channel_id"]
            # The spectator link is shared before the game starts, and the
            # page is open while it is played.
            shared = await call(alice, "share_channel", {"channel_id": cid})
            browser.navigate(shared["url"])
            assert browser.eval("location.pathname") == f"/c/{cid}", "the key left the address bar"
            assert browser.eval("location.search") == ""
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})

            delays = []

            async def on_post(seq):
                t0 = time.monotonic()
                # The guess appears in the page, verified, within 2 s of its post.
                browser.wait_for(f"document.getElementById('m-{seq}') && {verified_upto(browser, seq)}", timeout=2)
                delays.append(time.monotonic() - t0)

            seen = await play_guessbot(alice, bob, cid, on_post)
            reveal = next(m for m in seen if m["kind"] == "bot" and m["body"]["type"] == "reveal")
            # A private word after the game: the spectator sees its entry,
            # never its body.
            note = await call(alice, "post_message", {"channel_id": cid, "body": "well played 42-SECRET",
                                                      "to": ["bob"]})
            assert browser.text("#live").startswith("Live:"), browser.text("#live")
            # The admin closes the channel: the referee's seed is revealed in
            # the same write, and the page opens its commitment.
            await call(alice, "update_channel", {"channel_id": cid, "op": "close"})
            rest, _ = await sync_all(alice, cid, note["seq"], wait_ms=0)
            seed_reveal = next(m for m in rest if m["kind"] == "system" and m["body"]["type"] == "bot:reveal")
            last = rest[-1]["seq"]
            browser.wait_for(verified_upto(browser, last), timeout=5)
            # The open page stops saying "Live" once the channel is closed.
            browser.wait_for("document.getElementById('live').textContent.startsWith('Closed:')", timeout=5)
            for claim in ("Commitment checked", "Seed checked"):
                browser.wait_for("[...document.querySelectorAll('.claim.ok')]"
                                 f".some(c => c.textContent.startsWith('{claim}'))", timeout=5)
        # Verified means the chain AND the server's signature, both checked
        # by the browser, up to the last entry.
        signed_upto(browser, last)
        claims = browser.text("#claims")
        assert f"target {reveal['body']['data']['target']}" in claims, claims
        assert (f"Seed checked: bot:referee's seed revealed at seq {seed_reveal['seq']} opens the seed "
                f"commitment of its attach") in claims, claims
        assert "42-SECRET" not in browser.text("#transcript")
        assert "its body is hidden from you" in browser.text(f"#m-{note['seq']}")
        assert delays and max(delays) < 2, delays
        # Every message of the game is in the page, in order.
        page_seqs = browser.eval("[...document.querySelectorAll('#transcript > li')].map(li => +li.dataset.seq)")
        assert page_seqs == list(range(1, last + 1))
        # The referee's source shown hashes to the code_hash in the chain.
        browser.wait_for("document.querySelector('.code-check.ok')", timeout=5)
        # The page's download is the signed export as a spectator sees it:
        # both offline verifiers pass it, the private note is a redacted
        # entry, and the referee's claims check.
        saved = download(browser, ARTIFACTS / "download")
        assert saved.name == f"{cid}.transcript.json"
        doc = json.loads(saved.read_text())
        assert doc["exported_as"] == "spectator"
        entry = doc["entries"][note["seq"] - 1]
        assert entry["redacted"] is True and "body" not in entry and entry["to"] == ["bob"], entry
        assert "42-SECRET" not in saved.read_text()
        assert doc["signed_heads"][-1]["seq"] == last
        report = both_verifiers(saved)
        assert report["verified"] is True
        assert any(f["check"].startswith("GuessBot") and f["ok"] for f in report["findings"]), report
        # It ran under the CSP, loaded nothing from elsewhere, logged no error.
        assert browser.console_errors == [], browser.console_errors
        only_same_origin(browser, d.base)
        r = httpx2.get(f"{d.base}/c/{cid}", headers={"cookie": "x=y"})
        assert r.headers["content-security-policy"] == CSP
        browser.viewport(1000, 900)
        browser.color_scheme("light")
        shot(browser, "verified-light", "page-light.png")
        browser.color_scheme("dark")
        shot(browser, "verified-dark", "page-dark.png")
        browser.color_scheme("light")
        browser.viewport(390, 844, mobile=True)
        shot(browser, "verified-phone", "page-phone.png")
        # Readable on a phone: nothing wider than the screen.
        assert browser.eval("document.documentElement.scrollWidth") <= 390
        # Opened after the close, the page says it is closed, not live.
        browser.navigate("about:blank")
        browser.navigate(shared["url"])
        browser.wait_for("document.getElementById('live').textContent.startsWith('Closed:')", timeout=5)
    finally:
        d.stop()


async def test_a_tampered_database_shows_broken_at_the_changed_seq(state_dir, browser):
    d = start(state_dir)
    ta, tb = d.token("alice"), d.token("bob")
    async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
        ch = await call(alice, "create_channel", {"name": "tamper", "slots": ["invite:alice", "invite:bob"],
                                                  "join_as": "alice"})
        cid = ch["channel_id"]
        await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        first = await call(alice, "post_message", {"channel_id": cid, "body": "I bid 100"})
        await call(bob, "post_message", {"channel_id": cid, "body": "I bid 200"})
        last = await call(alice, "post_message", {"channel_id": cid, "body": "bob wins"})
        shared = await call(bob, "share_channel", {"channel_id": cid})
    browser.navigate(shared["url"])
    browser.wait_for(verified_upto(browser, last["seq"]))
    # Leave the page before its server goes away (its stream and lazy
    # requests such as the icon would fail meanwhile, as they should).
    browser.navigate("about:blank")
    assert browser.console_errors == [], browser.console_errors
    d.stop()
    # An edit made behind the daemon's back, with the daemon stopped: the
    # stored body changes, the stored hashes stay.
    db = sqlite3.connect(state_dir / "mcp-multiplayer.db")
    with db:
        n = db.execute("UPDATE messages SET body = ? WHERE channel_id = ? AND seq = ?",
                       (json.dumps("I bid 900"), cid, first["seq"])).rowcount
    db.close()
    assert n == 1
    d = start(state_dir)
    try:
        browser.navigate(shared["url"].replace(shared["url"].split("/c/")[0], d.base))
        browser.wait_for("document.getElementById('verify-status').classList.contains('bad')")
        status = browser.text("#verify-status")
        assert status.startswith(f"Broken at seq {first['seq']}:"), status
        assert "I bid 900" in browser.text(f"#m-{first['seq']}")
        # Entries after the break are shown but marked unverified.
        assert browser.eval(f"document.getElementById('m-{last['seq']}').classList.contains('unverified')")
        assert browser.console_errors == [], browser.console_errors
        browser.viewport(1000, 700)
        shot(browser, "broken", "page-broken.png")
    finally:
        d.stop()


def sse_until_head(base: str, cid: str, cookie: str, seq: int) -> str:
    """The page's event stream as the daemon sends it, up to and including
    the signed head at `seq`."""
    out = []
    with httpx2.stream("GET", f"{base}/c/{cid}/events", headers={"cookie": cookie}, timeout=10) as r:
        assert r.status_code == 200
        event = None
        for line in r.iter_lines():
            out.append(line)
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event == "head" and json.loads(line[6:])["seq"] == seq:
                out.append("")
                break
    return "\n".join(out) + "\n"


async def test_a_head_whose_signature_was_altered_in_transit_shows_broken(state_dir, browser):
    """The page's event stream is intercepted in the browser (CDP Fetch) and
    answered with what the daemon sent, one signed head's signature altered:
    the chain still holds, the WebCrypto Ed25519 check refuses the head."""
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {"name": "forged", "slots": ["invite:alice", "invite:bob"],
                                                      "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            await call(alice, "post_message", {"channel_id": cid, "body": "one"})
            last = await call(bob, "post_message", {"channel_id": cid, "body": "two"})
            shared = await call(alice, "share_channel", {"channel_id": cid})
        # The stream as the daemon sends it, read with the spectator link.
        r = httpx2.get(shared["url"], follow_redirects=False)
        cookie = r.headers["set-cookie"].split(";")[0]
        real = sse_until_head(d.base, cid, cookie, last["seq"])
        head_line = next(line for line in real.splitlines()
                         if line.startswith("data: ") and '"signature"' in line)
        head = json.loads(head_line[6:])
        sig = head["signature"]
        head["signature"] = ("B" if sig[0] == "A" else "A") + sig[1:]
        forged = real.replace(head_line, "data: " + json.dumps(head))
        assert forged != real

        def paused(p):
            # Once: the browser's reconnection then reaches the daemon.
            browser.send("Fetch.fulfillRequest", {
                "requestId": p["requestId"], "responseCode": 200,
                "responseHeaders": [{"name": "content-type", "value": "text/event-stream"},
                                    {"name": "cache-control", "value": "no-store"}],
                "body": base64.b64encode(forged.encode()).decode()}, wait=False)
            browser.send("Fetch.disable", wait=False)
        browser.handlers["Fetch.requestPaused"] = paused
        browser.send("Fetch.enable", {"patterns": [{"urlPattern": f"*/c/{cid}/events*", "requestStage": "Request"}]})
        browser.navigate(shared["url"])
        browser.wait_for("document.getElementById('verify-status').classList.contains('bad')")
        status = browser.text("#verify-status")
        # The first bad seq as `verify` names it: the seq after the last
        # valid head before the forged one (heads before it in the stream,
        # or none: seq 1).
        earlier = [json.loads(line[6:])["seq"] for line in real.split(head_line)[0].splitlines()
                   if line.startswith("data: ") and '"signature"' in line]
        first_bad = max(earlier, default=0) + 1
        assert status.startswith(f"Broken at seq {first_bad}: the server's signed head at seq {head['seq']} "
                                 "has an Ed25519 signature that does not verify"), status
        # The chain itself held: every entry is shown, none marked unverified.
        assert browser.eval("document.querySelectorAll('#transcript > li.unverified').length") == 0
        assert browser.console_errors == [], browser.console_errors
        browser.viewport(1000, 700)
        shot(browser, "forged-head")
        browser.navigate("about:blank")
    finally:
        d.stop()


XSS_BOT = '''"""<script>alert('doc')</script>"""
MANIFEST = {"name": "<img src=x onerror=alert('name')>", "summary": "</pre><script>alert('summary')</script>"}


class Echo:
    def on_message(self, msg):
        # </code></pre><img src=x onerror=alert('source')>
        self.ctx.post("echo", {"text": "<svg onload=alert('bot text')>", "raw": "<b>bold?</b>"})
'''


async def test_hostile_strings_in_bodies_names_and_bot_source_render_as_text_under_the_csp(state_dir, browser):
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {
                "name": "<script>alert('channel')</script>", "slots": ["invite:alice", "invite:bob", "bot:echo"],
                "bot_code": XSS_BOT, "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            hostile = ["<img src=x onerror=alert('body')>", "</li></ol><script>alert('close')</script>",
                       "\"><iframe src=javascript:alert('attr')>"]
            for body in hostile:
                await call(alice, "post_message", {"channel_id": cid, "body": body})
            p = await call(alice, "post_message", {"channel_id": cid, "body": {"<a href=javascript:alert(1)>k": "v"}})
            msgs, cursor = [], 0
            with anyio.fail_after(30):
                while not any(m["kind"] == "bot" and m.get("cause") == p["seq"] for m in msgs):
                    got, cursor = await sync_all(alice, cid, cursor)
                    msgs += got
            shared = await call(bob, "share_channel", {"channel_id": cid})
        browser.navigate(shared["url"])
        browser.wait_for(verified_upto(browser, msgs[-1]["seq"]))
        # Stopped by escaping (maud on the server, textContent in the
        # script): none of these became an element, each shows as text...
        counts = browser.eval("['script:not([src])', 'img', 'svg', 'iframe', 'a[href^=javascript]', 'b']"
                              ".map(s => document.querySelectorAll(s).length)")
        assert counts == [0, 0, 0, 0, 0, 0], counts
        text = browser.eval("document.body.innerText")
        for s in hostile + ["<script>alert('channel')</script>", "<img src=x onerror=alert('name')>",
                            "<svg onload=alert('bot text')>", "# </code></pre><img src=x onerror=alert('source')>"]:
            assert s in text or s in browser.text("pre.source"), s
        # ...and no script but the page's own ran: no dialog opened, nothing
        # was reported (a CSP violation would be a console error).
        assert browser.dialogs == []
        assert browser.console_errors == [], browser.console_errors
        only_same_origin(browser, d.base)
        browser.wait_for("document.querySelector('.code-check.ok')")
    finally:
        d.stop()


async def test_a_revoked_link_stops_the_open_page(state_dir, browser):
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {"name": "revoke", "slots": ["invite:alice", "invite:bob"],
                                                      "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            shared = await call(bob, "share_channel", {"channel_id": cid})
            browser.navigate(shared["url"])
            before = await call(alice, "post_message", {"channel_id": cid, "body": "seen"})
            browser.wait_for(verified_upto(browser, before["seq"]))
            await call(alice, "revoke_shares", {"channel_id": cid})
            # The open stream is cut at the commit that revoked the link.
            browser.wait_for("document.getElementById('live').textContent.includes('stopped working')", timeout=2)
            after = await call(alice, "post_message", {"channel_id": cid, "body": "not for spectators"})
            assert not browser.eval(f"!!document.getElementById('m-{after['seq']}')")
            shot(browser, "revoked")
            browser.navigate(f"{d.base}/c/{cid}")
            assert "does not open the channel" in browser.text("h1")
            # The denied page is expected to answer 403; nothing else failed.
            errors = [e for e in browser.console_errors if "403" not in e]
            assert errors == [], errors
    finally:
        d.stop()


# Bodies whose canonical JSON is easy to get wrong: number formatting,
# string escapes, key order by UTF-16 code units (U+10000 sorts before
# U+FFFF there, after it by code point), special keys.
CORPUS = [
    {"n": [0, -0.0, 1, -1, 1.5, 0.1, 1e21, 1e-7, 123456789012345678, 2 ** 53 + 1, 1.7976931348623157e308,
           5e-324, 100, 1e20, 0.000001, -12.5e-3]},
    {"s": "\u0000\u0007\b\t\n\u000b\f\r\u001f \"\\/ \u007f \u2028\u2029 é 中 😀"},
    {"\U00010000": 1, "\uffff": 2, "a": 3, "B": 4, "é": 5, "": 6, "__proto__": 7, "constructor": 8},
    {"nested": {"z": [], "y": {}, "x": [None, True, False, {"b": 1, "a": [{"d": 0, "c": "0"}]}]}},
    "a plain string with \"quotes\" and \\backslashes\\",
]


async def test_the_browsers_canonical_json_matches_the_daemons_on_a_corpus(state_dir, browser):
    """The chain verifies only if the script's RFC 8785 text of every body is
    byte for byte the daemon's (`CanonicalJson`), since each link hashes it:
    public bodies through the entry, private ones through their salted
    body_hash (recomputed by bob's page from the body and salt)."""
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {"name": "corpus", "slots": ["invite:alice", "invite:bob"],
                                                      "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            for body in CORPUS:
                await call(alice, "post_message", {"channel_id": cid, "body": body})
                last = await call(alice, "post_message", {"channel_id": cid, "body": body, "to": ["bob"]})
            mine = await call(bob, "share_channel", {"channel_id": cid, "audience": "me"})
        browser.navigate(mine["url"])
        browser.wait_for(verified_upto(browser, last["seq"]))
        # Bob's page read the private bodies (so it hashed them itself).
        assert "I bid" not in browser.text("#transcript")
        assert browser.eval(f"document.getElementById('m-{last['seq']}').textContent.includes('plain string')")
        # And the script's canonicaliser on the RFC 8785 examples.
        got = browser.eval("[1e21, 1e-7, 0.000001, 333333333.33333329, 4.5, 2e-3, -0]"
                           ".map(n => window.mcpmpCanonical(n))")
        assert got == ["1e+21", "1e-7", "0.000001", "333333333.3333333", "4.5", "0.002", "0"]
        assert browser.console_errors == [], browser.console_errors
    finally:
        d.stop()


async def test_a_blackjack_hands_deck_is_re_derived_in_the_browser(state_dir, browser):
    """Both players stand on every turn until the hand settles and the bot
    reveals its seed: the page re-derives the deck from the seed, checks it
    against the commitment made before the deal, and checks every card
    shown came from it."""
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            players = {"alice": alice, "bob": bob}
            ch = await call(alice, "create_channel", {
                "name": "Blackjack", "slots": ["invite:alice", "invite:bob", "bot:dealer"],
                "bot_preset": "blackjack", "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            seen, cursor, answered = [], 0, set()
            with anyio.fail_after(60):
                while not any(m["kind"] == "bot" and m["body"]["type"] == "reveal" for m in seen):
                    msgs, cursor = await sync_all(alice, cid, cursor)
                    seen += msgs
                    for m in msgs:
                        if m["kind"] == "bot" and m["body"]["type"] == "turn" and m["seq"] not in answered:
                            answered.add(m["seq"])
                            who = m["body"]["data"]["player"]
                            await call(players[who], "post_message", {"channel_id": cid, "body": "stand"})
            shared = await call(alice, "share_channel", {"channel_id": cid})
        reveal = next(m for m in seen if m["kind"] == "bot" and m["body"]["type"] == "reveal")
        browser.navigate(shared["url"])
        browser.wait_for(verified_upto(browser, reveal["seq"]))
        hand = reveal["body"]["data"]["hand"]
        browser.wait_for(f"(document.getElementById('claim-bot:dealer-hand-{hand}') || {{}}).className === 'claim ok'")
        claim = browser.text(f"[id='claim-bot:dealer-hand-{hand}']")
        assert claim.startswith(f"Deck checked: hand {hand}'s seed opens the commitment"), claim
        assert browser.console_errors == [], browser.console_errors
    finally:
        d.stop()


async def test_without_javascript_the_page_still_shows_the_transcript_and_says_it_is_unchecked(state_dir, browser):
    d = start(state_dir)
    try:
        ta, tb = d.token("alice"), d.token("bob")
        async with connect(d.url, ta) as alice, connect(d.url, tb) as bob:
            ch = await call(alice, "create_channel", {"name": "no script", "slots": ["invite:alice", "invite:bob"],
                                                      "join_as": "alice"})
            cid = ch["channel_id"]
            await call(bob, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
            last = await call(bob, "post_message", {"channel_id": cid, "body": "read me without scripts"})
            shared = await call(alice, "share_channel", {"channel_id": cid})
        browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.navigate(shared["url"])
        seqs = browser.eval("[...document.querySelectorAll('#transcript > li')].map(li => +li.dataset.seq)")
        assert seqs == list(range(1, last["seq"] + 1))
        assert "read me without scripts" in browser.text(f"#m-{last['seq']}")
        assert browser.text("#verify-status").startswith("Not checked")
        browser.send("Emulation.setScriptExecutionDisabled", {"value": False})
        assert browser.console_errors == [], browser.console_errors
    finally:
        d.stop()
