"""The dashboard's API on the real binary: usage statistics, the CSV export, clearing the
history, the saved listen address, and "test" on a provider.

Requests go through the official SDKs to the four-protocol mock provider
(:mod:`mock_providers`); the gateway runs with ``--secrets env`` (keys as ``env:NAME``), so no
keychain is needed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import queue
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import mock_providers as mp
import openai
import pytest
from conftest import GatewayFactory, GatewayProcess, ManagementClient
from test_live_events import follow, next_event

GOOD_VAR = "FLEXIPROXY_E2E_DASHBOARD_KEY"
BAD_VAR = "FLEXIPROXY_E2E_DASHBOARD_BAD_KEY"
CSV_HEADER = (
    "time_utc,ts_ms,provider,credential,adapter,model,endpoint,stream,status,outcome,"
    "input_tokens,output_tokens,cached_tokens,latency_ms,ttfb_ms,error"
).split(",")
# A client model name that needs quoting in CSV.
AWKWARD_MODEL = 'odd,"model"'


def now_ms() -> int:
    return int(time.time() * 1000)


def start(factory: GatewayFactory, mock: mp.MockProviders) -> GatewayProcess:
    assert mock.key
    return factory(["--secrets", "env"], env={GOOD_VAR: mock.key, BAD_VAR: "sk-not-the-key"}, log_level="info")


def register(api: ManagementClient, provider_id: str, url: str, protocol: str, **extra: Any) -> None:
    body = {"url": url, "protocol": protocol, "api_key": f"env:{GOOD_VAR}", "discovery": "off", **extra}
    r = api.put(f"/api/providers/{provider_id}", json=body)
    assert r.status_code in (200, 201), r.text


def adapter(api: ManagementClient, provider_id: str, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"provider_id": provider_id}
    if model is not None:
        body["model_id"] = model
    r = api.post("/api/adapters", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def stats(api: ManagementClient, **params: int) -> dict[str, Any]:
    r = api.get("/api/usage/stats", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def by_key(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {g["key"]: g for g in groups}


SUMMED = ("requests", "input_tokens", "output_tokens", "cached_tokens", "errors")


def sums(rows: list[dict[str, Any]]) -> dict[str, int]:
    errors = {"failed", "upstream_error", "interrupted"}
    return {
        "requests": len(rows),
        "input_tokens": sum(r["input_tokens"] or 0 for r in rows),
        "output_tokens": sum(r["output_tokens"] or 0 for r in rows),
        "cached_tokens": sum(r["cached_tokens"] or 0 for r in rows),
        "errors": sum(r["outcome"] in errors for r in rows),
    }


class Traffic:
    """A gateway with three adapters and known traffic through them:

    * ``chat`` (openai_chat, model mock-chat): 3 requests with the OpenAI SDK;
    * ``claude`` (anthropic_messages, model claude-mock): 2 requests with the Anthropic SDK;
    * ``broken`` (openai_chat, model fail-400): 1 request the provider refuses;
    * ``chat`` with the client's model: 1 request for ``odd,"model"``.
    """

    def __init__(self, gw: GatewayProcess, mock: mp.MockProviders):
        self.gw = gw
        api = gw.api
        register(api, "chat", mock.base_url("openai_chat"), "openai_chat")
        register(api, "claude", mock.base_url("anthropic_messages"), "anthropic_messages")
        register(api, "broken", mock.base_url("openai_chat"), "openai_chat")
        self.chat = adapter(api, "chat", "mock-chat")
        self.claude = adapter(api, "claude", "claude-mock")
        self.broken = adapter(api, "broken", "fail-400")
        self.any_model = adapter(api, "chat", None)
        self.since = now_ms() - 1
        chat = openai.OpenAI(base_url=gw.v1, api_key=self.chat["api_key"], max_retries=0)
        for n in range(3):
            chat.chat.completions.create(model="x", messages=[{"role": "user", "content": f"hi {n}"}])
        claude = anthropic.Anthropic(base_url=gw.url, api_key=self.claude["api_key"], max_retries=0)
        for n in range(2):
            claude.messages.create(model="x", max_tokens=50, messages=[{"role": "user", "content": f"hello {n}"}])
        broken = openai.OpenAI(base_url=gw.v1, api_key=self.broken["api_key"], max_retries=0)
        with pytest.raises(openai.BadRequestError):
            broken.chat.completions.create(model="x", messages=[{"role": "user", "content": "fail"}])
        any_model = openai.OpenAI(base_url=gw.v1, api_key=self.any_model["api_key"], max_retries=0)
        any_model.chat.completions.create(model=AWKWARD_MODEL, messages=[{"role": "user", "content": "hi"}])
        self.rows = api.wait_usage(count=7)
        assert len(self.rows) == 7, self.rows
        self.until = now_ms() + 1

    def rows_of(self, adapter: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["adapter"] == adapter["create_time"]]


@pytest.fixture
def traffic(start_gateway: GatewayFactory, providers_mock: mp.MockProviders) -> Traffic:
    return Traffic(start(start_gateway, providers_mock), providers_mock)


# -- statistics ------------------------------------------------------------------------------------


def test_stats_match_what_was_sent(traffic: Traffic) -> None:
    api = traffic.gw.api
    minute = 60_000
    since = traffic.since - 10 * minute
    s = stats(api, since_ms=since, until_ms=traffic.until, bucket_ms=minute)
    assert (s["since_ms"], s["until_ms"], s["bucket_ms"]) == (since, traffic.until, minute)
    assert s["totals"] == sums(traffic.rows)
    assert s["totals"]["requests"] == 7 and s["totals"]["errors"] == 1

    adapters = by_key(s["by_adapter"])
    chat = adapters[str(traffic.chat["create_time"])]
    assert chat["label"] == "chat · mock-chat"
    assert chat["requests"] == 3
    assert chat["input_tokens"] == 3 * mp.INPUT_TOKENS
    assert chat["output_tokens"] == 3 * mp.OUTPUT_TOKENS
    assert chat["cached_tokens"] == 3 * mp.CACHED_TOKENS
    assert chat["errors"] == 0
    assert isinstance(chat["avg_latency_ms"], int) and chat["avg_latency_ms"] >= 0
    claude = adapters[str(traffic.claude["create_time"])]
    assert claude["label"] == "claude · claude-mock"
    assert claude["requests"] == 2
    assert {k: claude[k] for k in SUMMED} == sums(traffic.rows_of(traffic.claude))
    broken = adapters[str(traffic.broken["create_time"])]
    assert broken["label"] == "broken · fail-400"
    assert (broken["requests"], broken["errors"]) == (1, 1)
    assert adapters[str(traffic.any_model["create_time"])]["label"] == "chat · any model"
    assert len(adapters) == 4

    providers = by_key(s["by_provider"])
    assert set(providers) == {"chat", "claude", "broken"}
    assert providers["chat"]["requests"] == 4
    assert providers["claude"]["requests"] == 2
    models = by_key(s["by_model"])
    assert set(models) == {"mock-chat", "claude-mock", "fail-400", AWKWARD_MODEL}
    assert models["mock-chat"]["requests"] == 3

    for groups in (s["by_provider"], s["by_adapter"], s["by_model"]):
        totals = [g["input_tokens"] + g["output_tokens"] for g in groups]
        assert totals == sorted(totals, reverse=True), groups
        assert sum(g["requests"] for g in groups) == 7

    # Every bucket from since to until, in order, empty ones as zeros.
    series = s["series"]
    assert len(series) == math.ceil((traffic.until - since) / minute)
    assert [b["start_ms"] for b in series] == [since + n * minute for n in range(len(series))]
    assert sum(b["requests"] for b in series) == 7
    assert sum(b["input_tokens"] for b in series) == s["totals"]["input_tokens"]
    assert sum(b["errors"] for b in series) == 1
    empty = [b for b in series if b["requests"] == 0]
    assert len(empty) >= 9
    assert all(b["input_tokens"] == b["output_tokens"] == b["errors"] == 0 for b in empty)

    # A range with nothing in it.
    later = stats(api, since_ms=traffic.until + minute, until_ms=traffic.until + 3 * minute, bucket_ms=minute)
    assert later["totals"]["requests"] == 0 and later["by_adapter"] == []
    assert [b["requests"] for b in later["series"]] == [0, 0]


def test_stats_parameters_are_checked(traffic: Traffic) -> None:
    api = traffic.gw.api
    # The defaults: today (UTC) until now, hourly.
    s = stats(api)
    assert s["bucket_ms"] == 3_600_000
    assert s["since_ms"] % 86_400_000 == 0
    assert s["totals"]["requests"] >= 7
    for params, words in (
        ({"since_ms": 0, "until_ms": 10_000_000, "bucket_ms": 1}, "too many"),
        ({"since_ms": 100, "until_ms": 100}, "later than"),
        ({"since_ms": 0, "until_ms": 100, "bucket_ms": 0}, "bucket_ms"),
    ):
        r = api.get("/api/usage/stats", params=params)
        assert r.status_code == 400, r.text
        assert words in r.json()["error"]["message"]


def test_recent_rows_and_live_events_name_the_adapter(traffic: Traffic) -> None:
    rows = traffic.gw.api.usage_recent(10)
    chat_rows = [r for r in rows if r["adapter"] == traffic.chat["create_time"]]
    assert len(chat_rows) == 3
    assert all(r["adapter_label"] == "chat · mock-chat" and r["credential"] == "chat/default" for r in chat_rows)

    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=follow, args=(traffic.gw.url, traffic.gw.token, events, stop), daemon=True)
    reader.start()
    assert next_event(events, "ready") == {"usage_enabled": True}
    client = anthropic.Anthropic(base_url=traffic.gw.url, api_key=traffic.claude["api_key"], max_retries=0)
    client.messages.create(model="x", max_tokens=50, messages=[{"role": "user", "content": "live"}])
    record = next_event(events, "usage")
    assert record["adapter"] == traffic.claude["create_time"]
    assert record["adapter_label"] == "claude · claude-mock"
    assert record["credential"] == "claude/default"
    stop.set()


# -- CSV export and clearing -------------------------------------------------------------------------


def download(api: ManagementClient, **params: int) -> tuple[httpx.Response, list[list[str]]]:
    r = api.get("/api/usage/export.csv", params=params)
    assert r.status_code == 200, r.text
    # RFC 4180: CRLF line ends; Python's reader takes the quoting as the RFC defines it.
    assert r.text.endswith("\r\n")
    return r, list(csv.reader(io.StringIO(r.text, newline="")))


def test_the_csv_export_has_every_row(traffic: Traffic) -> None:
    api = traffic.gw.api
    r, table = download(api)
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="flexiproxy-usage-\d{8}\.csv"', r.headers["content-disposition"]
    ), r.headers["content-disposition"]
    assert table[0] == CSV_HEADER
    lines = [dict(zip(CSV_HEADER, line, strict=True)) for line in table[1:]]
    assert len(lines) == 7
    # Oldest first; the same rows the API lists.
    assert [int(line["ts_ms"]) for line in lines] == sorted(int(line["ts_ms"]) for line in lines)
    assert sorted(int(line["ts_ms"]) for line in lines) == sorted(row["ts_ms"] for row in traffic.rows)

    chat = [line for line in lines if line["adapter"] == "chat · mock-chat"]
    assert len(chat) == 3
    for line in chat:
        assert line["provider"] == "chat" and line["credential"] == "chat/default"
        assert line["model"] == "mock-chat" and line["status"] == "200" and line["outcome"] == "completed"
        assert line["input_tokens"] == str(mp.INPUT_TOKENS) and line["output_tokens"] == str(mp.OUTPUT_TOKENS)
        assert line["stream"] == "false" and line["error"] == ""
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time_utc"])
    # The awkward model name survives quoting, and the quoting is RFC 4180's.
    (odd,) = [line for line in lines if line["model"] == AWKWARD_MODEL]
    assert odd["adapter"] == "chat · any model"
    assert ',"odd,""model""",' in r.text
    (failed,) = [line for line in lines if line["provider"] == "broken"]
    assert failed["status"] == "400" and failed["outcome"] == "upstream_error" and failed["error"]

    # A range: only the rows in it.
    claude_ts = sorted(row["ts_ms"] for row in traffic.rows_of(traffic.claude))
    _, part = download(api, since_ms=claude_ts[0], until_ms=claude_ts[-1] + 1)
    assert {line[2] for line in part[1:]} >= {"claude"}
    assert all(claude_ts[0] <= int(line[1]) <= claude_ts[-1] for line in part[1:])


