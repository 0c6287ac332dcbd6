"""The Accounts page in a real browser (headless Chromium driven by playwright-core), as a user
goes through it: the empty state, a Qwen login by device code against a real OpenID provider
(npm ``oidc-provider``, the script ``node/scripts/oidc_server.mjs`` on 127.0.0.1) that the test
approves as the user would on the provider's page, the account appearing in the list with its
email without a reload, and Log out (asked first) removing it.

The gateway is pointed at the local provider with ``PUT /api/accounts/endpoints`` (see
``oidc_provider.py``), so nothing leaves this machine. The browser side is
``node/browser/ui_accounts.mjs``; screenshots land in ``target/e2e-artifacts/ui-accounts-*.png``.
"""

from __future__ import annotations

import json

from browser import ARTIFACTS, browser_script, read_json_line, send_line
from conftest import GatewayFactory, GatewayProcess
from oidc_provider import approve, oidc_server, qwen_device_login


def point_qwen_at(gw: GatewayProcess, issuer: str) -> None:
    """Makes the gateway's Qwen login a plain device flow against the local provider."""
    current = gw.api.get("/api/accounts/endpoints")
    assert current.status_code == 200, f"GET /api/accounts/endpoints: {current.status_code} {current.text}"
    put = gw.api.put("/api/accounts/endpoints", json=qwen_device_login(current.json(), issuer))
    assert put.status_code == 200, f"PUT /api/accounts/endpoints: {put.status_code} {put.text}"
    assert put.json()["login"]["qwen"]["device_url"] == f"{issuer}/device/auth"


def test_a_user_logs_in_to_a_subscription_and_out_again(
    start_gateway: GatewayFactory, tests_need_keychain: None
) -> None:
    with oidc_server() as issuer:
        gw = start_gateway()
        point_qwen_at(gw, issuer)
        scenario = {"url": gw.url, "token": gw.token, "artifacts": str(ARTIFACTS)}
        with browser_script("ui_accounts.mjs", scenario) as proc:
            first = read_json_line(proc)
            assert first.get("phase") == "code", f"the page flow stopped before the code: {first}"
            approve(issuer, first["userCode"])
            send_line(proc, "approved")
            seen = read_json_line(proc)
            proc.wait(timeout=60)
        accounts_after = gw.api.get("/api/accounts").json()["accounts"]

    (ARTIFACTS / "ui-accounts.json").write_text(json.dumps(seen, indent=1))
    assert "failure" not in seen, f"{seen.get('failure')}\nsteps done: {seen.get('steps')}"
    assert seen["errors"] == [], seen["errors"]

    # The empty state, a button per kind, and the note about the providers' terms.
    assert seen["hash"] == "#accounts"
    assert "No accounts yet" in seen["emptyState"], seen["emptyState"]
    assert len(seen["kinds"]) == 6, seen["kinds"]
    assert any("Qwen" in k for k in seen["kinds"]), seen["kinds"]
    assert any("Claude Pro/Max" in k for k in seen["kinds"]), seen["kinds"]
    assert "terms" in seen["terms"], seen["terms"]

    # The device login: the code large with a copy button, the sign-in link (headless: a plain
    # link to the provider's page), progress while waiting.
    assert "Qwen" in seen["dialogTitle"], seen["dialogTitle"]
    assert seen["userCode"] and seen["userCode"] == first["userCode"]
    assert seen["codeFontPx"] >= 24, seen["codeFontPx"]
    assert "Copy code" in seen["copyCode"], seen["copyCode"]
    assert seen["openLink"]["tag"] == "A", seen["openLink"]
    assert seen["openLink"]["href"].startswith(f"{issuer}/device"), seen["openLink"]
    assert "Waiting" in seen["progress"], seen["progress"]

    # It finished by itself and the account shows, without a reload.
    assert "Logged in" in seen["result"], seen["result"]
    assert "ada@example.com" in seen["result"], seen["result"]
    assert seen["doneFocus"] == "ld-cancel", seen["doneFocus"]
    assert "ada@example.com" in seen["accountCard"], seen["accountCard"]
    assert "Signed in" in seen["accountCard"], seen["accountCard"]
    assert "Next refresh" in seen["accountCard"], seen["accountCard"]
    assert seen["sameLoad"], "the page reloaded"
    assert [t["text"] for t in seen["tabbed"]] == ["Re-login", "Refresh now", "Log out"], seen["tabbed"]
    assert all(t["outline"] != "none" for t in seen["tabbed"]), seen["tabbed"]

    # Log out asks first, starting on Cancel; then the account is gone, here and in the API.
    assert "Log out" in seen["logoutQuestion"], seen["logoutQuestion"]
    assert seen["logoutFocus"] == "Cancel", seen["logoutFocus"]
    assert seen["keptAfterCancel"] == 1
    assert "No accounts yet" in seen["afterLogout"], seen["afterLogout"]
    assert "Logged out" in seen["logoutMsg"], seen["logoutMsg"]
    assert accounts_after == [], accounts_after

    # Every state fits the window's width, default and narrow, light and dark.
    assert seen["overflow"] == [], seen["overflow"]
    for name in ("empty", "list"):
        for size in ("default", "narrow"):
            for scheme in ("light", "dark"):
                shot = ARTIFACTS / f"ui-accounts-{name}-{size}-{scheme}.png"
                assert shot.stat().st_size > 10_000, shot
