"""A stolen management token, and other tools' config files, against the real binary.

Whoever holds the management token controls the gateway's configuration; these tests check that
this does not make them the owner of every secret the gateway can reach. Using the management
API alone, each test tries to get a secret out and must fail with the documented answer:

* a provider with stored keys (keychain and ``env:``) moved to an "attacker" server on another
  port: the keys are cleared (``keys_cleared``), and the test call, a client request and a model
  refresh reach the attacker with no key; nothing in the API's answers holds a key;
* ``env:HOME``, ``env:PATH``, ``env:SOME_SECRET`` as a key: 400 saying how to allow a name
  (``--allow-env``, ``allowed_env`` in the config file); ``FLEXIPROXY_*`` and allowed names work;
* an account's token URL (and API roots, callback host) at plain ``http://`` off this machine:
  400 naming the field; an https endpoint of another server signs the kind's accounts out.

And the tool set-up: a second Apply, a user edit in between, Undo: the edit survives and Undo
goes back one Apply at a time (or refuses with 409 naming the backup when the user changed
FlexiProxy's own keys); a file that receives the adapter key is 0600; a symlink to nothing at a
tool's config path is refused (409) and left alone, a symlink to a file is written through.

The gateway runs with a scratch HOME (the ``start_gateway`` fixture), so the tools' files live
under it; the upstream and the attacker are :class:`mock_openai.MockOpenAI` servers on loopback
that record every header.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mock_openai as m
import pytest
from conftest import GatewayFactory, GatewayProcess, new_token

ENV_KEY_VAR = "FLEXIPROXY_E2E_HOSTILE_KEY"


@pytest.fixture
def attacker() -> Iterator[m.MockOpenAI]:
    """A server of the attacker's: answers like a provider and records what it is sent."""
    with m.MockOpenAI() as server:
        yield server


def headers_seen(server: m.MockOpenAI) -> list[str]:
    return [f"{name}: {value}" for rec in server.requests for name, value in rec.headers]


