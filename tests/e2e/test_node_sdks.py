"""The official JavaScript SDKs through the real gateway, across protocols.

Clients (npm, pinned in tests/e2e/node/package.json; scripts in tests/e2e/node/scripts):
``openai`` on Chat Completions (``chat``) and on Responses (``responses``), ``@anthropic-ai/sdk``
on Messages (``messages``) and ``@google/genai`` on the Gemini API (``genai``, the SDK's default
``/v1/models/...`` paths). Providers: :mod:`agent_upstream` registered four times, once per
provider protocol (``openai_chat``, ``anthropic_messages``, ``gemini``, ``openai_responses``).

Every client × provider pair runs three scenarios, each plain and streamed:

* ``text`` — the text, the finish reason in the client's own terms, usage in the client's own
  shape with the upstream's numbers (31 prompt tokens of which 3 cached, 7 generated), and a
  stream that arrives piece by piece;
* ``tools`` — a tool round trip: the model calls ``lookup`` with the nonce, the script runs it,
  sends the result back, and the model's final text quotes it; the call id the client sees is
  the upstream's (ids pass through), and the tool result reaches the upstream under that id.

Each test also checks what the upstream received: its own protocol, the adapter's model, the
provider's key and never the client's ``fp-`` key. ``test_scripts_direct`` runs the scripts
against the upstream itself (no gateway) to show that scripts and upstream agree, so a failure
in a gateway test is the gateway's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agent_upstream as up
import pytest
from agents import NODE_DIR, UPSTREAM_KEY_VAR, client_env, pair_param, require_node, route_to, run
from conftest import GatewayFactory, GatewayProcess

SCRIPT_TIMEOUT_S = 90.0
ADAPTER_MODEL = "sdk-model"
CLIENT_MODEL = "whatever-the-client-names"
PROVIDERS = ["openai_chat", "anthropic_messages", "gemini", "openai_responses"]


@dataclass(frozen=True)
class Client:
    script: str
    package: str
    text_case: str
    tools_case: str
    # The client protocol's words for "finished" and "stopped to call a tool".
    finish_stop: str
    finish_tool: str
    # What the client protocol natively speaks (its same-protocol provider is the fast path).
    protocol: str


CLIENTS = {
    "chat": Client("openai.mjs", "openai", "chat", "chat_tools", "stop", "tool_calls", "openai_chat"),
    "responses": Client(
        "openai.mjs", "openai", "responses", "responses_tools", "completed", "completed", "openai_responses"
    ),
    "messages": Client(
        "anthropic.mjs", "@anthropic-ai/sdk", "messages", "messages_tools", "end_turn", "tool_use", "anthropic_messages"
    ),
    "genai": Client("genai.mjs", "@google/genai", "generate", "generate_tools", "STOP", "STOP", "gemini"),
}

TEXT_PIECES = len(up._pieces(up.PLAIN_REPLY))


def expected_usage(client: str) -> dict[str, Any]:
    """The upstream's usage (31 in, 3 of them cached, 7 out) as the client's protocol shows it."""
    i, o, c = up.INPUT_TOKENS, up.OUTPUT_TOKENS, up.CACHED_TOKENS
    return {
        "chat": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o},
        "responses": {"input_tokens": i, "output_tokens": o, "total_tokens": i + o},
        # Anthropic's input_tokens leave out cache reads.
        "messages": {"input_tokens": i - c, "cache_read_input_tokens": c, "output_tokens": o},
        "genai": {"promptTokenCount": i, "candidatesTokenCount": o},
    }[client]


def cached_of(client: str, usage: dict[str, Any]) -> Any:
    if client == "chat":
        return (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if client == "responses":
        return (usage.get("input_tokens_details") or {}).get("cached_tokens")
    if client == "genai":
        return usage.get("cachedContentTokenCount")
    return usage.get("cache_read_input_tokens")


@dataclass
class SdkGateway:
    gw: GatewayProcess
    upstream: up.AgentUpstream
    upstream_key: str
    keys: dict[str, str]  # provider protocol -> adapter key


@pytest.fixture(scope="module")
def sdk_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkGateway]:
    """One gateway for the module, with the scripted upstream as four providers (one per protocol)."""
    upstream_key = "sk-upstream-" + secrets.token_hex(12)
    factory = GatewayFactory(tmp_path_factory.mktemp("sdk-gateway"))
    with up.AgentUpstream() as upstream:
        gw = factory(env={UPSTREAM_KEY_VAR: upstream_key})
        try:
            keys = {
                protocol: route_to(gw, upstream.base_url(protocol), protocol, ADAPTER_MODEL, provider_id=f"up-{protocol}")
                for protocol in PROVIDERS
            }
            yield SdkGateway(gw, upstream, upstream_key, keys)
        finally:
            factory.stop_all()


def run_script(client: Client, scenario: dict[str, Any], home: Path) -> dict[str, Any]:
    node = require_node(client.package)
    done = run(
        [str(node), str(NODE_DIR / "scripts" / client.script), json.dumps(scenario)],
        env=client_env(home),
        cwd=NODE_DIR,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert done.returncode == 0 and not done.timed_out, f"the SDK script failed\n{done.describe()}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def scenario(base: str, key: str, case: str, stream: bool) -> dict[str, Any]:
    return {
        "base": base,
        "key": key,
        "model": CLIENT_MODEL,
        "case": case,
        "stream": stream,
        "nonce": f"nonce-{secrets.token_hex(6)}",
    }


def check_result(name: str, client: Client, kind: str, stream: bool, got: dict[str, Any], nonce: str) -> None:
    if kind == "text":
        assert got["text"] == up.PLAIN_REPLY, got
        assert got["finish"] == client.finish_stop, got
        if stream:
            assert got["deltas"] == TEXT_PIECES, f"the stream was not passed on piece by piece: {got}"
    else:
        assert got["tool_call"]["name"] == "lookup", got
        assert got["tool_call"]["arguments"] == {"query": nonce}, got
        assert got["first_finish"] == client.finish_tool, got
        assert got["text"] == f"{up.FINAL_PREFIX}lookup({nonce}) = 42", got
        assert got["finish"] == client.finish_stop, got
    usage = got["usage"] or {}
    want = expected_usage(name)
    assert {k: usage.get(k) for k in want} == want, f"usage: {usage}"
    assert cached_of(name, usage) == up.CACHED_TOKENS, f"cached tokens: {usage}"


def upstream_requests(upstream: up.AgentUpstream, nonce: str) -> list[up.Recorded]:
    return [r for r in upstream.requests if nonce.encode() in r.body]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", ["text", "tools"])
@pytest.mark.parametrize(
    ("name", "provider"),
    [pair_param(c.protocol, p, n, p, id=f"{n}-{p}") for n, c in CLIENTS.items() for p in PROVIDERS],
)
def test_sdk_through_gateway(tmp_path: Path, sdk_gateway: SdkGateway, name: str, provider: str, kind: str, stream: bool) -> None:
    client = CLIENTS[name]
    require_node(client.package)
    key = sdk_gateway.keys[provider]
    sc = scenario(sdk_gateway.gw.url, key, client.text_case if kind == "text" else client.tools_case, stream)
    nonce = sc["nonce"]
    try:
        got = run_script(client, sc, tmp_path)
        check_result(name, client, kind, stream, got, nonce)
    except AssertionError as e:
        raise AssertionError(
            f"{e}\n--- upstream saw ---\n"
            + json.dumps([r.summary() for r in upstream_requests(sdk_gateway.upstream, nonce)], indent=1)[:8000]
            + f"\n--- gateway log ---\n{sdk_gateway.gw.logs()[-3000:]}"
        ) from None

    seen = upstream_requests(sdk_gateway.upstream, nonce)
    assert len(seen) == (1 if kind == "text" else 2), [r.summary() for r in seen]
    for rec in seen:
        assert rec.protocol == provider, f"upstream got {rec.path}"
        headers = json.dumps(rec.headers)
        assert key not in headers, "the client's fp- key was forwarded upstream"
        if provider == "gemini":
            assert rec.path.endswith(f"/models/{ADAPTER_MODEL}:" + rec.path.rsplit(":", 1)[1])
            assert rec.header("x-goog-api-key") == sdk_gateway.upstream_key
        else:
            assert rec.json["model"] == ADAPTER_MODEL
            if provider == "anthropic_messages":
                assert rec.header("x-api-key") == sdk_gateway.upstream_key
            else:
                assert rec.header("Authorization") == f"Bearer {sdk_gateway.upstream_key}"
    if kind == "tools":
        first, second = seen
        assert first.action == "tool_call:lookup" and second.action == "final"
        if first.reply_call_id is not None and name != "genai":
            assert got["tool_call"]["id"] == first.reply_call_id, "the tool-call id did not pass through"
        if first.reply_call_id is not None:
            assert second.result_call_ids == [first.reply_call_id], "the tool result names another call"
        assert f"lookup({nonce}) = 42".encode() in second.body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", ["text", "tools"])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_scripts_direct(tmp_path: Path, name: str, kind: str, stream: bool) -> None:
    """The same scripts straight at the scripted upstream in their own protocol: the baseline."""
    client = CLIENTS[name]
    require_node(client.package)
    with up.AgentUpstream() as upstream:
        sc = scenario(upstream.root, "direct-key", client.text_case if kind == "text" else client.tools_case, stream)
        got = run_script(client, sc, tmp_path)
        check_result(name, client, kind, stream, got, sc["nonce"])
        assert {r.protocol for r in upstream.requests} == {client.protocol}
