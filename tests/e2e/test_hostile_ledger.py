"""The usage ledger against hostile numbers, a poisoned database, loose file modes and a stop
in the middle of a stream (issue 15), through the real binary.

* A provider that reports absurd token counts (10^19, -7, 1e300, text, fractions) in any of
  the four protocols, streamed or not, relayed as is or translated: the answer still reaches
  the client, every recorded count is within 0..MAX_TOKENS, and the dashboard's views, the CSV
  export, ``/v1/usage`` and the next start all work.
* A database in which an older version wrote counts of ``i64::MAX`` (and rows no version
  wrote: a real, a negative, a text time) still starts, with every view answering.
* The data folder is 0700 and the database with its -wal and -shm 0600 even under umask 000,
  and loose modes left by an older version are tightened at the next start; an upgrade's
  backup is private too.
* SIGTERM while requests run: one that ends within the grace (``--shutdown-grace``) finishes
  normally, a stream still running at the deadline is cut with its protocol's error event, a
  request still waiting for its upstream gets 503 in its client's shape; the gateway exits
  within the grace plus a margin, and every one of them has its usage row, the cut ones marked
  ``shutdown`` with the tokens seen until then.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    MATRIX_KEY_VAR,
    MATRIX_PROTOCOLS,
    REPO,
    GatewayFactory,
    GatewayProcess,
    Matrix,
    new_token,
)
from fault_upstream import ANY_KEY, PROMPT_TOKENS
from mock_providers import MockProviders

# The largest count a request is recorded with (usage::MAX_TOKENS).
MAX_TOKENS = 1_000_000_000
I64_MAX = 2**63 - 1
KEY_VAR = "FLEXIPROXY_E2E_LEDGER_KEY"


# -- clients of each protocol, raw -----------------------------------------------------------


def ask(gw_url: str, client: str, key: str, model: str, stream: bool, text: str = "hello") -> httpx.Response:
    """One request in `client`'s protocol; a stream is read to its end."""
    if client == "openai_chat":
        url = f"{gw_url}/v1/chat/completions"
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
        headers = {"Authorization": f"Bearer {key}"}
    elif client == "openai_responses":
        url = f"{gw_url}/v1/responses"
        body = {"model": model, "input": text, "stream": stream}
        headers = {"Authorization": f"Bearer {key}"}
    elif client == "anthropic_messages":
        url = f"{gw_url}/v1/messages"
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}], "stream": stream}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{gw_url}/v1beta/models/{model}:{action}"
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        headers = {"x-goog-api-key": key}
    r = httpx.post(url, json=body, headers=headers, timeout=30)
    return r


def usage_rows(gw: GatewayProcess, since_ms: int, count: int) -> list[dict[str, Any]]:
    return gw.api.wait_usage(lambda row: row.get("ts_ms", 0) >= since_ms, count=count)


def assert_in_range(row: dict[str, Any]) -> None:
    for column in ("input_tokens", "output_tokens", "cached_tokens"):
        value = row.get(column)
        assert value is None or (isinstance(value, int) and 0 <= value <= MAX_TOKENS), (column, row)


