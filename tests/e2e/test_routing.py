"""Credential pools, strategies, limits, failover and model routing, end to end (issue 4).

Each test starts the real gateway (``--secrets env``: provider keys are ``env:NAME`` references
to variables set in the gateway's environment) and two or three :class:`FaultUpstream` servers,
each standing in for a provider that serves the same models, with two or more credentials per
provider created through ``POST /api/providers/{id}/credentials``. The official OpenAI and
Anthropic SDKs are the clients, with ``max_retries=0`` so that only the gateway's failover can
save a request. The upstreams answer ``served by <provider> with <key>`` and record every
request, so every assertion on distribution is exact, to the request.

Most tests route through an adapter with neither provider nor model (the client's ``model`` is
routed); the failover tests pin the provider and use ``fill-first`` so the first key is known.
"""

from __future__ import annotations

import concurrent.futures
import math
import random
import re
import secrets
import time
from collections import Counter
from typing import Any

import anthropic
import httpx
import openai
import pytest
from conftest import FaultUpstreams, GatewayFactory, GatewayProcess, put_provider
from fault_upstream import ANY_KEY, TOTAL_TOKENS, FaultUpstream

MODEL = "shared-model"
PROVIDERS = ("p1", "p2", "p3")
CREDENTIALS = ("k1", "k2", "k3", "k4")
SERVED = re.compile(r"^served by (\S+) with (\S+)$")


def key_var(provider: str, cid: str) -> str:
    return f"FLEXIPROXY_E2E_KEY_{provider.upper()}_{cid.upper()}"


