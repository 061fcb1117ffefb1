"""FetchBot: fetches a URL once so that every participant sees the same bytes.

Send "fetch https://example.com/item" (or just the URL, or {"url": "..."}).
The bot downloads the page with `requests` (imported lazily: it costs ~180 ms)
and posts the HTTP status, the final URL after redirects, the content type,
the byte count, the SHA-256 of the exact bytes received (up to `max_bytes`),
a bounded plain-text extract, and, when a price pattern matches, the first
price found. Everyone in the channel then argues from one shared observation
instead of each side fetching its own copy.

Needs the channel's network permission (`allow_network`). The daemon's sandbox
allows TCP to ports 80 and 443 of public addresses only; this bot adds no
address policy of its own.
"""

import hashlib
import re
import time

MANIFEST = {
    "name": "FetchBot",
    "version": "1.0.0",
    "summary": "Fetches a URL on request and posts status, content type, sha256 of the bytes and a text extract (needs allow_network).",
    "params": {
        "max_bytes": "largest download kept and hashed, in bytes (default 1048576)",
        "extract_chars": "length of the text extract (default 600)",
        "timeout": "total seconds for the whole fetch, at most 4 (default 3.5); the hook itself has 5",
        "price_regex": "regular expression whose first match is reported as `price` (default: a currency symbol followed by a number)",
    },
}

URL_RE = re.compile(r"(https?://[^\s<>\"']+)", re.IGNORECASE)
DEFAULT_PRICE_RE = r"(?:[$\u20ac\u00a3\u00a5]\s?\d[\d,]*(?:\.\d{1,2})?|\d[\d,]*(?:\.\d{1,2})?\s?(?:USD|EUR|GBP|CHF))"
ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": "\"", "&#39;": "'", "&apos;": "'", "&nbsp;": " "}


def requested_url(body):
    """The URL a message asks for, or None."""
    if isinstance(body, dict):
        value = body.get("url")
        if isinstance(value, str):
            body = value
        else:
            body = body.get("text") if isinstance(body.get("text"), str) else ""
    if not isinstance(body, str):
        return None
    match = URL_RE.search(body)
    return match.group(1).rstrip(".,;)") if match else None


def number_param(params, key, default, low, high):
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return min(max(value, low), high)


def text_extract(raw, content_type, encoding, limit):
    """Readable text of the body: tags, scripts and styles removed, whitespace collapsed."""
    try:
        text = raw.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        text = raw.decode("utf-8", errors="replace")
    if "html" in content_type or "<html" in text[:2000].lower():
        text = re.sub(r"(?is)<(script|style|noscript)\b.*?</\1\s*>", " ", text)
        text = re.sub(r"(?s)<!--.*?-->", " ", text)
        text = re.sub(r"(?s)<[^>]*>", " ", text)
        for entity, char in ENTITIES.items():
            text = text.replace(entity, char)
    text = re.sub(r"\s+", " ", text).strip()
    return text, text[:limit]


class FetchBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def on_message(self, msg):
        url = requested_url(msg.get("body"))
        if not url:
            return
        params = self.params
        max_bytes = int(number_param(params, "max_bytes", 1048576, 1, 8388608))
        extract_chars = int(number_param(params, "extract_chars", 600, 0, 8000))
        budget = number_param(params, "timeout", 3.5, 0.1, 4)
        deadline = time.monotonic() + budget
        pattern = params.get("price_regex") if isinstance(params.get("price_regex"), str) else DEFAULT_PRICE_RE
        result = {"url": url, "requested_by": msg.get("sender"), "request_seq": msg.get("seq")}
        try:
            import requests

            # requests' timeouts bound each connect and each read, not the
            # total, so the loop also watches the deadline between chunks. A
            # server that trickles a few bytes at a time can still hold one
            # read open until the hook's 5 s kill (a bot:error, nothing worse).
            response = requests.get(url, timeout=(budget / 2, budget), stream=True, allow_redirects=True,
                                    headers={"User-Agent": "mcp-multiplayer FetchBot/1.0", "Accept-Encoding": "identity"})
            data = b""
            truncated = False
            for chunk in response.iter_content(chunk_size=4096):
                data += chunk
                if len(data) > max_bytes:
                    data = data[:max_bytes]
                    truncated = "size"
                    break
                if time.monotonic() > deadline:
                    truncated = "time"
                    break
            response.close()
        except Exception as exc:
            result["error"] = repr(exc)[:400]
            self.ctx.post("fetch_error", result)
            return
        content_type = response.headers.get("Content-Type", "")
        full_text, extract = text_extract(data, content_type.lower(), response.encoding, extract_chars)
        result.update({
            "final_url": response.url,
            "status": response.status_code,
            "reason": response.reason,
            "content_type": content_type,
            "bytes": len(data),
            "truncated": truncated,
            "sha256": hashlib.sha256(data).hexdigest(),
            "extract": extract,
        })
        try:
            match = re.search(pattern, full_text)
        except re.error as exc:
            match = None
            result["price_error"] = f"bad price_regex: {exc}"
        result["price"] = match.group(0) if match else None
        self.ctx.post("fetch", result)
