"""EchoBot: echoes, privately when the message was private."""

from conftest import Table


def test_echo_public_and_private():
    t = Table("echo", ["alice", "bob"])
    assert t.init() == []
    t.join("alice")
    posts = t.say("alice", "hello")
    assert posts == [{"type": "echo", "body": {"from": "alice", "seq": 1, "body": "hello"}}]
    posts = t.say("bob", {"x": [1, 2]})
    assert posts[0]["body"] == {"from": "bob", "seq": 3, "body": {"x": [1, 2]}}
    assert "to" not in posts[0]
    posts = t.say("alice", "secret", to=["bot:echo"])
    assert posts[0]["to"] == ["alice"]


def test_echo_prefix_param():
    t = Table("echo", ["alice"], params={"prefix": "> "})
    t.init()
    assert t.say("alice", "hi")[0]["body"]["body"] == "> hi"