class Pool:
    """A gateway, its fault upstreams (one per provider id) and the raw keys behind each
    ``env:`` reference; helpers to register things and to read who served what."""

    def __init__(self, gw: GatewayProcess, keys: dict[tuple[str, str], str], ups: dict[str, FaultUpstream]):
        self.gw = gw
        self.keys = keys  # (provider, cid) -> raw key
        self.ups = ups
        self._owner = {raw: f"{p}/{c}" for (p, c), raw in keys.items()}

    # -- registration ---------------------------------------------------------------------------

    def provider(
        self,
        pid: str,
        *,
        models: list[str] | None = None,
        discovery: str = "off",
        protocol: str = "openai_chat",
        url: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url or self.ups[pid].base_url, "protocol": protocol, "discovery": discovery}
        if models is not None:
            body["models"] = models
        view = put_provider(self.gw.api, pid, body)
        # The pools below are exactly the credentials each test creates.
        for cred in self.credentials(pid):
            self.gw.api.delete(f"/api/providers/{pid}/credentials/{cred['id']}")
        return view

    def credential(self, pid: str, cid: str, **fields: Any) -> dict[str, Any]:
        body = {"id": cid, "label": f"{pid} {cid}", "api_key": f"env:{key_var(pid, cid)}", **fields}
        r = self.gw.api.post(f"/api/providers/{pid}/credentials", json=body)
        assert r.status_code == 201, f"create credential {pid}/{cid}: {r.status_code} {r.text}"
        view = r.json()
        assert view["id"] == cid and view["key_id"] == f"{pid}/{cid}", view
        return view

    def credentials(self, pid: str) -> list[dict[str, Any]]:
        r = self.gw.api.get(f"/api/providers/{pid}")
        assert r.status_code == 200, r.text
        return r.json().get("credentials") or []

    def health(self, pid: str, cid: str) -> dict[str, Any]:
        [cred] = [c for c in self.credentials(pid) if c["id"] == cid]
        return cred["health"]

    def wait_state(self, pid: str, cid: str, state: str, timeout: float) -> float:
        """Polls the credential's health until it is `state`; returns the monotonic time it was."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health(pid, cid)
            if health["state"] == state:
                return time.monotonic()
            assert time.monotonic() < deadline, f"{pid}/{cid} not {state} within {timeout}s: {health}"
            time.sleep(0.1)

    def adapter(self, provider_id: str | None = None, model_id: str | None = None, strategy: str | None = None) -> str:
        body = {
            k: v for k, v in {"provider_id": provider_id, "model_id": model_id, "strategy": strategy}.items() if v
        }
        r = self.gw.api.post("/api/adapters", json=body)
        assert r.status_code == 201, f"create adapter {body}: {r.status_code} {r.text}"
        return r.json()["api_key"]

    def route(self, name: str, candidates: list[Any], strategy: str | None = None, auto: bool = False) -> None:
        body: dict[str, Any] = {"auto": auto, "candidates": candidates}
        if strategy:
            body["strategy"] = strategy
        r = self.gw.api.put(f"/api/routes/{name}", json=body)
        assert r.status_code in (200, 201), f"PUT /api/routes/{name}: {r.status_code} {r.text}"

    def routing(self, **settings: Any) -> None:
        r = self.gw.api.put("/api/settings", json={"routing": settings})
        assert r.status_code == 200, f"PUT /api/settings: {r.status_code} {r.text}"
        routing = r.json().get("routing") or {}
        for name, value in settings.items():
            assert routing.get(name) == value, (name, routing)

    # -- clients --------------------------------------------------------------------------------

    def openai(self, key: str, timeout: float = 20) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.v1, api_key=key, max_retries=0, timeout=timeout)

    def anthropic(self, key: str, timeout: float = 20) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gw.url, api_key=key, max_retries=0, timeout=timeout)

    # -- the record -----------------------------------------------------------------------------

    def who(self, raw: str | None) -> str:
        return self._owner.get(raw or "", f"<unknown key {raw!r}>")

    def attempts(self) -> Counter[str]:
        """Generation requests per key id (``p1/k1``) over all upstreams, failed ones included."""
        counts: Counter[str] = Counter()
        for up in self.ups.values():
            for raw, n in up.count_by_key().items():
                counts[self.who(raw)] += n
        return counts

    def served(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for up in self.ups.values():
            for raw, n in up.served_by_key().items():
                counts[self.who(raw)] += n
        return counts

    def sequence(self) -> list[str]:
        """The key id of every generation request, in arrival order over all upstreams."""
        recs = sorted((r for up in self.ups.values() for r in up.generations), key=lambda r: r.at)
        return [self.who(r.key) for r in recs]

    def served_by(self, text: str) -> str:
        """``p1/k2`` from an answer ``served by p1 with <raw key of p1/k2>``."""
        m = SERVED.match(text.strip())
        assert m, f"not an upstream answer: {text!r}"
        key_id = self.who(m.group(2))
        assert key_id.startswith(m.group(1) + "/"), f"{m.group(1)} served with another provider's key: {text!r}"
        return key_id


def make_pool(start_gateway: GatewayFactory, fault_upstreams: FaultUpstreams, args: list[str] | None = None) -> Pool:
    """A gateway (extra flags `args`) with three fault upstreams ``p1``..``p3``, nothing registered
    yet. Every upstream accepts only its own provider's keys (401 for any other)."""
    keys = {(p, c): f"sk-{p}-{c}-{secrets.token_hex(8)}" for p in PROVIDERS for c in CREDENTIALS}
    env = {key_var(p, c): raw for (p, c), raw in keys.items()}
    ups = {
        p: fault_upstreams(p, models=[MODEL], keys=[raw for (q, _), raw in keys.items() if q == p]) for p in PROVIDERS
    }
    gw = start_gateway(["--secrets", "env", *(args or [])], env=env, log_level="info")
    return Pool(gw, keys, ups)


@pytest.fixture
def pool(start_gateway: GatewayFactory, fault_upstreams: FaultUpstreams) -> Pool:
    return make_pool(start_gateway, fault_upstreams)


@pytest.fixture
def impatient_pool(start_gateway: GatewayFactory, fault_upstreams: FaultUpstreams) -> Pool:
    """A pool whose gateway gives up on an upstream after 1 s without response headers."""
    return make_pool(start_gateway, fault_upstreams, ["--upstream-timeout", "1"])


def two_by_two(pool: Pool, **limits: Any) -> None:
    """p1 and p2 both serving MODEL, each with credentials k1 and k2."""
    for pid in ("p1", "p2"):
        pool.provider(pid, models=[MODEL])
        for cid in ("k1", "k2"):
            pool.credential(pid, cid, **limits)


def ask(client: openai.OpenAI, model: str = MODEL) -> str:
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return out.choices[0].message.content or ""