def assert_views_answer(gw: GatewayProcess, adapter_key: str | None = None) -> dict[str, Any]:
    """Every view that sums or reads usage answers 200 with counts in range; the summary."""
    api = gw.api
    summary = api.get("/api/usage/summary", params={"since_ms": 0})
    assert summary.status_code == 200, summary.text
    now = int(time.time() * 1000)
    stats = api.get("/api/usage/stats", params={"since_ms": now - 2 * 3_600_000, "until_ms": now + 60_000, "bucket_ms": 60_000})
    assert stats.status_code == 200, stats.text
    default_stats = api.get("/api/usage/stats")
    assert default_stats.status_code == 200, default_stats.text
    recent = api.get("/api/usage/recent", params={"limit": 1000})
    assert recent.status_code == 200, recent.text
    for row in recent.json():
        assert_in_range(row)
    export = api.get("/api/usage/export.csv")
    assert export.status_code == 200, export.text
    lines = list(csv.DictReader(io.StringIO(export.text)))
    for line in lines:
        for column in ("input_tokens", "output_tokens", "cached_tokens"):
            if line[column]:
                assert 0 <= int(line[column]) <= MAX_TOKENS, line
    headers = {"Authorization": f"Bearer {adapter_key}"} if adapter_key else {"Authorization": f"Bearer {gw.token}"}
    v1 = httpx.get(f"{gw.url}/v1/usage", headers=headers, timeout=10)
    assert v1.status_code == 200, v1.text
    return {"summary": summary.json(), "stats": stats.json(), "recent": recent.json(), "csv": lines, "v1": v1.json()}


def copy_database(src: Path, dest_dir: Path) -> None:
    """A consistent copy of a live database (its WAL included) into `dest_dir`."""
    dest_dir.mkdir(parents=True)
    with sqlite3.connect(src) as live, sqlite3.connect(dest_dir / "flexiproxy.db") as copy:
        live.backup(copy)


# -- absurd counts from every provider protocol ------------------------------------------------

# What a broken or hostile provider may put in its usage object, under every protocol's names.
HUGE_AND_NEGATIVE = {
    "prompt_tokens": 10**19,
    "input_tokens": 10**19,
    "promptTokenCount": 10**19,
    "completion_tokens": -7,
    "output_tokens": -7,
    "candidatesTokenCount": -7,
    "cached_tokens": 1e300,
    "cache_read_input_tokens": 1e300,
    "cachedContentTokenCount": 1e300,
    "reasoning_tokens": -1,
    "total_tokens": 10**30,
    "totalTokenCount": 10**30,
}
TEXT_AND_FRACTIONS = {
    "prompt_tokens": "12",
    "input_tokens": "12",
    "promptTokenCount": "12",
    "completion_tokens": 3.7,
    "output_tokens": 3.7,
    "candidatesTokenCount": 3.7,
    "cached_tokens": "lots",
    "cache_read_input_tokens": "lots",
    "cachedContentTokenCount": "lots",
}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # (input, output, cached) as recorded
        (HUGE_AND_NEGATIVE, (MAX_TOKENS, 0, MAX_TOKENS)),
        (TEXT_AND_FRACTIONS, (12, 3, None)),
    ],
    ids=["huge-and-negative", "text-and-fractions"],
)
def test_absurd_counts_from_every_protocol_are_clamped_and_nothing_breaks(
    matrix: Matrix, providers_mock: MockProviders, tmp_path: Path, override: dict[str, Any], expected: tuple
) -> None:
    gw = matrix.gw
    since = matrix.now_ms()
    providers_mock.report_usage(**override)
    sent = 0
    try:
        for provider in MATRIX_PROTOCOLS:
            key = matrix.key(provider)
            model = matrix.model(provider)
            # Its own protocol (relayed as is, usage read on the side), and OpenAI Chat (translated
            # for the three others).
            for client in dict.fromkeys([provider, "openai_chat"]):
                for stream in (False, True):
                    r = ask(gw.url, client, key, model, stream, text=f"count {provider} {client} {stream}")
                    assert r.status_code == 200, (provider, client, stream, r.text)
                    # A stream carries the answer in pieces.
                    assert "echo:" in r.text and "count" in r.text, (provider, client, stream, r.text[:500])
                    sent += 1
                    if client == "openai_chat" and provider != "openai_chat" and not stream:
                        # Translated: the client gets the clamped counts, not the provider's.
                        usage = r.json()["usage"]
                        assert usage["prompt_tokens"] == expected[0], usage
                        assert usage["completion_tokens"] == expected[1], usage
    finally:
        providers_mock.report_usage()

    rows = usage_rows(gw, since, sent)
    assert len(rows) == sent, rows
    for row in rows:
        assert row["outcome"] == "completed", row
        assert_in_range(row)
        assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == expected, row

    views = assert_views_answer(gw, matrix.key("openai_chat"))
    today = views["summary"]["today"]
    assert 0 <= today["input_tokens"] <= today["requests"] * MAX_TOKENS
    windows = views["v1"]["details"]["openai_chat"]["openai_chat/default"]["rate_limit_windows"]
    assert 0 <= windows["tok_min"] <= 2 * MAX_TOKENS * today["requests"], windows

    # The next start, on what was written (a copy: the module's gateway keeps running).
    data = tmp_path / "next-start"
    copy_database(gw.db_path, data)
    factory = GatewayFactory(tmp_path)
    try:
        again = factory(["--secrets", "env"], env={MATRIX_KEY_VAR: matrix.provider_key}, data_dir=data)
        views = assert_views_answer(again)
        assert views["summary"]["today"]["requests"] >= sent
    finally:
        factory.stop_all()


