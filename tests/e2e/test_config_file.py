"""The declarative config file (``--config``) of a headless gateway, end to end (issue 4).

The gateway runs with ``--secrets env`` and a TOML file whose provider keys and adapter key are
``env:NAME`` references to variables in its environment; the upstreams are
:class:`FaultUpstream` servers. The tests check what a user of a headless install relies on:
the config's adapter works, an edit is picked up without a restart and without cutting a
request in flight, a bad edit is refused with its reason while the running config keeps
serving, ``--check-config`` tells good from bad, and config-defined entities are read-only
through the API.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import FaultUpstreams, GatewayFactory, GatewayProcess, gateway_binary, scratch_env
from fault_upstream import FaultUpstream, answer_text

ADAPTER_VAR = "FP_TEST_KEY"
RELOAD_S = 8.0  # "within a few seconds"


@dataclass
class Setup:
    gw: GatewayProcess
    path: Path
    alpha: FaultUpstream
    beta: FaultUpstream
    keys: dict[str, str]  # env var -> raw key
    adapter_key: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.v1, api_key=self.adapter_key, max_retries=0, timeout=30)

    def ask(self, model: str) -> str:
        out = self.client().chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        return out.choices[0].message.content or ""

    def status_config(self) -> dict[str, Any]:
        r = self.gw.api.get("/api/status")
        assert r.status_code == 200, r.text
        config = r.json().get("config")
        assert isinstance(config, dict), f"/api/status has no config section: {r.json()}"
        return config

    def write(self, text: str) -> None:
        write_config(self.path, text)

    def wait_config(self, predicate: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + RELOAD_S
        while True:
            config = self.status_config()
            if predicate(config):
                return config
            assert time.monotonic() < deadline, f"{what} not seen within {RELOAD_S}s: {config}"
            time.sleep(0.1)

    def credential_ids(self, provider: str) -> list[str]:
        r = self.gw.api.get(f"/api/providers/{provider}")
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["credentials"]]


def write_config(path: Path, text: str) -> None:
    """Writes the file in place, as an editor would, and makes sure its mtime moves forward even
    on a coarse-grained file system."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns <= old:
        os.utime(path, ns=(old + 1_000_000, old + 1_000_000))


def config_text(alpha: FaultUpstream, beta: FaultUpstream, *, second_key: bool = False, route_to: str = "alpha/cfg-model", extra: str = "") -> str:
    k2 = (
        """
  [[providers.credentials]]
  id = "k2"
  label = "second"
  key = "env:FP_CFG_ALPHA_K2"
"""
        if second_key
        else ""
    )
    return f"""# flexiproxy config for the end-to-end tests
[routing]
max_retries = 3
max_wait_ms = 0
default_strategy = "round-robin"
usage_gap_percent = 5

[[providers]]
id = "alpha"
url = "{alpha.base_url}"
protocol = "openai_chat"
discovery = "off"
models = ["cfg-model"]
  [[providers.credentials]]
  id = "k1"
  label = "first"
  key = "env:FP_CFG_ALPHA_K1"
  max_request_day = 1000
{k2}
[[providers]]
id = "beta"
url = "{beta.base_url}"
discovery = "off"
models = ["beta-model"]
  [[providers.credentials]]
  key = "env:FP_CFG_BETA_K1"

[[routes]]
name = "cfg-route"
candidates = ["{route_to}"]

[[adapters]]
name = "e2e"
key = "env:{ADAPTER_VAR}"
{extra}"""


def config_env() -> dict[str, str]:
    return {
        "FP_CFG_ALPHA_K1": "sk-alpha-k1-" + secrets.token_hex(8),
        "FP_CFG_ALPHA_K2": "sk-alpha-k2-" + secrets.token_hex(8),
        "FP_CFG_BETA_K1": "sk-beta-k1-" + secrets.token_hex(8),
        ADAPTER_VAR: "fp-" + secrets.token_hex(32),
    }


