"""Tool set-up end to end: ``/api/tools`` writes the real agents' config files, the agents then
reach the gateway with nothing else set, and undo gives the user's files back byte for byte.

The gateway runs with a scratch ``HOME`` (the ``start_gateway`` fixture gives each gateway its
own); that HOME decides where the files go, and the agents run with the same HOME and none of
their ``ANTHROPIC_*`` / ``OPENAI_*`` / ``GEMINI_*`` variables, so what reaches the gateway can only
come from the files FlexiProxy wrote. The model behind the gateway is :mod:`agent_upstream`,
answering a plain prompt with ``PLAIN_REPLY``; the test sees that answer in the agent's output
and the provider's key (not the ``fp-`` key) in the upstream's record.

Each agent's own settings file starts with the user's settings (comments, other keys), which
must survive the set-up and come back exactly after undo. Also: wrong key → 400, another
``base_url`` → 400, a copy-only tool → 400, nothing to undo → 404, a file that is not valid
JSON → 409 and left alone, ``points_elsewhere`` for a file that points at another address, and
the key never in the gateway's log or database.
"""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agent_upstream as up
import pytest
from agents import UPSTREAM_KEY_VAR, Finished, client_env, package_bin, require_node, route_to, run

AGENT_TIMEOUT_S = 150.0
MODEL = "setup-model"
PROMPT = "Say hello, please."

CLAUDE_SETTINGS = """{
  "permissions": {
    "allow": ["Bash(ls:*)"]
  },
  "env": {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0"
  }
}
"""

CODEX_CONFIG = """# My Codex settings: FlexiProxy must keep this comment.
approval_policy = "never"
sandbox_mode = "read-only"

[model_providers.elsewhere]
name = "Somewhere else"
base_url = "http://127.0.0.1:9/v1"
"""

# In the form Gemini CLI itself writes (it rewrites settings in its own layout, migrating old
# keys, when they differ), so this test can also check that undo restores the bytes exactly.
GEMINI_SETTINGS = """{
  // Mine: no telemetry, no update checks, no retries.
  "privacy": {
    "usageStatisticsEnabled": false
  },
  "telemetry": {
    "enabled": false
  },
  "general": {
    "maxAttempts": 1,
    "enableAutoUpdate": false,
    "enableAutoUpdateNotification": false
  }
}
"""


@pytest.fixture
def upstream() -> Iterator[up.AgentUpstream]:
    with up.AgentUpstream() as server:
        yield server


class Setup:
    """A gateway routed to the scripted upstream, with one adapter and its key."""

    def __init__(self, start_gateway: Any, upstream: up.AgentUpstream, protocol: str):
        self.upstream_key = "sk-upstream-" + secrets.token_hex(12)
        self.gw = start_gateway(env={UPSTREAM_KEY_VAR: self.upstream_key})
        self.key = route_to(self.gw, upstream.base_url(protocol), protocol, MODEL)
        self.adapter = next(a for a in self.gw.api.get("/api/adapters").json() if a["model_id"] == MODEL)
        self.adapter_id = self.adapter["create_time"]
        self.home: Path = self.gw.home

    def tools(self) -> dict[str, dict[str, Any]]:
        r = self.gw.api.get("/api/tools", params={"adapter": self.adapter_id})
        assert r.status_code == 200, r.text
        return {t["id"]: t for t in r.json()}

    def apply(self, tool: str, **extra: Any) -> Any:
        return self.gw.api.post(f"/api/tools/{tool}/apply", json={"adapter": self.adapter_id, "key": self.key, **extra})

    def undo(self, tool: str) -> Any:
        return self.gw.api.post(f"/api/tools/{tool}/undo")

    def write(self, relative: str, text: str) -> Path:
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def check_secret_hygiene(self) -> None:
        """The adapter key is in the tools' files only: not in the log, not in the database."""
        assert self.key not in self.gw.logs(), "the adapter key reached the gateway's log"
        for db_file in self.gw.data_dir.glob("flexiproxy.db*"):
            assert self.key.encode() not in db_file.read_bytes(), f"the adapter key is in {db_file.name}"

    def check_answer(self, result: Finished, upstream: up.AgentUpstream) -> None:
        context = f"{result.describe()}\n--- gateway log ---\n{self.gw.logs()[-4000:]}\n--- upstream saw ---\n{upstream.dump()}"
        assert not result.timed_out, f"the agent did not finish in {AGENT_TIMEOUT_S}s\n{context}"
        assert result.returncode == 0, f"the agent failed\n{context}"
        assert up.PLAIN_REPLY in result.stdout, f"the model's answer did not come through\n{context}"
        answered = [r for r in upstream.requests if r.action == "plain"]
        assert answered, f"the upstream never answered a prompt\n{context}"
        for rec in answered:
            headers = json.dumps(rec.headers)
            assert self.key not in headers, "the fp- key was forwarded upstream"
            assert self.upstream_key in headers, "the request did not come through the gateway's provider"
        usage = self.gw.api.wait_usage(lambda row: row.get("adapter") == self.adapter_id)
        assert usage, "no usage row for the adapter"


