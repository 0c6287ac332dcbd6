"""The official OpenAI Python SDK through the real gateway to a local OpenAI-speaking upstream.

Each test looks at both ends: what the SDK user sees (content, usage, errors as SDK exceptions)
and what the upstream received (the adapter's model, the provider's key, never the client's
``fp-`` key, ``stream_options`` added, unknown fields untouched), plus what the usage log shows.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import mock_openai as m
import openai
import pytest
from conftest import Routed, route

CLIENT_MODEL = "whatever-the-tool-sends"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The fields of a GET /api/usage/recent row the contract promises (more may come).
USAGE_ROW_FIELDS = {
    "ts_ms",
    "adapter",
    "provider_id",
    "model",
    "endpoint",
    "stream",
    "status",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "latency_ms",
    "ttfb_ms",
    "outcome",
    "error",
}


def sdk(routed: Routed, key: str | None = None) -> openai.OpenAI:
    # No retries: a retried request would hide what the gateway answered the first time.
    return openai.OpenAI(base_url=routed.gw.v1, api_key=key or routed.adapter_key, max_retries=0, timeout=30)


def assert_upstream_auth(routed: Routed, rec: m.Recorded) -> None:
    assert rec.header("Authorization") == f"Bearer {routed.provider_key}"
    for name, value in rec.headers:
        assert routed.adapter_key not in value, f"the client's fp- key was forwarded upstream in {name}"
        assert routed.gw.token not in value, f"the management token was forwarded upstream in {name}"


def assert_openai_error_shape(response: httpx.Response | Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    assert err["param"] is None
    return err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_rows(routed: Routed, **match: Any) -> list[dict[str, Any]]:
    def ok(row: dict[str, Any]) -> bool:
        return all(row.get(k) == v for k, v in match.items())

    return routed.gw.api.wait_usage(ok)


# -- chat ------------------------------------------------------------------------------------------


def test_chat_non_stream(routed: Routed) -> None:
    resp = sdk(routed).chat.completions.create(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert resp.choices[0].message.content == m.REPLY_TEXT
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (m.PROMPT_TOKENS, m.COMPLETION_TOKENS)
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == m.CACHED_TOKENS

    rec = routed.mock.last("/v1/chat/completions")
    assert rec.json["model"] == routed.model
    assert rec.json["messages"] == [{"role": "user", "content": "Say hello"}]
    assert "stream_options" not in rec.json, "a non-streaming request must not gain stream_options"
    assert_upstream_auth(routed, rec)

    [row] = routed.gw.api.wait_usage()
    assert USAGE_ROW_FIELDS <= set(row), set(row)
    assert row["provider_id"] == routed.provider_id
    assert row["stream"] is False and row["status"] == 200
    assert row["adapter"] is not None and routed.adapter_key not in str(row)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (
        m.PROMPT_TOKENS,
        m.COMPLETION_TOKENS,
        m.CACHED_TOKENS,
    )
    assert row["error"] is None


def top_level_members(raw: bytes) -> list[bytes]:
    """The raw bytes of each `"name":value` member of a JSON object, exactly as written."""
    members, depth, in_string, escaped, start = [], 0, False, False, 1
    for i, byte in enumerate(raw):
        ch = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                members.append(raw[start:i].strip())
        elif ch == "," and depth == 1:
            members.append(raw[start:i].strip())
            start = i + 1
    return members


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_unknown_fields_reach_upstream_byte_for_byte(routed: Routed, stream: bool) -> None:
    # Spacing, trailing zeros, escapes and vendor fields: a gateway that re-serialised the body
    # would change at least one of them. Only the model's value may differ upstream (and, for a
    # stream, stream_options may be added).
    raw = (FIXTURES / "openai_chat" / "vendor_fields_request.json").read_bytes()
    if stream:
        raw = raw[:-1] + b',"stream":true}'
    members = top_level_members(raw)
    assert members[0] == b'"model":"' + CLIENT_MODEL.encode() + b'"' and len(members) >= 5
    r = httpx.post(
        f"{routed.gw.v1}/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {routed.adapter_key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    rec = routed.mock.last("/v1/chat/completions")
    for member in members[1:]:
        assert member in rec.body, f"{member!r} changed on the way:\n sent {raw!r}\n got  {rec.body!r}"
    assert rec.json["model"] == routed.model
    assert CLIENT_MODEL.encode() not in rec.body
    if stream:
        assert rec.json["stream_options"] == {"include_usage": True}
        assert m.REPLY_PARTS[1] in r.text
    else:
        assert r.json()["choices"][0]["message"]["content"] == m.REPLY_TEXT


@pytest.mark.parametrize(
    "stream_options", [None, {"include_usage": False}], ids=["no-options", "include-false"]
)
def test_chat_stream_without_usage_chunk(routed: Routed, stream_options: dict[str, Any] | None) -> None:
    extra: dict[str, Any] = {} if stream_options is None else {"stream_options": stream_options}
    chunks = list(
        sdk(routed).chat.completions.create(
            model=CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, **extra
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == m.REPLY_TEXT
    assert all(c.choices for c in chunks), (
        "the usage-only chunk (choices: []) reached a client that did not ask for it"
    )
    assert all(c.usage is None for c in chunks), "the client got usage it did not ask for"

    rec = routed.mock.last("/v1/chat/completions")
    assert rec.json["stream"] is True
    assert rec.json.get("stream_options", {}).get("include_usage") is True, (
        "the gateway must ask the upstream for usage so it can record it"
    )
    assert rec.json["model"] == routed.model
    assert_upstream_auth(routed, rec)

    [row] = routed.gw.api.wait_usage()
    assert row["stream"] is True and row["status"] == 200
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (
        m.PROMPT_TOKENS,
        m.COMPLETION_TOKENS,
        m.CACHED_TOKENS,
    )


def test_chat_stream_raw_sse_ends_with_done_and_no_usage(routed: Routed) -> None:
    with httpx.stream(
        "POST",
        f"{routed.gw.v1}/chat/completions",
        json={"model": CLIENT_MODEL, "messages": [], "stream": True},
        headers={"Authorization": f"Bearer {routed.adapter_key}"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    data = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert data.count("[DONE]") == 1
    for event in data[:-1]:
        parsed = json.loads(event)
        assert parsed["choices"], f"usage-only chunk leaked: {event}"
        assert not parsed.get("usage"), f"usage leaked: {event}"


def test_chat_stream_with_include_usage(routed: Routed) -> None:
    chunks = list(
        sdk(routed).chat.completions.create(
            model=CLIENT_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == m.REPLY_TEXT
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1, "exactly one usage chunk expected"
    usage_chunk = with_usage[0]
    assert usage_chunk is chunks[-1] and usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (
        m.PROMPT_TOKENS,
        m.COMPLETION_TOKENS,
    )
    assert routed.mock.last().json["stream_options"] == {"include_usage": True}
    [row] = routed.gw.api.wait_usage()
    assert (row["input_tokens"], row["output_tokens"]) == (m.PROMPT_TOKENS, m.COMPLETION_TOKENS)


# -- completions, embeddings, models -----------------------------------------------------------------


def test_completions_non_stream(routed: Routed) -> None:
    resp = sdk(routed).completions.create(model=CLIENT_MODEL, prompt="Once upon")
    assert resp.object == "text_completion"
    assert resp.choices[0].text == m.REPLY_TEXT
    assert resp.usage is not None and resp.usage.prompt_tokens == m.PROMPT_TOKENS
    rec = routed.mock.last("/v1/completions")
    assert rec.json["model"] == routed.model and rec.json["prompt"] == "Once upon"
    assert_upstream_auth(routed, rec)
    [row] = routed.gw.api.wait_usage()
    assert (row["input_tokens"], row["output_tokens"]) == (m.PROMPT_TOKENS, m.COMPLETION_TOKENS)


def test_completions_stream(routed: Routed) -> None:
    chunks = list(sdk(routed).completions.create(model=CLIENT_MODEL, prompt="Once upon", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == m.REPLY_TEXT
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    rec = routed.mock.last("/v1/completions")
    assert rec.json["model"] == routed.model
    assert rec.json.get("stream_options", {}).get("include_usage") is True
    [row] = routed.gw.api.wait_usage()
    assert row["stream"] is True
    assert (row["input_tokens"], row["output_tokens"]) == (m.PROMPT_TOKENS, m.COMPLETION_TOKENS)


def test_embeddings(routed: Routed) -> None:
    resp = sdk(routed).embeddings.create(model=CLIENT_MODEL, input=["first", "second"])
    assert len(resp.data) == 2
    for item in resp.data:
        assert item.embedding == pytest.approx(m.expected_embedding(item.index), rel=1e-6)
    assert resp.usage.prompt_tokens == m.EMBEDDING_TOKENS
    rec = routed.mock.last("/v1/embeddings")
    assert rec.json["model"] == routed.model and rec.json["input"] == ["first", "second"]
    assert_upstream_auth(routed, rec)
    [row] = routed.gw.api.wait_usage()
    assert row["input_tokens"] == m.EMBEDDING_TOKENS


def test_models_list_shows_the_adapters_model(routed: Routed) -> None:
    models = list(sdk(routed).models.list())
    assert [(x.id, x.owned_by, x.object) for x in models] == [(routed.model, routed.provider_id, "model")]


def test_x_api_key_header_is_accepted(routed: Routed) -> None:
    r = httpx.post(
        f"{routed.gw.v1}/chat/completions",
        json={"model": CLIENT_MODEL, "messages": []},
        headers={"x-api-key": routed.adapter_key},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    rec = routed.mock.last()
    assert_upstream_auth(routed, rec)
    assert rec.header("x-api-key") is None


# -- client errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["unknown-fp-key", "management-token", "no-key"])
def test_wrong_key_is_401_in_openai_shape(routed: Routed, which: str) -> None:
    keys = {"unknown-fp-key": "fp-" + "0" * 64, "management-token": routed.gw.token, "no-key": None}
    key = keys[which]
    if key is not None:
        with pytest.raises(openai.AuthenticationError) as exc:
            sdk(routed, key).chat.completions.create(
                model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}]
            )
        assert exc.value.status_code == 401
        response = exc.value.response
    else:
        response = httpx.post(
            f"{routed.gw.v1}/chat/completions", json={"model": CLIENT_MODEL, "messages": []}
        )
        assert response.status_code == 401
    assert_openai_error_shape(response)
    assert routed.mock.requests == [], "a request with a bad key must not reach the upstream"


def test_malformed_json_is_400_with_useful_message(routed: Routed) -> None:
    r = httpx.post(
        f"{routed.gw.v1}/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"Authorization": f"Bearer {routed.adapter_key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    err = assert_openai_error_shape(r)
    assert "json" in err["message"].lower(), f"message should say the JSON is bad: {err['message']!r}"
    assert routed.mock.requests == []


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_32_mib_is_413(routed: Routed, framing: str) -> None:
    filler = b"a" * (32 * 1024 * 1024 + 1024)
    body = b'{"model":"x","messages":[{"role":"user","content":"' + filler + b'"}]}'
    content: Any = body
    if framing == "chunked":

        def gen() -> Any:
            for i in range(0, len(body), 1 << 20):
                yield body[i : i + (1 << 20)]

        content = gen()
    r = httpx.post(
        f"{routed.gw.v1}/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {routed.adapter_key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413, r.text[:500]
    assert_openai_error_shape(r)
    assert routed.mock.requests == []


def test_body_just_under_limit_is_forwarded(routed: Routed) -> None:
    filler = "b" * (4 * 1024 * 1024)
    resp = sdk(routed).chat.completions.create(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": filler}]
    )
    assert resp.choices[0].message.content == m.REPLY_TEXT
    assert routed.mock.last().json["messages"][0]["content"] == filler


# -- upstream failures -----------------------------------------------------------------------------


def test_upstream_down_is_502_naming_the_provider(routed: Routed) -> None:
    provider_id = "offline-box"
    routed.gw.api.create_provider(
        provider_id, f"http://127.0.0.1:{closed_port()}/v1", api_key="sk-unused-" + "9" * 20
    )
    key = routed.gw.api.create_adapter(provider_id, "mock-small")["api_key"]
    with pytest.raises(openai.InternalServerError) as exc:
        sdk(routed, key).chat.completions.create(
            model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    err = assert_openai_error_shape(exc.value.response)
    assert provider_id in err["message"], f"502 message should name the provider: {err['message']!r}"
    rows = routed.gw.api.wait_usage(lambda row: row["provider_id"] == provider_id)
    assert rows[0]["status"] == 502 and rows[0]["error"]


@pytest.mark.parametrize("status", [500, 429])
def test_upstream_error_status_passes_through(routed: Routed, status: int) -> None:
    key = routed.add_adapter(f"fail-{status}")
    with pytest.raises(openai.APIStatusError) as exc:
        sdk(routed, key).chat.completions.create(
            model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == status
    body = exc.value.response.json()
    assert body == {
        "error": {
            "message": m.FAIL_MESSAGE,
            "type": "server_error" if status >= 500 else "invalid_request_error",
            "param": None,
            "code": "mock_failure",
        }
    }, "the upstream's error body must reach the client unchanged"
    assert len(routed.mock.requests) == 1
    rows = routed.gw.api.wait_usage()
    assert rows[0]["status"] == status


def test_upstream_error_status_passes_through_when_streaming(routed: Routed) -> None:
    key = routed.add_adapter("fail-500")
    with pytest.raises(openai.InternalServerError) as exc:
        list(
            sdk(routed, key).chat.completions.create(
                model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert exc.value.status_code == 500
    assert exc.value.response.json()["error"]["message"] == m.FAIL_MESSAGE


def test_stream_is_relayed_before_upstream_finishes(routed: Routed) -> None:
    """The first chunk reaches the client while the upstream is still holding the stream open:
    the gateway relays chunk by chunk instead of buffering the whole answer."""
    key = routed.add_adapter("hang-stream")
    stream = sdk(routed, key).chat.completions.create(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    try:
        started = time.monotonic()
        seen = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += chunk.choices[0].delta.content
                break
        assert seen == m.REPLY_PARTS[0]
        assert time.monotonic() - started < 10
        assert not routed.mock.last().done.is_set(), "upstream should still be streaming"
    finally:
        stream.close()


def test_client_disconnect_cancels_upstream_and_usage_is_recorded(routed: Routed) -> None:
    key = routed.add_adapter("hang-stream")
    stream = sdk(routed, key).chat.completions.create(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    rec = routed.mock.last("/v1/chat/completions")
    assert not rec.disconnected.is_set()
    hung_up = time.monotonic()
    stream.close()
    assert rec.disconnected.wait(3), "the upstream request kept running after the client hung up"
    assert rec.disconnected_at is not None and rec.disconnected_at - hung_up < 3
    [row] = routed.gw.api.wait_usage()
    assert row["stream"] is True
    assert row["outcome"] != "completed", row
    assert any(word in row["outcome"] for word in ("client", "cancel", "abort", "disconnect")), row


def test_parallel_streams_each_get_their_own_answer(routed: Routed) -> None:
    """Tools fire requests in parallel: every stream completes whole and is counted once."""
    from concurrent.futures import ThreadPoolExecutor

    client = sdk(routed)

    def one(i: int) -> str:
        chunks = client.chat.completions.create(
            model=CLIENT_MODEL, messages=[{"role": "user", "content": f"n{i}"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(max_workers=12) as pool:
        texts = list(pool.map(one, range(24)))
    assert texts == [m.REPLY_TEXT] * 24
    sent = sorted(r.json["messages"][0]["content"] for r in routed.mock.requests)
    assert sent == sorted(f"n{i}" for i in range(24))
    routed.gw.api.wait_usage(count=24)
    assert len(routed.gw.api.usage_recent(200)) == 24


def test_upstream_connections_are_reused(routed: Routed) -> None:
    """Sequential requests share the gateway's pooled upstream connection instead of opening a
    new one (and paying a TCP handshake) each time."""
    client = sdk(routed)
    # A connection goes back to the pool when the gateway's connection task has seen the end of
    # the answer, which on a loaded machine can be a moment after the client has it all: a
    # request sent in that moment rightly opens a second one. Agents pause between turns;
    # so does this test (it checks reuse, not a race against the pool).
    for _ in range(3):
        client.chat.completions.create(model=CLIENT_MODEL, messages=[])
        time.sleep(0.05)
    for _ in range(3):
        list(client.chat.completions.create(model=CLIENT_MODEL, messages=[], stream=True))
        time.sleep(0.05)
    peers = [r.peer for r in routed.mock.requests]
    assert len(peers) == 6
    assert len(set(peers)) == 1, f"upstream connections used: {peers}"


def test_client_timeout_on_non_stream_cancels_upstream(routed: Routed) -> None:
    """A tool that gives up on a slow non-streaming answer frees the upstream request too."""
    key = routed.add_adapter("slow-8000")
    client = openai.OpenAI(base_url=routed.gw.v1, api_key=key, max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}])
    gave_up = time.monotonic()
    rec = routed.mock.wait_for(lambda r: r.model == "slow-8000")
    assert rec.disconnected.wait(3), "the upstream request kept running after the client gave up"
    assert rec.disconnected_at is not None and rec.disconnected_at - gave_up < 3


def test_request_abandoned_before_the_answer_is_still_recorded(routed: Routed) -> None:
    """Every request shows up in the usage log, also one the client gave up on while the
    upstream was still thinking (nothing had been sent back yet)."""
    key = routed.add_adapter("slow-8000")
    client = openai.OpenAI(base_url=routed.gw.v1, api_key=key, max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}])
    assert routed.mock.wait_for(lambda r: r.model == "slow-8000").disconnected.wait(3)
    [row] = routed.gw.api.wait_usage(timeout=5)
    assert row["outcome"] != "completed", row
    assert row["provider_id"] == routed.provider_id


def test_upstream_dropping_mid_stream_is_not_a_clean_end(routed: Routed) -> None:
    """When the provider's connection dies mid-stream the client must not see a normal end
    ([DONE]) that would pass a truncated answer off as complete; the usage row says so too."""
    key = routed.add_adapter("drop-stream")
    received = b""
    with httpx.stream(
        "POST",
        f"{routed.gw.v1}/chat/completions",
        json={"model": CLIENT_MODEL, "messages": [], "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        try:
            for part in r.iter_bytes():
                received += part
        except httpx.HTTPError:
            pass  # an aborted response is a fine way to say it
    text = received.decode(errors="replace")
    assert m.REPLY_PARTS[1] in text, "chunks sent before the failure should reach the client"
    assert "[DONE]" not in text, f"a cut stream was passed off as complete: {text[-300:]!r}"
    [row] = routed.gw.api.wait_usage()
    assert row["outcome"] != "completed", row
    assert row["stream"] is True


# -- usage switch ----------------------------------------------------------------------------------


def test_usage_off_records_nothing(routed: Routed) -> None:
    client = sdk(routed)
    ask = {"model": CLIENT_MODEL, "messages": [{"role": "user", "content": "x"}]}
    client.chat.completions.create(**ask)
    routed.gw.api.wait_usage(count=1)

    assert routed.gw.api.set_usage_enabled(False)["usage_enabled"] is False
    assert routed.gw.api.get("/api/settings").json()["usage_enabled"] is False
    client.chat.completions.create(**ask)
    list(client.chat.completions.create(**ask, stream=True))
    client.embeddings.create(model=CLIENT_MODEL, input="x")
    assert len(routed.mock.requests) == 4, "the requests themselves must still work with usage off"

    # Turn it back on and make one more request through another provider: once that one is
    # recorded, anything recorded while usage was off would be there too.
    assert routed.gw.api.set_usage_enabled(True)["usage_enabled"] is True
    after = route(routed.gw, routed.mock, routed.provider_key, provider_id="after")
    sdk(routed, after.adapter_key).chat.completions.create(**ask)
    routed.gw.api.wait_usage(lambda row: row["provider_id"] == "after")
    everything = routed.gw.api.usage_recent(200)
    assert len(everything) == 2, f"rows recorded while usage was off: {everything}"
    summary = routed.gw.api.get("/api/usage/summary").json()
    assert summary["today"]["requests"] == 2


def test_usage_summary_counts_today(routed: Routed) -> None:
    client = sdk(routed)
    for _ in range(2):
        client.chat.completions.create(model=CLIENT_MODEL, messages=[{"role": "user", "content": "x"}])
    routed.gw.api.wait_usage(count=2)
    summary = routed.gw.api.get("/api/usage/summary").json()
    today = summary["today"]
    assert today["requests"] == 2
    assert (today["input_tokens"], today["output_tokens"], today["cached_tokens"]) == (
        2 * m.PROMPT_TOKENS,
        2 * m.COMPLETION_TOKENS,
        2 * m.CACHED_TOKENS,
    )
    assert today["errors"] == 0
    assert summary["by_provider"] == [
        {
            "provider_id": routed.provider_id,
            "requests": 2,
            "input_tokens": 2 * m.PROMPT_TOKENS,
            "output_tokens": 2 * m.COMPLETION_TOKENS,
        }
    ]


def test_second_provider_routes_by_adapter_key(routed: Routed) -> None:
    """Two providers, two adapters: each key reaches its own upstream with its own provider key."""
    with m.MockOpenAI() as other_mock:
        other = route(routed.gw, other_mock, "sk-other-" + "7" * 30, provider_id="second", model="mock-large")
        sdk(routed).chat.completions.create(model=CLIENT_MODEL, messages=[])
        sdk(routed, other.adapter_key).chat.completions.create(model=CLIENT_MODEL, messages=[])
        assert [r.json["model"] for r in routed.mock.requests] == [routed.model]
        assert [r.json["model"] for r in other_mock.requests] == ["mock-large"]
        assert other_mock.last().header("Authorization") == "Bearer sk-other-" + "7" * 30
        assert routed.mock.last().header("Authorization") == f"Bearer {routed.provider_key}"