@pytest.fixture
def setup(start_gateway: GatewayFactory, fault_upstreams: FaultUpstreams, tmp_path: Path) -> Setup:
    env = config_env()
    alpha = fault_upstreams("alpha", models=["cfg-model"], keys=[env["FP_CFG_ALPHA_K1"], env["FP_CFG_ALPHA_K2"]])
    beta = fault_upstreams("beta", models=["beta-model"], keys=[env["FP_CFG_BETA_K1"]])
    path = tmp_path / "flexiproxy.toml"
    write_config(path, config_text(alpha, beta))
    gw = start_gateway(["--secrets", "env", "--config", str(path)], env=env, log_level="info")
    return Setup(gw, path, alpha, beta, env, env[ADAPTER_VAR])


def test_the_configs_adapter_serves_requests(setup: Setup) -> None:
    k1 = setup.keys["FP_CFG_ALPHA_K1"]
    assert setup.ask("cfg-model") == answer_text("alpha", k1)
    assert setup.ask("cfg-route") == answer_text("alpha", k1)
    assert setup.ask("beta-model") == answer_text("beta", setup.keys["FP_CFG_BETA_K1"])
    assert setup.ask("alpha/cfg-model") == answer_text("alpha", k1)
    config = setup.status_config()
    assert config["path"] == str(setup.path) and config["error"] is None, config
    assert isinstance(config["loaded_at_ms"], int) and config["loaded_at_ms"] > 0
    r = setup.gw.api.get("/api/providers/alpha")
    [cred] = r.json()["credentials"]
    assert (cred["id"], cred["key_id"], cred["label"], cred["source"]) == ("k1", "alpha/k1", "first", "config")
    assert cred["limits"]["max_request_day"] == 1000
    # Credentials without an id are named by position.
    assert setup.credential_ids("beta") == ["k1"]
    r = setup.gw.api.get("/api/settings")
    assert r.json()["routing"]["default_strategy"] == "round-robin"
    for raw in setup.keys.values():
        assert raw not in r.text and raw not in setup.gw.api.get("/api/providers").text