def agent_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = client_env(home, extra)
    leaked = [
        k for k in env if k.startswith(("ANTHROPIC_", "OPENAI_", "GOOGLE_", "CODEX_")) or k == "GEMINI_API_KEY"
    ]
    assert not leaked, f"the agent's environment must not point it anywhere: {leaked}"
    return env


def status(setup: Setup, tool: str) -> dict[str, Any]:
    return setup.tools()[tool]["status"]


# -- Claude Code ---------------------------------------------------------------------------------


def test_claude_code_set_up_by_file_then_undone(tmp_path: Path, start_gateway, upstream) -> None:  # type: ignore[no-untyped-def]
    require_node("@anthropic-ai/claude-code")
    setup = Setup(start_gateway, upstream, "anthropic_messages")
    settings = setup.write(".claude/settings.json", CLAUDE_SETTINGS)
    settings.chmod(0o644)
    before = settings.read_bytes()

    listed = setup.tools()["claude-code"]
    assert listed["writable"] is True
    assert listed["config_path"] == str(settings)
    assert listed["status"] == {
        "applied": False,
        "points_here": False,
        "points_elsewhere": None,
        "applied_at_ms": None,
        "can_undo": False,
        "undo_steps": 0,
    }

    r = setup.apply("claude-code")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tool"] == "claude-code"
    assert body["path"] == str(settings)
    assert body["changed"] == ["env.ANTHROPIC_BASE_URL", "env.ANTHROPIC_AUTH_TOKEN"]
    backup = Path(body["backup_path"])
    assert backup.parent == setup.gw.data_dir / "tool-backups"
    assert backup.read_bytes() == before
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600, "the backup is the user's alone"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600, "the file holds the key now: the user's alone"
    assert body["files"][0]["private"] is True
    written = json.loads(settings.read_text())
    assert written["env"]["ANTHROPIC_BASE_URL"] == setup.gw.url
    assert written["env"]["ANTHROPIC_AUTH_TOKEN"] == setup.key
    assert written["permissions"] == {"allow": ["Bash(ls:*)"]}
    assert written["env"]["CLAUDE_CODE_MAX_RETRIES"] == "0"
    st = status(setup, "claude-code")
    assert st["applied"] and st["points_here"] and st["can_undo"] and st["applied_at_ms"]

    again = setup.apply("claude-code")
    assert again.status_code == 200 and again.json()["changed"] == [], again.text

    work = tmp_path / "work"
    work.mkdir()
    claude = package_bin("@anthropic-ai/claude-code", "claude")
    result = run([str(claude), "-p", PROMPT], agent_env(setup.home), work, AGENT_TIMEOUT_S)
    setup.check_answer(result, upstream)
    setup.check_secret_hygiene()

    r = setup.undo("claude-code")
    assert r.status_code == 200, r.text
    assert r.json()["restored"] is True
    assert settings.read_bytes() == before, "undo gives the user's file back byte for byte"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o644, "and its permissions"
    assert status(setup, "claude-code")["applied"] is False
    assert setup.undo("claude-code").status_code == 404


# -- Codex ---------------------------------------------------------------------------------------


def test_codex_set_up_by_file_then_undone(tmp_path: Path, start_gateway, upstream) -> None:  # type: ignore[no-untyped-def]
    node = require_node("@openai/codex")
    setup = Setup(start_gateway, upstream, "openai_responses")
    config = setup.write(".codex/config.toml", CODEX_CONFIG)
    before = config.read_bytes()

    r = setup.apply("codex")
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["model_provider", "model", "model_providers.flexiproxy"]
    text = config.read_text()
    assert text.startswith("# My Codex settings: FlexiProxy must keep this comment.\n"), text
    assert "[model_providers.elsewhere]" in text
    assert status(setup, "codex")["points_here"] is True

    work = tmp_path / "work"
    work.mkdir()
    codex = package_bin("@openai/codex", "codex")
    cmd = [str(node), str(codex), "exec", "--skip-git-repo-check", "--color", "never", PROMPT]
    result = run(cmd, agent_env(setup.home), work, AGENT_TIMEOUT_S)
    setup.check_answer(result, upstream)
    assert all(r.json.get("model") == MODEL for r in upstream.requests if r.action == "plain")
    setup.check_secret_hygiene()

    r = setup.undo("codex")
    assert r.status_code == 200, r.text
    assert config.read_bytes() == before


# -- Gemini CLI ----------------------------------------------------------------------------------


