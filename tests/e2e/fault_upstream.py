"""A loopback provider whose keys can be made to fail on demand: the upstream of the routing tests.

The routing end-to-end tests (credential pools, strategies, limits, failover, discovery) run two
or more of these, each standing in for one provider that serves the same models, register them
with the real gateway with several keys each, and then program faults per key while real SDKs
send requests through the gateway. Afterwards the record tells exactly which key of which server
answered each request, so distributions can be asserted to the request.

Endpoints (one port; paths are matched by their ending, so ``/v1/...`` and an OCF-style
``/v1/service/llm/v1/...`` both work):

* OpenAI Chat Completions ``POST .../chat/completions`` (key in ``Authorization: Bearer``):
  plain JSON, or SSE with ``"stream": true`` and a final usage chunk when
  ``stream_options.include_usage`` is set;
* Anthropic Messages ``POST .../messages`` (key in ``x-api-key``, or a Bearer token): plain JSON
  or the real SSE event sequence;
* ``GET .../models``: the configurable ``models`` list (Anthropic's shape when an
  ``anthropic-version`` header is sent, OpenAI's otherwise);
* ``GET .../dnt/table``: an OCF node table whose peers (``peers``: id -> models) each offer an
  ``llm`` service with ``identity_group: ["model=NAME", ...]``.

Every answer is deterministic: the text is ``served by <name> with <key>`` and usage is
``PROMPT_TOKENS`` in, ``COMPLETION_TOKENS`` out (``TOTAL_TOKENS`` in all), in each protocol's
own fields.

Faults are programmed per key while the server runs, with ``fail(key, kind, times=N)`` (``times``
None = until ``clear``); ``ANY_KEY`` matches keys without a rule of their own. Kinds:

* ``"429"`` (with ``retry-after`` when given), ``"500"``, ``"401"``: that status with the
  protocol's error body;
* ``"slow"``: waits ``delay`` seconds (default ``slow_seconds``) before sending headers, then
  answers normally unless the client has hung up meanwhile (recorded as ``gave_up``);
* ``"reset"``: closes the connection with a TCP reset, no response at all;
* ``"die_mid_stream"``: a stream sends its first events and then the connection is cut; a plain
  answer sends its headers (with the full ``Content-Length``) and half the body, then is cut;
* ``"slow_stream"`` (not a failure): a stream sends its first event at once and spreads the rest
  over ``delay`` seconds; a plain answer is sent after ``delay`` seconds.

Only generation requests (chat completions, messages) consume faults; model lists and the node
table always answer. Run alone: ``python fault_upstream.py --port 9200 --model shared-model``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 5
TOTAL_TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS
ANY_KEY = "*"
KINDS = ("429", "500", "401", "slow", "reset", "die_mid_stream", "slow_stream")
STATUS_OF = {"429": 429, "500": 500, "401": 401}
FAIL_MESSAGE = "fault upstream failed on purpose"
# A slow answer or a slow stream never keeps a server thread longer than this.
WAIT_LIMIT_S = 60.0


def answer_text(server: str, key: str | None) -> str:
    """What a request served by `server` with `key` answers (tests compare against this)."""
    return f"served by {server} with {key or '<no key>'}"


@dataclass
class Request:
    """One request as the server received it."""

    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival
    method: str
    path: str
    key: str | None
    model: str | None
    stream: bool
    protocol: str | None  # "openai_chat" | "anthropic_messages" | None for GETs
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # the fault kind applied, if any
    status: int | None = None  # the status sent (None: reset, or the client left first)
    # A complete, successful answer was sent. Counted just before its last bytes leave, so a
    # client holding the whole answer always finds it counted (counting after the write raced
    # with tests that compare `served` right after their request returned).
    served: bool = False
    gave_up: bool = False  # the client hung up before the answer was sent
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def generation(self) -> bool:
        return self.protocol is not None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _Rule:
    kind: str
    remaining: int | None
    retry_after: int | float | str | None
    delay: float | None


class _Cut(Exception):
    """The client went away while we were answering."""


class FaultUpstream:
    """The server, its programmable faults and its record. A context manager, or start/stop."""

    def __init__(
        self,
        name: str = "upstream",
        models: list[str] | tuple[str, ...] = ("shared-model",),
        peers: dict[str, list[str]] | None = None,
        keys: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 3.0,
    ):
        self.name = name
        self.models = list(models)
        self.peers = dict(peers or {})
        # When set, a request carrying any other key gets 401 (catches a gateway sending the
        # wrong credential); None accepts any key.
        self.keys = set(keys) if keys is not None else None
        self.slow_seconds = slow_seconds
        self._lock = threading.Condition()
        self._rules: dict[str, _Rule] = {}
        self._records: list[Request] = []
        self._served = 0
        self._open: set[socket.socket] = set()
        upstream = self

        class Handler(_Handler):
            owner = upstream

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.running = False

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The provider URL to register: the gateway appends ``/chat/completions`` etc."""
        return f"{self.url}/v1"

    def start(self) -> FaultUpstream:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fault-{self.name}", daemon=True
        )
        self._thread.start()
        self.running = True
        return self

    def stop(self) -> None:
        """Stops listening: new connections are refused (a provider that is down)."""
        if not self.running:
            return
        self.running = False
        self._server.shutdown()
        self._server.server_close()
        # Kept-alive connections would go on being served by their handler threads; a
        # provider that is down answers nothing, so they are cut too.
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------

    def fail(
        self,
        key: str,
        kind: str,
        times: int | None = None,
        retry_after: int | float | str | None = None,
        delay: float | None = None,
    ) -> None:
        """Makes the next `times` generation requests with `key` (all of them when None) fail
        with `kind`; replaces the key's previous rule. `key` may be ``ANY_KEY``."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        with self._lock:
            self._rules[key] = _Rule(kind, times, retry_after, delay)

    def clear(self, key: str | None = None) -> None:
        """Removes the rule of `key`, or every rule when None."""
        with self._lock:
            if key is None:
                self._rules.clear()
            else:
                self._rules.pop(key, None)

    def rule(self, key: str) -> tuple[str, int | None] | None:
        """The (kind, remaining) programmed for `key` itself, or None."""
        with self._lock:
            r = self._rules.get(key)
            return None if r is None else (r.kind, r.remaining)

    def _take_rule(self, key: str | None) -> _Rule | None:
        with self._lock:
            name = key if key in self._rules else ANY_KEY if ANY_KEY in self._rules else None
            if name is None:
                return None
            rule = self._rules[name]
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    del self._rules[name]
            return rule

    # -- the record ------------------------------------------------------------------------------

    def _record(self, rec: Request) -> None:
        with self._lock:
            self._records.append(rec)
            self._lock.notify_all()

    def _mark_served(self, rec: Request) -> None:
        with self._lock:
            rec.served = True
            self._served += 1
            self._lock.notify_all()

    @property
    def requests(self) -> list[Request]:
        """Every request received, oldest first (GETs included)."""
        with self._lock:
            return list(self._records)

    @property
    def generations(self) -> list[Request]:
        """The chat-completion and messages requests, oldest first."""
        return [r for r in self.requests if r.generation]

    @property
    def served(self) -> int:
        """How many generation requests got a complete, successful answer."""
        with self._lock:
            return self._served

    def count_by_key(self, served_only: bool = False) -> dict[str, int]:
        """Generation requests per key (``"<no key>"`` for none); only successful ones when asked."""
        counts: Counter[str] = Counter()
        for r in self.generations:
            if r.served or not served_only:
                counts[r.key or "<no key>"] += 1
        return dict(counts)

    def served_by_key(self) -> dict[str, int]:
        return self.count_by_key(served_only=True)

    def reset_record(self) -> None:
        """Forgets the record and the served counter (rules stay)."""
        with self._lock:
            self._records.clear()
            self._served = 0

    def wait_for(self, count: int, timeout: float = 10.0, served: bool = False) -> list[Request]:
        """Waits until at least `count` generation requests arrived (or were served)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                gens = [r for r in self._records if r.generation and (r.served or not served)]
                if len(gens) >= count:
                    return gens
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.name}: expected {count} request(s) within {timeout}s, got {len(gens)}"
                    )
                self._lock.wait(remaining)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultUpstream
    protocol_version = "HTTP/1.1"
    server_version = "FaultUpstream/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._open.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._open.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing --------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _key(self) -> str | None:
        key = self.headers.get("x-api-key")
        if key:
            return key.strip()
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth[7:].strip() or None
        return None

    def _begin(self, protocol: str | None) -> Request:
        body = self._read_body() if self.command == "POST" else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        obj = parsed if isinstance(parsed, dict) else {}
        model = obj.get("model")
        rec = Request(
            at=time.monotonic(),
            wall=time.time(),
            method=self.command,
            path=self.path,
            key=self._key(),
            model=model if isinstance(model, str) else None,
            stream=obj.get("stream") is True,
            protocol=protocol,
            json=parsed,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        self.owner._record(rec)
        return rec

    def _send_json(self, rec: Request, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # Recorded before the body leaves: a client holding the whole answer must find the
        # status recorded (setting it after the write raced with tests reading it at once).
        rec.status = status
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            rec.status = None
            raise

    def _send_error(self, rec: Request, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        if rec.protocol == "anthropic_messages":
            kind = {401: "authentication_error", 429: "rate_limit_error", 404: "not_found_error"}.get(
                status, "api_error" if status >= 500 else "invalid_request_error"
            )
            payload: Any = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            )
            payload = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
        self._send_json(rec, status, payload, headers)

    def _start_sse(self, rec: Request) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        rec.status = 200
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as e:
            raise _Cut() from e

    def _event(self, payload: Any, event: str | None = None) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        head = f"event: {event}\n" if event else ""
        self._chunk(f"{head}data: {text}\n\n".encode())

    def _end_chunks(self) -> None:
        self._chunk(b"")

    def _client_left_within(self, seconds: float) -> bool:
        """Waits up to `seconds`; True as soon as the client closes the connection."""
        sock: socket.socket = self.connection
        deadline = time.monotonic() + min(seconds, WAIT_LIMIT_S)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, errored = select.select([sock], [], [sock], min(remaining, 0.1))
            if readable or errored:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(0.05)  # bytes of a next request on a kept-alive connection: not a hang-up

    def _cut(self) -> None:
        """Ends the connection mid-answer, without the chunked terminator (a crashed provider)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reset(self) -> None:
        """Closes the connection with a TCP RST and no response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket's fd stays open while rfile refers to it; close both so the RST goes now.
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    # -- dispatch --------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        rec = self._begin(None)
        try:
            path = self.path.split("?", 1)[0].rstrip("/")
            if self.owner.keys is not None and rec.key not in self.owner.keys and path.endswith("/models"):
                self._send_error(rec, 401, "unknown key")
            elif path.endswith("/models"):
                self._models(rec)
            elif path.endswith("/dnt/table"):
                self._table(rec)
            else:
                self._send_error(rec, 404, f"no route GET {self.path}")
        finally:
            rec.done.set()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0].rstrip("/")
        protocol = (
            "openai_chat"
            if path.endswith("/chat/completions")
            else "anthropic_messages"
            if path.endswith("/messages")
            else None
        )
        rec = self._begin(protocol)
        try:
            if protocol is None:
                self._send_error(rec, 404, f"no route POST {self.path}")
                return
            if not isinstance(rec.json, dict) or not rec.model:
                self._send_error(rec, 400, "the body must be a JSON object with a model")
                return
            if self.owner.keys is not None and rec.key not in self.owner.keys:
                self._send_error(rec, 401, "unknown key")
                return
            rule = self.owner._take_rule(rec.key)
            if rule is not None:
                rec.fault = rule.kind
                if self._apply(rec, rule):
                    return
            self._answer(rec, rule)
        except _Cut:
            rec.gave_up = True
            self.close_connection = True
        finally:
            rec.done.set()

    def _apply(self, rec: Request, rule: _Rule) -> bool:
        """Carries out a fault; True when nothing more is to be sent."""
        if rule.kind in STATUS_OF:
            headers = {} if rule.retry_after is None else {"retry-after": str(rule.retry_after)}
            self._send_error(rec, STATUS_OF[rule.kind], f"{FAIL_MESSAGE}: {rule.kind}", headers)
            return True
        if rule.kind == "reset":
            self._reset()
            return True
        if rule.kind == "slow":
            if self._client_left_within(rule.delay if rule.delay is not None else self.owner.slow_seconds):
                rec.gave_up = True
                self.close_connection = True
                return True
            return False
        if rule.kind == "slow_stream" and not rec.stream:
            if self._client_left_within(rule.delay if rule.delay is not None else self.owner.slow_seconds):
                rec.gave_up = True
                self.close_connection = True
                return True
        return False

    # -- answers ---------------------------------------------------------------------------------

    def _answer(self, rec: Request, rule: _Rule | None) -> None:
        text = answer_text(self.owner.name, rec.key)
        pieces = [text[: len(text) // 3], text[len(text) // 3 : 2 * len(text) // 3], text[2 * len(text) // 3 :]]
        dying = rule is not None and rule.kind == "die_mid_stream"
        drip = rule.delay if rule is not None and rule.delay is not None else self.owner.slow_seconds
        pause = drip / (len(pieces) - 1) if rule is not None and rule.kind == "slow_stream" and rec.stream else 0.0
        if rec.protocol == "anthropic_messages":
            self._anthropic(rec, text, pieces, dying, pause)
        else:
            self._openai(rec, text, pieces, dying, pause)

    def _sleep(self, pause: float) -> None:
        if pause > 0 and self._client_left_within(pause):
            raise _Cut()

    def _plain(self, rec: Request, payload: dict[str, Any], dying: bool) -> None:
        if not dying:
            self.owner._mark_served(rec)
            self._send_json(rec, 200, payload)
            return
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        rec.status = 200
        self.wfile.write(data[: len(data) // 2])
        self._cut()

    def _openai(self, rec: Request, text: str, pieces: list[str], dying: bool, pause: float) -> None:
        ident = f"chatcmpl-{self.owner.name}-{len(self.owner._records)}"
        created = int(time.time())
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": TOTAL_TOKENS}
        if not rec.stream:
            self._plain(
                rec,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": rec.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                dying,
            )
            return
        opts = rec.json.get("stream_options")
        with_usage = isinstance(opts, dict) and opts.get("include_usage") is True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": rec.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if with_usage:
                c["usage"] = None
            return c

        self._start_sse(rec)
        self._event(chunk({"role": "assistant", "content": pieces[0]}))
        if dying:
            self._cut()
            return
        for piece in pieces[1:]:
            self._sleep(pause)
            self._event(chunk({"content": piece}))
        self._event(chunk({}, "stop"))
        if with_usage:
            self._event(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": rec.model,
                    "choices": [],
                    "usage": usage,
                }
            )
        self.owner._mark_served(rec)
        self._event("[DONE]")
        self._end_chunks()

    def _anthropic(self, rec: Request, text: str, pieces: list[str], dying: bool, pause: float) -> None:
        message = {
            "id": f"msg_{self.owner.name}_{len(self.owner._records)}",
            "type": "message",
            "role": "assistant",
            "model": rec.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
        }
        if not rec.stream:
            self._plain(rec, message, dying)
            return

        def emit(kind: str, **payload: Any) -> None:
            self._event({"type": kind, **payload}, event=kind)

        self._start_sse(rec)
        emit(
            "message_start",
            message={
                **message,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
            },
        )
        emit("content_block_start", index=0, content_block={"type": "text", "text": ""})
        emit("content_block_delta", index=0, delta={"type": "text_delta", "text": pieces[0]})
        if dying:
            self._cut()
            return
        for piece in pieces[1:]:
            self._sleep(pause)
            emit("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        emit("content_block_stop", index=0)
        emit(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": COMPLETION_TOKENS},
        )
        self.owner._mark_served(rec)
        emit("message_stop")
        self._end_chunks()

    def _models(self, rec: Request) -> None:
        models = list(self.owner.models)
        if rec.header("anthropic-version") is not None:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models
            ]
            payload: dict[str, Any] = {
                "data": data,
                "has_more": False,
                "first_id": models[0] if models else None,
                "last_id": models[-1] if models else None,
            }
        else:
            payload = {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": self.owner.name} for m in models],
            }
        self._send_json(rec, 200, payload)

    def _table(self, rec: Request) -> None:
        table = {}
        for peer, models in self.owner.peers.items():
            table[f"/{peer}"] = {
                "id": peer,
                "latency": 1,
                "privileged": False,
                "owner": self.owner.name,
                "current_offering": [],
                "role": ["worker"],
                "status": "connected",
                "available_offering": [],
                "service": [
                    {
                        "name": "llm",
                        "hardware": {},
                        "status": "connected",
                        "host": "127.0.0.1",
                        "port": str(self.owner.port),
                        "identity_group": [f"model={m}" for m in models],
                    }
                ],
                "last_seen": int(time.time()),
                "version": "fault-upstream",
                "public_address": "",
                "hardware": {},
                "connected": True,
                "load": [],
            }
        self._send_json(rec, 200, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="upstream")
    parser.add_argument("--model", action="append", default=None, help="a model to list (repeatable)")
    args = parser.parse_args()
    up = FaultUpstream(name=args.name, models=args.model or ["shared-model"], port=args.port).start()
    print(f"fault upstream {up.name} listening on {up.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        up.stop()


if __name__ == "__main__":
    main()
