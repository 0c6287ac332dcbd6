"""Every client protocol against every provider protocol (4 × 4 pairs) through the real gateway,
with the official SDKs as clients and the four-protocol mock as the providers.

For each pair a user must get, in their own SDK's terms: a plain answer, a stream that arrives
in pieces with its usage, a whole tool round trip (call with id/name/arguments, result sent
back under the same id, answer that uses it; two parallel calls in the streamed variant), an
image that reaches the provider, provider failures as the SDK's own error types with the
status kept (429) or turned into 502 (5xx), and a usage row with the tokens; also the finish
reason the client acts on, the system prompt in the provider's place for it, and reasoning
asked for the client's way (shown back, and replayed after a tool call). Same-protocol
pairs must pass the client's fields the gateway does not model through unchanged (fast path).
Then the endpoint-specific parts: ``previous_response_id``, token counting, model lists and
Gemini's ``?key=``.

The mock answers ``echo: <last user text>`` and is as strict as the real APIs, so a translation
that drops, misplaces or invents something shows up as a 400 from the provider (reported in the
client's shape with the provider's message) rather than as a silently wrong answer.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import mock_providers as mp
import openai
import pytest
from conftest import MATRIX_PROTOCOLS, Matrix
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

CLIENT_MODEL = "model-the-client-names"
SHORT = {"openai_chat": "chat", "openai_responses": "responses", "anthropic_messages": "anthropic", "gemini": "gemini"}
PAIRS = [(c, p) for c in MATRIX_PROTOCOLS for p in MATRIX_PROTOCOLS]
PAIR_IDS = [f"{SHORT[c]}-to-{SHORT[p]}" for c, p in PAIRS]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()
RESULTS = ["sunny in Paris", "cloudy in Berlin"]
TOOL_NAME = "get_weather"
TOOL_DESCRIPTION = "The weather in a city"
# What OpenAI-style and Claude Code-style clients send: JSON Schema with keywords Gemini's
# `parameters` refuses, so a Gemini provider needs the gateway to clean (or re-home) them.
JSON_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
    "additionalProperties": False,
}
CLAUDE_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", **JSON_SCHEMA}
GEMINI_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
USAGE = (mp.INPUT_TOKENS, mp.OUTPUT_TOKENS, mp.CACHED_TOKENS)
# How each client protocol says "the model called tools" and "the model is done".
TOOL_FINISH = {"openai_chat": "tool_calls", "openai_responses": "completed", "anthropic_messages": "tool_use", "gemini": "STOP"}
END_FINISH = {"openai_chat": "stop", "openai_responses": "completed", "anthropic_messages": "end_turn", "gemini": "STOP"}


@dataclass
class ToolCall:
    id: str | None
    name: str
    args: dict[str, Any]


@dataclass
class Answer:
    """What a client saw, in protocol-neutral terms."""

    text: str
    # (input incl. cached, output incl. reasoning, cached) as the client's protocol reports them
    usage: tuple[int | None, int | None, int | None] | None = None
    calls: list[ToolCall] = field(default_factory=list)
    text_pieces: int = 0  # non-empty text deltas of a stream
    reasoning: str = ""  # reasoning text shown to the client (thinking, summary, thoughts)
    finish: str | None = None  # finish_reason / status / stop_reason / finishReason as sent


@dataclass
class Failure:
    sdk_error: Exception
    status: int
    body: Any


class Driver:
    """One client protocol, spoken through its official SDK."""

    protocol = ""

    def __init__(self, matrix: Matrix, key: str, reasoning: bool = False):
        self.matrix = matrix
        self.key = key
        # Ask for reasoning the client protocol's way, and replay it the way real clients do.
        self.reasoning = reasoning
        # A system prompt, sent the client protocol's way.
        self.system: str | None = None

    def ask(self, prompt: str, stream: bool = False) -> Answer:
        raise NotImplementedError

    def ask_image(self, prompt: str) -> Answer:
        raise NotImplementedError

    def tool_round_trip(self, prompt: str, stream: bool) -> tuple[Answer, Answer]:
        raise NotImplementedError

    def fail(self) -> Failure:
        raise NotImplementedError


class ChatDriver(Driver):
    protocol = "openai_chat"
    tools = [{"type": "function", "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": JSON_SCHEMA}}]

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.matrix.gw.v1, api_key=self.key, max_retries=0, timeout=30)

    def _create(self, messages: list[Any], stream: bool, **extra: Any) -> Answer:
        client = self.sdk()
        if self.reasoning:
            extra["reasoning_effort"] = "low"
        if not stream:
            r = client.chat.completions.create(model=CLIENT_MODEL, messages=messages, **extra)
            msg = r.choices[0].message
            calls = [ToolCall(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls or []]
            usage = None
            if r.usage is not None:
                details = r.usage.prompt_tokens_details
                usage = (r.usage.prompt_tokens, r.usage.completion_tokens, details.cached_tokens if details else None)
            thinking = getattr(msg, "reasoning_content", None) or ""
            return Answer(msg.content or "", usage, calls, reasoning=thinking, finish=r.choices[0].finish_reason)
        chunks = list(
            client.chat.completions.create(
                model=CLIENT_MODEL, messages=messages, stream=True, stream_options={"include_usage": True}, **extra
            )
        )
        texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        partial: dict[int, dict[str, Any]] = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                slot = partial.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] += tc.function.name or ""
                    slot["args"] += tc.function.arguments or ""
        calls = [ToolCall(s["id"], s["name"], json.loads(s["args"] or "{}")) for _, s in sorted(partial.items())]
        with_usage = [c for c in chunks if c.usage is not None]
        usage = None
        if with_usage:
            u = with_usage[-1].usage
            usage = (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else None)
        thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        return Answer("".join(texts), usage, calls, len(texts), thinking, finishes[-1] if finishes else None)

    def ask(self, prompt: str, stream: bool = False) -> Answer:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return self._create([*system, {"role": "user", "content": prompt}], stream)

    def ask_image(self, prompt: str) -> Answer:
        content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]
        return self._create([{"role": "user", "content": content}], False)

    def tool_round_trip(self, prompt: str, stream: bool) -> tuple[Answer, Answer]:
        messages: list[Any] = [{"role": "user", "content": prompt}]
        first = self._create(messages, stream, tools=self.tools)
        messages.append(
            {
                "role": "assistant",
                "content": first.text or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.args)}}
                    for c in first.calls
                ],
            }
        )
        messages += [{"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(first.calls, RESULTS, strict=False)]
        return first, self._create(messages, False, tools=self.tools)

    def fail(self) -> Failure:
        with pytest.raises(openai.APIStatusError) as info:
            self.sdk().chat.completions.create(model=CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}])
        return Failure(info.value, info.value.status_code, info.value.response.json())


class ResponsesDriver(Driver):
    protocol = "openai_responses"
    tools = [{"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": JSON_SCHEMA, "strict": False}]

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.matrix.gw.v1, api_key=self.key, max_retries=0, timeout=30)

    @staticmethod
    def _answer(response: Any, pieces: int = 0) -> Answer:
        texts: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[str] = []
        for item in response.output:
            if item.type == "reasoning":
                thinking += [s.text for s in item.summary or []]
            elif item.type == "message":
                texts += [c.text for c in item.content if c.type == "output_text"]
            elif item.type == "function_call":
                calls.append(ToolCall(item.call_id, item.name, json.loads(item.arguments or "{}")))
        usage = None
        if response.usage is not None:
            u = response.usage
            usage = (u.input_tokens, u.output_tokens, u.input_tokens_details.cached_tokens if u.input_tokens_details else None)
        return Answer("".join(texts), usage, calls, pieces, "".join(thinking), response.status)

    def _create(self, input_: Any, stream: bool, **extra: Any) -> Answer:
        client = self.sdk()
        self.output: list[Any] = []
        if self.system:
            extra["instructions"] = self.system
        if self.reasoning:
            # As Codex does: stateless, with the encrypted reasoning to replay.
            extra.update(reasoning={"effort": "low", "summary": "auto"}, include=["reasoning.encrypted_content"], store=False)
        if not stream:
            response = client.responses.create(model=CLIENT_MODEL, input=input_, **extra)
            self.output = list(response.output)
            return self._answer(response)
        events = list(client.responses.create(model=CLIENT_MODEL, input=input_, stream=True, **extra))
        deltas = [e.delta for e in events if e.type == "response.output_text.delta" and e.delta]
        completed = [e for e in events if e.type == "response.completed"]
        assert completed, f"the stream ended without response.completed: {[e.type for e in events]}"
        self.output = list(completed[-1].response.output)
        answer = self._answer(completed[-1].response, len(deltas))
        assert "".join(deltas) == answer.text, "the deltas and the completed response disagree"
        return answer

    def ask(self, prompt: str, stream: bool = False) -> Answer:
        return self._create(prompt, stream)

    def ask_image(self, prompt: str) -> Answer:
        content = [{"type": "input_text", "text": prompt}, {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"}]
        return self._create([{"role": "user", "content": content}], False)

    def tool_round_trip(self, prompt: str, stream: bool) -> tuple[Answer, Answer]:
        items: list[Any] = [{"role": "user", "content": prompt}]
        first = self._create(items, stream, tools=self.tools)
        # Reasoning items go back as they came (SDK agents append `response.output`).
        items += [o.model_dump(exclude_none=True) for o in self.output if o.type == "reasoning"]
        items += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": json.dumps(c.args)} for c in first.calls]
        items += [{"type": "function_call_output", "call_id": c.id, "output": r} for c, r in zip(first.calls, RESULTS, strict=False)]
        return first, self._create(items, False, tools=self.tools)

    def fail(self) -> Failure:
        with pytest.raises(openai.APIStatusError) as info:
            self.sdk().responses.create(model=CLIENT_MODEL, input="hi")
        return Failure(info.value, info.value.status_code, info.value.response.json())


class AnthropicDriver(Driver):
    protocol = "anthropic_messages"
    tools = [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": CLAUDE_SCHEMA}]

    def sdk(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.matrix.gw.url, api_key=self.key, max_retries=0, timeout=30)

    @staticmethod
    def _answer(message: Any, pieces: int = 0) -> Answer:
        text = "".join(b.text for b in message.content if b.type == "text")
        thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
        calls = [ToolCall(b.id, b.name, dict(b.input)) for b in message.content if b.type == "tool_use"]
        u = message.usage
        cached = u.cache_read_input_tokens
        total_in = u.input_tokens + (cached or 0) + (u.cache_creation_input_tokens or 0)
        return Answer(text, (total_in, u.output_tokens, cached), calls, pieces, thinking, message.stop_reason)

    def _create(self, messages: list[Any], stream: bool, **extra: Any) -> tuple[Answer, Any]:
        client = self.sdk()
        if self.system:
            extra["system"] = self.system
        if self.reasoning:
            extra["thinking"] = {"type": "enabled", "budget_tokens": 1024}
        if not stream:
            message = client.messages.create(model=CLIENT_MODEL, max_tokens=2048, messages=messages, **extra)
            return self._answer(message), message
        with client.messages.stream(model=CLIENT_MODEL, max_tokens=2048, messages=messages, **extra) as s:
            pieces = [p for p in s.text_stream if p]
            message = s.get_final_message()
        return self._answer(message, len(pieces)), message

    def ask(self, prompt: str, stream: bool = False) -> Answer:
        return self._create([{"role": "user", "content": prompt}], stream)[0]

    def ask_image(self, prompt: str) -> Answer:
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
        return self._create([{"role": "user", "content": [{"type": "text", "text": prompt}, image]}], False)[0]

    def tool_round_trip(self, prompt: str, stream: bool) -> tuple[Answer, Answer]:
        messages: list[Any] = [{"role": "user", "content": prompt}]
        first, message = self._create(messages, stream, tools=self.tools)
        replay: list[Any] = []
        for block in message.content:
            if block.type == "thinking":  # Claude Code sends thinking back with its signature
                replay.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
            elif block.type == "redacted_thinking":
                replay.append({"type": "redacted_thinking", "data": block.data})
            elif block.type == "text" and block.text.strip():
                replay.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                replay.append({"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)})
        messages.append({"role": "assistant", "content": replay})
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id, "content": r} for c, r in zip(first.calls, RESULTS, strict=False)]}
        )
        return first, self._create(messages, False, tools=self.tools)[0]

    def fail(self) -> Failure:
        with pytest.raises(anthropic.APIStatusError) as info:
            self.sdk().messages.create(model=CLIENT_MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        return Failure(info.value, info.value.status_code, info.value.response.json())


class GeminiDriver(Driver):
    protocol = "gemini"

    # None: the SDK's default (google-genai 3 uses /v1); "v1beta": what Gemini CLI uses.
    api_version: str | None = None

    def sdk(self) -> genai.Client:
        options = gtypes.HttpOptions(base_url=self.matrix.gw.url, timeout=30_000, api_version=self.api_version)
        return genai.Client(api_key=self.key, http_options=options)

    def config(self, tools: bool) -> gtypes.GenerateContentConfig | None:
        config = gtypes.GenerateContentConfig()
        if self.system:
            config.system_instruction = self.system
        if self.reasoning:
            config.thinking_config = gtypes.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
        if tools:
            declaration = gtypes.FunctionDeclaration(name=TOOL_NAME, description=TOOL_DESCRIPTION, parameters=GEMINI_SCHEMA)
            config.tools = [gtypes.Tool(function_declarations=[declaration])]
            config.automatic_function_calling = gtypes.AutomaticFunctionCallingConfig(disable=True)
        return config if (tools or self.reasoning or self.system) else None

    @staticmethod
    def _usage(meta: Any) -> tuple[int | None, int | None, int | None] | None:
        if meta is None:
            return None
        out = None if meta.candidates_token_count is None else meta.candidates_token_count + (meta.thoughts_token_count or 0)
        return (meta.prompt_token_count, out, meta.cached_content_token_count)

    def _create(self, contents: Any, stream: bool, tools: bool = False) -> tuple[Answer, list[Any]]:
        client = self.sdk()
        if not stream:
            r = client.models.generate_content(model=CLIENT_MODEL, contents=contents, config=self.config(tools))
            parts = list(r.candidates[0].content.parts or []) if r.candidates and r.candidates[0].content else []
            usage = self._usage(r.usage_metadata)
            pieces = 0
            finishes = [r.candidates[0].finish_reason] if r.candidates else []
        else:
            chunks = list(client.models.generate_content_stream(model=CLIENT_MODEL, contents=contents, config=self.config(tools)))
            parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or []]
            metas = [c.usage_metadata for c in chunks if c.usage_metadata is not None]
            usage = self._usage(metas[-1]) if metas else None
            pieces = len([p for p in parts if p.text and not p.thought])
            finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates and c.candidates[0].finish_reason]
        text = "".join(p.text for p in parts if p.text and not p.thought)
        thinking = "".join(p.text for p in parts if p.text and p.thought)
        calls = [ToolCall(p.function_call.id, p.function_call.name or "", dict(p.function_call.args or {})) for p in parts if p.function_call]
        finish = finishes[-1] if finishes and finishes[-1] is not None else None
        return Answer(text, usage, calls, pieces, thinking, getattr(finish, "value", finish)), parts

    def ask(self, prompt: str, stream: bool = False) -> Answer:
        return self._create(prompt, stream)[0]

    def ask_image(self, prompt: str) -> Answer:
        parts = [gtypes.Part(text=prompt), gtypes.Part.from_bytes(data=PNG, mime_type="image/png")]
        return self._create([gtypes.Content(role="user", parts=parts)], False)[0]

    def tool_round_trip(self, prompt: str, stream: bool) -> tuple[Answer, Answer]:
        contents: list[Any] = [gtypes.Content(role="user", parts=[gtypes.Part(text=prompt)])]
        first, parts = self._create(contents, stream, tools=True)
        contents.append(gtypes.Content(role="model", parts=parts))
        responses = [
            gtypes.Part(function_response=gtypes.FunctionResponse(id=c.id, name=c.name, response={"result": r}))
            for c, r in zip(first.calls, RESULTS, strict=False)
        ]
        contents.append(gtypes.Content(role="user", parts=responses))
        return first, self._create(contents, False, tools=True)[0]

    def fail(self) -> Failure:
        client = self.sdk()  # kept in a name: a collected genai.Client closes its connection
        with pytest.raises(genai_errors.APIError) as info:
            client.models.generate_content(model=CLIENT_MODEL, contents="hi")
        return Failure(info.value, info.value.code, info.value.details)


DRIVERS: dict[str, type[Driver]] = {d.protocol: d for d in (ChatDriver, ResponsesDriver, AnthropicDriver, GeminiDriver)}


def driver(matrix: Matrix, client: str, provider: str, model: str | None = None, reasoning: bool = False) -> Driver:
    return DRIVERS[client](matrix, matrix.key(provider, model), reasoning)


def provider_log(matrix: Matrix, provider: str, since: int) -> str:
    """The requests the provider got since index `since`, for failure messages."""
    lines = []
    for r in matrix.mock.requests[since:]:
        lines.append(f"  {r.method} {r.path} -> {r.status} {r.error or ''}\n    {r.body[:1500]!r}")
    return "provider requests:\n" + ("\n".join(lines) or "  (none)")


def sdk_error_text(e: Exception) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, httpx.Response):
        try:
            return f"{type(e).__name__}: HTTP {response.status_code} {response.text[:1500]}"
        except httpx.ResponseNotRead:
            return f"{type(e).__name__}: HTTP {response.status_code}"
    return f"{type(e).__name__}: {e}"


class Pair:
    """Runs a step of a pair's test and turns an SDK error into a message that says what the
    gateway answered and what the provider got (these messages are the bug reports)."""

    def __init__(self, matrix: Matrix, client: str, provider: str):
        self.matrix, self.client, self.provider = matrix, client, provider
        self.mark = len(matrix.mock.requests)

    def run(self, step: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except AssertionError:
            raise
        except Exception as e:  # SDK errors, and answers the SDK could not even parse
            pytest.fail(
                f"{SHORT[self.client]} client -> {SHORT[self.provider]} provider, {step}: "
                f"{sdk_error_text(e)}\n{provider_log(self.matrix, self.provider, self.mark)}"
            )


def assert_usage(answer: Answer, what: str) -> None:
    assert answer.usage is not None, f"{what}: the client got no usage"
    assert answer.usage == USAGE, f"{what}: usage (input, output, cached) {answer.usage} != {USAGE}"


# -- per pair ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_text(matrix: Matrix, client: str, provider: str) -> None:
    pair = Pair(matrix, client, provider)
    since = matrix.now_ms()
    answer = pair.run("plain request", driver(matrix, client, provider).ask, "hello matrix")
    assert answer.text == "echo: hello matrix"
    assert answer.finish == END_FINISH[client], f"finish: {answer.finish!r}"
    assert_usage(answer, "plain answer")
    rec = matrix.mock.last(provider)
    assert rec.status == 200
    assert rec.model == matrix.model(provider), "the provider must get the adapter's model"
    assert CLIENT_MODEL.encode() not in rec.body
    assert matrix.key(provider) not in json.dumps(rec.headers), "the client's fp- key went upstream"
    auth = {"anthropic_messages": "x-api-key", "gemini": "x-goog-api-key"}.get(provider, "Authorization")
    expected = matrix.provider_key if auth != "Authorization" else f"Bearer {matrix.provider_key}"
    assert rec.header(auth) == expected, f"{provider} providers get the key in {auth}"
    [row, *_] = matrix.usage_since(since, provider)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == USAGE, row
    assert row["status"] == 200 and row["stream"] is False, row


@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_stream(matrix: Matrix, client: str, provider: str) -> None:
    pair = Pair(matrix, client, provider)
    since = matrix.now_ms()
    answer = pair.run("stream", driver(matrix, client, provider).ask, "one two three four", True)
    assert answer.text == "echo: one two three four"
    assert answer.finish == END_FINISH[client], f"finish: {answer.finish!r}"
    assert answer.text_pieces >= 3, f"the stream came in {answer.text_pieces} piece(s), not piece by piece"
    assert_usage(answer, "stream")
    rec = matrix.mock.last(provider)
    if provider == "gemini":
        assert rec.path.endswith(":streamGenerateContent") and rec.query.get("alt") == "sse", rec.path
    else:
        assert rec.json.get("stream") is True
    if provider == "openai_chat":
        assert rec.json.get("stream_options", {}).get("include_usage") is True, "ask the provider for usage"
    [row, *_] = matrix.usage_since(since, provider)
    assert row["stream"] is True, row
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == USAGE, row


@pytest.mark.parametrize("parallel", [False, True], ids=["one-call", "two-parallel-calls-streamed"])
@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_tool_round_trip(matrix: Matrix, client: str, provider: str, parallel: bool) -> None:
    pair = Pair(matrix, client, provider)
    prompt = "please use tool twice" if parallel else "please use tool"
    first, final = pair.run("tool round trip", driver(matrix, client, provider).tool_round_trip, prompt, parallel)
    expected_args = [{"city": "Paris"}, {"city": "Berlin"}] if parallel else [{"city": "Paris"}]
    assert [c.name for c in first.calls] == [TOOL_NAME] * len(expected_args), first
    assert [c.args for c in first.calls] == expected_args, first
    # The client's signal to run the tools (Claude Code waits for stop_reason tool_use), then a
    # normal end after the results.
    assert first.finish == TOOL_FINISH[client], f"finish after tool calls: {first.finish!r}"
    assert final.finish == END_FINISH[client], f"finish of the final answer: {final.finish!r}"
    ids = [c.id for c in first.calls]
    if client != "gemini":  # Gemini function calls may come without ids
        assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids), f"call ids: {ids}"
    # The provider saw the whole exchange (its strictness checked call/result pairing).
    sent = matrix.mock.last(provider)
    assert sent.status == 200, sent.error
    expected = "tool said: " + " | ".join(RESULTS[: len(expected_args)])
    if client == "gemini":
        # Gemini results are objects ({"result": ...}); other providers may get them as JSON text.
        assert final.text.startswith("tool said: ") and all(r in final.text for r in RESULTS[: len(expected_args)]), final.text
    else:
        assert final.text == expected
    if provider != "gemini" and client != "gemini":
        # Ids pass through unchanged: the provider got back the ids it issued.
        assert all(i in sent.body.decode() for i in ids), f"ids {ids} not in {sent.body[:800]!r}"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_reasoning(matrix: Matrix, client: str, provider: str, stream: bool) -> None:
    """Reasoning asked for the client's way reaches the provider as its way of asking, and the
    provider's reasoning comes back where the client's protocol shows it."""
    pair = Pair(matrix, client, provider)
    answer = pair.run("reasoning", driver(matrix, client, provider, reasoning=True).ask, "think about it", stream)
    assert answer.text == "echo: think about it"
    assert mp.REASONING_TEXT in answer.reasoning, f"reasoning shown to the client: {answer.reasoning!r}"
    assert_usage(answer, "reasoning answer")


@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_reasoning_with_tool_round_trip(matrix: Matrix, client: str, provider: str) -> None:
    """The turn after a tool call carries the reasoning back (signatures and encrypted
    reasoning to the protocol that issued them), which strict providers check."""
    pair = Pair(matrix, client, provider)
    drive = driver(matrix, client, provider, reasoning=True)
    first, final = pair.run("reasoning + tool round trip", drive.tool_round_trip, "please use tool", False)
    assert [c.args for c in first.calls] == [{"city": "Paris"}], first
    assert final.text.startswith("tool said: ") and RESULTS[0] in final.text, final.text


def provider_system_text(provider: str, body: dict[str, Any]) -> str | None:
    """The system prompt as the provider's protocol carries it."""

    def texts(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))

    if provider == "openai_chat":
        first = body["messages"][0]
        return texts(first["content"]) if first.get("role") in ("system", "developer") else None
    if provider == "openai_responses":
        if body.get("instructions"):
            return body["instructions"]
        items = body["input"] if isinstance(body.get("input"), list) else []
        return next((texts(i.get("content")) for i in items if i.get("role") in ("system", "developer")), None)
    if provider == "anthropic_messages":
        return texts(body.get("system")) if body.get("system") else None
    system = body.get("systemInstruction") or body.get("system_instruction")
    return texts(system.get("parts")) if system else None


