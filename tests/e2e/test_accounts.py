"""Subscription accounts end to end: every login flow against a real OAuth server, and every
account kind's requests reaching its API through the gateway, from the official SDKs.

The OAuth server is npm's ``oidc-provider`` (``node/scripts/oidc_server.mjs``, started by
:mod:`oidc_provider`: PKCE S256,
rotating refresh tokens, the device grant; it signs in user ``ada`` and consents, or declines for
client ``flexiproxy-deny``). The six subscription APIs are :mod:`subscription_upstream`, which
checks each kind's paths and headers and accepts only access tokens the OAuth server honours
(it asks the server's userinfo endpoint). The gateway is pointed at both through
``PUT /api/accounts/endpoints``; an ``httpx.Client`` that keeps cookies and follows redirects is
the user's browser, ending on the gateway's callback listener.

Covered: PKCE login for claude, codex, gemini_cli and iflow and device login for qwen and copilot,
then plain and streamed requests through each account from an SDK of another protocol, with the
upstream's record and a usage row; a 401 from the API answered by a token refresh (the token
endpoint sees it, the retry carries the new token) or, for Copilot, a new mint; a refused
refresh marking the account ``needs_login``; a declined sign-in and a pasted callback of another
login; logging out.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anthropic
import httpx
import openai
import pytest
import subscription_upstream as su
from conftest import GatewayFactory, GatewayProcess
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes
from oidc_provider import oidc_server

LOGIN_TIMEOUT_S = 30.0
PKCE_KINDS = ("claude", "codex", "gemini_cli", "iflow")
DEVICE_KINDS = ("qwen", "copilot")
# The model each kind's adapter asks for (one of the kind's default models).
MODEL = {
    "claude": "claude-sonnet-4-5",
    "codex": "gpt-5-codex",
    "gemini_cli": "gemini-2.5-flash",
    "qwen": "qwen3-coder-plus",
    "copilot": "gpt-4.1",
    "iflow": "kimi-k2",
}
# The SDK each kind is driven with: another protocol than the kind's own.
CLIENT = {
    "claude": "openai_chat",
    "codex": "anthropic",
    "gemini_cli": "openai_chat",
    "qwen": "anthropic",
    "copilot": "openai_responses",
    "iflow": "gemini",
}
# The path each kind's model requests must reach on the upstream.
API_PATH = {
    "claude": "/claude/v1/messages",
    "codex": "/codex/responses",
    "gemini_cli": "/code-assist/v1internal:generateContent",
    "qwen": "/qwen/v1/chat/completions",
    "copilot": "/copilot-api/chat/completions",
    "iflow": "/iflow/v1/chat/completions",
}
CLIENT_MODEL = "whatever-the-client-names"


# -- the OAuth server -------------------------------------------------------------------------


class OidcServer:
    """The test OpenID provider (started by :func:`oidc_provider.oidc_server`) and its test hooks."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.http = httpx.Client(base_url=issuer, timeout=15, trust_env=False)

    def grants(self) -> list[dict[str, Any]]:
        """What the token endpoint did, in order: ``{grant_type, client_id, error?}``."""
        r = self.http.get("/test/grants")
        assert r.status_code == 200, r.text
        return r.json()

    def refreshes(self) -> list[dict[str, Any]]:
        return [g for g in self.grants() if g["grant_type"] == "refresh_token"]

    def decide_device(self, user_code: str, outcome: str = "approve") -> None:
        r = self.http.post("/test/device", params={"user_code": user_code, "outcome": outcome})
        assert r.status_code == 200, f"device {outcome}: {r.status_code} {r.text}"

    def revoke_all(self) -> int:
        r = self.http.post("/test/revoke")
        assert r.status_code == 200, r.text
        return r.json()["revoked"]

    def login_endpoints(self, flow: str, client_id: str = "flexiproxy", redirect_port: int = 0) -> dict[str, Any]:
        """An ``oauth::Endpoints`` pointing at this server."""
        return {
            "authorize_url": f"{self.issuer}/auth",
            "token_url": f"{self.issuer}/token",
            "device_url": f"{self.issuer}/device/auth",
            "client_id": client_id,
            "client_secret": None,
            "scopes": ["openid", "email", "offline_access"],
            "redirect_host": "127.0.0.1",
            "redirect_port": redirect_port,
            "redirect_path": "/callback",
            "flow": flow,
            # oidc-provider grants offline_access (a refresh token) only with explicit consent.
            "extra_authorize_params": [["prompt", "consent"]],
            "token_body": "form",
            "device_pkce": False,
        }

