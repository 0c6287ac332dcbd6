"""Hostile input from clients and providers, against the real binary on loopback.

* An exploding tool schema (12 levels of ``$defs``, each property of a level using the next:
  10^12 nodes once inlined) sent by OpenAI Chat, OpenAI Responses and Anthropic clients to a
  Gemini provider gets a 400 in the client's own error shape within seconds, the gateway's
  memory stays where it was, and a normal request works after. A Gemini client's own schema
  goes to a Gemini provider untouched (nothing is inlined on that path).
* Model names with ``../``, ``%2e%2e``, ``?key=``, ``#``, ``/`` reach the provider only as one
  encoded path segment, or are refused with a 400 when no segment can stand for them.
* Upstream streams with CR-only line ends, an event of many MB that never ends, garbage, and
  an event dribbled one byte per chunk: the client gets the correct stream or its protocol's
  error event, never a hang, and a usage row is recorded each time.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import MATRIX_KEY_VAR, Matrix
from hostile_sse_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, TEXT, HostileSseUpstream

# Generous for a loaded two-core machine; the measured times are printed.
ANSWER_WITHIN_S = 10.0
# The gateway's RSS may grow by this much over the exploding requests: each spends the schema
# budget (a few tens of MB for a moment) and the allocator keeps some of it. Unbounded, the
# first of them takes every byte of the machine.
RSS_GROWTH_LIMIT_KB = 100 * 1024


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def exploding_schema(fan_out: int = 10, levels: int = 12) -> dict[str, Any]:
    defs = {}
    for level in range(levels):
        if level + 1 < levels:
            target: dict[str, Any] = {"$ref": f"#/$defs/L{level + 1}", "description": "next"}
        else:
            target = {"type": "string"}
        defs[f"L{level}"] = {"type": "object", "properties": {f"p{p}": target for p in range(fan_out)}}
    return {"type": "object", "properties": {"root": {"$ref": "#/$defs/L0"}}, "$defs": defs}


def post(url: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(url, timeout=60.0, **kwargs)
    return response, time.monotonic() - started


# -- 1. schema blow-up --------------------------------------------------------------------------


def test_exploding_schema_gets_a_400_in_each_clients_protocol(matrix: Matrix) -> None:
    schema = exploding_schema()
    assert len(json.dumps(schema)) < 8192, "a few KB"
    key = matrix.key("gemini")
    pid = matrix.gw.proc.pid
    before = rss_kb(pid)
    base = matrix.url

    chat = {
        "model": "x",
        "messages": [{"role": "user", "content": "use tool"}],
        "tools": [{"type": "function", "function": {"name": "deep", "parameters": schema}}],
    }
    responses = {"model": "x", "input": "use tool", "tools": [{"type": "function", "name": "deep", "parameters": schema}]}
    messages = {
        "model": "x",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "use tool"}],
        "tools": [{"name": "deep", "input_schema": schema}],
    }
    anthropic_headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    cases = [
        ("/v1/chat/completions", chat, {"Authorization": f"Bearer {key}"}, "openai"),
        ("/v1/chat/completions", {**chat, "stream": True}, {"Authorization": f"Bearer {key}"}, "openai"),
        ("/v1/responses", responses, {"Authorization": f"Bearer {key}"}, "openai"),
        ("/v1/messages", messages, anthropic_headers, "anthropic"),
        ("/v1/messages/count_tokens", messages, anthropic_headers, "anthropic"),
    ]
    for path, body, headers, shape in cases:
        response, took = post(base + path, json=body, headers=headers)
        print(f"{path}: {response.status_code} in {took:.2f} s")
        assert response.status_code == 400, f"{path}: {response.status_code} {response.text[:500]}"
        assert took < ANSWER_WITHIN_S, f"{path} took {took:.1f} s"
        error = response.json()
        if shape == "openai":
            message = error["error"]["message"]
            assert error["error"]["type"] == "invalid_request_error", error
            assert "type" not in error
        else:
            assert error["type"] == "error", error
            assert error["error"]["type"] == "invalid_request_error", error
            message = error["error"]["message"]
        assert "tool `deep`" in message and "expands past" in message and "simplify" in message, message

    # A Gemini client talking to a Gemini provider: its schema goes on as it came (the
    # provider reads JSON Schema itself); nothing is expanded, so nothing grows.
    gemini_body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "deep", "parametersJsonSchema": schema}]}],
    }
    response, took = post(
        f"{base}/v1beta/models/{matrix.model('gemini')}:generateContent",
        json=gemini_body,
        headers={"x-goog-api-key": key},
    )
    print(f"gemini client: {response.status_code} in {took:.2f} s")
    assert took < ANSWER_WITHIN_S
    assert response.status_code < 500, response.text[:500]

    after = rss_kb(pid)
    print(f"gateway RSS: {before} kB before, {after} kB after")
    assert after - before < RSS_GROWTH_LIMIT_KB, f"RSS grew from {before} kB to {after} kB"
    assert matrix.gw.proc.poll() is None, "the gateway is still running"

    # And an ordinary request still works.
    response, _ = post(
        base + "/v1/chat/completions",
        json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text[:500]
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"


# -- 2. model names in the URL path -------------------------------------------------------------


@pytest.fixture(scope="module")
def passthrough_key(matrix: Matrix) -> str:
    """An adapter on the Gemini provider that sends the client's own model name."""
    r = matrix.gw.api.post("/api/adapters", json={"provider_id": "gemini"})
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


