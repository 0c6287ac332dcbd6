"""Secrets stay secret: keys live in the real OS keychain and nowhere else.

The leak test drives the gateway through success and failure paths with debug logging, then
reads every byte the gateway wrote (the SQLite file, its WAL, anything else in its data folder
and scratch HOME, its logs) and looks for the provider key, the management token and the
adapter key. The other tests cover what happens without a keychain: a strict
``--secrets keychain`` refuses to start, ``--secrets env`` works with ``env:NAME`` references
and refuses raw keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import mock_openai as m
import openai
import pytest
from conftest import GatewayFactory, GatewayProcess, new_token, route
from test_openai_sdk import closed_port


def keychain_secrets() -> list[str]:
    """The secrets of every item `keyring` created in the session's Secret Service."""
    tool = shutil.which("secret-tool")
    if tool is None:
        pytest.fail("secret-tool (apt: libsecret-tools) is needed to look inside the keychain")
    out = subprocess.run(
        [tool, "search", "--all", "--unlock", "application", "rust-keyring"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return [line.split(" = ", 1)[1] for line in out.stdout.splitlines() if line.startswith("secret = ")]


def files_under(*roots: Path) -> dict[Path, bytes]:
    found: dict[Path, bytes] = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                found[path] = path.read_bytes()
    return found


def assert_absent(secrets_by_name: dict[str, str], blobs: dict[str, bytes]) -> None:
    leaks = []
    for secret_name, value in secrets_by_name.items():
        # The whole value and its random tail (a leak may drop the recognisable prefix).
        needles = {value.encode(), value[-32:].encode()}
        for blob_name, blob in blobs.items():
            for needle in needles:
                if needle in blob:
                    at = blob.find(needle)
                    leaks.append(
                        f"{secret_name} found in {blob_name} near: {blob[max(0, at - 80) : at + 40]!r}"
                    )
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("log_level", ["debug", "trace"])
def test_no_secret_leaks(
    tests_need_keychain: None, start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, log_level: str
) -> None:
    provider_key = new_token("sk-upstream-")
    down_key = new_token("sk-downkey-")
    stranger_key = "fp-" + os.urandom(32).hex()  # a wrong key a user might paste
    gw = start_gateway(["--secrets", "keychain"], log_level=log_level)
    routed = route(gw, mock_upstream, provider_key, provider_id="leakcheck-provider")
    client = openai.OpenAI(base_url=gw.v1, api_key=routed.adapter_key, max_retries=0, timeout=30)
    ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    # Successes.
    client.chat.completions.create(**ask)
    list(client.chat.completions.create(**ask, stream=True))
    client.embeddings.create(model="m", input="x")
    client.models.list()
    # 401: a wrong client key, and the management API with wrong and adapter keys.
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.v1, api_key=stranger_key, max_retries=0).chat.completions.create(**ask)
    assert (
        httpx.get(
            f"{gw.url}/api/providers", headers={"Authorization": f"Bearer {routed.adapter_key}"}
        ).status_code
        == 401
    )
    assert (
        httpx.get(f"{gw.url}/api/providers", headers={"Authorization": f"Bearer {stranger_key}"}).status_code
        == 401
    )
    # 502: a provider that is down, with its own key in the keychain.
    gw.api.create_provider("down", f"http://127.0.0.1:{closed_port()}/v1", api_key=down_key)
    down_adapter = gw.api.create_adapter("down", "m")["api_key"]
    with pytest.raises(openai.InternalServerError):
        openai.OpenAI(base_url=gw.v1, api_key=down_adapter, max_retries=0).chat.completions.create(**ask)
    # Upstream errors and a cut-short stream.
    fail_key = routed.add_adapter("fail-500")
    with pytest.raises(openai.InternalServerError):
        openai.OpenAI(base_url=gw.v1, api_key=fail_key, max_retries=0).chat.completions.create(**ask)
    hang_key = routed.add_adapter("hang-stream")
    stream = openai.OpenAI(base_url=gw.v1, api_key=hang_key, max_retries=0).chat.completions.create(
        **ask, stream=True
    )
    next(iter(stream))
    stream.close()
    # 400: bad JSON.
    assert (
        httpx.post(
            f"{gw.v1}/chat/completions",
            content=b"{not json",
            headers={"Authorization": f"Bearer {routed.adapter_key}"},
        ).status_code
        == 400
    )

    # The API shows hints only.
    providers = gw.api.get("/api/providers")
    assert providers.status_code == 200
    by_id = {p["id"]: p for p in providers.json()}
    assert by_id["leakcheck-provider"]["key_hint"].startswith("sk-u")
    assert by_id["leakcheck-provider"]["key_source"] == "keychain"
    api_texts = {
        "GET /api/providers": providers.text,
        "GET /api/adapters": gw.api.get("/api/adapters").text,
        "GET /api/status": gw.api.get("/api/status").text,
        "GET /api/usage/recent": gw.api.get("/api/usage/recent").text,
    }

    # The keys really are in the OS keychain (not in a silent in-memory stand-in).
    in_keychain = keychain_secrets()
    assert provider_key in in_keychain and down_key in in_keychain

    # chat, stream, embeddings, 502, 500 and the cut-short stream (models list and 4xx are not usage)
    gw.api.wait_usage(count=6)
    # While running: the database and its write-ahead log as they are now.
    live = files_under(gw.data_dir)
    names = {p.name for p in live}
    assert "flexiproxy.db" in names, names
    assert "flexiproxy.db-wal" in names, f"expected a WAL file next to the database while running: {names}"
    assert b"leakcheck-provider" in b"".join(live.values()), "the database does not hold what we registered"
    exit_code = gw.stop()
    after = files_under(gw.data_dir, gw.home)

    secrets = {
        "provider key": provider_key,
        "second provider key": down_key,
        "management token": gw.token,
        "adapter key": routed.adapter_key,
        "500 adapter key": fail_key,
        "502 adapter key": down_adapter,
        "wrong client key": stranger_key,
    }
    blobs: dict[str, bytes] = {f"{p} (while running)": b for p, b in live.items()}
    blobs.update({f"{p} (after exit)": b for p, b in after.items()})
    logs = gw.logs()
    assert "DEBUG" in logs, "debug logs were not captured, so they prove nothing"
    blobs["gateway stderr"] = logs.encode()
    blobs.update({k: v.encode() for k, v in api_texts.items()})
    assert_absent(secrets, blobs)
    assert exit_code == 0


def test_deleting_provider_removes_key_from_keychain(
    tests_need_keychain: None, gateway: GatewayProcess, mock_upstream: m.MockOpenAI
) -> None:
    key = new_token("sk-deleteme-")
    gateway.api.create_provider("tmp", mock_upstream.base_url, api_key=key)
    assert key in keychain_secrets()
    assert gateway.api.request("DELETE", "/api/providers/tmp").status_code == 204
    assert key not in keychain_secrets()


def no_dbus_env(tmp: Path) -> dict[str, str | None]:
    empty_runtime = tmp / "no-runtime"
    empty_runtime.mkdir(exist_ok=True)
    # Without these, zbus would find the default session bus socket or autolaunch one.
    return {
        "DBUS_SESSION_BUS_ADDRESS": None,
        "XDG_RUNTIME_DIR": str(empty_runtime),
        "DISPLAY": None,
        "WAYLAND_DISPLAY": None,
    }


def test_strict_keychain_without_dbus_refuses_to_start(gateway_start_failure, tmp_path: Path) -> None:
    started = time.monotonic()
    failure = gateway_start_failure(["--secrets", "keychain"], env=no_dbus_env(tmp_path))
    assert failure.returncode == 1, failure
    assert "listening" not in failure.stdout
    assert "keychain" in failure.stderr.lower(), failure.stderr
    assert time.monotonic() - started < 20, "refusing to start should not hang"


def test_auto_mode_without_keychain_starts_with_a_warning(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = start_gateway(env=no_dbus_env(tmp_path))
    secrets_info = gw.api.get("/api/status").json()["secrets"]
    assert secrets_info["writable"] is False
    assert secrets_info["warning"] and "env:" in secrets_info["warning"], secrets_info
    rejected = gw.api.post(
        "/api/providers/p", json={"url": "http://127.0.0.1:9/v1", "api_key": "sk-" + "x" * 30}
    )
    assert 400 <= rejected.status_code < 500 and "env:" in rejected.json()["error"]["message"], rejected.text


def test_env_mode_uses_env_references_and_rejects_raw_keys(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, tmp_path: Path
) -> None:
    secret = new_token("sk-env-only-")
    raw = new_token("sk-raw-attempt-")
    gw = start_gateway(["--secrets", "env"], env={**no_dbus_env(tmp_path), "FLEXIPROXY_E2E_ENV_KEY": secret})
    status = gw.api.get("/api/status").json()
    assert status["secrets"]["writable"] is False

    rejected = gw.api.post("/api/providers/raw", json={"url": mock_upstream.base_url, "api_key": raw})
    assert 400 <= rejected.status_code < 500, rejected.text
    message = rejected.json()["error"]["message"]
    assert "env:" in message, f"the message should tell to use env:NAME: {message!r}"
    assert raw not in rejected.text
    assert gw.api.get("/api/providers").json() == []

    provider = gw.api.create_provider("envp", mock_upstream.base_url, api_key="env:FLEXIPROXY_E2E_ENV_KEY")
    assert provider["key_source"] == "env:FLEXIPROXY_E2E_ENV_KEY" and provider["has_api_key"] is True
    key = gw.api.create_adapter("envp", "mock-small")["api_key"]
    resp = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0).chat.completions.create(
        model="m", messages=[]
    )
    assert resp.choices[0].message.content == m.REPLY_TEXT
    assert mock_upstream.last().header("Authorization") == f"Bearer {secret}"
    gw.stop()
    assert raw not in gw.logs() and secret not in gw.logs()