@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcServer]:
    with oidc_server() as issuer:
        server = OidcServer(issuer)
        try:
            yield server
        finally:
            server.http.close()


@pytest.fixture
def upstream(oidc: OidcServer) -> Iterator[su.SubscriptionUpstream]:
    with su.SubscriptionUpstream(issuer=oidc.issuer) as server:
        yield server


# -- the gateway and logins -------------------------------------------------------------------


class Accounts:
    """A gateway pointed at the OAuth server and the upstream, with login and request helpers."""

    def __init__(self, gw: GatewayProcess, oidc: OidcServer, upstream: su.SubscriptionUpstream):
        self.gw, self.oidc, self.upstream = gw, oidc, upstream
        self._adapters: dict[str, str] = {}

    @property
    def api(self) -> Any:
        return self.gw.api

    def point_endpoints(self, **overrides: dict[str, Any]) -> dict[str, Any]:
        login = {kind: self.oidc.login_endpoints("pkce") for kind in PKCE_KINDS}
        login.update({kind: self.oidc.login_endpoints("device") for kind in DEVICE_KINDS})
        login.update(overrides)
        r = self.api.put("/api/accounts/endpoints", json={"login": login, "api": self.upstream.api_roots()})
        assert r.status_code == 200, f"PUT /api/accounts/endpoints: {r.status_code} {r.text}"
        settings = r.json()
        assert settings["api"] == self.upstream.api_roots(), settings
        for kind, endpoints in login.items():
            assert settings["login"][kind] == endpoints, (kind, settings["login"][kind])
        return settings

    def start_login(self, kind: str, **extra: Any) -> dict[str, Any]:
        r = self.api.post("/api/logins", json={"kind": kind, **extra})
        assert r.status_code == 201, f"POST /api/logins {kind}: {r.status_code} {r.text}"
        login = r.json()
        assert login["kind"] == kind and login["status"] == "waiting", login
        return login

    def wait_login(self, login_id: str, timeout: float = LOGIN_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.api.get(f"/api/logins/{login_id}")
            assert r.status_code == 200, f"GET /api/logins/{login_id}: {r.status_code} {r.text}"
            login = r.json()
            if login["status"] in ("done", "failed", "cancelled"):
                return login
            if time.monotonic() > deadline:
                raise AssertionError(f"login {login_id} still {login['status']} after {timeout}s: {login}")
            time.sleep(0.1)

    def pkce_login(self, kind: str) -> dict[str, Any]:
        login = self.start_login(kind)
        assert login["flow"] == "pkce" and login["authorize_url"].startswith(f"{self.oidc.issuer}/auth?"), login
        assert login["redirect_uri"].startswith("http://127.0.0.1:"), login
        with browser() as b:
            page = b.get(login["authorize_url"])
        assert str(page.url).startswith(login["redirect_uri"]), f"the browser ended on {page.url}, not the callback"
        assert page.status_code == 200, f"callback page: {page.status_code} {page.text[:500]}"
        return self.finished(self.wait_login(login["id"]), kind)

    def device_login(self, kind: str) -> dict[str, Any]:
        login = self.start_login(kind)
        assert login["flow"] == "device", login
        assert login.get("user_code") and login.get("verification_uri", "").startswith(self.oidc.issuer), login
        self.oidc.decide_device(login["user_code"], "approve")
        return self.finished(self.wait_login(login["id"]), kind)

    def login(self, kind: str) -> dict[str, Any]:
        return self.device_login(kind) if kind in DEVICE_KINDS else self.pkce_login(kind)

    @staticmethod
    def finished(login: dict[str, Any], kind: str) -> dict[str, Any]:
        assert login["status"] == "done", f"{kind} login did not finish: {login}"
        account = login["account"]
        assert account["kind"] == kind and account["needs_login"] is False and account["last_error"] is None, account
        return account

    def account(self, account_id: str) -> dict[str, Any] | None:
        r = self.api.get("/api/accounts")
        assert r.status_code == 200, r.text
        return next((a for a in r.json()["accounts"] if a["id"] == account_id), None)

    def key(self, account: dict[str, Any]) -> str:
        """An adapter key for the account's provider and its kind's model."""
        provider = account["provider_id"]
        if provider not in self._adapters:
            self._adapters[provider] = self.api.create_adapter(provider, MODEL[account["kind"]])["api_key"]
        return self._adapters[provider]

    def ask(self, account: dict[str, Any], prompt: str, stream: bool) -> str:
        """Asks through the account with its kind's client SDK; the answer's text."""
        return ask(CLIENT[account["kind"]], self.gw, self.key(account), prompt, stream)

    def usage_rows(self, account: dict[str, Any], count: int) -> list[dict[str, Any]]:
        credential = f"{account['provider_id']}/{account['id']}"
        return self.api.wait_usage(
            lambda row: row.get("provider_id") == account["provider_id"] and row.get("credential") == credential,
            count=count,
        )


def browser() -> httpx.Client:
    """The user's browser: keeps the provider's cookies, follows its redirects, no proxies."""
    return httpx.Client(follow_redirects=True, timeout=15, trust_env=False)


def ask(client: str, gw: GatewayProcess, key: str, prompt: str, stream: bool) -> str:
    if client == "openai_chat":
        sdk = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=30)
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            return sdk.chat.completions.create(model=CLIENT_MODEL, messages=messages).choices[0].message.content or ""
        pieces = [
            c.choices[0].delta.content or ""
            for c in sdk.chat.completions.create(model=CLIENT_MODEL, messages=messages, stream=True)
            if c.choices
        ]
        assert len([p for p in pieces if p]) >= 2, f"the stream came in one piece: {pieces}"
        return "".join(pieces)
    if client == "openai_responses":
        sdk = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=30)
        if not stream:
            return sdk.responses.create(model=CLIENT_MODEL, input=prompt).output_text
        deltas = [e.delta for e in sdk.responses.create(model=CLIENT_MODEL, input=prompt, stream=True) if e.type == "response.output_text.delta"]
        assert len(deltas) >= 2, f"the stream came in one piece: {deltas}"
        return "".join(deltas)
    if client == "anthropic":
        sdk = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            message = sdk.messages.create(model=CLIENT_MODEL, max_tokens=64, messages=messages)
            return "".join(b.text for b in message.content if b.type == "text")
        with sdk.messages.stream(model=CLIENT_MODEL, max_tokens=64, messages=messages) as s:
            deltas = list(s.text_stream)
        assert len([d for d in deltas if d]) >= 2, f"the stream came in one piece: {deltas}"
        return "".join(deltas)
    if client == "gemini":
        sdk = genai.Client(api_key=key, http_options=gtypes.HttpOptions(base_url=gw.url, timeout=30_000))
        if not stream:
            return sdk.models.generate_content(model=CLIENT_MODEL, contents=prompt).text or ""
        chunks = [c.text or "" for c in sdk.models.generate_content_stream(model=CLIENT_MODEL, contents=prompt)]
        assert len([c for c in chunks if c]) >= 2, f"the stream came in one piece: {chunks}"
        return "".join(chunks)
    raise AssertionError(f"no client {client}")