@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_system_prompt_lands_in_the_providers_place(matrix: Matrix, client: str, provider: str) -> None:
    pair = Pair(matrix, client, provider)
    drive = driver(matrix, client, provider)
    drive.system = "You are terse. Answer in French."
    answer = pair.run("system prompt", drive.ask, "with a system prompt")
    assert answer.text == "echo: with a system prompt"
    rec = matrix.mock.last(provider)
    assert provider_system_text(provider, rec.json) == drive.system, f"system prompt not in its place: {rec.body[:600]!r}"


@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_image_reaches_the_provider(matrix: Matrix, client: str, provider: str) -> None:
    pair = Pair(matrix, client, provider)
    answer = pair.run("image", driver(matrix, client, provider).ask_image, "what is this")
    assert answer.text == f"echo: what is this | image: image/png {len(PNG)} bytes"
    rec = matrix.mock.last(provider)
    assert PNG_B64.encode() in rec.body, "the provider did not get the image bytes"


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize(("client", "provider"), PAIRS, ids=PAIR_IDS)
def test_provider_failure(matrix: Matrix, client: str, provider: str, status: int) -> None:
    model = f"fail-{status}"
    since = matrix.now_ms()
    failure = driver(matrix, client, provider, model).fail()
    same = client == provider
    if status == 429:
        assert failure.status == 429, failure.body
    else:
        # Translated: 5xx becomes 502; the fast path may relay the provider's own status.
        assert failure.status == 502 or (same and failure.status == status), (failure.status, failure.body)
    body = failure.body
    if client in ("openai_chat", "openai_responses"):
        assert isinstance(failure.sdk_error, openai.RateLimitError if status == 429 else openai.InternalServerError)
        assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
        message = body["error"]["message"]
    elif client == "anthropic_messages":
        assert isinstance(failure.sdk_error, anthropic.RateLimitError if status == 429 else anthropic.InternalServerError)
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        assert body["error"]["type"] == ("rate_limit_error" if status == 429 else "api_error"), body
        message = body["error"]["message"]
    else:
        assert isinstance(failure.sdk_error, genai_errors.ClientError if status == 429 else genai_errors.ServerError)
        assert set(body) == {"error"} and {"code", "message", "status"} <= set(body["error"]), body
        assert body["error"]["code"] == failure.status, body
        if status == 429:
            assert body["error"]["status"] == "RESOURCE_EXHAUSTED", body
        message = body["error"]["message"]
    assert mp.FAIL_MESSAGE in message, f"the provider's message should reach the user: {message!r}"
    [row, *_] = matrix.usage_since(since, provider, model)
    assert row["status"] == failure.status or row["status"] == status, row


