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
event as it is written, like a real provider. Run it alone with
``python mock_openai.py --port 9000`` to point a hand-started gateway at it.
"""

from __future__ import annotations

import argparse
import base64
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


@dataclass
class Recorded:
    """One request as the mock received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    json: Any
    received_at: float
    # (host, port) of the client's end of the connection: equal ports mean a reused connection.
    peer: tuple[str, int] = ("", 0)
    # Set when the mock has finished answering (or gave up because the client left).
    done: threading.Event = field(default_factory=threading.Event)
    # Set as soon as the mock notices the client closed the connection before the answer ended.
    disconnected: threading.Event = field(default_factory=threading.Event)
    closed_early: bool = False
    disconnected_at: float | None = None
    status: int | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitively; None when absent."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def model(self) -> Any:
        return self.json.get("model") if isinstance(self.json, dict) else None


class _ClientGone(Exception):
    """The client closed the connection while we were still answering."""


def _is_model_list(rec: Recorded) -> bool:
    return rec.method == "GET" and rec.path.split("?")[0].rstrip("/") in ("/v1/models", "/models")


class MockOpenAI:
    """The server plus its record of requests. Use as a context manager or call start/stop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, require_key: str | None = None):
        self.require_key = require_key
        self._lock = threading.Lock()
        self._records: list[Recorded] = []
        self._new_record = threading.Condition(self._lock)
        mock = self

        class Handler(_Handler):
            owner = mock

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """What a provider's `url` should be: the base the gateway appends `/chat/completions` to."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> MockOpenAI:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MockOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the record ----------------------------------------------------------------------------

    def _record(self, rec: Recorded) -> None:
        with self._new_record:
            self._records.append(rec)
            self._new_record.notify_all()

    @property
    def requests(self) -> list[Recorded]:
        """Every request but model-list reads (the gateway's discovery makes those on its own)."""
        with self._lock:
            return [r for r in self._records if not _is_model_list(r)]

    @property
    def model_list_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self._records if _is_model_list(r)]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def last(self, path: str | None = None) -> Recorded:
        """The latest request (to `path`, when given); AssertionError when there is none."""
        matching = [r for r in self.requests if path is None or r.path == path]
        assert matching, f"the mock upstream received no request{' to ' + path if path else ''}"
        return matching[-1]

    def wait_for(
        self, predicate: Callable[[Recorded], bool] = lambda r: True, timeout: float = 10.0
    ) -> Recorded:
        """Waits until a request matching `predicate` has arrived and returns it."""
        deadline = time.monotonic() + timeout
        with self._new_record:
            while True:
                for rec in self._records:
                    if predicate(rec):
                        return rec
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no matching request reached the mock upstream within {timeout}s; "
                        f"got {[(r.method, r.path, r.model) for r in self._records]}"
                    )
                self._new_record.wait(remaining)