def chat(gw: GatewayProcess, key: str) -> httpx.Response:
    return httpx.post(
        f"{gw.v1}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


# -- providers: a move to another host clears the keys -------------------------------------------


def test_a_provider_moved_to_the_attackers_host_sends_it_no_key(
    tests_need_keychain: None,
    start_gateway: GatewayFactory,
    mock_upstream: m.MockOpenAI,
    attacker: m.MockOpenAI,
) -> None:
    stored_key = new_token("sk-stored-")
    env_key = new_token("sk-env-")
    gw = start_gateway(env={ENV_KEY_VAR: env_key})
    api = gw.api
    api.create_provider("p", mock_upstream.base_url, api_key=stored_key)
    r = api.post("/api/providers/p/credentials", json={"id": "k2", "api_key": f"env:{ENV_KEY_VAR}"})
    assert r.status_code == 201, r.text
    adapter_key = api.create_adapter("p", "mock-small")["api_key"]
    assert chat(gw, adapter_key).status_code == 200
    assert mock_upstream.last().header("Authorization") in (f"Bearer {stored_key}", f"Bearer {env_key}")

    # The attack: the same provider, the attacker's address, no key; then every way to make
    # the gateway call the provider.
    r = api.put("/api/providers/p", json={"url": attacker.base_url})
    assert r.status_code == 200, r.text
    moved = r.json()
    for credential in ("default", "k2"):
        r = api.post("/api/providers/p/test", json={"model": "mock-small", "credential": credential})
        assert r.status_code == 200, r.text
    chat(gw, adapter_key)
    api.post("/api/providers/p/discover")
    assert attacker.requests, "the attacker was called"
    seen = "\n".join(headers_seen(attacker))
    assert stored_key not in seen and env_key not in seen, seen

    # The answer to the move said so.
    assert moved["keys_cleared"] == ["p/default", "p/k2"], moved
    assert "cleared" in moved["notice"], moved
    assert moved["has_api_key"] is False
    assert all(c["key_source"] is None and c["key_hint"] is None for c in moved["credentials"]), moved

    # And nothing the API answers holds a key.
    answers = [
        api.get(path).text
        for path in (
            "/api/providers",
            "/api/providers/p",
            "/api/providers/p/credentials",
            "/api/adapters",
            "/api/accounts",
            "/api/accounts/endpoints",
            "/api/settings",
            "/api/status",
            "/api/usage/recent",
            "/api/usage/export.csv",
            "/api/tools",
        )
    ]
    for text in answers:
        assert stored_key not in text and env_key not in text

    # Moving back does not bring the old keys back; a key given with a move is the new host's.
    new_key = new_token("sk-new-host-")
    mock_upstream.clear()
    r = api.put("/api/providers/p", json={"url": mock_upstream.base_url, "api_key": new_key})
    assert r.status_code == 200 and r.json()["keys_cleared"] == [], r.text
    r = api.post("/api/providers/p/test", json={"model": "mock-small", "credential": "default"})
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    assert mock_upstream.last().header("Authorization") == f"Bearer {new_key}"
    seen = "\n".join(headers_seen(mock_upstream))
    assert stored_key not in seen and env_key not in seen


def test_an_adapter_cannot_send_its_providers_key_elsewhere(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, attacker: m.MockOpenAI
) -> None:
    env_key = new_token("sk-env-")
    gw = start_gateway(["--secrets", "env"], env={ENV_KEY_VAR: env_key})
    gw.api.create_provider("p", mock_upstream.base_url, api_key=f"env:{ENV_KEY_VAR}")
    r = gw.api.post(
        "/api/adapters", json={"provider_id": "p", "model_id": "mock-small", "base_url": attacker.base_url}
    )
    assert r.status_code == 400, r.text
    assert "host of provider `p`" in r.json()["error"]["message"], r.text
    assert attacker.requests == []


# -- env: references -----------------------------------------------------------------------------


def test_env_references_to_other_variables_are_refused(
    start_gateway: GatewayFactory, attacker: m.MockOpenAI
) -> None:
    secret = new_token("sk-some-secret-")
    gw = start_gateway(["--secrets", "env"], env={"SOME_SECRET": secret, ENV_KEY_VAR: new_token("sk-prefixed-")})
    api = gw.api
    for name in ("HOME", "PATH", "SOME_SECRET"):
        r = api.put("/api/providers/evil", json={"url": attacker.base_url, "api_key": f"env:{name}"})
        assert r.status_code == 400, f"env:{name}: {r.status_code} {r.text}"
        message = r.json()["error"]["message"]
        assert f"--allow-env {name}" in message and "allowed_env" in message, message
        for value in (secret, str(gw.home), os.environ.get("PATH", "/usr/bin")):
            assert value not in r.text, r.text
    assert api.get("/api/providers/evil").status_code == 404, "nothing was saved"
    # Not through a credential of an existing provider either.
    api.create_provider("p", attacker.base_url, api_key=f"env:{ENV_KEY_VAR}")
    r = api.post("/api/providers/p/credentials", json={"id": "x", "api_key": "env:SOME_SECRET"})
    assert r.status_code == 400, r.text
    r = api.patch("/api/providers/p/credentials/default", json={"api_key": "env:SOME_SECRET"})
    assert r.status_code == 400, r.text
    api.post("/api/providers/p/test", json={"model": "mock-small"})
    assert secret not in "\n".join(headers_seen(attacker))


def test_env_names_the_user_allowed_are_usable(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, tmp_path: Path
) -> None:
    """What the user allowed: --allow-env on the command line, allowed_env in the config file
    (the FLEXIPROXY_ prefix is used by the other tests of this file)."""
    allowed = new_token("sk-allowed-")
    from_file = new_token("sk-from-file-")
    config = tmp_path / "allow.toml"
    config.write_text('allowed_env = ["E2E_FROM_CONFIG_FILE"]\n')
    gw = start_gateway(
        ["--secrets", "env", "--allow-env", "E2E_FROM_COMMAND_LINE", "--config", str(config)],
        env={"E2E_FROM_COMMAND_LINE": allowed, "E2E_FROM_CONFIG_FILE": from_file},
    )
    api = gw.api
    for name, value in (("E2E_FROM_COMMAND_LINE", allowed), ("E2E_FROM_CONFIG_FILE", from_file)):
        view = api.create_provider("ok", mock_upstream.base_url, api_key=f"env:{name}")
        assert view["key_source"] == f"env:{name}" and view["has_api_key"] is True, view
        key = api.create_adapter("ok", "mock-small")["api_key"]
        assert chat(gw, key).status_code == 200
        assert mock_upstream.last().header("Authorization") == f"Bearer {value}"


# -- subscription endpoints ----------------------------------------------------------------------


def test_account_endpoints_must_be_https_off_this_machine(gateway: GatewayProcess) -> None:
    api = gateway.api
    current = api.get("/api/accounts/endpoints").json()

    def login(kind: str, **fields: Any) -> dict[str, Any]:
        return {"login": {kind: {**current["login"][kind], **fields}}}

    def roots(**fields: Any) -> dict[str, Any]:
        return {"api": {**current["api"], **fields}}

    refused = [
        (login("codex", token_url="http://203.0.113.7/oauth/token"), "login.codex.token_url"),
        (login("qwen", device_url="http://203.0.113.7/device"), "login.qwen.device_url"),
        (login("claude", authorize_url="http://evil.example/authorize"), "login.claude.authorize_url"),
        (login("claude", redirect_host="evil.example"), "login.claude.redirect_host"),
        (roots(github_api="http://203.0.113.7"), "api.github_api"),
        (roots(claude="http://evil.example"), "api.claude"),
    ]
    for body, field in refused:
        r = api.put("/api/accounts/endpoints", json=body)
        assert r.status_code == 400, f"{field}: {r.status_code} {r.text}"
        assert field in r.json()["error"]["message"], r.text
    assert api.get("/api/accounts/endpoints").json() == current, "nothing refused was saved"

    # Loopback http (local servers, tests) and https anywhere are fine.
    for body in (login("codex", token_url="http://127.0.0.1:9/token"), roots(claude="https://proxy.example")):
        r = api.put("/api/accounts/endpoints", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["signed_out"] == [], r.text


# -- tool set-up: a second Apply, Undo, permissions, links ---------------------------------------


class Tools:
    """A gateway with a provider and two adapters (two keys to apply in turn)."""

    def __init__(self, start_gateway: GatewayFactory, upstream: m.MockOpenAI):
        self.gw = start_gateway(["--secrets", "env"], env={ENV_KEY_VAR: new_token("sk-up-")})
        self.gw.api.create_provider("p", upstream.base_url, api_key=f"env:{ENV_KEY_VAR}")
        self.adapters = [self.gw.api.create_adapter("p", "mock-small") for _ in range(2)]
        self.home: Path = self.gw.home

    def apply(self, tool: str, which: int = 0) -> httpx.Response:
        adapter = self.adapters[which]
        return self.gw.api.post(
            f"/api/tools/{tool}/apply", json={"adapter": adapter["create_time"], "key": adapter["api_key"]}
        )

    def undo(self, tool: str) -> httpx.Response:
        return self.gw.api.post(f"/api/tools/{tool}/undo")

    def key(self, which: int) -> str:
        return self.adapters[which]["api_key"]

    def write(self, relative: str, text: str, mode: int = 0o644) -> Path:
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path


USER_SETTINGS = '{\n  "permissions": {"allow": ["Bash(ls:*)"]},\n  "env": {"FOO": "1"}\n}\n'


def test_undo_after_a_second_apply_keeps_the_users_edit(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI
) -> None:
    t = Tools(start_gateway, mock_upstream)
    settings = t.write(".claude/settings.json", USER_SETTINGS)
    assert t.apply("claude-code", 0).status_code == 200
    # The user edits the file between the two applies.
    doc = json.loads(settings.read_text())
    doc["model"] = "opus"
    settings.write_text(json.dumps(doc, indent=2) + "\n")
    assert t.apply("claude-code", 1).status_code == 200
    tools = {x["id"]: x for x in t.gw.api.get("/api/tools").json()}

    r = t.undo("claude-code")
    assert r.status_code == 200, r.text
    assert settings.exists(), "undo deleted the file the user had edited"
    doc = json.loads(settings.read_text())
    assert doc["model"] == "opus", "the user's edit survives the undo"
    assert doc["env"]["ANTHROPIC_AUTH_TOKEN"] == t.key(0), "back to the first set-up"
    assert tools["claude-code"]["status"]["undo_steps"] == 2, tools["claude-code"]
    assert r.json()["remaining"] == 1, r.text

    r = t.undo("claude-code")
    assert r.status_code == 200 and r.json()["remaining"] == 0, r.text
    doc = json.loads(settings.read_text())
    assert doc == {**json.loads(USER_SETTINGS), "model": "opus"}, doc
    assert t.undo("claude-code").status_code == 404


def test_undo_refuses_over_a_changed_owned_key_and_names_the_backup(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI
) -> None:
    t = Tools(start_gateway, mock_upstream)
    settings = t.write(".claude/settings.json", USER_SETTINGS)
    r = t.apply("claude-code")
    backup = r.json()["backup_path"]
    # The user points Claude Code elsewhere by hand: undo must not put their old URL over it.
    doc = json.loads(settings.read_text())
    doc["env"]["ANTHROPIC_BASE_URL"] = "https://my-other-proxy.example"
    settings.write_text(json.dumps(doc))
    before = settings.read_bytes()
    r = t.undo("claude-code")
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert backup in message and "env.ANTHROPIC_BASE_URL" in message, message
    assert t.key(0) not in r.text
    assert settings.read_bytes() == before, "the file is left alone"


def test_files_that_receive_the_key_are_private(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI
) -> None:
    t = Tools(start_gateway, mock_upstream)
    claude = t.write(".claude/settings.json", USER_SETTINGS, mode=0o644)
    aider = t.write(".aider.conf.yml", "dark-mode: true\n", mode=0o664)
    gemini_settings = t.write(".gemini/settings.json", "{}\n", mode=0o644)
    answers = {}
    for tool in ("claude-code", "aider", "gemini-cli"):
        r = t.apply(tool)
        assert r.status_code == 200, r.text
        answers[tool] = r.json()["files"]
    gemini_env = t.home / ".gemini/.env"
    for path in (claude, aider, gemini_env):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path}: {oct(path.stat().st_mode)}"
    assert stat.S_IMODE(gemini_settings.stat().st_mode) == 0o644, "no key there: its mode stays"
    for tool, changes in answers.items():
        for change in changes:
            holds_key = not (tool == "gemini-cli" and change["path"].endswith("settings.json"))
            assert change["private"] is holds_key, change
    assert t.undo("aider").status_code == 200
    assert stat.S_IMODE(aider.stat().st_mode) == 0o664, "undo gives the old mode back"


def test_a_dangling_symlink_is_refused_and_a_linked_file_written_through(
    start_gateway: GatewayFactory, mock_upstream: m.MockOpenAI, tmp_path: Path
) -> None:
    t = Tools(start_gateway, mock_upstream)
    link = t.home / ".claude/settings.json"
    link.parent.mkdir(parents=True, exist_ok=True)
    missing = tmp_path / "dotfiles" / "claude.json"
    link.symlink_to(missing)
    r = t.apply("claude-code")
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "symbolic link" in message and str(missing) in message, message
    assert link.is_symlink() and not missing.exists(), "the link is left as it was"

    # Made real (a dotfile manager's repository): written through, still a link.
    missing.parent.mkdir(parents=True)
    missing.write_text(USER_SETTINGS)
    r = t.apply("claude-code")
    assert r.status_code == 200, r.text
    assert link.is_symlink()
    assert json.loads(missing.read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == t.key(0)
    assert stat.S_IMODE(missing.stat().st_mode) == 0o600
    assert t.undo("claude-code").status_code == 200
    assert link.is_symlink() and missing.read_text() == USER_SETTINGS
