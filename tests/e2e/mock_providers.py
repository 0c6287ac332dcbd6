"""A local provider that speaks all four wire protocols FlexiProxy bridges, on one loopback port.

It stands in for the providers' clouds in the protocol-matrix tests: the gateway is registered
with one provider per protocol pointing here, real SDKs talk to the gateway, and this server
answers like the real API would, then tells the tests what it received. The server, its record
and each protocol's stream writer are :mod:`stand_in`'s; this module validates requests and
scripts the answers. Stdlib only.

Endpoints (one port, all protocols):

* OpenAI Chat Completions ``POST /v1/chat/completions`` (SSE with ``stream``, a usage chunk with
  ``stream_options.include_usage``), OpenAI Responses ``POST /v1/responses`` (the real event
  sequence; ``previous_response_id`` against the responses it gave), ``POST
  /v1/responses/input_tokens``;
* Anthropic Messages ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (need
  ``x-api-key`` (or a Bearer token, as newer SDKs send) and ``anthropic-version``);
* Gemini ``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent``
  (``?alt=sse`` gives SSE with CRLF framing like Google's; without it a streamed JSON array),
  ``:countTokens`` (need ``x-goog-api-key`` or ``?key=``); the same under ``/v1``;
* model lists ``GET /v1/models`` (Anthropic's shape when ``anthropic-version`` is sent, Gemini's
  when only a Google key is) and ``GET /v1beta/models``.

It is STRICT where the real APIs are (wrong roles, Anthropic turns that do not alternate or
have empty content, a tool call without its result or a result without its call, unknown
fields where the real API rejects them, Gemini schemas with JSON-Schema-only keywords,
signatures it did not issue, ...) and answers those with the provider's own 400 error body:
strictness is what catches translation bugs in the gateway.

The conversation scripts the answer, deterministically:

* ``echo: <last user text>``; with an image in the last user message `` | image: <mime> <n>
  bytes`` is added (or ``image: url <url>`` for a linked one);
* tools offered, the last user text contains "use tool" and no tool result yet: a call to the
  first tool with arguments built from its schema's required properties (``{"city": "Paris"}``);
  two parallel calls (Paris, Berlin) when the text also says "twice";
* after tool results: ``tool said: <result text>`` (several joined with `` | ``);
* reasoning asked for (Chat ``reasoning_effort``, Responses ``reasoning``, Anthropic
  ``thinking``, Gemini ``thinkingConfig``): a reasoning part first (Anthropic signature
  ``sig-mock``; Gemini ``thought: true`` with a base64 ``thoughtSignature``; Responses a
  summary; Chat ``reasoning_content``);
* model ``fail-<status>``: that status with the protocol's error body.

``report_usage(prompt_tokens=10**19, input_tokens=-5, ...)`` makes every answer report those
values (any JSON: huge, negative, fractional, text) in the usage fields of those names, in
whichever protocol has them, instead of the scripted counts (the hostile-ledger tests).

Usage is the same for every protocol once normalised (``INPUT_TOKENS`` prompt tokens of which
``CACHED_TOKENS`` cached, ``OUTPUT_TOKENS`` generated of which ``REASONING_TOKENS`` reasoning
when reasoning was asked for), written the way each protocol counts: Anthropic's
``input_tokens`` leave out cache reads, Gemini's ``candidatesTokenCount`` leaves out thoughts.

Run alone: ``python mock_providers.py --port 9100 [--key sk-x]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stand_in import AnthropicStream, ChatStream, Exchange, GeminiStream, ResponsesStream, StandInHandler, StandInServer
from stand_in import anthropic_error, chat_completion, gemini_error, openai_error, response_object, run_alone

INPUT_TOKENS = 21
CACHED_TOKENS = 4
OUTPUT_TOKENS = 9
REASONING_TOKENS = 3
# What count_tokens / countTokens / input_tokens answer: distinctive, so a test can tell a
# forwarded count from a gateway's own estimate.
COUNT_TOKENS = 1234
REASONING_TEXT = "Thinking it over step by step."
ANTHROPIC_SIGNATURE = "sig-mock"
GEMINI_SIGNATURE_PREFIX = b"mock-gemini-thought:"
ENCRYPTED_PREFIX = "enc-mock-"
FAIL_MESSAGE = "mock provider failed on purpose"
ANTHROPIC_VERSIONS = ("2023-06-01", "2023-01-01")
CHAT_MODELS = ["mock-chat", "mock-chat-large"]
ANTHROPIC_MODELS = ["claude-mock", "claude-mock-large"]
GEMINI_MODELS = ["gemini-mock", "gemini-mock-pro"]
# Example values for required tool arguments, by property name; other strings get "value".
EXAMPLE_STRINGS = {"city": ("Paris", "Berlin"), "location": ("Paris", "Berlin")}


# -- the record ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Received(Exchange):
    """One request as the mock received it (``path`` without the query)."""

    protocol: str | None = None  # openai_chat, openai_responses, anthropic_messages, gemini
    model: str | None = None  # from the body, or from the path for Gemini
    error: str | None = None  # the message of an error answer


class Reject(Exception):
    """A request the real API would refuse: rendered as the protocol's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


# -- the scripted conversation ----------------------------------------------------------------


@dataclass
class Conversation:
    """What the script needs from a request, whatever its protocol."""

    last_user_text: str = ""
    images: list[str] = field(default_factory=list)  # "image/png 67 bytes" or "url <url>"
    tool_results: list[str] = field(default_factory=list)  # after the last user text
    any_tool_result: bool = False
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, JSON schema)
    reasoning: bool = False


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass
class Plan:
    """The answer: optional reasoning, then text or tool calls."""

    reasoning: str | None
    text: str | None
    calls: list[Call]
    reasoning_tokens: int

    @property
    def usage(self) -> tuple[int, int, int, int]:
        return INPUT_TOKENS, CACHED_TOKENS, OUTPUT_TOKENS, self.reasoning_tokens


_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids)


