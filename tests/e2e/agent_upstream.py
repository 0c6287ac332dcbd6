"""A scripted "model" for the CLI-agent end-to-end tests, speaking four provider protocols.

The coding agents (Claude Code, Codex, Gemini CLI) only finish a tool round trip when the model
behind them asks for one of *their own* tools with arguments they accept, and then answers once
the tool's output comes back. This server plays that model, over real HTTP on 127.0.0.1, in the
wire format of whichever protocol a request arrives in:

* ``openai_chat``        — ``POST /v1/chat/completions`` (JSON, or SSE with ``stream``);
* ``anthropic_messages`` — ``POST /v1/messages`` (+ ``/v1/messages/count_tokens``);
* ``openai_responses``   — ``POST /v1/responses`` (JSON, or SSE with ``stream``);
* ``gemini``             — ``POST /v1beta/models/{model}:generateContent``,
  ``:streamGenerateContent`` (``?alt=sse`` → SSE, else a JSON array), ``:countTokens``
  (same under ``/v1/``);
* ``GET /v1/models`` and ``GET /v1beta/models``.

The gateway's providers in the tests are ``openai_chat`` and ``anthropic_messages``; the other two
let a test (or a person, running ``python agent_upstream.py --port 9000 --log out.jsonl``) point an
agent straight at this server to see what it sends with no gateway in between.

The script, decided afresh from each request's conversation (as a real model would):

1. the conversation holds a tool result → answer text ``FINAL_PREFIX`` + that result's text,
   so the agent's final answer shows what the tool printed;
2. the user's text contains ``TRIGGER`` and the request offers one of the shell tools in
   ``SHELL_TOOLS`` → call that tool with ``command`` (from the user text: the part after
   ``TRIGGER:``, up to the end of that line; ``DEFAULT_COMMAND`` when none); when it offers
   tools but none of those (an SDK test's own tool), call the first one with every required
   string parameter set to that text;
3. anything else (titles, summaries, "who speaks next" checks...) → a short plain text.

Like a reasoning model, it thinks first when the request asks for it (Chat ``reasoning_effort``:
``reasoning_content``; Anthropic ``thinking``: a signed ``thinking`` block; Responses
``reasoning``: a ``reasoning`` item with ``encrypted_content``; Gemini ``includeThoughts``: a
thought part, and a ``thoughtSignature`` on its function calls). And like the real APIs it
refuses (HTTP 400, the protocol's error body, action ``refused``) a conversation that replays
that reasoning wrongly: with Anthropic thinking on, the assistant turn holding the tool call must
start with the thinking block, and signatures must be ones it issued; Gemini function calls it
signed must come back with their signature (or Google's documented
``skip_thought_signature_validator``); Responses ``encrypted_content`` must be its own. That is
what a gateway must carry through another protocol and back.

Every request is kept (method, path, query, headers, parsed JSON) for the tests to inspect. The
server, that record and the protocols' stream writers are :mod:`stand_in`'s; this module is the
script and the replay checks.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stand_in import AnthropicStream, ChatStream, Exchange, GeminiStream, ResponsesStream, StandInHandler, StandInServer
from stand_in import anthropic_error, chat_completion, gemini_error, openai_error, response_object, run_alone

TRIGGER = "use tool"
DEFAULT_COMMAND = "echo flexiproxy-tool-ran"
FINAL_PREFIX = "Tool result: "
PLAIN_REPLY = "Hello from the scripted model."
INPUT_TOKENS = 31
OUTPUT_TOKENS = 7
CACHED_TOKENS = 3
REASONING_TEXT = "Let me think about which tool to use."
# Gemini's documented stand-in for a signature it did not issue (Gemini CLI sends it too).
SKIP_SIGNATURE = "skip_thought_signature_validator"

# Each agent's shell tool and the arguments it accepts, most specific first. Claude Code: Bash;
# Gemini CLI: run_shell_command; Codex: exec_command (unified exec), shell_command (a string)
# or shell (argv).
SHELL_TOOLS: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("Bash", lambda cmd: {"command": cmd, "description": "Run the command the user asked for"}),
    ("run_shell_command", lambda cmd: {"command": cmd, "description": "Run the command the user asked for"}),
    ("exec_command", lambda cmd: {"cmd": cmd}),
    ("shell_command", lambda cmd: {"command": cmd}),
    ("shell", lambda cmd: {"command": ["bash", "-lc", cmd]}),
]


@dataclass(kw_only=True)
class Recorded(Exchange):
    """One request as the server received it, plus what it decided to answer."""

    protocol: str = ""
    action: str = ""  # "tool_call:<name>", "final", "plain", "count", "models", "unknown"
    reply_call_id: str | None = None  # the id of the tool call answered, when the protocol has one
    result_call_ids: list[str | None] = field(default_factory=list)  # ids the request's tool results name

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest for logs and reports."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": dict(self.headers),
            "protocol": self.protocol,
            "action": self.action,
            "reply_call_id": self.reply_call_id,
            "result_call_ids": self.result_call_ids,
            "json": self.json,
        }


@dataclass
class Conversation:
    """What the script needs from a request, whatever its protocol."""

    tools: dict[str, Any]  # name -> JSON schema of its parameters
    user_text: str
    tool_results: list[str]
    stream: bool
    model: str
    tool_result_ids: list[str | None] = field(default_factory=list)  # call ids the results answer
    reasoning: bool = False  # the request asks the model to think (and show or sign it)


class Refused(Exception):
    """A request the real API would answer with 400: the message is the API's own wording."""


