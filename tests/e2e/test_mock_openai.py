"""Checks of the local upstream itself, without the gateway.

The gateway tests lean on the mock's record (what it received, whether a client hung up); these
show that the record tells the truth, so a gateway test that passes means what it says.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import mock_openai as m
import openai
import pytest


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_chat_non_stream_records_request_and_usage(mock_upstream: m.MockOpenAI) -> None:
    body = b'{"model":"mock-small","messages":[{"role":"user","content":"hi"}],"x_extra":{"a":1}}'
    r = httpx.post(
        f"{mock_upstream.base_url}/chat/completions", content=body, headers={"Authorization": "Bearer sk-x"}
    )
    assert r.status_code == 200
    data = r.json()
    assert data["choices"][0]["message"]["content"] == m.REPLY_TEXT
    assert data["usage"]["prompt_tokens_details"]["cached_tokens"] == m.CACHED_TOKENS
    rec = mock_upstream.last("/v1/chat/completions")
    assert rec.body == body
    assert rec.header("authorization") == "Bearer sk-x"


def test_stream_usage_chunk_only_when_asked(mock_upstream: m.MockOpenAI) -> None:
    req = {"model": "mock-small", "messages": [], "stream": True}
    plain = httpx.post(f"{mock_upstream.base_url}/chat/completions", json=req)
    events = sse_events(plain.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == m.REPLY_TEXT

    asked = httpx.post(
        f"{mock_upstream.base_url}/chat/completions", json={**req, "stream_options": {"include_usage": True}}
    )
    last = json.loads(sse_events(asked.text)[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == m.COMPLETION_TOKENS


def test_official_sdk_against_mock(mock_upstream: m.MockOpenAI) -> None:
    client = openai.OpenAI(base_url=mock_upstream.base_url, api_key="sk-direct", max_retries=0)
    emb = client.embeddings.create(model="mock-embed", input=["a", "b"])
    assert [round(x, 4) for x in emb.data[1].embedding] == [round(x, 4) for x in m.expected_embedding(1)]
    stream = client.completions.create(model="mock-small", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == m.REPLY_TEXT
    assert [x.id for x in client.models.list()] == m.MODELS


def test_fail_model_answers_error_status(mock_upstream: m.MockOpenAI) -> None:
    r = httpx.post(f"{mock_upstream.base_url}/chat/completions", json={"model": "fail-503", "messages": []})
    assert r.status_code == 503
    assert r.json()["error"]["message"] == m.FAIL_MESSAGE


def test_hang_stream_sees_client_disconnect(mock_upstream: m.MockOpenAI) -> None:
    body = json.dumps({"model": "hang-stream", "messages": [], "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", mock_upstream.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    got = b""
    while m.REPLY_PARTS[0].encode() not in got:
        got += sock.recv(4096)
    rec = mock_upstream.last()
    time.sleep(0.5)
    assert not rec.disconnected.is_set(), "the mock must not report a disconnect while the client stays"
    closed = time.monotonic()
    sock.close()
    assert rec.disconnected.wait(3), "the mock did not notice the client hanging up"
    assert rec.closed_early and rec.disconnected_at is not None
    assert rec.disconnected_at - closed < 2


def test_keep_alive_serves_two_requests_on_one_connection(mock_upstream: m.MockOpenAI) -> None:
    with httpx.Client() as client:
        for _ in range(2):
            r = client.post(
                f"{mock_upstream.base_url}/chat/completions",
                json={"model": "mock-small", "messages": [], "stream": True},
            )
            assert r.text.rstrip().endswith("data: [DONE]")
    peers = {rec.peer for rec in mock_upstream.requests}
    assert len(mock_upstream.requests) == 2 and len(peers) == 1


def test_drop_stream_ends_without_done(mock_upstream: m.MockOpenAI) -> None:
    with httpx.stream(
        "POST",
        f"{mock_upstream.base_url}/chat/completions",
        json={"model": "drop-stream", "messages": [], "stream": True},
    ) as r:
        got = b""
        with pytest.raises(httpx.RemoteProtocolError):
            for part in r.iter_bytes():
                got += part
    assert m.REPLY_PARTS[1].encode() in got and b"[DONE]" not in got


def test_slow_notices_a_client_that_gives_up(mock_upstream: m.MockOpenAI) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{mock_upstream.base_url}/chat/completions",
            json={"model": "slow-5000", "messages": []},
            timeout=httpx.Timeout(5, read=0.3),
        )
    assert mock_upstream.last().disconnected.wait(2)
