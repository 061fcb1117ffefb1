"""End to end: the official Python MCP SDK (`mcp` 2.3.0) signs in by
OAuth with no manual token handling — discovery, dynamic client registration,
PKCE, the token exchange, tool calls and refresh — against a real daemon.

The SDK's `redirect_handler` plays the user's browser: in `auto` approval the
authorization endpoint answers 302 at once, so the handler GETs the URL
without following redirects and reads `code`, `state` and `iss` from
`Location`, as an application's callback must: the SDK compares `iss` with
the metadata's issuer (RFC 9207) and refuses a response without it, since
the server advertises `authorization_response_iss_parameter_supported`.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from conftest import MODES, Daemon, call
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

pytestmark = pytest.mark.anyio

LOOPBACK_CALLBACK = "http://127.0.0.1:33418/callback"
CLAUDE_CALLBACK = "https://claude.ai/api/mcp/auth_callback"
# claude.ai's registration request, byte for byte (shared/CLIENTS.md).
CLAUDE_DCR = (
    b'{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],'
    b'"grant_types":["authorization_code","refresh_token"],"response_types":["code"],'
    b'"token_endpoint_auth_method":"client_secret_post"}'
)


class Memory(TokenStorage):
    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.saved_tokens: list[OAuthToken] = []

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens
        self.saved_tokens.append(tokens)

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class HeadlessBrowser:
    """The user's browser in `auto` mode: one GET, no redirect followed."""

    def __init__(self, callback: str, pass_iss: bool = True):
        self.callback = callback
        self.pass_iss = pass_iss
        self.result: AuthorizationCodeResult | None = None
        self.visits: list[str] = []
        self.issuers: list[str] = []

    async def redirect_handler(self, url: str) -> None:
        self.visits.append(url)
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            r = await http.get(url)
        assert r.status_code == 302, f"{r.status_code}: {r.text}"
        loc = r.headers["location"]
        assert loc.startswith(self.callback + "?"), loc
        q = parse_qs(urlsplit(loc).query)
        assert "error" not in q, q
        self.issuers += q.get("iss", [])
        iss = q["iss"][0] if self.pass_iss and "iss" in q else None
        self.result = AuthorizationCodeResult(code=q["code"][0], state=q["state"][0], iss=iss)

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.result is not None, "the authorization endpoint was never visited"
        return self.result


def provider(daemon: Daemon, storage: Memory, browser: HeadlessBrowser, **metadata) -> OAuthClientProvider:
    meta = {"client_name": "python-sdk-e2e", "redirect_uris": [browser.callback],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}
    meta.update(metadata)
    return OAuthClientProvider(
        server_url=daemon.url,
        client_metadata=OAuthClientMetadata(**meta),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )


def session(daemon: Daemon, auth: OAuthClientProvider, mode: str):
    http = create_mcp_http_client(auth=auth)
    return http, Client(streamable_http_client(daemon.url, http_client=http), mode=mode)


def config_daemon(state_dir: Path, auth_toml: str) -> Daemon:
    cfg = state_dir / "config.toml"
    cfg.write_text(f"[auth]\n{auth_toml}\n")
    return Daemon(state_dir, ["--config", str(cfg)]).start()


