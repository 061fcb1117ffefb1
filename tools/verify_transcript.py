#!/usr/bin/env python3
"""An independent verifier of mcp-multiplayer transcript exports.

Written from docs/transcripts.md alone, sharing no code with the daemon's
`mcp-multiplayer verify`, so that the format is not defined by one
implementation. It checks, offline:

- the document: format "mcp-multiplayer-transcript", version 1, not a page;
- the chain: seqs 1..N, every link sha256(hash_{n-1} || JCS(entry_n)), and
  the causal order of bot entries (cause, state_hash);
- the reader: every private body shown was sent by or to the reader the
  export's `exported_as` names (an export relabelled with another member's
  name shows bodies that member never receives);
- the signed heads: Ed25519 signatures over
  "mcp-multiplayer/signed-head/v1\\n" + JCS(head without signature), by a
  listed (or pinned) key, within that key's period, naming the hash their
  entry has, the last entry covered;
- each announced bot: the exported source, manifest and params hash to
  what its bot:attach announced;
- each bot's seed: a bot:reveal only after the channel closed, one per bot,
  for a bot that committed to a seed, opening that seed_commitment with the
  state salt the seed derives; every seeded bot revealed once the channel
  closed.

It does not check the builtin bots' game claims (the Rust verifier does).

Usage: verify_transcript.py FILE [--key KEY_ID]... [--keys KEYS_JSON] [--json] [--pure]

Exit status: 0 verified, 1 not verified (the first bad seq is named), 2 the
file cannot be read.

Dependencies: the standard library; Ed25519 through the `cryptography`
package (Debian: python3-cryptography) when it is installed, else (or with
--pure) the RFC 8032 reference arithmetic below.
"""

from __future__ import annotations

import argparse
import base64
import decimal
import hashlib
import hmac
import json
import re
import sys

FORMAT = "mcp-multiplayer-transcript"
VERSION = 1
HEAD_TAG = b"mcp-multiplayer/signed-head/v1\n"
GENESIS = bytes(32)
SEED_TAG = b"mcp-multiplayer bot seed v1\x00"


# --- RFC 8785 (JCS) -------------------------------------------------------

def jcs_number(x) -> str:
    """An ECMAScript Number's string form (RFC 8785 section 3.2.2.3): every
    number is an IEEE 754 double, printed with the shortest digits that
    round-trip, in ES6 Number.prototype.toString layout."""
    if isinstance(x, bool):
        raise ValueError("not a number")
    f = float(x)
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities have no JSON form")
    if f == 0:
        return "0"
    sign = "-" if f < 0 else ""
    d = decimal.Decimal(repr(abs(f))).normalize()
    _, digits_t, exp = d.as_tuple()
    digits = "".join(map(str, digits_t))
    k = len(digits)
    n = k + exp  # value = 0.DIGITS x 10^n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + out