def ask_stream(client: openai.OpenAI, model: str = MODEL) -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def ask_claude(client: anthropic.Anthropic, model: str = MODEL) -> str:
    msg = client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    return "".join(b.text for b in msg.content if b.type == "text")


def ask_claude_stream(client: anthropic.Anthropic, model: str = MODEL) -> str:
    with client.messages.stream(model=model, max_tokens=32, messages=[{"role": "user", "content": "hi"}]) as s:
        return "".join(s.text_stream)


def retry_after(e: openai.APIStatusError | anthropic.APIStatusError) -> int:
    value = e.response.headers.get("retry-after")
    assert value is not None, f"a 429 without retry-after: {dict(e.response.headers)}"
    assert re.fullmatch(r"\d+", value), f"retry-after must be whole seconds, got {value!r}"
    return int(value)


# -- the pool through the management API -------------------------------------------------------------


def test_credentials_are_shown_without_secrets(pool: Pool) -> None:
    pool.provider("p1", models=[MODEL])
    made = pool.credential("p1", "k1", max_request_min=60, max_request_day=1000, max_token_min=100000)
    pool.credential("p1", "k2", priority=1, enabled=False)
    assert made["provider_id"] == "p1" and made["label"] == "p1 k1" and made["enabled"] is True
    assert made["priority"] == 0 and made["source"] == "database"
    assert made["limits"] == {"max_request_min": 60, "max_request_day": 1000, "max_token_min": 100000}
    assert made["health"]["state"] == "ready"
    r = pool.gw.api.get("/api/providers/p1")
    creds = {c["id"]: c for c in r.json()["credentials"]}
    assert set(creds) == {"k1", "k2"}
    assert creds["k2"]["health"]["state"] == "disabled" and creds["k2"]["priority"] == 1
    for text in (r.text, pool.gw.api.get("/api/providers").text):
        for raw in pool.keys.values():
            assert raw not in text, "a provider key appears in the management API"
    r = pool.gw.api.patch("/api/providers/p1/credentials/k2", json={"enabled": True, "max_request_min": 5})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True and r.json()["limits"]["max_request_min"] == 5
    assert pool.gw.api.delete("/api/providers/p1/credentials/k2").status_code == 204
    assert [c["id"] for c in pool.credentials("p1")] == ["k1"]


# -- strategies ---------------------------------------------------------------------------------------


def test_round_robin_spreads_evenly_over_keys_and_providers(pool: Pool) -> None:
    two_by_two(pool)
    client = pool.openai(pool.adapter(strategy="round-robin"))
    answers = [pool.served_by(ask(client)) for _ in range(12)]
    expected = {"p1/k1": 3, "p1/k2": 3, "p2/k1": 3, "p2/k2": 3}
    assert Counter(answers) == expected, answers
    assert pool.served() == expected and pool.attempts() == expected
    # Round robin: no key is used twice before every other one was used once.
    for i in range(0, 12, 4):
        assert len(set(answers[i : i + 4])) == 4, answers


def test_fill_first_uses_the_first_key_until_its_limit(pool: Pool) -> None:
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1", max_request_min=3)
    pool.credential("p1", "k2", max_request_min=3)
    pool.credential("p1", "k3")
    client = pool.openai(pool.adapter("p1", MODEL, strategy="fill-first"))
    answers = [pool.served_by(ask(client)) for _ in range(8)]
    assert answers == ["p1/k1"] * 3 + ["p1/k2"] * 3 + ["p1/k3"] * 2
    assert pool.sequence() == answers, "a key at its limit was still tried upstream"


def test_least_used_keeps_the_gap_within_usage_gap_percent(pool: Pool) -> None:
    pool.routing(usage_gap_percent=5)
    pool.provider("p1", models=[MODEL])
    for cid in ("k1", "k2", "k3"):
        pool.credential("p1", cid, max_request_day=100)
    # Some earlier use of k1 only: least-used must catch the others up first.
    fill = pool.openai(pool.adapter("p1", MODEL, strategy="fill-first"))
    for _ in range(4):
        assert pool.served_by(ask(fill)) == "p1/k1"
    client = pool.openai(pool.adapter("p1", MODEL, strategy="least-used"))
    allowed = math.ceil(100 * 5 / 100)  # 5 % of max_request_day = 100
    gaps = []
    for _ in range(26):
        ask(client)
        counts = pool.served()
        per_key = [counts.get(f"p1/{c}", 0) for c in ("k1", "k2", "k3")]
        gaps.append(max(per_key) - min(per_key))
    final = pool.served()
    print(f"least-used: per key {dict(final)}, gap after each request {gaps}")
    assert sum(final.values()) == 30
    # Starting 4 apart, no key ever runs more than the gap ahead of another.
    assert max(gaps) <= allowed, gaps
    assert all(final[f"p1/{c}"] >= 10 - allowed for c in ("k1", "k2", "k3")), final


