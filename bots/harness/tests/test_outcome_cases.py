"""The protocol's table of edge cases (`protocol/tests/outcome-cases.json`)
through the real harness entry point: for every case whose outcome a bot can
produce through `ctx`, a bot calls `ctx.post` with the case's posts and
`ctx.set_state` with its state, and the harness must give the verdict the
hook-protocol crate gives (`Limits::check`): the same outcome, or a `limit`
error with the same sentence. The runner's suite runs the same table with a
bot that writes the outcome to fd 3 itself."""

import json

import pytest

from hxrun import BASE_LIMITS, OUTCOME_CASES, run

with open(OUTCOME_CASES, encoding="utf-8") as f:
    TABLE = json.load(f)

# The bot takes the values from its params, so they reach `ctx` exactly as
# the table has them (no source code is generated from them).
BOT = """
class Replay:
    def __init__(self, ctx, params):
        self.ctx = ctx
        self.params = params

    def play(self):
        for p in self.params["posts"]:
            self.ctx.post(p["type"], p["body"], p.get("to"))
        self.ctx.set_state(self.params["state"])

    def on_init(self):
        self.play()

    def on_join(self, player):
        self.play()

    def on_message(self, msg):
        self.play()
"""


def expressible(case):
    """Whether a bot can produce the case's outcome through `ctx` calls."""
    o = case["outcome"]
    hook = case.get("hook", {"name": "on_init"})
    return o["status"] == "ok" and "manifest" not in o and hook["name"] != "inspect"


CASES = [c for c in TABLE["cases"] if expressible(c)]


def test_the_table_reaches_the_harness():
    # Most of the table is about posts and state: it must not shrink to
    # nothing here by a change of format.
    assert len(CASES) >= 45, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_harness_gives_the_tables_verdict(case):
    o = case["outcome"]
    out = run(
        BOT,
        case.get("hook", {"name": "on_init"}),
        params={"posts": o["posts"], "state": o["state"]},
        limits={**BASE_LIMITS, **case.get("limits", {})},
        context={"channel_id": "ch1", "bot_id": "bot:" + TABLE["bots"][0],
                 "players": case.get("players", TABLE["players"])},
    )
    expect = case["expect"]
    if expect == "accepted":
        assert out["status"] == "ok", out
        # Relayed as written; a `to` of null is a public post (no `to`).
        want = [{k: v for k, v in p.items() if not (k == "to" and v is None)} for p in o["posts"]]
        assert out["posts"] == want
        assert out["state"] == o["state"]
        assert "manifest" not in out
    else:
        assert out["status"] == "error", out
        err = out["error"]
        assert err["kind"] == "limit", err
        assert expect["refused"] in err["message"], err
