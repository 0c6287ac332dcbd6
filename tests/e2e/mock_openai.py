"""A local upstream that speaks the OpenAI wire format over real HTTP on 127.0.0.1.

The end-to-end tests register it as a provider, drive the real gateway binary with real
clients, and then ask this server what the gateway actually sent: the rewritten model, the
provider key in ``Authorization``, the injected ``stream_options``, the untouched bytes of
fields the gateway does not know. It stands in for a provider's cloud only; everything between
the client and here is the real thing.

Endpoints (under ``/v1``): ``POST /chat/completions`` and ``POST /completions`` (plain JSON or
SSE when ``"stream": true``), ``POST /embeddings`` (floats or base64, as the official SDK asks),
``GET /models``.

The request's ``model`` picks a behaviour, so fault tests need no extra set-up:

* ``fail-<status>`` (e.g. ``fail-500``, ``fail-429``): answers that status with an OpenAI error
  body (``FAIL_MESSAGE``);
* ``slow-<ms>`` (or ``slow`` = 3000 ms): waits before answering; a client hanging up meanwhile
  is recorded like for ``hang-stream``;
* ``drop-stream``: sends two content chunks, then cuts the connection without ending the stream;
* ``hang-stream``: sends one content chunk, then waits (up to ``HANG_LIMIT_S``) until the client
  hangs up; the record's ``closed_early`` / ``disconnected`` tell whether and when it did;
* anything else: a normal answer.

Streams use chunked transfer encoding on a keep-alive HTTP/1.1 connection and flush every SSE
event as it is written, like a real provider. The server, its record and the stream writers are
:mod:`stand_in`'s; this module is what the mock answers. Run it alone with
``python mock_openai.py --port 9000`` to point a hand-started gateway at it.
"""

from __future__ import annotations

import argparse
import base64
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stand_in import ChatStream, EventStream, Exchange, StandInHandler, StandInServer
from stand_in import chat_completion, openai_error, run_alone

# Fixed token counts so tests can compare exact numbers end to end. Distinct values, so a
# gateway that swaps two fields is caught.
PROMPT_TOKENS = 17
COMPLETION_TOKENS = 4
CACHED_TOKENS = 5
EMBEDDING_TOKENS = 3
# The text a chat or completion answers with, and how it is cut into stream deltas.
REPLY_PARTS = ["Hello", " from", " the", " mock"]
REPLY_TEXT = "".join(REPLY_PARTS)
FAIL_MESSAGE = "mock upstream exploded on purpose"
EMBEDDING_DIM = 8
# hang-stream gives up waiting for the client after this long, so a broken gateway cannot
# keep a test thread forever.
HANG_LIMIT_S = 30.0
MODELS = ["mock-small", "mock-large", "mock-embed"]


@dataclass(kw_only=True)
class Recorded(Exchange):
    """One request as the mock received it. Its ``path`` is the target as sent, query included."""

    # Set as soon as the mock notices the client closed the connection before the answer ended.
    disconnected: threading.Event = field(default_factory=threading.Event)
    closed_early: bool = False
    disconnected_at: float | None = None

    @property
    def model(self) -> Any:
        return self.json.get("model") if isinstance(self.json, dict) else None


def _is_model_list(rec: Recorded) -> bool:
    return rec.method == "GET" and rec.path.split("?")[0].rstrip("/") in ("/v1/models", "/models")


class MockOpenAI(StandInServer):
    """The server plus its record of requests. Use as a context manager or call start/stop."""

    name = "mock-openai"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, require_key: str | None = None):
        self.require_key = require_key
        super().__init__(_Handler, host, port)

    @property
    def base_url(self) -> str:
        """What a provider's `url` should be: the base the gateway appends `/chat/completions` to."""
        return f"{self.url}/v1"

    # -- the record ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request but model-list reads (the gateway's discovery makes those on its own)."""
        return [r for r in super().requests if not _is_model_list(r)]

    @property
    def model_list_requests(self) -> list[Recorded]:
        return [r for r in super().requests if _is_model_list(r)]

    def clear(self) -> None:
        self.forget_requests()

    def last(self, path: str | None = None) -> Recorded:
        """The latest request (to `path`, when given); AssertionError when there is none."""
        matching = [r for r in self.requests if path is None or r.path == path]
        assert matching, f"the mock upstream received no request{' to ' + path if path else ''}"
        return matching[-1]

    def wait_for(self, predicate: Callable[[Recorded], bool] = lambda r: True, timeout: float = 10.0) -> Recorded:
        """Waits until a request matching `predicate` has arrived and returns it."""
        return self.wait_for_request(predicate, timeout)