# name the client sends -> the one path segment the provider must see (None: refused, 400)
PATH_TRICKS: list[tuple[str, str | None]] = [
    ("../../v1/files", "..%2F..%2Fv1%2Ffiles"),
    ("%2e%2e/%2e%2e/v1/files", "%252e%252e%2F%252e%252e%2Fv1%2Ffiles"),
    ("gemini-mock?key=stolen", "gemini-mock%3Fkey%3Dstolen"),
    ("gemini-mock#fragment", "gemini-mock%23fragment"),
    ("tunedModels/x", "tunedModels%2Fx"),
    ("gemini-mock:streamGenerateContent", "gemini-mock%3AstreamGenerateContent"),
    ("models/gemini-mock", "gemini-mock"),
    ("gemini-2.5-flash", "gemini-2.5-flash"),
    ("..", None),
    ("models/..", None),
    (".", None),
    ("gemini-mock\r\nX-Injected: 1", None),
]


@pytest.mark.parametrize(("name", "segment"), PATH_TRICKS, ids=[repr(n) for n, _ in PATH_TRICKS])
def test_model_names_reach_the_provider_as_one_segment(
    matrix: Matrix, passthrough_key: str, name: str, segment: str | None
) -> None:
    seen_before = len(matrix.mock.requests)
    response, _ = post(
        matrix.url + "/v1/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {passthrough_key}"},
    )
    new = matrix.mock.requests[seen_before:]
    if segment is None:
        assert response.status_code == 400, response.text[:500]
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and "model" in error["message"], error
        assert not new, f"a refused name reached the provider: {[r.path for r in new]}"
        return
    assert len(new) == 1, [r.path for r in new]
    path = new[0].path
    assert path == f"/v1beta/models/{segment}:generateContent", path
    assert not new[0].query, new[0].query
    # The provider's key went in its header only, never into a query it could leak to.
    assert new[0].header("x-goog-api-key") == matrix.provider_key


