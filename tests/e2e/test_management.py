"""The management API of the real gateway binary, as the web UI and scripts use it.

Covers the guards (management token, Host and Origin checks), provider and adapter CRUD as the
contract describes them, and that those changes take effect on the client API: a deleted
adapter's key stops working, an updated provider URL is used, an ``env:NAME`` key reference is
resolved.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from typing import Any

import httpx
import mock_openai as m
import openai
import pytest
from conftest import GatewayFactory, GatewayProcess, Routed, gateway_binary, new_token, route
from test_openai_sdk import closed_port

FP_KEY = re.compile(r"^fp-[0-9a-f]{64}$")
# Fields the contract promises (the gateway may add more).
PROVIDER_FIELDS = {
    "id",
    "url",
    "protocol",
    "has_api_key",
    "key_source",
    "key_hint",
    "created_at",
    "updated_at",
}
STATUS_FIELDS = {"version", "base_url", "listen", "secrets", "usage_enabled", "providers", "adapters"}


def chat(gw: GatewayProcess, key: str) -> httpx.Response:
    return httpx.post(
        f"{gw.v1}/chat/completions",
        json={"model": "client-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def assert_mgmt_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    return body["error"]


# -- unauthenticated endpoints -----------------------------------------------------------------------


def test_health_needs_no_token(gateway: GatewayProcess) -> None:
    r = httpx.get(f"{gateway.url}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", body["version"]), body


def test_ui_is_served_without_token(gateway: GatewayProcess) -> None:
    index = httpx.get(f"{gateway.url}/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "<html" in index.text.lower()
    for path, kind in [("/app.js", "javascript"), ("/style.css", "text/css"), ("/icon.png", "image/png")]:
        r = httpx.get(f"{gateway.url}{path}")
        assert r.status_code == 200, path
        assert kind in r.headers["content-type"], (path, r.headers["content-type"])
    assert httpx.get(f"{gateway.url}/icon.png").content.startswith(b"\x89PNG")


# -- guards --------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-0123456789abcdef", "Basic Zm9vOmJhcg=="])
def test_management_needs_the_token(gateway: GatewayProcess, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    for method, path in [("GET", "/api/status"), ("GET", "/api/providers"), ("POST", "/api/adapters")]:
        r = httpx.request(
            method, f"{gateway.url}{path}", headers=headers, json={} if method == "POST" else None
        )
        assert_mgmt_error(r, 401)


def test_adapter_key_is_not_a_management_token(routed: Routed) -> None:
    r = httpx.get(f"{routed.gw.url}/api/providers", headers={"Authorization": f"Bearer {routed.adapter_key}"})
    assert_mgmt_error(r, 401)


def test_status_with_token(routed: Routed) -> None:
    r = routed.gw.api.get("/api/status")
    assert r.status_code == 200
    status = r.json()
    assert STATUS_FIELDS <= set(status), set(status)
    assert {"kind", "writable", "warning"} <= set(status["secrets"])
    assert status["base_url"] == routed.gw.url
    assert status["version"] == httpx.get(f"{routed.gw.url}/health").json()["version"]
    assert str(routed.gw.port) in status["listen"]
    assert status["usage_enabled"] is True
    assert (status["providers"], status["adapters"]) == (1, 1)
    secrets_info = status["secrets"]
    assert isinstance(secrets_info["kind"], str) and secrets_info["writable"] is True
    assert secrets_info["warning"] is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1:1",
        "localhost.evil.example:{port}",
        "192.168.1.10:{port}",
    ],
)
def test_foreign_host_is_403(gateway: GatewayProcess, host: str) -> None:
    r = gateway.api.get("/api/status", headers={"Host": host.format(port=gateway.port)})
    assert_mgmt_error(r, 403)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
def test_loopback_host_is_allowed(gateway: GatewayProcess, host: str) -> None:
    r = gateway.api.get("/api/status", headers={"Host": host.format(port=gateway.port)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://evil.example:{port}", "http://127.0.0.1:1", "null"]
)
def test_foreign_origin_is_403(gateway: GatewayProcess, origin: str) -> None:
    headers = {"Origin": origin.format(port=gateway.port)}
    assert_mgmt_error(gateway.api.get("/api/status", headers=headers), 403)
    # A write from a foreign page must not go through either.
    r = gateway.api.put("/api/settings", json={"usage_enabled": False}, headers=headers)
    assert_mgmt_error(r, 403)
    assert gateway.api.get("/api/settings").json()["usage_enabled"] is True


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_same_origin_is_allowed(gateway: GatewayProcess, origin: str) -> None:
    r = gateway.api.get("/api/status", headers={"Origin": origin.format(port=gateway.port)})
    assert r.status_code == 200, r.text


# -- providers -----------------------------------------------------------------------------------


def test_provider_crud(
    tests_need_keychain: None, gateway: GatewayProcess, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    api = gateway.api
    assert api.get("/api/providers").json() == []
    assert_mgmt_error(api.get("/api/providers/main"), 404)

    created = api.create_provider("main", mock_upstream.base_url, api_key=provider_key)
    assert PROVIDER_FIELDS <= set(created), set(created)
    assert created["id"] == "main"
    assert created["url"] == mock_upstream.base_url
    assert created["protocol"] == "openai_chat"
    assert created["has_api_key"] is True
    assert created["key_source"] == "keychain"
    assert created["key_hint"].startswith(provider_key[:4])
    assert str(len(provider_key)) in created["key_hint"]
    assert provider_key not in str(created)
    assert created["created_at"] and created["updated_at"]

    assert api.get("/api/providers/main").json() == created
    assert api.get("/api/providers").json() == [created]

    other = api.create_provider("other.one_2", "http://127.0.0.1:9/v1", protocol="anthropic_messages")
    assert other["protocol"] == "anthropic_messages"
    assert other["has_api_key"] is False and other["key_source"] is None and other["key_hint"] is None
    assert sorted(p["id"] for p in api.get("/api/providers").json()) == ["main", "other.one_2"]

    r = api.request("DELETE", "/api/providers/other.one_2")
    assert r.status_code == 204 and r.content == b""
    assert_mgmt_error(api.get("/api/providers/other.one_2"), 404)
    assert_mgmt_error(api.request("DELETE", "/api/providers/other.one_2"), 404)
    assert [p["id"] for p in api.get("/api/providers").json()] == ["main"]


@pytest.mark.parametrize(
    "provider_id,body",
    [
        ("bad id", {"url": "http://127.0.0.1:9/v1"}),
        ("x" * 65, {"url": "http://127.0.0.1:9/v1"}),
        ("ok", {"url": "not a url"}),
        ("ok", {"url": "http://127.0.0.1:9/v1", "protocol": "soap"}),
        ("ok", {}),
    ],
    ids=["space-in-id", "id-too-long", "bad-url", "bad-protocol", "no-url"],
)
def test_provider_validation(gateway: GatewayProcess, provider_id: str, body: dict[str, Any]) -> None:
    r = gateway.api.post(f"/api/providers/{provider_id}", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert_mgmt_error(r, r.status_code)
    assert gateway.api.get("/api/providers").json() == []


def test_provider_url_update_reaches_existing_adapters(
    tests_need_keychain: None, gateway: GatewayProcess, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    """An adapter created without its own base_url follows its provider's URL, also after the
    provider is edited (the user fixes a wrong URL in the UI; existing tool configs keep working).
    The URL moves to another host (port), so the key is given again: a key is only ever sent to
    the host it was given for (saved without it, the key is cleared and the answer says so)."""
    api = gateway.api
    api.create_provider("p", f"http://127.0.0.1:{closed_port()}/v1", api_key=provider_key)
    key = api.create_adapter("p", "mock-small")["api_key"]
    assert chat(gateway, key).status_code == 502
    moved = api.create_provider("p", mock_upstream.base_url)
    assert moved["url"] == mock_upstream.base_url
    assert moved["keys_cleared"] == ["p/default"] and moved["has_api_key"] is False, moved
    assert api.create_provider("p", mock_upstream.base_url, api_key=provider_key)["has_api_key"] is True
    r = chat(gateway, key)
    assert r.status_code == 200, f"the adapter still uses the provider's old URL: {r.status_code} {r.text}"
    assert mock_upstream.last().header("Authorization") == f"Bearer {provider_key}"


def test_provider_update_keeps_key_unless_null(
    tests_need_keychain: None, gateway: GatewayProcess, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    api = gateway.api
    first = api.create_provider("p", mock_upstream.base_url, api_key=provider_key)
    key = api.create_adapter("p", "mock-small")["api_key"]
    assert chat(gateway, key).status_code == 200
    assert mock_upstream.last().header("Authorization") == f"Bearer {provider_key}"

    # Absent api_key: the protocol changes, the key stays.
    updated = api.create_provider("p", mock_upstream.base_url, protocol="openai_chat")
    assert (updated["has_api_key"], updated["key_hint"]) == (True, first["key_hint"])
    assert updated["created_at"] == first["created_at"]
    assert chat(gateway, key).status_code == 200
    assert mock_upstream.last().header("Authorization") == f"Bearer {provider_key}"

    # "" keeps it too.
    assert api.create_provider("p", mock_upstream.base_url, api_key="")["has_api_key"] is True
    assert chat(gateway, key).status_code == 200
    assert mock_upstream.last().header("Authorization") == f"Bearer {provider_key}"

    # A new key replaces it.
    new_key = new_token("sk-rotated-")
    assert api.create_provider("p", mock_upstream.base_url, api_key=new_key)["key_hint"].startswith("sk-r")
    assert chat(gateway, key).status_code == 200
    assert mock_upstream.last().header("Authorization") == f"Bearer {new_key}"

    # null removes it: the provider is then called without our key.
    r = api.post("/api/providers/p", json={"url": mock_upstream.base_url, "api_key": None})
    assert r.status_code == 200, r.text
    assert (r.json()["has_api_key"], r.json()["key_source"], r.json()["key_hint"]) == (False, None, None)
    before = len(mock_upstream.requests)
    chat(gateway, key)
    assert len(mock_upstream.requests) == before + 1
    for rec in mock_upstream.requests[before:]:
        auth = rec.header("Authorization") or ""
        assert provider_key not in auth and new_key not in auth
        for name, value in rec.headers:
            assert key not in value, f"with no provider key, the client's fp- key went upstream in {name}"


def test_provider_env_reference(start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI) -> None:
    """A variable without the FLEXIPROXY_ prefix is usable once allowed with --allow-env."""
    secret = new_token("sk-from-env-")
    gw = start_gateway(["--allow-env", "E2E_UPSTREAM_KEY"], env={"E2E_UPSTREAM_KEY": secret})
    provider = gw.api.create_provider("envp", mock_upstream.base_url, api_key="env:E2E_UPSTREAM_KEY")
    assert provider["has_api_key"] is True
    assert provider["key_source"] == "env:E2E_UPSTREAM_KEY"
    assert secret not in str(provider)
    key = gw.api.create_adapter("envp", "mock-small")["api_key"]
    r = chat(gw, key)
    assert r.status_code == 200, r.text
    assert mock_upstream.last().header("Authorization") == f"Bearer {secret}"


def test_provider_key_survives_restart(
    tests_need_keychain: None, start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    """A raw key goes to the OS keychain, so a restarted gateway (same data folder) still has it."""
    token = new_token("fpm-test-")
    gw = start_gateway(token=token)
    key = route(gw, mock_upstream, provider_key).adapter_key
    assert gw.stop() == 0
    again = start_gateway(token=token, data_dir=gw.data_dir)
    r = chat(again, key)
    assert r.status_code == 200, r.text
    assert mock_upstream.last().header("Authorization") == f"Bearer {provider_key}"
    assert again.api.get("/api/providers/mock").json()["key_source"] == "keychain"


# -- adapters ------------------------------------------------------------------------------------


def test_adapter_crud_and_key_shown_once(routed: Routed) -> None:
    api = routed.gw.api
    created = routed.adapter
    assert FP_KEY.match(created["api_key"]), created["api_key"]
    assert isinstance(created["create_time"], int)
    assert (created["provider_id"], created["model_id"]) == (routed.provider_id, routed.model)
    assert created["key_hint"] and created["api_key"] not in created["key_hint"]
    assert {"create_time", "provider_id", "model_id", "base_url", "api_key", "key_hint"} <= set(created)

    listed = api.get("/api/adapters")
    assert listed.status_code == 200
    assert created["api_key"] not in listed.text
    [entry] = listed.json()
    assert "api_key" not in entry
    assert entry == {k: v for k, v in created.items() if k != "api_key"}

    second = api.create_adapter(routed.provider_id, "mock-large")
    assert second["api_key"] != created["api_key"]
    assert len(api.get("/api/adapters").json()) == 2

    assert chat(routed.gw, created["api_key"]).status_code == 200
    r = api.delete_adapter(created["create_time"])
    assert r.status_code == 204, r.text
    assert_mgmt_error(api.delete_adapter(created["create_time"]), 404)
    assert [a["model_id"] for a in api.get("/api/adapters").json()] == ["mock-large"]

    gone = chat(routed.gw, created["api_key"])
    assert gone.status_code == 401, gone.text
    assert chat(routed.gw, second["api_key"]).status_code == 200
    assert [r.json["model"] for r in routed.mock.requests] == ["mock-small", "mock-large"]


def test_deleted_adapter_key_fails_in_the_sdk(routed: Routed) -> None:
    client = openai.OpenAI(base_url=routed.gw.v1, api_key=routed.adapter_key, max_retries=0)
    client.chat.completions.create(model="m", messages=[])
    assert routed.gw.api.delete_adapter(routed.adapter["create_time"]).status_code == 204
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=[])


def test_adapter_for_unknown_provider_is_rejected(gateway: GatewayProcess) -> None:
    r = gateway.api.post("/api/adapters", json={"provider_id": "nope", "model_id": "m"})
    assert r.status_code in (400, 404, 422), r.text
    assert_mgmt_error(r, r.status_code)
    assert gateway.api.get("/api/adapters").json() == []


def test_adapter_base_url_overrides_provider_url(
    tests_need_keychain: None, gateway: GatewayProcess, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    # The override stays on the provider's host: the requests carry that provider's key.
    wrong_path = mock_upstream.base_url.replace("/v1", "/nowhere/v1")
    gateway.api.create_provider("p", wrong_path, api_key=provider_key)
    elsewhere = gateway.api.post(
        "/api/adapters",
        json={"provider_id": "p", "model_id": "mock-small", "base_url": f"http://127.0.0.1:{closed_port()}/v1"},
    )
    assert elsewhere.status_code == 400 and "host of provider" in elsewhere.text, elsewhere.text
    adapter = gateway.api.create_adapter("p", "mock-small", base_url=mock_upstream.base_url)
    assert adapter["base_url"] == mock_upstream.base_url
    r = chat(gateway, adapter["api_key"])
    assert r.status_code == 200, r.text
    assert mock_upstream.last().header("Authorization") == f"Bearer {provider_key}"


def test_deleting_provider_stops_its_adapters(routed: Routed) -> None:
    assert routed.gw.api.request("DELETE", f"/api/providers/{routed.provider_id}").status_code == 204
    r = chat(routed.gw, routed.adapter_key)
    assert 400 <= r.status_code < 600 and r.status_code != 200
    assert routed.mock.requests == []


# -- settings and lifecycle ------------------------------------------------------------------------


def test_settings_persist_across_restart(start_gateway: GatewayFactory) -> None:
    gw = start_gateway()
    assert gw.api.get("/api/settings").json()["usage_enabled"] is True
    assert gw.api.set_usage_enabled(False)["usage_enabled"] is False
    assert gw.api.get("/api/status").json()["usage_enabled"] is False
    assert gw.stop() == 0
    again = start_gateway(data_dir=gw.data_dir)
    assert again.api.get("/api/settings").json()["usage_enabled"] is False
    bad = again.api.put("/api/settings", json={"usage_enabled": "yes"})
    assert 400 <= bad.status_code < 500


def test_sigterm_exits_zero_and_keeps_usage(
    tests_need_keychain: None, start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    token = new_token("fpm-test-")
    gw = start_gateway(token=token)
    key = route(gw, mock_upstream, provider_key).adapter_key
    assert chat(gw, key).status_code == 200
    # Stop at once: the usage row may still be in the writer's batch; shutdown must flush it.
    assert gw.stop(signal.SIGTERM) == 0
    again = start_gateway(token=token, data_dir=gw.data_dir)
    rows = again.api.usage_recent()
    assert len(rows) == 1 and rows[0]["input_tokens"] == m.PROMPT_TOKENS, rows


def test_sigint_exits_zero(gateway: GatewayProcess) -> None:
    assert gateway.stop(signal.SIGINT) == 0


def test_busy_port_is_a_clear_start_error(gateway: GatewayProcess, gateway_start_failure: Any) -> None:
    failure = gateway_start_failure(["--port", str(gateway.port)])
    assert failure.returncode == 1, failure
    assert str(gateway.port) in failure.stderr and "use" in failure.stderr.lower(), failure.stderr
    assert "listening" not in failure.stdout


def test_newer_database_is_refused_with_clear_message(
    start_gateway: GatewayFactory, gateway_start_failure: Any
) -> None:
    gw = start_gateway()
    assert gw.stop() == 0
    db = sqlite3.connect(gw.db_path)
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        assert version >= 1, "the gateway should number its schema"
        db.execute(f"PRAGMA user_version = {version + 100}")
        db.commit()
    finally:
        db.close()
    failure = gateway_start_failure(["--data-dir", str(gw.data_dir)])
    assert failure.returncode == 1, failure
    assert "listening" not in failure.stdout
    message = failure.stderr.lower()
    assert "newer" in message or "version" in message, failure.stderr


def test_version_flag() -> None:
    done = subprocess.run([str(gateway_binary()), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert re.fullmatch(r"flexiproxy \d+\.\d+\.\d+\S*\n", done.stdout), done.stdout


def test_usage_flag_off_overrides_stored_setting(
    tests_need_keychain: None, start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, provider_key: str
) -> None:
    gw = start_gateway(["--usage", "off"])
    assert gw.api.get("/api/settings").json()["usage_enabled"] is False
    routed = route(gw, mock_upstream, provider_key)
    assert chat(gw, routed.adapter_key).status_code == 200
    # Switched on at run time, the next request is recorded and the earlier one is not.
    assert gw.api.set_usage_enabled(True)["usage_enabled"] is True
    later = route(gw, mock_upstream, provider_key, provider_id="later")
    assert chat(gw, later.adapter_key).status_code == 200
    gw.api.wait_usage(lambda row: row["provider_id"] == "later")
    assert [row["provider_id"] for row in gw.api.usage_recent()] == ["later"]