def jcs(v) -> str:
    """RFC 8785 canonical JSON: keys sorted by UTF-16 code units, no
    whitespace, strings escaped as ECMAScript JSON.stringify does."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return jcs_number(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + jcs(v[k]) for k in keys) + "}"
    raise ValueError(f"not a JSON value: {type(v).__name__}")


# --- Ed25519 verification (RFC 8032 section 5.1.7) ------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = t1 * 2 * _D * t2 % _P
    dd = z1 * 2 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _decompress(s: bytes):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        x = 0
    else:
        x = pow(x2, (_P + 3) // 8, _P)
        if (x * x - x2) % _P != 0:
            x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P != 0:
            return None
        if (x & 1) != sign:
            x = _P - x
    return (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_G = _decompress(_GY.to_bytes(32, "little"))


def _verify_pure(public: bytes, msg: bytes, sig: bytes) -> bool:
    if len(sig) != 64:
        return False
    a = _decompress(public)
    r = _decompress(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % _L
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


def ed25519_verify(public: bytes, msg: bytes, sig: bytes, pure: bool) -> bool:
    if not pure:
        try:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:
            pure = True
    if pure:
        return _verify_pure(public, msg, sig)
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def b64u(s: str) -> bytes:
    if not isinstance(s, str) or "=" in s:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# --- the checks -----------------------------------------------------------

class Report:
    def __init__(self):
        self.summary = ""
        self.findings: list[tuple[str, object, str]] = []  # (check, None | "document" | seq, text)

    def ok(self, check, text):
        self.findings.append((check, None, text))

    def bad(self, check, where, text):
        self.findings.append((check, where, text))

    def first_bad(self):
        bad = [w for _, w, _ in self.findings if w is not None]
        if "document" in bad:
            return 0
        return min(bad) if bad else None

    def json(self):
        return {
            "verified": self.first_bad() is None,
            "first_bad_seq": self.first_bad(),
            "findings": [{"check": c, "ok": w is None, "seq": 0 if w == "document" else w, "text": t}
                         for c, w, t in self.findings],
        }

    def text(self):
        lines = [self.summary]
        for check, where, text in self.findings:
            mark = "ok    " if where is None else ("FAILED" if where == "document" else f"FAILED at seq {where}:")
            lines.append(f"{mark} {check}: {text}")
        fb = self.first_bad()
        if fb is None:
            lines.append("VERIFIED: every check passed.")
        elif fb == 0:
            lines.append("NOT VERIFIED: the document itself is not a valid export.")
        else:
            lines.append(f"NOT VERIFIED: first bad seq {fb}.")
        return "\n".join(lines) + "\n"


class Broken(Exception):
    def __init__(self, seq, reason):
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def hashed_entry(channel_id: str, m: dict) -> dict:
    e = {"seq": m.get("seq"), "channel_id": channel_id}
    for k in ("sender", "kind", "ts"):
        e[k] = m.get(k) if isinstance(m.get(k), str) else ""
    if "to" in m:
        e["to"] = m["to"]
        if isinstance(m.get("body_hash"), str):
            e["body_hash"] = m["body_hash"]
        elif "body" in m and isinstance(m.get("body_salt"), str):
            e["body_hash"] = "sha256:" + hashlib.sha256(f"{m['body_salt']}:{jcs(m['body'])}".encode()).hexdigest()
        else:
            raise Broken(m.get("seq"), "a private entry with neither body_hash nor body and body_salt")
    elif "body" in m:
        e["body"] = m["body"]
    else:
        raise Broken(m.get("seq"), "no body or body_hash")
    if "cause" in m:
        if not isinstance(m["cause"], int) or isinstance(m["cause"], bool):
            raise Broken(m.get("seq"), "cause is not an integer")
        e["cause"] = m["cause"]
    if "state_hash" in m:
        if not isinstance(m["state_hash"], str):
            raise Broken(m.get("seq"), "state_hash is not a string")
        e["state_hash"] = m["state_hash"]
    return e


def check_causes(entries: list[dict]):
    """Causal order (docs/bots.md): a bot entry's cause is an earlier message
    that runs a hook of that bot, not before its attachment, never going
    back; state_hash only with a cause; bot:state has one; a bot:error's seq
    is its cause; in a format-2 channel (or once one was seen) every bot
    entry has a cause."""
    required = False
    runs: list = []  # per seq: what the message triggers
    attached: dict = {}
    latest: dict = {}
    for m in entries:
        seq, kind, sender = m["seq"], m.get("kind"), m.get("sender")
        body = m.get("body") if isinstance(m.get("body"), dict) else {}
        event = body.get("type", "")
        cause = m.get("cause")
        bots = kind == "bot" or (kind == "control" and sender != "system")
        if "state_hash" in m and cause is None:
            raise Broken(seq, "a state_hash without a cause")
        if cause is None:
            if bots and required:
                raise Broken(seq, f"{sender}'s entry has no cause")
        elif not bots:
            raise Broken(seq, "only a bot's entries have a cause")
        else:
            if not 1 <= cause < seq:
                raise Broken(seq, f"cause {cause} is not an earlier message")
            if sender not in attached:
                raise Broken(seq, f"{sender} was never attached before seq {seq}")
            if cause < attached[sender]:
                raise Broken(seq, f"cause {cause} precedes {sender}'s attachment")
            t = runs[cause - 1]
            ok = (t[0] == "attach" and t[1] == sender) or t[0] == "seat" or \
                (t[0] == "user" and (t[1] is None or sender in t[1]))
            if not ok:
                raise Broken(seq, f"cause {cause} is not a message that runs a hook of {sender}")
            if cause < latest.get(sender, 0):
                raise Broken(seq, f"{sender}'s cause goes back from {latest[sender]} to {cause}")
            latest[sender] = cause
            required = True
        if kind == "control" and event == "bot:state" and "state_hash" not in m:
            raise Broken(seq, "a bot:state entry without a state_hash")
        if cause is not None and event == "bot:error" and body.get("seq") != cause:
            raise Broken(seq, "a bot:error whose seq is not its cause")
        if kind == "user":
            runs.append(("user", m.get("to")))
        elif kind == "system" and event == "channel:created":
            if isinstance(body.get("transcript_format"), int) and body["transcript_format"] >= 2:
                required = True
            runs.append(("nothing",))
        elif kind == "system" and event == "bot:attach":
            attached.setdefault(body.get("bot_id", ""), seq)
            runs.append(("attach", body.get("bot_id", "")))
        elif kind == "system" and event in ("seat:filled", "seat:moved"):
            runs.append(("seat",))
        else:
            runs.append(("nothing",))


def check_chain(r: Report, channel_id: str, entries: list[dict]):
    for i, m in enumerate(entries, start=1):
        if not isinstance(m, dict) or m.get("seq") != i or isinstance(m.get("seq"), bool):
            r.bad("chain", i, f"seq {i} is missing or out of order")
            return
        if "channel_id" in m and m["channel_id"] != channel_id:
            r.bad("chain", i, f"the entry names channel {m['channel_id']!r}")
            return
    prev = GENESIS
    try:
        for m in entries:
            h = hashlib.sha256(prev + jcs(hashed_entry(channel_id, m)).encode()).hexdigest()
            if m.get("hash") != h:
                raise Broken(m["seq"], "hash does not match")
            prev = bytes.fromhex(h)
        check_causes(entries)
    except Broken as b:
        r.bad("chain", b.seq, b.reason)
        return
    r.ok("chain", f"{len(entries)} entries link to head {prev.hex()[:16]}…; bot entries keep their causal order")


def key_problem(k: dict):
    try:
        pub = b64u(k["public_key"])
    except (KeyError, ValueError, TypeError):
        return "public_key is not base64url", None
    if k.get("algorithm") != "Ed25519":
        return "its algorithm is not Ed25519", None
    if len(pub) != 32:
        return "public_key is not 32 bytes", None
    if "sha256:" + hashlib.sha256(pub).hexdigest() != k.get("key_id"):
        return "key_id is not the SHA-256 of public_key", None
    return None, pub


def head_problem(h: dict, keys: list, pure: bool):
    key = next((k for k in keys if isinstance(k, dict) and k.get("key_id") == h.get("key_id")), None)
    if key is None:
        return f"signed by key {h.get('key_id')}, which is not in the key list"
    why, pub = key_problem(key)
    if why:
        return f"the key list's entry {key.get('key_id')} is malformed: {why}"
    unsigned = {k: h.get(k) for k in ("channel_id", "head_hash", "key_id", "seq", "time")}
    try:
        sig = b64u(h.get("signature"))
        msg = HEAD_TAG + jcs(unsigned).encode()
    except (ValueError, TypeError):
        return "the signature is not valid"
    if not ed25519_verify(pub, msg, sig, pure):
        return f"the signature is not valid for key {h.get('key_id')}"
    t = h.get("time")
    if not isinstance(t, str) or not (key.get("valid_from", "") <= t and
                                      (key.get("valid_until") is None or t <= key["valid_until"])):
        return f"signed at {t}, outside the period of key {key.get('key_id')}"
    return None


def check_reader(r: Report, doc: dict, entries: list[dict]):
    """Every private body shown went to the reader `exported_as` names:
    sent by it or addressed to it. Reported only when there are private
    entries."""
    reader = doc.get("exported_as")
    private = shown = 0
    for e in entries:
        to = e.get("to")
        if not isinstance(to, list):
            continue
        private += 1
        if "body" not in e:
            continue
        shown += 1
        if e.get("sender") != reader and reader not in to:
            r.bad("reader", e.get("seq"),
                  f"a private body from {e.get('sender')!r} to {to!r} is shown, which {reader!r}, "
                  f"the reader the export names, never receives")
            return
    if private:
        r.ok("reader", f"the {shown} private bodies shown, of {private} private entries, went to {reader!r}")


def check_heads(r: Report, doc: dict, channel_id: str, entries: list[dict], keys, pinned, pure):
    if keys is None:
        keys = doc.get("keys")
    heads = doc.get("signed_heads")
    if not isinstance(keys, list) or not isinstance(heads, list):
        r.bad("signatures", "document", "keys or signed_heads is not a list")
        return
    # Heads match entries by their seq field, not their position: whether
    # the entries link up is the chain check's question.
    hash_at = {}
    for m in entries:
        if isinstance(m, dict) and isinstance(m.get("seq"), int) and m["seq"] not in hash_at:
            hash_at[m["seq"]] = m.get("hash")
    last = max(hash_at, default=0)
    vouched = 0
    for h in heads:
        # A head that is not a valid signature, or whose hash differs from its
        # entry's, leaves the entries after the last valid head unvouched; a
        # valid head naming a seq the document lacks points at that seq.
        seq = h.get("seq") if isinstance(h, dict) else None
        at = vouched + 1
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= vouched:
            why = f"heads must ascend: seq {seq} after seq {vouched}"
        elif h.get("channel_id") != channel_id:
            why = f"it is for channel {h.get('channel_id')!r}"
        elif pinned and h.get("key_id") not in pinned:
            why = f"signed by key {h.get('key_id')}, not a key you pinned"
        else:
            why = head_problem(h, keys, pure)
            if why is None and seq not in hash_at:
                why, at = f"the daemon signed seq {seq}, which the document does not have", seq
            elif why is None and hash_at[seq] != h.get("head_hash"):
                why = f"the daemon signed another hash for seq {seq} than the entry has"
        if why:
            end = min(max(seq if isinstance(seq, int) else last, vouched + 1), max(last, vouched + 1))
            r.bad("signatures", at,
                  f"the signed head at seq {seq}: {why}; entries {vouched + 1}..{end} are not vouched for")
            return
        vouched = seq
    if vouched < last:
        r.bad("signatures", vouched + 1, f"no signed head covers entries {vouched + 1}..{last}")
        return
    ids = sorted({h["key_id"] for h in heads})
    r.ok("signatures", f"{len(heads)} signed head(s) valid, the last at seq {last}; key(s) {', '.join(ids)}")


def check_bots(r: Report, doc: dict, entries: list[dict]):
    bots = doc.get("bots") if isinstance(doc.get("bots"), list) else []
    for m in entries:
        body = m.get("body") if isinstance(m.get("body"), dict) else {}
        if m.get("kind") != "system" or body.get("type") != "bot:attach":
            continue
        bot_id = body.get("bot_id")
        b = next((b for b in bots if isinstance(b, dict) and b.get("bot_id") == bot_id), None)
        if b is None or not isinstance(b.get("source"), str):
            r.bad(f"bot {bot_id}", m["seq"], "announced here, but the export has no source for it")
            continue
        code = "sha256:" + hashlib.sha256(b["source"].encode("utf-8")).hexdigest()
        manifest = "sha256:" + hashlib.sha256(jcs(b.get("manifest")).encode()).hexdigest()
        params = {} if b.get("params") is None else b["params"]
        if code != body.get("code_hash"):
            r.bad(f"bot {bot_id}", m["seq"], "the exported source does not hash to the announced code_hash")
        elif manifest != body.get("manifest_hash"):
            r.bad(f"bot {bot_id}", m["seq"], "the exported manifest does not hash to the announced manifest_hash")
        elif "params_hash" in body and not isinstance(params, dict):
            r.bad(f"bot {bot_id}", m["seq"], "the exported params are not an object")
        elif "params_hash" in body and \
                "sha256:" + hashlib.sha256(jcs(params).encode()).hexdigest() != body["params_hash"]:
            r.bad(f"bot {bot_id}", m["seq"], "the exported params do not hash to the announced params_hash")
        else:
            r.ok(f"bot {bot_id}", f"source, manifest and params hash to what seq {m['seq']} announced")


def reveal_problem(commitment, seed_hex, salt):
    """Why a bot:reveal does not open its bot's seed commitment, or None."""
    if not isinstance(seed_hex, str) or not re.fullmatch(r"[0-9a-f]{64}", seed_hex):
        return "the revealed seed is not 64 lowercase hex digits"
    seed = bytes.fromhex(seed_hex)
    if "sha256:" + hashlib.sha256(SEED_TAG + seed).hexdigest() != commitment:
        return "the revealed seed does not open the seed commitment"
    derived = hmac.new(seed, b"state-salt\x00" + (0).to_bytes(8, "big"), hashlib.sha256).digest()[:16].hex()
    if salt != derived:
        return "the revealed state salt is not the one the seed derives"
    return None


