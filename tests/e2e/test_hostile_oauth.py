"""Subscription logins under faults and hostile local pages, against the real binary.

The OAuth server is the real one the account tests use (npm ``oidc-provider``, started by
:mod:`oidc_provider`: PKCE, rotating refresh tokens that revoke the whole grant when a used one
comes back, the device grant). Between it and the gateway sits :class:`FaultFront`, a loopback
front for the token and device endpoints that passes requests through or, on cue, misbehaves as
a broken or hostile provider would: drops the connection, answers 503, holds its answer back
after the provider has acted on the request, redirects elsewhere, answers without end, never
answers. The subscription APIs are :mod:`subscription_upstream`, as in ``test_accounts.py``.

Covered (issue 15, "OAuth refresh rotation", "OAuth callback", "Timeouts and bounds",
"Redirects"):
- a page's hit on the login's callback with another ``state`` (``error=access_denied``, a forged
  code) gets a 400 and the login waits on; the real redirect then completes it; a ``localhost``
  callback listens on both loopback families;
- a device login whose token endpoint drops a connection and answers 503 while polling still
  logs in;
- a token endpoint that redirects to another local port: nothing reaches that port, the error
  names it, the login survives;
- a token endpoint that answers 50 MB, or never: a clear account error within the time limit,
  while the gateway keeps serving requests;
- a client that hangs up while its request waits for a refresh: the refresh completes without
  it, the next request works, and the rotated refresh token is the one kept (after a restart the
  next refresh, which oidc-provider would refuse with the spent one, works).
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import subscription_upstream as su
from conftest import GatewayFactory
from test_accounts import CLIENT_MODEL, Accounts, OidcServer, ask, browser, oidc, upstream  # noqa: F401 (fixtures)

# The side path's time limit in these gateways (`--upstream-timeout`, which also bounds each
# login-server call, at most 30 s).
SIDE_TIMEOUT_S = 5
# How many bytes the flooding token endpoint offers.
FLOOD_BYTES = 50 * 1024 * 1024


# -- the fault front ----------------------------------------------------------------------------


class FaultFront:
    """A loopback front for the OAuth server. Requests pass through unchanged (the device
    authorization answer gets ``interval: 1``, so polling tests are quick) unless a fault is
    queued for their path; each queued fault serves one request, in order:

    - ``"reset"``: the connection is closed at once with a TCP reset, no answer;
    - ``"503"``: an HTML 503, the request not passed on;
    - ``("delay", s)``: passed on at once (the provider acts: a refresh token rotates), the
      answer held back `s` seconds;
    - ``("redirect", url)``: a 307 to `url`, not passed on;
    - ``"flood"``: a 200 JSON answer of ``FLOOD_BYTES`` with no length, not passed on;
    - ``"hang"``: no answer until the front stops.
    """

    def __init__(self, target: str):
        parts = urlsplit(target)
        self.target_host, self.target_port = parts.hostname or "127.0.0.1", parts.port or 80
        self._lock = threading.Lock()
        self._faults: dict[str, list[Any]] = {}
        self.seen: list[tuple[str, str]] = []  # (path, what was done)
        self.flood_sent = 0
        self._stop = threading.Event()
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                front._serve(self)

            def do_POST(self) -> None:  # noqa: N802
                front._serve(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a peer that went away mid-answer is what some tests do on purpose

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-front", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def fault(self, path: str, *faults: Any) -> None:
        with self._lock:
            self._faults.setdefault(path, []).extend(faults)

    def pending(self, path: str) -> int:
        with self._lock:
            return len(self._faults.get(path, []))

    def requests(self, path: str) -> list[str]:
        with self._lock:
            return [what for p, what in self.seen if p == path]

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            queue = self._faults.get(path, [])
            fault = queue.pop(0) if queue else None
            self.seen.append((path, "pass" if fault is None else str(fault[0] if isinstance(fault, tuple) else fault)))
        if fault == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        if fault == "503":
            self._answer(h, 503, {"content-type": "text/html"}, b"<html>down for maintenance</html>")
            return
        if fault == "hang":
            self._stop.wait(120)
            return
        if fault == "flood":
            h.send_response(200)
            h.send_header("content-type", "application/json")
            h.end_headers()
            chunk = b" " * 65536
            try:
                while self.flood_sent < FLOOD_BYTES:
                    h.wfile.write(chunk)
                    self.flood_sent += len(chunk)
            except OSError:
                pass
            h.close_connection = True
            return
        if isinstance(fault, tuple) and fault[0] == "redirect":
            self._answer(h, 307, {"location": fault[1]}, b"")
            return
        status, headers, answer = self._pass_on(h, body)
        if isinstance(fault, tuple) and fault[0] == "delay":
            time.sleep(fault[1])
        if path == "/device/auth" and status == 200:
            details = json.loads(answer)
            details["interval"] = 1
            answer = json.dumps(details).encode()
        try:
            self._answer(h, status, headers, answer)
        except OSError:
            pass  # the gateway hung up (what the refresh-rotation bug looked like)

    def _pass_on(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.target_host, self.target_port, timeout=30)
        try:
            skip = {"host", "connection", "content-length", "accept-encoding"}
            headers = {k: v for k, v in h.headers.items() if k.lower() not in skip}
            conn.request(h.command, h.path, body=body or None, headers=headers)
            r = conn.getresponse()
            answer = r.read()
            keep = {k.lower(): v for k, v in r.getheaders() if k.lower() in ("content-type", "cache-control", "pragma")}
            return r.status, keep, answer
        finally:
            conn.close()

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("content-length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True


class Catcher:
    """Another local port a redirect may point at: records whatever reaches it."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                catcher.hits.append({"method": self.command, "path": self.path, "body": body})
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = _record  # noqa: N815
            do_POST = _record  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="catcher", daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def front(oidc: OidcServer) -> Iterator[FaultFront]:
    with FaultFront(oidc.issuer) as f:
        yield f