class _Handler(BaseHTTPRequestHandler):
    owner: MockOpenAI
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams
    server_version = "MockOpenAI/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: pytest shows the record on failure instead

    # -- request plumbing ----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _start(self) -> Recorded:
        body = self._read_body() if self.command == "POST" else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Recorded(
            method=self.command,
            path=self.path,
            headers=list(self.headers.items()),
            body=body,
            json=parsed,
            received_at=time.monotonic(),
            peer=tuple(self.client_address[:2]),
        )
        self.owner._record(rec)
        return rec

    def _send_json(self, rec: Recorded, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        rec.status = status  # before the body leaves: a client may read the record at once
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, rec: Recorded, status: int, message: str, code: str) -> None:
        self._send_json(
            rec,
            status,
            {
                "error": {
                    "message": message,
                    "type": "server_error" if status >= 500 else "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            },
        )

    def _start_sse(self, rec: Recorded) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        rec.status = 200
        self.wfile.flush()

    def _sse(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {text}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise _ClientGone() from e

    def _end_chunks(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise _ClientGone() from e

    def _wait_for_disconnect(self, limit: float) -> bool:
        """Blocks until the peer closes the connection (True) or `limit` seconds pass (False)."""
        sock: socket.socket = self.connection
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, errored = select.select([sock], [], [sock], min(remaining, 0.2))
            if readable or errored:
                try:
                    peek = sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    return True
                if peek == b"":
                    return True
                # The client sent bytes on a connection we are still answering: a pipelined
                # request. Not expected from the gateway; keep waiting.
                time.sleep(0.05)

    def _abort(self) -> None:
        """Cuts the connection mid-answer (no chunked terminator), like a provider that crashed."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _mark_gone(self, rec: Recorded) -> None:
        rec.closed_early = True
        rec.disconnected_at = time.monotonic()
        rec.disconnected.set()
        self.close_connection = True

    # -- behaviour selection -------------------------------------------------------------------

    def _check_auth(self, rec: Recorded) -> bool:
        want = self.owner.require_key
        if want is None:
            return True
        if rec.header("Authorization") == f"Bearer {want}":
            return True
        self._send_error(rec, 401, "Incorrect API key provided to the mock upstream.", "invalid_api_key")
        return False

    def _fault(self, rec: Recorded) -> bool:
        """Applies the behaviour the model name asks for; True when the answer has been sent."""
        model = rec.model if isinstance(rec.model, str) else ""
        if model.startswith("fail-"):
            try:
                status = int(model.split("-", 1)[1])
            except ValueError:
                status = 500
            self._send_error(rec, status, FAIL_MESSAGE, "mock_failure")
            return True
        if model == "slow" or model.startswith("slow-"):
            ms = 3000
            if model.startswith("slow-"):
                try:
                    ms = int(model.split("-", 1)[1])
                except ValueError:
                    pass
            # Waiting on the socket rather than sleeping, so a client that gives up is noticed.
            if self._wait_for_disconnect(ms / 1000):
                self._mark_gone(rec)
                return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        rec = self._start()
        try:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                if self._check_auth(rec):
                    self._send_json(
                        rec,
                        200,
                        {
                            "object": "list",
                            "data": [
                                {"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"}
                                for m in MODELS
                            ],
                        },
                    )
            else:
                self._send_error(rec, 404, f"no route GET {self.path}", "not_found")
        finally:
            rec.done.set()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        rec = self._start()
        try:
            path = self.path.split("?", 1)[0].rstrip("/")
            routes = {
                "/v1/chat/completions": self._chat,
                "/v1/completions": self._completions,
                "/v1/embeddings": self._embeddings,
            }
            handler = routes.get(path)
            if handler is None:
                self._send_error(rec, 404, f"no route POST {self.path}", "not_found")
                return
            if not isinstance(rec.json, dict):
                self._send_error(rec, 400, "mock upstream got a body that is not a JSON object", "bad_json")
                return
            if not self._check_auth(rec) or self._fault(rec):
                return
            handler(rec)
        except _ClientGone:
            self._mark_gone(rec)
        except (BrokenPipeError, ConnectionResetError):
            self._mark_gone(rec)
        finally:
            rec.done.set()

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
            self._send_json(
                rec,
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": self._usage(),
                    "system_fingerprint": "fp_mock",
                },
            )
            return
        with_usage = self._wants_usage(body)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if with_usage:
                c["usage"] = None  # as OpenAI does on every chunk but the last
            return c

        self._start_sse(rec)
        self._sse(chunk({"role": "assistant", "content": ""}))
        if model == "hang-stream":
            self._sse(chunk({"content": REPLY_PARTS[0]}))
            if self._wait_for_disconnect(HANG_LIMIT_S):
                self._mark_gone(rec)
                return
            parts = REPLY_PARTS[1:]
        elif model == "drop-stream":
            # Two content chunks, then the connection dies without the stream's end.
            self._sse(chunk({"content": REPLY_PARTS[0]}))
            self._sse(chunk({"content": REPLY_PARTS[1]}))
            self._abort()
            return
        else:
            parts = REPLY_PARTS
        for part in parts:
            self._sse(chunk({"content": part}))
        self._sse(chunk({}, "stop"))
        if with_usage:
            self._sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_mock",
                    "choices": [],
                    "usage": self._usage(),
                }
            )
        self._sse("[DONE]")
        self._end_chunks()

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
        if not body.get("stream"):
            self._send_json(
                rec,
                200,
                {
                    "id": ident,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [{"text": REPLY_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage,
                },
            )
            return
        with_usage = self._wants_usage(body)
        self._start_sse(rec)
        for i, part in enumerate(REPLY_PARTS):
            last = i == len(REPLY_PARTS) - 1
            c: dict[str, Any] = {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [
                    {"text": part, "index": 0, "logprobs": None, "finish_reason": "stop" if last else None}
                ],
            }
            if with_usage:
                c["usage"] = None
            self._sse(c)
        if with_usage:
            self._sse(
                {
                    "id": ident,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        self._sse("[DONE]")
        self._end_chunks()

    def _embeddings(self, rec: Recorded) -> None:
        body = rec.json
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            self._send_error(rec, 400, "'input' must be a string or a non-empty array", "invalid_input")
            return
        data = []
        for index, _ in enumerate(inputs):
            vector = [round((index + 1) * 0.125 * (d + 1), 6) for d in range(EMBEDDING_DIM)]
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        self._send_json(
            rec,
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
    mock = MockOpenAI(port=args.port, require_key=args.require_key).start()
    print(f"mock OpenAI upstream listening on {mock.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        mock.stop()


if __name__ == "__main__":
    main()