def command_from(user_text: str) -> str:
    match = re.search(re.escape(TRIGGER) + r"\s*:\s*(.+)", user_text)
    if match:
        return match.group(1).strip().splitlines()[0].strip().strip("`")
    return DEFAULT_COMMAND


def decide(conv: Conversation) -> tuple[str, Any]:
    """("final", text) | ("tool_call", (name, arguments)) | ("plain", text)."""
    if conv.tool_results:
        return "final", FINAL_PREFIX + conv.tool_results[-1].strip()
    if TRIGGER in conv.user_text and conv.tools:
        command = command_from(conv.user_text)
        for name, make_args in SHELL_TOOLS:
            if name in conv.tools:
                return "tool_call", (name, make_args(command))
        name, schema = next(iter(conv.tools.items()))
        schema = schema if isinstance(schema, dict) else {}
        props = schema.get("properties") or {}
        args = {
            key: command
            for key in schema.get("required") or []
            if str((props.get(key) or {}).get("type", "string")).lower() == "string"
        }
        return "tool_call", (name, args)
    return "plain", PLAIN_REPLY


def _decide(rec: Recorded, conv: Conversation) -> tuple[str, Any]:
    """`decide`, noting the decision and the answered call ids on the record."""
    kind, what = decide(conv)
    rec.action = f"tool_call:{what[0]}" if kind == "tool_call" else kind
    rec.result_call_ids = list(conv.tool_result_ids)
    return kind, what