def check_seeds(r: Report, entries: list[dict]):
    """Reveals only after channel:closed, one per bot, for a bot whose
    bot:attach has a seed_commitment that the seed opens, with the state salt
    the seed derives; every seeded bot revealed once the channel closed (a
    missing reveal is named at the close)."""
    bots = []  # [bot_id, attach seq, commitment or None, revealed at or None]
    closed = None
    for m in entries:
        if not isinstance(m, dict) or m.get("kind") != "system" or m.get("sender") != "system":
            continue
        body = m.get("body") if isinstance(m.get("body"), dict) else {}
        seq, event = m.get("seq"), body.get("type")
        if event == "bot:attach":
            c = body.get("seed_commitment")
            bots.append([body.get("bot_id"), seq, c if isinstance(c, str) else None, None])
        elif event == "channel:closed" and closed is None:
            closed = seq
        elif event == "bot:reveal":
            bot_id = body.get("bot_id")
            b = next((b for b in reversed(bots) if b[0] == bot_id), None)
            if b is None:
                r.bad(f"seed {bot_id}", seq, "a reveal for a bot never attached")
                continue
            if b[3] is not None:
                why = f"a second reveal (the first is at seq {b[3]})"
            elif closed is None:
                why = "revealed while the channel is open"
            elif b[2] is None:
                why = f"its bot:attach at seq {b[1]} committed to no seed"
            else:
                why = reveal_problem(b[2], body.get("seed"), body.get("state_salt"))
            if b[3] is None:
                b[3] = seq
            if why:
                r.bad(f"seed {bot_id}", seq, why)
            else:
                r.ok(f"seed {bot_id}", f"the reveal at seq {seq} opens the commitment of seq {b[1]}")
    for bot_id, attach, commitment, revealed in bots:
        if commitment is None or revealed is not None:
            continue
        if closed is not None:
            r.bad(f"seed {bot_id}", closed, f"the channel closed without revealing the seed committed at seq {attach}")
        else:
            r.ok(f"seed {bot_id}", f"committed at seq {attach}, revealed when the channel closes")


