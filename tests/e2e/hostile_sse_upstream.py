"""A loopback OpenAI-compatible provider whose streams are framed badly on purpose.

The hostile-input end-to-end tests (``test_hostile_input.py``) register it as an
``openai_chat`` provider and pick the misbehaviour with the model name of a streaming
``POST .../chat/completions``:

* ``sse-cr``: a correct stream whose lines end in CR alone (legal SSE, rarely seen);
* ``sse-dribble``: a correct stream written one byte per chunk, with a pause after each;
* ``sse-huge``: a first correct event, then one event of ``HUGE_BYTES`` that never ends (no
  blank line), after which the server waits for the client to leave;
* ``sse-garbage``: a first correct event, then malformed JSON and raw binary junk framed as
  events, then ``[DONE]``;
* anything else: the same correct stream with LF line ends.

The correct stream says ``hello world`` in two deltas, then a finish chunk and a usage chunk
(``PROMPT_TOKENS`` in, ``COMPLETION_TOKENS`` out), then ``[DONE]``. Every request is
recorded (path, model, when it ended). Stdlib only.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 5
HUGE_BYTES = 12 * 1024 * 1024
TEXT = "hello world"


def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "hostile",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
    return json.dumps(body).encode()


def stream(line_end: bytes = b"\n") -> bytes:
    """The correct stream, with `line_end` ending every line."""
    datas = [
        chunk({"role": "assistant", "content": "hello "}),
        chunk({"content": "world"}),
        chunk({}, finish="stop"),
        chunk({}, usage=True),
        b"[DONE]",
    ]
    return b"".join(b"data: " + d + line_end + line_end for d in datas)


@dataclass
class Seen:
    path: str
    model: str | None
    ended: threading.Event = field(default_factory=threading.Event)


class HostileSseUpstream:
    """The server; a context manager. ``base_url`` is what the provider is registered with."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(_Handler):
            pass

        Handler.owner = owner
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> HostileSseUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


class _Handler(BaseHTTPRequestHandler):
    owner: HostileSseUpstream
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        seen = Seen(path=self.path, model=body.get("model"))
        self.owner.record(seen)
        try:
            self._answer(seen.model or "")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            seen.ended.set()

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _answer(self, model: str) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = b"data: " + chunk({"role": "assistant", "content": "hello "}) + b"\n\n"
        if model == "sse-cr":
            self._write(stream(b"\r"))
        elif model == "sse-dribble":
            for byte in stream():
                self._write(bytes([byte]))
                time.sleep(0.0005)
        elif model == "sse-huge":
            self._write(first)
            self._write(b"data: ")
            piece = b"x" * 65536
            sent = 0
            while sent < HUGE_BYTES:
                self._write(piece)
                sent += len(piece)
            # No blank line: the event never ends. Wait (bounded) for the client to give up.
            self.connection.settimeout(30)
            try:
                self.connection.recv(1)
            except OSError:
                pass
            return
        elif model == "sse-garbage":
            self._write(first)
            self._write(b'data: {"choices": [}\n\n')
            self._write(b"\x00\xff\xfe garbage \x80\x81\n\n")
            self._write(b"data: [DONE]\n\n")
        else:
            self._write(stream())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