# -- same protocol: the fast path keeps what the gateway does not model ------------------------------

# Raw bodies with fields the real APIs accept but the canonical model has no place for, written
# with odd spacing and number forms: a gateway that re-serialised the body would change them.
FAST_PATH = {
    "openai_chat": (
        "/v1/chat/completions",
        b'{"model":"' + CLIENT_MODEL.encode() + b'","messages":[{"role":"user","content":"keep"}],'
        b'"logit_bias":{"50256": -100},"seed":7,  "temperature":0.50,"x_vendor":{"keep":[1, 2.50]},"user":"u-1"}',
    ),
    "openai_responses": (
        "/v1/responses",
        b'{"model":"' + CLIENT_MODEL.encode() + b'","input":"keep","truncation":"auto",'
        b'"metadata":{"trace":"a  b"},  "temperature":0.50,"prompt_cache_key":"k-1","safety_identifier":"u-1"}',
    ),
    "anthropic_messages": (
        "/v1/messages",
        b'{"model":"' + CLIENT_MODEL.encode() + b'","max_tokens":64,"messages":[{"role":"user","content":"keep"}],'
        b'"metadata":{"user_id":"u-1"},"top_k":7,  "temperature":0.50,"service_tier":"standard_only"}',
    ),
    "gemini": (
        "/v1beta/models/" + CLIENT_MODEL + ":generateContent",
        b'{"contents":[{"role":"user","parts":[{"text":"keep"}]}],'
        b'"safetySettings":[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}],'
        b'"generationConfig":{"temperature":0.50,  "seed":7,"topK":3}}',
    ),
}


