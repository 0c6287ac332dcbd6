"""The official JavaScript SDKs through the real gateway, across protocols.

Clients (npm, pinned in tests/e2e/node/package.json; scripts in tests/e2e/node/scripts):
``openai`` on Chat Completions (``chat``) and on Responses (``responses``), ``@anthropic-ai/sdk``
on Messages (``messages``) and ``@google/genai`` on the Gemini API (``genai``, the SDK's default
``/v1/models/...`` paths). Providers: :mod:`mock_providers` (strict like the real APIs, so a
translation that drops, misplaces or invents something comes back as the provider's 400)
registered four times, once per provider protocol, with its key enforced.

Every client × provider pair runs two scenarios, each plain and streamed:

* ``text`` — the mock's ``echo: <prompt>``, the finish reason in the client's own terms, usage
  in the client's own shape with the mock's numbers, and a stream that arrives piece by piece;
* ``tools`` — a tool round trip: the model calls ``lookup`` (arguments from its schema), the
  script runs it and sends the result back under the call's id, and the model's final text
  quotes it; the id the client saw is the one its result reached the provider under.

Each test also checks what the provider received: its own protocol, the adapter's model, the
provider's key and never the client's ``fp-`` key. ``test_scripts_direct`` runs the scripts
against the mock itself (no gateway), so a failure in a gateway test is the gateway's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mock_providers as mp
import pytest
from agents import NODE_DIR, UPSTREAM_KEY_VAR, client_env, require_node, route_to, run
from conftest import GatewayFactory, GatewayProcess

SCRIPT_TIMEOUT_S = 90.0
ADAPTER_MODEL = "sdk-model"
CLIENT_MODEL = "whatever-the-client-names"
PROVIDERS = ["openai_chat", "anthropic_messages", "gemini", "openai_responses"]
# The scripts' tool (tests/e2e/node/scripts/common.mjs) and what the mock will call it with.
TOOL_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "The word to look up."}},
    "required": ["query"],
}
TOOL_ARGS = mp.example_arguments(TOOL_SCHEMA, 0)


def tool_output(args: dict[str, Any]) -> str:
    return f"lookup({args['query']}) = 42"


@dataclass(frozen=True)
class Client:
    script: str
    package: str
    text_case: str
    tools_case: str
    # The client protocol's words for "finished" and "stopped to call a tool".
    finish_stop: str
    finish_tool: str
    # The protocol it speaks (a provider of the same protocol is the gateway's fast path).
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


def expected_usage(client: str) -> dict[str, Any]:
    """The mock's usage (prompt tokens incl. cached, generated) as the client's protocol shows it."""
    i, o, c = mp.INPUT_TOKENS, mp.OUTPUT_TOKENS, mp.CACHED_TOKENS
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


def result_ids(rec: mp.Received) -> list[Any]:
    """The call ids the tool results in a provider request answer, in its protocol's terms."""
    body = rec.json if isinstance(rec.json, dict) else {}
    if rec.protocol == "openai_chat":
        return [m.get("tool_call_id") for m in body.get("messages", []) if m.get("role") == "tool"]
    if rec.protocol == "openai_responses":
        items = body.get("input") if isinstance(body.get("input"), list) else []
        return [i.get("call_id") for i in items if i.get("type") == "function_call_output"]
    if rec.protocol == "anthropic_messages":
        return [
            b.get("tool_use_id")
            for m in body.get("messages", [])
            if isinstance(m.get("content"), list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
    return [
        p["functionResponse"].get("id")
        for c in body.get("contents", [])
        for p in c.get("parts", [])
        if "functionResponse" in p
    ]


@dataclass
class SdkGateway:
    gw: GatewayProcess
    mock: mp.MockProviders
    upstream_key: str
    keys: dict[str, str]  # provider protocol -> adapter key


@pytest.fixture(scope="module")
def sdk_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkGateway]:
    """One gateway for the module, with the mock as four providers (one per protocol)."""
    upstream_key = "sk-upstream-" + secrets.token_hex(12)
    factory = GatewayFactory(tmp_path_factory.mktemp("sdk-gateway"))
    with mp.MockProviders(key=upstream_key) as mock:
        gw = factory(env={UPSTREAM_KEY_VAR: upstream_key})
        try:
            keys = {
                protocol: route_to(gw, mock.base_url(protocol), protocol, ADAPTER_MODEL, provider_id=f"up-{protocol}")
                for protocol in PROVIDERS
            }
            yield SdkGateway(gw, mock, upstream_key, keys)
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
        text = f"echo: Say hello ({nonce})"
        assert got["text"] == text, got
        assert got["finish"] == client.finish_stop, got
        if stream:
            assert got["deltas"] == len(mp.pieces(text)), f"the stream was not passed on piece by piece: {got}"
    else:
        assert got["tool_call"]["name"] == "lookup", got
        assert got["tool_call"]["arguments"] == TOOL_ARGS, got
        assert got["first_finish"] == client.finish_tool, got
        assert got["text"] == f"tool said: {tool_output(TOOL_ARGS)}", got
        assert got["finish"] == client.finish_stop, got
    usage = got["usage"] or {}
    want = expected_usage(name)
    assert {k: usage.get(k) for k in want} == want, f"usage: {usage}"
    assert cached_of(name, usage) == mp.CACHED_TOKENS, f"cached tokens: {usage}"


def received(mock: mp.MockProviders, nonce: str) -> list[mp.Received]:
    return [r for r in mock.requests if nonce.encode() in r.body]


def describe(records: list[mp.Received]) -> str:
    return json.dumps(
        [{"path": r.path, "status": r.status, "error": r.error, "headers": dict(r.headers), "json": r.json} for r in records],
        indent=1,
    )[:8000]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", ["text", "tools"])
@pytest.mark.parametrize(
    ("name", "provider"),
    [pytest.param(n, p, id=f"{n}-{p}") for n in CLIENTS for p in PROVIDERS],
)
def test_sdk_through_gateway(
    tmp_path: Path, sdk_gateway: SdkGateway, name: str, provider: str, kind: str, stream: bool
) -> None:
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
            f"{e}\n--- provider received ---\n{describe(received(sdk_gateway.mock, nonce))}"
            f"\n--- gateway log ---\n{sdk_gateway.gw.logs()[-3000:]}"
        ) from None

    seen = received(sdk_gateway.mock, nonce)
    assert len(seen) == (1 if kind == "text" else 2), describe(seen)
    for rec in seen:
        assert rec.protocol == provider, f"provider got {rec.path}"
        assert rec.status == 200, describe([rec])
        assert rec.model == ADAPTER_MODEL
        assert key not in json.dumps(rec.headers), "the client's fp- key was forwarded upstream"
        if provider == "gemini":
            assert rec.header("x-goog-api-key") == sdk_gateway.upstream_key
        elif provider == "anthropic_messages":
            assert rec.header("x-api-key") == sdk_gateway.upstream_key
            assert rec.header("anthropic-version")
        else:
            assert rec.header("Authorization") == f"Bearer {sdk_gateway.upstream_key}"
    if kind == "tools":
        second = seen[1]
        assert tool_output(TOOL_ARGS).encode() in second.body
        ids = result_ids(second)
        assert len(ids) == 1, describe([second])
        if got["tool_call"]["id"] and ids[0]:
            assert ids[0] == got["tool_call"]["id"], "the tool result reached the provider under another id"
        if provider != "gemini" and name != "genai":
            # Ids pass through unchanged: the client sees the provider's own id.
            prefix = "toolu_mock" if provider == "anthropic_messages" else "call_mock"
            assert str(got["tool_call"]["id"]).startswith(prefix), got["tool_call"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", ["text", "tools"])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_scripts_direct(tmp_path: Path, name: str, kind: str, stream: bool) -> None:
    """The same scripts straight at the mock in their own protocol: the baseline."""
    client = CLIENTS[name]
    require_node(client.package)
    with mp.MockProviders(key="direct-key") as mock:
        sc = scenario(mock.url, "direct-key", client.text_case if kind == "text" else client.tools_case, stream)
        got = run_script(client, sc, tmp_path)
        check_result(name, client, kind, stream, got, sc["nonce"])
        assert {r.protocol for r in mock.requests} == {client.protocol}
        assert all(r.status == 200 for r in mock.requests), describe(mock.requests)
