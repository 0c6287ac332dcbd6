"""What every upstream stand-in of the end-to-end tests is built on: a loopback HTTP server with a
record of what it received, and the writers of each provider protocol's answers.

The stand-ins in this folder (``mock_openai``, ``mock_providers``, ``fault_upstream``,
``agent_upstream``, ``subscription_upstream``, ``hostile_sse_upstream``) play providers' clouds
for the real gateway binary; each one decides *what* to answer. This module is *how* they all
answer, so that a fix to the plumbing (the status recorded before the answer leaves, kept-alive
connections cut at stop, the size of a body read) reaches every one of them:

* :class:`StandInServer` — a ``ThreadingHTTPServer`` on a free 127.0.0.1 port served from a
  thread (``start``/``stop`` or ``with``), and the thread-safe list of requests it received with
  a condition to wait on;
* :class:`Exchange` — one request as received (method, path, query, headers, body, parsed JSON,
  arrival times, peer) and the status answered; stand-ins subclass it with what they decide;
* :class:`StandInHandler` — one connection: reads the request (body capped at ``MAX_BODY``),
  logs it, calls the stand-in's ``answer``, and offers the writers: JSON answers, chunked
  streams, a cut connection or a TCP reset, waiting for the client to hang up;
* each protocol's answer bodies: :class:`ChatChunks` and :func:`chat_completion` (OpenAI Chat
  Completions), :func:`response_object` (OpenAI Responses), and the error bodies
  (:func:`openai_error`, :func:`anthropic_error`, :func:`gemini_error`);
* each protocol's writer of a streamed answer, over an :class:`EventStream`: :class:`ChatStream`
  (``data:`` lines and ``[DONE]``), :class:`AnthropicStream` (``event:`` + ``data:`` pairs,
  block by block), :class:`ResponsesStream` (numbered events, output item by item) and
  :class:`GeminiStream` (Google's CRLF-framed SSE, or its streamed JSON array).

Stdlib only, like the stand-ins.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

# The largest request body a stand-in reads. Far above anything a test sends through the gateway,
# and low enough that a runaway client cannot make a test process swallow the machine's memory.
MAX_BODY = 64 * 1024 * 1024
# How often a wait for the client to hang up looks at the socket.
POLL_S = 0.1

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection while the stand-in was still answering."""


class _BodyTooLarge(Exception):
    pass


# -- the record ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Exchange:
    """One request as a stand-in received it, and the status it answered."""

    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes
    json: Any  # the body parsed, or None when it is not JSON
    received_at: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)  # time.time() on arrival
    # (host, port) of the client's end of the connection: equal ports mean a reused connection.
    peer: tuple[str, int] = ("", 0)
    # The status sent; None until the answer starts, and again when it could not be written.
    status: int | None = None
    # Set when the stand-in has finished with the request (answered, or the client left).
    done: threading.Event = field(default_factory=threading.Event)

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitively; None when absent."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]