def fronted(oidc: OidcServer, front: FaultFront, flow: str, **changes: Any) -> dict[str, Any]:
    """Login endpoints whose token and device endpoints go through the front (the browser still
    talks to the OAuth server itself)."""
    endpoints = oidc.login_endpoints(flow)
    endpoints["token_url"] = f"{front.url}/token"
    endpoints["device_url"] = f"{front.url}/device/auth"
    endpoints.update(changes)
    return endpoints


@pytest.fixture
def accounts(
    tests_need_keychain: None,
    start_gateway: GatewayFactory,
    oidc: OidcServer,
    upstream: su.SubscriptionUpstream,
    front: FaultFront,
) -> Accounts:
    gw = start_gateway(["--upstream-timeout", str(SIDE_TIMEOUT_S)])
    setup = Accounts(gw, oidc, upstream)
    setup.point_endpoints(claude=fronted(oidc, front, "pkce"), qwen=fronted(oidc, front, "device"))
    return setup


def listed(accounts: Accounts, account_id: str) -> dict[str, Any]:
    account = accounts.account(account_id)
    assert account is not None, f"account {account_id} is gone"
    return account


def refresh(accounts: Accounts, account_id: str, timeout: float = 60) -> tuple[int, dict[str, Any], float]:
    """``POST /api/accounts/{id}/refresh``: status, body, seconds taken."""
    started = time.monotonic()
    r = accounts.api.post(f"/api/accounts/{account_id}/refresh", timeout=timeout)
    return r.status_code, r.json(), time.monotonic() - started


# -- the callback ---------------------------------------------------------------------------------