# -- a database an older version poisoned -------------------------------------------------------


def test_a_database_with_counts_an_old_version_wrote_still_starts(start_gateway: GatewayFactory) -> None:
    env = {KEY_VAR: new_token("sk-old-")}
    first = start_gateway(["--secrets", "env"], env=env)
    first.api.create_provider("old", "http://127.0.0.1:9/v1", api_key=f"env:{KEY_VAR}", protocol="openai_chat")
    adapter = first.api.create_adapter("old", "old-model")
    data = first.data_dir
    assert first.stop() == 0

    now = int(time.time() * 1000)
    with sqlite3.connect(data / "flexiproxy.db") as db:
        insert = (
            "INSERT INTO usage (ts_ms, adapter, provider_id, model, endpoint, stream, status, input_tokens,"
            " output_tokens, cached_tokens, reasoning_tokens, latency_ms, outcome, credential)"
            " VALUES (?, ?, 'old', 'old-model', 'chat.completions', 0, 200, ?, ?, ?, ?, 12, 'completed', 'old/default')"
        )
        # What a version before the clamp wrote for a provider claiming 10^19 tokens: u64
        # counts saturated into SQLite's i64. An hour ago, and within the last minute.
        old = adapter["create_time"]
        db.execute(insert, (now - 3_600_000, old, I64_MAX, I64_MAX, I64_MAX, I64_MAX))
        db.execute(insert, (now - 5_000, old, I64_MAX, I64_MAX, I64_MAX, I64_MAX))
        # What no version wrote, but an edited or damaged file can hold: a real past i64, a
        # negative count, a time that is text.
        db.execute(insert, (now - 8_000, old, 1e19, -5, "lots", None))
        db.execute(insert, ("later", old, 7, 7, 7, 7))

    again = start_gateway(["--secrets", "env"], env=env, data_dir=data)
    views = assert_views_answer(again, adapter["api_key"])
    today = views["summary"]["today"]
    assert today["requests"] == 4
    assert today["input_tokens"] == 3 * MAX_TOKENS + 7
    assert today["output_tokens"] == 2 * MAX_TOKENS + 7
    assert views["stats"]["totals"]["input_tokens"] == 3 * MAX_TOKENS
    assert [int(line["input_tokens"]) for line in views["csv"]] == [MAX_TOKENS] * 3
    # The text-timed row cannot be read: left out of the list, not fatal.
    assert len(views["recent"]) == 3
    # The routing windows were seeded from the clamped rows.
    key = views["v1"]["details"]["old"]["old/default"]
    assert key["requests"] == 3, key
    assert 0 < key["rate_limit_windows"]["tok_min"] <= 3 * MAX_TOKENS, key
    assert "usage rows that cannot be read" in again.logs()


# -- file modes --------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(data: Path) -> list[Path]:
    return [data / name for name in ("flexiproxy.db", "flexiproxy.db-wal", "flexiproxy.db-shm")]