class _Handler(StandInHandler):
    owner: MockOpenAI
    server_version = "MockOpenAI/1.0"

    def new_record(self, **fields: Any) -> Recorded:
        return Recorded(**{**fields, "path": self.path})

    def client_left(self, rec: Recorded) -> None:
        rec.closed_early = True
        rec.disconnected_at = time.monotonic()
        rec.disconnected.set()
        self.close_connection = True

    def _send_error(self, status: int, message: str, code: str) -> None:
        self.send_json(status, openai_error(status, message, code=code))

    # -- behaviour selection -------------------------------------------------------------------

    def _check_auth(self, rec: Recorded) -> bool:
        want = self.owner.require_key
        if want is None:
            return True
        if rec.header("Authorization") == f"Bearer {want}":
            return True
        self._send_error(401, "Incorrect API key provided to the mock upstream.", "invalid_api_key")
        return False

    def _fault(self, rec: Recorded) -> bool:
        """Applies the behaviour the model name asks for; True when the answer has been sent."""
        model = rec.model if isinstance(rec.model, str) else ""
        if model.startswith("fail-"):
            try:
                status = int(model.split("-", 1)[1])
            except ValueError:
                status = 500
            self._send_error(status, FAIL_MESSAGE, "mock_failure")
            return True
        if model == "slow" or model.startswith("slow-"):
            ms = 3000
            if model.startswith("slow-"):
                try:
                    ms = int(model.split("-", 1)[1])
                except ValueError:
                    pass
            return self.hold(rec, ms / 1000)
        return False

    def answer(self, rec: Recorded) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if self.command == "GET":
            if path in ("/v1/models", "/models"):
                if self._check_auth(rec):
                    models = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"} for m in MODELS]
                    self.send_json(200, {"object": "list", "data": models})
            else:
                self._send_error(404, f"no route GET {self.path}", "not_found")
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/embeddings": self._embeddings,
        }
        handler = routes.get(path)
        if handler is None:
            self._send_error(404, f"no route POST {self.path}", "not_found")
            return
        if not isinstance(rec.json, dict):
            self._send_error(400, "mock upstream got a body that is not a JSON object", "bad_json")
            return
        if not self._check_auth(rec) or self._fault(rec):
            return
        handler(rec)

    # -- endpoints -----------------------------------------------------------------------------

    @staticmethod
    def _usage() -> dict[str, Any]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    @staticmethod
    def _wants_usage(body: dict[str, Any]) -> bool:
        opts = body.get("stream_options")
        return isinstance(opts, dict) and opts.get("include_usage") is True

    def _chat(self, rec: Recorded) -> None:
        body = rec.json
        model = body.get("model")
        created = int(time.time())
        ident = f"chatcmpl-mock{len(self.owner.requests)}"
        if not body.get("stream"):
            message = {"role": "assistant", "content": REPLY_TEXT, "refusal": None}
            completion = chat_completion(
                ident, created, model, message, "stop", self._usage(), logprobs=True, system_fingerprint="fp_mock"
            )
            self.send_json(200, completion)
            return
        with_usage = self._wants_usage(body)
        stream = ChatStream(self, ident, created, model, with_usage=with_usage, fingerprint="fp_mock", logprobs=True)
        stream.delta({"role": "assistant", "content": ""})
        if model == "hang-stream":
            stream.delta({"content": REPLY_PARTS[0]})
            if self.hold(rec, HANG_LIMIT_S):
                return
            parts = REPLY_PARTS[1:]
        elif model == "drop-stream":
            # Two content chunks, then the connection dies without the stream's end.
            stream.delta({"content": REPLY_PARTS[0]})
            stream.delta({"content": REPLY_PARTS[1]})
            self.cut()
            return
        else:
            parts = REPLY_PARTS
        for part in parts:
            stream.delta({"content": part})
        stream.delta({}, "stop")
        if with_usage:
            stream.usage(self._usage())
        stream.done()

    def _completions(self, rec: Recorded) -> None:
        body = rec.json
        model = body.get("model")
        created = int(time.time())
        ident = f"cmpl-mock{len(self.owner.requests)}"
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        head = {"id": ident, "object": "text_completion", "created": created, "model": model}
        if not body.get("stream"):
            choice = {"text": REPLY_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}
            self.send_json(200, {**head, "choices": [choice], "usage": usage})
            return
        with_usage = self._wants_usage(body)
        # Legacy completions stream text_completion objects, not chat chunks.
        stream = EventStream(self)
        for i, part in enumerate(REPLY_PARTS):
            finish = "stop" if i == len(REPLY_PARTS) - 1 else None
            choice = {"text": part, "index": 0, "logprobs": None, "finish_reason": finish}
            c: dict[str, Any] = {**head, "choices": [choice]}
            if with_usage:
                c["usage"] = None
            stream.send(c)
        if with_usage:
            stream.send({**head, "choices": [], "usage": usage})
        stream.last("[DONE]")

    def _embeddings(self, rec: Recorded) -> None:
        body = rec.json
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            self._send_error(400, "'input' must be a string or a non-empty array", "invalid_input")
            return
        data = []
        for index, _ in enumerate(inputs):
            vector = expected_embedding(index)
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        self.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS},
            },
        )


def expected_embedding(index: int) -> list[float]:
    """The vector the mock returns for the input at `index` (before float32 rounding)."""
    return [round((index + 1) * 0.125 * (d + 1), 6) for d in range(EMBEDDING_DIM)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--require-key", default=None, help="answer 401 unless Authorization is Bearer <this>"
    )
    args = parser.parse_args()
    run_alone(
        MockOpenAI(port=args.port, require_key=args.require_key),
        lambda mock: f"mock OpenAI upstream listening on {mock.base_url}",
    )


if __name__ == "__main__":
    main()
