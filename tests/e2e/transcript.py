"""An independent check of a channel's hash chain, as any participant would
write it from DESIGN §8: hash_n = sha256(hash_{n-1} || JCS(entry_n))."""

from __future__ import annotations

import hashlib
import json


def jcs(value) -> str:
    """RFC 8785 canonical JSON for the values transcripts hold (strings, integers,
    booleans, null, arrays, objects): sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(body, salt: str) -> str:
    """The hash a private message contributes: salted, so a guess at a short
    body cannot be confirmed by anyone who lacks the salt."""
    return "sha256:" + hashlib.sha256(f"{salt}:{jcs(body)}".encode()).hexdigest()


def verify(channel_id: str, messages: list[dict]) -> str:
    """Returns the head hash; raises AssertionError at the first broken link."""
    prev = bytes(32)
    for i, m in enumerate(messages, start=1):
        assert m["seq"] == i, f"expected seq {i}, got {m['seq']}"
        entry = {k: m[k] for k in ("seq", "sender", "kind", "ts")}
        entry["channel_id"] = channel_id
        if "to" in m:
            entry["to"] = m["to"]
            entry["body_hash"] = m["body_hash"] if "body_hash" in m else body_hash(m["body"], m["body_salt"])
        else:
            entry["body"] = m["body"]
        h = hashlib.sha256(prev + jcs(entry).encode()).hexdigest()
        assert m["hash"] == h, f"hash mismatch at seq {i}"
        prev = bytes.fromhex(h)
    return prev.hex()