def sdk_error(client: str, gw: GatewayProcess, key: str) -> tuple[int, str, Any]:
    """Asks with `client`'s SDK expecting an error; (status, the message the SDK shows, the JSON
    body the gateway answered)."""
    try:
        ask(client, gw, key, "hello?", False)
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        return e.status_code, e.message, e.response.json()
    except genai_errors.APIError as e:
        return e.code, str(e.message), e.details
    raise AssertionError(f"{client}: the request succeeded but an error was expected")


@pytest.fixture
def accounts(
    tests_need_keychain: None, start_gateway: GatewayFactory, oidc: OidcServer, upstream: su.SubscriptionUpstream
) -> Accounts:
    setup = Accounts(start_gateway(), oidc, upstream)
    setup.point_endpoints()
    return setup


def model_requests(upstream: su.SubscriptionUpstream, kind: str) -> list[dict[str, Any]]:
    return [r for r in upstream.recorded(kind) if r["path"].startswith(API_PATH[kind].rsplit(":", 1)[0])]


# -- the listing ------------------------------------------------------------------------------


def test_kinds_and_endpoints_are_listed(accounts: Accounts) -> None:
    r = accounts.api.get("/api/accounts")
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing["accounts"] == [], listing
    flows = {k["kind"]: k["flow"] for k in listing["kinds"]}
    assert flows == {**{k: "pkce" for k in PKCE_KINDS}, **{k: "device" for k in DEVICE_KINDS}}, listing["kinds"]
    assert all(k["label"] for k in listing["kinds"]), listing["kinds"]
    settings = accounts.api.get("/api/accounts/endpoints").json()
    assert settings["api"] == accounts.upstream.api_roots() and set(settings["login"]) == set(flows), settings
    # Naming only some kinds keeps the others.
    r = accounts.api.put(
        "/api/accounts/endpoints",
        json={"login": {"qwen": accounts.oidc.login_endpoints("device", client_id="other")}, "api": accounts.upstream.api_roots()},
    )
    assert r.status_code == 200, r.text
    assert r.json()["login"]["qwen"]["client_id"] == "other" and r.json()["login"]["claude"] == settings["login"]["claude"], r.json()
    r = accounts.api.post("/api/logins", json={"kind": "nonsense"})
    assert 400 <= r.status_code < 500 and r.json()["error"]["message"], r.text