def client_headers(protocol: str, key: str) -> dict[str, str]:
    if protocol == "anthropic_messages":
        return {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    if protocol == "gemini":
        return {"x-goog-api-key": key, "content-type": "application/json"}
    return {"Authorization": f"Bearer {key}", "content-type": "application/json"}


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


@pytest.mark.parametrize("protocol", MATRIX_PROTOCOLS, ids=[SHORT[p] for p in MATRIX_PROTOCOLS])
def test_same_protocol_keeps_unknown_fields(matrix: Matrix, protocol: str) -> None:
    path, raw = FAST_PATH[protocol]
    r = httpx.post(matrix.url + path, content=raw, headers=client_headers(protocol, matrix.key(protocol)), timeout=30)
    assert r.status_code == 200, f"{r.status_code} {r.text[:1000]}"
    assert "echo: keep" in r.text
    rec = matrix.mock.last(protocol)
    for member in top_level_members(raw):
        if member.startswith(b'"model"'):
            continue
        assert member in rec.body, f"{member!r} changed on the way:\n sent {raw!r}\n got  {rec.body!r}"
    assert rec.model == matrix.model(protocol)


# -- endpoint specifics ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", MATRIX_PROTOCOLS, ids=[SHORT[p] for p in MATRIX_PROTOCOLS])
def test_previous_response_id(matrix: Matrix, provider: str) -> None:
    client = openai.OpenAI(base_url=matrix.gw.v1, api_key=matrix.key(provider), max_retries=0, timeout=30)
    if provider == "openai_responses":
        first = client.responses.create(model=CLIENT_MODEL, input="first turn")
        second = client.responses.create(model=CLIENT_MODEL, input="second turn", previous_response_id=first.id)
        assert second.output_text == "echo: second turn"
        assert matrix.mock.last(provider).json["previous_response_id"] == first.id
        return
    before = len(matrix.mock.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=CLIENT_MODEL, input="second turn", previous_response_id="resp_abc123")
    err = info.value.response.json()["error"]
    assert "previous_response_id" in err["message"], f"the message should name the field: {err}"
    assert len(matrix.mock.requests) == before, "the request must not reach the provider"


@pytest.mark.parametrize("provider", MATRIX_PROTOCOLS, ids=[SHORT[p] for p in MATRIX_PROTOCOLS])
def test_anthropic_count_tokens(matrix: Matrix, provider: str) -> None:
    client = anthropic.Anthropic(base_url=matrix.gw.url, api_key=matrix.key(provider), max_retries=0, timeout=30)
    before = len(matrix.mock.requests)
    try:
        raw = client.messages.with_raw_response.count_tokens(
            model=CLIENT_MODEL, system="be brief", messages=[{"role": "user", "content": "count these few words please"}]
        )
    except anthropic.APIError as e:
        pytest.fail(f"count_tokens via {provider}: {sdk_error_text(e)}\n{provider_log(matrix, provider, before)}")
    counted = raw.parse().input_tokens
    estimated = raw.headers.get("x-flexiproxy-estimate") == "true"
    assert_count(matrix, provider, counted, estimated, before)


@pytest.mark.parametrize("provider", MATRIX_PROTOCOLS, ids=[SHORT[p] for p in MATRIX_PROTOCOLS])
def test_gemini_count_tokens(matrix: Matrix, provider: str) -> None:
    client = genai.Client(api_key=matrix.key(provider), http_options=gtypes.HttpOptions(base_url=matrix.gw.url, timeout=30_000))
    before = len(matrix.mock.requests)
    try:
        r = client.models.count_tokens(model=CLIENT_MODEL, contents="count these few words please")
    except genai_errors.APIError as e:
        pytest.fail(f"countTokens via {provider}: {sdk_error_text(e)} {e.details}\n{provider_log(matrix, provider, before)}")
    headers = {k.lower(): v for k, v in (r.sdk_http_response.headers or {}).items()} if r.sdk_http_response else {}
    assert_count(matrix, provider, r.total_tokens, headers.get("x-flexiproxy-estimate") == "true", before)


def assert_count(matrix: Matrix, provider: str, counted: int | None, estimated: bool, before: int) -> None:
    forwarded = [r for r in matrix.mock.requests[before:] if "count" in r.path.lower() or r.path.endswith("/input_tokens")]
    if provider in ("anthropic_messages", "gemini"):
        assert forwarded, f"the {provider} provider can count tokens: the gateway should ask it"
        assert counted == mp.COUNT_TOKENS and not estimated, (counted, estimated)
    elif provider == "openai_responses" and forwarded:
        assert counted == mp.COUNT_TOKENS and not estimated, (counted, estimated)
    else:
        assert estimated, "a local estimate must say so with x-flexiproxy-estimate: true"
        assert isinstance(counted, int) and 0 < counted < 200, counted
        assert not forwarded, f"nothing to forward to: {[r.path for r in forwarded]}"


def test_model_lists_per_shape(matrix: Matrix) -> None:
    key = matrix.key("anthropic_messages")
    model = matrix.model("anthropic_messages")
    openai_list = openai.OpenAI(base_url=matrix.gw.v1, api_key=key, max_retries=0).models.list()
    assert model in [m.id for m in openai_list.data]
    assert all(m.object == "model" for m in openai_list.data)

    shape = httpx.get(f"{matrix.url}/v1/models", headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=30)
    assert shape.status_code == 200, shape.text
    body = shape.json()
    assert "has_more" in body and body["data"] and body["data"][0].get("type") == "model", f"not Anthropic's shape: {body}"
    anthropic_list = anthropic.Anthropic(base_url=matrix.url, api_key=key, max_retries=0).models.list()
    assert model in [m.id for m in anthropic_list.data]

    gkey = matrix.key("gemini")
    raw = httpx.get(f"{matrix.url}/v1beta/models", headers={"x-goog-api-key": gkey}, timeout=30)
    assert raw.status_code == 200 and raw.json().get("models"), raw.text
    assert f"models/{matrix.model('gemini')}" in [m["name"] for m in raw.json()["models"]], raw.text
    # google-genai 3 talks to /v1 (its default API version): GET /v1/models with only
    # x-goog-api-key must answer in Gemini's shape too.
    gemini = genai.Client(api_key=gkey, http_options=gtypes.HttpOptions(base_url=matrix.url))
    names = [m.name for m in gemini.models.list()]
    assert f"models/{matrix.model('gemini')}" in names, (
        f"google-genai's models.list() (GET /v1/models, x-goog-api-key) found {names}: "
        f"{httpx.get(f'{matrix.url}/v1/models', headers={'x-goog-api-key': gkey}).text[:300]}"
    )


@pytest.mark.parametrize("provider", MATRIX_PROTOCOLS, ids=[SHORT[p] for p in MATRIX_PROTOCOLS])
def test_gemini_sdk_on_v1beta(matrix: Matrix, provider: str) -> None:
    """The matrix's Gemini client uses google-genai's default /v1; Gemini CLI and older SDKs
    use /v1beta: the same answers there, streamed too."""
    drive = GeminiDriver(matrix, matrix.key(provider))
    drive.api_version = "v1beta"
    pair = Pair(matrix, "gemini", provider)
    assert pair.run("v1beta", drive.ask, "on v1beta").text == "echo: on v1beta"
    streamed = pair.run("v1beta stream", drive.ask, "on v1beta too", True)
    assert streamed.text == "echo: on v1beta too" and streamed.usage == USAGE


@pytest.mark.parametrize("prefix", ["/v1beta", "/v1"])
def test_gemini_key_in_query(matrix: Matrix, prefix: str) -> None:
    url = f"{matrix.url}{prefix}/models/{CLIENT_MODEL}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "by query key"}]}]}
    r = httpx.post(url, params={"key": matrix.key("gemini")}, json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["content"]["parts"][-1]["text"] == "echo: by query key"
    sent = matrix.mock.last("gemini")
    assert sent.header("x-goog-api-key") == matrix.provider_key
    assert sent.query.get("key") in (None, matrix.provider_key), "the client's fp- key must not go upstream"
    bad = httpx.post(url, params={"key": "fp-" + "0" * 64}, json=body, timeout=30)
    assert bad.status_code == 401 and set(bad.json()["error"]) >= {"code", "message", "status"}, bad.text


def test_gemini_stream_without_alt_sse_is_a_json_array(matrix: Matrix) -> None:
    url = f"{matrix.url}/v1beta/models/{CLIENT_MODEL}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "as an array"}]}]}
    r = httpx.post(url, headers={"x-goog-api-key": matrix.key("anthropic_messages")}, json=body, timeout=30)
    assert r.status_code == 200, r.text
    chunks = json.loads(r.text)
    assert isinstance(chunks, list) and chunks
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == "echo: as an array"


@pytest.mark.parametrize("provider", MATRIX_PROTOCOLS, ids=[SHORT[p] for p in MATRIX_PROTOCOLS])
def test_anthropic_beta_query_and_bearer_key(matrix: Matrix, provider: str) -> None:
    """Claude Code posts to /v1/messages?beta=true; newer SDKs send the key as a Bearer token."""
    body = {"model": CLIENT_MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "beta"}]}
    headers = {"Authorization": f"Bearer {matrix.key(provider)}", "anthropic-version": "2023-06-01", "anthropic-beta": "fine-grained-tool-streaming-2025-05-14"}
    r = httpx.post(f"{matrix.url}/v1/messages", params={"beta": "true"}, json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert [b for b in r.json()["content"] if b["type"] == "text"][0]["text"] == "echo: beta"
    sent = matrix.mock.last(provider)
    assert "beta" not in sent.query or provider == "anthropic_messages", f"{sent.path}?{sent.query}"
