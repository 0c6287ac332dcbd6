"""Real coding agents — Claude Code, Codex CLI, Gemini CLI — through the real gateway, offline.

Each agent runs non-interactively with a scratch HOME, pointed at the gateway on loopback with an
``fp-`` key; the gateway's provider is :mod:`agent_upstream`, a scripted model that speaks the
provider's protocol. Every test is a full tool round trip: the model's first answer calls the
agent's own shell tool (``Bash`` / ``exec_command`` / ``run_shell_command``) with
``cat note.txt | tee copy.txt``; the agent runs it in the scratch work folder; the model's
second answer quotes the tool's output; the test then checks

* the agent exited 0 and printed the random nonce from ``note.txt`` (it went agent → gateway →
  model → agent → shell → agent → gateway → model → gateway → agent);
* ``copy.txt`` holds the nonce (the command really ran);
* the upstream saw the provider's key (never the ``fp-`` key), the adapter's model, a tool
  result carrying the nonce, and the agent's tool in the request's tool list.

Each agent goes to a provider of every protocol (its own: the gateway's fast path); a ``direct``
baseline runs the agent against the scripted upstream in its own protocol with no gateway, to
show that the script itself is right when a gateway test fails. The upstream reasons and signs
when asked, and refuses a wrongly replayed signature as the real APIs do;
``test_reasoning_signature_comes_back`` checks that Anthropic's and Gemini's signatures survive
the trip through each agent's protocol.

Versions: pinned in tests/e2e/node/package.json. Run as root, Claude Code refuses
``--dangerously-skip-permissions``, so ``--allowedTools Bash`` is used; retries are off in all
three agents so a gateway error fails fast instead of after minutes of back-off.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import agent_upstream as up
import pytest
from agents import (
    UPSTREAM_KEY_VAR,
    Finished,
    client_env,
    package_bin,
    require_node,
    route_to,
    run,
)

AGENT_TIMEOUT_S = 150.0
ADAPTER_MODEL = "agent-model"
COMMAND = "cat note.txt | tee copy.txt"
PROMPT = f"Please {up.TRIGGER}: {COMMAND}"
PROVIDERS = ["openai_chat", "anthropic_messages", "gemini", "openai_responses"]



@pytest.fixture
def upstream() -> Iterator[up.AgentUpstream]:
    with up.AgentUpstream() as server:
        yield server


@dataclass
class Scene:
    """Scratch folders and a nonce for one agent run."""

    home: Path
    work: Path
    nonce: str

    @classmethod
    def make(cls, tmp_path: Path) -> Scene:
        home, work = tmp_path / "agent-home", tmp_path / "work"
        home.mkdir()
        work.mkdir()
        nonce = f"nonce-{secrets.token_hex(8)}"
        (work / "note.txt").write_text(nonce + "\n")
        return cls(home, work, nonce)


@dataclass
class Target:
    """Where the agent is pointed: the gateway (with its adapter key) or the upstream itself."""

    base: str  # origin, no path
    key: str
    upstream_key: str | None  # what the upstream must see, when behind the gateway
    gateway: object | None


def behind_gateway(start_gateway, upstream: up.AgentUpstream, protocol: str) -> Target:  # type: ignore[no-untyped-def]
    upstream_key = "sk-upstream-" + secrets.token_hex(12)
    gw = start_gateway(env={UPSTREAM_KEY_VAR: upstream_key})
    fp_key = route_to(gw, upstream.base_url(protocol), protocol, ADAPTER_MODEL)
    return Target(gw.url, fp_key, upstream_key, gw)


def direct(upstream: up.AgentUpstream) -> Target:
    return Target(upstream.root, "fp-direct-" + secrets.token_hex(6), None, None)


def check_round_trip(
    result: Finished, scene: Scene, upstream: up.AgentUpstream, target: Target, tool: str, protocol: str | None
) -> None:
    """The assertions every agent test shares (see the module doc)."""
    context = f"{result.describe()}\n--- gateway log ---\n{gateway_log(target)}\n--- upstream saw ---\n{upstream.dump()}"
    assert not result.timed_out, f"the agent did not finish in {AGENT_TIMEOUT_S}s\n{context}"
    refused = [f"{r.path}: {r.action}" for r in upstream.with_action("refused")]
    assert not refused, f"the provider refused what it was sent (as the real API would): {refused}\n{context}"
    calls = upstream.with_action(f"tool_call:{tool}")
    finals = upstream.with_action("final")
    assert calls, f"the model was never asked with the agent's tool {tool!r} offered and the trigger\n{context}"
    assert finals, f"no tool result ever came back to the model\n{context}"
    assert result.returncode == 0, f"the agent failed\n{context}"
    assert scene.nonce in result.stdout, f"the final answer does not carry the tool's output\n{context}"
    assert (scene.work / "copy.txt").read_text().strip() == scene.nonce, "the shell command did not run"
    final = finals[-1]
    assert scene.nonce in final.body.decode(errors="replace"), "the tool result did not reach the model"
    if protocol is not None:
        for rec in calls + finals:
            assert rec.protocol == protocol, f"upstream got {rec.protocol} at {rec.path}, wanted {protocol}"
            assert target.key not in json.dumps(rec.headers), "the fp- key was forwarded upstream"
            if protocol in ("openai_chat", "openai_responses"):
                assert rec.header("Authorization") == f"Bearer {target.upstream_key}"
            elif protocol == "anthropic_messages":
                assert rec.header("x-api-key") == target.upstream_key
                assert rec.header("anthropic-version")
            if protocol == "gemini":
                assert rec.header("x-goog-api-key") == target.upstream_key
                assert f"/models/{ADAPTER_MODEL}:" in rec.path
            else:
                assert rec.json.get("model") == ADAPTER_MODEL


def gateway_log(target: Target) -> str:
    gw = target.gateway
    return gw.logs()[-4000:] if gw is not None else "(no gateway)"  # type: ignore[attr-defined]


# -- Claude Code ---------------------------------------------------------------------------------


def run_claude(scene: Scene, target: Target) -> Finished:
    require_node("@anthropic-ai/claude-code")
    claude = package_bin("@anthropic-ai/claude-code", "claude")
    env = client_env(
        scene.home,
        {
            "ANTHROPIC_BASE_URL": target.base,
            "ANTHROPIC_API_KEY": target.key,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            # It retries 5xx answers for minutes; one try shows a gateway error at once.
            "CLAUDE_CODE_MAX_RETRIES": "0",
        },
    )
    # --dangerously-skip-permissions is refused as root; allowing the one tool is enough.
    cmd = [str(claude), "-p", PROMPT, "--allowedTools", "Bash", "--model", "claude-sonnet-4-5"]
    return run(cmd, env, scene.work, AGENT_TIMEOUT_S)


@pytest.mark.parametrize("protocol", PROVIDERS)
def test_claude_code_tool_round_trip(tmp_path: Path, start_gateway, upstream, protocol: str) -> None:  # type: ignore[no-untyped-def]
    require_node("@anthropic-ai/claude-code")
    scene = Scene.make(tmp_path)
    target = behind_gateway(start_gateway, upstream, protocol)
    check_round_trip(run_claude(scene, target), scene, upstream, target, "Bash", protocol)


def test_claude_code_direct_baseline(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    scene = Scene.make(tmp_path)
    target = direct(upstream)
    check_round_trip(run_claude(scene, target), scene, upstream, target, "Bash", None)


# -- Codex CLI -------------------------------------------------------------------------------------


def run_codex(scene: Scene, target: Target) -> Finished:
    node = require_node("@openai/codex")
    codex = package_bin("@openai/codex", "codex")
    codex_home = scene.home / ".codex"
    codex_home.mkdir(exist_ok=True)
    # A provider of our own on the Responses wire; no retries, so a failure shows at once.
    (codex_home / "config.toml").write_text(
        f"""model = "{ADAPTER_MODEL}"