def test_priority_tier_is_used_only_when_the_first_tier_is_unavailable(pool: Pool) -> None:
    pool.routing(rate_limit_cooldown_ms=30000)
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1")
    pool.credential("p1", "k2")
    pool.credential("p1", "k3", priority=1)
    client = pool.openai(pool.adapter("p1", MODEL, strategy="round-robin"))
    assert Counter(pool.served_by(ask(client)) for _ in range(6)) == {"p1/k1": 3, "p1/k2": 3}
    # Both priority-0 keys are rate limited for 2 s: the request lands on k3, and so do the
    # next ones without trying k1 or k2 again while they cool down.
    up = pool.ups["p1"]
    for cid in ("k1", "k2"):
        up.fail(pool.keys[("p1", cid)], "429", retry_after=2)
    hit_at = time.monotonic()
    assert pool.served_by(ask(client)) == "p1/k3"
    before = pool.attempts()
    assert [pool.served_by(ask(client)) for _ in range(3)] == ["p1/k3"] * 3
    after = pool.attempts()
    assert (after["p1/k1"], after["p1/k2"]) == (before["p1/k1"], before["p1/k2"]), "a cooling key was tried"
    for cid in ("k1", "k2"):
        assert pool.health("p1", cid)["state"] == "cooling_down"
    # They come back by themselves when retry-after has passed, and tier 0 is used again.
    up.clear()
    for cid in ("k1", "k2"):
        back = pool.wait_state("p1", cid, "ready", timeout=5)
        assert back - hit_at >= 1.5, "cooled down for less than retry-after"
    assert {pool.served_by(ask(client)) for _ in range(4)} == {"p1/k1", "p1/k2"}


# -- limits at their boundary ---------------------------------------------------------------------------


def test_request_limit_boundary_openai_retry_after_is_true(pool: Pool) -> None:
    """The one test of the file that waits for a window (up to ~61 s): requests 1-3 pass, the
    4th gets 429 with a retry-after that is neither too short nor too long."""
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1", max_request_min=3)
    client = pool.openai(pool.adapter("p1", MODEL), timeout=30)
    for _ in range(3):
        assert pool.served_by(ask(client)) == "p1/k1"
    with pytest.raises(openai.RateLimitError) as info:
        ask(client)
    refused_at = time.monotonic()
    assert info.value.status_code == 429
    body = info.value.body
    assert isinstance(body, dict) and body.get("message"), body  # the OpenAI SDK unwraps "error"
    wait = retry_after(info.value)
    assert 1 <= wait <= 60, wait
    assert pool.ups["p1"].served == 3, "the refused request reached the upstream"
    # Just before retry-after has passed, the key is still at its limit...
    if wait > 3:
        time.sleep(max(0.0, refused_at + wait - 2 - time.monotonic()))
        with pytest.raises(openai.RateLimitError) as again:
            ask(client)
        assert retry_after(again.value) <= 3
    # ... and once it has, the next request passes.
    time.sleep(max(0.0, refused_at + wait + 0.2 - time.monotonic()))
    assert pool.served_by(ask(client)) == "p1/k1"
    assert pool.ups["p1"].served == 4


def test_request_limit_boundary_anthropic(pool: Pool) -> None:
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1", max_request_min=3)
    client = pool.anthropic(pool.adapter("p1", MODEL))
    first_sent = time.time()
    for _ in range(3):
        assert pool.served_by(ask_claude(client)) == "p1/k1"
    first_seen = pool.ups["p1"].generations[0].wall
    before = time.time()
    with pytest.raises(anthropic.RateLimitError) as info:
        ask_claude(client)
    after = time.time()
    assert info.value.status_code == 429
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body
    wait = retry_after(info.value)
    # The window frees when the first request is a minute old: the gateway counted it between
    # `first_sent` and `first_seen`, and answered between `before` and `after`.
    assert first_sent + 60 - after <= wait <= min(60, math.ceil(first_seen + 60 - before) + 1), (
        wait,
        first_seen + 60 - before,
    )
    assert pool.ups["p1"].served == 3