@pytest.mark.parametrize("method", ["none", "client_secret_post", "client_secret_basic"])
@pytest.mark.parametrize("mode", MODES)
async def test_sdk_signs_in_calls_tools_and_reconnects_with_its_seats(daemon, mode, method):
    storage, browser = Memory(), HeadlessBrowser(LOOPBACK_CALLBACK)
    auth = provider(daemon, storage, browser, token_endpoint_auth_method=method)
    http, client = session(daemon, auth, mode)
    async with http, client:
        created = await call(client, "create_channel",
                             {"name": "oauth-e2e", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"})
        cid = created["channel_id"]
        await call(client, "post_message", {"channel_id": cid, "body": "signed in by OAuth"})

    # It registered (DCR) as asked, and went through /authorize once.
    info = storage.client_info
    assert info is not None and info.client_id.startswith("mcpmp_client_")
    assert info.token_endpoint_auth_method == method
    assert (info.client_secret is None) == (method == "none")
    assert len(browser.visits) == 1
    q = parse_qs(urlsplit(browser.visits[0]).query)
    assert q["code_challenge_method"] == ["S256"]
    # RFC 9207: the issuer came back exactly as the metadata names it (no
    # trailing slash), and the SDK accepted it.
    assert browser.issuers == [daemon.base]
    assert storage.tokens is not None and storage.tokens.refresh_token

    # A new connection with the stored credentials: no new sign-in, same
    # principal, so the seat is still there.
    http, client = session(daemon, provider(daemon, storage, browser, token_endpoint_auth_method=method), mode)
    async with http, client:
        mine = await call(client, "list_channels")
        assert cid in mine["_text"] or cid in repr(mine)
        msgs = await call(client, "sync_messages", {"channel_id": cid, "cursor": 0, "wait_ms": 0})
        assert "signed in by OAuth" in repr(msgs)
    assert len(browser.visits) == 1

    # The daemon logs at debug level here; still no secret in it.
    log = daemon.log_text()
    assert "tokens issued" in log
    secrets = [t.access_token for t in storage.saved_tokens] + [storage.tokens.refresh_token]
    secrets += [info.client_secret] if info.client_secret else []
    for secret in secrets:
        assert secret not in log


async def test_revoking_the_sdks_grant_ends_its_page_session(daemon):
    """Attack (red-team F1): the member page session a signed-in client
    opened (it reads the seat's private messages for twelve hours) outlives
    the revocation of the grant. Stopped by `oauth::grants::revoke_family`
    revoking the page links minted under the grant."""
    storage, browser = Memory(), HeadlessBrowser(LOOPBACK_CALLBACK)
    auth = provider(daemon, storage, browser, token_endpoint_auth_method="none")
    http, client = session(daemon, auth, "legacy")
    async with http, client:
        created = await call(client, "create_channel",
                             {"name": "revoked", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"})
        cid = created["channel_id"]
        shared = await call(client, "share_channel", {"channel_id": cid, "audience": "me"})
    async with httpx2.AsyncClient(follow_redirects=False) as web:
        opened = await web.get(shared["url"])
        assert opened.status_code == 303, opened.text
        cookie = opened.headers["set-cookie"].split(";")[0]
        page = f"{daemon.base}/c/{cid}"
        assert (await web.get(page, headers={"cookie": cookie})).status_code == 200
        revoked = await web.post(f"{daemon.base}/revoke", data={
            "token": storage.tokens.refresh_token, "token_type_hint": "refresh_token",
            "client_id": storage.client_info.client_id})
        assert revoked.status_code == 200
        after = await web.get(page, headers={"cookie": cookie})
        assert after.status_code == 403, "the member session outlived its grant"


async def test_sdk_refreshes_an_expired_token_and_keeps_its_seat(state_dir):
    # Access tokens that live one second: the expiry is the thing under test,
    # so the test waits for it (briefly) rather than faking a clock.
    daemon = config_daemon(state_dir, "access_token_ttl_secs = 1")
    try:
        storage, browser = Memory(), HeadlessBrowser(LOOPBACK_CALLBACK)
        auth = provider(daemon, storage, browser, token_endpoint_auth_method="none")
        http, client = session(daemon, auth, "legacy")
        async with http, client:
            created = await call(client, "create_channel",
                                 {"name": "refresh", "slots": ["invite:alice", "invite:bob"], "join_as": "alice"})
            first = storage.tokens
            assert first is not None and first.expires_in == 1
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                await anyio.sleep(0.1)
            mine = await call(client, "list_channels")
            assert created["channel_id"] in repr(mine)
        refreshed = storage.tokens
        assert refreshed is not None
        assert refreshed.access_token != first.access_token
        assert refreshed.refresh_token and refreshed.refresh_token != first.refresh_token, "rotated"
        assert len(browser.visits) == 1, "refreshed, not signed in again"
    finally:
        daemon.stop()


async def test_claude_ai_registration_and_callback(daemon):
    # The exact DCR body claude.ai sends.
    r = httpx2.post(daemon.base + "/register", content=CLAUDE_DCR,
                    headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["client_secret"].startswith("mcpmp_cs_")
    assert reg["client_secret_expires_at"] == 0
    assert isinstance(reg["client_id_issued_at"], int)
    for k in ("client_name", "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method"):
        assert k in reg, k
    assert reg["token_endpoint_auth_method"] == "client_secret_post"

    # The SDK as a confidential client with Claude's callback: the 302 goes to
    # https://claude.ai/api/mcp/auth_callback with code and state.
    storage, browser = Memory(), HeadlessBrowser(CLAUDE_CALLBACK)
    auth = provider(daemon, storage, browser, client_name="Claude",
                    token_endpoint_auth_method="client_secret_post")
    http, client = session(daemon, auth, "legacy")
    async with http, client:
        tools = await client.list_tools()
        assert {"create_channel", "join_channel", "sync_messages"} <= {t.name for t in tools.tools}
        await call(client, "list_channels")
    assert storage.client_info.redirect_uris[0].unicode_string() == CLAUDE_CALLBACK


async def test_sdk_refuses_a_response_without_iss_when_the_server_advertises_it(daemon):
    """What an application whose callback drops `iss` meets: the SDK 2.3.0
    refuses the sign-in (RFC 9207 §2.4), which is why callbacks must hand it
    on. The server is right to send it; this pins the SDK's behaviour. (The
    SDK's error may arrive wrapped in an exception group.)"""
    storage, browser = Memory(), HeadlessBrowser(LOOPBACK_CALLBACK, pass_iss=False)
    auth = provider(daemon, storage, browser, token_endpoint_auth_method="none")
    http, client = session(daemon, auth, "legacy")
    with pytest.raises(BaseException) as err:
        async with http, client:
            await client.list_tools()
    assert "iss parameter" in repr(err.value), repr(err.value)
    assert browser.issuers == [daemon.base], "the server did send it"
    assert storage.tokens is None