def example_arguments(schema: Any, variant: int) -> dict[str, Any]:
    """Arguments for a tool call built from the schema's required properties."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    args: dict[str, Any] = {}
    for name in schema.get("required") or []:
        prop = props.get(name) if isinstance(props, dict) else None
        prop = prop if isinstance(prop, dict) else {}
        kind = str(prop.get("type", "string")).lower()
        if prop.get("enum"):
            args[name] = prop["enum"][variant % len(prop["enum"])]
        elif kind == "string":
            choices = EXAMPLE_STRINGS.get(name, ("value", "value-2"))
            args[name] = choices[variant % len(choices)]
        elif kind == "integer":
            args[name] = 2 + variant
        elif kind == "number":
            args[name] = 1.5 + variant
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        else:
            args[name] = {}
    return args


def plan_answer(conv: Conversation, id_prefix: str) -> Plan:
    reasoning = REASONING_TEXT if conv.reasoning else None
    reasoning_tokens = REASONING_TOKENS if conv.reasoning else 0
    if conv.tool_results:
        return Plan(reasoning, "tool said: " + " | ".join(conv.tool_results), [], reasoning_tokens)
    lowered = conv.last_user_text.lower()
    if conv.tools and "use tool" in lowered and not conv.any_tool_result:
        name, schema = conv.tools[0]
        count = 2 if "twice" in lowered else 1
        calls = [Call(f"{id_prefix}{_next_id()}", name, example_arguments(schema, i)) for i in range(count)]
        return Plan(reasoning, None, calls, reasoning_tokens)
    text = f"echo: {conv.last_user_text}"
    if conv.images:
        text += " | " + " | ".join(f"image: {image}" for image in conv.images)
    return Plan(reasoning, text, [], reasoning_tokens)


def pieces(text: str) -> list[str]:
    """Cuts text into several small stream deltas (words with their leading spaces)."""
    parts = re.findall(r"\s*\S+", text) or [text]
    if len(parts) == 1 and len(text) > 1:
        parts = [text[: len(text) // 2], text[len(text) // 2 :]]
    return parts


def describe_base64(mime: str, data: Any, where: str) -> str:
    if not isinstance(data, str):
        raise Reject(400, f"{where}: image data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise Reject(400, f"{where}: image data is not valid base64") from e
    return f"{mime} {len(raw)} bytes"


def describe_data_url(url: str, where: str) -> str:
    match = re.fullmatch(r"data:([\w.+/-]+);base64,(.*)", url, re.S)
    if match:
        return describe_base64(match.group(1), match.group(2), where)
    if url.startswith(("http://", "https://")):
        return f"url {url}"
    raise Reject(400, f"{where}: invalid image URL: expected a base64 data URL or an http(s) URL")


def _expect(cond: bool, message: str, param: str | None = None) -> None:
    if not cond:
        raise Reject(400, message, param)


def _text_of(content: Any, text_types: tuple[str, ...]) -> str:
    """The text of a content that is a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in text_types
        )
    return ""


# -- OpenAI Chat Completions ---------------------------------------------------------------------