def test_a_foreign_hit_on_the_callback_does_not_end_the_login(accounts: Accounts) -> None:
    login = accounts.start_login("claude")
    callback = login["redirect_uri"]
    # What any web page the user has open can make the browser load.
    for query in (
        "error=access_denied&state=not-this-login",
        "error=access_denied",
        "code=attacker-code&state=not-this-login",
        "code=attacker-code",
    ):
        r = httpx.get(f"{callback}?{query}", timeout=10, trust_env=False)
        assert r.status_code == 400, f"{query}: {r.status_code} {r.text}"
        assert "ignored" in r.text, r.text
        assert len(r.content) < 1024, "the refusal page is small"
    status = accounts.api.get(f"/api/logins/{login['id']}").json()
    assert status["status"] == "waiting", f"a foreign hit ended the login: {status}"
    # The real sign-in still completes it.
    with browser() as b:
        page = b.get(login["authorize_url"])
    assert page.status_code == 200, f"callback page: {page.status_code} {page.text[:300]}"
    account = accounts.finished(accounts.wait_login(login["id"]), "claude")
    assert ask("openai_chat", accounts.gw, accounts.key(account), "after the forgery", False) == (
        "claude says: after the forgery"
    )


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_a_localhost_callback_listens_on_both_loopbacks(accounts: Accounts, oidc: OidcServer, front: FaultFront) -> None:
    accounts.point_endpoints(claude=fronted(oidc, front, "pkce", redirect_host="localhost"))
    login = accounts.start_login("claude")
    assert login["redirect_uri"].startswith("http://localhost:"), login
    port = urlsplit(login["redirect_uri"]).port
    assert port
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    if ipv6_loopback():
        with socket.create_connection(("::1", port), timeout=5):
            pass
    # A browser resolving localhost either way ends the login.
    with browser() as b:
        page = b.get(login["authorize_url"])
    assert page.status_code == 200, f"callback page: {page.status_code} {page.text[:300]}"
    accounts.finished(accounts.wait_login(login["id"]), "claude")


# -- the device flow -----------------------------------------------------------------------------


def test_device_login_survives_a_reset_and_a_503_while_polling(accounts: Accounts, front: FaultFront) -> None:
    front.fault("/token", "reset", "503")
    login = accounts.start_login("qwen")
    accounts.oidc.decide_device(login["user_code"], "approve")
    account = accounts.finished(accounts.wait_login(login["id"], timeout=60), "qwen")
    assert front.pending("/token") == 0, "the faults were not reached"
    polls = front.requests("/token")
    assert polls[:2] == ["reset", "503"] and polls[-1] == "pass", polls
    assert ask("anthropic", accounts.gw, accounts.key(account), "polled through", False) == "qwen says: polled through"


# -- redirects, floods, silence -------------------------------------------------------------------


def test_a_token_endpoint_redirect_sends_nothing_elsewhere(accounts: Accounts, front: FaultFront) -> None:
    account = accounts.login("claude")
    catcher = Catcher()
    try:
        before = len(accounts.oidc.refreshes())
        front.fault("/token", ("redirect", f"http://{catcher.host}/collect?from=token"))
        status, body, _ = refresh(accounts, account["id"])
        assert catcher.hits == [], f"the redirect was followed: {catcher.hits}"
        assert status == 502, f"{status} {body}"
        message = body["error"]["message"]
        assert "redirect" in message and catcher.host in message, message
        assert "/collect" not in message and "from=token" not in message, message
        assert len(accounts.oidc.refreshes()) == before, "the provider saw no refresh"
        row = listed(accounts, account["id"])
        assert row["needs_login"] is False and catcher.host in (row["last_error"] or ""), row
        # The login is intact: the next refresh, not redirected, works.
        status, body, _ = refresh(accounts, account["id"])
        assert status == 200 and body["last_error"] is None, f"{status} {body}"
    finally:
        catcher.close()


