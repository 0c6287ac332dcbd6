"""The test OpenID provider (npm ``oidc-provider``, ``node/scripts/oidc_server.mjs``) for the
end-to-end login tests: starting it, pointing the gateway's Qwen login at it as a plain device
flow, and approving a device code as the user would on the provider's page.

Used by ``test_ui_accounts.py`` (the Accounts page) and ``test_desktop.py`` (the tray's
needs-login item); everything stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from typing import Any, Iterator

import httpx

from agents import NODE_DIR, require_node


@contextlib.contextmanager
def oidc_server() -> Iterator[str]:
    """Runs the provider; yields its issuer URL. It stops when its stdin closes."""
    node = require_node("oidc-provider")
    proc = subprocess.Popen(
        [str(node), str(NODE_DIR / "scripts" / "oidc_server.mjs")],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the OpenID provider did not start (exit {proc.returncode}): {stderr[-3000:]}")
        yield json.loads(line)["issuer"]
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def qwen_device_login(current: dict[str, Any], issuer: str, client_id: str = "flexiproxy") -> dict[str, Any]:
    """The body of ``PUT /api/accounts/endpoints`` that makes the Qwen login a plain device flow
    against the provider, from the effective settings (``GET /api/accounts/endpoints``)."""
    qwen: dict[str, Any] = dict(current["login"]["qwen"])
    qwen.update(
        device_url=f"{issuer}/device/auth",
        token_url=f"{issuer}/token",
        client_id=client_id,
        scopes=["openid", "email", "offline_access"],
        device_pkce=False,
        flow="device",
        token_body="form",
    )
    return {"login": {"qwen": qwen}}


def approve(issuer: str, user_code: str) -> None:
    """What the user does on the provider's verification page."""
    r = httpx.post(f"{issuer}/test/device", params={"user_code": user_code, "outcome": "approve"}, timeout=10)
    assert r.status_code == 200, f"approving {user_code}: {r.status_code} {r.text}"
