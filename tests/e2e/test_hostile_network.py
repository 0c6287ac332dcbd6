"""Hostile network conditions against the real binary (issue 15, the `network` slice).

* 800 half-open client connections (nothing sent, half a request line, half a head) with the
  gateway started under a low open-file soft limit: it raises the limit to the hard one, a real
  request still answers in under 2 s, and the half-open sockets are closed after the header
  timeout;
* a provider stream that goes silent after its first chunk ends, after --stream-idle-timeout,
  with the client protocol's error event and the end of the connection, in each client
  protocol (same-protocol and translated paths), and is recorded as interrupted;
* a provider that answers with a redirect: the redirect is not followed (the server it points
  to receives nothing, so no key), the client gets a 502 naming it, the key is not rested;
* binding off loopback needs --allow-remote (a saved address falls back to loopback), and then
  the Host guard accepts the machine's real addresses (IPv4, bracketed IPv6) and nothing else;
* 100,000 distinct model names do not grow the gateway's memory beyond a bound.

Every upstream here is a local server; all traffic goes to loopback (other addresses appear
only as Host header values).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import resource
import secrets
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import GatewayFactory, GatewayProcess, gateway_binary, new_token, put_provider, scratch_env, wait_listening

KEY_VAR = "FLEXIPROXY_TEST_NETWORK_KEY"


def _env_key() -> tuple[str, dict[str, str]]:
    key = new_token("sk-network-")
    return key, {KEY_VAR: key}


# -- helpers ------------------------------------------------------------------------------------


def open_files_limits(pid: int) -> tuple[int, int]:
    """The soft and hard open-file limits of a process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            parts = line.split()
            return int(parts[3]), int(parts[4])
    raise AssertionError("no open-files line in /proc/<pid>/limits")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def launch(tmp: Path, args: list[str], soft: int | None = None) -> GatewayProcess:
    """Starts the gateway with exactly `args` (no --port added, unlike the shared factory), its
    open-file soft limit lowered to `soft` when given (hard unchanged)."""
    home, data = tmp / "home", tmp / "data"
    home.mkdir(parents=True, exist_ok=True)
    token = new_token("fpm-test-")
    env = scratch_env(home, {"FLEXIPROXY_MANAGEMENT_TOKEN": token, "FLEXIPROXY_LOG": "info"})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower() -> None:
        if soft is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    cmd = [str(gateway_binary()), "--headless", "--data-dir", str(data), *args]
    log_path = tmp / f"gateway-stderr-{secrets.token_hex(3)}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env, preexec_fn=lower
        )
    url = wait_listening(proc, cmd, log_path)
    return GatewayProcess(proc, url, token, data, home, log_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder(ThreadingHTTPServer):
    """A server that records the headers of every request it gets and answers 200."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                recorder.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                body = b'{"stolen": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Redirector(ThreadingHTTPServer):
    """A provider that answers every request with 307 to `target` (keeping the path and a query
    that would carry a key)."""

    daemon_threads = True

    def __init__(self, target: str) -> None:
        self.hits = 0
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                redirector.hits += 1
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(307)
                self.send_header("location", f"{target}{self.path}")
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = _any

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


# -- 1. half-open connections ---------------------------------------------------------------------

HALF_OPEN = 800
HEADER_TIMEOUT_S = 6


def test_half_open_connections_neither_starve_a_request_nor_outlive_the_header_timeout(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4 * HALF_OPEN:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    # Below what 800 sockets need: only the gateway's own raise makes room for them.
    soft = 512
    gw = launch(tmp_path, ["--port", "0", "--secrets", "env", "--header-timeout", str(HEADER_TIMEOUT_S)], soft=soft)
    try:
        now_soft, now_hard = open_files_limits(gw.proc.pid)
        assert (now_soft, now_hard) == (hard, hard), "the gateway did not raise its open-file limit"
        assert "connection limits" in gw.logs() and f"open_files={hard}" in gw.logs(), gw.logs()[-2000:]

        partials = [b"", b"GET /health HTT", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "]
        sockets: list[socket.socket] = []
        opened_at = time.monotonic()
        for i in range(HALF_OPEN):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            if partials[i % 3]:
                s.sendall(partials[i % 3])
            sockets.append(s)
        # Let the gateway accept them all (within the header timeout: a loaded machine is slow
        # at it), then ask for real.
        accept_by = opened_at + HEADER_TIMEOUT_S - 1
        while fd_count(gw.proc.pid) <= HALF_OPEN and time.monotonic() < accept_by:
            time.sleep(0.05)
        assert fd_count(gw.proc.pid) > HALF_OPEN, "the gateway did not hold the half-open sockets"
        started = time.monotonic()
        r = httpx.get(f"{gw.url}/health", timeout=10)
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert took < 2.0, f"a normal request took {took:.2f}s beside {HALF_OPEN} half-open connections"
        print(f"\n/health beside {HALF_OPEN} half-open connections: {took * 1000:.0f} ms")

        # Each half-open socket is closed by the gateway once the header timeout has run out.
        closed = 0
        deadline = opened_at + HEADER_TIMEOUT_S + 15
        for s in sockets:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = s.recv(1024)
                closed += data == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
            finally:
                s.close()
        waited = time.monotonic() - opened_at
        assert closed == HALF_OPEN, f"only {closed} of {HALF_OPEN} half-open sockets were closed in {waited:.1f}s"
        print(f"all {HALF_OPEN} closed by the gateway within {waited:.1f}s (header timeout {HEADER_TIMEOUT_S}s)")
        # And the gateway let go of them: its descriptors are back to a handful.
        deadline = time.monotonic() + 5
        while fd_count(gw.proc.pid) > 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fd_count(gw.proc.pid) <= 100, fd_count(gw.proc.pid)
        # Still serving, keep-alive included.
        with httpx.Client(timeout=10) as client:
            for _ in range(3):
                assert client.get(f"{gw.url}/health").status_code == 200
    finally:
        gw.stop()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(start_gateway: GatewayFactory) -> None:
    gw = start_gateway(["--secrets", "env", "--idle-timeout", "2", "--header-timeout", "30"], log_level="info")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    started = time.monotonic()
    s.settimeout(15)
    assert s.recv(4096) == b""
    idle = time.monotonic() - started
    s.close()
    assert 1.5 <= idle < 10, f"closed after {idle:.1f}s idle, expected about 2s"


def test_http2_prior_knowledge_still_works(start_gateway: GatewayFactory) -> None:
    gw = start_gateway(["--secrets", "env"], log_level="info")
    done = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", f"{gw.url}/health"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if "not support" in done.stderr or done.returncode == 2:
        pytest.skip(f"this curl cannot speak HTTP/2: {done.stderr}")
    assert done.stdout == "2 200", (done.stdout, done.stderr)


# -- 2. a stream that goes silent ---------------------------------------------------------------

FIRST_CHUNKS = {
    "openai_chat": (
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n'
    ),
    "anthropic_messages": (
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        '"role":"assistant","content":[],"model":"m","stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":7,"output_tokens":1}}}\n\n'
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"Hel"}}\n\n'
    ),
    "openai_responses": (
        'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":'
        '{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"m","output":[]}}\n\n'
    ),
    "gemini": 'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}]}\n\n',
}


class Staller(ThreadingHTTPServer):
    """A provider of every protocol that sends its answer's first chunk and then goes silent
    (for at most `stall` seconds, then closes). Records whether each socket was closed by the
    gateway before the stall ended."""

    daemon_threads = True

    def __init__(self, stall: float = 30.0) -> None:
        self.hung_up: list[float] = []
        staller = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                if self.path.endswith("/chat/completions"):
                    kind = "openai_chat"
                elif self.path.endswith("/messages"):
                    kind = "anthropic_messages"
                elif self.path.endswith("/responses"):
                    kind = "openai_responses"
                else:
                    kind = "gemini"
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                first = FIRST_CHUNKS[kind].encode()
                self.wfile.write(f"{len(first):x}\r\n".encode() + first + b"\r\n")
                self.wfile.flush()
                sent = time.monotonic()
                # Silent from here; notice when the gateway hangs up.
                self.connection.settimeout(0.2)
                while time.monotonic() - sent < stall:
                    try:
                        if self.connection.recv(1) == b"":
                            staller.hung_up.append(time.monotonic() - sent)
                            return
                    except TimeoutError:
                        continue
                    except OSError:
                        staller.hung_up.append(time.monotonic() - sent)
                        return
                self.close_connection = True

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


IDLE_S = 2


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory):
    staller = Staller()
    serve(staller)
    key, env = _env_key()
    factory = GatewayFactory(tmp_path_factory.mktemp("stall"))
    gw = factory(["--secrets", "env", "--stream-idle-timeout", str(IDLE_S)], env=env, log_level="info")
    adapters = {}
    for protocol in FIRST_CHUNKS:
        gw.api.create_provider(protocol, staller.url, api_key=f"env:{KEY_VAR}", protocol=protocol)
        adapters[protocol] = gw.api.create_adapter(protocol, "m")["api_key"]
    try:
        yield gw, adapters, staller
    finally:
        factory.stop_all()
        staller.shutdown()


def client_request(client: str, gw: GatewayProcess, key: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    messages = [{"role": "user", "content": "hi"}]
    if client == "openai_chat":
        return (
            f"{gw.url}/v1/chat/completions",
            {"authorization": f"Bearer {key}"},
            {"model": "m", "messages": messages, "stream": True},
        )
    if client == "anthropic_messages":
        return (
            f"{gw.url}/v1/messages",
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
            {"model": "m", "max_tokens": 50, "messages": messages, "stream": True},
        )
    if client == "openai_responses":
        return f"{gw.url}/v1/responses", {"authorization": f"Bearer {key}"}, {"model": "m", "input": "hi", "stream": True}
    return (
        f"{gw.url}/v1beta/models/m:streamGenerateContent?alt=sse",
        {"x-goog-api-key": key},
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            joined = "\n".join(data)
            try:
                events.append((name, json.loads(joined)))
            except json.JSONDecodeError:
                events.append((name, joined))
    return events


def is_error_event(client: str, name: str | None, data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if client == "anthropic_messages":
        return name == "error" and data.get("type") == "error"
    if client == "openai_responses":
        # Relayed: the provider's own `error` event; translated: the gateway ends the response
        # with `response.failed`, which the Responses SDKs raise on as well.
        return (name, data.get("type")) in (("error", "error"), ("response.failed", "response.failed"))
    return "error" in data and isinstance(data["error"], dict)


PAIRS = [
    ("openai_chat", "openai_chat"),
    ("anthropic_messages", "anthropic_messages"),
    ("openai_responses", "openai_responses"),
    ("gemini", "gemini"),
    ("anthropic_messages", "openai_chat"),
    ("openai_responses", "openai_chat"),
    ("gemini", "openai_chat"),
    ("openai_chat", "anthropic_messages"),
]


@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=[f"{c}-via-{p}" for c, p in PAIRS])
def test_a_stream_silent_after_its_first_chunk_ends_with_the_protocols_error_event(
    stalling: tuple[GatewayProcess, dict[str, str], Staller], client: str, provider: str
) -> None:
    gw, adapters, staller = stalling
    url, headers, body = client_request(client, gw, adapters[provider])
    since = int(time.time() * 1000) - 5
    started = time.monotonic()
    with httpx.stream("POST", url, headers=headers, json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        text = "".join(r.iter_text())
    took = time.monotonic() - started
    # The stream ended (the connection's answer is complete) soon after the idle timeout.
    assert IDLE_S - 0.5 <= took < IDLE_S + 8, f"ended after {took:.1f}s"
    events = sse_events(text)
    assert len(events) >= 2, text
    name, data = events[-1]
    assert is_error_event(client, name, data), f"last event is not {client}'s error event: {events[-1]}\n{text}"
    assert "stopped sending" in json.dumps(data) and "--stream-idle-timeout" in json.dumps(data), data
    # The cut stream is recorded, with why.
    rows = gw.api.wait_usage(lambda row: row["provider_id"] == provider and row["ts_ms"] >= since)
    assert rows[0]["outcome"] == "interrupted", rows[0]
    assert "stopped sending" in (rows[0]["error"] or ""), rows[0]
    # And the gateway hung up on the silent provider (which cancels the request there).
    deadline = time.monotonic() + 5
    while not staller.hung_up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staller.hung_up, "the gateway kept the silent upstream request open"


def test_a_token_count_that_stalls_upstream_ends_within_its_time_limit(start_gateway: GatewayFactory) -> None:
    staller = Staller()
    serve(staller)
    try:
        key, env = _env_key()
        gw = start_gateway(["--secrets", "env", "--upstream-timeout", "3"], env=env, log_level="info")
        gw.api.create_provider("claude", staller.url, api_key=f"env:{KEY_VAR}", protocol="anthropic_messages")
        adapter = gw.api.create_adapter("claude", "m")["api_key"]
        started = time.monotonic()
        r = httpx.post(
            f"{gw.url}/v1/messages/count_tokens",
            headers={"x-api-key": adapter, "anthropic-version": "2023-06-01"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        took = time.monotonic() - started
        assert r.status_code in (502, 504), r.text
        assert r.json()["type"] == "error", r.text
        assert took < 10, f"the count took {took:.1f}s against a provider that stalls"
    finally:
        staller.shutdown()


# -- 3. redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai_chat", "anthropic_messages", "gemini"])
def test_a_redirecting_provider_gets_no_key_followed_and_the_client_a_502_naming_it(
    start_gateway: GatewayFactory, protocol: str
) -> None:
    thief = Recorder()
    serve(thief)
    redirector = Redirector(thief.url)
    serve(redirector)
    try:
        key, env = _env_key()
        gw = start_gateway(["--secrets", "env"], env=env, log_level="info")
        gw.api.create_provider("moved", redirector.url, api_key=f"env:{KEY_VAR}", protocol=protocol)
        adapter = gw.api.create_adapter("moved", "m")["api_key"]
        for attempt in range(2):
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {adapter}"},
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            # Not a rested credential the second time: the same clear 502 again.
            assert r.status_code == 502, (attempt, r.status_code, r.text)
            message = r.json()["error"]["message"]
            assert "answered 307 redirect to http://127.0.0.1:" in message, message
            assert "does not follow redirects" in message and "base URL" in message, message
            assert r.json()["error"]["code"] == "upstream_redirect", r.json()
            assert key not in r.text
        # Anthropic's token count and the provider test take the same path.
        count = httpx.post(
            f"{gw.url}/v1/messages/count_tokens",
            headers={"x-api-key": adapter, "anthropic-version": "2023-06-01"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        if protocol != "openai_chat":
            assert count.status_code == 502 and "redirect" in count.text, count.text
        test = gw.api.post("/api/providers/moved/test", json={"model": "m"})
        assert test.status_code == 200, test.text
        assert not test.json()["ok"] and "redirect" in test.json()["error"], test.json()
        assert redirector.hits >= 2
        assert thief.seen == [], f"the redirect was followed: {thief.seen}"
        rows = gw.api.wait_usage(lambda row: row["provider_id"] == "moved", count=2)
        assert all("redirect" in (row["error"] or "") for row in rows), rows
    finally:
        redirector.shutdown()
        thief.shutdown()


def test_a_redirecting_provider_is_skipped_for_the_next_provider_not_its_other_keys(
    start_gateway: GatewayFactory, fault_upstreams
) -> None:
    thief = Recorder()
    serve(thief)
    redirector = Redirector(thief.url)
    serve(redirector)
    try:
        key, env = _env_key()
        good = fault_upstreams("good", models=["shared"])
        gw = start_gateway(["--secrets", "env"], env=env, log_level="info")
        for pid, url in (("moved", redirector.url), ("good", good.base_url)):
            put_provider(
                gw.api,
                pid,
                {"url": url, "protocol": "openai_chat", "discovery": "off", "models": ["shared"], "api_key": f"env:{KEY_VAR}"},
            )
        # A second key on the redirecting provider: it must not be tried after the first.
        r = gw.api.post("/api/providers/moved/credentials", json={"id": "k2", "api_key": f"env:{KEY_VAR}"})
        assert r.status_code in (200, 201), r.text
        r = gw.api.post("/api/adapters", json={})
        assert r.status_code == 201, r.text
        adapter = r.json()["api_key"]
        for _ in range(6):
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {adapter}"},
                json={"model": "shared", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"].startswith("served by good"), r.text
        # Round-robin put the redirecting provider first for some requests; each met it once.
        assert 1 <= redirector.hits <= 6, redirector.hits
        assert thief.seen == []
        # The wrong URL is no fault of the keys: none is rested.
        credentials = gw.api.get("/api/providers/moved").json()["credentials"]
        assert len(credentials) == 2, credentials
        assert all(c["health"]["state"] == "ready" for c in credentials), credentials
    finally:
        redirector.shutdown()
        thief.shutdown()


# -- 5. exposed bind ------------------------------------------------------------------------------


def machine_addresses() -> list[str]:
    """This machine's non-loopback addresses (read locally; nothing is sent to them)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in out if a not in ("127.0.0.1", "::1")]


def test_binding_off_loopback_is_refused_without_the_flag(gateway_start_failure) -> None:
    for args, env in (
        (["--bind", "0.0.0.0"], {}),
        ([], {"FLEXIPROXY_BIND": "0.0.0.0"}),
        (["--bind", "::"], {"FLEXIPROXY_ALLOW_REMOTE": "0"}),
    ):
        failed = gateway_start_failure(["--secrets", "env", *args], env=env)
        assert failed.returncode != 0
        assert "refusing to listen on" in failed.stderr and "--allow-remote" in failed.stderr, failed.stderr


def status_with_host(gw: GatewayProcess, host: str, connect: str = "127.0.0.1") -> int:
    target = f"http://{connect}:{gw.port}/api/status" if ":" not in connect else f"http://[{connect}]:{gw.port}/api/status"
    return httpx.get(
        target, headers={"host": host, "authorization": f"Bearer {gw.token}"}, timeout=10
    ).status_code


def test_with_the_flag_the_host_guard_accepts_the_real_addresses(start_gateway: GatewayFactory) -> None:
    gw = start_gateway(["--secrets", "env", "--bind", "0.0.0.0", "--allow-remote"], log_level="info")
    logs = gw.logs()
    assert "The management token is accepted on requests addressed to Host:" in logs, logs[-3000:]
    assert f"127.0.0.1:{gw.port}" in logs and f"localhost:{gw.port}" in logs
    v4 = [a for a in machine_addresses() if ":" not in a]
    for address in v4:
        assert f"{address}:{gw.port}" in logs, logs[-3000:]
        # Sent over loopback: only the Host names the machine's other address.
        assert status_with_host(gw, f"{address}:{gw.port}") == 200, address
    assert status_with_host(gw, f"127.0.0.1:{gw.port}") == 200
    assert status_with_host(gw, f"evil.example:{gw.port}") == 403
    assert status_with_host(gw, f"192.0.2.254:{gw.port}") == 403
    assert status_with_host(gw, f"127.0.0.1:{gw.port + 1}") == 403
    gw.stop()

    if not Path("/proc/net/if_inet6").exists() or not Path("/proc/net/if_inet6").read_text().strip():
        pytest.skip("no IPv6 here")
    gw6 = start_gateway(["--secrets", "env", "--bind", "::", "--allow-remote"], log_level="info")
    assert status_with_host(gw6, f"[::1]:{gw6.port}", connect="::1") == 200
    assert status_with_host(gw6, f"[0:0:0:0:0:0:0:1]:{gw6.port}", connect="::1") == 200
    assert status_with_host(gw6, f"evil.example:{gw6.port}", connect="::1") == 403
    for address in (a for a in machine_addresses() if ":" in a):
        assert status_with_host(gw6, f"[{address}]:{gw6.port}", connect="::1") == 200, address
        assert status_with_host(gw6, f"{address}:{gw6.port}", connect="::1") == 403, address


def listening_on(port: int) -> list[str]:
    """The local addresses listening on `port` (empty when `ss` is not there to tell)."""
    try:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def test_a_saved_exposed_address_falls_back_to_loopback_without_the_flag(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = launch(tmp_path, ["--port", "0", "--secrets", "env"])
    port = free_port()
    r = gw.api.put("/api/settings", json={"listen": {"bind": "0.0.0.0", "port": port}})
    assert r.status_code == 200, r.text
    gw.stop()
    # No --bind/--port: the saved address applies, but its bind not without --allow-remote.
    again = launch(tmp_path, ["--secrets", "env"])
    try:
        assert again.url == f"http://127.0.0.1:{port}", again.url
        assert "not listening on the saved address 0.0.0.0" in again.logs(), again.logs()[-2000:]
        # Really on loopback only: the listening socket is bound to 127.0.0.1.
        assert listening_on(port) in ([], [f"127.0.0.1:{port}"]), listening_on(port)
        settings = again.api.get("/api/settings").json()
        assert any("The saved address 0.0.0.0 is not used" in w for w in settings["warnings"]), settings
        assert settings["listen"]["bind"] == "127.0.0.1"
    finally:
        again.stop()
    # With the flag, the saved address is used.
    exposed = launch(tmp_path, ["--secrets", "env", "--allow-remote"])
    try:
        assert listening_on(port) in ([], [f"0.0.0.0:{port}"]), listening_on(port)
        assert exposed.api.get("/api/settings").json()["listen"]["bind"] == "0.0.0.0"
    finally:
        exposed.stop()


# -- 3b. router state keyed by client names -------------------------------------------------------

NAMES = 100_000
FLOOD_FAILURES: list[str] = []
NAME_LEN = 1000


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response: its head and its body (by content-length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    if b"transfer-encoding: chunked" in lines:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return head, body
            body += chunk[:-2]
    length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), 0)
    return head, await reader.readexactly(length)


async def _flood(port: int, key: str, names: range, connections: int = 16, batch: int = 64) -> int:
    """Sends one embeddings request per model name over `connections` keep-alive connections,
    `batch` requests pipelined at a time; the number answered as expected (the first others are
    kept in `FLOOD_FAILURES`)."""
    ok = 0
    pending = list(names)
    pad = "x" * (NAME_LEN - 20)

    def request(n: int) -> bytes:
        body = json.dumps({"model": f"{n:012d}{pad}", "input": "x"}).encode()
        return (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    async def worker() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while pending:
                group = [pending.pop() for _ in range(min(batch, len(pending)))]
                writer.write(b"".join(request(n) for n in group))
                for _ in group:
                    head, answer = await read_response(reader)
                    if head.startswith(b"HTTP/1.1 501") and b"OpenAI-compatible" in answer:
                        ok += 1
                    elif len(FLOOD_FAILURES) < 3:
                        FLOOD_FAILURES.append((head + answer).decode(errors="replace")[:600])
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return ok


def test_a_hundred_thousand_model_names_do_not_grow_memory_without_bound(start_gateway: GatewayFactory) -> None:
    key, env = _env_key()
    gw = start_gateway(["--secrets", "env", "--usage", "off"], env=env, log_level="warn")
    # An Anthropic provider, and embeddings asked of it: the router picks a credential (and
    # remembers the pool's round-robin position under the client's model name) before the
    # attempt finds that embeddings exist only on OpenAI-compatible hosts, so every request
    # grows the router's state as a served one would, without an upstream to wait for.
    gw.api.create_provider("claude", "http://127.0.0.1:9/v1", api_key=f"env:{KEY_VAR}", protocol="anthropic_messages")
    # Pinned to the provider, without a model: every client model name is a pool of its own.
    r = gw.api.post("/api/adapters", json={"provider_id": "claude"})
    assert r.status_code == 201, r.text
    adapter = r.json()["api_key"]
    warm = 5_000
    assert asyncio.run(_flood(gw.port, adapter, range(warm))) == warm, FLOOD_FAILURES
    before = rss_kib(gw.proc.pid)
    started = time.monotonic()
    assert asyncio.run(_flood(gw.port, adapter, range(warm, NAMES))) == NAMES - warm, FLOOD_FAILURES
    took = time.monotonic() - started
    after = rss_kib(gw.proc.pid)
    grown_mib = (after - before) / 1024
    print(
        f"\n{NAMES - warm} distinct {NAME_LEN}-byte model names in {took:.0f}s: "
        f"RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB"
    )
    # Unbounded, each name would stay (over 1 KB each: ~100 MiB); bounded, a few MiB at most.
    assert grown_mib < 40, f"RSS grew by {grown_mib:.0f} MiB over {NAMES - warm} model names"


# -- 5b. TLS ----------------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    done = subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=flexiproxy-e2e",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate here: {done.stderr}")
    return cert, key


def test_tls_serves_https_with_the_given_certificate(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    gw = start_gateway(
        ["--secrets", "env", "--tls-cert", str(cert), "--tls-key", str(key), "--header-timeout", "2"], log_level="info"
    )
    assert gw.url.startswith("https://127.0.0.1:"), gw.url
    # A socket that never starts its handshake is dropped after the header timeout.
    silent = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
    opened = time.monotonic()
    trusted = ssl.create_default_context(cafile=str(cert))
    r = httpx.get(f"{gw.url}/health", verify=trusted, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    status = httpx.get(f"{gw.url}/api/status", headers={"authorization": f"Bearer {gw.token}"}, verify=trusted, timeout=10)
    assert status.status_code == 200, status.text
    # The certificate is what the client checks: another one is refused.
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gw.url}/health", verify=ssl.create_default_context(cafile=str(other)), timeout=10)
    # No plain HTTP on the TLS port.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gw.port}/health", timeout=5)
    # HTTP/2 is offered by ALPN.
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_version}", f"{gw.url}/health"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == "2", (done.stdout, done.stderr)
    assert silent.recv(16) == b""
    assert time.monotonic() - opened < 10
    silent.close()


def test_tls_needs_both_files_and_names_a_bad_one(gateway_start_failure, tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    failed = gateway_start_failure(["--secrets", "env", "--tls-cert", str(cert)])
    assert failed.returncode != 0 and "--tls-key" in failed.stderr, failed.stderr
    missing = tmp_path / "missing-key.pem"
    failed = gateway_start_failure(["--secrets", "env", "--tls-cert", str(cert), "--tls-key", str(missing)])
    assert failed.returncode != 0 and str(missing) in failed.stderr, failed.stderr
