"""The dashboard in a real browser (headless Chromium driven by playwright-core): a request sent
through the gateway with the OpenAI SDK shows up in the request counter and the list of recent
requests without reloading the page, because the page follows the gateway's event stream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import openai
import pytest

from agents import NODE_DIR, client_env, require_node
from conftest import Routed

ARTIFACTS = Path(os.environ.get("FLEXIPROXY_ARTIFACTS", Path(__file__).resolve().parents[2] / "target" / "e2e-artifacts"))


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed; .ci/setup installs it")
        pytest.skip("no chromium; run .ci/setup")
    return found


def test_the_dashboard_updates_live_without_reloading(routed: Routed) -> None:
    node = require_node("playwright-core")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-live.png"
    scenario = {
        "url": routed.gw.url,
        "token": routed.gw.token,
        "chromium": chromium_binary(),
        "screenshot": str(screenshot),
        "model": routed.model,
    }
    home = Path(tempfile.mkdtemp(prefix="fp-ui-"))
    proc = subprocess.Popen(
        [str(node), str(NODE_DIR / "browser" / "dashboard_live.mjs"), json.dumps(scenario)],
        cwd=NODE_DIR,
        # A short scratch HOME: Chromium's singleton socket path must fit in 108 bytes.
        env=client_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("ready"), f"the page did not come up: {proc.stderr.read() if proc.poll() is not None else ready}"

        client = openai.OpenAI(base_url=routed.gw.v1, api_key=routed.adapter_key, max_retries=0)
        client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])
        proc.stdin.write("sent\n")
        proc.stdin.flush()

        seen = json.loads(proc.stdout.readline() or "{}")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    before = int(ready["before"]) if ready["before"].isdigit() else 0
    assert seen["after"] is not None, "the request counter did not change without a reload"
    assert int(seen["after"].replace(",", "")) == before + 1, seen
    assert seen["recentHasModel"], "the new request is not in the list of recent requests"
    assert seen["sameLoad"], "the page reloaded"
    assert seen["errors"] == [], seen["errors"]
    assert screenshot.stat().st_size > 10_000