# -- the server ----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is what many tests do on purpose (and what a killed
        # gateway does); anything else is a bug in a stand-in and is printed as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandInServer:
    """A stand-in's server and its record of requests, answering with `handler` (the stand-in's
    :class:`StandInHandler`, bound to this server as its ``owner``). Subclasses set ``name`` (the
    serving thread's); use as a context manager or call start/stop."""

    name = "stand-in"

    def __init__(self, handler: type[StandInHandler], host: str = "127.0.0.1", port: int = 0):
        # One condition guards the record and whatever state a stand-in keeps beside it (fault
        # rules, issued signatures, ...); waiting for a request waits on it.
        self._lock = threading.Condition()
        self._records: list[Any] = []
        self._open: set[socket.socket] = set()
        bound = type(handler.__name__, (handler,), {"owner": self})
        self._server = _Server((host, port), bound)
        self._thread: threading.Thread | None = None
        self.running = False

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The server's root, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        self.running = True
        return self

    def stop(self) -> None:
        """Stops listening (new connections are refused) and cuts the connections still open."""
        if not self.running:
            return  # shutdown() would wait forever for a loop that never ran
        self.running = False
        self._server.shutdown()
        self._server.server_close()
        # Kept-alive connections would go on being served by their handler threads: a stopped
        # provider answers nothing, and a handler waiting on its client ends at once.
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the record ------------------------------------------------------------------------------

    def log(self, rec: Any) -> None:
        """Adds a request to the record and wakes whoever waits for one."""
        with self._lock:
            self._records.append(rec)
            self._lock.notify_all()

    @property
    def requests(self) -> list[Any]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._records)

    def forget_requests(self) -> None:
        with self._lock:
            self._records.clear()

    def wait_until(
        self, check: Callable[[list[Any]], T | None], timeout: float, failure: Callable[[], str]
    ) -> T:
        """Waits until `check` of the record (called under the lock, on every change) is not None
        and returns it; AssertionError with `failure()` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = check(self._records)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(failure())
                self._lock.wait(remaining)

    def wait_for_request(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """The first request matching `predicate`, waiting up to `timeout` seconds for it."""
        return self.wait_until(
            lambda records: next((r for r in records if predicate(r)), None),
            timeout,
            lambda: (
                f"no matching request reached {self.name} within {timeout}s; got "
                f"{[(r.method, r.path, r.status) for r in self._records][-10:]}"
            ),
        )

    # -- connections -----------------------------------------------------------------------------

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)


def run_alone(server: StandInServer, banner: Callable[[StandInServer], str]) -> None:
    """Runs a stand-in from the command line until Ctrl-C; prints `banner` once it listens (the
    crash test reads the URL off the end of that line)."""
    server.start()
    print(banner(server), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


# -- one connection ------------------------------------------------------------------------------


class StandInHandler(BaseHTTPRequestHandler):
    """Serves one connection of a stand-in: every request is read (its body capped at
    ``MAX_BODY``), logged, answered by :meth:`answer` and marked done (:meth:`end`). Subclasses
    implement ``answer`` and may extend the record (:meth:`new_record`) or what happens when the
    client leaves (:meth:`client_left`)."""

    owner: Any  # the StandInServer (set on the class the server binds)
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams
    # Every SSE event is flushed as it is written, like a real provider: without this, Nagle's
    # algorithm holds small writes back until the previous one is acknowledged.
    disable_nagle_algorithm = True
    json_type = "application/json"
    record: Any = None  # the request being answered

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the tests show the record on failure instead

    def setup(self) -> None:
        super().setup()
        self.owner._opened(self.connection)

    def finish(self) -> None:
        self.owner._closed(self.connection)
        try:
            super().finish()
        except OSError:
            pass  # the connection was cut or reset on purpose

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._exchange()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._exchange()

    def _exchange(self) -> None:
        try:
            body: bytes | None = self.read_body()
        except _BodyTooLarge:
            body = None
        rec = self.record = self.new_record(**self._fields(body or b""))
        if rec is not None:
            self.owner.log(rec)
        try:
            if body is None:
                # The rest of the body is still unread: answer and close rather than parse it.
                self.close_connection = True
                self.send_json(413, openai_error(413, f"request body larger than {MAX_BODY} bytes"))
            else:
                self.answer(rec)
        except ClientGone:
            self.client_left(rec)
        finally:
            if rec is not None:
                self.end(rec)

    def _fields(self, body: bytes) -> dict[str, Any]:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        split = urlsplit(self.path)
        return {
            "method": self.command,
            "path": split.path,
            "query": dict(parse_qsl(split.query)),
            "headers": list(self.headers.items()),
            "body": body,
            "json": parsed,
            "peer": tuple(self.client_address[:2]),
        }

    # -- what a stand-in decides -----------------------------------------------------------------

    def answer(self, rec: Any) -> None:
        """Answers the request `rec` records (None when :meth:`new_record` kept no record)."""
        raise NotImplementedError

    def new_record(self, **fields: Any) -> Any:
        """The record of a request from the fields every :class:`Exchange` has; subclasses return
        their own, or None for a request that is not to be recorded."""
        return Exchange(**fields)

    def client_left(self, rec: Any) -> None:
        """The client hung up before the answer was complete."""
        self.close_connection = True

    def end(self, rec: Any) -> None:
        rec.done.set()

    def note_status(self, status: int | None) -> None:
        """Records the status on the request's record: called before the answer's first byte
        leaves, since a client may read the record the moment it holds the answer."""
        if self.record is not None:
            self.record.status = status

    def transform(self, payload: Any) -> Any:
        """Every JSON payload passes here before it is written (a stand-in can rewrite usage)."""
        return payload

    # -- reading ---------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        """The request body, plain or chunked, at most ``MAX_BODY`` bytes."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            size_so_far = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers, up to the blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                size_so_far += size
                if size_so_far > MAX_BODY:
                    raise _BodyTooLarge()
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _BodyTooLarge()
        return self.rfile.read(length) if length else b""

    # -- writing ---------------------------------------------------------------------------------

    def encode(self, payload: Any, indent: int | None = None) -> bytes:
        """A payload as written: a str as it is (``[DONE]``), anything else as JSON."""
        if isinstance(payload, str):
            return payload.encode()
        return json.dumps(self.transform(payload), indent=indent).encode()

    def write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as e:
            raise ClientGone() from e

    def send_head(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers; the status is recorded before they leave."""
        self.note_status(status)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
        except OSError as e:
            self.note_status(None)
            raise ClientGone() from e

    def send_json(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """A whole JSON answer with its length. Its status stays recorded only if it was written."""
        data = self.encode(payload)
        self.send_head(
            status,
            {
                "Content-Type": content_type or self.json_type,
                "Content-Length": str(len(data)),
                **(headers or {}),
            },
        )
        try:
            self.write(data)
        except ClientGone:
            self.note_status(None)
            raise

    def start_stream(
        self, content_type: str = "text/event-stream", headers: dict[str, str] | None = None
    ) -> None:
        """A 200 whose body follows in chunks (chunked transfer encoding on the kept-alive connection)."""
        self.send_head(
            200,
            {
                **(headers or {}),
                "Content-Type": content_type,
                "Cache-Control": "no-cache",
                "Transfer-Encoding": "chunked",
            },
        )

    def chunk(self, data: bytes) -> None:
        """One chunk of a streamed body (an empty one would end the body, so it is not sent)."""
        if data:
            self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self.write(b"0\r\n\r\n")

    def sse(self, payload: Any, event: str | None = None, crlf: bool = False) -> None:
        """One SSE event in one chunk: ``event:`` when named, then ``data:``."""
        nl = b"\r\n" if crlf else b"\n"
        head = b"event: " + event.encode() + nl if event else b""
        self.chunk(head + b"data: " + self.encode(payload) + nl + nl)

    # -- faults ----------------------------------------------------------------------------------

    def client_left_within(self, seconds: float) -> bool:
        """Waits up to `seconds` without answering; True as soon as the client closes the connection."""
        sock: socket.socket = self.connection
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, errored = select.select([sock], [], [sock], min(remaining, POLL_S))
            if readable or errored:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                # Bytes of a next (pipelined) request on a connection still being answered: the
                # client is there. Not expected from the gateway; keep waiting.
                time.sleep(0.05)

    def hold(self, rec: Any, seconds: float) -> bool:
        """Holds the answer up to `seconds`; True, with :meth:`client_left` called, when the client
        hung up meanwhile (waiting on the socket rather than sleeping, so a client that gives up is
        noticed when it does)."""
        if self.client_left_within(seconds):
            self.client_left(rec)
            return True
        return False

    def cut(self) -> None:
        """Ends the connection mid-answer, without the chunked terminator (a crashed provider)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reset(self) -> None:
        """Closes the connection with a TCP RST and no response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket's fd stays open while rfile refers to it; close both so the RST goes now.
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass


# -- answer bodies, per protocol ----------------------------------------------------------------


@dataclass
class ChatChunks:
    """The ``chat.completion.chunk`` objects of one streamed OpenAI Chat Completion. With
    `with_usage` (the request's ``stream_options.include_usage``) every chunk carries
    ``"usage": null`` as OpenAI's do; `fingerprint` and `logprobs` add OpenAI's
    ``system_fingerprint`` and the choice's ``"logprobs": null``, for stand-ins that mimic OpenAI
    that closely."""

    ident: str
    created: int
    model: Any
    with_usage: bool = False
    fingerprint: str | None = None
    logprobs: bool = False

    def _head(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        if self.fingerprint is not None:
            head["system_fingerprint"] = self.fingerprint
        return head

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta}
        if self.logprobs:
            choice["logprobs"] = None
        choice["finish_reason"] = finish
        chunk = {**self._head(), "choices": [choice]}
        if self.with_usage:
            chunk["usage"] = None  # as OpenAI does on every chunk but the last
        return chunk

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The final chunk: no choices, the usage."""
        return {**self._head(), "choices": [], "usage": usage}


def chat_completion(
    ident: str,
    created: int,
    model: Any,
    message: dict[str, Any],
    finish: str,
    usage: Any,
    logprobs: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A whole (not streamed) OpenAI Chat Completion of one choice; `extra` adds top-level fields
    (``system_fingerprint``, ``service_tier``)."""
    choice: dict[str, Any] = {"index": 0, "message": message}
    if logprobs:
        choice["logprobs"] = None
    choice["finish_reason"] = finish
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
        **extra,
    }


def response_object(
    ident: str,
    created: int,
    model: Any,
    status: str,
    output: list[Any],
    usage: Any,
    request: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """An OpenAI Responses ``response`` object that echoes the request's settings (or their
    defaults) as OpenAI's does; `fields` add or override top-level fields."""
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": usage,
        "metadata": request.get("metadata") or {},
        **fields,
    }


# The error types Anthropic's API names per status.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error",
}  # fmt: skip
# The canonical gRPC status names Google's APIs give per HTTP status.
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