model_provider = "flexiproxy"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.flexiproxy]
name = "FlexiProxy"
base_url = "{target.base}/v1"
env_key = "FLEXIPROXY_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000
"""
    )
    env = client_env(scene.home, {"CODEX_HOME": str(codex_home), "FLEXIPROXY_KEY": target.key})
    cmd = [str(node), str(codex), "exec", "--skip-git-repo-check", "--color", "never", PROMPT]
    return run(cmd, env, scene.work, AGENT_TIMEOUT_S)


@pytest.mark.parametrize("protocol", PROVIDERS)
def test_codex_tool_round_trip(tmp_path: Path, start_gateway, upstream, protocol: str) -> None:  # type: ignore[no-untyped-def]
    require_node("@openai/codex")
    scene = Scene.make(tmp_path)
    target = behind_gateway(start_gateway, upstream, protocol)
    check_round_trip(run_codex(scene, target), scene, upstream, target, "exec_command", protocol)


def test_codex_direct_baseline(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    scene = Scene.make(tmp_path)
    target = direct(upstream)
    check_round_trip(run_codex(scene, target), scene, upstream, target, "exec_command", None)


# -- Gemini CLI ------------------------------------------------------------------------------------


def run_gemini(scene: Scene, target: Target) -> Finished:
    node = require_node("@google/gemini-cli")
    gemini = package_bin("@google/gemini-cli", "gemini")
    settings = scene.home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(
        json.dumps(
            {
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "privacy": {"usageStatisticsEnabled": False},
                "telemetry": {"enabled": False},
                # maxAttempts: no retries (it retries errors up to 10 times with back-off).
                "general": {"disableAutoUpdate": True, "disableUpdateNag": True, "maxAttempts": 1},
            }
        )
    )
    env = client_env(
        scene.home,
        {
            "GOOGLE_GEMINI_BASE_URL": target.base,
            "GEMINI_API_KEY": target.key,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
        },
    )
    cmd = [str(node), str(gemini), "-m", "gemini-2.5-flash", "--yolo", "-p", PROMPT]
    return run(cmd, env, scene.work, AGENT_TIMEOUT_S)


@pytest.mark.parametrize("protocol", PROVIDERS)
def test_gemini_cli_tool_round_trip(tmp_path: Path, start_gateway, upstream, protocol: str) -> None:  # type: ignore[no-untyped-def]
    require_node("@google/gemini-cli")
    scene = Scene.make(tmp_path)
    target = behind_gateway(start_gateway, upstream, protocol)
    check_round_trip(run_gemini(scene, target), scene, upstream, target, "run_shell_command", protocol)


def test_gemini_cli_direct_baseline(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    scene = Scene.make(tmp_path)
    target = direct(upstream)
    check_round_trip(run_gemini(scene, target), scene, upstream, target, "run_shell_command", None)


# -- reasoning continuity ----------------------------------------------------------------------


def replayed_signatures(rec: up.Recorded) -> list[str]:
    """The reasoning signatures a provider request carries back, in its protocol's places."""
    body = rec.json if isinstance(rec.json, dict) else {}
    if rec.protocol == "anthropic_messages":
        return [
            b.get("signature")
            for m in body.get("messages", [])
            if m.get("role") == "assistant" and isinstance(m.get("content"), list)
            for b in m["content"]
            if b.get("type") == "thinking"
        ]
    if rec.protocol == "gemini":
        return [p["thoughtSignature"] for c in body.get("contents", []) for p in c.get("parts", []) if "thoughtSignature" in p]
    return []