def test_the_data_folder_and_database_files_are_private(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    env = {KEY_VAR: new_token("sk-modes-")}
    # The most permissive umask there is: the modes must not come from it.
    previous = os.umask(0)
    try:
        gw = start_gateway(["--secrets", "env"], env=env, data_dir=data)
    finally:
        os.umask(previous)
    gw.api.create_provider("p", "http://127.0.0.1:9/v1", api_key=f"env:{KEY_VAR}", protocol="openai_chat")
    assert mode(data) == 0o700, oct(mode(data))
    assert mode(data.parent) == 0o700, "a missing parent is made private too"
    for file in database_files(data):
        assert file.exists(), file
        assert mode(file) == 0o600, (file, oct(mode(file)))
    # Killed, so -wal and -shm stay behind (a clean stop removes them).
    gw.stop(signal.SIGKILL)

    # As an older version (or a umask of 0) left them: loosened, then tightened at the start.
    data.chmod(0o755)
    for file in database_files(data):
        assert file.exists(), file
        file.chmod(0o644)
    gw = start_gateway(["--secrets", "env"], env=env, data_dir=data)
    gw.api.get("/api/status")
    assert mode(data) == 0o700
    for file in database_files(data):
        if file.exists():
            assert mode(file) == 0o600, (file, oct(mode(file)))
    assert gw.stop() == 0

    # An upgrade from schema v3 backs the old file up, privately.
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    fixture = (REPO / "tests" / "fixtures" / "store" / "v3.sql").read_text()
    with sqlite3.connect(old / "flexiproxy.db") as db:
        db.executescript(fixture)
    (old / "flexiproxy.db").chmod(0o644)
    previous = os.umask(0)
    try:
        gw = start_gateway(["--secrets", "env"], env={"FP_LEGACY_KEY": "sk-legacy-0123456789"}, data_dir=old)
    finally:
        os.umask(previous)
    backups = list((old / "backups").iterdir())
    assert len(backups) == 1, backups
    assert mode(old / "backups") == 0o700
    assert mode(backups[0]) == 0o600, oct(mode(backups[0]))
    assert mode(old) == 0o700
    assert mode(old / "flexiproxy.db") == 0o600


# -- SIGTERM while requests run ------------------------------------------------------------------

GRACE_S = 4
# The gateway waits GRACE_S, cuts, waits at most 2 s for connections to close, and writes the
# last rows; the rest is a noisy machine's margin.
EXIT_MARGIN_S = 12


class Streamer(threading.Thread):
    """Reads one streamed response in the background, noting when the first bytes came."""

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str]):
        super().__init__(daemon=True)
        self.url, self.body, self.headers = url, body, headers
        self.first_bytes = threading.Event()
        self.status: int | None = None
        self.text = ""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url, json=self.body, headers=self.headers, timeout=120) as r:
                self.status = r.status_code
                for chunk in r.iter_text():
                    self.text += chunk
                    self.first_bytes.set()
        except Exception as e:  # noqa: BLE001 - the test looks at what happened
            self.error = e
        finally:
            self.first_bytes.set()