def test_cancelled_login_stops_listening(accounts: Accounts) -> None:
    login = accounts.start_login("claude")
    assert accounts.api.delete(f"/api/logins/{login['id']}").status_code == 204
    assert accounts.api.get(f"/api/logins/{login['id']}").json()["status"] == "cancelled"
    port = urlsplit(login["redirect_uri"]).port
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            break  # nothing listens any more
        assert time.monotonic() < deadline, f"the callback listener on {port} is still open after cancel"
        time.sleep(0.1)


# -- (a), (b): every kind logs in and serves requests ------------------------------------------


def check_upstream_record(kind: str, account: dict[str, Any], requests: list[dict[str, Any]]) -> None:
    """What every model request of the kind must have carried."""
    assert requests, f"no {kind} request reached the upstream"
    for r in requests:
        assert r["status"] == 200, f"{kind}: the upstream refused {r['path']}: {r}"
        assert r["sub"] == "ada", r
        headers = r["headers"]
        assert "x-api-key" not in headers and "x-goog-api-key" not in headers, headers
        if kind == "claude":
            assert r["path"] == "/claude/v1/messages", r
            assert su.OAUTH_BETA in headers["anthropic-beta"].split(","), headers
            assert headers["authorization"].startswith("Bearer sha256:"), headers
        elif kind == "codex":
            assert r["path"] == "/codex/responses", r
            assert headers["chatgpt-account-id"] == account["account_id"] == "ada", (headers, account)
            assert r["body"]["stream"] is True and r["body"]["store"] is False, r["body"]
        elif kind == "gemini_cli":
            assert r["path"] in ("/code-assist/v1internal:generateContent", "/code-assist/v1internal:streamGenerateContent"), r
            if r["path"].endswith("streamGenerateContent"):
                assert r["query"] == {"alt": "sse"}, r
            assert r["body"]["project"] == account["project"] == "mock-project-ada", (r["body"], account)
            assert r["body"]["model"] == MODEL["gemini_cli"], r["body"]
            assert "contents" in r["body"]["request"], r["body"]
        elif kind == "copilot":
            assert r["path"] == "/copilot-api/chat/completions", r
            for name in su.COPILOT_EDITOR_HEADERS:
                assert headers.get(name), (name, headers)
        elif kind == "iflow":
            assert r["path"] == "/iflow/v1/chat/completions", r
            assert headers["user-agent"] == su.IFLOW_USER_AGENT, headers
        elif kind == "qwen":
            assert r["path"] == "/qwen/v1/chat/completions", r
        if kind != "gemini_cli":
            assert r["body"]["model"] == MODEL[kind], r["body"]


def login_and_serve(accounts: Accounts, kind: str) -> dict[str, Any]:
    account = accounts.login(kind)
    assert account["provider_id"] == f"{kind.replace('_', '-')}-account", account
    assert account["email"] in ("ada@example.com", None) or kind == "iflow", account
    listed = accounts.account(account["id"])
    assert listed is not None and listed["needs_login"] is False, listed
    mark = len(accounts.upstream.requests)
    for stream in (False, True):
        prompt = f"hello {kind} {'streamed' if stream else 'whole'}"
        answer = accounts.ask(account, prompt, stream)
        assert answer == f"{kind} says: {prompt}", f"{kind} via {CLIENT[kind]} (stream={stream}): {answer!r}"
    served = [r for r in accounts.upstream.requests[mark:] if r["kind"] == kind]
    check_upstream_record(kind, account, served)
    assert len(served) == 2, [(r["path"], r["status"]) for r in served]
    rows = accounts.usage_rows(account, count=2)
    assert sorted(row["stream"] for row in rows[:2]) == [False, True], rows
    for row in rows[:2]:
        assert row["status"] == 200, row
        assert (row["input_tokens"], row["output_tokens"]) == (su.INPUT_TOKENS, su.OUTPUT_TOKENS), row
    return account


