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
table always answer. The server, its record, the stream writers and the connection faults (cut,
reset, waiting for a client to hang up) are :mod:`stand_in`'s. Run alone:
``python fault_upstream.py --port 9200 --model shared-model``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from stand_in import AnthropicStream, ChatStream, ClientGone, Exchange, StandInHandler, StandInServer
from stand_in import anthropic_error, chat_completion, openai_error, run_alone

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


@dataclass(kw_only=True)
class Request(Exchange):
    """One request as the server received it. Its ``path`` is the target as sent, query included."""

    key: str | None = None
    model: str | None = None
    stream: bool = False
    protocol: str | None = None  # "openai_chat" | "anthropic_messages" | None for GETs
    fault: str | None = None  # the fault kind applied, if any
    # A complete, successful answer was sent. Counted just before its last bytes leave, so a
    # client holding the whole answer always finds it counted (counting after the write raced
    # with tests that compare `served` right after their request returned). `status` is None for
    # a reset, or when the client left first.
    served: bool = False
    gave_up: bool = False  # the client hung up before the answer was sent

    @property
    def at(self) -> float:
        """time.monotonic() on arrival."""
        return self.received_at

    @property
    def generation(self) -> bool:
        return self.protocol is not None


@dataclass
class _Rule:
    kind: str
    remaining: int | None
    retry_after: int | float | str | None
    delay: float | None


class FaultUpstream(StandInServer):
    """The server, its programmable faults and its record. A context manager, or start/stop;
    ``stop`` is a provider going down: new connections are refused, open ones are cut."""

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
        self._rules: dict[str, _Rule] = {}
        self._served = 0
        super().__init__(_Handler, host, port)

    @property
    def base_url(self) -> str:
        """The provider URL to register: the gateway appends ``/chat/completions`` etc."""
        return f"{self.url}/v1"

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

    def _mark_served(self, rec: Request) -> None:
        with self._lock:
            rec.served = True
            self._served += 1
            self._lock.notify_all()

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

        def gens(records: list[Request]) -> list[Request]:
            return [r for r in records if r.generation and (r.served or not served)]

        return self.wait_until(
            lambda records: gens(records) if len(gens(records)) >= count else None,
            timeout,
            lambda: f"{self.name}: expected {count} request(s) within {timeout}s, got {len(gens(self._records))}",
        )


def _protocol(path: str) -> str | None:
    """The generation protocol a POST to `path` speaks, by the path's ending; None for no route."""
    path = path.rstrip("/")
    if path.endswith("/chat/completions"):
        return "openai_chat"
    if path.endswith("/messages"):
        return "anthropic_messages"
    return None


class _Handler(StandInHandler):
    owner: FaultUpstream
    server_version = "FaultUpstream/1.0"

    def new_record(self, **fields: Any) -> Request:
        obj = fields["json"] if isinstance(fields["json"], dict) else {}
        model = obj.get("model")
        return Request(
            **{**fields, "path": self.path},
            key=self._key(),
            model=model if isinstance(model, str) else None,
            stream=obj.get("stream") is True,
            protocol=_protocol(fields["path"]) if self.command == "POST" else None,
        )

    def client_left(self, rec: Request) -> None:
        rec.gave_up = True
        self.close_connection = True

    def _key(self) -> str | None:
        key = self.headers.get("x-api-key")
        if key:
            return key.strip()
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth[7:].strip() or None
        return None

    def _send_error(self, rec: Request, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        if rec.protocol == "anthropic_messages":
            payload = anthropic_error(status, message)
        else:
            kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status)
            payload = openai_error(status, message, code=str(status), kind=kind)
        self.send_json(status, payload, headers)

    # -- dispatch --------------------------------------------------------------------------------

    def answer(self, rec: Request) -> None:
        path = rec.path.split("?", 1)[0].rstrip("/")
        if self.command == "GET":
            if self.owner.keys is not None and rec.key not in self.owner.keys and path.endswith("/models"):
                self._send_error(rec, 401, "unknown key")
            elif path.endswith("/models"):
                self._models(rec)
            elif path.endswith("/dnt/table"):
                self._table(rec)
            else:
                self._send_error(rec, 404, f"no route GET {self.path}")
            return
        if rec.protocol is None:
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

    def _apply(self, rec: Request, rule: _Rule) -> bool:
        """Carries out a fault; True when nothing more is to be sent."""
        if rule.kind in STATUS_OF:
            headers = {} if rule.retry_after is None else {"retry-after": str(rule.retry_after)}
            self._send_error(rec, STATUS_OF[rule.kind], f"{FAIL_MESSAGE}: {rule.kind}", headers)
            return True
        if rule.kind == "reset":
            self.reset()
            return True
        delay = rule.delay if rule.delay is not None else self.owner.slow_seconds
        if rule.kind == "slow" or (rule.kind == "slow_stream" and not rec.stream):
            return self.hold(rec, min(delay, WAIT_LIMIT_S))
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
        if pause > 0 and self.client_left_within(min(pause, WAIT_LIMIT_S)):
            raise ClientGone()

    def _plain(self, rec: Request, payload: dict[str, Any], dying: bool) -> None:
        if not dying:
            self.owner._mark_served(rec)
            self.send_json(200, payload)
            return
        # The full length announced, half the body sent, then the connection cut.
        data = self.encode(payload)
        self.send_head(200, {"Content-Type": self.json_type, "Content-Length": str(len(data))})
        self.write(data[: len(data) // 2])
        self.cut()

    def _openai(self, rec: Request, text: str, pieces: list[str], dying: bool, pause: float) -> None:
        ident = f"chatcmpl-{self.owner.name}-{len(self.owner.requests)}"
        created = int(time.time())
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": TOTAL_TOKENS}
        if not rec.stream:
            message = {"role": "assistant", "content": text}
            self._plain(rec, chat_completion(ident, created, rec.model, message, "stop", usage, logprobs=True), dying)
            return
        opts = rec.json.get("stream_options")
        with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        stream = ChatStream(self, ident, created, rec.model, with_usage=with_usage, logprobs=True)
        stream.before_last = lambda: self.owner._mark_served(rec)
        stream.delta({"role": "assistant", "content": pieces[0]})
        if dying:
            self.cut()
            return
        for piece in pieces[1:]:
            self._sleep(pause)
            stream.delta({"content": piece})
        stream.delta({}, "stop")
        if with_usage:
            stream.usage(usage)
        stream.done()

    def _anthropic(self, rec: Request, text: str, pieces: list[str], dying: bool, pause: float) -> None:
        message = {
            "id": f"msg_{self.owner.name}_{len(self.owner.requests)}",
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
        stream = AnthropicStream(self)
        stream.before_last = lambda: self.owner._mark_served(rec)
        stream.start(message, {"input_tokens": PROMPT_TOKENS, "output_tokens": 1})
        stream.emit("content_block_start", index=0, content_block={"type": "text", "text": ""})
        stream.text_delta(0, pieces[0])
        if dying:
            self.cut()
            return
        for piece in pieces[1:]:
            self._sleep(pause)
            stream.text_delta(0, piece)
        stream.emit("content_block_stop", index=0)
        stream.finish("end_turn", COMPLETION_TOKENS)

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
        self.send_json(200, payload)

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
        self.send_json(200, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="upstream")
    parser.add_argument("--model", action="append", default=None, help="a model to list (repeatable)")
    args = parser.parse_args()
    run_alone(
        FaultUpstream(name=args.name, models=args.model or ["shared-model"], port=args.port),
        lambda up: f"fault upstream {up.name} listening on {up.base_url}",
    )


if __name__ == "__main__":
    main()