def test_a_gemini_clients_url_model_is_one_segment_upstream(matrix: Matrix, passthrough_key: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for raw, segment in [
        ("..%2F..%2Fv1%2Ffiles", "..%2F..%2Fv1%2Ffiles"),
        ("gemini-mock%3Fkey=x", "gemini-mock%3Fkey%3Dx"),
        ("a%23b", "a%23b"),
    ]:
        seen_before = len(matrix.mock.requests)
        url = f"{matrix.url}/v1beta/models/{raw}:generateContent"
        response = httpx.post(url, json=body, headers={"x-goog-api-key": passthrough_key}, timeout=60)
        new = matrix.mock.requests[seen_before:]
        assert len(new) == 1, (raw, response.status_code, response.text[:300])
        assert new[0].path == f"/v1beta/models/{segment}:generateContent", new[0].path
        assert urllib.parse.unquote(segment) == urllib.parse.unquote(raw)
    # `..` decoded from the client's URL cannot be a model.
    seen_before = len(matrix.mock.requests)
    response = httpx.post(
        f"{matrix.url}/v1beta/models/%2E%2E:generateContent",
        json=body,
        headers={"x-goog-api-key": passthrough_key},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT", response.text
    assert len(matrix.mock.requests) == seen_before


# -- 3. hostile SSE framing ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_sse(matrix: Matrix) -> Iterator[tuple[HostileSseUpstream, str]]:
    """The badly framing upstream, as provider `hostile` with a pass-through adapter; its key."""
    with HostileSseUpstream() as upstream:
        matrix.gw.api.create_provider(
            "hostile", upstream.base_url, api_key=f"env:{MATRIX_KEY_VAR}", protocol="openai_chat"
        )
        r = matrix.gw.api.post("/api/adapters", json={"provider_id": "hostile"})
        assert r.status_code == 201, r.text
        yield upstream, r.json()["api_key"]


def stream_body(client: str, model: str, key: str, url: str) -> tuple[bytes, float]:
    """Streams a request as `client` ("openai" or "openai-no-usage" on the same-protocol path,
    "anthropic" translated) and returns the whole body the client received and how long it took."""
    if client.startswith("openai"):
        path = "/v1/chat/completions"
        body: dict[str, Any] = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        if client == "openai":
            # Without it the gateway asks for usage itself and strips the chunk: another path.
            body["stream_options"] = {"include_usage": True}
        headers = {"Authorization": f"Bearer {key}"}
    else:
        path = "/v1/messages"
        body = {"model": model, "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    started = time.monotonic()
    received = bytearray()
    with httpx.stream("POST", url + path, json=body, headers=headers, timeout=httpx.Timeout(60.0)) as response:
        assert response.status_code == 200, response.read()[:500]
        for piece in response.iter_bytes():
            received.extend(piece)
            assert len(received) < 64 * 1024 * 1024, "the client is being flooded"
    return bytes(received), time.monotonic() - started


def streamed_text(client: str, received: bytes) -> str:
    """The text of a stream as the client's SSE parser reads it (CR, LF, CRLF line ends)."""
    text = ""
    for line in received.decode(errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if client == "openai":
            for choice in event.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
        elif event.get("type") == "content_block_delta":
            text += event["delta"].get("text", "")
    return text


def usage_row(matrix: Matrix, since: int, model: str) -> dict[str, Any]:
    rows = matrix.gw.api.wait_usage(
        lambda row: row.get("provider_id") == "hostile" and row.get("model") == model and row.get("ts_ms", 0) >= since
    )
    return rows[0]


@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["sse-cr", "sse-dribble"])
def test_correct_streams_in_odd_framing_arrive_whole(
    matrix: Matrix, hostile_sse: tuple[HostileSseUpstream, str], client: str, mode: str
) -> None:
    upstream, key = hostile_sse
    since = matrix.now_ms()
    received, took = stream_body(client, mode, key, matrix.url)
    print(f"{mode} via {client}: {len(received)} bytes in {took:.2f} s")
    assert streamed_text(client, received) == TEXT, received[:2000]
    if client == "anthropic":
        assert b"message_stop" in received, received[-500:]
    row = usage_row(matrix, since, mode)
    assert row["outcome"] == "completed", row
    # The usage was read from the oddly framed events themselves.
    assert (row["input_tokens"], row["output_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS), row


@pytest.mark.parametrize("client", ["openai", "openai-no-usage", "anthropic"])
def test_an_endless_event_ends_with_the_protocols_error(
    matrix: Matrix, hostile_sse: tuple[HostileSseUpstream, str], client: str
) -> None:
    upstream, key = hostile_sse
    since = matrix.now_ms()
    pid = matrix.gw.proc.pid
    received, took = stream_body(client, "sse-huge", key, matrix.url)
    print(f"sse-huge via {client}: {len(received)} bytes in {took:.2f} s, gateway RSS {rss_kb(pid)} kB")
    assert took < 30, f"took {took:.1f} s"
    tail = received[-4096:].decode(errors="replace")
    assert "larger than the gateway's limit" in tail, tail[-1000:]
    if client.startswith("openai"):
        last = [line for line in tail.splitlines() if line.startswith("data:")][-1]
        assert json.loads(last[5:])["error"]["message"], last
    else:
        assert "event: error" in tail, tail[-1000:]
        # The client never saw the oversized event (translation decodes whole events only).
        assert len(received) < 64 * 1024, len(received)
    row = usage_row(matrix, since, "sse-huge")
    assert row["outcome"] == "interrupted" and "larger than" in (row["error"] or ""), row
    assert matrix.gw.proc.poll() is None


@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_garbage_events_end_the_stream_or_pass_as_sent(
    matrix: Matrix, hostile_sse: tuple[HostileSseUpstream, str], client: str
) -> None:
    upstream, key = hostile_sse
    since = matrix.now_ms()
    received, took = stream_body(client, "sse-garbage", key, matrix.url)
    print(f"sse-garbage via {client}: {len(received)} bytes in {took:.2f} s")
    assert took < ANSWER_WITHIN_S
    if client == "openai":
        # Same protocol: the bytes are the provider's, relayed as they came.
        assert b"garbage" in received and received.endswith(b"data: [DONE]\n\n"), received[-300:]
    else:
        text = received.decode(errors="replace")
        assert "event: error" in text and "could not read" in text, text[-1000:]
    row = usage_row(matrix, since, "sse-garbage")
    assert row["outcome"] in ("completed", "upstream_error"), row
