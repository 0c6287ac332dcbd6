"""Shared plumbing for the end-to-end tests that drive JavaScript clients: the npm SDKs and the
coding agents (Claude Code, Codex, Gemini CLI) installed under ``tests/e2e/node``.

* where Node.js is (``.ci/setup`` puts a Node ≥ 22 under ``tests/e2e/node/.runtime`` when the
  machine's own is older) and :func:`require_node`, which skips a test when Node or the npm
  packages are missing — or fails it under ``CI``, where ``.ci/setup`` must have installed them;
* :func:`client_env`, a clean environment for a client (scratch ``HOME``, nothing of the
  caller's, so no real API key or config can leak in or be touched);
* :func:`run`, which runs a client in its own process group with a hard timeout and kills the
  whole group afterwards (agents leave shells and helpers behind);
* :func:`route_to`, which registers an upstream of a given protocol as a provider of a running
  gateway (key as an ``env:NAME`` reference, so no keychain is needed) and creates an adapter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
NODE_MODULES = NODE_DIR / "node_modules"
RUNTIME_BIN = NODE_DIR / ".runtime" / "bin"
MIN_NODE_MAJOR = 22
# The environment variable (set on the gateway) holding the upstream key the provider refers to.
UPSTREAM_KEY_VAR = "FLEXIPROXY_E2E_UPSTREAM_KEY"


def _node_major(node: str) -> int:
    try:
        out = subprocess.run(
            [node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True, timeout=20
        )
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def node_binary() -> Path | None:
    """The Node.js the tests use: the one ``.ci/setup`` installed, else a new enough one on PATH."""
    for candidate in (str(RUNTIME_BIN / "node"), shutil.which("node")):
        if candidate and Path(candidate).exists() and _node_major(candidate) >= MIN_NODE_MAJOR:
            return Path(candidate)
    return None


def require_node(*packages: str) -> Path:
    """Node's path, when it and the npm `packages` are installed; otherwise skip (fail under CI)."""
    node = node_binary()
    missing = [p for p in packages if not (NODE_MODULES / p / "package.json").exists()]
    problem = None
    if node is None:
        problem = f"no Node.js >= {MIN_NODE_MAJOR} (neither {RUNTIME_BIN / 'node'} nor on PATH)"
    elif missing:
        problem = f"npm packages not installed in {NODE_DIR}: {', '.join(missing)}"
    if problem is None:
        assert node is not None
        return node
    message = f"{problem}; run .ci/setup (it installs Node and runs npm ci in tests/e2e/node)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def package_version(package: str) -> str:
    return json.loads((NODE_MODULES / package / "package.json").read_text())["version"]


def package_bin(package: str, name: str) -> Path:
    """The file a package's `bin` entry `name` points at (run it with node, not its shebang)."""
    meta = json.loads((NODE_MODULES / package / "package.json").read_text())
    bins = meta["bin"] if isinstance(meta["bin"], dict) else {meta["name"].split("/")[-1]: meta["bin"]}
    return NODE_MODULES / package / bins[name]


def client_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a client process: scratch HOME and XDG folders, our Node first
    on PATH, no terminal, nothing inherited that could point it at a real service."""
    for sub in (".config", ".cache", ".local/share", ".local/state", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    node = node_binary()
    path = [str(node.parent)] if node else []
    path += ["/usr/local/bin", "/usr/bin", "/bin"]
    env = {
        "PATH": os.pathsep.join(dict.fromkeys(path)),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        # Gemini CLI writes error reports to the temp folder: keep them in the scratch HOME.
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update(extra or {})
    return env


@dataclass
class Finished:
    """A client run that ended (by itself or by the timeout)."""

    cmd: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    def describe(self, limit: int = 6000) -> str:
        return (
            f"command: {self.cmd}\nexit: {self.returncode} timed out: {self.timed_out} after {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout[-limit:]}\n--- stderr ---\n{self.stderr[-limit:]}"
        )


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, stdin: str = "") -> Finished:
    """Runs `cmd` in a new session (its own process group), waits at most `timeout` seconds, then
    kills the whole group whether it ended or not, so nothing it started outlives the test."""
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, err = proc.communicate(timeout=30)
    finally:
        _kill_group(proc)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return Finished(cmd, None if timed_out else proc.returncode, out, err, time.monotonic() - started, timed_out)


def route_to(gw: Any, base_url: str, protocol: str, model: str, provider_id: str = "up") -> str:
    """Registers `base_url` as provider `provider_id` speaking `protocol` (key: the gateway's
    ``UPSTREAM_KEY_VAR``), adds an adapter for `model` and returns the adapter's ``fp-`` key."""
    gw.api.create_provider(provider_id, base_url, api_key=f"env:{UPSTREAM_KEY_VAR}", protocol=protocol)
    return gw.api.create_adapter(provider_id, model)["api_key"]