def test_token_limit_counts_recorded_usage(pool: Pool) -> None:
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1", max_token_min=2 * TOTAL_TOKENS)  # 30: two answers of 15 tokens
    client = pool.openai(pool.adapter("p1", MODEL))
    assert pool.served_by(ask(client)) == "p1/k1"
    assert pool.served_by(ask_stream(client)) == "p1/k1"
    time.sleep(0.3)  # usage is read from the answers; give the recorder a moment
    with pytest.raises(openai.RateLimitError) as info:
        ask(client)
    assert 1 <= retry_after(info.value) <= 60
    assert pool.ups["p1"].served == 2 and len(pool.ups["p1"].generations) == 2
    [cred] = pool.credentials("p1")
    assert cred["windows"]["tok_min"] == 2 * TOTAL_TOKENS, cred
    assert cred["health"]["state"] == "at_limit", cred


# -- failover --------------------------------------------------------------------------------------


def pinned_pair(pool: Pool) -> openai.OpenAI:
    """p1 with k1 and k2, fill-first: every request tries k1 first."""
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1")
    pool.credential("p1", "k2")
    return pool.openai(pool.adapter("p1", MODEL, strategy="fill-first"))


def test_429_fails_over_and_the_key_comes_back_after_retry_after(pool: Pool) -> None:
    client = pinned_pair(pool)
    up, a = pool.ups["p1"], pool.keys[("p1", "k1")]
    up.fail(a, "429", retry_after=2)
    hit_at = time.monotonic()
    assert pool.served_by(ask(client)) == "p1/k2"
    assert pool.sequence() == ["p1/k1", "p1/k2"]
    health = pool.health("p1", "k1")
    assert health["state"] == "cooling_down", health
    now_ms = time.time() * 1000
    assert now_ms + 500 <= health["available_at_ms"] <= now_ms + 2500, health
    # While it cools down it is not tried at all.
    assert pool.served_by(ask(client)) == "p1/k2"
    assert pool.attempts()["p1/k1"] == 1
    up.clear(a)
    back = pool.wait_state("p1", "k1", "ready", timeout=5)
    assert 1.5 <= back - hit_at <= 4, back - hit_at
    assert pool.served_by(ask(client)) == "p1/k1"


@pytest.mark.parametrize("kind", ["500", "reset"])
def test_server_error_and_reset_fail_over(pool: Pool, kind: str) -> None:
    client = pinned_pair(pool)
    pool.ups["p1"].fail(pool.keys[("p1", "k1")], kind)
    assert [pool.served_by(ask(client)) for _ in range(3)] == ["p1/k2"] * 3
    # k1 was tried once, then left to cool down.
    assert pool.sequence() == ["p1/k1", "p1/k2", "p1/k2", "p1/k2"]
    assert pool.health("p1", "k1")["state"] == "cooling_down"


def test_401_fails_over_and_flags_the_credential(pool: Pool) -> None:
    client = pinned_pair(pool)
    pool.ups["p1"].fail(pool.keys[("p1", "k1")], "401")
    assert pool.served_by(ask(client)) == "p1/k2"
    health = pool.health("p1", "k1")
    assert health["state"] == "auth_failed", health
    assert health.get("reason"), health
    assert pool.served_by(ask(client)) == "p1/k2"
    assert pool.attempts()["p1/k1"] == 1
    # Fixed upstream-side, then reset by the user: back in use.
    pool.ups["p1"].clear()
    r = pool.gw.api.post("/api/providers/p1/credentials/k1/reset")
    assert r.status_code == 200, r.text
    assert r.json()["health"]["state"] == "ready"
    assert pool.served_by(ask(client)) == "p1/k1"