def test_gemini_cli_set_up_by_file_then_undone(tmp_path: Path, start_gateway, upstream) -> None:  # type: ignore[no-untyped-def]
    node = require_node("@google/gemini-cli")
    setup = Setup(start_gateway, upstream, "gemini")
    settings = setup.write(".gemini/settings.json", GEMINI_SETTINGS)
    before = settings.read_bytes()
    env_file = setup.home / ".gemini" / ".env"

    r = setup.apply("gemini-cli")
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "security.auth.selectedType", "model.name"]
    assert env_file.read_text() == f"GOOGLE_GEMINI_BASE_URL={setup.gw.url}\nGEMINI_API_KEY={setup.key}\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600, "a new file holding the key is private"
    assert "// Mine: no telemetry" in settings.read_text()
    assert status(setup, "gemini-cli")["points_here"] is True

    work = tmp_path / "work"
    work.mkdir()
    gemini = package_bin("@google/gemini-cli", "gemini")
    # Gemini CLI reads ~/.gemini/.env only in a folder the user trusts (it asks once, interactively).
    env = agent_env(setup.home, {"GEMINI_CLI_TRUST_WORKSPACE": "true"})
    result = run([str(node), str(gemini), "-p", PROMPT], env, work, AGENT_TIMEOUT_S)
    setup.check_answer(result, upstream)
    setup.check_secret_hygiene()

    r = setup.undo("gemini-cli")
    assert r.status_code == 200, r.text
    assert sorted(r.json()["paths"]) == sorted([str(env_file), str(settings)])
    assert not env_file.exists(), "the .env FlexiProxy created is gone"
    assert settings.read_bytes() == before


# -- the API's refusals and statuses ------------------------------------------------------------------


def test_refusals_and_statuses(start_gateway, upstream) -> None:  # type: ignore[no-untyped-def]
    setup = Setup(start_gateway, upstream, "openai_chat")
    tools = setup.tools()
    assert list(tools) == [
        "claude-code",
        "codex",
        "gemini-cli",
        "openai-sdk",
        "anthropic-sdk",
        "google-genai",
        "cursor",
        "continue",
        "cline",
        "aider",
    ]
    for tool in tools.values():
        assert tool["writable"] == (tool["id"] in ("claude-code", "codex", "gemini-cli", "aider"))
        assert (tool["config_path"] is None) != tool["writable"]
        assert setup.gw.url in tool["snippet"]["text"], tool
        assert "{{KEY}}" in tool["snippet"]["text"], tool
        assert setup.key not in json.dumps(tool)
    assert tools["claude-code"]["snippet"] == {
        "language": "sh",
        "text": f"export ANTHROPIC_BASE_URL={setup.gw.url}\nexport ANTHROPIC_AUTH_TOKEN={{{{KEY}}}}\n",
    }
    assert MODEL in tools["codex"]["snippet"]["text"]
    assert tools["codex"]["protocol"] == "openai_responses"

    # Wrong key, another adapter's key, another address, a copy-only tool, an unknown tool.
    other_key = setup.gw.api.create_adapter("up", "other-model")["api_key"]
    for key in ("fp-" + "0" * 64, other_key):
        r = setup.gw.api.post("/api/tools/claude-code/apply", json={"adapter": setup.adapter_id, "key": key})
        assert r.status_code == 400, r.text
        assert "not the key of adapter" in r.json()["error"]["message"]
        assert key not in r.text
    r = setup.apply("claude-code", base_url="http://127.0.0.1:9")
    assert r.status_code == 400 and "another address" in r.json()["error"]["message"], r.text
    assert setup.apply("claude-code", base_url=setup.gw.url + "/").status_code == 200
    assert setup.undo("claude-code").status_code == 200
    r = setup.apply("cursor")
    assert r.status_code == 400 and "by hand" in r.json()["error"]["message"], r.text
    assert setup.apply("nope").status_code == 404
    r = setup.gw.api.post("/api/tools/codex/apply", json={"adapter": setup.adapter_id, "key": 12})
    assert r.status_code == 400 and '"key": "fp-…"' in r.json()["error"]["message"], r.text
    assert setup.undo("aider").status_code == 404
    assert setup.gw.api.get("/api/tools", params={"adapter": 1}).status_code == 404
    no_token = setup.gw.api.get("/api/tools", headers={"Authorization": "Bearer nope"})
    assert no_token.status_code == 401

    # A file that points elsewhere is named; one that is not valid JSON is refused and left alone.
    aider = setup.write(".aider.conf.yml", "openai-api-base: https://api.example/v1\n")
    assert status(setup, "aider")["points_elsewhere"] == "https://api.example/v1"
    broken = setup.write(".claude/settings.json", '{\n  "env": {\n    "A": "1",\n  }\n}\n')
    r = setup.apply("claude-code")
    assert r.status_code == 409, r.text
    assert "line 4" in r.json()["error"]["message"], r.text
    assert broken.read_text() == '{\n  "env": {\n    "A": "1",\n  }\n}\n'

    r = setup.apply("aider")
    assert r.status_code == 200, r.text
    assert aider.read_text() == (
        f"openai-api-base: {setup.gw.url}/v1\nopenai-api-key: {setup.key}\nmodel: openai/{MODEL}\n"
    )
    assert status(setup, "aider")["points_here"] is True
    assert setup.undo("aider").status_code == 200
    assert aider.read_text() == "openai-api-base: https://api.example/v1\n"
    setup.check_secret_hygiene()
