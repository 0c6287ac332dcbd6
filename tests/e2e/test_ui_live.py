"""The dashboard in a real browser (headless Chromium driven by playwright-core): a request sent
through the gateway with the OpenAI SDK shows up in the request counter and the list of recent
requests without reloading the page, because the page follows the gateway's event stream."""

from __future__ import annotations

import openai

from browser import ARTIFACTS, browser_script, read_json_line, send_line
from conftest import Routed


def test_the_dashboard_updates_live_without_reloading(routed: Routed) -> None:
    screenshot = ARTIFACTS / "dashboard-live.png"
    scenario = {
        "url": routed.gw.url,
        "token": routed.gw.token,
        "screenshot": str(screenshot),
        "model": routed.model,
    }
    with browser_script("dashboard_live.mjs", scenario) as proc:
        ready = read_json_line(proc)
        assert ready.get("ready"), f"the page did not come up: {ready}"

        client = openai.OpenAI(base_url=routed.gw.v1, api_key=routed.adapter_key, max_retries=0)
        client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])
        send_line(proc, "sent")

        seen = read_json_line(proc)
        proc.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    before = int(ready["before"]) if ready["before"].isdigit() else 0
    assert seen["after"] is not None, "the request counter did not change without a reload"
    assert int(seen["after"].replace(",", "")) == before + 1, seen
    assert seen["recentHasModel"], "the new request is not in the list of recent requests"
    assert seen["sameLoad"], "the page reloaded"
    assert seen["errors"] == [], seen["errors"]
    assert screenshot.stat().st_size > 10_000