CHAT_FIELDS = {
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice",
    "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
}  # fmt: skip
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def chat_conversation(body: dict[str, Any]) -> Conversation:
    """Validates a Chat Completions request like OpenAI does and extracts the conversation.
    Unknown top-level fields are refused unless they look like a vendor extension (``x_…``), as
    OpenAI-compatible hosts accept their own."""
    for key in body:
        if key not in CHAT_FIELDS and not key.startswith("x_"):
            raise Reject(400, f"Unrecognized request argument supplied: {key}", key)
    _expect(isinstance(body.get("model"), str) and body["model"], "you must provide a model parameter", "model")
    messages = body.get("messages")
    _expect(isinstance(messages, list), "Missing required parameter: 'messages'.", "messages")
    _expect(len(messages) > 0, "[] is too short - 'messages'", "messages")
    if "stream_options" in body and not body.get("stream"):
        raise Reject(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    conv = Conversation()
    tools = body.get("tools") or []
    _expect(isinstance(tools, list), "Invalid type for 'tools': expected an array.", "tools")
    for i, tool in enumerate(tools):
        _expect(isinstance(tool, dict) and tool.get("type") == "function", f"Invalid value for 'tools[{i}].type'.", f"tools[{i}].type")
        fn = tool.get("function")
        _expect(isinstance(fn, dict), f"Missing required parameter: 'tools[{i}].function'.", f"tools[{i}].function")
        _expect(isinstance(fn.get("name"), str) and fn["name"], f"Missing required parameter: 'tools[{i}].function.name'.", f"tools[{i}].function.name")
        conv.tools.append((fn["name"], fn.get("parameters") or {}))
    if body.get("reasoning_effort") not in (None, "none"):
        conv.reasoning = True

    pending: dict[str, str] = {}  # tool_call_id -> name, waiting for its tool message
    results_since_user: list[str] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        _expect(isinstance(msg, dict), f"Invalid type for '{where}': expected an object.", where)
        role = msg.get("role")
        if role not in CHAT_ROLES:
            raise Reject(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                f"{where}.role",
            )
        if pending and role != "tool":
            raise Reject(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                f"to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                f"{', '.join(pending)}",
                f"{where}.role",
            )
        content = msg.get("content")
        if role in ("system", "developer"):
            _expect(isinstance(content, (str, list)), f"Invalid type for '{where}.content'.", f"{where}.content")
        elif role == "user":
            _expect(isinstance(content, (str, list)), f"Invalid type for '{where}.content': expected one of a string or array of objects.", f"{where}.content")
            text_parts: list[str] = []
            images: list[str] = []
            if isinstance(content, str):
                text_parts.append(content)
            else:
                for j, part in enumerate(content):
                    pw = f"{where}.content[{j}]"
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "text":
                        _expect(isinstance(part.get("text"), str), f"Missing required parameter: '{pw}.text'.", f"{pw}.text")
                        text_parts.append(part["text"])
                    elif kind == "image_url":
                        image = part.get("image_url")
                        _expect(isinstance(image, dict) and isinstance(image.get("url"), str), f"Missing required parameter: '{pw}.image_url.url'.", f"{pw}.image_url")
                        images.append(describe_data_url(image["url"], pw))
                    elif kind in ("input_audio", "file"):
                        pass
                    else:
                        raise Reject(
                            400,
                            f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
                            "'input_audio', 'refusal', 'audio', and 'file'.",
                            f"{pw}.type",
                        )
            text = " ".join(text_parts)
            if text or images:
                conv.last_user_text, conv.images = text, images
                results_since_user = []
        elif role == "assistant":
            calls = msg.get("tool_calls") or []
            _expect(
                content is not None or calls,
                f"Invalid value for '{where}.content': expected a string, got null.",
                f"{where}.content",
            )
            for j, call in enumerate(calls):
                cw = f"{where}.tool_calls[{j}]"
                _expect(isinstance(call, dict) and isinstance(call.get("id"), str), f"Missing required parameter: '{cw}.id'.", f"{cw}.id")
                fn = call.get("function")
                _expect(isinstance(fn, dict) and isinstance(fn.get("name"), str), f"Missing required parameter: '{cw}.function'.", f"{cw}.function")
                args = fn.get("arguments")
                _expect(
                    isinstance(args, str),
                    f"Invalid type for '{cw}.function.arguments': expected a string, but got "
                    f"{type(args).__name__} instead.",
                    f"{cw}.function.arguments",
                )
                pending[call["id"]] = fn["name"]
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            _expect(isinstance(call_id, str), f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id")
            if call_id not in pending:
                raise Reject(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    f"message with 'tool_calls' (no tool call with id {call_id!r}).",
                    f"{where}.role",
                )
            del pending[call_id]
            _expect(isinstance(content, (str, list)), f"Invalid type for '{where}.content'.", f"{where}.content")
            results_since_user.append(_text_of(content, ("text",)))
            conv.any_tool_result = True
    if pending:
        raise Reject(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages responding to "
            f"each 'tool_call_id'. The following tool_call_ids did not have response messages: "
            f"{', '.join(pending)}",
            "messages",
        )
    conv.tool_results = results_since_user
    return conv


def chat_usage(plan: Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens, "audio_tokens": 0},
    }


# The error types OpenAI gives where they are not the generic ones (a 429's is "requests").
OPENAI_ERROR_TYPES = {401: "invalid_request_error", 429: "requests", 404: "invalid_request_error"}


def chat_error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body (Chat and Responses), with the code OpenAI gives a 429."""
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    return openai_error(status, message, param, code, OPENAI_ERROR_TYPES.get(status))


# -- OpenAI Responses ------------------------------------------------------------------------------

RESPONSES_FIELDS = {
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
    "max_output_tokens", "max_tool_calls", "temperature", "top_p", "top_logprobs", "stream",
    "stream_options", "store", "metadata", "previous_response_id", "reasoning", "text",
    "truncation", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
    "service_tier", "include", "background", "prompt", "conversation",
}  # fmt: skip
RESPONSES_ROLES = ("user", "assistant", "system", "developer")


def responses_items(body: dict[str, Any]) -> list[Any]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return list(raw or [])


def responses_conversation(body: dict[str, Any], history: list[Any]) -> Conversation:
    """Validates a Responses request like OpenAI does (unknown parameters refused) over the
    stored history of ``previous_response_id`` plus this input."""
    for key in body:
        if key not in RESPONSES_FIELDS:
            raise Reject(400, f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    _expect(isinstance(body.get("model"), str) and body["model"], "Missing required parameter: 'model'.", "model")
    raw = body.get("input")
    _expect(
        isinstance(raw, (str, list)) or (raw is None and body.get("previous_response_id")),
        "Missing required parameter: 'input'.",
        "input",
    )
    conv = Conversation()
    for i, tool in enumerate(body.get("tools") or []):
        _expect(isinstance(tool, dict) and isinstance(tool.get("type"), str), f"Missing required parameter: 'tools[{i}].type'.", f"tools[{i}].type")
        if tool["type"] == "function":
            _expect(isinstance(tool.get("name"), str) and tool["name"], f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
            _expect("function" not in tool, f"Unknown parameter: 'tools[{i}].function'.", f"tools[{i}].function")
            conv.tools.append((tool["name"], tool.get("parameters") or {}))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") != "none":
        conv.reasoning = True

    items = history + responses_items(body)
    calls: dict[str, str] = {}
    answered: set[str] = set()
    results_since_user: list[str] = []
    offset = len(history)
    for n, item in enumerate(items):
        where = f"input[{n - offset}]" if n >= offset else f"previous_response[{n}]"
        _expect(isinstance(item, dict), f"Invalid type for '{where}': expected an object.", where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in RESPONSES_ROLES:
                raise Reject(
                    400,
                    f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', "
                    "'developer', and 'user'.",
                    f"{where}.role",
                )
            content = item.get("content")
            _expect(isinstance(content, (str, list)), f"Missing required parameter: '{where}.content'.", f"{where}.content")
            allowed = ("output_text", "refusal") if role == "assistant" else ("input_text", "input_image", "input_file", "input_audio")
            texts: list[str] = []
            images: list[str] = []
            if isinstance(content, str):
                texts.append(content)
            else:
                for j, part in enumerate(content):
                    pw = f"{where}.content[{j}]"
                    ptype = part.get("type") if isinstance(part, dict) else None
                    if ptype not in allowed:
                        raise Reject(
                            400,
                            f"Invalid value: '{ptype}'. Supported values are: "
                            + " and ".join(f"'{a}'" for a in allowed)
                            + ".",
                            f"{pw}.type",
                        )
                    if ptype in ("input_text", "output_text"):
                        _expect(isinstance(part.get("text"), str), f"Missing required parameter: '{pw}.text'.", f"{pw}.text")
                        texts.append(part["text"])
                    elif ptype == "input_image":
                        url = part.get("image_url")
                        _expect(isinstance(url, str) or "file_id" in part, f"Missing required parameter: '{pw}.image_url'.", f"{pw}.image_url")
                        if isinstance(url, str):
                            images.append(describe_data_url(url, pw))
            if role == "user" and (texts or images):
                conv.last_user_text, conv.images = " ".join(texts), images
                results_since_user = []
        elif kind == "function_call":
            for req in ("call_id", "name", "arguments"):
                _expect(isinstance(item.get(req), str), f"Missing required parameter: '{where}.{req}'.", f"{where}.{req}")
            calls[item["call_id"]] = item["name"]
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            _expect(isinstance(call_id, str), f"Missing required parameter: '{where}.call_id'.", f"{where}.call_id")
            if call_id not in calls:
                raise Reject(400, f"No tool call found for function call output with call_id {call_id}.", "input")
            answered.add(call_id)
            output = item.get("output")
            _expect(isinstance(output, (str, list)), f"Missing required parameter: '{where}.output'.", f"{where}.output")
            results_since_user.append(_text_of(output, ("input_text", "output_text")))
            conv.any_tool_result = True
        elif kind == "reasoning":
            encrypted = item.get("encrypted_content")
            if encrypted is not None:
                _expect(
                    isinstance(encrypted, str) and encrypted.startswith(ENCRYPTED_PREFIX),
                    f"The encrypted content for item {item.get('id')} could not be verified.",
                    where,
                )
            else:
                ident = item.get("id")
                _expect(isinstance(ident, str) and ident.startswith("rs_mock"), f"Item with id '{ident}' not found.", where)
            _expect(isinstance(item.get("summary"), list), f"Missing required parameter: '{where}.summary'.", f"{where}.summary")
        elif kind == "item_reference":
            pass
        else:
            raise Reject(400, f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', 'function_call_output', 'reasoning' and 'item_reference'.", f"{where}.type")
    missing = [c for c in calls if c not in answered]
    if missing:
        raise Reject(400, f"No tool output found for function call {missing[0]}.", "input")
    conv.tool_results = results_since_user
    return conv


def responses_usage(plan: Plan) -> dict[str, Any]:
    return {
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    }


# -- Anthropic Messages ---------------------------------------------------------------------------

ANTHROPIC_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_config", "output_format",
}  # fmt: skip
ANTHROPIC_COUNT_FIELDS = {
    "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
    "context_management", "output_config", "output_format",
}  # fmt: skip
ANTHROPIC_BLOCKS_USER = {"text", "image", "document", "tool_result", "search_result", "container_upload"}
ANTHROPIC_BLOCKS_ASSISTANT = {
    "text", "tool_use", "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result",
    "web_fetch_tool_result", "code_execution_tool_result", "mcp_tool_use", "mcp_tool_result",
}  # fmt: skip
ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _anthropic_text_ok(text: Any, where: str) -> None:
    _expect(isinstance(text, str), f"{where}.text: Input should be a valid string")
    _expect(text.strip() != "", f"{where}: text content blocks must contain non-whitespace text")


def anthropic_conversation(body: dict[str, Any], count_only: bool = False) -> Conversation:
    """Validates a Messages (or count_tokens) request like Anthropic does: extra fields refused,
    roles user/assistant alternating from a user turn, non-empty content, every tool_use answered
    by a tool_result in the very next message (and the other way round), thinking signatures it
    issued."""
    allowed = ANTHROPIC_COUNT_FIELDS if count_only else ANTHROPIC_FIELDS
    for key in body:
        if key not in allowed:
            raise Reject(400, f"{key}: Extra inputs are not permitted")
    _expect(isinstance(body.get("model"), str) and body["model"], "model: Field required")
    if not count_only:
        _expect("max_tokens" in body, "max_tokens: Field required")
        _expect(isinstance(body["max_tokens"], int) and body["max_tokens"] >= 1, "max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    _expect(isinstance(messages, list), "messages: Field required")
    _expect(len(messages) > 0, "messages: at least one message is required")
    system = body.get("system")
    if system is not None:
        _expect(isinstance(system, (str, list)), "system: Input should be a valid string or a list of text blocks")
        if isinstance(system, list):
            for j, block in enumerate(system):
                _expect(isinstance(block, dict) and block.get("type") == "text", f"system.{j}.type: Input should be 'text'")
                _anthropic_text_ok(block.get("text"), f"system.{j}")

    conv = Conversation()
    for i, tool in enumerate(body.get("tools") or []):
        _expect(isinstance(tool, dict), f"tools.{i}: Input should be a valid dictionary")
        kind = tool.get("type", "custom")
        if kind == "custom":
            for key in tool:
                _expect(key in ("type", "name", "description", "input_schema", "cache_control"), f"tools.{i}.custom.{key}: Extra inputs are not permitted")
            _expect(isinstance(tool.get("name"), str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", tool["name"]) is not None, f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            _expect(isinstance(tool.get("input_schema"), dict), f"tools.{i}.custom.input_schema: Field required")
            conv.tools.append((tool["name"], tool["input_schema"]))
    thinking = body.get("thinking")
    if thinking is not None:
        _expect(isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled", "adaptive"), "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            _expect(isinstance(budget, int), "thinking.enabled.budget_tokens: Field required")
            _expect(budget >= 1024, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if not count_only:
                _expect(body["max_tokens"] > budget, "`max_tokens` must be greater than `thinking.budget_tokens`")
        if thinking["type"] != "disabled":
            conv.reasoning = True
            temp = body.get("temperature")
            _expect(temp is None or temp == 1, "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode.")

    previous_tool_uses: list[str] = []
    results_since_user: list[str] = []
    expected_role = "user"
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        _expect(isinstance(msg, dict), f"{where}: Input should be a valid dictionary")
        for key in msg:
            _expect(key in ("role", "content"), f"{where}.{key}: Extra inputs are not permitted")
        role = msg.get("role")
        if role not in ("user", "assistant"):
            if role == "system":
                raise Reject(400, f'{where}: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.')
            raise Reject(400, f"{where}.role: Input should be 'user' or 'assistant'")
        if role != expected_role:
            if i == 0:
                raise Reject(400, f"{where}: first message must use the \"user\" role")
            raise Reject(400, f"{where}: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row")
        expected_role = "assistant" if role == "user" else "user"
        content = msg.get("content")
        last_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            if not last_assistant:
                _expect(content.strip() != "", f"{where}: all messages must have non-empty content except for the optional final assistant message")
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        else:
            _expect(isinstance(content, list), f"{where}.content: Input should be a valid string or a list of content blocks")
            if not last_assistant:
                _expect(len(content) > 0, f"{where}: all messages must have non-empty content except for the optional final assistant message")
            blocks = content
        tool_uses: list[str] = []
        results: list[str] = []
        texts: list[str] = []
        images: list[str] = []
        seen_other = False
        for j, block in enumerate(blocks):
            bw = f"{where}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            allowed_blocks = ANTHROPIC_BLOCKS_USER if role == "user" else ANTHROPIC_BLOCKS_ASSISTANT
            if kind not in allowed_blocks:
                raise Reject(400, f"{bw}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags: " + ", ".join(f"'{b}'" for b in sorted(allowed_blocks)))
            if kind == "text":
                _anthropic_text_ok(block.get("text"), bw)
                texts.append(block["text"])
                seen_other = True
            elif kind == "image":
                source = block.get("source")
                _expect(isinstance(source, dict), f"{bw}.image.source: Field required")
                if source.get("type") == "base64":
                    _expect(source.get("media_type") in ANTHROPIC_IMAGE_TYPES, f"{bw}.image.source.base64.media_type: Input should be " + ", ".join(f"'{t}'" for t in ANTHROPIC_IMAGE_TYPES))
                    images.append(describe_base64(source["media_type"], source.get("data"), bw))
                elif source.get("type") == "url":
                    _expect(isinstance(source.get("url"), str), f"{bw}.image.source.url.url: Field required")
                    images.append(f"url {source['url']}")
                else:
                    raise Reject(400, f"{bw}.image.source: Input tag '{source.get('type')}' found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'")
                seen_other = True
            elif kind == "tool_use":
                _expect(isinstance(block.get("id"), str) and block["id"], f"{bw}.tool_use.id: Field required")
                _expect(isinstance(block.get("name"), str), f"{bw}.tool_use.name: Field required")
                _expect(isinstance(block.get("input"), dict), f"{bw}.tool_use.input: Input should be a valid dictionary")
                tool_uses.append(block["id"])
            elif kind == "tool_result":
                _expect(not seen_other, f"{where}: `tool_result` blocks must come first in the content array of a user message, before any other content")
                call_id = block.get("tool_use_id")
                if call_id not in previous_tool_uses:
                    raise Reject(400, f"{bw}: unexpected `tool_use_id` found in `tool_result` blocks: {call_id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
                rc = block.get("content", "")
                _expect(isinstance(rc, (str, list)), f"{bw}.tool_result.content: Input should be a valid string or list")
                results.append(_text_of(rc, ("text",)))
            elif kind == "thinking":
                _expect(isinstance(block.get("thinking"), str), f"{bw}.thinking.thinking: Field required")
                _expect("signature" in block, f"{bw}.thinking.signature: Field required")
                _expect(block["signature"] == ANTHROPIC_SIGNATURE, f"{bw}: Invalid `signature` in `thinking` block")
        if role == "user":
            missing = [c for c in previous_tool_uses if c not in {b.get("tool_use_id") for b in blocks if isinstance(b, dict)}]
            if missing:
                raise Reject(400, f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
            if results:
                results_since_user = results
                conv.any_tool_result = True
            if texts or images:
                conv.last_user_text, conv.images = " ".join(texts), images
                if not results:
                    results_since_user = []
            previous_tool_uses = []
        else:
            if tool_uses and conv.reasoning and i == len(messages) - 2:
                first = blocks[0].get("type") if blocks and isinstance(blocks[0], dict) else None
                _expect(first in ("thinking", "redacted_thinking"), f"{where}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).")
            previous_tool_uses = tool_uses
    if previous_tool_uses and not count_only:
        raise Reject(400, f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(previous_tool_uses)}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
    conv.tool_results = results_since_user
    return conv


def anthropic_usage(plan: Plan, output: int = OUTPUT_TOKENS) -> dict[str, Any]:
    return {
        "input_tokens": INPUT_TOKENS - CACHED_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHED_TOKENS,
        "output_tokens": output,
        "service_tier": "standard",
    }


# -- Gemini ---------------------------------------------------------------------------------------

GEMINI_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig", "cachedContent", "model"}
GEMINI_GENERATION_FIELDS = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers",
    "speechConfig", "thinkingConfig", "imageConfig", "mediaResolution",
}  # fmt: skip
GEMINI_THINKING_FIELDS = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
GEMINI_PART_FIELDS = {
    "text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
    "codeExecutionResult", "thought", "thoughtSignature", "videoMetadata", "partMetadata",
    "mediaResolution",
}  # fmt: skip
GEMINI_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult")
GEMINI_TOOL_FIELDS = {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext", "fileSearch", "computerUse", "googleMaps"}
GEMINI_DECLARATION_FIELDS = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"}
# The keys the Schema proto of `parameters` knows; JSON-Schema-only keywords ($schema,
# additionalProperties, const, ...) are refused by the real API.
GEMINI_SCHEMA_FIELDS = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
    "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
}  # fmt: skip
def camel(name: str) -> str:
    """Google's JSON accepts proto field names (snake_case) as well as lowerCamelCase."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _gemini_fields(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    """The object with camelCase keys, refusing unknown ones like the real API."""
    _expect(isinstance(obj, dict), f"Invalid JSON payload received. Expected an object at '{where}'.")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = camel(key)
        if name not in allowed:
            raise Reject(400, f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.")
        out[name] = value
    return out


def _gemini_schema(schema: Any, where: str) -> None:
    fields = _gemini_fields(schema, GEMINI_SCHEMA_FIELDS, where)
    if "type" in fields:
        _expect(
            isinstance(fields["type"], str),
            f"Invalid JSON payload received. Unknown name \"type\" at '{where}': Proto field is not repeating, cannot start list.",
        )
        _expect(
            fields["type"].upper() in ("STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL", "TYPE_UNSPECIFIED"),
            f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), \"{fields['type']}\"",
        )
    for name, sub in (fields.get("properties") or {}).items():
        _gemini_schema(sub, f"{where}.properties[{name}].value")
    if "items" in fields:
        _gemini_schema(fields["items"], f"{where}.items")
    for k, sub in enumerate(fields.get("anyOf") or []):
        _gemini_schema(sub, f"{where}.any_of[{k}]")


# The placeholder signatures Google documents for function calls that no Gemini model made.
GEMINI_SKIP_SIGNATURES = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")


def _proto_bytes(value: Any) -> bytes | None:
    """A proto `bytes` field from JSON: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str) or re.fullmatch(r"[A-Za-z0-9+/_-]*=*", value) is None:
        return None
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def gemini_signature(n: int) -> str:
    return base64.b64encode(GEMINI_SIGNATURE_PREFIX + str(n).encode()).decode()


def _gemini_response_text(response: Any) -> str:
    """The text of a functionResponse's `response` object: a lone string value, or the JSON."""
    if isinstance(response, dict) and len(response) == 1:
        (value,) = response.values()
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(p, dict) and "text" in p for p in value):
            return " ".join(p["text"] for p in value)
    return json.dumps(response, sort_keys=True, separators=(",", ":"))