def test_an_edit_is_picked_up_without_dropping_a_request_in_flight(setup: Setup) -> None:
    k1, k2 = setup.keys["FP_CFG_ALPHA_K1"], setup.keys["FP_CFG_ALPHA_K2"]
    loaded_at = setup.status_config()["loaded_at_ms"]
    # A streamed answer that takes ~8 s is under way while the file changes.
    setup.alpha.fail(k1, "slow_stream", times=1, delay=8)
    streamed: dict[str, Any] = {}

    def stream() -> None:
        try:
            chunks = setup.client().chat.completions.create(
                model="cfg-route", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            streamed["text"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except Exception as e:  # noqa: BLE001 - reported below
            streamed["error"] = e

    worker = threading.Thread(target=stream)
    worker.start()
    setup.alpha.wait_for(1, timeout=10)

    setup.write(config_text(setup.alpha, setup.beta, second_key=True, route_to="beta/beta-model"))
    setup.wait_config(lambda c: c["loaded_at_ms"] > loaded_at and c["error"] is None, "the reload")
    assert setup.credential_ids("alpha") == ["k1", "k2"]
    assert worker.is_alive(), "the slow stream ended before the reload: the test proves nothing"
    # The route now goes to beta; alpha's new key takes its share of round robin.
    assert setup.ask("cfg-route") == answer_text("beta", setup.keys["FP_CFG_BETA_K1"])
    answers = {setup.ask("cfg-model") for _ in range(4)}
    assert answers == {answer_text("alpha", k1), answer_text("alpha", k2)}, answers

    worker.join(timeout=20)
    assert not worker.is_alive()
    assert "error" not in streamed, f"the request in flight was dropped: {streamed.get('error')!r}"
    assert streamed["text"] == answer_text("alpha", k1)


@pytest.mark.parametrize("bad", ["syntax", "unknown_provider"])
def test_a_bad_edit_is_rejected_and_the_running_config_kept(setup: Setup, bad: str) -> None:
    good = config_text(setup.alpha, setup.beta)
    if bad == "syntax":
        text = good + '\n[[providers]\nid = "broken'
        reason = None
    else:
        text = config_text(setup.alpha, setup.beta, route_to="nowhere/some-model")
        reason = "nowhere"
    setup.write(text)
    config = setup.wait_config(lambda c: c["error"], "the error")
    assert isinstance(config["error"], str) and len(config["error"]) > 10, config
    if reason:
        assert reason in config["error"], config
    # Still serving on the old config, route included.
    k1 = setup.keys["FP_CFG_ALPHA_K1"]
    assert setup.ask("cfg-route") == answer_text("alpha", k1)
    assert setup.ask("cfg-model") == answer_text("alpha", k1)
    logs = setup.gw.logs()
    assert "config" in logs.lower()
    # Fixing the file clears the error and applies the fix.
    setup.write(config_text(setup.alpha, setup.beta, second_key=True))
    setup.wait_config(lambda c: c["error"] is None, "the error cleared")
    assert setup.credential_ids("alpha") == ["k1", "k2"]


def test_config_entities_are_read_only_through_the_api(setup: Setup) -> None:
    api = setup.gw.api
    attempts = [
        api.put("/api/providers/alpha", json={"url": setup.alpha.base_url}),
        api.delete("/api/providers/alpha"),
        api.post("/api/providers/alpha/credentials", json={"id": "k9", "api_key": "env:FP_CFG_ALPHA_K2"}),
        api.patch("/api/providers/alpha/credentials/k1", json={"enabled": False}),
        api.delete("/api/providers/alpha/credentials/k1"),
        api.put("/api/routes/cfg-route", json={"candidates": ["beta/beta-model"]}),
        api.delete("/api/routes/cfg-route"),
    ]
    for r in attempts:
        assert r.status_code == 409, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
        message = r.json()["error"]["message"].lower()
        assert "config" in message, message
    assert setup.ask("cfg-route") == answer_text("alpha", setup.keys["FP_CFG_ALPHA_K1"])
    # Providers made through the API live beside the file's and stay writable.
    r = api.put("/api/providers/extra", json={"url": setup.beta.base_url, "discovery": "off", "models": ["x"]})
    if r.status_code == 405:
        r = api.post("/api/providers/extra", json={"url": setup.beta.base_url})
    assert r.status_code in (200, 201), r.text
    assert api.delete("/api/providers/extra").status_code in (200, 204)


def test_json_config_is_read_too(start_gateway: GatewayFactory, fault_upstreams: FaultUpstreams, tmp_path: Path) -> None:
    env = config_env()
    alpha = fault_upstreams("alpha", models=["cfg-model"])
    path = tmp_path / "flexiproxy.json"
    path.write_text(
        json.dumps(
            {
                "providers": [
                    {
                        "id": "alpha",
                        "url": alpha.base_url,
                        "discovery": "off",
                        "models": ["cfg-model"],
                        "credentials": [{"id": "k1", "key": "env:FP_CFG_ALPHA_K1"}],
                    }
                ],
                "adapters": [{"name": "e2e", "key": f"env:{ADAPTER_VAR}", "provider": "alpha", "model": "cfg-model"}],
            }
        )
    )
    gw = start_gateway(["--secrets", "env", "--config", str(path)], env=env, log_level="info")
    client = openai.OpenAI(base_url=gw.v1, api_key=env[ADAPTER_VAR], max_retries=0, timeout=30)
    out = client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == answer_text("alpha", env["FP_CFG_ALPHA_K1"])
    assert alpha.generations[0].model == "cfg-model"


def check_config(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "check-home"
    env = scratch_env(home, config_env())
    return subprocess.run(
        [str(gateway_binary()), "--check-config", "--config", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_check_config(tmp_path: Path) -> None:
    if not gateway_binary().exists():
        pytest.fail(f"gateway binary {gateway_binary()} not found: build it with `cargo build -p flexiproxy`")
    with FaultUpstream("alpha") as alpha, FaultUpstream("beta") as beta:
        path = tmp_path / "flexiproxy.toml"
        path.write_text(config_text(alpha, beta))
        done = check_config(path, tmp_path)
        assert done.returncode == 0, done
        assert "config OK" in done.stdout, done

        path.write_text(config_text(alpha, beta, route_to="nowhere/some-model"))
        done = check_config(path, tmp_path)
        assert done.returncode == 1, done
        assert "nowhere" in done.stdout + done.stderr, done
        assert "config OK" not in done.stdout

        path.write_text('[[providers]\nid = "broken')
        done = check_config(path, tmp_path)
        assert done.returncode == 1, done
        assert (done.stdout + done.stderr).strip(), "a refused config must say why"
    # Checking the file starts nothing: no upstream saw a request.
    assert alpha.requests == [] and beta.requests == []