def verify(doc, keys=None, pinned=(), pure=False) -> Report:
    r = Report()
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        r.summary = "Not a transcript export."
        r.bad("format", "document", f"format is not {FORMAT!r}")
        return r
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        r.summary = "An export of a version this verifier does not know."
        r.bad("format", "document", f"version {doc.get('version')!r}, this verifier reads {VERSION}")
        return r
    if "page" in doc:
        r.summary = "One page of an export, not the whole document."
        r.bad("format", "document", "a page: join the pages' entries and signed_heads first")
        return r
    channel_id = (doc.get("channel") or {}).get("channel_id")
    entries = doc.get("entries")
    if not isinstance(channel_id, str) or not isinstance(entries, list) or not entries:
        r.summary = "An export without a channel id or entries."
        r.bad("format", "document", "no channel.channel_id, or no entries")
        return r
    r.summary = (f"Transcript of channel {channel_id} exported as {doc.get('exported_as')} at "
                 f"{doc.get('exported_at')}: {len(entries)} entries.")
    check_chain(r, channel_id, entries)
    check_reader(r, doc, entries)
    check_heads(r, doc, channel_id, entries, keys, set(pinned), pure)
    check_bots(r, doc, entries)
    check_seeds(r, entries)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Verify an mcp-multiplayer transcript export offline.")
    ap.add_argument("file")
    ap.add_argument("--key", action="append", default=[], help="accept signatures only from this key id (repeatable)")
    ap.add_argument("--keys", help="a key list (the server's keys.json) to use instead of the document's")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--pure", action="store_true", help="verify Ed25519 with the RFC 8032 arithmetic here")
    a = ap.parse_args(argv)
    try:
        with open(a.file, encoding="utf-8") as f:
            doc = json.load(f)
        keys = None
        if a.keys:
            with open(a.keys, encoding="utf-8") as f:
                keys = json.load(f)["keys"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"verify_transcript: cannot read the input: {e}", file=sys.stderr)
        return 2
    r = verify(doc, keys, a.key, a.pure)
    if a.json:
        print(json.dumps(r.json()))
    else:
        sys.stdout.write(r.text())
    return 0 if r.first_bad() is None else 1


if __name__ == "__main__":
    sys.exit(main())