def test_sigterm_lets_requests_finish_then_cuts_and_records_the_rest(
    start_gateway: GatewayFactory, fault_upstreams: Any
) -> None:
    key = new_token("sk-stop-")
    # A stream far longer than the grace (Anthropic: its usage comes first, in message_start).
    long_stream = fault_upstreams("long-stream", models=["long-model"])
    long_stream.fail(ANY_KEY, "slow_stream", delay=120)
    # A request whose upstream has not answered yet when the grace ends.
    waiting = fault_upstreams("waiting", models=["waiting-model"])
    waiting.fail(ANY_KEY, "slow", delay=120)
    # A stream that ends well within the grace.
    short_stream = fault_upstreams("short-stream", models=["short-model"])
    short_stream.fail(ANY_KEY, "slow_stream", delay=1.5)

    gw = start_gateway(["--secrets", "env", "--shutdown-grace", str(GRACE_S)], env={KEY_VAR: key})
    keys = {}
    for up, protocol, model in (
        (long_stream, "anthropic_messages", "long-model"),
        (waiting, "openai_chat", "waiting-model"),
        (short_stream, "openai_chat", "short-model"),
    ):
        gw.api.create_provider(up.name, up.base_url, api_key=f"env:{KEY_VAR}", protocol=protocol)
        keys[up.name] = gw.api.create_adapter(up.name, model)["api_key"]

    anthropic_stream = Streamer(
        f"{gw.url}/v1/messages",
        {"model": "long-model", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        {"x-api-key": keys["long-stream"], "anthropic-version": "2023-06-01"},
    )
    short = Streamer(
        f"{gw.url}/v1/chat/completions",
        {"model": "short-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": f"Bearer {keys['short-stream']}"},
    )
    plain: dict[str, Any] = {}

    def ask_plain() -> None:
        try:
            plain["response"] = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "waiting-model", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {keys['waiting']}"},
                timeout=120,
            )
        except Exception as e:  # noqa: BLE001
            plain["error"] = e

    plain_thread = threading.Thread(target=ask_plain, daemon=True)
    anthropic_stream.start()
    plain_thread.start()
    assert anthropic_stream.first_bytes.wait(30), "the long stream never started"
    waiting.wait_for(1, timeout=30)
    short.start()
    assert short.first_bytes.wait(30), "the short stream never started"
    assert "message_start" in anthropic_stream.text

    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    code = gw.proc.wait(timeout=GRACE_S + EXIT_MARGIN_S + 30)
    took = time.monotonic() - signalled
    print(f"\nSIGTERM: exited {took:.2f} s after the signal (grace {GRACE_S} s), exit code {code}")
    assert code == 0, gw.logs()[-3000:]
    assert took >= GRACE_S - 0.5, f"exited after {took:.1f} s, before the {GRACE_S} s grace was over"
    assert took <= GRACE_S + EXIT_MARGIN_S, f"exited {took:.1f} s after SIGTERM (grace {GRACE_S} s)"
    for thread in (anthropic_stream, short, plain_thread):
        thread.join(timeout=30)

    # The short stream finished within the grace, whole.
    assert short.error is None, short.error
    assert short.status == 200
    assert "[DONE]" in short.text
    assert "served by short-stream" in "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in short.text.splitlines()
        if line.startswith("data: {") and json.loads(line[6:]).get("choices")
    )
    # The long stream was cut with Anthropic's own error event, not broken off.
    assert anthropic_stream.error is None, anthropic_stream.error
    assert anthropic_stream.status == 200
    assert "event: error" in anthropic_stream.text, anthropic_stream.text[-1000:]
    assert "shutting down" in anthropic_stream.text
    # The waiting request got a 503 in OpenAI's shape.
    assert "error" not in plain, plain.get("error")
    response: httpx.Response = plain["response"]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "shutting_down"

    with sqlite3.connect(gw.db_path) as db:
        db.row_factory = sqlite3.Row
        rows = {
            row["provider_id"]: dict(row)
            for row in db.execute("SELECT provider_id, outcome, error, input_tokens, output_tokens, stream FROM usage")
        }
    assert set(rows) == {"long-stream", "waiting", "short-stream"}, rows
    assert rows["short-stream"]["outcome"] == "completed", rows
    cut = rows["long-stream"]
    assert cut["outcome"] == "shutdown", cut
    assert "shutting down" in cut["error"], cut
    assert cut["input_tokens"] == PROMPT_TOKENS, "the tokens seen before the cut are kept"
    assert cut["stream"] == 1
    assert rows["waiting"]["outcome"] == "shutdown", rows
    assert "cutting them" in gw.logs()
