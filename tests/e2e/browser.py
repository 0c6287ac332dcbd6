"""Starting the browser side of the UI tests: a Node script under ``node/browser/`` that drives
Debian's headless ``chromium`` through playwright-core and talks to the Python test over its
stdin/stdout, one JSON object per line.

Both ``test_ui_live.py`` and ``test_ui_flow.py`` start their scripts here, so the Chromium
lookup, the scratch HOME and the clean-up are written once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from agents import NODE_DIR, client_env, require_node

ARTIFACTS = Path(os.environ.get("FLEXIPROXY_ARTIFACTS", Path(__file__).resolve().parents[2] / "target" / "e2e-artifacts"))


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed; .ci/setup installs it")
        pytest.skip("no chromium; run .ci/setup")
    return found


@contextlib.contextmanager
def browser_script(script: str, scenario: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    """Runs ``node/browser/<script>`` with the scenario (plus the Chromium path) as its argument;
    kills it and removes its scratch HOME on the way out."""
    node = require_node("playwright-core")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="fp-ui-"))
    proc = subprocess.Popen(
        [str(node), str(NODE_DIR / "browser" / script), json.dumps({"chromium": chromium_binary(), **scenario})],
        cwd=NODE_DIR,
        # A short scratch HOME: Chromium's singleton socket path must fit in 108 bytes.
        env=client_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def read_json_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The script's next message; fails with its stderr when it ended instead."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"the browser script ended early (exit {proc.returncode}): {stderr[-4000:]}")
    return json.loads(line)


def send_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()