def gemini_contents(contents: Any, prefix: str, conv: Conversation) -> None:
    _expect(isinstance(contents, list) and len(contents) > 0, f"* {prefix}contents: contents is not specified")
    previous_calls: list[str] = []
    previous_role: str | None = None
    results_since_user: list[str] = []
    for i, raw in enumerate(contents):
        where = f"contents[{i}]"
        content = _gemini_fields(raw, {"role", "parts"}, where)
        role = content.get("role", "user") or "user"
        if role not in ("user", "model"):
            raise Reject(400, "Please use a valid role: user, model.")
        parts = content.get("parts")
        _expect(isinstance(parts, list) and len(parts) > 0, f"* {prefix}contents[{i}].parts: contents.parts must not be empty.")
        calls: list[str] = []
        responses: list[tuple[str, str]] = []
        texts: list[str] = []
        images: list[str] = []
        for j, raw_part in enumerate(parts):
            pw = f"{where}.parts[{j}]"
            part = _gemini_fields(raw_part, GEMINI_PART_FIELDS, pw)
            data = [k for k in GEMINI_PART_DATA if k in part]
            if not data:
                raise Reject(400, f"* {prefix}{pw}.data: required oneof field 'data' must have one initialized field")
            if len(data) > 1:
                raise Reject(400, f"Invalid JSON payload received. Unknown name \"{data[1]}\" at '{pw}': Oneof field 'data' is already set. Cannot set '{data[1]}'")
            if "thoughtSignature" in part:
                sig = part["thoughtSignature"]
                raw_sig = _proto_bytes(sig)
                if raw_sig is None:
                    raise Reject(400, f"Invalid value at '{pw}.thought_signature' (TYPE_BYTES), Base64 decoding failed for \"{sig}\"")
                # Google documents placeholder values that skip the check (for calls made elsewhere).
                _expect(
                    raw_sig.startswith(GEMINI_SIGNATURE_PREFIX) or sig in GEMINI_SKIP_SIGNATURES,
                    "Thought signature is not valid.",
                )
            if "text" in part:
                _expect(isinstance(part["text"], str), f"Invalid value at '{pw}.text' (TYPE_STRING)")
                if not part.get("thought"):
                    texts.append(part["text"])
            elif "inlineData" in part:
                blob = _gemini_fields(part["inlineData"], {"mimeType", "data", "displayName"}, f"{pw}.inline_data")
                _expect(isinstance(blob.get("mimeType"), str), f"* {prefix}{pw}.inline_data.mime_type: mime_type must be set")
                try:
                    raw_data = base64.b64decode(blob.get("data", ""), validate=True)
                except (binascii.Error, ValueError) as e:
                    raise Reject(400, f"Invalid value at '{pw}.inline_data.data' (TYPE_BYTES), Base64 decoding failed") from e
                images.append(f"{blob['mimeType']} {len(raw_data)} bytes")
            elif "fileData" in part:
                file_data = _gemini_fields(part["fileData"], {"mimeType", "fileUri", "displayName"}, f"{pw}.file_data")
                images.append(f"url {file_data.get('fileUri')}")
            elif "functionCall" in part:
                fc = _gemini_fields(part["functionCall"], {"id", "name", "args"}, f"{pw}.function_call")
                _expect(isinstance(fc.get("name"), str) and fc["name"], f"* {prefix}{pw}.function_call.name: Name cannot be empty.")
                if "args" in fc:
                    _expect(isinstance(fc["args"], dict), f"Invalid value at '{pw}.function_call.args' (type.googleapis.com/google.protobuf.Struct), {json.dumps(fc['args'])}")
                calls.append(fc["name"])
            elif "functionResponse" in part:
                fr = _gemini_fields(part["functionResponse"], {"id", "name", "response", "parts", "willContinue", "scheduling"}, f"{pw}.function_response")
                _expect(isinstance(fr.get("name"), str) and fr["name"], f"* {prefix}{pw}.function_response.name: Name cannot be empty.")
                _expect(
                    isinstance(fr.get("response"), dict),
                    f"Invalid value at '{pw}.function_response.response' (type.googleapis.com/google.protobuf.Struct), {json.dumps(fr.get('response'))}",
                )
                responses.append((fr["name"], _gemini_response_text(fr["response"])))
        if calls:
            _expect(role == "model", "Please ensure that function call turns come from the model role.")
            _expect(
                previous_role != "model",
                "Please ensure that function call turn comes immediately after a user turn or after a function response turn.",
            )
        if responses:
            _expect(role == "user", "Please ensure that function response turns come from the user role.")
            _expect(
                len(responses) == len(previous_calls),
                "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
            )
            for name, _ in responses:
                _expect(name in previous_calls, f"Please ensure that the function response names match the function call names of the function call turn (no call to {name!r}).")
            results_since_user = [text for _, text in responses]
            conv.any_tool_result = True
        elif previous_calls:
            raise Reject(
                400,
                "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
            )
        if role == "user" and (texts or images):
            conv.last_user_text, conv.images = " ".join(texts), images
            if not responses:
                results_since_user = []
        previous_calls = calls
        previous_role = role
    conv.tool_results = results_since_user


