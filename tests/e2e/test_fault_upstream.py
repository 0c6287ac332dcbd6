"""The fault-injecting upstream on its own, driven with httpx (no gateway).

The routing tests trust this server to fail exactly as programmed and to count exactly; these
tests pin that down: each fault kind in both protocols, ``times=N`` expiring, ``ANY_KEY``, the
record and counters, the model list and the OCF node table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import fault_upstream as fu
import httpx
import pytest
from fault_upstream import FaultUpstream

KEY_A = "sk-fault-a"
KEY_B = "sk-fault-b"


@pytest.fixture
def up() -> Iterator[FaultUpstream]:
    with FaultUpstream(name="one", models=["shared-model", "only-one"], peers={"peer-1": ["ocf-model"]}) as server:
        yield server


def chat(up: FaultUpstream, key: str | None, stream: bool = False, usage: bool = False, timeout: float = 10) -> httpx.Response:
    body: dict = {"model": "shared-model", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{up.base_url}/chat/completions", json=body, headers=headers, timeout=timeout)


def messages(up: FaultUpstream, key: str, stream: bool = False, timeout: float = 10) -> httpx.Response:
    body: dict = {"model": "shared-model", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return httpx.post(f"{up.base_url}/messages", json=body, headers=headers, timeout=timeout)


def sse_data(text: str) -> list[dict | str]:
    out: list[dict | str] = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -- normal answers --------------------------------------------------------------------------


def test_openai_plain_answer_names_server_and_key(up: FaultUpstream) -> None:
    r = chat(up, KEY_A)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "served by one with sk-fault-a"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert body["model"] == "shared-model"
    [rec] = up.requests
    assert (rec.key, rec.model, rec.stream, rec.protocol, rec.served, rec.status) == (
        KEY_A, "shared-model", False, "openai_chat", True, 200
    )
    assert up.served == 1 and up.count_by_key() == {KEY_A: 1}


def test_openai_stream_with_usage_chunk(up: FaultUpstream) -> None:
    r = chat(up, KEY_B, stream=True, usage=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == fu.answer_text("one", KEY_B)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == fu.TOTAL_TOKENS
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)
    rec = up.generations[0]
    assert rec.stream and rec.served


def test_openai_stream_without_usage_has_no_usage_chunk(up: FaultUpstream) -> None:
    chunks = [e for e in sse_data(chat(up, KEY_A, stream=True).text) if isinstance(e, dict)]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_anthropic_plain_and_stream(up: FaultUpstream) -> None:
    r = messages(up, KEY_A)
    assert r.status_code == 200, r.text
    msg = r.json()
    assert msg["content"] == [{"type": "text", "text": "served by one with sk-fault-a"}]
    assert msg["usage"] == {"input_tokens": 10, "output_tokens": 5}
    r = messages(up, KEY_B, stream=True)
    events = sse_data(r.text)
    kinds = [e["type"] for e in events if isinstance(e, dict)]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "event: message_start" in r.text
    text = "".join(e["delta"]["text"] for e in events if isinstance(e, dict) and e["type"] == "content_block_delta")
    assert text == "served by one with sk-fault-b"
    delta = next(e for e in events if isinstance(e, dict) and e["type"] == "message_delta")
    assert delta["usage"]["output_tokens"] == 5
    assert up.count_by_key() == {KEY_A: 1, KEY_B: 1}
    assert [r.protocol for r in up.generations] == ["anthropic_messages"] * 2


def test_bearer_key_on_messages_and_no_key(up: FaultUpstream) -> None:
    r = httpx.post(
        f"{up.base_url}/messages",
        json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": "Bearer sk-bearer"},
    )
    assert r.json()["content"][0]["text"] == "served by one with sk-bearer"
    assert chat(up, None).json()["choices"][0]["message"]["content"] == "served by one with <no key>"
    assert up.count_by_key() == {"sk-bearer": 1, "<no key>": 1}


def test_ocf_style_paths_are_served(up: FaultUpstream) -> None:
    r = httpx.post(
        f"{up.url}/v1/service/llm/v1/chat/completions",
        json={"model": "ocf-model", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert r.status_code == 200 and up.generations[0].model == "ocf-model"


def test_required_keys(up: FaultUpstream) -> None:
    up.keys = {KEY_A}
    assert chat(up, KEY_A).status_code == 200
    r = chat(up, KEY_B)
    assert r.status_code == 401 and not up.generations[-1].served
    assert up.served == 1


# -- discovery endpoints ------------------------------------------------------------------------


def test_models_list_both_shapes(up: FaultUpstream) -> None:
    openai_shape = httpx.get(f"{up.base_url}/models", headers={"Authorization": f"Bearer {KEY_A}"}).json()
    assert [m["id"] for m in openai_shape["data"]] == ["shared-model", "only-one"]
    assert openai_shape["object"] == "list"
    anthropic_shape = httpx.get(
        f"{up.base_url}/models", headers={"x-api-key": KEY_A, "anthropic-version": "2023-06-01"}
    ).json()
    assert [m["id"] for m in anthropic_shape["data"]] == ["shared-model", "only-one"]
    assert anthropic_shape["has_more"] is False and anthropic_shape["data"][0]["type"] == "model"
    up.models = ["changed"]
    assert [m["id"] for m in httpx.get(f"{up.base_url}/models").json()["data"]] == ["changed"]
    # GETs are recorded but are not generations and consume no fault.
    assert len(up.requests) == 3 and up.generations == [] and up.count_by_key() == {}


def test_models_list_ignores_faults(up: FaultUpstream) -> None:
    up.fail(KEY_A, "500")
    assert httpx.get(f"{up.base_url}/models", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
    assert up.rule(KEY_A) == ("500", None)


def test_dnt_table(up: FaultUpstream) -> None:
    up.peers["peer-2"] = ["ocf-model", "other-model"]
    table = httpx.get(f"{up.url}/v1/dnt/table").json()
    assert set(table) == {"/peer-1", "/peer-2"}
    peer = table["/peer-2"]
    assert peer["id"] == "peer-2" and peer["connected"] is True
    [service] = peer["service"]
    assert service["name"] == "llm" and service["identity_group"] == ["model=ocf-model", "model=other-model"]
    assert table["/peer-1"]["service"][0]["identity_group"] == ["model=ocf-model"]


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,status", [("429", 429), ("500", 500), ("401", 401)])
def test_status_faults_in_both_protocols(up: FaultUpstream, kind: str, status: int) -> None:
    up.fail(KEY_A, kind)
    r = chat(up, KEY_A)
    assert r.status_code == status
    assert r.json()["error"]["message"].startswith(fu.FAIL_MESSAGE)
    assert "retry-after" not in r.headers
    r = messages(up, KEY_A)
    assert r.status_code == status
    assert r.json()["type"] == "error" and r.json()["error"]["type"]
    # The other key is untouched.
    assert chat(up, KEY_B).status_code == 200
    recs = up.generations
    assert [(r.key, r.fault, r.status, r.served) for r in recs] == [
        (KEY_A, kind, status, False),
        (KEY_A, kind, status, False),
        (KEY_B, None, 200, True),
    ]
    assert up.served == 1 and up.count_by_key() == {KEY_A: 2, KEY_B: 1}
    assert up.served_by_key() == {KEY_B: 1}


def test_429_with_retry_after(up: FaultUpstream) -> None:
    up.fail(KEY_A, "429", retry_after=2)
    r = chat(up, KEY_A)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert messages(up, KEY_A).headers["retry-after"] == "2"


def test_times_expires_and_clear(up: FaultUpstream) -> None:
    up.fail(KEY_A, "500", times=2)
    assert [chat(up, KEY_A).status_code for _ in range(4)] == [500, 500, 200, 200]
    assert up.rule(KEY_A) is None
    up.fail(KEY_A, "429")
    assert [chat(up, KEY_A).status_code for _ in range(3)] == [429, 429, 429]
    up.clear(KEY_A)
    assert chat(up, KEY_A).status_code == 200
    up.fail(KEY_A, "500")
    up.fail(KEY_B, "500")
    up.clear()
    assert chat(up, KEY_A).status_code == 200 and chat(up, KEY_B).status_code == 200
    assert up.count_by_key() == {KEY_A: 9, KEY_B: 1}
    assert up.served == 5


def test_a_new_rule_replaces_the_old(up: FaultUpstream) -> None:
    up.fail(KEY_A, "500", times=5)
    up.fail(KEY_A, "401", times=1)
    assert [chat(up, KEY_A).status_code for _ in range(2)] == [401, 200]


def test_any_key_rule_and_own_rule_precedence(up: FaultUpstream) -> None:
    up.fail(fu.ANY_KEY, "500")
    up.fail(KEY_B, "429", times=1)
    assert chat(up, KEY_A).status_code == 500
    assert chat(up, "sk-other").status_code == 500
    assert chat(up, KEY_B).status_code == 429
    # B's own rule is spent: the wildcard applies to it again.
    assert chat(up, KEY_B).status_code == 500
    up.clear(fu.ANY_KEY)
    assert chat(up, KEY_A).status_code == 200


def test_slow_waits_before_headers(up: FaultUpstream) -> None:
    up.fail(KEY_A, "slow", times=1, delay=1.0)
    started = time.monotonic()
    r = chat(up, KEY_A)
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and 0.9 <= elapsed < 5, elapsed
    assert up.generations[0].fault == "slow" and up.generations[0].served
    # A client with a shorter timeout than the delay gives up; the server notices the hang-up.
    up.fail(KEY_A, "slow", times=1)  # slow_seconds = 3
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        chat(up, KEY_A, timeout=0.5)
    assert time.monotonic() - started < 2
    rec = up.generations[1]
    assert rec.done.wait(3), "the server did not notice the client hanging up"
    assert rec.gave_up and not rec.served and rec.status is None
    assert up.served == 1


def test_reset_closes_without_response(up: FaultUpstream) -> None:
    up.fail(KEY_A, "reset", times=2)
    for send in (lambda: chat(up, KEY_A), lambda: messages(up, KEY_A, stream=True)):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            send()
    assert [(r.fault, r.status, r.served) for r in up.generations] == [("reset", None, False)] * 2
    assert chat(up, KEY_A).status_code == 200


def test_die_mid_stream_openai(up: FaultUpstream) -> None:
    up.fail(KEY_A, "die_mid_stream", times=1)
    received = b""
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with httpx.stream(
            "POST",
            f"{up.base_url}/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {KEY_A}"},
            timeout=10,
        ) as r:
            assert r.status_code == 200
            for part in r.iter_bytes():
                received += part
    # The first event arrived, the end never did.
    events = sse_data(received.decode())
    assert len(events) == 1 and events[0]["choices"][0]["delta"]["content"]
    assert b"[DONE]" not in received
    rec = up.generations[0]
    assert rec.fault == "die_mid_stream" and rec.status == 200 and not rec.served
    assert up.served == 0


def test_die_mid_stream_anthropic(up: FaultUpstream) -> None:
    up.fail(KEY_A, "die_mid_stream")
    received = b""
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with httpx.stream(
            "POST",
            f"{up.base_url}/messages",
            json={"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]},
            headers={"x-api-key": KEY_A, "anthropic-version": "2023-06-01"},
            timeout=10,
        ) as r:
            for part in r.iter_bytes():
                received += part
    kinds = [e["type"] for e in sse_data(received.decode()) if isinstance(e, dict)]
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]


def test_die_mid_stream_plain_sends_half_a_body(up: FaultUpstream) -> None:
    up.fail(KEY_A, "die_mid_stream", times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        chat(up, KEY_A)
    assert up.generations[0].status == 200 and not up.generations[0].served
    assert chat(up, KEY_A).status_code == 200


def test_slow_stream_drips(up: FaultUpstream) -> None:
    up.fail(KEY_A, "slow_stream", times=1, delay=0.9)
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{up.base_url}/chat/completions",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {KEY_A}"},
        timeout=10,
    ) as r:
        for _ in r.iter_lines():
            arrivals.append(time.monotonic() - started)
    assert arrivals[0] < 0.5, "the first event should come at once"
    assert arrivals[-1] >= 0.8, arrivals
    assert up.generations[0].served


def test_unknown_kind_and_bad_times(up: FaultUpstream) -> None:
    with pytest.raises(ValueError):
        up.fail(KEY_A, "teapot")
    with pytest.raises(ValueError):
        up.fail(KEY_A, "500", times=0)


def test_concurrent_requests_are_all_counted(up: FaultUpstream) -> None:
    import concurrent.futures

    up.fail(KEY_B, "500", times=5)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: chat(up, KEY_A if i % 2 else KEY_B).status_code, range(40)))
    assert statuses.count(500) == 5 and statuses.count(200) == 35
    assert up.count_by_key() == {KEY_A: 20, KEY_B: 20}
    assert up.served == 35 and up.served_by_key() == {KEY_A: 20, KEY_B: 15}
    assert up.wait_for(40, timeout=1)


def test_stopped_server_refuses_connections() -> None:
    server = FaultUpstream(name="gone").start()
    url = server.base_url
    assert httpx.get(f"{url}/models").status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=2)