def test_slow_key_fails_over_after_the_timeout(impatient_pool: Pool) -> None:
    pool = impatient_pool
    client = pinned_pair(pool)
    pool.ups["p1"].fail(pool.keys[("p1", "k1")], "slow", delay=5)
    started = time.monotonic()
    assert pool.served_by(ask(client)) == "p1/k2"
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4, elapsed
    assert pool.sequence() == ["p1/k1", "p1/k2"]
    assert pool.health("p1", "k1")["state"] == "cooling_down"


@pytest.mark.parametrize("how", ["all_keys_500", "server_stopped"])
def test_provider_down_route_falls_back_to_the_other_provider(pool: Pool, how: str) -> None:
    pool.provider("p1", models=["model-one"])
    pool.provider("p2", models=["model-two"])
    for pid in ("p1", "p2"):
        pool.credential(pid, "k1")
        pool.credential(pid, "k2")
    pool.route("smart", ["p1/model-one", {"provider": "p2", "model": "model-two", "priority": 1}])
    client = pool.openai(pool.adapter())
    assert {pool.served_by(ask(client, "smart")) for _ in range(2)} <= {"p1/k1", "p1/k2"}
    assert [r.model for r in pool.ups["p1"].generations] == ["model-one"] * 2
    if how == "all_keys_500":
        pool.ups["p1"].fail(ANY_KEY, "500")
    else:
        pool.ups["p1"].stop()
    answers = [pool.served_by(ask(client, "smart")) for _ in range(3)]
    assert all(a.startswith("p2/") for a in answers), answers
    assert [r.model for r in pool.ups["p2"].generations] == ["model-two"] * 3
    # Anthropic clients are saved the same way.
    assert pool.served_by(ask_claude(pool.anthropic(pool.adapter()), "smart")).startswith("p2/")


def test_no_request_fails_while_any_candidate_can_serve(pool: Pool) -> None:
    """A burst of 60 mixed requests (plain and streamed, OpenAI and Anthropic SDKs, 4 at a time)
    while random faults hit three of the four keys; p2/k2 is always healthy."""
    pool.routing(rate_limit_cooldown_ms=1000, failure_cooldown_ms=1000, max_retries=4)
    two_by_two(pool)
    key = pool.adapter(strategy="round-robin")
    oa, an = pool.openai(key), pool.anthropic(key)
    callers = [lambda: ask(oa), lambda: ask_stream(oa), lambda: ask_claude(an), lambda: ask_claude_stream(an)]
    faulty = [("p1", "k1"), ("p1", "k2"), ("p2", "k1")]
    rng = random.Random(4)
    injected: Counter[str] = Counter()

    def one(i: int) -> tuple[str | None, str | None]:
        try:
            return pool.served_by(callers[i % 4]()), None
        except Exception as e:  # noqa: BLE001 - every failure is a finding here
            return None, f"request {i}: {type(e).__name__}: {e}"

    results = []
    with concurrent.futures.ThreadPoolExecutor(4) as workers:
        futures = []
        for i in range(60):
            if rng.random() < 0.5:
                pid, cid = rng.choice(faulty)
                kind = rng.choice(["429", "500", "reset"])
                pool.ups[pid].fail(pool.keys[(pid, cid)], kind, times=rng.randint(1, 3), retry_after=1 if kind == "429" else None)
                injected[kind] += 1
            futures.append(workers.submit(one, i))
            time.sleep(0.02)
        results = [f.result() for f in futures]
    failures = [err for _, err in results if err]
    served = Counter(who for who, _ in results if who)
    attempts = pool.attempts()
    print(
        f"\nburst: sent 60, failed {len(failures)}, served per key {dict(sorted(served.items()))}, "
        f"upstream attempts per key {dict(sorted(attempts.items()))} "
        f"({sum(attempts.values()) - 60} failed over), faults injected {dict(injected)}"
    )
    assert failures == [], failures
    assert sum(served.values()) == 60
    assert sum(pool.served().values()) == 60, "an answer was served twice or lost"
    assert served["p2/k2"] >= 1


