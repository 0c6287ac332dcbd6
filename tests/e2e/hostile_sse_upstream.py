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
recorded (path, model, when it ended). The server and its record are :mod:`stand_in`'s.
Stdlib only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from stand_in import ChatChunks, Exchange, StandInHandler, StandInServer

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 5
HUGE_BYTES = 12 * 1024 * 1024
TEXT = "hello world"
# The chunk objects are ordinary; only the way they are framed is hostile.
CHUNKS = ChatChunks("chatcmpl-hostile", 1700000000, "hostile")
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}


def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
    return json.dumps(CHUNKS.usage(USAGE) if usage else CHUNKS.chunk(delta, finish)).encode()


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


@dataclass(kw_only=True)
class Seen(Exchange):
    """One request: its path, the model it asked for, and (``done``) when its answer ended."""

    model: str | None = None

    @property
    def ended(self) -> Any:
        return self.done


class HostileSseUpstream(StandInServer):
    """The server; a context manager. ``base_url`` is what the provider is registered with."""

    name = "hostile-sse"

    def __init__(self) -> None:
        super().__init__(_Handler)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def seen(self) -> list[Seen]:
        return self.requests


class _Handler(StandInHandler):
    owner: HostileSseUpstream

    def new_record(self, **fields: Any) -> Seen:
        body = fields["json"] if isinstance(fields["json"], dict) else {}
        return Seen(**fields, model=body.get("model"))

    def answer(self, rec: Seen) -> None:
        model = rec.model or ""
        self.start_stream()
        first = b"data: " + chunk({"role": "assistant", "content": "hello "}) + b"\n\n"
        if model == "sse-cr":
            self.chunk(stream(b"\r"))
        elif model == "sse-dribble":
            for byte in stream():
                self.chunk(bytes([byte]))
                time.sleep(0.0005)
        elif model == "sse-huge":
            self.chunk(first)
            self.chunk(b"data: ")
            piece = b"x" * 65536
            sent = 0
            while sent < HUGE_BYTES:
                self.chunk(piece)
                sent += len(piece)
            # No blank line: the event never ends. Wait (bounded) for the client to give up; the
            # body never ended either, so the connection cannot carry another request.
            self.client_left_within(30)
            self.close_connection = True
            return
        elif model == "sse-garbage":
            self.chunk(first)
            self.chunk(b'data: {"choices": [}\n\n')
            self.chunk(b"\x00\xff\xfe garbage \x80\x81\n\n")
            self.chunk(b"data: [DONE]\n\n")
        else:
            self.chunk(stream())
        self.end_stream()
