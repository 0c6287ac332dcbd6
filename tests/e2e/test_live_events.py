"""The live event stream (`GET /api/events`) that the dashboard and the tray follow instead of
polling: a request through the gateway shows up as a `usage` event once its record is written,
only the management token opens the stream, and an open stream does not hold up a shutdown."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx
import openai

from conftest import Routed


def follow(url: str, token: str, into: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    """Reads the event stream into `into` as (event, data) pairs until `stop` or its end."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{url}/api/events", headers=headers, timeout=httpx.Timeout(5, read=30)) as r:
        into.put(("status", r.status_code))
        event, data = "message", []
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                into.put((event, json.loads("\n".join(data))))
                event, data = "message", []
        into.put(("end", None))


def next_event(events: queue.Queue[tuple[str, Any]], name: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no `{name}` event within {timeout}s"
        event, data = events.get(timeout=left)
        if event == name:
            return data


def test_a_request_arrives_as_a_usage_event(routed: Routed) -> None:
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=follow, args=(routed.gw.url, routed.gw.token, events, stop), daemon=True)
    reader.start()
    assert next_event(events, "status") == 200
    assert next_event(events, "ready") == {"usage_enabled": True}

    client = openai.OpenAI(base_url=routed.gw.v1, api_key=routed.adapter_key, max_retries=0)
    client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])
    record = next_event(events, "usage")
    assert record["provider_id"] == routed.provider_id
    assert record["model"] == routed.model
    assert record["credential"] == f"{routed.provider_id}/default"
    assert record["outcome"] == "completed" and record["status"] == 200
    assert record["tokens"]["input"] and record["tokens"]["output"]
    # The record is already in the database when the event arrives: a view can refetch at once.
    recent = routed.gw.api.get("/api/usage/recent?limit=1").json()
    assert recent[0]["ts_ms"] == record["ts_ms"]
    assert routed.provider_key not in json.dumps(record)
    stop.set()


def test_the_stream_needs_the_management_token(routed: Routed) -> None:
    url = f"{routed.gw.url}/api/events"
    assert httpx.get(url, timeout=10).status_code == 401
    adapter = httpx.get(url, headers={"Authorization": f"Bearer {routed.adapter_key}"}, timeout=10)
    assert adapter.status_code == 401
    foreign = httpx.get(
        url,
        headers={"Authorization": f"Bearer {routed.gw.token}", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert foreign.status_code == 403


def test_an_open_stream_does_not_hold_up_shutdown(routed: Routed) -> None:
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=follow, args=(routed.gw.url, routed.gw.token, events, stop), daemon=True)
    reader.start()
    next_event(events, "ready")
    started = time.monotonic()
    assert routed.gw.stop() == 0
    took = time.monotonic() - started
    assert took < 3, f"shutdown took {took:.1f}s with an event stream open"
    assert next_event(events, "end") is None
