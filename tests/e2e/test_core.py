"""End to end: channels over MCP between real SDK clients acting as distinct
principals (a principal is who a bearer token or OAuth grant names; a seat
belongs to the principal that took it)."""

from __future__ import annotations

import time

import anyio
import pytest
from conftest import MODES, call, connect, fails
import hashlib

from transcript import body_hash, jcs, verify

pytestmark = pytest.mark.anyio


async def wait_until_waiting(daemon, n: int):
    """Waits (bounded) until n sync_messages calls are parked in the daemon."""
    with anyio.fail_after(10):
        while daemon.metric("mcp_multiplayer_sync_waiting") < n:
            await anyio.sleep(0.005)


@pytest.mark.parametrize("mode", MODES)
async def test_two_principals_meet_exchange_and_move_a_seat(daemon, mode):
    tok = {n: daemon.token(n) for n in ("alice", "bob", "carol", "bob-laptop", "mallory")}
    seen_by: dict[str, list[str]] = {n: [] for n in tok}  # every text each principal received

    async def c(who, client, tool, args=None, **kw):
        out = await call(client, tool, args, **kw)
        seen_by[who].append(repr(out))
        return out

    async with connect(daemon.url, tok["alice"], mode) as alice, \
            connect(daemon.url, tok["bob"], mode) as bob, \
            connect(daemon.url, tok["carol"], mode) as carol, \
            connect(daemon.url, tok["mallory"], mode) as mallory:
        created = await c("alice", alice, "create_channel",
                          {"name": "portal", "slots": ["invite:alice", "invite:bob", "invite:carol"],
                           "join_as": "alice"})
        cid = created["channel_id"]
        invites = {i["slot"]: i["invite_code"] for i in created["invites"]}
        assert set(invites) == {"bob", "carol"}
        alice_rejoin = created["seat"]["rejoin_token"]

        jb = await c("bob", bob, "join_channel", {"invite_code": invites["bob"]})
        assert (jb["channel_id"], jb["slot"]) == (cid, "bob")
        await c("carol", carol, "join_channel", {"invite_code": invites["carol"]})
        # Invites are single-use.
        e = await fails(mallory, "join_channel", {"invite_code": invites["bob"]})
        assert e.code == "INVITE_INVALID"

        # Public message, read by bob with the sender as a slot label.
        head = (await c("bob", bob, "get_channel_info", {"channel_id": cid}))["message_count"]
        await c("alice", alice, "post_message", {"channel_id": cid, "body": "hello, bob"})
        got = await c("bob", bob, "sync_messages", {"channel_id": cid, "cursor": head, "wait_ms": 0})
        assert [(m["sender"], m["body"]) for m in got["messages"]] == [("alice", "hello, bob")]

        # Long-poll: bob waits; alice's post wakes him.
        cursor = got["cursor"]
        result = {}

        async def waiter():
            result["r"] = await c("bob", bob, "sync_messages",
                                  {"channel_id": cid, "cursor": cursor, "wait_ms": 20000})
            result["t"] = time.monotonic()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_until_waiting(daemon, 1)
            t0 = time.monotonic()
            await c("alice", alice, "post_message", {"channel_id": cid, "body": {"move": "e4"}})
        assert [m["body"] for m in result["r"]["messages"]] == [{"move": "e4"}]
        assert result["t"] - t0 < 2.0, "the waiter must wake on the commit, not at its deadline"

        # Private message: bob reads it, carol sees only that it was sent.
        p = await c("alice", alice, "post_message",
                    {"channel_id": cid, "body": {"secret": "the key is under the mat"}, "to": "bob"})
        b = await c("bob", bob, "sync_messages", {"channel_id": cid, "cursor": p["seq"] - 1, "wait_ms": 0})
        assert b["messages"][0]["body"] == {"secret": "the key is under the mat"}
        k = await c("carol", carol, "sync_messages", {"channel_id": cid, "cursor": p["seq"] - 1, "wait_ms": 0})
        km = k["messages"][0]
        assert "body" not in km and km["to"] == ["bob"] and km["body_hash"].startswith("sha256:")
        assert "under the mat" not in repr(k) and "body_salt" not in km
        # Carol cannot confirm a guess at the body: the hash is salted, and
        # only the readers get the salt, with which it checks out.
        secret_body = {"secret": "the key is under the mat"}
        assert km["body_hash"] != "sha256:" + hashlib.sha256(jcs(secret_body).encode()).hexdigest()
        assert km["body_hash"] == body_hash(secret_body, b["messages"][0]["body_salt"])

        # Every member can verify the whole chain, private message included.
        for who, cl in (("alice", alice), ("carol", carol)):
            full = await c(who, cl, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0})
            assert verify(cid, full["messages"]) == full["view"]["head_hash"]

        # A third principal holds no seat.
        for tool, args in (("sync_messages", {"channel_id": cid, "wait_ms": 0}),
                           ("post_message", {"channel_id": cid, "body": "let me in"}),
                           ("get_channel_info", {"channel_id": cid})):
            e = await fails(mallory, tool, args)
            assert e.code == "NOT_MEMBER", (tool, e)
        assert (await call(mallory, "list_channels"))["channels"] == []

        # Rejoin moves bob's seat to his other device; the old holder loses it.
        async with connect(daemon.url, tok["bob-laptop"], mode) as laptop:
            moved = await c("bob-laptop", laptop, "join_channel", {"invite_code": jb["rejoin_token"]})
            assert moved["slot"] == "bob" and moved["moved"] is True
            e = await fails(bob, "post_message", {"channel_id": cid, "body": "still here?"})
            assert e.code == "NOT_MEMBER"
            posted = await c("bob-laptop", laptop, "post_message", {"channel_id": cid, "body": "moved"})
            last = await c("alice", alice, "sync_messages",
                           {"channel_id": cid, "cursor": posted["seq"] - 1, "wait_ms": 0})
            assert last["messages"][0]["sender"] == "bob"
            # The used rejoin token is spent.
            e = await fails(mallory, "join_channel", {"invite_code": jb["rejoin_token"]})
            assert e.code == "REJOIN_TOKEN_INVALID"

    # Seats belong to the principal, not the MCP session: a new connection keeps them.
    async with connect(daemon.url, tok["carol"], mode) as carol2:
        again = await call(carol2, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0})
        assert again["as"] == "carol"

    # No secret of one principal is readable by another.
    secrets = {"alice": [tok["alice"], alice_rejoin], "bob": [tok["bob"], jb["rejoin_token"]],
               "carol": [tok["carol"]], "bob-laptop": [tok["bob-laptop"], moved["rejoin_token"]]}
    for owner, owned in secrets.items():
        for reader, texts in seen_by.items():
            if reader == owner:
                continue
            blob = "\n".join(texts)
            for s in owned:
                assert s not in blob, f"{reader} could read a secret of {owner}"
    # And none reaches the log.
    log = daemon.log_text()
    for s in [*tok.values(), alice_rejoin, jb["rejoin_token"], moved["rejoin_token"], *invites.values()]:
        assert s not in log