def test_delete_empties_the_history(traffic: Traffic) -> None:
    api = traffic.gw.api
    oldest = min(row["ts_ms"] for row in traffic.rows)
    r = api.delete("/api/usage", params={"before_ms": oldest + 1})
    assert r.status_code == 200, r.text
    first = r.json()["deleted"]
    assert first >= 1
    assert len(api.usage_recent(100)) == 7 - first

    r = api.delete("/api/usage")
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": 7 - first}
    assert api.usage_recent(100) == []
    s = stats(api, since_ms=traffic.since - 1000, until_ms=now_ms() + 1, bucket_ms=60_000)
    assert s["totals"]["requests"] == 0
    assert s["by_provider"] == s["by_adapter"] == s["by_model"] == []
    _, table = download(api)
    assert table == [CSV_HEADER]
    # Needs the management token like every /api route.
    assert httpx.delete(f"{traffic.gw.url}/api/usage", timeout=10).status_code == 401


# -- the listen address ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SavedAddressFactory(GatewayFactory):
    """Starts gateways without ``--port``, so the saved address applies."""

    def command(self, args: list[str] | None, data_dir: Path) -> list[str]:
        cmd = super().command(["--port", "0", *(args or [])], data_dir)
        at = cmd.index("--port")
        del cmd[at : at + 2]
        return cmd