@pytest.mark.parametrize("kind", PKCE_KINDS)
def test_pkce_login_then_requests(accounts: Accounts, kind: str) -> None:
    before = len(accounts.oidc.grants())
    account = login_and_serve(accounts, kind)
    codes = [g for g in accounts.oidc.grants()[before:] if g["grant_type"] == "authorization_code"]
    assert codes and "error" not in codes[-1], codes
    if kind == "gemini_cli":
        setup = [r["path"] for r in accounts.upstream.recorded("gemini_cli") if "Content" not in r["path"]]
        assert setup[:2] == ["/code-assist/v1internal:loadCodeAssist", "/code-assist/v1internal:onboardUser"], setup
        assert account["project"] == "mock-project-ada", account
    if kind == "codex":
        # The backend's usage windows, reported with each answer, show on the account.
        listed = {a["id"]: a for a in accounts.api.get("/api/accounts").json()["accounts"]}
        quota = listed[account["id"]]["quota"]
        assert [(w["name"], w["used_percent"], w["window_minutes"]) for w in quota] == [
            ("primary", 42.0, 300), ("secondary", 7.0, 10080)], quota
        assert quota[0]["resets_at_ms"] == 1_900_000_000_000, quota
    if kind == "claude":
        profile = accounts.upstream.recorded("claude_profile")
        assert profile and profile[0]["status"] == 200, profile
        assert account["plan"] == "Max", account
    if kind == "iflow":
        info = accounts.upstream.recorded("iflow_user_info")
        assert info and info[0]["status"] == 200 and info[0]["sub"] == "ada", info
        assert account["label"] == "ada@iflow.example" or account["email"] == "ada@example.com", account