def openai_error(
    status: int, message: str, param: str | None = None, code: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body; the type is `kind`, else ``server_error`` (5xx) or
    ``invalid_request_error``."""
    kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """Anthropic's error body, its type named for the status (`extra`: e.g. ``request_id``)."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, **extra}


def gemini_error(status: int, message: str) -> dict[str, Any]:
    """Google's error body, with the status's canonical name."""
    return {"error": {"code": status, "message": message, "status": GEMINI_STATUS.get(status, "UNKNOWN")}}


# -- streamed answers, per protocol --------------------------------------------------------------


def _whole(text: str) -> list[str]:
    return [text]


class EventStream:
    """An SSE answer being written: starts the 200 when made, then one event per chunk.

    `crlf` frames events with CRLF (Google's way); `pace` sleeps after each event so that the
    stream really arrives in pieces; `before_last`, when set, is called just before the final
    event of a complete answer is written (a stand-in counting complete answers counts there, so
    a client holding the whole answer always finds it counted)."""

    def __init__(
        self,
        handler: StandInHandler,
        *,
        crlf: bool = False,
        pace: float = 0.0,
        headers: dict[str, str] | None = None,
        content_type: str = "text/event-stream",
    ):
        self.handler = handler
        self.crlf = crlf
        self.pace = pace
        self.before_last: Callable[[], None] | None = None
        handler.start_stream(content_type, headers)

    def send(self, payload: Any, event: str | None = None) -> None:
        self.handler.sse(payload, event, self.crlf)
        if self.pace:
            time.sleep(self.pace)

    def last(self, payload: Any, event: str | None = None) -> None:
        """The final event, then the end of the body."""
        if self.before_last is not None:
            self.before_last()
        self.send(payload, event)
        self.end()

    def end(self) -> None:
        self.handler.end_stream()


class ChatStream(EventStream):
    """A streamed OpenAI Chat Completion: ``data:`` lines of :class:`ChatChunks` (made from the
    arguments after `handler`), then ``data: [DONE]``."""

    def __init__(
        self,
        handler: StandInHandler,
        ident: str,
        created: int,
        model: Any,
        *,
        with_usage: bool = False,
        fingerprint: str | None = None,
        logprobs: bool = False,
        **stream: Any,
    ):
        self.chunks = ChatChunks(ident, created, model, with_usage, fingerprint, logprobs)
        super().__init__(handler, **stream)

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> None:
        self.send(self.chunks.chunk(delta, finish))

    def usage(self, usage: dict[str, Any]) -> None:
        """The chunk with no choices that carries the usage (asked for with ``include_usage``)."""
        self.send(self.chunks.usage(usage))

    def done(self) -> None:
        self.last("[DONE]")


class _DeltaStream(EventStream):
    """A stream whose answer texts go out in pieces: `split_text` cuts texts, `split_json` the
    JSON of a tool call's arguments (texts' cutter when not given)."""

    def __init__(
        self,
        handler: StandInHandler,
        *,
        split_text: Callable[[str], Iterable[str]] = _whole,
        split_json: Callable[[str], Iterable[str]] | None = None,
        **stream: Any,
    ):
        self.split_text = split_text
        self.split_json = split_json or split_text
        super().__init__(handler, **stream)


class AnthropicStream(_DeltaStream):
    """A streamed Anthropic Message: ``event: <type>`` + ``data: {"type": <type>, ...}`` pairs;
    a tool call's input is written as compact JSON."""

    def emit(self, kind: str, **fields: Any) -> None:
        self.send({"type": kind, **fields}, event=kind)

    def start(self, message: dict[str, Any], usage: dict[str, Any], ping: bool = False) -> None:
        """``message_start`` with `message` (the whole answer) emptied of its content, and `usage`."""
        self.emit(
            "message_start",
            message={**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage},
        )
        if ping:
            self.emit("ping")

    def block(self, index: int, block: dict[str, Any]) -> None:
        """A content block (text, thinking with its signature, or tool_use) from start to stop."""
        kind = block["type"]
        if kind == "thinking":
            self.emit(
                "content_block_start",
                index=index,
                content_block={"type": "thinking", "thinking": "", "signature": ""},
            )
            for piece in self.split_text(block["thinking"]):
                self.emit(
                    "content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": piece}
                )
            self.emit(
                "content_block_delta",
                index=index,
                delta={"type": "signature_delta", "signature": block["signature"]},
            )
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            self.emit("content_block_start", index=index, content_block=start)
            for piece in self.split_json(json.dumps(block["input"], separators=(",", ":"))):
                self.emit(
                    "content_block_delta",
                    index=index,
                    delta={"type": "input_json_delta", "partial_json": piece},
                )
        else:
            self.emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
            for piece in self.split_text(block["text"]):
                self.text_delta(index, piece)
        self.emit("content_block_stop", index=index)

    def text_delta(self, index: int, text: str) -> None:
        self.emit("content_block_delta", index=index, delta={"type": "text_delta", "text": text})

    def finish(self, stop_reason: str, output_tokens: int) -> None:
        """``message_delta`` with the stop reason and output tokens, then ``message_stop``."""
        self.emit(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": None},
            usage={"output_tokens": output_tokens},
        )
        self.last({"type": "message_stop"}, event="message_stop")