async def test_one_principal_with_two_seats_must_say_which_acts(daemon):
    """Two conversations of one user share one connector, hence one principal."""
    t = daemon.token("one-user")
    async with connect(daemon.url, t) as me:
        ch = await call(me, "create_channel", {"name": "self-play", "slots": ["red", "blue"]})
        cid = ch["channel_id"]
        for inv in ch["invites"]:
            await call(me, "join_channel", {"invite_code": inv["invite_code"]})
        e = await fails(me, "post_message", {"channel_id": cid, "body": "who am I?"})
        assert e.code == "SLOT_REQUIRED" and sorted(e.data["your_seats"]) == ["blue", "red"]
        e = await fails(me, "post_message", {"channel_id": cid, "body": "x", "slot": "green"})
        assert e.code == "UNKNOWN_SLOT"
        r = await call(me, "post_message", {"channel_id": cid, "body": "red speaks", "slot": "red"})
        s = await call(me, "sync_messages", {"channel_id": cid, "cursor": r["seq"] - 1, "slot": "blue", "wait_ms": 0})
        assert s["as"] == "blue" and s["messages"][0]["sender"] == "red"


async def test_admin_operations(daemon):
    ta, tb = daemon.token("admin"), daemon.token("guest")
    async with connect(daemon.url, ta) as a, connect(daemon.url, tb) as b:
        ch = await call(a, "create_channel", {"name": "club", "slots": ["host", "guest"], "join_as": "host"})
        cid = ch["channel_id"]
        await call(b, "join_channel", {"invite_code": ch["invites"][0]["invite_code"]})
        e = await fails(b, "update_channel", {"channel_id": cid, "op": "close"})
        assert e.code == "NOT_ADMIN"
        kicked = await call(a, "update_channel", {"channel_id": cid, "op": "kick", "slot": "guest"})
        assert (await fails(b, "sync_messages", {"channel_id": cid, "wait_ms": 0})).code == "NOT_MEMBER"
        await call(b, "join_channel", {"invite_code": kicked["invite"]["invite_code"]})
        await call(a, "update_channel", {"channel_id": cid, "op": "rename", "name": "club 2"})
        await call(a, "update_channel", {"channel_id": cid, "op": "close"})
        e = await fails(b, "post_message", {"channel_id": cid, "body": "anyone?"})
        assert e.code == "CHANNEL_CLOSED"
        info = await call(b, "get_channel_info", {"channel_id": cid})
        assert info["name"] == "club 2" and info["closed"] is True
        e = await fails(a, "update_channel", {"channel_id": cid, "op": "explode"})
        assert e.code == "BAD_REQUEST" and "rename, kick, new_invite or close" in e.message