RUNNERS = {"claude": (run_claude, "Bash"), "codex": (run_codex, "exec_command"), "gemini_cli": (run_gemini, "run_shell_command")}


# Known gateway bug (strict: once fixed, XPASS fails and this mark goes): to a Gemini client the
# Anthropic thinking signature goes out on a separate empty text part, which Gemini CLI drops; it
# keeps only the thoughtSignature on the functionCall part, where Gemini itself puts it.
GEMINI_CLI_LOSES_ANTHROPIC_SIGNATURE = pytest.mark.xfail(
    strict=True,
    reason="gateway: Anthropic signature sent to Gemini clients on an empty text part, not on the functionCall part",
)


@pytest.mark.parametrize(
    ("protocol", "agent"),
    [
        pytest.param(
            p,
            a,
            id=f"{p}-{a}",
            marks=[GEMINI_CLI_LOSES_ANTHROPIC_SIGNATURE] if (p, a) == ("anthropic_messages", "gemini_cli") else [],
        )
        for p in ("anthropic_messages", "gemini")
        for a in RUNNERS
    ],
)
def test_reasoning_signature_comes_back(tmp_path: Path, start_gateway, upstream, agent: str, protocol: str) -> None:  # type: ignore[no-untyped-def]
    """Anthropic and Gemini sign their reasoning (Anthropic a thinking block, Gemini 3 every
    function call) and want the signature back with the tool call in the next request. Through
    another client protocol the gateway must carry it out (proof tags) in a place the agent keeps
    — Gemini CLI keeps only a ``thoughtSignature`` on the ``functionCall`` part itself — and
    restore it on the way in."""
    runner, tool = RUNNERS[agent]
    require_node({"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex", "gemini_cli": "@google/gemini-cli"}[agent])
    scene = Scene.make(tmp_path)
    target = behind_gateway(start_gateway, upstream, protocol)
    check_round_trip(runner(scene, target), scene, upstream, target, tool, protocol)
    final = upstream.with_action("final")[-1]
    issued = [s for s in replayed_signatures(final) if s in upstream.issued]
    assert issued, (
        f"the {protocol} signature the model issued with its tool call did not come back with it "
        f"(the request carried {replayed_signatures(final)}, thinking config "
        f"{final.json.get('thinking') or final.json.get('generationConfig')})\n--- upstream saw ---\n{upstream.dump()}"
    )