@pytest.mark.parametrize("kind", DEVICE_KINDS)
def test_device_login_then_requests(accounts: Accounts, kind: str) -> None:
    before = len(accounts.oidc.grants())
    account = login_and_serve(accounts, kind)
    devices = [g for g in accounts.oidc.grants()[before:] if g["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"]
    assert any("error" not in g for g in devices), devices
    if kind == "copilot":
        mints = accounts.upstream.recorded("copilot_mint")
        assert mints and all(m["status"] == 200 for m in mints), mints
        assert mints[0]["headers"]["authorization"].startswith("token sha256:"), mints[0]
        mark = len(mints)
        for n in range(3):
            assert accounts.ask(account, f"again {n}", False) == f"copilot says: again {n}"
        after = accounts.upstream.recorded("copilot_mint")
        # One mint serves many requests (the login's own set-up mint may or may not be reused).
        assert len(after) <= 2, f"{len(after)} mints for one login and 5 requests: {[m['at'] for m in after]}"
        assert len(after) - mark <= 1, "a mint per request"


# -- (c): a 401 from the API is answered by a refresh (or a new Copilot mint) ------------------


@pytest.mark.parametrize("kind", ("claude", "gemini_cli", "qwen"))
def test_401_refreshes_tokens_and_retries(accounts: Accounts, kind: str) -> None:
    account = accounts.login(kind)
    assert accounts.ask(account, "first", False) == f"{kind} says: first"
    refreshes = len(accounts.oidc.refreshes())
    mark = len(accounts.upstream.requests)
    accounts.upstream.fail_next(401, 1, kind)
    answer = accounts.ask(account, "after a 401", False)
    assert answer == f"{kind} says: after a 401"
    new = accounts.oidc.refreshes()[refreshes:]
    assert len(new) == 1 and "error" not in new[0] and new[0]["client_id"] == "flexiproxy", new
    tried = [r for r in accounts.upstream.requests[mark:] if r["kind"] == kind]
    assert [r["status"] for r in tried] == [401, 200], [(r["path"], r["status"]) for r in tried]
    assert tried[0]["token"] != tried[1]["token"], "the retry carried the token the API had refused"
    listed = accounts.account(account["id"])
    assert listed and listed["needs_login"] is False and listed["refreshed_at"] >= account["refreshed_at"], listed


def test_copilot_401_mints_again(accounts: Accounts) -> None:
    account = accounts.login("copilot")
    assert accounts.ask(account, "first", False) == "copilot says: first"
    mints = len(accounts.upstream.recorded("copilot_mint"))
    refreshes = len(accounts.oidc.refreshes())
    mark = len(accounts.upstream.requests)
    accounts.upstream.fail_next(401, 1, "copilot")
    assert accounts.ask(account, "after a 401", True) == "copilot says: after a 401"
    assert len(accounts.upstream.recorded("copilot_mint")) == mints + 1, "no new mint after Copilot's 401"
    assert len(accounts.oidc.refreshes()) == refreshes, "a GitHub login is not refreshed, only the mint repeated"
    tried = [r for r in accounts.upstream.requests[mark:] if r["kind"] == "copilot"]
    assert [r["status"] for r in tried] == [401, 200], tried
    assert tried[0]["token"] != tried[1]["token"], "the retry carried the Copilot token that was refused"


# -- (d): a refused refresh means a new login ---------------------------------------------------


@pytest.mark.parametrize("kind", ("claude", "codex"))
def test_refused_refresh_needs_login(accounts: Accounts, kind: str) -> None:
    account = accounts.login(kind)
    key = accounts.key(account)
    assert accounts.ask(account, "first", False) == f"{kind} says: first"
    assert accounts.oidc.revoke_all() >= 1
    # The API now refuses the token (the issuer no longer honours it); the gateway's refresh is
    # refused too (the grant is gone): the client gets an error saying to log in again.
    status, message, _ = sdk_error("openai_chat", accounts.gw, key)
    assert status >= 400 and "log in" in message.lower(), (status, message)
    refused = accounts.oidc.refreshes()
    assert refused and refused[-1].get("error") == "invalid_grant", refused
    listed = accounts.account(account["id"])
    assert listed and listed["needs_login"] is True and listed["last_error"], listed
    r = accounts.api.post(f"/api/accounts/{account['id']}/refresh")
    assert r.status_code == 409, f"refresh of a revoked login: {r.status_code} {r.text}"
    assert r.json()["error"]["message"], r.text
    # Later requests do not even reach the API, and each client hears it in its own shape.
    mark = len(accounts.upstream.requests)
    status, message, body = sdk_error("anthropic", accounts.gw, key)
    assert status >= 400 and "log in" in message.lower(), (status, message)
    assert body["type"] == "error" and body["error"]["message"], body
    status, message, body = sdk_error("openai_chat", accounts.gw, key)
    assert status >= 400 and "log in" in body["error"]["message"].lower(), (status, body)
    status, message, body = sdk_error("gemini", accounts.gw, key)
    assert status >= 400 and "log in" in body["error"]["message"].lower(), (status, body)
    assert [r for r in accounts.upstream.requests[mark:] if r["kind"] == kind] == []
    # Logging in again brings the same account back.
    again = accounts.start_login(kind, relogin=account["id"])
    with browser() as b:
        b.get(again["authorize_url"])
    relogged = accounts.finished(accounts.wait_login(again["id"]), kind)
    assert relogged["id"] == account["id"], relogged
    assert accounts.ask(account, "back", False) == f"{kind} says: back"


# -- (e): declined sign-in, pasted callback of another login ------------------------------------


def test_declined_sign_in_fails_with_the_reason(accounts: Accounts) -> None:
    accounts.point_endpoints(codex=accounts.oidc.login_endpoints("pkce", client_id="flexiproxy-deny"))
    login = accounts.start_login("codex")
    with browser() as b:
        b.get(login["authorize_url"])
    done = accounts.wait_login(login["id"])
    assert done["status"] == "failed" and "declined" in (done.get("error") or ""), done
    assert accounts.api.get("/api/accounts").json()["accounts"] == []


def test_denied_device_login_fails(accounts: Accounts) -> None:
    login = accounts.start_login("qwen")
    accounts.oidc.decide_device(login["user_code"], "deny")
    done = accounts.wait_login(login["id"])
    assert done["status"] == "failed" and "declined" in (done.get("error") or ""), done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def callback_url(authorize_url: str, redirect_uri: str) -> str:
    """Follows the provider's pages like a browser and returns the callback URL it would open
    (nothing listens there on a headless machine: the user copies it)."""
    with httpx.Client(timeout=15, trust_env=False) as b:
        url = authorize_url
        for _ in range(10):
            r = b.get(url)
            location = r.headers.get("location")
            assert r.is_redirect and location, f"{url}: {r.status_code} {r.text[:300]}"
            url = str(httpx.URL(url).join(location))
            if url.startswith(redirect_uri):
                return url
    raise AssertionError("the provider never redirected to the callback")


def test_pasted_callback_and_state_mismatch(accounts: Accounts) -> None:
    port = free_port()  # what the user's browser ends on; nothing listens (headless)
    pasted = accounts.oidc.login_endpoints("pkce", redirect_port=port)
    accounts.point_endpoints(claude=pasted, codex=pasted)
    # Two logins of different kinds (a new login of a kind replaces a waiting one of that kind).
    first = accounts.start_login("codex", paste=True)
    second = accounts.start_login("claude", paste=True)
    assert first["redirect_uri"] == f"http://127.0.0.1:{port}/callback", first
    url = callback_url(first["authorize_url"], first["redirect_uri"])
    assert dict(parse_qsl(urlsplit(url).query)).get("code"), url
    # The first login's callback pasted into the second: its state is not the second's.
    r = accounts.api.post(f"/api/logins/{second['id']}/callback", json={"url": url})
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    assert r.json()["status"] == "failed" and "state mismatch" in (r.json().get("error") or ""), r.json()
    # A URL that is no callback at all.
    third = accounts.start_login("claude", paste=True)
    r = accounts.api.post(f"/api/logins/{third['id']}/callback", json={"url": "http://127.0.0.1/elsewhere"})
    assert r.status_code in (200, 400), f"{r.status_code} {r.text}"
    # Into its own login it works.
    r = accounts.api.post(f"/api/logins/{first['id']}/callback", json={"url": url})
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    login = r.json() if r.json()["status"] in ("done", "failed") else accounts.wait_login(first["id"])
    account = accounts.finished(login, "codex")
    assert accounts.ask(account, "pasted", False) == "codex says: pasted"


# -- (f): log out ----------------------------------------------------------------------------


def test_log_out_removes_account_and_provider(accounts: Accounts) -> None:
    account = accounts.login("iflow")
    key = accounts.key(account)
    assert accounts.ask(account, "before", False) == "iflow says: before"
    r = accounts.api.delete(f"/api/accounts/{account['id']}")
    assert r.status_code == 204, f"{r.status_code} {r.text}"
    assert accounts.account(account["id"]) is None
    providers = accounts.api.get("/api/providers").json()
    assert all(p["id"] != account["provider_id"] for p in providers), providers
    mark = len(accounts.upstream.requests)
    status, message, _ = sdk_error("openai_chat", accounts.gw, key)
    assert 400 <= status < 600 and message, (status, message)
    assert [r for r in accounts.upstream.requests[mark:] if r["kind"] == "iflow"] == []
    assert accounts.api.delete(f"/api/accounts/{account['id']}").status_code == 404


# -- the stand-in itself ------------------------------------------------------------------------


def test_upstream_checks_what_each_kind_sends() -> None:
    """The mock refuses what the real APIs refuse, so the tests above cannot pass by accident."""
    valid = {"tok-ada": "ada"}
    with su.SubscriptionUpstream(validate=valid.get) as up, httpx.Client(base_url=up.url, timeout=10, trust_env=False) as c:
        bearer = {"authorization": "Bearer tok-ada"}
        claude = {**bearer, "anthropic-version": "2023-06-01", "anthropic-beta": su.OAUTH_BETA}
        body = {"model": "m", "max_tokens": 8, "system": [{"type": "text", "text": su.CLAUDE_CODE_IDENTITY}],
                "messages": [{"role": "user", "content": "hi"}]}
        r = c.post("/claude/v1/messages", headers=claude, json=body)
        assert r.status_code == 200 and r.json()["content"][0]["text"] == "claude says: hi", r.text
        assert c.post("/claude/v1/messages", headers={**claude, "anthropic-beta": "x"}, json=body).status_code == 401
        assert c.post("/claude/v1/messages", headers={**claude, "authorization": "Bearer nope"}, json=body).status_code == 401
        assert c.post("/claude/v1/messages", headers=claude, json={**body, "system": "mine"}).status_code == 403
        assert c.get("/claude/api/oauth/profile", headers=claude).json()["account"]["has_claude_max"] is True
        r = c.post("/claude/v1/messages", headers=claude, json={**body, "stream": True})
        assert [e for e, _ in su.iter_sse(r.content)][-1] == "message_stop", r.text

        codex = {**bearer, "chatgpt-account-id": "ada", "openai-beta": su.CODEX_BETA, "originator": "t"}
        rbody = {"model": "m", "input": "yo", "instructions": "", "stream": True, "store": False}
        r = c.post("/codex/responses", headers=codex, json=rbody)
        events = list(su.iter_sse(r.content))
        assert events[-1][0] == "response.completed", events
        done = json.loads(events[-1][1])["response"]
        assert done["output"][0]["content"][0]["text"] == "codex says: yo" and done["usage"]["output_tokens"] == su.OUTPUT_TOKENS
        assert c.post("/codex/responses", headers=codex, json={**rbody, "stream": False}).status_code == 400
        assert c.post("/codex/responses", headers=codex, json={**rbody, "store": True}).status_code == 400
        assert c.post("/codex/responses", headers={**codex, "chatgpt-account-id": "bob"}, json=rbody).status_code == 401

        r = c.post("/code-assist/v1internal:loadCodeAssist", headers=bearer, json={"metadata": {}})
        assert r.json()["allowedTiers"][0]["isDefault"] is True, r.text
        r = c.post("/code-assist/v1internal:onboardUser", headers=bearer, json={"tierId": su.FREE_TIER, "metadata": {}})
        assert r.json()["done"] is True and r.json()["response"]["cloudaicompanionProject"]["id"] == "mock-project-ada"
        gbody = {"model": "g", "project": "mock-project-ada", "request": {"contents": [{"role": "user", "parts": [{"text": "q"}]}]}}
        r = c.post("/code-assist/v1internal:generateContent", headers=bearer, json=gbody)
        assert r.json()["response"]["candidates"][0]["content"]["parts"][0]["text"] == "gemini_cli says: q", r.text
        r = c.post("/code-assist/v1internal:streamGenerateContent?alt=sse", headers=bearer, json=gbody)
        chunks = [json.loads(d)["response"] for _, d in su.iter_sse(r.content)]
        assert "".join(p["text"] for ch in chunks for p in ch["candidates"][0]["content"]["parts"]) == "gemini_cli says: q"
        assert c.post("/code-assist/v1internal:generateContent", headers=bearer, json={**gbody, "project": "x"}).status_code == 403

        editor = {"editor-version": "v/1", "editor-plugin-version": "p/1", "user-agent": "GitHubCopilotChat/1"}
        r = c.get("/github/copilot_internal/v2/token", headers={**editor, "authorization": "token tok-ada"})
        minted = r.json()
        assert minted["endpoints"]["api"] == f"{up.url}/copilot-api" and minted["expires_at"] > time.time(), r.text
        assert c.get("/github/copilot_internal/v2/token", headers={**editor, **bearer}).status_code == 401
        chat = {"model": "m", "messages": [{"role": "user", "content": "c"}], "stream": True, "stream_options": {"include_usage": True}}
        cop = {**editor, "copilot-integration-id": "vscode-chat", "openai-intent": "conversation-panel",
               "authorization": f"Bearer {minted['token']}"}
        r = c.post("/copilot-api/chat/completions", headers=cop, json=chat)
        data = [d for _, d in su.iter_sse(r.content)]
        assert data[-1] == "[DONE]" and json.loads(data[-2])["usage"]["prompt_tokens"] == su.INPUT_TOKENS, data
        assert c.post("/copilot-api/chat/completions", headers={**cop, **bearer}, json=chat).status_code == 401

        info = c.get("/iflow/api/oauth/getUserInfo", params={"accessToken": "tok-ada"}).json()
        assert info["success"] is True and info["data"]["apiKey"].startswith("sk-iflow-"), info
        iflow = {"authorization": f"Bearer {info['data']['apiKey']}", "user-agent": su.IFLOW_USER_AGENT}
        r = c.post("/iflow/v1/chat/completions", headers=iflow, json={**chat, "stream": False})
        assert r.json()["choices"][0]["message"]["content"] == "iflow says: c", r.text
        assert c.post("/iflow/v1/chat/completions", headers={**iflow, "user-agent": "x"}, json=chat).status_code == 403
        assert c.post("/iflow/v1/chat/completions", headers={**iflow, **bearer}, json=chat).status_code == 401
        assert c.post("/qwen/v1/chat/completions", headers=bearer, json={**chat, "stream": False}).status_code == 200

        c.post("/test/fail", params={"status": 401, "count": 1, "kind": "qwen"})
        assert c.post("/qwen/v1/chat/completions", headers=bearer, json=chat).status_code == 401
        assert c.post("/qwen/v1/chat/completions", headers=bearer, json=chat).status_code == 200
        recorded = c.get("/test/requests").json()
        assert all("tok-ada" not in json.dumps(r) and minted["token"] not in json.dumps(r) for r in recorded)
        assert recorded[-2]["status"] == 401 and recorded[-2]["kind"] == "qwen"
