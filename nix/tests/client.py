"""A small MCP client for the NixOS VM test (standard library only).

Speaks MCP Streamable HTTP to the daemon with bearer tokens, plays a
GuessBot game between two players and checks the bot's commitment, or checks
after a restart that a channel is intact.

  client.py play  URL TOKEN_ALICE TOKEN_BOB     -> prints {"channel_id", "count", "head"}
  client.py check URL TOKEN_ALICE CHANNEL COUNT HEAD
"""

import hashlib
import json
import sys
import urllib.error
import urllib.request

PROTOCOL = "2025-06-18"


class Client:
    def __init__(self, url, token):
        self.url = url.rstrip("/") + "/mcp"
        self.token = token
        self.session = None
        self.next_id = 1
        self.rpc("initialize", {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "vm-test", "version": "1"},
        })
        self.notify("notifications/initialized")

    def _post(self, payload):
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        req = urllib.request.Request(self.url, json.dumps(payload).encode(), headers)
        with urllib.request.urlopen(req, timeout=60) as resp:
            self.session = resp.headers.get("Mcp-Session-Id", self.session)
            body = resp.read().decode()
            kind = resp.headers.get("Content-Type", "")
        if not body.strip():
            return None
        if kind.startswith("text/event-stream"):
            # The last JSON-RPC response among the events (progress
            # notifications may come first).
            result = None
            for line in body.splitlines():
                if line.startswith("data:") and line[5:].strip():
                    msg = json.loads(line[5:])
                    if "id" in msg and ("result" in msg or "error" in msg):
                        result = msg
            return result
        return json.loads(body)

    def notify(self, method):
        self._post({"jsonrpc": "2.0", "method": method})

    def rpc(self, method, params):
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.next_id += 1
        reply = self._post(msg)
        if reply is None or "error" in reply:
            raise SystemExit(f"{method} failed: {reply}")
        return reply["result"]

    def tool(self, tool_name, /, **args):
        result = self.rpc("tools/call", {"name": tool_name, "arguments": args})
        if result.get("isError"):
            raise SystemExit(f"{tool_name} returned an error: {result}")
        return result["structuredContent"]


def dicts(value):
    """Every JSON object nested in value (bot posts may wrap their body)."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from dicts(v)


def play(url, token_a, token_b):
    alice, bob = Client(url, token_a), Client(url, token_b)
    created = alice.tool(
        "create_channel",
        name="vm-test guess",
        slots=["invite:alice", "invite:bob", "bot:referee"],
        bot_preset="guess",
        # A small range and enough rounds: guessing 1, 2, 3 ... in turn must win.
        bot_params={"min": 1, "max": 8, "max_rounds": 10},
        join_as="alice",
    )
    cid = created["channel_id"]
    invite = next(i["invite_code"] for i in created["invites"] if i["slot"].endswith("bob"))
    bob.tool("join_channel", invite_code=invite)

    players = {"alice": alice, "bob": bob}
    cursor, guess, commitment, reveal = 0, 1, None, None
    for _ in range(60):
        out = alice.tool("sync_messages", channel_id=cid, cursor=cursor, wait_ms=5000)
        cursor = out["cursor"]
        turn = None
        for m in out["messages"]:
            for d in dicts(m.get("body")):
                if "commitment" in d and "scheme" in d:
                    commitment = d["commitment"]
                if "preimage" in d and "nonce" in d:
                    reveal = d
                if "player" in d and "your turn" in str(d.get("text", "")):
                    turn = d["player"]
        if reveal:
            break
        if turn in players:
            if guess > 8:
                raise SystemExit("guessed every number without a reveal")
            players[turn].tool("post_message", channel_id=cid, body=f"guess {guess}")
            guess += 1
    if not reveal:
        raise SystemExit("the game never ended")
    if commitment is None or reveal["commitment"] != commitment:
        raise SystemExit(f"commitment changed: {commitment} vs {reveal}")
    if hashlib.sha256(reveal["preimage"].encode()).hexdigest() != commitment:
        raise SystemExit("sha256(preimage) does not match the commitment")
    if not reveal.get("winner"):
        raise SystemExit(f"no winner: {reveal}")
    info = alice.tool("get_channel_info", channel_id=cid)
    print(json.dumps({"channel_id": cid, "count": info.get("message_count"), "head": info.get("head_hash"),
                      "winner": reveal["winner"]}))


def check(url, token_a, cid, count, head):
    info = Client(url, token_a).tool("get_channel_info", channel_id=cid)
    got = {"count": info.get("message_count"), "head": info.get("head_hash")}
    want = {"count": json.loads(count), "head": json.loads(head)}
    if got != want:
        raise SystemExit(f"channel changed across the restart: {got} != {want}")
    print("channel intact:", json.dumps(got))


if __name__ == "__main__":
    if sys.argv[1] == "play":
        play(*sys.argv[2:5])
    elif sys.argv[1] == "check":
        check(*sys.argv[2:7])
    else:
        raise SystemExit(__doc__)