async def test_state_survives_restart_and_sigterm_is_graceful(state_dir):
    from conftest import Daemon
    d = Daemon(state_dir).start()
    t = d.token("alice")
    async with connect(d.url, t) as a:
        ch = await call(a, "create_channel", {"name": "durable", "slots": ["alice", "bob"], "join_as": "alice"})
        await call(a, "post_message", {"channel_id": ch["channel_id"], "body": "remember me"})
    assert d.stop("TERM") == 0
    d2 = Daemon(state_dir).start()
    try:
        async with connect(d2.url, t) as a:
            s = await call(a, "sync_messages", {"channel_id": ch["channel_id"], "cursor": 0, "wait_ms": 0})
            assert "remember me" in [m.get("body") for m in s["messages"]]
    finally:
        d2.stop()


async def test_unauthenticated_sdk_client_is_refused(daemon):
    with pytest.raises(Exception) as ei:
        async with connect(daemon.url, "mcpmp_at_not-a-real-token") as c:
            await call(c, "list_channels")
    assert ei.value is not None
    # The SDK reports the refusal generically; the daemon counted a 401.
    assert daemon.metric("mcp_multiplayer_auth_failures_total") >= 1


async def test_an_sdk_client_ends_its_session_without_a_warning(daemon, caplog):
    # On leaving, the SDK DELETEs its session and takes any answer but 200,
    # 204 (or 405) for a failed termination, which it logs as a warning.
    import logging

    caplog.set_level(logging.DEBUG, logger="mcp")
    before = daemon.metric("mcp_multiplayer_sessions_open")
    async with connect(daemon.url, daemon.token("alice")) as c:
        await call(c, "list_channels")
        assert daemon.metric("mcp_multiplayer_sessions_open") == before + 1
    failed = [r.getMessage() for r in caplog.records if "termination failed" in r.getMessage()]
    assert not failed, failed
    assert daemon.metric("mcp_multiplayer_sessions_open") == before


@pytest.mark.parametrize("mode", MODES)
async def test_long_poll_reports_progress_while_waiting(daemon, mode):
    """A client that gives a progress token hears from a waiting sync_messages
    (every 5 s), so proxies and clients with short idle timeouts keep the call."""
    t = daemon.token("patient")
    progress = []

    async def on_progress(p, total, message):
        progress.append((p, message))

    async with connect(daemon.url, t, mode) as c:
        ch = await call(c, "create_channel", {"name": "quiet", "slots": ["me"], "join_as": "me"})
        info = await call(c, "get_channel_info", {"channel_id": ch["channel_id"]})
        t0 = time.monotonic()
        r = await call(c, "sync_messages",
                       {"channel_id": ch["channel_id"], "cursor": info["message_count"], "wait_ms": 6000},
                       progress_callback=on_progress)
        waited = time.monotonic() - t0
    assert r["messages"] == [] and waited >= 5.9
    assert progress and progress[0][0] == 1.0 and "waiting" in progress[0][1]


async def test_channels_are_resources_with_update_notifications(daemon):
    """channel://ID resources; subscribers hear of every commit."""
    import json

    ta, tm = daemon.token("reader"), daemon.token("outsider")
    updated = []
    got_one = anyio.Event()

    async def on_message(msg):
        if getattr(msg, "method", None) == "notifications/resources/updated" or \
                "resources/updated" in repr(msg):
            updated.append(repr(msg))
            got_one.set()

    async with connect(daemon.url, ta, "legacy", message_handler=on_message) as r, \
            connect(daemon.url, tm) as outsider:
        ch = await call(r, "create_channel", {"name": "watched", "slots": ["me"], "join_as": "me"})
        uri = f"channel://{ch['channel_id']}"
        listed = await r.list_resources()
        assert [str(x.uri) for x in listed.resources] == [uri]
        await r.subscribe_resource(uri)
        await call(r, "post_message", {"channel_id": ch["channel_id"], "body": "news"})
        with anyio.fail_after(10):
            await got_one.wait()
        assert uri in updated[0]
        content = await r.read_resource(uri)
        data = json.loads(content.contents[0].text)
        assert data["as"] == "me" and data["messages"][-1]["body"] == "news"
        # Members only.
        assert (await outsider.list_resources()).resources == []
        with pytest.raises(Exception):
            await outsider.read_resource(uri)