def gemini_conversation(body: dict[str, Any], prefix: str = "GenerateContentRequest.") -> Conversation:
    """Validates a generateContent body like the Gemini API: proto field names only (camelCase
    or snake_case), user/model roles, one data field per part, function responses answering the
    previous turn's calls one for one, base64 signatures it issued."""
    fields = _gemini_fields(body, GEMINI_FIELDS, "")
    conv = Conversation()
    for i, raw_tool in enumerate(fields.get("tools") or []):
        tool = _gemini_fields(raw_tool, GEMINI_TOOL_FIELDS, f"tools[{i}]")
        for k, raw_decl in enumerate(tool.get("functionDeclarations") or []):
            dw = f"tools[{i}].function_declarations[{k}]"
            decl = _gemini_fields(raw_decl, GEMINI_DECLARATION_FIELDS, dw)
            _expect(isinstance(decl.get("name"), str) and re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}", decl["name"]) is not None, f"* {prefix}{dw}.name: Invalid function name.")
            if "parameters" in decl:
                _gemini_schema(decl["parameters"], f"{dw}.parameters")
            conv.tools.append((decl["name"], decl.get("parameters") or decl.get("parametersJsonSchema") or {}))
    if "systemInstruction" in fields:
        system = _gemini_fields(fields["systemInstruction"], {"role", "parts"}, "system_instruction")
        for j, part in enumerate(system.get("parts") or []):
            _gemini_fields(part, GEMINI_PART_FIELDS, f"system_instruction.parts[{j}]")
    if "toolConfig" in fields:
        config = _gemini_fields(fields["toolConfig"], {"functionCallingConfig", "retrievalConfig"}, "tool_config")
        if "functionCallingConfig" in config:
            fcc = _gemini_fields(config["functionCallingConfig"], {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
            _expect(fcc.get("mode", "AUTO") in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"), f"Invalid value at 'tool_config.function_calling_config.mode', \"{fcc.get('mode')}\"")
    if "generationConfig" in fields:
        gen = _gemini_fields(fields["generationConfig"], GEMINI_GENERATION_FIELDS, "generation_config")
        if "thinkingConfig" in gen:
            thinking = _gemini_fields(gen["thinkingConfig"], GEMINI_THINKING_FIELDS, "generation_config.thinking_config")
            conv.reasoning = bool(thinking.get("includeThoughts")) or (thinking.get("thinkingBudget") or 0) > 0
        if "responseSchema" in gen:
            _gemini_schema(gen["responseSchema"], "generation_config.response_schema")
    gemini_contents(fields.get("contents"), prefix, conv)
    return conv


def gemini_usage(plan: Plan, produced: int | None = None) -> dict[str, Any]:
    out = OUTPUT_TOKENS if produced is None else produced
    usage: dict[str, Any] = {
        "promptTokenCount": INPUT_TOKENS,
        "candidatesTokenCount": out - plan.reasoning_tokens if produced is None else out,
        "totalTokenCount": INPUT_TOKENS + out,
        "cachedContentTokenCount": CACHED_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": INPUT_TOKENS}],
    }
    if plan.reasoning_tokens and produced is None:
        usage["thoughtsTokenCount"] = plan.reasoning_tokens
    return usage


# -- the server -----------------------------------------------------------------------------------


class MockProviders(StandInServer):
    """The server plus its record of requests. Use as a context manager or call start/stop.

    `key`: when set, every protocol refuses a request whose credential (Bearer, x-api-key,
    x-goog-api-key or ?key=) is not exactly this, with that protocol's auth error.
    """

    name = "mock-providers"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, key: str | None = None):
        self.key = key
        # previous_response_id support: response id -> the whole conversation as input items.
        self.stored_responses: dict[str, list[Any]] = {}
        # Usage field name -> the value every answer reports instead (see report_usage).
        self.usage_override: dict[str, Any] = {}
        super().__init__(_Handler, host, port)

    def base_url(self, protocol: str) -> str:
        """The provider URL to register for `protocol`: `<url>/v1`, or `<url>/v1beta` for gemini."""
        return f"{self.url}/v1beta" if protocol == "gemini" else f"{self.url}/v1"

    def report_usage(self, **fields: Any) -> None:
        """From now on every answer reports these values in its usage fields of these names
        (``prompt_tokens``, ``input_tokens``, ``promptTokenCount``, ``cached_tokens``, ...),
        wherever the protocol has them; no arguments goes back to the scripted counts."""
        self.usage_override = dict(fields)

    def clear(self) -> None:
        self.forget_requests()

    def matching(self, protocol: str | None = None, path: str | None = None, model: str | None = None) -> list[Received]:
        return [
            r
            for r in self.requests
            if (protocol is None or r.protocol == protocol)
            and (path is None or r.path == path or r.path.endswith(path))
            and (model is None or r.model == model)
        ]

    def last(self, protocol: str | None = None, path: str | None = None, model: str | None = None) -> Received:
        """The latest matching request; AssertionError saying what arrived when there is none."""
        found = self.matching(protocol, path, model)
        assert found, (
            f"the mock provider received no request (protocol={protocol}, path={path}, model={model}); "
            f"got {[(r.method, r.path, r.model, r.status) for r in self.requests][-10:]}"
        )
        return found[-1]

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        return self.wait_for_request(predicate, timeout)


GEMINI_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")


class _Handler(StandInHandler):
    owner: MockProviders
    server_version = "MockProviders/1.0"
    json_type = "application/json; charset=utf-8"

    def new_record(self, **fields: Any) -> Received:
        rec = Received(**fields)
        if isinstance(rec.json, dict) and isinstance(rec.json.get("model"), str):
            rec.model = rec.json["model"]
        return rec

    def transform(self, payload: Any) -> Any:
        return with_usage(payload, self.owner.usage_override)

    def _error(self, rec: Received, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        rec.error = message
        if rec.protocol == "anthropic_messages":
            self.send_json(status, anthropic_error(status, message, request_id=f"req_mock{_next_id()}"))
        elif rec.protocol == "gemini":
            self.send_json(status, gemini_error(status, message))
        else:
            self.send_json(status, chat_error(status, message, param, code))

    # -- routing ---------------------------------------------------------------------------------

    def answer(self, rec: Received) -> None:
        if self.command == "GET":
            self._get(rec)
        else:
            self._post(rec)

    def _get(self, rec: Received) -> None:
        gemini_key = rec.header("x-goog-api-key") or rec.query.get("key")
        if rec.path.rstrip("/") in ("/v1beta/models", "/v1/models") and gemini_key and not rec.header("Authorization"):
            # Google serves its list under both versions (google-genai 3 uses /v1).
            rec.protocol = "gemini"
            if self._gemini_auth(rec):
                self.send_json(200, {"models": [self._gemini_model(m) for m in GEMINI_MODELS]})
        elif rec.path.rstrip("/") == "/v1/models":
            if rec.header("anthropic-version") is not None:
                rec.protocol = "anthropic_messages"
                if self._anthropic_auth(rec):
                    data = [
                        {"type": "model", "id": m, "display_name": m.replace("-", " ").title(), "created_at": "2025-01-01T00:00:00Z"}
                        for m in ANTHROPIC_MODELS
                    ]
                    self.send_json(200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
            else:
                rec.protocol = "openai_chat"
                if self._openai_auth(rec):
                    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"} for m in CHAT_MODELS]
                    self.send_json(200, {"object": "list", "data": data})
        elif rec.path.rstrip("/") == "/v1beta/models":
            rec.protocol = "gemini"
            if self._gemini_auth(rec):
                self.send_json(200, {"models": [self._gemini_model(m) for m in GEMINI_MODELS]})
        elif rec.path.startswith(("/v1beta/models/", "/v1/models/")):
            rec.protocol = "gemini"
            name = rec.path.split("/models/", 1)[1]
            if self._gemini_auth(rec):
                if name in GEMINI_MODELS:
                    self.send_json(200, self._gemini_model(name))
                else:
                    self._error(rec, 404, f"models/{name} is not found for API version v1beta.")
        else:
            self._error(rec, 404, f"no route GET {rec.path}")

    @staticmethod
    def _gemini_model(name: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name.replace("-", " ").title(),
            "description": "A mock Gemini model",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
            "maxTemperature": 2,
            "thinking": True,
        }

    def _post(self, rec: Received) -> None:
        path = rec.path.rstrip("/")
        gemini = GEMINI_PATH.match(path)
        routes: dict[str, tuple[str, Callable[[Received], None]]] = {
            "/v1/chat/completions": ("openai_chat", self._chat),
            "/v1/responses": ("openai_responses", self._responses),
            "/v1/responses/input_tokens": ("openai_responses", self._responses_input_tokens),
            "/v1/messages": ("anthropic_messages", self._messages),
            "/v1/messages/count_tokens": ("anthropic_messages", self._count_tokens),
        }
        if gemini:
            rec.protocol = "gemini"
            rec.model = gemini.group(2)
            handler = {
                "generateContent": self._generate,
                "streamGenerateContent": self._generate,
                "countTokens": self._count_tokens_gemini,
            }[gemini.group(3)]
            if not self._gemini_auth(rec):
                return
        elif path in routes:
            rec.protocol, handler = routes[path]
            auth = self._anthropic_auth if rec.protocol == "anthropic_messages" else self._openai_auth
            if not auth(rec):
                return
        else:
            self._error(rec, 404, f"no route POST {rec.path}")
            return
        if not isinstance(rec.json, dict):
            message = (
                "Invalid JSON payload received." if rec.protocol == "gemini" else "We could not parse the JSON body of your request."
            )
            self._error(rec, 400, message)
            return
        if rec.model and rec.model.startswith("fail-"):
            try:
                status = int(rec.model.split("-", 1)[1])
            except ValueError:
                status = 500
            self._error(rec, status, FAIL_MESSAGE)
            return
        try:
            handler(rec)
        except Reject as e:
            self._error(rec, e.status, e.message, e.param, e.code)

    # -- auth ------------------------------------------------------------------------------------

    def _openai_auth(self, rec: Received) -> bool:
        auth = rec.header("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            self._error(rec, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            return False
        if self.owner.key is not None and auth[7:] != self.owner.key:
            self._error(rec, 401, "Incorrect API key provided.", code="invalid_api_key")
            return False
        return True

    def _anthropic_auth(self, rec: Received) -> bool:
        # The official SDKs send `x-api-key`; newer ones send `Authorization: Bearer` instead.
        bearer = rec.header("Authorization") or ""
        key = rec.header("x-api-key") or (bearer[7:].strip() if bearer.startswith("Bearer ") else None)
        if not key:
            self._error(rec, 401, "x-api-key header is required")
            return False
        if self.owner.key is not None and key != self.owner.key:
            self._error(rec, 401, "invalid x-api-key")
            return False
        version = rec.header("anthropic-version")
        if version is None:
            self._error(rec, 400, "anthropic-version: header is required")
            return False
        # Dated versions only; newer SDKs send newer dates than this mock knows, so any date goes.
        if version not in ANTHROPIC_VERSIONS and re.fullmatch(r"\d{4}-\d{2}-\d{2}", version) is None:
            self._error(rec, 400, f"anthropic-version: invalid version '{version}'")
            return False
        return True

    def _gemini_auth(self, rec: Received) -> bool:
        key = rec.header("x-goog-api-key") or rec.query.get("key")
        if not key:
            self._error(
                rec,
                403,
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            )
            return False
        if self.owner.key is not None and key != self.owner.key:
            self._error(rec, 400, "API key not valid. Please pass a valid API key.")
            return False
        return True

    # -- OpenAI Chat -----------------------------------------------------------------------------

    def _chat(self, rec: Received) -> None:
        body = rec.json
        conv = chat_conversation(body)
        plan = plan_answer(conv, "call_mock")
        ident = f"chatcmpl-mock{_next_id()}"
        created = int(time.time())
        model = body["model"]
        finish = "tool_calls" if plan.calls else "stop"
        tool_calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}} for c in plan.calls
        ]
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None, "annotations": []}
            if tool_calls:
                message["tool_calls"] = tool_calls
            if plan.reasoning:
                message["reasoning_content"] = plan.reasoning
            completion = chat_completion(
                ident,
                created,
                model,
                message,
                finish,
                chat_usage(plan),
                logprobs=True,
                service_tier="default",
                system_fingerprint="fp_mock",
            )
            self.send_json(200, completion)
            return
        opts = body.get("stream_options")
        with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        stream = ChatStream(self, ident, created, model, with_usage=with_usage, fingerprint="fp_mock", logprobs=True)
        stream.delta({"role": "assistant", "content": "", "refusal": None})
        if plan.reasoning:
            for piece in pieces(plan.reasoning):
                stream.delta({"reasoning_content": piece})
        if plan.text:
            for piece in pieces(plan.text):
                stream.delta({"content": piece})
        for index, call in enumerate(plan.calls):
            stream.delta({"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]})
            for piece in _split_json(call.arguments_json):
                stream.delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        stream.delta({}, finish)
        if with_usage:
            stream.usage(chat_usage(plan))
        stream.done()

    # -- OpenAI Responses ------------------------------------------------------------------------

    def _responses_history(self, body: dict[str, Any]) -> list[Any]:
        prev = body.get("previous_response_id")
        if prev is None:
            return []
        history = self.owner.stored_responses.get(prev) if isinstance(prev, str) else None
        if history is None:
            raise Reject(400, f"Previous response with id '{prev}' not found.", "previous_response_id", "previous_response_not_found")
        return history

    def _responses_input_tokens(self, rec: Received) -> None:
        body = dict(rec.json)
        body.pop("stream", None)
        responses_conversation(body, self._responses_history(body))
        self.send_json(200, {"object": "response.input_tokens", "input_tokens": COUNT_TOKENS})

    def _responses(self, rec: Received) -> None:
        body = rec.json
        history = self._responses_history(body)
        conv = responses_conversation(body, history)
        plan = plan_answer(conv, "call_mock")
        n = _next_id()
        ident = f"resp_mock{n}"
        model = body["model"]
        include = body.get("include") or []
        output: list[dict[str, Any]] = []
        if plan.reasoning:
            item: dict[str, Any] = {"id": f"rs_mock{n}", "type": "reasoning", "summary": [{"type": "summary_text", "text": plan.reasoning}]}
            if "reasoning.encrypted_content" in include:
                item["encrypted_content"] = f"{ENCRYPTED_PREFIX}{n}"
            output.append(item)
        if plan.text is not None:
            output.append(
                {
                    "id": f"msg_mock{n}",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}],
                }
            )
        for k, call in enumerate(plan.calls):
            output.append(
                {
                    "id": f"fc_mock{n}_{k}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments_json,
                }
            )
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}

        def response(status: str, out: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
            return response_object(
                ident,
                int(time.time()),
                model,
                status,
                out,
                usage,
                body,
                background=False,
                reasoning={"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
                service_tier="default",
                user=body.get("user"),
            )

        if body.get("store", True):
            stored = history + responses_items(body)
            for item in output:
                if item["type"] == "message":
                    stored.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": item["content"][0]["text"]}]})
                else:
                    stored.append({k: v for k, v in item.items() if k != "status"})
            self.owner.stored_responses[ident] = stored
        if not body.get("stream"):
            self.send_json(200, response("completed", output, responses_usage(plan)))
            return

        stream = ResponsesStream(self, split_text=pieces, split_json=_split_json)
        stream.emit("response.created", response=response("in_progress", [], None))
        stream.emit("response.in_progress", response=response("in_progress", [], None))
        for index, item in enumerate(output):
            stream.item(index, item)
        stream.completed(response("completed", output, responses_usage(plan)))

    # -- Anthropic Messages ----------------------------------------------------------------------

    def _count_tokens(self, rec: Received) -> None:
        anthropic_conversation(rec.json, count_only=True)
        self.send_json(200, {"input_tokens": COUNT_TOKENS})

    def _messages(self, rec: Received) -> None:
        body = rec.json
        conv = anthropic_conversation(body)
        plan = plan_answer(conv, "toolu_mock")
        ident = f"msg_mock{_next_id()}"
        model = body["model"]
        blocks: list[dict[str, Any]] = []
        if plan.reasoning:
            blocks.append({"type": "thinking", "thinking": plan.reasoning, "signature": ANTHROPIC_SIGNATURE})
        if plan.text is not None:
            blocks.append({"type": "text", "text": plan.text})
        for call in plan.calls:
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
        stop = "tool_use" if plan.calls else "end_turn"
        message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": anthropic_usage(plan),
        }
        if not body.get("stream"):
            self.send_json(200, message)
            return
        stream = AnthropicStream(self, split_text=pieces, split_json=_split_json)
        stream.start(message, anthropic_usage(plan, output=1), ping=True)
        for index, block in enumerate(blocks):
            stream.block(index, block)
        stream.finish(stop, OUTPUT_TOKENS)

    # -- Gemini ----------------------------------------------------------------------------------

    def _count_tokens_gemini(self, rec: Received) -> None:
        body = rec.json
        keys = {camel(k) for k in body}
        _expect(keys <= {"contents", "generateContentRequest"}, "Invalid JSON payload received. Unknown name \"%s\": Cannot find field." % ", ".join(sorted(keys - {"contents", "generateContentRequest"})))
        if "contents" in keys and "generateContentRequest" in keys:
            raise Reject(400, "* CountTokensRequest: contents and generate_content_request cannot both be set.")
        if "generateContentRequest" in keys:
            inner = next(v for k, v in body.items() if camel(k) == "generateContentRequest")
            _expect(isinstance(inner, dict), "Invalid JSON payload received. Expected an object at 'generate_content_request'.")
            inner = {k: v for k, v in inner.items() if camel(k) != "model"}
            gemini_conversation(inner, "CountTokensRequest.generate_content_request.")
        else:
            contents = next((v for k, v in body.items() if camel(k) == "contents"), None)
            gemini_contents(contents, "CountTokensRequest.", Conversation())
        self.send_json(200, {"totalTokens": COUNT_TOKENS, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": COUNT_TOKENS}]})

    def _generate(self, rec: Received) -> None:
        body = rec.json
        conv = gemini_conversation(body)
        plan = plan_answer(conv, "unused")
        n = _next_id()
        model = rec.model or ""
        thoughts: list[dict[str, Any]] = []
        if plan.reasoning and self._include_thoughts(body):
            thoughts = [{"text": plan.reasoning, "thought": True, "thoughtSignature": gemini_signature(n)}]
        answer: list[dict[str, Any]] = []
        if plan.text is not None:
            answer.append({"text": plan.text})
        # The Gemini API gives function calls no id: a client matches results by name and order.
        for call in plan.calls:
            answer.append({"functionCall": {"name": call.name, "args": call.arguments}})

        def envelope(parts: list[dict[str, Any]], finish: bool, usage: dict[str, Any]) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish:
                candidate["finishReason"] = "STOP"
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": f"mockresp{n}"}

        if not rec.path.endswith(":streamGenerateContent"):
            self.send_json(200, envelope(thoughts + answer, True, gemini_usage(plan)))
            return
        chunks: list[dict[str, Any]] = []
        produced = 0
        if thoughts:
            parts = pieces(plan.reasoning or "")
            for k, piece in enumerate(parts):
                part: dict[str, Any] = {"text": piece, "thought": True}
                if k == len(parts) - 1:
                    part["thoughtSignature"] = gemini_signature(n)
                produced += 1
                chunks.append(envelope([part], False, gemini_usage(plan, produced)))
        if plan.text is not None:
            for piece in pieces(plan.text):
                produced += 1
                chunks.append(envelope([{"text": piece}], False, gemini_usage(plan, produced)))
        if plan.calls:
            chunks.append(envelope(answer, False, gemini_usage(plan, produced)))
        last = chunks[-1]["candidates"][0]
        last["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = gemini_usage(plan)
        stream = GeminiStream(self, sse=rec.query.get("alt") == "sse")
        for c in chunks:
            stream.send(c)
        stream.end()

    @staticmethod
    def _include_thoughts(body: dict[str, Any]) -> bool:
        gen = next((v for k, v in body.items() if camel(k) == "generationConfig"), {}) or {}
        thinking = next((v for k, v in gen.items() if camel(k) == "thinkingConfig"), {}) or {}
        return bool(next((v for k, v in thinking.items() if camel(k) == "includeThoughts"), False))


def with_usage(payload: Any, override: dict[str, Any]) -> Any:
    """`payload` with the fields named in `override` replaced inside every ``usage`` /
    ``usageMetadata`` object (nested ones too, e.g. ``prompt_tokens_details.cached_tokens``)."""

    def replace_in(usage: dict[str, Any]) -> None:
        for key, value in usage.items():
            if key in override:
                usage[key] = override[key]
            elif isinstance(value, dict):
                replace_in(value)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("usage", "usageMetadata") and isinstance(value, dict):
                    replace_in(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if override and not isinstance(payload, str):
        walk(payload)
    return payload


def _split_json(text: str) -> Iterator[str]:
    """Arguments JSON in a few fragments, as providers stream them."""
    step = max(1, len(text) // 3)
    for i in range(0, len(text), step):
        yield text[i : i + step]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--key", default=None, help="refuse requests whose provider key is not this")
    args = parser.parse_args()
    run_alone(
        MockProviders(host=args.host, port=args.port, key=args.key),
        lambda mock: f"mock providers listening on {mock.url}",
    )


if __name__ == "__main__":
    main()