def _text_of(value: Any) -> str:
    """All the text in a content value of any protocol (string, parts, nested results)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_text_of(v) for v in value) if t)
    if isinstance(value, dict):
        for key in ("text", "output", "content", "stdout", "result", "response"):
            if key in value:
                return _text_of(value[key])
        return json.dumps(value)
    return str(value)


# -- request parsing, per protocol -----------------------------------------------------------


def parse_openai_chat(body: dict[str, Any]) -> Conversation:
    tools = {
        t["function"]["name"]: t["function"].get("parameters")
        for t in body.get("tools") or []
        if isinstance(t.get("function"), dict) and "name" in t["function"]
    }
    user: list[str] = []
    results: list[str] = []
    ids: list[str | None] = []
    for msg in body.get("messages") or []:
        if msg.get("role") == "user":
            user.append(_text_of(msg.get("content")))
        elif msg.get("role") == "tool":
            results.append(_text_of(msg.get("content")))
            ids.append(msg.get("tool_call_id"))
    effort = body.get("reasoning_effort")
    reasoning = bool(effort) and effort != "none"
    return Conversation(tools, "\n".join(user), results, bool(body.get("stream")), body.get("model", ""), ids, reasoning)


def parse_anthropic(body: dict[str, Any], issued: set[str] | None = None) -> Conversation:
    tools = {t["name"]: t.get("input_schema") for t in body.get("tools") or [] if "name" in t}
    user: list[str] = []
    results: list[str] = []
    ids: list[str | None] = []
    for msg in body.get("messages") or []:
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            user.append(content)
            continue
        for block in content or []:
            if block.get("type") == "text":
                user.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                results.append(_text_of(block.get("content")))
                ids.append(block.get("tool_use_id"))
    thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") in ("enabled", "adaptive")
    if issued is not None:
        check_anthropic_thinking(body, thinking, issued)
    return Conversation(
        tools, "\n".join(user), results, bool(body.get("stream")), body.get("model", ""), ids, thinking
    )


def check_anthropic_thinking(body: dict[str, Any], thinking: bool, issued: set[str]) -> None:
    """Anthropic's rules for replayed thinking: signatures must be genuine, and with thinking on
    the last assistant turn that calls a tool must open with its thinking block."""
    messages = body.get("messages") or []
    for i, msg in enumerate(messages):
        if msg.get("role") != "assistant" or not isinstance(msg.get("content"), list):
            continue
        for j, block in enumerate(msg["content"]):
            if block.get("type") == "thinking" and block.get("signature") not in issued:
                raise Refused(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    if not thinking:
        return
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if msg.get("role") != "assistant":
            continue
        content = msg.get("content")
        blocks = content if isinstance(content, list) else []
        if any(b.get("type") == "tool_use" for b in blocks):
            if blocks[0].get("type") not in ("thinking", "redacted_thinking"):
                raise Refused(
                    f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` "
                    "blocks). We recommend you include thinking blocks from previous turns."
                )
        return


def parse_responses(body: dict[str, Any], issued: set[str] | None = None) -> Conversation:
    tools = {
        t["name"]: t.get("parameters") for t in body.get("tools") or [] if t.get("type") == "function" and "name" in t
    }
    user: list[str] = []
    results: list[str] = []
    ids: list[str | None] = []
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for item in items or []:
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            user.append(_text_of(item.get("content")))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            results.append(_text_of(item.get("output")))
            ids.append(item.get("call_id"))
        elif kind == "reasoning" and issued is not None and item.get("encrypted_content") is not None:
            if item["encrypted_content"] not in issued:
                raise Refused(
                    f"The encrypted content for item {item.get('id')} could not be verified. "
                    "Reason: Encrypted content could not be decrypted or parsed."
                )
    wanted = body.get("reasoning")
    reasoning = isinstance(wanted, dict) and wanted.get("effort") != "none"
    return Conversation(
        tools, "\n".join(user), results, bool(body.get("stream")), body.get("model", ""), ids, reasoning
    )


def parse_gemini(body: dict[str, Any], model: str, stream: bool, issued: set[str] | None = None) -> Conversation:
    tools = {
        decl["name"]: decl.get("parametersJsonSchema") or decl.get("parameters")
        for tool in body.get("tools") or []
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []
        if "name" in decl
    }
    user: list[str] = []
    results: list[str] = []
    ids: list[str | None] = []
    contents = body.get("contents") or []
    for content in contents:
        for part in content.get("parts") or []:
            if "functionResponse" in part:
                results.append(_text_of(part["functionResponse"].get("response")))
                ids.append(part["functionResponse"].get("id"))
            elif content.get("role", "user") == "user" and "text" in part:
                user.append(part["text"])
    if issued is not None:
        check_gemini_signatures(contents, issued)
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    return Conversation(tools, "\n".join(user), results, stream, model, ids, config.get("includeThoughts") is True)


def check_gemini_signatures(contents: list[Any], issued: set[str]) -> None:
    """Gemini's rule for function calls it signed: in the current turn (since the last user
    text) each model step's first function call must come back with its thoughtSignature."""
    start = 0
    for i, content in enumerate(contents):
        if content.get("role", "user") == "user" and any("text" in p for p in content.get("parts") or []):
            start = i
    for i in range(start, len(contents)):
        content = contents[i]
        if content.get("role") != "model":
            continue
        for j, part in enumerate(content.get("parts") or []):
            if "functionCall" not in part:
                continue
            sig = part.get("thoughtSignature")
            if sig != SKIP_SIGNATURE and sig not in issued:
                name = part["functionCall"].get("name")
                raise Refused(
                    "Function call is missing a thought_signature in functionCall parts. This is required for "
                    f"tools to work correctly. Additional data, function call `default_api:{name}` , "
                    f"position {i + 1}. (contents[{i}].parts[{j}])"
                )
            break