def settings(api: ManagementClient) -> dict[str, Any]:
    r = api.get("/api/settings")
    assert r.status_code == 200, r.text
    return r.json()


def put_listen(api: ManagementClient, listen: dict[str, Any]) -> httpx.Response:
    return api.put("/api/settings", json={"listen": listen})


def test_a_saved_port_is_used_at_the_next_start(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = start_gateway(["--secrets", "env"])
    s = settings(gw.api)
    assert s["listen"] == {
        "bind": "127.0.0.1",
        "port": gw.port,
        "saved_bind": None,
        "saved_port": None,
        "from_command_line": True,
        "restart_required": False,
    }
    assert Path(s["data_dir"]) == gw.data_dir
    assert Path(s["database"]) == gw.db_path and gw.db_path.exists()
    assert s["warnings"] == []

    for bad, words in (
        ({"port": 0}, "between 1 and 65535"),
        ({"port": 70000}, "between 1 and 65535"),
        ({"bind": "localhost"}, "IP address"),
        ({"host": "127.0.0.1"}, "unknown field"),
    ):
        r = put_listen(gw.api, bad)
        assert r.status_code == 400, (bad, r.text)
        assert words in r.json()["error"]["message"], r.text
    assert settings(gw.api)["listen"]["saved_port"] is None

    r = put_listen(gw.api, {"bind": "0.0.0.0"})
    assert r.status_code == 200, r.text
    assert any(w.startswith("Binding to 0.0.0.0 exposes the gateway to your network") for w in r.json()["warnings"])

    port = free_port()
    r = put_listen(gw.api, {"bind": "127.0.0.1", "port": port})
    assert r.status_code == 200, r.text
    listen = r.json()["listen"]
    assert (listen["saved_bind"], listen["saved_port"]) == ("127.0.0.1", port)
    # Started with --port, which wins over the saved address: a restart would not change it.
    assert listen["from_command_line"] is True and listen["restart_required"] is False
    assert any("--bind/--port" in w for w in r.json()["warnings"])
    assert not any(w.startswith("Binding to") for w in r.json()["warnings"])
    assert gw.stop() == 0

    factory = SavedAddressFactory(tmp_path / "restarted")
    try:
        again = factory(["--secrets", "env"], data_dir=gw.data_dir)
        assert again.url == f"http://127.0.0.1:{port}"
        assert again.api.get("/health").status_code == 200
        listen = settings(again.api)["listen"]
        assert listen == {
            "bind": "127.0.0.1",
            "port": port,
            "saved_bind": "127.0.0.1",
            "saved_port": port,
            "from_command_line": False,
            "restart_required": False,
        }
        # Saving another port now asks for a restart.
        other = free_port()
        listen = put_listen(again.api, {"port": other}).json()["listen"]
        assert listen["saved_port"] == other and listen["restart_required"] is True
        put_listen(again.api, {"port": port})
        assert again.stop() == 0

        # The environment counts as the command line.
        flagged = factory(["--secrets", "env"], env={"FLEXIPROXY_PORT": "0"}, data_dir=gw.data_dir)
        assert flagged.port != port
        assert settings(flagged.api)["listen"]["from_command_line"] is True
    finally:
        factory.stop_all()


# -- testing a provider ----------------------------------------------------------------------------

PROTOCOL_MODELS = {
    "openai_chat": "mock-chat",
    "openai_responses": "mock-chat",
    "anthropic_messages": "claude-mock",
    "gemini": "gemini-mock",
}


def test_provider_test_calls_each_protocol(start_gateway: GatewayFactory, providers_mock: mp.MockProviders) -> None:
    gw = start(start_gateway, providers_mock)
    before = len(providers_mock.requests)
    for protocol, model in PROTOCOL_MODELS.items():
        register(gw.api, protocol, providers_mock.base_url(protocol), protocol, models=[model])
        r = gw.api.post(f"/api/providers/{protocol}/test", json={})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["ok"] is True, report
        assert report["model"] == model and report["credential"] == f"{protocol}/default"
        assert report["status"] == 200 and isinstance(report["latency_ms"], int)
        assert report["answer"].startswith("echo: ") and "OK" in report["answer"]
        assert report["input_tokens"] == mp.INPUT_TOKENS, report
        assert report["output_tokens"] and "error" not in report
    # One real call per protocol, in each protocol's own shape and endpoint.
    calls = providers_mock.requests[before:]
    assert [c.protocol for c in calls] == list(PROTOCOL_MODELS)
    assert calls[3].path == "/v1beta/models/gemini-mock:generateContent"
    assert calls[2].json["max_tokens"] == 16
    # A test is not usage.
    time.sleep(0.3)
    assert gw.api.usage_recent(10) == []


def test_provider_test_reports_a_bad_key_without_resting_it(
    start_gateway: GatewayFactory, providers_mock: mp.MockProviders
) -> None:
    gw = start(start_gateway, providers_mock)
    register(gw.api, "chat", providers_mock.base_url("openai_chat"), "openai_chat")
    r = gw.api.post("/api/providers/chat/credentials", json={"id": "bad", "api_key": f"env:{BAD_VAR}"})
    assert r.status_code == 201, r.text
    r = gw.api.post("/api/providers/chat/test", json={"credential": "bad", "model": "mock-chat"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is False and report["status"] == 401
    assert report["credential"] == "chat/bad"
    assert report["error"] == "the provider said: Incorrect API key provided."
    assert providers_mock.key not in json.dumps(report) and "sk-not-the-key" not in json.dumps(report)
    health = gw.api.get("/api/providers/chat/credentials/bad").json()["health"]
    assert health["state"] == "ready", health

    # No model declared or discovered.
    r = gw.api.post("/api/providers/chat/test", json={})
    assert r.status_code == 400 and "name a model" in r.json()["error"]["message"]
    r = gw.api.post("/api/providers/chat/test", json={"credential": "nope", "model": "m"})
    assert r.status_code == 404
    assert gw.api.post("/api/providers/none/test", json={}).status_code == 404

    # Nothing listening there.
    port = free_port()
    register(gw.api, "gone", f"http://127.0.0.1:{port}/v1", "openai_chat")
    report = gw.api.post("/api/providers/gone/test", json={"model": "m"}).json()
    assert report["ok"] is False and report["status"] is None
    assert report["error"].startswith(f"cannot reach http://127.0.0.1:{port}/v1/chat/completions: ")
    time.sleep(0.3)
    assert gw.api.usage_recent(10) == []
