"""Checks of the four-protocol mock provider itself, without the gateway.

The protocol-matrix tests trust the mock twice: that it answers in each protocol's real wire
shape (so a gateway that decodes it decodes the real thing) and that it refuses what the real
APIs refuse (so a translation bug shows up as a 400 instead of passing silently). These tests
hit every endpoint directly with httpx and check both.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import mock_providers as mp
import pytest

KEY = "sk-mock-selftest"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def mock() -> Iterator[mp.MockProviders]:
    with mp.MockProviders(key=KEY) as server:
        yield server


@pytest.fixture
def http(mock: mp.MockProviders) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock.url, timeout=10) as client:
        yield client


OPENAI = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
GEMINI = {"x-goog-api-key": KEY}


def sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each SSE event, whatever the line ending."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            out.append((event, "\n".join(data)))
    return out


def assert_openai_error(r: httpx.Response, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    assert needle in body["error"]["message"], body


def assert_anthropic_error(r: httpx.Response, status: int, needle: str, kind: str = "invalid_request_error") -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    assert needle in body["error"]["message"], body


def assert_gemini_error(r: httpx.Response, status: int, needle: str, code: str = "INVALID_ARGUMENT") -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["status"] == code, err
    assert needle in err["message"], err


# -- OpenAI Chat ----------------------------------------------------------------------------------


def chat(http: httpx.Client, messages: list[Any], **extra: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", headers=OPENAI, json={"model": "mock-chat", "messages": messages, **extra})


def test_chat_echo_with_usage(http: httpx.Client, mock: mp.MockProviders) -> None:
    r = chat(http, [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}], x_vendor=1)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "echo: hello there"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == mp.INPUT_TOKENS
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == mp.CACHED_TOKENS
    rec = mock.last("openai_chat")
    assert rec.model == "mock-chat" and rec.json["x_vendor"] == 1 and rec.status == 200


def test_chat_stream_pieces_and_usage_chunk(http: httpx.Client) -> None:
    r = chat(http, [{"role": "user", "content": "one two three"}], stream=True, stream_options={"include_usage": True})
    events = [d for _, d in sse(r.text)]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(d) for d in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: one two three"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 3
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == mp.OUTPUT_TOKENS
    plain = chat(http, [{"role": "user", "content": "x"}], stream=True)
    assert all(json.loads(d)["choices"] for _, d in sse(plain.text)[:-1]), "no usage chunk unless asked"


def test_chat_tool_round_trip_and_parallel_calls(http: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    r = chat(http, [{"role": "user", "content": "use tool twice please"}], tools=tools)
    msg = r.json()["choices"][0]["message"]
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    calls = msg["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Berlin"}]
    history = [
        {"role": "user", "content": "use tool twice please"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": [{"type": "text", "text": "rainy"}]},
    ]
    again = chat(http, history, tools=tools)
    assert again.json()["choices"][0]["message"]["content"] == "tool said: sunny | rainy"

    streamed = chat(http, [{"role": "user", "content": "use tool"}], tools=tools, stream=True)
    chunks = [json.loads(d) for _, d in sse(streamed.text)[:-1]]
    deltas = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert deltas[0]["id"].startswith("call_mock") and deltas[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert len(deltas) > 2, "arguments should arrive in several fragments"


def test_chat_image_and_reasoning(http: httpx.Client) -> None:
    content = [{"type": "text", "text": "what is it"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]
    r = chat(http, [{"role": "user", "content": content}], reasoning_effort="low")
    msg = r.json()["choices"][0]["message"]
    assert msg["content"] == f"echo: what is it | image: image/png {len(PNG)} bytes"
    assert msg["reasoning_content"] == mp.REASONING_TEXT
    assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == mp.REASONING_TOKENS


@pytest.mark.parametrize(
    ("messages", "extra", "needle"),
    [
        ([{"role": "wizard", "content": "x"}], {}, "Invalid value: 'wizard'"),
        ([], {}, "too short"),
        ([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_1", "content": "r"}], {}, "preceeding message with 'tool_calls'"),
        (
            [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
            {},
            "did not have response messages: c1",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}]}, {"role": "tool", "tool_call_id": "c1", "content": "r"}],
            {},
            "expected a string",
        ),
        ([{"role": "user", "content": "x"}], {"thinking": {"type": "enabled"}}, "Unrecognized request argument supplied: thinking"),
        ([{"role": "user", "content": "x"}], {"stream_options": {"include_usage": True}}, "only allowed when 'stream' is enabled"),
        ([{"role": "user", "content": "x"}], {"tools": [{"type": "function", "name": "f"}]}, "tools[0].function"),
    ],
    ids=["bad-role", "no-messages", "orphan-tool-result", "unanswered-call", "object-arguments", "foreign-field", "stream-options", "flat-tool"],
)
def test_chat_is_strict(http: httpx.Client, messages: list[Any], extra: dict[str, Any], needle: str) -> None:
    assert_openai_error(chat(http, messages, **extra), 400, needle)


def test_chat_fail_model_and_auth(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", headers=OPENAI, json={"model": "fail-429", "messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 429, mp.FAIL_MESSAGE)
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert_openai_error(http.post("/v1/chat/completions", json={"model": "m", "messages": []}), 401, "API key")
    wrong = http.post("/v1/chat/completions", headers={"Authorization": "Bearer nope"}, json={"model": "m", "messages": []})
    assert_openai_error(wrong, 401, "Incorrect API key")


# -- OpenAI Responses -----------------------------------------------------------------------------


def responses(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/responses", headers=OPENAI, json={"model": "mock-responses", **body})


def test_responses_non_stream_and_previous_response_id(http: httpx.Client) -> None:
    r = responses(http, input="hi there", instructions="be brief", metadata={"a": "b"})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "response" and body["status"] == "completed"
    [message] = body["output"]
    assert message["type"] == "message" and message["content"][0] == {"type": "output_text", "text": "echo: hi there", "annotations": [], "logprobs": []}
    assert body["usage"]["input_tokens_details"]["cached_tokens"] == mp.CACHED_TOKENS
    assert body["usage"]["total_tokens"] == mp.INPUT_TOKENS + mp.OUTPUT_TOKENS
    follow = responses(http, previous_response_id=body["id"], input=[{"role": "user", "content": "and now"}])
    assert follow.json()["output"][0]["content"][0]["text"] == "echo: and now"
    missing = responses(http, previous_response_id="resp_nope", input="x")
    assert_openai_error(missing, 400, "Previous response with id 'resp_nope' not found")


def test_responses_stream_event_sequence(http: httpx.Client) -> None:
    r = responses(http, input=[{"role": "user", "content": [{"type": "input_text", "text": "a b c"}]}], stream=True, reasoning={"effort": "low", "summary": "auto"})
    events = sse(r.text)
    kinds = [e for e, _ in events]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == e for e, d in zip(kinds, data, strict=True)), "event: line and type agree"
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.index("response.reasoning_summary_text.delta") < kinds.index("response.output_text.delta")
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert kind in kinds
    text = "".join(d["delta"] for d in data if d["type"] == "response.output_text.delta")
    assert text == "echo: a b c" and kinds.count("response.output_text.delta") >= 3
    usage = data[-1]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == mp.REASONING_TOKENS and usage["output_tokens"] == mp.OUTPUT_TOKENS


def test_responses_function_calls_stream_and_round_trip(http: httpx.Client) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}]
    r = responses(http, input="use tool twice", tools=tools, stream=True)
    data = [json.loads(d) for _, d in sse(r.text)]
    added = [d["item"] for d in data if d["type"] == "response.output_item.added"]
    assert [a["type"] for a in added] == ["function_call", "function_call"]
    first = [d["delta"] for d in data if d["type"] == "response.function_call_arguments.delta" and d["output_index"] == 0]
    assert len(first) >= 2 and json.loads("".join(first)) == {"city": "Paris"}
    calls = [o for o in data[-1]["response"]["output"] if o["type"] == "function_call"]
    inputs: list[Any] = [{"role": "user", "content": "use tool twice"}]
    inputs += [{"type": "function_call", "call_id": c["call_id"], "name": c["name"], "arguments": c["arguments"]} for c in calls]
    inputs += [{"type": "function_call_output", "call_id": c["call_id"], "output": f"r{i}"} for i, c in enumerate(calls)]
    done = responses(http, input=inputs, tools=tools)
    assert done.json()["output"][0]["content"][0]["text"] == "tool said: r0 | r1"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": "x", "max_tokens": 5}, "Unknown parameter: 'max_tokens'"),
        ({"input": [{"role": "tool", "content": "x"}]}, "Invalid value: 'tool'"),
        ({"input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]}, "Invalid value: 'input_text'"),
        ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "r"}]}, "No tool call found for function call output with call_id call_x"),
        ({"input": [{"type": "function_call", "call_id": "call_y", "name": "f", "arguments": "{}"}]}, "No tool output found for function call call_y"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "sig-mock"}]}, "could not be verified"),
        ({"input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].name"),
    ],
    ids=["unknown-param", "bad-role", "assistant-input-text", "orphan-output", "unanswered-call", "foreign-reasoning", "nested-tool"],
)
def test_responses_is_strict(http: httpx.Client, body: dict[str, Any], needle: str) -> None:
    assert_openai_error(responses(http, **body), 400, needle)


def test_responses_input_tokens(http: httpx.Client) -> None:
    r = http.post("/v1/responses/input_tokens", headers=OPENAI, json={"model": "m", "input": "x"})
    assert r.json() == {"object": "response.input_tokens", "input_tokens": mp.COUNT_TOKENS}


# -- Anthropic Messages ---------------------------------------------------------------------------


def messages(http: httpx.Client, msgs: list[Any], headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    body = {"model": "claude-mock", "max_tokens": 2048, "messages": msgs, **extra}
    return http.post("/v1/messages", headers=ANTHROPIC if headers is None else headers, json=body)


def test_anthropic_non_stream_usage_and_image(http: httpx.Client) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
    r = messages(http, [{"role": "user", "content": [{"type": "text", "text": "look"}, image]}], system="short", metadata={"user_id": "u"})
    body = r.json()
    assert r.status_code == 200 and body["type"] == "message" and body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": f"echo: look | image: image/png {len(PNG)} bytes"}]
    assert body["usage"]["input_tokens"] == mp.INPUT_TOKENS - mp.CACHED_TOKENS
    assert body["usage"]["cache_read_input_tokens"] == mp.CACHED_TOKENS


def test_anthropic_stream_with_thinking_and_tool_use(http: httpx.Client) -> None:
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    r = messages(http, [{"role": "user", "content": "use tool"}], tools=tools, stream=True, thinking={"type": "enabled", "budget_tokens": 1024})
    events = sse(r.text)
    kinds = [e for e, _ in events]
    data = [json.loads(d) for _, d in events]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [d["content_block"] for d in data if d["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["thinking", "tool_use"]
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    assert {"type": "signature_delta", "signature": mp.ANTHROPIC_SIGNATURE} in deltas
    args = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    assert json.loads(args) == {"city": "Paris"}
    assert data[-2]["delta"]["stop_reason"] == "tool_use" and data[-2]["usage"]["output_tokens"] == mp.OUTPUT_TOKENS
    assert data[0]["message"]["usage"]["input_tokens"] == mp.INPUT_TOKENS - mp.CACHED_TOKENS

    tool_use = {"type": "tool_use", "id": starts[1]["id"], "name": "get_weather", "input": {"city": "Paris"}}
    thinking = {"type": "thinking", "thinking": mp.REASONING_TEXT, "signature": mp.ANTHROPIC_SIGNATURE}
    history = [
        {"role": "user", "content": "use tool"},
        {"role": "assistant", "content": [thinking, tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "sunny"}]},
    ]
    done = messages(http, history, tools=tools, thinking={"type": "enabled", "budget_tokens": 1024})
    assert done.json()["content"][-1] == {"type": "text", "text": "tool said: sunny"}
    unsigned = [history[0], {"role": "assistant", "content": [tool_use]}, history[2]]
    r = messages(http, unsigned, tools=tools, thinking={"type": "enabled", "budget_tokens": 1024})
    assert_anthropic_error(r, 400, "must start with a thinking block")


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}


@pytest.mark.parametrize(
    ("msgs", "extra", "needle"),
    [
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {}, "roles must alternate"),
        ([{"role": "system", "content": "a"}], {}, "top-level `system` parameter"),
        ([{"role": "user", "content": ""}], {}, "non-empty content"),
        ([{"role": "user", "content": [{"type": "text", "text": " "}]}], {}, "non-whitespace"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": [TOOL_USE]}, {"role": "user", "content": "b"}], {}, "without `tool_result` blocks"),
        ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "r"}]}], {}, "unexpected `tool_use_id`"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": [TOOL_USE]}, {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "tool_result", "tool_use_id": "toolu_1"}]}],
            {},
            "must come first",
        ),
        ([{"role": "user", "content": "a"}], {"reasoning_effort": "high"}, "reasoning_effort: Extra inputs are not permitted"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "c2ln"}, {"type": "text", "text": "b"}]}, {"role": "user", "content": "c"}],
            {},
            "Invalid `signature`",
        ),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], {}, "does not match any of the expected tags"),
        ([{"role": "user", "content": "a"}], {"thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 0.2}, "temperature"),
    ],
    ids=["not-alternating", "system-role", "empty", "whitespace", "unanswered-tool-use", "orphan-result", "result-not-first", "foreign-field", "foreign-signature", "openai-part", "thinking-temperature"],
)
def test_anthropic_is_strict(http: httpx.Client, msgs: list[Any], extra: dict[str, Any], needle: str) -> None:
    assert_anthropic_error(messages(http, msgs, **extra), 400, needle)


def test_anthropic_headers_max_tokens_and_failures(http: httpx.Client) -> None:
    one = [{"role": "user", "content": "a"}]
    assert_anthropic_error(messages(http, one, headers={"x-api-key": KEY}), 400, "anthropic-version")
    assert_anthropic_error(messages(http, one, headers={"anthropic-version": "2023-06-01"}), 401, "x-api-key", "authentication_error")
    assert messages(http, one, headers={"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}).status_code == 200
    assert_anthropic_error(messages(http, one, headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"}), 401, "x-api-key", "authentication_error")
    no_max = http.post("/v1/messages", headers=ANTHROPIC, json={"model": "claude-mock", "messages": one})
    assert_anthropic_error(no_max, 400, "max_tokens: Field required")
    fail = http.post("/v1/messages", headers=ANTHROPIC, json={"model": "fail-529", "max_tokens": 5, "messages": one})
    assert_anthropic_error(fail, 529, mp.FAIL_MESSAGE, "overloaded_error")
    limited = http.post("/v1/messages", headers=ANTHROPIC, json={"model": "fail-429", "max_tokens": 5, "messages": one})
    assert_anthropic_error(limited, 429, mp.FAIL_MESSAGE, "rate_limit_error")


def test_anthropic_count_tokens(http: httpx.Client) -> None:
    body = {"model": "claude-mock", "messages": [{"role": "user", "content": "a"}], "system": "s"}
    r = http.post("/v1/messages/count_tokens", headers=ANTHROPIC, json=body)
    assert r.json() == {"input_tokens": mp.COUNT_TOKENS}
    bad = http.post("/v1/messages/count_tokens", headers=ANTHROPIC, json={**body, "max_tokens": 5})
    assert_anthropic_error(bad, 400, "max_tokens: Extra inputs are not permitted")


# -- Gemini ---------------------------------------------------------------------------------------


def generate(http: httpx.Client, body: dict[str, Any], method: str = "generateContent", model: str = "gemini-mock", query: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return http.post(f"/v1beta/models/{model}:{method}{query}", headers=GEMINI if headers is None else headers, json=body)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def test_gemini_non_stream_with_thoughts_and_image(http: httpx.Client, mock: mp.MockProviders) -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "short"}]},
        "contents": [{"role": "user", "parts": [{"text": "see"}, {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024}, "maxOutputTokens": 100},
    }
    r = generate(http, body)
    data = r.json()
    parts = data["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and base64.b64decode(parts[0]["thoughtSignature"])
    assert parts[1] == {"text": f"echo: see | image: image/png {len(PNG)} bytes"}
    assert data["candidates"][0]["finishReason"] == "STOP"
    usage = data["usageMetadata"]
    assert usage["promptTokenCount"] == mp.INPUT_TOKENS and usage["thoughtsTokenCount"] == mp.REASONING_TOKENS
    assert usage["candidatesTokenCount"] + usage["thoughtsTokenCount"] == mp.OUTPUT_TOKENS
    assert mock.last("gemini").model == "gemini-mock"
    # snake_case proto names are accepted too, like the real API
    snake = generate(http, {"system_instruction": {"parts": [{"text": "s"}]}, "contents": [user("x")], "generation_config": {"max_output_tokens": 5}})
    assert snake.status_code == 200, snake.text


def test_gemini_sse_and_json_array_streams(http: httpx.Client) -> None:
    r = generate(http, {"contents": [user("a b c")]}, "streamGenerateContent", query="?alt=sse")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "\r\n\r\n" in r.text, "Google frames SSE events with CRLF"
    chunks = [json.loads(d) for _, d in sse(r.text)]
    assert len(chunks) >= 3
    assert "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"]) == "echo: a b c"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == mp.OUTPUT_TOKENS
    array = generate(http, {"contents": [user("a b c")]}, "streamGenerateContent")
    assert array.headers["content-type"].startswith("application/json")
    parsed = json.loads(array.text)
    assert isinstance(parsed, list) and len(parsed) == len(chunks)


def test_gemini_function_calls_and_round_trip(http: httpx.Client) -> None:
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_SCHEMA}]}]
    r = generate(http, {"contents": [user("use tool twice")], "tools": tools})
    parts = r.json()["candidates"][0]["content"]["parts"]
    assert parts == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Berlin"}}},
    ]
    history = [
        user("use tool twice"),
        {"role": "model", "parts": parts},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "rainy"}}},
        ]},
    ]  # fmt: skip
    done = generate(http, {"contents": history, "tools": tools})
    assert done.json()["candidates"][0]["content"]["parts"] == [{"text": "tool said: sunny | rainy"}]
    # Google's documented placeholder for calls no Gemini model made is accepted.
    skip = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "skip_thought_signature_validator"}
    placeholder = [user("use tool"), {"role": "model", "parts": [skip]}, {"role": "user", "parts": [history[2]["parts"][0]]}]
    assert generate(http, {"contents": placeholder, "tools": tools}).status_code == 200


CALL = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user, model"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [user("x")], "messages": []}, 'Unknown name "messages"'),
        ({"contents": [{"role": "user", "parts": [{"type": "text", "text": "x"}]}]}, 'Unknown name "type"'),
        ({"contents": [{"role": "user", "parts": [{"thoughtSignature": "c2ln"}]}]}, "required oneof field 'data'"),
        ({"contents": [{"role": "user", "parts": [{"text": "x", "functionCall": {"name": "f"}}]}]}, "Oneof field 'data' is already set"),
        ({"contents": [user("x"), CALL, user("y")]}, "number of function response parts"),
        ({"contents": [user("x"), CALL, {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "ok"}}]}]}, "google.protobuf.Struct"),
        ({"contents": [user("x"), {"role": "model", "parts": [{"text": "hm"}]}, CALL]}, "comes immediately after a user turn"),
        ({"contents": [user("x"), {"role": "model", "parts": [{"text": "y", "thoughtSignature": "sig.mock!"}]}, user("z")]}, "Base64 decoding failed"),
        ({"contents": [user("x"), {"role": "model", "parts": [{"text": "y", "thoughtSignature": "sig-mock"}]}, user("z")]}, "Thought signature is not valid"),
        (
            {"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {**WEATHER_SCHEMA, "additionalProperties": False}}]}]},
            'Unknown name "additionalProperties"',
        ),
        ({"contents": [user("x")], "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
    ],
    ids=["no-contents", "bad-role", "empty-parts", "unknown-field", "openai-part", "no-data", "two-data", "unanswered-call", "string-response", "call-after-model", "non-base64-signature", "foreign-signature", "json-schema-keyword", "unknown-generation-field"],
)
def test_gemini_is_strict(http: httpx.Client, body: dict[str, Any], needle: str) -> None:
    assert_gemini_error(generate(http, body), 400, needle)


def test_gemini_keys_failures_and_count_tokens(http: httpx.Client) -> None:
    body = {"contents": [user("x")]}
    assert generate(http, body, query=f"?key={KEY}", headers={}).status_code == 200
    assert_gemini_error(generate(http, body, headers={}), 403, "API Key", "PERMISSION_DENIED")
    assert_gemini_error(generate(http, body, headers={"x-goog-api-key": "wrong"}), 400, "API key not valid")
    assert_gemini_error(generate(http, body, model="fail-429"), 429, mp.FAIL_MESSAGE, "RESOURCE_EXHAUSTED")
    assert_gemini_error(generate(http, body, model="fail-500"), 500, mp.FAIL_MESSAGE, "INTERNAL")
    counted = generate(http, body, "countTokens")
    assert counted.json()["totalTokens"] == mp.COUNT_TOKENS
    wrapped = generate(http, {"generateContentRequest": {"model": "models/gemini-mock", **body}}, "countTokens")
    assert wrapped.json()["totalTokens"] == mp.COUNT_TOKENS
    assert_gemini_error(generate(http, {**body, "generateContentRequest": body}, "countTokens"), 400, "cannot both be set")


# -- model lists ----------------------------------------------------------------------------------


def test_model_lists_in_each_shape(http: httpx.Client) -> None:
    openai_list = http.get("/v1/models", headers=OPENAI).json()
    assert openai_list["object"] == "list" and openai_list["data"][0]["object"] == "model"
    anthropic_list = http.get("/v1/models", headers=ANTHROPIC).json()
    assert anthropic_list["data"][0]["type"] == "model" and anthropic_list["has_more"] is False
    gemini_list = http.get("/v1beta/models", headers=GEMINI).json()
    assert gemini_list["models"][0]["name"] == "models/gemini-mock"
    assert http.get("/v1/models", params={"key": KEY}).json() == gemini_list, "google-genai 3 lists /v1/models"
    assert "generateContent" in gemini_list["models"][0]["supportedGenerationMethods"]


def test_request_record(http: httpx.Client, mock: mp.MockProviders) -> None:
    http.post("/v1beta/models/gemini-mock:streamGenerateContent?alt=sse&key=" + KEY, json={"contents": [user("rec")]})
    rec = mock.last("gemini", ":streamGenerateContent")
    assert rec.method == "POST" and rec.query == {"alt": "sse", "key": KEY}
    assert rec.json == {"contents": [user("rec")]} and rec.model == "gemini-mock" and rec.status == 200


# -- the official SDKs read the mock directly ---------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai_chat", "openai_responses", "anthropic_messages", "gemini"])
def test_official_sdks_talk_to_the_mock(mock: mp.MockProviders, protocol: str) -> None:
    """The matrix's SDK drivers pointed straight at the mock: the SDKs accept its wire shapes
    (streams included), so what fails through the gateway is the gateway's doing."""
    from types import SimpleNamespace

    import test_protocol_matrix as tm

    direct = SimpleNamespace(gw=SimpleNamespace(v1=f"{mock.url}/v1", url=mock.url))
    drive = tm.DRIVERS[protocol](direct, KEY)  # type: ignore[arg-type]
    plain = drive.ask("hello sdk")
    assert plain.text == "echo: hello sdk" and plain.usage == tm.USAGE
    streamed = drive.ask("one two three", stream=True)
    assert streamed.text == "echo: one two three" and streamed.text_pieces >= 3 and streamed.usage == tm.USAGE
    first, final = drive.tool_round_trip("use tool", False)
    assert [c.args for c in first.calls] == [{"city": "Paris"}] and final.text == "tool said: sunny in Paris"
    first, final = drive.tool_round_trip("use tool twice", True)
    assert [c.args for c in first.calls] == [{"city": "Paris"}, {"city": "Berlin"}]
    assert final.text == "tool said: sunny in Paris | cloudy in Berlin"
    assert drive.ask_image("pic").text == f"echo: pic | image: image/png {len(PNG)} bytes"
    thinker = tm.DRIVERS[protocol](direct, KEY, reasoning=True)  # type: ignore[arg-type]
    for stream in (False, True):
        thought = thinker.ask("hmm", stream=stream)
        assert thought.text == "echo: hmm" and mp.REASONING_TEXT in thought.reasoning, thought
    first, final = thinker.tool_round_trip("use tool", False)
    assert final.text == "tool said: sunny in Paris", "reasoning replayed the client's way is accepted"