# -- the server ----------------------------------------------------------------------------------


class AgentUpstream(StandInServer):
    """The server plus its record of requests. Use as a context manager or call start/stop."""

    name = "agent-upstream"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: str | None = None):
        self._log_path = log_path
        # Reasoning signatures / encrypted content this "model" handed out, for the replay checks.
        self.issued: set[str] = set()
        super().__init__(_Handler, host, port)

    def base_url(self, protocol: str = "openai_chat") -> str:
        """The base URL a provider of `protocol` (or an agent pointed here directly) gets."""
        return self.url + ("/v1beta" if protocol == "gemini" else "/v1")

    @property
    def root(self) -> str:
        return self.url

    def _write_log(self, rec: Recorded) -> None:
        """Appends a finished request (with what was decided) to the ``--log`` file, if any."""
        if self._log_path:
            with self._lock, open(self._log_path, "a") as f:
                f.write(json.dumps(rec.summary()) + "\n")

    def issue(self, prefix: str) -> str:
        token = f"{prefix}{uuid.uuid4().hex}"
        with self._lock:
            self.issued.add(token)
        return token

    def issue_b64(self, prefix: str) -> str:
        """A signature as Gemini sends them: base64 of opaque bytes."""
        token = base64.b64encode(f"{prefix}{uuid.uuid4().hex}".encode()).decode()
        with self._lock:
            self.issued.add(token)
        return token

    def with_action(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.action.startswith(prefix)]

    def dump(self, limit: int = 20000) -> str:
        """The record as indented JSON, cut to `limit` characters, for assertion messages."""
        return json.dumps([r.summary() for r in self.requests], indent=1)[:limit]


