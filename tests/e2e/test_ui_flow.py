"""The whole window in a real browser (headless Chromium driven by playwright-core), as a user
goes through it: sign in, add a provider from a preset pointed at a local upstream with a key,
test it, see its models, create an adapter and its tool settings (written to Claude Code's file
and undone), then requests sent through the adapter with the official openai SDK show up in the
live tiles, the chart, the per-provider/model tables and the request list without a reload;
the pages are reachable with the keyboard alone and do not scroll sideways when narrow.

The browser side is ``node/browser/ui_flow.mjs``; screenshots of every page (default size and
420 px, light and dark) land in ``target/e2e-artifacts/ui-*.png``.
"""

from __future__ import annotations

import json

import openai

from browser import ARTIFACTS, browser_script, read_json_line, send_line
from conftest import GatewayFactory, new_token
from mock_providers import MockProviders

REQUESTS = 3


def test_a_user_sets_up_a_provider_and_an_adapter_and_watches_it_work(
    start_gateway: GatewayFactory, tests_need_keychain: None
) -> None:
    upstream_key = new_token("sk-ui-upstream-")
    with MockProviders(key=upstream_key) as mock:
        gw = start_gateway()
        scenario = {
            "url": gw.url,
            "token": gw.token,
            "artifacts": str(ARTIFACTS),
            "upstream": mock.base_url("openai_chat"),
            "upstreamKey": upstream_key,
            "requests": REQUESTS,
        }
        with browser_script("ui_flow.mjs", scenario) as proc:
            first = read_json_line(proc)
            assert first.get("phase") == "adapter", f"the page flow stopped before the adapter: {first}"
            key = first["key"]
            assert key.startswith("fp-"), first

            client = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=30)
            for i in range(REQUESTS - 1):
                reply = client.chat.completions.create(
                    model="anything", messages=[{"role": "user", "content": f"hello {i}"}]
                )
                assert reply.choices[0].message.content == f"echo: hello {i}"
            stream = client.chat.completions.create(
                model="anything",
                messages=[{"role": "user", "content": "streamed"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: streamed"
            send_line(proc, "sent")

            seen = read_json_line(proc)
            proc.wait(timeout=120)

    # What the page showed, kept beside the screenshots for whoever debugs a failure.
    (ARTIFACTS / "ui-flow.json").write_text(json.dumps({"before": first.get("before"), **seen}, indent=1))
    assert "failure" not in seen, f"{seen.get('failure')}\nsteps done: {seen.get('steps')}"
    assert seen["errors"] == [], seen["errors"]

    # Empty states say what to do.
    assert "No providers yet" in seen["emptyProviders"]
    assert "No adapters yet" in seen["emptyAdapters"]

    # The preset filled the form; the key went to the keychain and is never shown again.
    assert len(seen["presets"]) == 12, seen["presets"]
    assert seen["presetUrl"] == "https://api.openai.com/v1"
    assert seen["presetProtocol"] == "openai_chat"
    assert seen["dialogClosed"]
    assert seen["keyShown"] is False
    assert seen["keyHint"] and upstream_key not in seen["keyHint"], seen["keyHint"]
    assert {"mock-chat", "mock-chat-large"} <= set(seen["models"]), seen["models"]

    # "Test" made a real call through the provider and showed its answer.
    assert seen["testProgress"], "no progress shown while testing"
    assert "The provider answered" in seen["testResult"], seen["testResult"]
    assert "echo" in seen["testResult"], seen["testResult"]
    # Editing the URL to another host says the key will be cleared, before anything is saved.
    assert seen["sameHostNote"] is False
    assert "another host" in seen["moveNote"] and "clears" in seen["moveNote"], seen["moveNote"]

    # The adapter: models offered from the provider, key once, settings with the key in them.
    assert "mock-chat" in seen["modelChoices"], seen["modelChoices"]
    assert seen["snippetHasKey"], "the first tool's settings do not carry the new key"
    assert any("Claude Code" in t for t in seen["toolTabs"]), seen["toolTabs"]
    assert seen["claudeWritable"], "Claude Code's settings cannot be written from the window"
    assert "Written to" in seen["applyResult"] and ".claude" in seen["applyResult"], seen["applyResult"]
    assert "readable by you alone (0600)" in seen["applyResult"], seen["applyResult"]
    assert "readable by you alone (0600)" in seen["beforeApply"], seen["beforeApply"]
    assert "Restored" in seen["undoResult"], seen["undoResult"]
    assert seen["keyGoneAfterClose"], "the adapter key stayed in the page after the dialog closed"
    assert "e2e tool" in seen["adapterRow"]
    assert "<adapter key>" in seen["laterSnippet"], seen["laterSnippet"]

    # Live: counters, rpm, chart, tables and the request list moved without a reload.
    before = first["before"]
    assert seen["sameLoad"], "the page reloaded"
    assert seen["requestsAfter"] is not None, "the request counter did not change without a reload"
    assert seen["requestsAfter"] == before["requests"] + REQUESTS, (seen["requestsAfter"], before)
    assert seen["after"]["input"] > before["input"] and seen["after"]["output"] > before["output"], seen["after"]
    assert seen["after"]["rpm"] >= REQUESTS, seen["after"]
    assert seen["after"]["chart"] > before["chart"], seen["after"]
    assert "input" in seen["after"]["chartLabel"], seen["after"]["chartLabel"]
    assert "mockai" in seen["byProvider"], seen["byProvider"]
    assert "mock-chat" in seen["byModel"], seen["byModel"]
    assert "e2e tool" in seen["byAdapter"], seen["byAdapter"]
    assert "mockai" in seen["recent"] and "mock-chat" in seen["recent"], seen["recent"]
    assert "TTFT" in seen["recentHeaders"], seen["recentHeaders"]
    assert seen["weekChart"] >= seen["after"]["chart"]

    # Keyboard only: skip link first, then every page from the navigation, focus visible.
    assert seen["firstTab"] == "Skip to content", seen["firstTab"]
    assert seen["skipTarget"] == "dashboard-h", seen["skipTarget"]
    visited = seen["keyboard"]["visited"]
    assert [v["page"] for v in visited] == ["providers", "adapters", "settings", "dashboard"], visited
    for v in visited:
        assert v["hash"] == f"#{v['page']}" and v["current"] == "page", v
        assert v["focus"] == f"H1#{v['page']}-h", v
    assert all(style != "none" for style in seen["keyboard"]["outlines"]), seen["keyboard"]["outlines"]

    # Settings: turning statistics off asks first; the CSV export downloads a file.
    assert seen["usageChoices"] == ["Cancel", "Delete history", "Keep history"], seen["usageChoices"]
    assert seen["usageStillOn"]
    assert seen["csvName"].startswith("flexiproxy-usage") and seen["csvName"].endswith(".csv"), seen.get("csvName")
    assert seen["csvHead"][0].startswith("time_utc,ts_ms,provider"), seen["csvHead"]
    assert "Downloaded" in seen["exportMsg"], seen["exportMsg"]

    # Every page fits the window's width, default and narrow, light and dark.
    assert seen["overflow"] == [], seen["overflow"]
    for name in ("dashboard", "providers", "adapters", "settings"):
        for size in ("default", "narrow"):
            for scheme in ("light", "dark"):
                shot = ARTIFACTS / f"ui-{name}-{size}-{scheme}.png"
                assert shot.stat().st_size > 10_000, shot