def test_a_flooding_or_silent_token_endpoint_fails_in_time_and_the_gateway_keeps_serving(
    accounts: Accounts, front: FaultFront
) -> None:
    account = accounts.login("claude")
    key = accounts.key(account)
    assert ask("openai_chat", accounts.gw, key, "before", False) == "claude says: before"

    # 50 MB offered with no length: refused at the cap, long before the end.
    front.fault("/token", "flood")
    status, body, took = refresh(accounts, account["id"])
    assert status == 502, f"{status} {body}"
    assert "larger than 1024 KiB" in body["error"]["message"], body
    assert took < SIDE_TIMEOUT_S + 10, f"the flood took {took:.1f}s to refuse"
    assert front.flood_sent < FLOOD_BYTES, f"the gateway read all {front.flood_sent} bytes"
    print(f"flood: refused after {took:.2f}s; the front got {front.flood_sent / 1e6:.1f} MB out before the hang-up")

    # Never answers: the refresh gives up after the time limit; requests are served meanwhile.
    front.fault("/token", "hang")
    outcome: dict[str, Any] = {}

    def stuck_refresh() -> None:
        outcome["status"], outcome["body"], outcome["took"] = refresh(accounts, account["id"])

    waiting = threading.Thread(target=stuck_refresh)
    waiting.start()
    time.sleep(1)
    assert waiting.is_alive(), f"the hanging refresh ended early: {outcome}"
    started = time.monotonic()
    assert ask("openai_chat", accounts.gw, key, "meanwhile", False) == "claude says: meanwhile"
    served_in = time.monotonic() - started
    r = accounts.api.get("/api/accounts", timeout=5)
    assert r.status_code == 200, r.text
    waiting.join(SIDE_TIMEOUT_S + 30)
    assert not waiting.is_alive(), "the refresh of a silent token endpoint never ended"
    assert outcome["status"] == 502, outcome
    message = outcome["body"]["error"]["message"]
    assert f"no answer within {SIDE_TIMEOUT_S} s" in message, message
    assert SIDE_TIMEOUT_S - 1 <= outcome["took"] < SIDE_TIMEOUT_S + 10, outcome["took"]
    assert served_in < 5, f"a request waited {served_in:.1f}s behind the stuck refresh"
    print(f"silent token endpoint: refused after {outcome['took']:.2f}s; a request meanwhile took {served_in:.2f}s")
    row = listed(accounts, account["id"])
    assert row["needs_login"] is False and "no answer" in (row["last_error"] or ""), row
    # Neither cost the login (nothing reached the provider).
    status, body, _ = refresh(accounts, account["id"])
    assert status == 200, f"{status} {body}"


# -- refresh rotation -----------------------------------------------------------------------------


def test_a_client_hanging_up_mid_refresh_does_not_lose_the_rotated_token(
    accounts: Accounts, front: FaultFront, start_gateway: GatewayFactory
) -> None:
    account = accounts.login("claude")
    key = accounts.key(account)
    assert ask("openai_chat", accounts.gw, key, "first", False) == "claude says: first"
    before = len(accounts.oidc.refreshes())
    # The API refuses the next request's token, so the request waits for a refresh; the provider
    # rotates at once (the old refresh token is now spent) but its answer takes 4 s.
    accounts.upstream.fail_next(401, 1, "claude")
    front.fault("/token", ("delay", 4))
    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            f"{accounts.gw.v1}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": CLIENT_MODEL, "messages": [{"role": "user", "content": "hang up"}]},
            timeout=1.5,
            trust_env=False,
        )
    deadline = time.monotonic() + 20
    while len(accounts.oidc.refreshes()) == before:
        assert time.monotonic() < deadline, "the refresh never reached the provider"
        time.sleep(0.1)
    rotated = accounts.oidc.refreshes()[before:]
    assert len(rotated) == 1 and "error" not in rotated[0], rotated
    # The refresh finishes without the client: the account records it within the answer's delay.
    deadline = time.monotonic() + 4 + 10
    while (listed(accounts, account["id"])["refreshed_at"] or 0) <= account["refreshed_at"]:
        assert time.monotonic() < deadline, "the refresh stalled when its client hung up"
        time.sleep(0.2)
    assert ask("openai_chat", accounts.gw, key, "after", False) == "claude says: after"
    row = listed(accounts, account["id"])
    assert row["needs_login"] is False and row["last_error"] is None and row["tokens_not_saved"] is None, row

    # The refresh token kept (in the keychain, as the next start reads it) is the rotated one:
    # oidc-provider refuses a spent one and revokes the whole grant, so only it refreshes again.
    accounts.gw.stop()
    gw = start_gateway(["--upstream-timeout", str(SIDE_TIMEOUT_S)], data_dir=accounts.gw.data_dir)
    restarted = Accounts(gw, accounts.oidc, accounts.upstream)
    status, body, _ = refresh(restarted, account["id"])
    assert status == 200, f"the account lost its login: {status} {body}"
    again = accounts.oidc.refreshes()[before:]
    assert len(again) == 2 and all("error" not in g for g in again), again
    assert ask("openai_chat", restarted.gw, key, "after a restart", False) == "claude says: after a restart"