class _Handler(StandInHandler):
    owner: AgentUpstream

    def new_record(self, **fields: Any) -> Recorded:
        return Recorded(**fields)

    def end(self, rec: Recorded) -> None:
        self.owner._write_log(rec)
        super().end(rec)

    # -- routing -----------------------------------------------------------------------------

    def answer(self, rec: Recorded) -> None:
        if self.command == "GET":
            self._get(rec)
            return
        body = rec.json if isinstance(rec.json, dict) else {}
        path = rec.path
        gemini = re.fullmatch(r"/v1(?:beta)?/models/([^/:]+):(\w+)", path)
        try:
            if path.endswith("/chat/completions"):
                rec.protocol = "openai_chat"
                self._openai_chat(rec, parse_openai_chat(body))
            elif path.endswith("/messages/count_tokens"):
                rec.protocol, rec.action = "anthropic_messages", "count"
                self.send_json(200, {"input_tokens": INPUT_TOKENS})
            elif path.endswith("/messages"):
                rec.protocol = "anthropic_messages"
                self._anthropic(rec, parse_anthropic(body, self.owner.issued))
            elif path.endswith("/responses"):
                rec.protocol = "openai_responses"
                self._responses(rec, parse_responses(body, self.owner.issued))
            elif gemini and gemini.group(2) == "countTokens":
                rec.protocol, rec.action = "gemini", "count"
                self.send_json(200, {"totalTokens": INPUT_TOKENS})
            elif gemini and gemini.group(2) in ("generateContent", "streamGenerateContent"):
                rec.protocol = "gemini"
                streaming = gemini.group(2) == "streamGenerateContent"
                conv = parse_gemini(body, gemini.group(1), streaming, self.owner.issued)
                self._gemini(rec, conv, sse=rec.query.get("alt") == "sse")
            else:
                rec.action = "unknown"
                self.send_json(404, {"error": {"message": f"no route {path}"}})
        except Refused as e:
            rec.action = f"refused: {e}"
            self.send_json(400, error_body(rec.protocol, str(e)))

    def _get(self, rec: Recorded) -> None:
        rec.action = "models"
        if rec.path.startswith("/v1beta/models"):
            self.send_json(200, {"models": [{"name": "models/agent-model", "displayName": "agent-model"}]})
        elif rec.path.startswith("/v1/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "agent-model", "object": "model", "owned_by": "mock"}]})
        else:
            rec.action = "unknown"
            self.send_json(404, {"error": {"message": f"no route {rec.path}"}})

    # -- OpenAI Chat Completions -----------------------------------------------------------

    def _openai_chat(self, rec: Recorded, conv: Conversation) -> None:
        kind, what = _decide(rec, conv)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        usage = {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        }
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        if kind == "tool_call":
            rec.reply_call_id = call_id
        if not conv.stream:
            message: dict[str, Any] = {"role": "assistant", "content": None}
            if kind == "tool_call":
                name, args = what
                message["tool_calls"] = [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                ]
            else:
                message["content"] = what
            if conv.reasoning:
                message["reasoning_content"] = REASONING_TEXT
            finish = "tool_calls" if kind == "tool_call" else "stop"
            self.send_json(200, chat_completion(ident, created, conv.model, message, finish, usage))
            return

        stream = ChatStream(self, ident, created, conv.model)
        stream.delta({"role": "assistant", "content": ""})
        if conv.reasoning:
            # DeepSeek-style reasoning deltas before the answer.
            for piece in _pieces(REASONING_TEXT):
                stream.delta({"reasoning_content": piece})
        if kind == "tool_call":
            name, args = what
            opening = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            stream.delta({"tool_calls": [opening]})
            for piece in _pieces(json.dumps(args)):
                stream.delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            stream.delta({}, "tool_calls")
        else:
            for piece in _pieces(what):
                stream.delta({"content": piece})
            stream.delta({}, "stop")
        if (conv_opts := (rec.json or {}).get("stream_options")) and conv_opts.get("include_usage"):
            stream.usage(usage)
        stream.done()

    # -- Anthropic Messages ----------------------------------------------------------------

    def _anthropic(self, rec: Recorded, conv: Conversation) -> None:
        kind, what = _decide(rec, conv)
        ident = f"msg_{uuid.uuid4().hex[:20]}"
        tool_id = f"toolu_{uuid.uuid4().hex[:20]}"
        stop = "tool_use" if kind == "tool_call" else "end_turn"
        usage = {
            "input_tokens": INPUT_TOKENS - CACHED_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": CACHED_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
        }
        if kind == "tool_call":
            rec.reply_call_id = tool_id
            block: dict[str, Any] = {"type": "tool_use", "id": tool_id, "name": what[0], "input": what[1]}
        else:
            block = {"type": "text", "text": what}
        signature = self.owner.issue("sig-agent-") if conv.reasoning else None
        thinking = [{"type": "thinking", "thinking": REASONING_TEXT, "signature": signature}] if signature else []
        message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": conv.model,
            "content": [*thinking, block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not conv.stream:
            self.send_json(200, message)
            return
        stream = AnthropicStream(self, split_text=_pieces)
        stream.start(message, dict(usage, output_tokens=1), ping=True)
        for index, each in enumerate(message["content"]):
            stream.block(index, each)
        stream.finish(stop, OUTPUT_TOKENS)

    # -- OpenAI Responses ------------------------------------------------------------------

    def _responses(self, rec: Recorded, conv: Conversation) -> None:
        kind, what = _decide(rec, conv)
        body = rec.json or {}
        resp_id = f"resp_{uuid.uuid4().hex}"
        created = int(time.time())
        usage = {
            "input_tokens": INPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "output_tokens": OUTPUT_TOKENS,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        }
        if kind == "tool_call":
            name, args = what
            item: dict[str, Any] = {
                "id": f"fc_{uuid.uuid4().hex}",
                "type": "function_call",
                "status": "completed",
                "call_id": f"call_{uuid.uuid4().hex[:24]}",
                "name": name,
                "arguments": json.dumps(args),
            }
            rec.reply_call_id = item["call_id"]
        else:
            item = {
                "id": f"msg_{uuid.uuid4().hex}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": what, "annotations": [], "logprobs": []}],
            }

        reasoning: dict[str, Any] | None = None
        if conv.reasoning:
            reasoning = {
                "id": f"rs_{uuid.uuid4().hex}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": REASONING_TEXT}],
            }
            if "reasoning.encrypted_content" in (body.get("include") or []):
                reasoning["encrypted_content"] = self.owner.issue("enc-agent-")
        output = [reasoning, item] if reasoning else [item]

        def response(status: str, output: list[Any], with_usage: bool) -> dict[str, Any]:
            # No conversation state here: no previous response, whatever the request names.
            return response_object(
                resp_id,
                created,
                conv.model,
                status,
                output,
                usage if with_usage else None,
                body,
                previous_response_id=None,
                truncation="disabled",
                metadata={},
            )

        if not conv.stream:
            self.send_json(200, response("completed", output, True))
            return
        stream = ResponsesStream(self, split_text=_pieces)
        stream.emit("response.created", response=response("in_progress", [], False))
        stream.emit("response.in_progress", response=response("in_progress", [], False))
        for index, each in enumerate(output):
            stream.item(index, each)
        stream.completed(response("completed", output, True))

    # -- Gemini ----------------------------------------------------------------------------

    def _gemini(self, rec: Recorded, conv: Conversation, sse: bool) -> None:
        kind, what = _decide(rec, conv)
        resp_id = uuid.uuid4().hex[:22]
        usage = {
            "promptTokenCount": INPUT_TOKENS,
            "candidatesTokenCount": OUTPUT_TOKENS,
            "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
            "cachedContentTokenCount": CACHED_TOKENS,
        }

        def chunk(parts: list[Any], finish: str | None, with_usage: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            out: dict[str, Any] = {"candidates": [cand], "modelVersion": conv.model, "responseId": resp_id}
            out["usageMetadata"] = usage if with_usage else {"promptTokenCount": INPUT_TOKENS, "totalTokenCount": INPUT_TOKENS}
            return out

        thought = [chunk([{"text": REASONING_TEXT, "thought": True}], None, False)] if conv.reasoning else []
        if kind == "tool_call":
            # Gemini 3 signs every function call; the signature must come back with it.
            signature = self.owner.issue_b64("agent-thought-")
            call = {"functionCall": {"name": what[0], "args": what[1]}, "thoughtSignature": signature}
            chunks = [*thought, chunk([call], "STOP", True)]
        else:
            pieces = _pieces(what)
            chunks = [*thought, *(chunk([{"text": p}], None, False) for p in pieces[:-1])]
            chunks.append(chunk([{"text": pieces[-1]}], "STOP", True))
        if not conv.stream:
            parts = [p for c in thought for p in c["candidates"][0]["content"]["parts"]]
            parts += [call] if kind == "tool_call" else [{"text": what}]
            self.send_json(200, chunk(parts, "STOP", True))
            return
        stream = GeminiStream(self, sse)
        for c in chunks:
            stream.send(c)
        stream.end()


def error_body(protocol: str, message: str) -> dict[str, Any]:
    """A 400 in the protocol's own error shape."""
    if protocol == "anthropic_messages":
        return anthropic_error(400, message)
    if protocol == "gemini":
        return gemini_error(400, message)
    return openai_error(400, message)


def _pieces(text: str, size: int = 12) -> list[str]:
    """`text` cut into stream deltas (at least one, possibly empty)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--log", help="append every request as one JSON line to this file")
    args = parser.parse_args()
    run_alone(AgentUpstream(port=args.port, log_path=args.log), lambda server: f"agent upstream on {server.root}")


if __name__ == "__main__":
    main()