class ResponsesStream(_DeltaStream):
    """A streamed OpenAI Response: ``event: <type>`` + ``data:`` with a ``sequence_number`` that
    counts from 0. :meth:`item` writes an output item's whole event sequence."""

    _sequence = 0

    def _event(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def emit(self, kind: str, **fields: Any) -> None:
        self.send(self._event(kind, fields), event=kind)

    def item(self, index: int, item: dict[str, Any]) -> None:
        """``output_item.added`` (the item as it starts), its deltas and dones, ``output_item.done``."""
        ident = item["id"]
        where = {"item_id": ident, "output_index": index}
        if item["type"] == "reasoning":
            text = item["summary"][0]["text"]
            self.emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            empty = {"type": "summary_text", "text": ""}
            self.emit("response.reasoning_summary_part.added", **where, summary_index=0, part=empty)
            for piece in self.split_text(text):
                self.emit("response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece)
            self.emit("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            self.emit(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=item["summary"][0]
            )
        elif item["type"] == "message":
            part = item["content"][0]
            text = part["text"]
            # The deltas carry logprobs when the item's part does (as OpenAI's do).
            logprobs = {"logprobs": []} if "logprobs" in part else {}
            self.emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            self.emit("response.content_part.added", **where, content_index=0, part={**part, "text": ""})
            for piece in self.split_text(text):
                self.emit("response.output_text.delta", **where, content_index=0, delta=piece, **logprobs)
            self.emit("response.output_text.done", **where, content_index=0, text=text, **logprobs)
            self.emit("response.content_part.done", **where, content_index=0, part=part)
        else:  # function_call
            self.emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in self.split_json(item["arguments"]):
                self.emit("response.function_call_arguments.delta", **where, delta=piece)
            self.emit(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        self.emit("response.output_item.done", output_index=index, item=item)

    def completed(self, response: dict[str, Any]) -> None:
        """``response.completed`` with the whole response, then the end of the body."""
        self.last(self._event("response.completed", {"response": response}), event="response.completed")


class GeminiStream:
    """A streamed Gemini answer: with ``?alt=sse`` SSE events framed with CRLF like Google's,
    otherwise one JSON array written an element at a time (``[``, ``\\n,\\r\\n`` between
    elements, ``\\n]``), as Google streams it."""

    def __init__(self, handler: StandInHandler, sse: bool, **stream: Any):
        self.handler = handler
        self.events = EventStream(handler, crlf=True, **stream) if sse else None
        if not sse:
            handler.start_stream("application/json; charset=UTF-8")
        self._sent = 0

    def send(self, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.send(payload)
        else:
            self.handler.chunk(
                (b"[" if self._sent == 0 else b"\n,\r\n") + self.handler.encode(payload, indent=2)
            )
        self._sent += 1

    def end(self) -> None:
        if self.events is None:
            self.handler.chunk(b"\n]" if self._sent else b"[]")
        self.handler.end_stream()