def test_stream_dying_mid_way_is_an_error_not_a_truncation(pool: Pool) -> None:
    client = pinned_pair(pool)
    up = pool.ups["p1"]
    up.fail(ANY_KEY, "die_mid_stream", times=1)
    text = ""
    with pytest.raises(openai.APIError) as info:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    # An SSE error event (what the contract promises), not a dropped connection.
    assert not isinstance(info.value, openai.APIConnectionError), repr(info.value)
    assert text.startswith("served by p1 "), f"the first bytes should have arrived: {text!r}"
    assert len(up.generations) == 1, "failover after the first byte had reached the client"

    up.fail(ANY_KEY, "die_mid_stream", times=1)
    claude = pool.anthropic(pool.adapter("p1", MODEL, strategy="fill-first"))
    got = ""
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        with claude.messages.stream(model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]) as s:
            for piece in s.text_stream:
                got += piece
    body = ainfo.value.body
    assert isinstance(body, dict) and body.get("type") == "error", body
    assert got, "the first text delta should have arrived before the error"
    assert len(up.generations) == 2


# -- model routing ---------------------------------------------------------------------------------


def test_alias_and_provider_prefix(pool: Pool) -> None:
    pool.provider("p1", models=[MODEL, "model-one"])
    pool.provider("p2", models=[MODEL])
    for pid in ("p1", "p2"):
        pool.credential(pid, "k1")
        pool.credential(pid, "k2")
    pool.route("gpt-latest", ["p1/model-one"])
    client = pool.openai(pool.adapter())
    assert pool.served_by(ask(client, "gpt-latest")).startswith("p1/")
    assert pool.ups["p1"].generations[-1].model == "model-one"
    # `provider/model` pins the provider; the model goes upstream without the prefix.
    answers = [pool.served_by(ask(client, f"p2/{MODEL}")) for _ in range(4)]
    assert all(a.startswith("p2/") for a in answers), answers
    assert [r.model for r in pool.ups["p2"].generations] == [MODEL] * 4
    assert len(pool.ups["p1"].generations) == 1
    # The alias works for Anthropic clients too.
    assert pool.served_by(ask_claude(pool.anthropic(pool.adapter()), "gpt-latest")).startswith("p1/")


def test_auto_route_picks_the_first_candidate_not_at_its_limit(pool: Pool) -> None:
    pool.provider("p1", models=["model-one"])
    pool.provider("p2", models=["model-two"])
    pool.credential("p1", "k1", max_request_min=2)
    pool.credential("p2", "k1")
    pool.route("auto", ["p1/model-one", "p2/model-two"], auto=True)
    client = pool.openai(pool.adapter())
    answers = [pool.served_by(ask(client, "auto")) for _ in range(4)]
    assert answers == ["p1/k1", "p1/k1", "p2/k1", "p2/k1"]
    assert [r.model for r in pool.ups["p2"].generations] == ["model-two"] * 2


def test_discovered_model_is_routed_and_balanced(pool: Pool) -> None:
    pool.ups["p1"].models = ["disc-model", "only-p1"]
    pool.ups["p2"].models = ["disc-model"]
    for pid in ("p1", "p2"):
        pool.provider(pid, discovery="auto")
        pool.credential(pid, "k1")
        r = pool.gw.api.post(f"/api/providers/{pid}/discover")
        assert r.status_code == 200, r.text
        assert "disc-model" in r.json()["models"], r.json()
    client = pool.openai(pool.adapter(strategy="round-robin"))
    answers = [pool.served_by(ask(client, "disc-model")) for _ in range(4)]
    assert Counter(answers) == {"p1/k1": 2, "p2/k1": 2}, answers
    assert pool.served_by(ask(client, "only-p1")) == "p1/k1"
    assert pool.ups["p1"].generations[-1].model == "only-p1"


def test_ocf_peer_models_are_routed(pool: Pool) -> None:
    pool.ups["p3"].models = []
    pool.ups["p3"].peers = {"peer-a": ["ocf-model"], "peer-b": ["ocf-model", "ocf-big"]}
    pool.provider("p3", discovery="ocf")
    pool.credential("p3", "k1")
    r = pool.gw.api.post("/api/providers/p3/discover")
    assert r.status_code == 200, r.text
    assert {"ocf-model", "ocf-big"} <= set(r.json()["models"]), r.json()
    client = pool.openai(pool.adapter())
    assert pool.served_by(ask(client, "ocf-big")) == "p3/k1"
    assert pool.ups["p3"].generations[-1].model == "ocf-big"


