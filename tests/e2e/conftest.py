"""Shared fixtures for the end-to-end tests: the real gateway binary and a local upstream.

Everything here is opt-in (no autouse fixtures, no collection hooks), so any test module in this
folder can use what it needs and ignore the rest.

* ``mock_upstream`` — a :class:`mock_openai.MockOpenAI` on a free loopback port, per test.
* ``start_gateway`` — a factory that starts ``flexiproxy --headless --port 0 --data-dir <tmp>``
  (binary from ``FLEXIPROXY_BIN``, default ``<repo>/target/debug/flexiproxy``) with a scratch
  ``HOME``, a known random management token and its stderr captured to a file; returns a
  :class:`GatewayProcess`. ``gateway`` is one such gateway with default options.
* ``GatewayProcess.api`` — a management-API client; ``routed`` — a gateway with the mock
  registered as provider ``mock`` (key ``sk-upstream-<random>``) and one adapter.
* ``gateway_start_failure`` — runs the binary expecting it to refuse to start.
* ``providers_mock`` — a :class:`mock_providers.MockProviders` (all four wire protocols on one
  port), shared by the test module; ``matrix`` — one gateway per module (``--secrets env``, so no
  keychain is needed) with one provider per protocol registered at that mock and adapter keys
  on demand: ``matrix.key(protocol)``, ``matrix.key(protocol, "fail-429")``. See :class:`Matrix`.

Provider keys given as raw values go to the OS keychain; the tests expect to run inside a D-Bus
session with an unlocked gnome-keyring, which ``.ci/run`` arranges (``tests_need_keychain``
tells, and fails under ``CI`` rather than skipping).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_openai import MockOpenAI  # noqa: E402
from mock_providers import MockProviders  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LISTENING_PREFIX = "FlexiProxy gateway listening on "
START_TIMEOUT_S = 30.0


def gateway_binary() -> Path:
    return Path(os.environ.get("FLEXIPROXY_BIN") or REPO / "target" / "debug" / "flexiproxy")


def keychain_reachable() -> bool:
    """Whether a Secret Service answers on the session bus (what the gateway's keychain uses)."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    tool = shutil.which("secret-tool")
    if tool is None:
        # No way to probe from here; the gateway itself will say if it cannot reach one.
        return True
    try:
        probe = subprocess.run(
            [tool, "search", "flexiproxy-e2e-probe", "none"],
            capture_output=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode in (0, 1)


@pytest.fixture
def tests_need_keychain() -> None:
    """Skip (or fail under CI) a test that needs the real Secret Service when none is reachable."""
    if keychain_reachable():
        return
    message = (
        "no unlocked Secret Service on the D-Bus session bus; run the tests through .ci/run "
        "(dbus-run-session + gnome-keyring-daemon --unlock)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def scratch_env(home: Path, extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment a gateway runs in: the caller's, minus FLEXIPROXY_* settings, with a
    scratch HOME and XDG folders under it. The D-Bus session (and so the keychain) is kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXIPROXY_") and k != "RUST_LOG"}
    for sub in ("", ".local/share", ".config", ".cache", ".local/state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local/state"),
        NO_COLOR="1",
    )
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class ManagementClient(httpx.Client):
    """An httpx client for ``/api`` carrying the management token, with a few typed helpers.

    The helpers assert the status the contract promises and return parsed JSON; use the plain
    ``get``/``post``/... methods to test error paths.
    """

    def create_provider(
        self, provider_id: str, url: str, api_key: Any = None, protocol: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url}
        if api_key is not None:
            body["api_key"] = api_key
        if protocol is not None:
            body["protocol"] = protocol
        r = self.post(f"/api/providers/{provider_id}", json=body)
        assert r.status_code in (200, 201), f"register provider: {r.status_code} {r.text}"
        return r.json()

    def create_adapter(self, provider_id: str, model_id: str, base_url: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"provider_id": provider_id, "model_id": model_id}
        if base_url is not None:
            body["base_url"] = base_url
        r = self.post("/api/adapters", json=body)
        assert r.status_code == 201, f"create adapter: {r.status_code} {r.text}"
        return r.json()

    def delete_adapter(self, create_time: int) -> httpx.Response:
        return self.request("DELETE", "/api/adapters", json={"create_time": create_time})

    def usage_recent(self, limit: int = 50) -> list[dict[str, Any]]:
        r = self.get("/api/usage/recent", params={"limit": limit})
        assert r.status_code == 200, f"usage/recent: {r.status_code} {r.text}"
        return r.json()

    def wait_usage(
        self,
        predicate: Callable[[dict[str, Any]], bool] = lambda row: True,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Polls ``/api/usage/recent`` until at least `count` rows match (usage is written off
        the hot path, in batches) and returns the matching rows, newest first."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while True:
            rows = [row for row in self.usage_recent(200) if predicate(row)]
            if len(rows) >= count:
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} matching usage row(s) within {timeout}s, got {len(rows)}: "
                    f"{json.dumps(self.usage_recent(200), indent=1)[:4000]}"
                )
            time.sleep(0.1)

    def set_usage_enabled(self, enabled: bool) -> dict[str, Any]:
        r = self.put("/api/settings", json={"usage_enabled": enabled})
        assert r.status_code == 200, f"PUT /api/settings: {r.status_code} {r.text}"
        return r.json()


class GatewayProcess:
    """A running ``flexiproxy --headless`` child process."""

    def __init__(
        self, proc: subprocess.Popen[bytes], url: str, token: str, data_dir: Path, home: Path, log_path: Path
    ):
        self.proc = proc
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.token = token
        self.data_dir = data_dir
        self.home = home
        self.log_path = log_path
        self.api = ManagementClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
        self.exit_code: int | None = None

    @property
    def v1(self) -> str:
        """The base URL an OpenAI SDK gets."""
        return f"{self.url}/v1"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "flexiproxy.db"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signals the gateway and waits for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.api.close()
        self.exit_code = self.proc.returncode
        return self.exit_code


@dataclass
class StartFailure:
    returncode: int
    stdout: str
    stderr: str


def wait_listening(proc: subprocess.Popen[bytes], command: list[str], log_path: Path) -> str:
    """The base URL from the gateway's "listening on" line; when it never comes, stops the process
    and fails with its exit status, the command and the end of its log."""
    line = _read_first_line(proc, START_TIMEOUT_S)
    if line is None or not line.startswith(LISTENING_PREFIX):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(
            f"gateway did not announce itself (exit {proc.returncode}); first stdout line: {line!r}\n"
            f"command: {command}\nlog:\n{log_path.read_text(errors='replace')[-6000:]}"
        )
    return line[len(LISTENING_PREFIX) :].strip()


def _read_first_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The first stdout line, read on a thread so a silent child cannot hang the test. The thread
    keeps draining stdout afterwards so the child never blocks on a full pipe."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        first = True
        for raw in proc.stdout:
            if first:
                lines.put(raw.decode(errors="replace").rstrip("\r\n"))
                first = False
        if first:
            lines.put(None)

    threading.Thread(target=pump, name="gateway-stdout", daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def new_token(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


class GatewayFactory:
    """Starts gateways for one test and stops them all at its end."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[GatewayProcess] = []
        self._count = 0

    def _paths(self, data_dir: Path | None) -> tuple[Path, Path, Path]:
        self._count += 1
        base = self.tmp_path / f"gw{self._count}"
        home = base / "home"
        data = data_dir or base / "data"
        home.mkdir(parents=True, exist_ok=True)
        return home, data, base / "gateway-stderr.log"

    def command(self, args: list[str] | None, data_dir: Path) -> list[str]:
        binary = gateway_binary()
        if not binary.exists():
            pytest.fail(
                f"gateway binary {binary} not found: build it with `cargo build -p flexiproxy` "
                f"or point FLEXIPROXY_BIN at it"
            )
        args = list(args or [])
        # clap rejects a repeated flag, so defaults are only added when the caller gave none.
        defaults = [] if "--port" in args else ["--port", "0"]
        defaults += [] if "--data-dir" in args else ["--data-dir", str(data_dir)]
        return [str(binary), "--headless", *defaults, *args]

    def __call__(
        self,
        args: list[str] | None = None,
        env: dict[str, str | None] | None = None,
        *,
        token: str | None = None,
        log_level: str = "debug",
        data_dir: Path | None = None,
    ) -> GatewayProcess:
        """Starts a gateway and waits for its "listening" line.

        `args` are extra command-line flags; `env` adds (or with None removes) variables;
        `token` is the management token (random when not given); `data_dir` reuses a folder,
        e.g. to restart on the same database.
        """
        home, data, log_path = self._paths(data_dir)
        token = token or new_token("fpm-test-")
        full_env = scratch_env(
            home, {"FLEXIPROXY_MANAGEMENT_TOKEN": token, "FLEXIPROXY_LOG": log_level, **(env or {})}
        )
        cmd = self.command(args, data)
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=full_env
        )
        log.close()
        url = wait_listening(proc, cmd, log_path)
        gw = GatewayProcess(proc, url, token, data, home, log_path)
        self.started.append(gw)
        return gw

    def expect_failure(
        self,
        args: list[str] | None = None,
        env: dict[str, str | None] | None = None,
        *,
        timeout: float = 30.0,
    ) -> StartFailure:
        """Runs the binary expecting it to refuse to start; returns its exit code and output."""
        home, data, _ = self._paths(None)
        full_env = scratch_env(
            home,
            {"FLEXIPROXY_MANAGEMENT_TOKEN": new_token("fpm-test-"), "FLEXIPROXY_LOG": "info", **(env or {})},
        )
        cmd = self.command(args, data)
        try:
            done = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, env=full_env, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"expected the gateway to refuse to start, but it ran for {timeout}s: {cmd}"
            ) from e
        return StartFailure(
            done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )

    def stop_all(self) -> None:
        for gw in self.started:
            gw.stop()


@pytest.fixture
def mock_upstream() -> Iterator[MockOpenAI]:
    with MockOpenAI() as mock:
        yield mock


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def gateway_start_failure(start_gateway: GatewayFactory) -> Callable[..., StartFailure]:
    return start_gateway.expect_failure


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> GatewayProcess:
    """A headless gateway with default options (secrets: auto)."""
    return start_gateway()


@pytest.fixture
def provider_key() -> str:
    return new_token("sk-upstream-")


@dataclass
class Routed:
    """A gateway with the mock upstream registered as a provider and an adapter for it."""

    gw: GatewayProcess
    mock: MockOpenAI
    provider_id: str
    provider_key: str
    model: str
    adapter: dict[str, Any]

    @property
    def adapter_key(self) -> str:
        return self.adapter["api_key"]

    def add_adapter(self, model: str) -> str:
        """A second adapter on the same provider for another model (e.g. a fault model); its key."""
        return self.gw.api.create_adapter(self.provider_id, model)["api_key"]


def route(
    gw: GatewayProcess, mock: MockOpenAI, key: str, provider_id: str = "mock", model: str = "mock-small"
) -> Routed:
    gw.api.create_provider(provider_id, mock.base_url, api_key=key)
    adapter = gw.api.create_adapter(provider_id, model)
    return Routed(gw, mock, provider_id, key, model, adapter)


@pytest.fixture
def routed(
    tests_need_keychain: None, gateway: GatewayProcess, mock_upstream: MockOpenAI, provider_key: str
) -> Routed:
    return route(gateway, mock_upstream, provider_key)


# -- the protocol matrix: one gateway, one four-protocol mock, a provider per protocol ------------

# The four provider protocols, in the order the matrix tests list them, and the model each
# provider's default adapter asks the mock for.
MATRIX_PROTOCOLS = ("openai_chat", "openai_responses", "anthropic_messages", "gemini")
MATRIX_MODELS = {
    "openai_chat": "mock-chat",
    "openai_responses": "mock-responses",
    "anthropic_messages": "claude-mock",
    "gemini": "gemini-mock",
}
# The environment variable the matrix gateway reads the provider key from (`env:NAME`).
# FLEXIPROXY_*: names the management API may give as env: keys without --allow-env.
MATRIX_KEY_VAR = "FLEXIPROXY_E2E_MOCK_PROVIDER_KEY"


class Matrix:
    """A gateway with a provider per wire protocol, all pointing at one :class:`MockProviders`.

    Provider ids are the protocol names (``openai_chat`` at ``<mock>/v1``, ``gemini`` at
    ``<mock>/v1beta``, ...). Adapters are made on first use and cached: ``key(protocol)`` is
    the ``fp-`` key of an adapter for the protocol's default model; ``key(protocol, model)``
    one for another model (e.g. ``fail-429``), registered on a provider of its own
    (``<protocol>.<model>``) so that a provider cooling down after a failure cannot disturb
    the other tests of the module.
    """

    def __init__(self, gw: GatewayProcess, mock: MockProviders, provider_key: str):
        self.gw = gw
        self.mock = mock
        self.provider_key = provider_key
        self._adapters: dict[tuple[str, str], dict[str, Any]] = {}
        for protocol in MATRIX_PROTOCOLS:
            self._provider(protocol, protocol)

    @property
    def url(self) -> str:
        return self.gw.url

    def _provider(self, provider_id: str, protocol: str) -> None:
        self.gw.api.create_provider(
            provider_id, self.mock.base_url(protocol), api_key=f"env:{MATRIX_KEY_VAR}", protocol=protocol
        )

    def provider_id(self, protocol: str, model: str | None = None) -> str:
        model = model or MATRIX_MODELS[protocol]
        return protocol if model == MATRIX_MODELS[protocol] else f"{protocol}.{model}"

    def adapter(self, protocol: str, model: str | None = None) -> dict[str, Any]:
        model = model or MATRIX_MODELS[protocol]
        if (protocol, model) not in self._adapters:
            provider_id = self.provider_id(protocol, model)
            if provider_id != protocol:
                self._provider(provider_id, protocol)
            self._adapters[(protocol, model)] = self.gw.api.create_adapter(provider_id, model)
        return self._adapters[(protocol, model)]

    def key(self, protocol: str, model: str | None = None) -> str:
        return self.adapter(protocol, model)["api_key"]

    def model(self, protocol: str) -> str:
        return MATRIX_MODELS[protocol]

    def now_ms(self) -> int:
        """A timestamp to select the usage rows of what follows (``ts_ms`` is milliseconds)."""
        return int(time.time() * 1000) - 5

    def usage_since(self, since_ms: int, protocol: str, model: str | None = None, count: int = 1) -> list[dict[str, Any]]:
        """The usage rows of a provider recorded since `since_ms`, newest first (waits for them)."""
        provider_id = self.provider_id(protocol, model)
        return self.gw.api.wait_usage(
            lambda row: row.get("provider_id") == provider_id and row.get("ts_ms", 0) >= since_ms, count=count
        )


def start_matrix(factory: GatewayFactory, mock: MockProviders) -> Matrix:
    """Starts a gateway (``--secrets env``) and registers the four providers at `mock`."""
    provider_key = mock.key or new_token("sk-mock-provider-")
    gw = factory(["--secrets", "env"], env={MATRIX_KEY_VAR: provider_key}, log_level="info")
    return Matrix(gw, mock, provider_key)


@pytest.fixture(scope="module")
def providers_mock() -> Iterator[MockProviders]:
    """The four-protocol mock provider, requiring the matrix provider key, for one test module."""
    with MockProviders(key=new_token("sk-mock-provider-")) as mock:
        yield mock


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, providers_mock: MockProviders) -> Iterator[Matrix]:
    factory = GatewayFactory(tmp_path_factory.mktemp("matrix"))
    try:
        yield start_matrix(factory, providers_mock)
    finally:
        factory.stop_all()


# -- fault-injecting upstreams (routing, failover, config-file tests) -----------------------------

from fault_upstream import FaultUpstream  # noqa: E402


class FaultUpstreams:
    """Starts :class:`fault_upstream.FaultUpstream` servers for one test and stops them at its end."""

    def __init__(self) -> None:
        self.started: list[FaultUpstream] = []

    def __call__(self, name: str, **kwargs: Any) -> FaultUpstream:
        up = FaultUpstream(name=name, **kwargs).start()
        self.started.append(up)
        return up

    def stop_all(self) -> None:
        for up in self.started:
            up.stop()


@pytest.fixture
def fault_upstreams() -> Iterator[FaultUpstreams]:
    """A factory: ``fault_upstreams("p1", models=[...], keys=[...])`` is a running upstream."""
    factory = FaultUpstreams()
    yield factory
    factory.stop_all()


def put_provider(api: ManagementClient, provider_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Registers or replaces a provider with the issue-4 body (``url``, ``protocol``, ``discovery``,
    ``models``, ``api_key``): ``PUT /api/providers/{id}`` as the contract says, or ``POST`` on a
    gateway that only knows the older verb."""
    r = api.put(f"/api/providers/{provider_id}", json=body)
    if r.status_code == 405:
        r = api.post(f"/api/providers/{provider_id}", json=body)
    assert r.status_code in (200, 201), f"register provider {provider_id}: {r.status_code} {r.text}"
    return r.json()