def test_unknown_model_is_404_in_the_clients_protocol(pool: Pool) -> None:
    two_by_two(pool)
    key = pool.adapter()
    with pytest.raises(openai.NotFoundError) as info:
        ask(pool.openai(key), "no-such-model")
    assert info.value.status_code == 404 and "no-such-model" in str(info.value.body)
    with pytest.raises(anthropic.NotFoundError) as ainfo:
        ask_claude(pool.anthropic(key), "no-such-model")
    body = ainfo.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "not_found_error", body
    assert sum(len(up.generations) for up in pool.ups.values()) == 0


# -- endpoints and usage views ------------------------------------------------------------------------


def test_endpoints_list_providers_models_and_peers(pool: Pool) -> None:
    two_by_two(pool)
    pool.ups["p3"].models = []
    pool.ups["p3"].peers = {"peer-a": ["ocf-model"]}
    pool.provider("p3", discovery="ocf")
    pool.credential("p3", "k1")
    assert pool.gw.api.post("/api/providers/p3/discover").status_code == 200
    key = pool.adapter()
    for auth in (key, pool.gw.token):
        r = httpx.get(f"{pool.gw.v1}/endpoints", headers={"Authorization": f"Bearer {auth}"})
        assert r.status_code == 200, r.text
        endpoints = {e["id"]: e for e in r.json()["endpoints"]}
        assert {"p1", "p2", "p3"} <= set(endpoints), endpoints
        for pid in ("p1", "p2"):
            e = endpoints[pid]
            assert e["url"] == pool.ups[pid].base_url and e["protocol"] == "openai_chat"
            assert MODEL in e["models"] and (e["credentials"], e["available"]) == (2, 2), e
        ocf = endpoints["p3"]
        assert ocf["discovery"] == "ocf" and "ocf-model" in ocf["models"], ocf
        assert [(p["id"], p["models"]) for p in ocf["peers"]] == [("peer-a", ["ocf-model"])], ocf
        for raw in pool.keys.values():
            assert raw not in r.text
    assert httpx.get(f"{pool.gw.v1}/endpoints").status_code == 401


def test_usage_overview_and_details_per_key(pool: Pool) -> None:
    pool.provider("p1", models=[MODEL])
    pool.credential("p1", "k1", max_request_day=100)
    pool.credential("p1", "k2", max_request_day=50)
    pool.provider("p2", models=["model-two"])
    pool.credential("p2", "k1")
    key = pool.adapter()
    client = pool.openai(key)
    rr = pool.openai(pool.adapter("p1", MODEL, strategy="round-robin"))
    for _ in range(6):
        ask(rr)
    ask(client, "model-two")
    assert pool.served() == {"p1/k1": 3, "p1/k2": 3, "p2/k1": 1}

    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(f"{pool.gw.v1}/usage", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        usage = r.json()
        if usage.get("overview", {}).get("p1", {}).get("total_requests") == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(usage) >= {"overview", "details"}, usage
    p1 = usage["overview"]["p1"]
    assert p1["total_requests"] == 6 and p1["total_capacity"] == 150, p1
    assert p1["usage_percentage"] == pytest.approx(4.0, abs=0.01), p1
    assert usage["overview"]["p2"]["total_requests"] == 1
    assert usage["overview"]["p2"]["total_capacity"] is None
    d1, d2 = usage["details"]["p1"]["p1/k1"], usage["details"]["p1"]["p1/k2"]
    assert (d1["requests"], d2["requests"]) == (3, 3)
    assert d1["usage_percentage"] == pytest.approx(3.0, abs=0.01)
    assert d2["usage_percentage"] == pytest.approx(6.0, abs=0.01)
    assert d1["label"] == "p1 k1" and d1["state"] == "ready"
    assert d1["rate_limits"] == {"max_request_min": None, "max_request_day": 100, "max_token_min": None}
    assert d1["rate_limit_windows"]["req_day"] == 3 and d1["rate_limit_windows"]["req_min"] == 3
    assert set(usage["details"]["p2"]) == {"p2/k1"}
    for raw in pool.keys.values():
        assert raw not in r.text, "a provider key appears in /v1/usage"
    # The management token reads the same view.
    r = httpx.get(f"{pool.gw.v1}/usage", headers={"Authorization": f"Bearer {pool.gw.token}"})
    assert r.status_code == 200 and r.json()["details"]["p1"]["p1/k1"]["requests"] == 3
